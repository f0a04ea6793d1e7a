//! The key map document and its parsed, immutable form.
//!
//! A JSON object. Member name: the wrapper key itself, or `sha256:<lowercase hex digest of it>` so
//! the document need not hold client keys in plain text. Value: the real key as a string, or
//! `{"api_key", "tenant", "models", "routes", "expires_at"}` (only `api_key` required; unknown fields refused
//! so a typo cannot silently drop a policy). Errors name members by position, never by name,
//! and never quote a value: serde's own messages can quote input, so they are not passed on.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::keys::{KeyEntry, RealKey, WrapperKeyDigest};
use crate::routes::RouteGroup;

/// An immutable, parsed key map. A new version of the secret is a new `KeyMap`.
#[derive(Debug, Default)]
pub struct KeyMap {
    entries: HashMap<WrapperKeyDigest, Arc<KeyEntry>>,
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
    #[error("member #{index}: \"api_key\" is required")]
    MissingApiKey { index: usize },
    #[error("member #{index}: the real key must be a non-empty string an HTTP header can carry")]
    BadRealKey { index: usize },
    #[error(
        "member #{index}: unknown field {field} (allowed: api_key, tenant, models, routes, expires_at)"
    )]
    UnknownField { index: usize, field: String },
    #[error("member #{index}: \"tenant\" must be a non-empty string")]
    BadTenant { index: usize },
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
        let members = serde_json::from_slice::<Members>(document).map_err(|err| {
            match err.classify() {
                // Syntax errors say where, and never quote the input.
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    KeyMapError::Syntax(err.to_string())
                }
                _ => KeyMapError::NotAnObject,
            }
        })?;
        let mut entries = HashMap::with_capacity(members.0.len());
        let mut first_seen = HashMap::with_capacity(members.0.len());
        for (position, (name, value)) in members.0.into_iter().enumerate() {
            let index = position + 1;
            let digest = member_digest(index, &name)?;
            if let Some(&first) = first_seen.get(&digest) {
                return Err(KeyMapError::DuplicateWrapperKey { index, first });
            }
            first_seen.insert(digest, index);
            entries.insert(digest, Arc::new(parse_entry(index, value)?));
        }
        Ok(Self { entries })
    }

    pub fn lookup(&self, digest: &WrapperKeyDigest) -> Option<&Arc<KeyEntry>> {
        self.entries.get(digest)
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
    match name.strip_prefix("sha256:") {
        Some(hex) => WrapperKeyDigest::from_hex(hex).ok_or(KeyMapError::BadDigest { index }),
        None => Ok(WrapperKeyDigest::of(name)),
    }
}

fn parse_entry(index: usize, value: Value) -> Result<KeyEntry, KeyMapError> {
    let real_key = |value: &Value| {
        value
            .as_str()
            .filter(|key| !key.is_empty())
            .and_then(RealKey::new)
            .ok_or(KeyMapError::BadRealKey { index })
    };
    let fields = match value {
        Value::String(_) => {
            return Ok(KeyEntry {
                real_key: real_key(&value)?,
                tenant: None,
                models: None,
                routes: None,
                expires_at: None,
            });
        }
        Value::Object(fields) => fields,
        _ => return Err(KeyMapError::BadValue { index }),
    };
    let (mut api_key, mut tenant, mut models, mut routes, mut expires_at) =
        (None, None, None, None, None);
    for (field, value) in fields {
        match field.as_str() {
            "api_key" => api_key = Some(real_key(&value)?),
            "tenant" => {
                let name = value.as_str().filter(|name| !name.is_empty());
                tenant = Some(name.ok_or(KeyMapError::BadTenant { index })?.to_owned());
            }
            "models" => {
                models = Some(parse_models(&value).ok_or(KeyMapError::BadModels { index })?)
            }
            "routes" => {
                routes = Some(parse_routes(&value).ok_or(KeyMapError::BadRoutes { index })?)
            }
            "expires_at" => {
                let time = value.as_str().and_then(parse_rfc3339);
                expires_at = Some(time.ok_or(KeyMapError::BadExpiry { index })?);
            }
            _ => {
                return Err(KeyMapError::UnknownField {
                    index,
                    field: printable_field_name(&field),
                });
            }
        }
    }
    Ok(KeyEntry {
        real_key: api_key.ok_or(KeyMapError::MissingApiKey { index })?,
        tenant,
        models,
        routes,
        expires_at,
    })
}

fn parse_routes(value: &Value) -> Option<Vec<RouteGroup>> {
    let list = value.as_array().filter(|list| !list.is_empty())?;
    list.iter()
        .map(|group| group.as_str().and_then(RouteGroup::from_name))
        .collect()
}

fn parse_models(value: &Value) -> Option<Vec<String>> {
    let list = value.as_array().filter(|list| !list.is_empty())?;
    list.iter()
        .map(|model| {
            model
                .as_str()
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
        })
        .collect()
}

fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let time =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    // Times before 1970 are long past either way.
    let seconds = u64::try_from(time.unix_timestamp()).unwrap_or(0);
    UNIX_EPOCH.checked_add(Duration::new(seconds, time.nanosecond()))
}

/// Field-name typos are worth showing (`modles`); anything that does not look like a field name
/// might be a pasted key and is not echoed.
fn printable_field_name(field: &str) -> String {
    let looks_like_a_field =
        field.len() <= 24 && field.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if looks_like_a_field {
        format!("\"{field}\"")
    } else {
        "(name not shown)".to_owned()
    }
}

/// The document's members in file order, duplicates kept, so errors can point at positions.
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

#[cfg(test)]
mod tests;
