//! Limits that hold across every instance of the proxy: requests per minute, tokens per minute,
//! and token budgets per day and per calendar month, for a key and for its tenant.
//!
//! Admission is one conditional add per window item (`store.rs`: counted only if it fits), all
//! of a request's items at once; if any refuses, those that counted are taken back. Tokens are
//! reserved at admission (an estimate) and settled when the response ends: the reservation is
//! replaced by the usage the proxy metered, before the response is finished (`stream.rs`), since
//! a Lambda environment may be frozen the moment it is. Without usage the reservation stays.
//! A refusal is remembered for a while (`refusals.rs`), so an exhausted key costs no store write
//! per request.

mod answer;
mod check;
mod dynamodb;
mod refusals;
mod reservation;
mod store;
mod window;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;

pub use answer::{RateHeaders, Refusal, Trio};
use check::{Check, checks};
pub use dynamodb::DynamoStore;
use refusals::{Refusals, longest_refusing, refusal};
pub use reservation::Reservation;
pub use store::{Counted, Counts, Fit, LimitStore, MemoryStore, StoreError, Update};
pub use window::{Clock, Period, Window};

use crate::error::ProxyError;

/// The limits an entry or a tenant may carry (`limits` in the key map); each is optional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub tokens_per_month: Option<u64>,
}

/// Whose limit: the key's own (its counter id) or its tenant's (shared by the tenant's keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Key,
    Tenant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    RequestsPerMinute,
    TokensPerMinute,
    TokensPerDay,
    TokensPerMonth,
}

/// Which limit refused a request: the record's `limit` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitName {
    pub scope: Scope,
    pub kind: LimitKind,
}

impl LimitName {
    pub fn as_str(self) -> &'static str {
        use LimitKind::*;
        match (self.scope, self.kind) {
            (Scope::Key, RequestsPerMinute) => "key.requests_per_minute",
            (Scope::Key, TokensPerMinute) => "key.tokens_per_minute",
            (Scope::Key, TokensPerDay) => "key.tokens_per_day",
            (Scope::Key, TokensPerMonth) => "key.tokens_per_month",
            (Scope::Tenant, RequestsPerMinute) => "tenant.requests_per_minute",
            (Scope::Tenant, TokensPerMinute) => "tenant.tokens_per_minute",
            (Scope::Tenant, TokensPerDay) => "tenant.tokens_per_day",
            (Scope::Tenant, TokensPerMonth) => "tenant.tokens_per_month",
        }
    }
}

/// Whose counters a request counts against: the key's counter id and limits, its tenant's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Subject<'a> {
    pub key: Option<(&'a str, &'a Limits)>,
    pub tenant: Option<(&'a str, &'a Limits)>,
}

/// What to do when the store cannot be reached (`LIMITS_ON_STORE_ERROR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStoreError {
    /// Serve the request uncounted (logged, and counted in the `LimitsStoreErrors` metric).
    Allow,
    /// Answer 503 `limits_unavailable`.
    Deny,
}

pub struct Limiter {
    store: Box<dyn LimitStore>,
    clock: Clock,
    on_store_error: OnStoreError,
    /// Output tokens reserved for a generating request that does not cap its output.
    default_output_tokens: u64,
    refusals: Refusals,
}

/// A request the limits let through.
pub enum Admission {
    Admitted(Admitted),
    /// The store failed and `LIMITS_ON_STORE_ERROR=allow`: served uncounted.
    Unchecked,
}

pub struct Admitted {
    pub headers: RateHeaders,
    /// Tokens reserved in token windows, to be settled when the response ends.
    pub reservation: Option<Reservation>,
}

impl Limiter {
    pub fn new(
        store: Box<dyn LimitStore>,
        clock: Clock,
        on_store_error: OnStoreError,
        default_output_tokens: u64,
    ) -> Self {
        Self {
            store,
            clock,
            on_store_error,
            default_output_tokens,
            refusals: Refusals::default(),
        }
    }

    pub fn store(&self) -> &dyn LimitStore {
        &*self.store
    }

