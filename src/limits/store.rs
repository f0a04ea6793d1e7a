//! Where counters live: the `LimitStore` trait, and the in-process store (the embedded default).
//! A store does one thing: add to one counter item, atomically, only if the result fits the
//! limits given. Every limit the proxy enforces is that one operation, so a store that does it
//! exactly makes the limits exact; the same contract tests run against every store
//! (`limits/tests.rs`).

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;

use super::window::Clock;

/// One change to one counter item.
#[derive(Clone, Debug)]
pub struct Update<'a> {
    /// The item's name (`Window::item`).
    pub item: &'a str,
    /// When the item may be deleted, Unix seconds (the table's TTL attribute).
    pub expires_at: i64,
    pub requests: i64,
    pub tokens: i64,
    /// The limits the item's counts must stay within after adding; `None`: no condition. Each
    /// limit is at least what is added to its count (the limiter refuses a larger request itself).
    pub fit: Fit,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fit {
    pub requests: Option<u64>,
    pub tokens: Option<u64>,
}

/// An item's counts: after the update when it was made, as they stood when it was refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: i64,
    pub tokens: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    Made(Counts),
    Refused(Counts),
}

/// The store could not be reached or answered nonsense. The message names no key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

pub trait LimitStore: Send + Sync {
    /// `"memory"` or `"dynamodb"`, for logs and `/health`.
    fn kind(&self) -> &'static str;
    /// Whether every instance of the proxy sees the same counts.
    fn shared(&self) -> bool;
    fn update<'a>(&'a self, update: Update<'a>) -> BoxFuture<'a, Result<Counted, StoreError>>;
}

impl Fit {
    pub fn admits(&self, counts: Counts, requests: i64, tokens: i64) -> bool {
        let fits = |limit: Option<u64>, count: i64, add: i64| {
            limit.is_none_or(|limit| {
                count.saturating_add(add) <= i64::try_from(limit).unwrap_or(i64::MAX)
            })
        };
        fits(self.requests, counts.requests, requests) && fits(self.tokens, counts.tokens, tokens)
    }
}

/// Counters in this process's memory: exact for one process (the local server), but under
/// Lambda each execution environment would count alone (the proxy warns at start).
pub struct MemoryStore {
    items: Mutex<HashMap<String, Item>>,
    clock: Clock,
}

struct Item {
    counts: Counts,
    expires_at: i64,
}

/// Past this many items, expired ones are dropped before another is added.
const PRUNE_ABOVE: usize = 10_000;

impl MemoryStore {
    pub fn new(clock: Clock) -> Self {
        Self {
            items: Mutex::default(),
            clock,
        }
    }

    fn apply(&self, update: &Update<'_>) -> Counted {
        let mut items = self
            .items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if items.len() > PRUNE_ABOVE && !items.contains_key(update.item) {
            let now = self
                .clock
                .now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| {
                    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
                });
            items.retain(|_, item| item.expires_at > now);
        }
        let item = items.entry(update.item.to_owned()).or_insert(Item {
            counts: Counts::default(),
            expires_at: update.expires_at,
        });
        if !update
            .fit
            .admits(item.counts, update.requests, update.tokens)
        {
            return Counted::Refused(item.counts);
        }
        item.counts.requests = item.counts.requests.saturating_add(update.requests);
        item.counts.tokens = item.counts.tokens.saturating_add(update.tokens);
        item.expires_at = update.expires_at;
        Counted::Made(item.counts)
    }
}

impl LimitStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn shared(&self) -> bool {
        false
    }

    fn update<'a>(&'a self, update: Update<'a>) -> BoxFuture<'a, Result<Counted, StoreError>> {
        let counted = self.apply(&update);
        Box::pin(std::future::ready(Ok(counted)))
    }
}
