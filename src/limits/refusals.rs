//! Refusals this process has seen, remembered for a while so that a client hammering an
//! exhausted key costs no store write per request, and the 429 a refusal becomes.
//!
//! What is remembered is each window's counts, not a verdict: every request is judged against
//! its own limits as the key map has them now, so a raised limit applies at once. A spent budget
//! stays spent, but a refusal can also come from other requests' reservations, which settle
//! lower: so a window is remembered for a minute at most (to its end, for a minute window), and
//! forgotten as soon as this process gives counts back to it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use super::check::Check;
use super::store::Counts;
use super::{RateHeaders, Refusal, Trio, unix_seconds};

/// Item name → its counts when a request counting there was last refused.
#[derive(Default)]
pub struct Refusals(Mutex<HashMap<String, Remembered>>);

#[derive(Clone, Copy, Debug)]
struct Remembered {
    until: i64,
    counts: Counts,
}

/// Past this many remembered windows, those no longer remembered are dropped.
const REMEMBER_AT_MOST: usize = 4_096;

/// The longest a window is remembered, in seconds.
const REMEMBER_SECONDS: i64 = 60;

impl Refusals {
    /// The remembered counts of those of `checks` this process saw refuse recently.
    pub fn recall<'a>(&self, checks: &'a [Check], now: SystemTime) -> Vec<(&'a Check, Counts)> {
        let now = unix_seconds(now);
        let remembered = self.lock();
        checks
            .iter()
            .filter_map(|check| {
                let seen = remembered.get(&check.item)?;
                (seen.until > now).then_some((check, seen.counts))
            })
            .collect()
    }

    /// Remembers the counts of every window a refused request counted in.
    pub fn remember(&self, seen: &[(&Check, Counts)], now: SystemTime) {
        let now = unix_seconds(now);
        let mut remembered = self.lock();
        if remembered.len() >= REMEMBER_AT_MOST {
            remembered.retain(|_, seen| seen.until > now);
        }
        for (check, counts) in seen {
            if remembered.len() < REMEMBER_AT_MOST || remembered.contains_key(&check.item) {
                let until = check.window.end.min(now + REMEMBER_SECONDS);
                let counts = *counts;
                remembered.insert(check.item.clone(), Remembered { until, counts });
            }
        }
    }

    /// Counts given back to these items: what was seen there may no longer hold.
    pub fn forget<'a>(&self, items: impl Iterator<Item = &'a str>) {
        let mut remembered = self.lock();
        for item in items {
            remembered.remove(item);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Remembered>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The 429 for a request whose windows stand at `seen`: named after `refusing`, the window it
/// does not fit, or the window it alone is larger than (`too_large`); the headers describe every
/// window seen.
pub fn refusal(
    seen: &[(&Check, Counts)],
    now: SystemTime,
    refusing: &Check,
    too_large: bool,
) -> Refusal {
    let mut headers = RateHeaders::default();
    for (check, counts) in seen {
        headers.merge(check.trios(*counts, now));
    }
    let reset = refusing.window.remaining(now);
    if too_large {
        // The window's count is not known without a write; the limit is what it could hold.
        let limit = refusing.tokens.map_or(0, |(limit, _)| limit);
        headers.merge(RateHeaders::tokens_only(Trio::new(limit, limit, reset)));
        let name = refusing.refused_by(Counts::default());
        return Refusal::new(name, limit, reset, headers, Some(refusing.add_tokens));
    }
    let counts = seen
        .iter()
        .find(|(check, _)| std::ptr::eq(*check, refusing))
        .map_or_else(Counts::default, |(_, counts)| *counts);
    let name = refusing.refused_by(counts);
    Refusal::new(name, refusing.limit_of(name.kind), reset, headers, None)
}

/// Of the windows in `seen` the request does not fit, the longest: a spent budget outlasts a
/// minute, so it is the one to report.
pub fn longest_refusing<'a>(seen: &[(&'a Check, Counts)]) -> Option<&'a Check> {
    seen.iter()
        .filter(|(check, counts)| !check.fits(*counts))
        .max_by_key(|(check, _)| check.window.period)
        .map(|(check, _)| *check)
}
