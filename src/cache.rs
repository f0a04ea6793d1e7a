//! The key map cache, modelled on the Secrets Manager agent: each version remembers when it was
//! fetched; after the TTL the next request refreshes it; one refresh runs at a time (a burst of
//! callers makes one source call); a failed or malformed refresh keeps the last good map.
//! An unknown key may force an early refresh, at most once per `min_refresh_interval`, so a new
//! key works at once while a flood of bad keys cannot hammer the source.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::error::ProxyError;
use crate::keymap::KeyMap;
use crate::keys::{KeyEntry, WrapperKeyDigest};
use crate::secrets::{KeySource, SourceError};

/// An upstream 401 for a key from a map younger than this is believed as it is: the map was
/// just read, so re-reading it would not change the key.
pub const UPSTREAM_401_REFRESH_AGE: Duration = Duration::from_secs(5);

pub struct KeyCache {
    source: Box<dyn KeySource>,
    ttl: Duration,
    min_refresh_interval: Duration,
    state: RwLock<State>,
    /// Held for the whole of a refresh: single flight.
    refresh_lock: tokio::sync::Mutex<()>,
    /// The EMF namespace a failed load or refresh is counted in (`KeyMapLoadFailures`), if EMF
    /// records are written.
    failure_metric: Option<Arc<str>>,
}

#[derive(Clone)]
struct State {
    map: Option<Arc<KeyMap>>,
    fetched_at: Option<Instant>,
    /// Counts refresh attempts; a caller that waited for the lock sees it moved and stands down.
    attempts: u64,
    /// No refresh for expiry, or to recover from failure, before this instant.
    next_attempt: Instant,
    last_extra_refresh: Option<Instant>,
    /// Shared, so the per-request snapshot copies a pointer, not the message.
    last_failure: Option<Arc<str>>,
}

/// A successful lookup, with the map version it came from.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub entry: Arc<KeyEntry>,
    pub digest: WrapperKeyDigest,
    pub fetched_at: Instant,
}

/// What `/health` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheStatus {
    pub loaded: bool,
    pub source: &'static str,
    pub age_seconds: Option<u64>,
    pub last_error: Option<String>,
}

impl KeyCache {
    pub fn new(source: Box<dyn KeySource>, ttl: Duration, min_refresh_interval: Duration) -> Self {
        Self {
            source,
            ttl,
            min_refresh_interval,
            state: RwLock::new(State {
                map: None,
                fetched_at: None,
                attempts: 0,
                next_attempt: Instant::now(),
                last_extra_refresh: None,
                last_failure: None,
            }),
            refresh_lock: tokio::sync::Mutex::new(()),
            failure_metric: None,
        }
    }

    /// The same cache, counting each failed load or refresh in EMF's `namespace`.
    pub fn with_failure_metric(self, namespace: Option<Arc<str>>) -> Self {
        Self {
            failure_metric: namespace,
            ..self
        }
    }

    /// The first load, at start-up. The error is returned for the caller to decide whether the
    /// process can serve without a map (Secrets Manager: yes, with 503s) or not (a bad file).
    pub async fn load(&self) -> Result<(), SourceError> {
        let attempts = self.snapshot().attempts;
        self.refresh(attempts).await
    }

    /// Finds the entry for a presented wrapper key, refreshing the map first if it is due.
    pub async fn authorize(&self, presented: &str) -> Result<Authorized, ProxyError> {
        let digest = WrapperKeyDigest::of(presented);
        let mut state = self.snapshot();
        let now = Instant::now();
        let expired = state
            .fetched_at
            .is_none_or(|fetched_at| now.duration_since(fetched_at) >= self.ttl);
        if expired && now >= state.next_attempt {
            let _ = self.refresh(state.attempts).await;
            state = self.snapshot();
        }
        let map = state.map.clone().ok_or(ProxyError::KeyMapUnavailable)?;
        let entry = match map.lookup(&digest) {
            Some(entry) => entry.clone(),
            None if self.claim_extra_refresh() => {
                let _ = self.refresh(state.attempts).await;
                state = self.snapshot();
                let map = state.map.clone().ok_or(ProxyError::KeyMapUnavailable)?;
                map.lookup(&digest).cloned().ok_or(ProxyError::UnknownKey)?
            }
            None => return Err(ProxyError::UnknownKey),
        };
        if entry.is_expired(SystemTime::now()) {
            tracing::info!(caller = %entry.caller(&digest), "expired wrapper key refused");
            return Err(ProxyError::UnknownKey);
        }
        Ok(Authorized {
            entry,
            digest,
            fetched_at: state.fetched_at.unwrap_or(now),
        })
    }

