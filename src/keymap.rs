//! The key map document and its parsed, immutable form, in both of its versions.
//!
//! Flat (the original): a JSON object whose member names are wrapper keys, or
//! `sha256:<lowercase hex digest of one>` so the document need not hold client keys in plain
//! text, and whose values are the real key as a string or an entry object (`entry.rs`).
//! Version 2: `{"version": 2, "upstreams": {…}, "tenants": {…}, "keys": {…}}`, where `keys`
//! holds exactly those members, `upstreams` names where they go (`upstreams.rs`) and `tenants`
//! the tenants and their shared limits (`limits.rs`). A flat map never has a number
//! as a value, so `"version": 2` cannot be mistaken for one. Unknown fields are refused
//! everywhere, so a typo cannot silently drop a policy. Errors name members by position, never
//! by name, and never quote a value: serde's own messages can quote input, so none is passed on.

mod entry;
mod limits;
mod node;
mod upstreams;

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde_json::Value;

use crate::keys::{KeyEntry, WrapperKeyDigest};
use crate::routes::RouteGroup;
use crate::upstream::Upstream;
pub use entry::parse_rfc3339;
use node::{Flat, Node};
pub use upstreams::UpstreamsByName;

/// An immutable, parsed key map. A new version of the secret is a new `KeyMap`.
#[derive(Debug, Default)]
pub struct KeyMap {
    /// Each entry with its member's position in the document (for the duplicate-key error,
    /// found while the map is built, without a second map).
    entries: HashMap<WrapperKeyDigest, (usize, Arc<KeyEntry>), BuildHasherDefault<DigestHasher>>,
    /// The document's named upstreams, in document order (for `/health`).
    upstreams: Vec<Arc<Upstream>>,
}

/// The map's keys are SHA-256 digests, already uniform: their bytes are folded into the hash as
/// they are, instead of through SipHash (about 3,500 instructions per lookup under callgrind).
/// Only the key map's own members are ever inserted, so no client can choose colliding keys.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(23) ^ u64::from_le_bytes(word);
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyMapError {
    #[error("not valid JSON: {0}")]
    Syntax(String),
    #[error("the key map must be a JSON object of {{\"wrapper key\": \"real key\"}} members")]
    NotAnObject,
    #[error("member #{index}: the wrapper key is empty")]
    EmptyWrapperKey { index: usize },
    #[error("member #{index}: a sha256: name must be followed by 64 lowercase hex digits")]
    BadDigest { index: usize },
    #[error("member #{index}: the same wrapper key as member #{first}")]
    DuplicateWrapperKey { index: usize, first: usize },
    #[error(
        "member #{index}: the value must be the real key as a string, or an object with \"api_key\""
    )]
    BadValue { index: usize },
    #[error("member #{index}: \"api_key\" is required (its upstream's auth needs a key)")]
    MissingApiKey { index: usize },
    #[error("member #{index}: \"upstream\" must name one of the document's \"upstreams\"")]
    UnknownUpstream { index: usize },
    #[error(
        "member #{index}: \"model_map\" must be an object of client model name → upstream model name strings"
    )]
    BadModelMap { index: usize },
    #[error("\"version\" must be 2 (leave it out for a flat key map)")]
    BadVersion,
    /// Its name is not shown: a document that forgot to wrap its keys in `keys` has wrapper
    /// keys there.
    #[error(
        "an unknown top-level member (a version 2 key map has only version, upstreams, tenants, keys)"
    )]
    UnknownTopLevelMember,
    #[error("a version 2 key map needs \"keys\": an object of wrapper key members")]
    MissingKeys,
    #[error("\"{member}\" must be a JSON object")]
    MemberNotAnObject { member: &'static str },
    #[error("upstream #{upstream}: {problem}")]
    BadUpstream {
        upstream: usize,
        problem: upstreams::Problem,
    },
    #[error("member #{index}: the real key must be a non-empty string an HTTP header can carry")]
    BadRealKey { index: usize },
    #[error(
        "member #{index}: unknown field {field} (allowed: api_key, tenant, models, routes, expires_at, upstream, model_map, id, limits)"
    )]
    UnknownField { index: usize, field: String },
    #[error("member #{index}: \"tenant\" must be a non-empty string")]
    BadTenant { index: usize },
    #[error(
        "member #{index}: \"tenant\" must name one of the document's \"tenants\" (list every tenant there, with or without limits)"
    )]
    UnknownTenant { index: usize },
    #[error("member #{index}: \"id\" must be 1 to 128 letters, digits or . _ - : @ / + = (no #)")]
    BadId { index: usize },
    #[error(
        "member #{index}: \"limits\" must be an object of positive integers (at most 2^53 - 1) among requests_per_minute, tokens_per_minute, tokens_per_day, tokens_per_month"
    )]
    BadLimits { index: usize },
    #[error(
        "tenant #{tenant}: a tenant's name must be 1 to 128 letters, digits or . _ - : @ / + = (no #)"
    )]
    BadTenantName { tenant: usize },
    #[error("tenant #{tenant}: a tenant must be an object whose only member is \"limits\"")]
    BadTenantEntry { tenant: usize },
    #[error(
        "tenant #{tenant}: \"limits\" must be an object of positive integers (at most 2^53 - 1) among requests_per_minute, tokens_per_minute, tokens_per_day, tokens_per_month"
    )]
    BadTenantLimits { tenant: usize },
    #[error(
        "member #{index}: \"models\" must be a non-empty list of model names (leave it out to allow every model)"
    )]
    BadModels { index: usize },
    #[error(
        "member #{index}: \"routes\" must be a non-empty list of route groups ({})",
        RouteGroup::names().collect::<Vec<_>>().join(", ")
    )]
    BadRoutes { index: usize },
    #[error(
        "member #{index}: \"expires_at\" must be an RFC 3339 time such as \"2026-12-31T23:59:59Z\""
    )]
    BadExpiry { index: usize },
}