    /// What a request reserves: its input size (a JSON body's bytes / 4, the usual rough token
    /// count; multipart uploads such as audio are not text and reserve nothing for input), plus
    /// its output cap when it gives one, else `LIMITS_DEFAULT_OUTPUT_TOKENS` for a request that
    /// generates text (chat, completions, responses).
    pub fn estimate(&self, json_bytes: usize, max_output: Option<u64>, generates: bool) -> u64 {
        let input = (json_bytes as u64).div_ceil(4);
        let output = match max_output {
            Some(cap) => cap,
            None if generates => self.default_output_tokens,
            None => 0,
        };
        input.saturating_add(output)
    }

    /// Counts the request against every limit of `subject`, reserving `tokens` in its token
    /// windows; a refusal is the 429 to answer.
    pub async fn admit(
        self: &Arc<Self>,
        subject: Subject<'_>,
        tokens: u64,
    ) -> Result<Admission, ProxyError> {
        let now = self.clock.now();
        let checks = checks(subject, tokens, now);
        if let Some(refusal) = self.refused_here(&checks, now) {
            return Err(ProxyError::RateLimited(Box::new(refusal)));
        }
        let results = join_all(checks.iter().map(|check| self.store.update(check.update()))).await;
        let (mut made, mut seen) = (Vec::new(), Vec::new());
        let mut failed = None;
        for (check, result) in checks.iter().zip(results) {
            match result {
                Ok(Counted::Made(counts)) => made.push((check, counts)),
                Ok(Counted::Refused(counts)) => seen.push((check, counts)),
                Err(err) => failed = Some(err),
            }
        }
        if !seen.is_empty() || failed.is_some() {
            // Not admitted: what the request counted in other windows is given back.
            let counted: Vec<&Check> = made.iter().map(|(check, _)| *check).collect();
            self.undo(&counted).await;
        }
        // A window the store refused is one the request does not fit (the same condition).
        let refusing = longest_refusing(&seen).or_else(|| seen.first().map(|(check, _)| *check));
        if let Some(refusing) = refusing {
            // Every window as it stands without this request, for the headers and for memory.
            seen.extend(
                made.iter()
                    .map(|&(check, counts)| (check, check.without(counts))),
            );
            self.refusals.remember(&seen, now);
            let refused = refusal(&seen, now, refusing, false);
            return Err(ProxyError::RateLimited(Box::new(refused)));
        }
        if let Some(err) = failed {
            tracing::warn!(store = self.store.kind(), error = %err, "the limits store failed");
            return match self.on_store_error {
                OnStoreError::Allow => Ok(Admission::Unchecked),
                OnStoreError::Deny => Err(ProxyError::LimitsUnavailable),
            };
        }
        let mut headers = RateHeaders::default();
        for (check, counts) in &made {
            headers.merge(check.trios(*counts, now));
        }
        let items: Vec<_> = checks
            .iter()
            .filter(|check| check.tokens.is_some())
            .map(|check| (check.item.clone(), check.window.expires_at()))
            .collect();
        let reservation = (!items.is_empty()).then(|| Reservation {
            limiter: Arc::clone(self),
            items,
            tokens,
        });
        Ok(Admission::Admitted(Admitted {
            headers,
            reservation,
        }))
    }

    /// A refusal decided without the store: a request larger than a token limit, or windows
    /// this process saw refuse recently that the request does not fit.
    fn refused_here(&self, checks: &[Check], now: SystemTime) -> Option<Refusal> {
        let seen = self.refusals.recall(checks, now);
        if let Some(check) = checks.iter().find(|check| check.is_too_large()) {
            return Some(refusal(&seen, now, check, true));
        }
        longest_refusing(&seen).map(|refusing| refusal(&seen, now, refusing, false))
    }

    /// Gives back what a request that was not admitted counted in these windows.
    async fn undo(&self, made: &[&Check]) {
        let undone = join_all(made.iter().map(|check| {
            self.store.update(Update {
                requests: -1,
                tokens: -signed(check.add_tokens),
                fit: Fit::default(),
                ..check.update()
            })
        }))
        .await;
        for err in undone.into_iter().filter_map(Result::err) {
            tracing::warn!(store = self.store.kind(), error = %err, "could not take back a refused request's count");
        }
        self.refusals
            .forget(made.iter().map(|check| check.item.as_str()));
    }
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unix_seconds(now: SystemTime) -> i64 {
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| signed(since.as_secs()))
}

/// Rounded up to whole seconds: what `retry-after` says (callers add the floor of one).
pub fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests;
