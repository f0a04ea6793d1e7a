//! Wrapper keys, real keys, and what one wrapper key grants.
//! The proxy knows wrapper keys only by their SHA-256 digest. No type here can print a key:
//! `Debug` writes `*****`, and the real key is kept as a header value marked sensitive.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::HeaderValue;
use sha2::{Digest, Sha256};

use crate::limits::{Limits, Subject};
use crate::routes::RouteGroup;
use crate::upstream::Upstream;

/// SHA-256 of a wrapper key: the only form in which the proxy keeps or compares wrapper keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WrapperKeyDigest(pub(crate) [u8; 32]);

impl WrapperKeyDigest {
    pub fn of(presented: &str) -> Self {
        Self(Sha256::digest(presented.as_bytes()).into())
    }

    /// The `sha256:<hex>` member name that stands for this key in a key map.
    pub fn member_name(&self) -> String {
        with_hex("sha256:", &self.0)
    }

    /// `key:` and the first 8 hex digits: the key id logs show (32 bits: enough to tell keys
    /// apart, far too little to recover one).
    pub fn key_id(&self) -> String {
        with_hex("key:", &self.0[..4])
    }

    /// Parses the lowercase hex after `sha256:`; `None` unless it is exactly 64 such digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut digest = [0u8; 32];
        for (out, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
            let high = HEX.iter().position(|&c| c == pair[0])?;
            let low = HEX.iter().position(|&c| c == pair[1])?;
            *out = u8::try_from(high << 4 | low).ok()?;
        }
        Some(Self(digest))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for WrapperKeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WrapperKeyDigest(*****)")
    }
}

/// The upstream key, kept ready as the header value it is mostly sent as (`Authorization:
/// Bearer …`), marked sensitive so HTTP libraries keep it out of their own debug output. One
/// allocation per key: a map may hold thousands, and each byte stays resident (B8).
#[derive(Clone, PartialEq, Eq)]
pub struct RealKey {
    bearer: HeaderValue,
}

const BEARER: &str = "Bearer ";

impl RealKey {
    pub(crate) fn new(key: &str) -> Option<Self> {
        let mut bearer = String::with_capacity(key.len() + BEARER.len());
        bearer.push_str(BEARER);
        bearer.push_str(key);
        let mut bearer = HeaderValue::try_from(bearer).ok()?;
        bearer.set_sensitive(true);
        Some(Self { bearer })
    }

    /// `Bearer <key>`.
    pub fn authorization(&self) -> &HeaderValue {
        &self.bearer
    }

    /// The key alone (Azure's `api-key`), made when asked: few upstreams want it.
    pub fn raw(&self) -> Option<HeaderValue> {
        let key = self.bearer.as_bytes().get(BEARER.len()..)?;
        let mut raw = HeaderValue::from_bytes(key).ok()?;
        raw.set_sensitive(true);
        Some(raw)
    }
}

impl fmt::Debug for RealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RealKey(*****)")
    }
}

/// What one wrapper key grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyEntry {
    /// `None` only where the upstream's auth needs no key (`none`, `aws-sigv4`).
    pub real_key: Option<RealKey>,
    /// A named upstream from the key map; `None`: the `UPSTREAM_BASE_URL` one.
    pub upstream: Option<Arc<Upstream>>,
    /// Everything else the key carries; `None` when it carries nothing else, as most keys of a
    /// large flat map do, so each of those costs its key alone (the idle RSS, B8).
    pub policy: Option<Box<KeyPolicy>>,
}

/// A key's policy beyond its real key and upstream (`KeyEntry::policy`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Client-facing model name → the name sent upstream (an Azure deployment, a Bedrock id).
    pub model_map: Option<HashMap<String, String>>,
    /// Names the caller in logs and metrics; never a key.
    pub tenant: Option<String>,
    /// The models this key may use; `None` means any model.
    pub models: Option<Vec<String>>,
    /// The route groups this key may call; `None` means every group (see `policy.rs` for the
    /// one exception, a key restricted by `models`).
    pub routes: Option<Vec<RouteGroup>>,
    /// After this instant the key is refused like an unknown key.
    pub expires_at: Option<SystemTime>,
    /// Its limits, if it has any.
    pub limits: Option<KeyLimits>,
}

/// The policy of a key that has none.
static NO_POLICY: KeyPolicy = KeyPolicy {
    model_map: None,
    tenant: None,
    models: None,
    routes: None,
    expires_at: None,
    limits: None,
};

/// A key's limits and whose counters they count in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    /// The entry's `id`; `None`: the key id the logs show, so a rotated key keeps its counters
    /// only if the map gives old and new the same `id`.
    pub id: Option<String>,
    /// The key's own limits.
    pub own: Option<Limits>,
    /// Its tenant's limits (the document's `tenants`), shared by every key of the tenant.
    pub tenant: Option<Limits>,
}