    /// After the upstream refused a real key: if that key came from a map older than
    /// [`UPSTREAM_401_REFRESH_AGE`], re-read the map and return the entry if its real key changed.
    pub async fn refresh_after_upstream_401(&self, rejected: &Authorized) -> Option<Authorized> {
        let mut state = self.snapshot();
        if rejected.fetched_at.elapsed() < UPSTREAM_401_REFRESH_AGE {
            return None;
        }
        if state.fetched_at == Some(rejected.fetched_at) {
            self.refresh(state.attempts).await.ok()?;
            state = self.snapshot();
        }
        let entry = state.map.as_ref()?.lookup(&rejected.digest)?.clone();
        if entry.real_key == rejected.entry.real_key || entry.is_expired(SystemTime::now()) {
            return None;
        }
        // Only a rotation of the real key is retried: an entry that changed anything else (its
        // upstream above all, whose URL and auth the request was built for) is for the next
        // request to use, built and checked afresh.
        if !entry.same_but_for_its_key(&rejected.entry) {
            return None;
        }
        Some(Authorized {
            entry,
            digest: rejected.digest,
            fetched_at: state.fetched_at?,
        })
    }

    /// The key map in use, if one was ever loaded.
    pub fn map(&self) -> Option<Arc<KeyMap>> {
        self.snapshot().map
    }

    pub fn status(&self) -> CacheStatus {
        let state = self.snapshot();
        CacheStatus {
            loaded: state.map.is_some(),
            source: self.source.kind(),
            age_seconds: state.fetched_at.map(|at| at.elapsed().as_secs()),
            last_error: state.last_failure.map(|message| message.to_string()),
        }
    }

    fn snapshot(&self) -> State {
        // A poisoned lock only means a panic elsewhere mid-write of plain data; the data is
        // still a consistent `State` because every write replaces whole fields.
        match self.state.read() {
            Ok(state) => state.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = match self.state.write() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        change(&mut state);
    }

    /// True for the first caller in each `min_refresh_interval`.
    fn claim_extra_refresh(&self) -> bool {
        let now = Instant::now();
        let mut claimed = false;
        self.update(|state| {
            let allowed = state
                .last_extra_refresh
                .is_none_or(|last| now.duration_since(last) >= self.min_refresh_interval);
            if allowed {
                state.last_extra_refresh = Some(now);
                claimed = true;
            }
        });
        claimed
    }

    /// Fetches and parses the map unless another caller did so since `seen_attempts`.
    async fn refresh(&self, seen_attempts: u64) -> Result<(), SourceError> {
        let _flight = self.refresh_lock.lock().await;
        if self.snapshot().attempts != seen_attempts {
            return Ok(());
        }
        let result = self.source.fetch().await;
        let now = Instant::now();
        self.update(|state| {
            state.attempts += 1;
            match &result {
                Ok(map) => {
                    tracing::info!(
                        source = self.source.kind(),
                        keys = map.len(),
                        "key map loaded"
                    );
                    state.map = Some(map.clone());
                    state.fetched_at = Some(now);
                    state.next_attempt = now;
                    state.last_failure = None;
                }
                Err(err) => {
                    if state.map.is_some() {
                        match err {
                            SourceError::Transient(_) => tracing::warn!(
                                error = %err,
                                "key map refresh failed; serving the last good map"
                            ),
                            _ => tracing::error!(
                                error = %err,
                                "key map refresh failed; serving the last good map"
                            ),
                        }
                    } else {
                        tracing::error!(error = %err, "no key map could be loaded");
                    }
                    state.next_attempt = now + self.min_refresh_interval;
                    state.last_failure = Some(err.to_string().into());
                }
            }
        });
        if let (Err(_), Some(namespace)) = (&result, &self.failure_metric) {
            crate::metering::write_emf_line(&crate::metering::key_map_failure(namespace));
        }
        result.map(|_| ())
    }
}

#[cfg(test)]
mod tests;
