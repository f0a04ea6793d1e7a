//! The window items one request counts in: for the key and for its tenant, a minute item (when
//! either per-minute limit is set) and a day and a month item (when those budgets are), each with
//! the limits it must fit and what the request adds there.

use std::time::SystemTime;

use super::store::{Counts, Fit, Update};
use super::window::{Period, Window};
use super::{LimitKind, LimitName, RateHeaders, Scope, Subject, Trio, signed};

/// One window item a request counts in, and the limits it must fit there.
pub struct Check {
    pub scope: Scope,
    pub window: Window,
    pub item: String,
    /// The requests-per-minute limit (minute windows only).
    pub requests: Option<u64>,
    pub tokens: Option<(u64, LimitKind)>,
    /// Tokens reserved here: the estimate where a token limit applies, else none.
    pub add_tokens: u64,
}

pub fn checks(subject: Subject<'_>, tokens: u64, now: SystemTime) -> Vec<Check> {
    let mut checks = Vec::new();
    let scopes = [
        (Scope::Key, "key", subject.key),
        (Scope::Tenant, "tenant", subject.tenant),
    ];
    for (scope, prefix, counter) in scopes {
        let Some((id, limits)) = counter else {
            continue;
        };
        let windows = [
            (
                Period::Minute,
                limits.requests_per_minute,
                limits.tokens_per_minute,
                LimitKind::TokensPerMinute,
            ),
            (
                Period::Day,
                None,
                limits.tokens_per_day,
                LimitKind::TokensPerDay,
            ),
            (
                Period::Month,
                None,
                limits.tokens_per_month,
                LimitKind::TokensPerMonth,
            ),
        ];
        for (period, requests, token_limit, kind) in windows {
            if requests.is_none() && token_limit.is_none() {
                continue;
            }
            let window = period.window_at(now);
            checks.push(Check {
                scope,
                item: window.item(prefix, id),
                window,
                requests,
                tokens: token_limit.map(|limit| (limit, kind)),
                add_tokens: if token_limit.is_some() { tokens } else { 0 },
            });
        }
    }
    checks
}

impl Check {
    pub fn update(&self) -> Update<'_> {
        Update {
            item: &self.item,
            expires_at: self.window.expires_at(),
            requests: 1,
            tokens: signed(self.add_tokens),
            fit: Fit {
                requests: self.requests,
                tokens: self.tokens.map(|(limit, _)| limit),
            },
        }
    }

    /// Whether the request fits this window at `counts`.
    pub fn fits(&self, counts: Counts) -> bool {
        self.update().fit.admits(counts, 1, signed(self.add_tokens))
    }

    /// Whether the request alone is larger than this window's token limit.
    pub fn is_too_large(&self) -> bool {
        self.tokens
            .is_some_and(|(limit, _)| self.add_tokens > limit)
    }

    /// `counts` (which include this request) without it.
    pub fn without(&self, counts: Counts) -> Counts {
        Counts {
            requests: counts.requests.saturating_sub(1),
            tokens: counts.tokens.saturating_sub(signed(self.add_tokens)),
        }
    }

    /// Which of this item's limits the counts `counts` leave no room in.
    pub fn refused_by(&self, counts: Counts) -> LimitName {
        let requests_full = self
            .requests
            .is_some_and(|limit| counts.requests.saturating_add(1) > signed(limit));
        let kind = match self.tokens {
            Some((_, kind)) if !requests_full => kind,
            _ => LimitKind::RequestsPerMinute,
        };
        LimitName {
            scope: self.scope,
            kind,
        }
    }

    pub fn limit_of(&self, kind: LimitKind) -> u64 {
        match (kind, self.tokens) {
            (LimitKind::RequestsPerMinute, _) | (_, None) => self.requests.unwrap_or_default(),
            (_, Some((limit, _))) => limit,
        }
    }

    /// The rate-limit headers' view of this item with counts `counts`.
    pub fn trios(&self, counts: Counts, now: SystemTime) -> RateHeaders {
        let reset = self.window.remaining(now);
        let left = |limit: u64, count: i64| limit.saturating_sub(count.max(0) as u64);
        RateHeaders {
            requests: self
                .requests
                .map(|limit| Trio::new(limit, left(limit, counts.requests), reset)),
            tokens: self
                .tokens
                .map(|(limit, _)| Trio::new(limit, left(limit, counts.tokens), reset)),
        }
    }
}