impl KeyEntry {
    /// A flat member: a real key, the default upstream, no policy.
    pub fn for_key(real_key: RealKey) -> Self {
        Self {
            real_key: Some(real_key),
            ..Self::default()
        }
    }

    /// The key's policy (an empty one if it has none).
    pub fn policy(&self) -> &KeyPolicy {
        self.policy.as_deref().unwrap_or(&NO_POLICY)
    }

    /// Sets the policy, leaving none when `policy` is empty.
    pub fn with_policy(self, policy: KeyPolicy) -> Self {
        Self {
            policy: (policy != NO_POLICY).then(|| Box::new(policy)),
            ..self
        }
    }

    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.policy()
            .expires_at
            .is_some_and(|expires_at| expires_at <= now)
    }

    /// Whether `other` grants the same as this entry, whatever its real key.
    pub fn same_but_for_its_key(&self, other: &Self) -> bool {
        let unkeyed = |entry: &Self| Self {
            real_key: None,
            ..entry.clone()
        };
        unkeyed(self) == unkeyed(other)
    }

    /// The name `model` goes upstream as, if this key's `model_map` renames it.
    pub fn mapped_model(&self, model: &str) -> Option<&str> {
        self.policy()
            .model_map
            .as_ref()?
            .get(model)
            .map(String::as_str)
    }

    pub fn allows_model(&self, model: &str) -> bool {
        self.policy()
            .models
            .as_ref()
            .is_none_or(|models| models.iter().any(|allowed| allowed == model))
    }

    /// Whether any limit applies to this key (its own or its tenant's).
    pub fn is_limited(&self) -> bool {
        self.policy()
            .limits
            .as_ref()
            .is_some_and(|limits| limits.own.is_some() || limits.tenant.is_some())
    }

    /// The id the key's own counters belong to: its `id`, else `key:` and 8 hex digits of the
    /// wrapper key's digest.
    pub fn counter_id(&self, digest: &WrapperKeyDigest) -> Cow<'_, str> {
        match self
            .policy()
            .limits
            .as_ref()
            .and_then(|limits| limits.id.as_deref())
        {
            Some(id) => Cow::Borrowed(id),
            None => Cow::Owned(digest.key_id()),
        }
    }

    /// The counters this key's requests count in: `counter_id` is its own.
    pub fn limit_subject<'a>(&'a self, counter_id: &'a str) -> Subject<'a> {
        let policy = self.policy();
        let limits = policy.limits.as_ref();
        Subject {
            key: limits
                .and_then(|limits| limits.own.as_ref())
                .map(|own| (counter_id, own)),
            tenant: policy
                .tenant
                .as_deref()
                .zip(limits.and_then(|limits| limits.tenant.as_ref())),
        }
    }

    /// Who is calling, for logs: the tenant, or else a short non-reversible key id.
    pub fn caller<'a>(&'a self, digest: &'a WrapperKeyDigest) -> Caller<'a> {
        Caller {
            entry: self,
            digest,
        }
    }
}

/// Displays the tenant name, or `key:` and the first 8 hex digits of the wrapper key's digest
/// (32 bits: enough to tell keys apart in logs, far too little to recover one).
pub struct Caller<'a> {
    entry: &'a KeyEntry,
    digest: &'a WrapperKeyDigest,
}

impl fmt::Display for Caller<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry.policy().tenant {
            Some(tenant) => f.write_str(tenant),
            None => f.write_str(&self.digest.key_id()),
        }
    }
}

/// `prefix` followed by `bytes` in lowercase hex.
pub(crate) fn with_hex(prefix: &str, bytes: &[u8]) -> String {
    let mut text = String::with_capacity(prefix.len() + 2 * bytes.len());
    text.push_str(prefix);
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    text
}

/// The `hash-key` command: reads one wrapper key from the first line of `input` and returns the
/// member name that stands for it in a key map. Reading stdin keeps the key out of shell history
/// and process listings.
pub fn hashed_member_name(input: impl std::io::BufRead) -> Result<String, &'static str> {
    let mut line = String::new();
    let mut input = input;
    input
        .read_line(&mut line)
        .map_err(|_| "could not read a key from standard input")?;
    let key = line.trim();
    if key.is_empty() {
        return Err(
            "no key on standard input; usage: printf '%s' \"$WRAPPER_KEY\" | openai-proxy hash-key",
        );
    }
    Ok(WrapperKeyDigest::of(key).member_name())
}

#[cfg(test)]
mod tests;