impl KeyMap {
    pub fn parse(document: &[u8]) -> Result<Self, KeyMapError> {
        // The commonest document, every value a real key, is read without copying its strings
        // (a 10,000-key map is most of a start's CPU); any other is read as `Node`s.
        if let Ok(Flat(members)) = serde_json::from_slice::<Flat>(document) {
            let plain = |index, real_key: Cow<'_, str>| entry::plain(index, &real_key);
            return Self::from_members(members, plain, &UpstreamsByName::default());
        }
        let top = serde_json::from_slice::<Node>(document).map_err(|err| {
            match err.classify() {
                // Syntax errors say where, and never quote the input.
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    KeyMapError::Syntax(err.to_string())
                }
                _ => KeyMapError::NotAnObject,
            }
        })?;
        let Node::Object(members) = top else {
            return Err(KeyMapError::NotAnObject);
        };
        let structured = members.iter().any(|(name, value)| {
            name == "version" && matches!(value, Node::Value(Value::Number(_)))
        });
        if structured {
            Self::parse_version_2(members)
        } else {
            Self::from_keys(members, &UpstreamsByName::default(), &None)
        }
    }

    fn parse_version_2(members: Vec<(String, Node)>) -> Result<Self, KeyMapError> {
        let (mut keys, mut upstreams, mut tenants) = (None, UpstreamsByName::default(), None);
        for (name, value) in members {
            match (name.as_str(), value) {
                ("version", Node::Value(version)) if version == 2 => {}
                ("version", _) => return Err(KeyMapError::BadVersion),
                ("upstreams", Node::Object(named)) => upstreams = UpstreamsByName::parse(named)?,
                ("keys", Node::Object(members)) => keys = Some(members),
                ("tenants", Node::Object(named)) => tenants = Some(limits::parse_tenants(named)?),
                ("upstreams" | "keys" | "tenants", _) => {
                    return Err(KeyMapError::MemberNotAnObject {
                        member: match name.as_str() {
                            "keys" => "keys",
                            "tenants" => "tenants",
                            _ => "upstreams",
                        },
                    });
                }
                _ => return Err(KeyMapError::UnknownTopLevelMember),
            }
        }
        Self::from_keys(keys.ok_or(KeyMapError::MissingKeys)?, &upstreams, &tenants)
    }

    fn from_keys(
        members: Vec<(String, Node)>,
        upstreams: &UpstreamsByName,
        tenants: &limits::Tenants,
    ) -> Result<Self, KeyMapError> {
        let parse = |index, value| entry::parse(index, value, upstreams, tenants);
        Self::from_members(members, parse, upstreams)
    }

    /// The map of `members` (wrapper key or digest, value), each value read by `entry_of`.
    fn from_members<V>(
        members: Vec<(impl AsRef<str>, V)>,
        entry_of: impl Fn(usize, V) -> Result<KeyEntry, KeyMapError>,
        upstreams: &UpstreamsByName,
    ) -> Result<Self, KeyMapError> {
        let mut entries: HashMap<_, (usize, Arc<KeyEntry>), BuildHasherDefault<DigestHasher>> =
            HashMap::with_capacity_and_hasher(members.len(), Default::default());
        for (position, (name, value)) in members.into_iter().enumerate() {
            let index = position + 1;
            match entries.entry(member_digest(index, name.as_ref())?) {
                Entry::Occupied(first) => {
                    let first = first.get().0;
                    return Err(KeyMapError::DuplicateWrapperKey { index, first });
                }
                Entry::Vacant(vacant) => {
                    vacant.insert((index, Arc::new(entry_of(index, value)?)));
                }
            }
        }
        Ok(Self {
            entries,
            upstreams: upstreams.in_order(),
        })
    }

    pub fn lookup(&self, digest: &WrapperKeyDigest) -> Option<&Arc<KeyEntry>> {
        self.entries.get(digest).map(|(_, entry)| entry)
    }

    /// The named upstreams the document declares.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn member_digest(index: usize, name: &str) -> Result<WrapperKeyDigest, KeyMapError> {
    if name.is_empty() {
        return Err(KeyMapError::EmptyWrapperKey { index });
    }
    digest_of_member(name).ok_or(KeyMapError::BadDigest { index })
}

/// The digest a member name stands for: its `sha256:` hex, or the plain wrapper key hashed.
pub fn digest_of_member(name: &str) -> Option<WrapperKeyDigest> {
    match name.strip_prefix("sha256:") {
        Some(hex) => WrapperKeyDigest::from_hex(hex),
        None => Some(WrapperKeyDigest::of(name)),
    }
}

#[cfg(test)]
mod tests;
