//! One member of the key map's keys: the real key as a string, or an entry object with the key's
//! policy and upstream. Checked field by field; a field's error names the member's position.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::limits::{Tenants, is_counter_name, parse_limits};
use super::node::Node;
use super::{KeyMapError, UpstreamsByName};
use crate::keys::{KeyEntry, KeyPolicy, RealKey};
use crate::routes::RouteGroup;
use crate::upstream::DEFAULT_NAME;

/// A member whose value is the real key itself.
pub fn plain(index: usize, key: &str) -> Result<KeyEntry, KeyMapError> {
    real_key(index, Some(key)).map(KeyEntry::for_key)
}

/// A real key: a non-empty string that can be sent as a header value.
fn real_key(index: usize, key: Option<&str>) -> Result<RealKey, KeyMapError> {
    key.filter(|key| !key.is_empty())
        .and_then(RealKey::new)
        .ok_or(KeyMapError::BadRealKey { index })
}

pub fn parse(
    index: usize,
    value: Node,
    upstreams: &UpstreamsByName,
    tenants: &Tenants,
) -> Result<KeyEntry, KeyMapError> {
    let fields = match value {
        Node::Value(Value::String(key)) => return plain(index, &key),
        Node::Object(fields) => fields,
        Node::Value(_) => return Err(KeyMapError::BadValue { index }),
    };
    let mut entry = KeyEntry::default();
    let mut policy = KeyPolicy::default();
    for (field, value) in fields {
        let value = value.into_value();
        match field.as_str() {
            "api_key" => entry.real_key = Some(real_key(index, value.as_str())?),
            "tenant" => {
                let name = value.as_str().filter(|name| !name.is_empty());
                policy.tenant = Some(name.ok_or(KeyMapError::BadTenant { index })?.to_owned());
            }
            "models" => {
                policy.models = Some(parse_models(&value).ok_or(KeyMapError::BadModels { index })?)
            }
            "routes" => {
                policy.routes = Some(parse_routes(&value).ok_or(KeyMapError::BadRoutes { index })?)
            }
            "expires_at" => {
                let time = value.as_str().and_then(parse_rfc3339);
                policy.expires_at = Some(time.ok_or(KeyMapError::BadExpiry { index })?);
            }
            // `"default"` names the `UPSTREAM_BASE_URL` upstream, as leaving the field out does.
            "upstream" if value.as_str() == Some(DEFAULT_NAME) => entry.upstream = None,
            "upstream" => {
                let upstream = value.as_str().and_then(|name| upstreams.get(name));
                entry.upstream = Some(upstream.ok_or(KeyMapError::UnknownUpstream { index })?);
            }
            "model_map" => {
                let map = parse_model_map(value).ok_or(KeyMapError::BadModelMap { index })?;
                policy.model_map = Some(map);
            }
            "id" => {
                let id = value.as_str().filter(|id| is_counter_name(id));
                let id = id.ok_or(KeyMapError::BadId { index })?.to_owned();
                policy.limits.get_or_insert_default().id = Some(id);
            }
            "limits" => {
                let own = parse_limits(&value).ok_or(KeyMapError::BadLimits { index })?;
                policy.limits.get_or_insert_default().own = Some(own);
            }
            _ => {
                return Err(KeyMapError::UnknownField {
                    index,
                    field: printable_field_name(&field),
                });
            }
        }
    }
    let needs_key = entry
        .upstream
        .as_ref()
        .is_none_or(|upstream| upstream.auth.needs_api_key());
    if needs_key && entry.real_key.is_none() {
        return Err(KeyMapError::MissingApiKey { index });
    }
    // With a `tenants` member, every tenant a key names must be there: a misspelt name would
    // otherwise drop the tenant's limits without a word.
    if let (Some(tenant), Some(tenants)) = (&policy.tenant, tenants) {
        let limits = tenants
            .get(tenant)
            .ok_or(KeyMapError::UnknownTenant { index })?;
        if let Some(limits) = limits {
            policy.limits.get_or_insert_default().tenant = Some(*limits);
        }
    }
    Ok(entry.with_policy(policy))
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

fn parse_model_map(value: Value) -> Option<HashMap<String, String>> {
    let Value::Object(members) = value else {
        return None;
    };
    members
        .into_iter()
        .map(|(from, to)| match to {
            Value::String(to) if !from.is_empty() && !to.is_empty() => Some((from, to)),
            _ => None,
        })
        .collect()
}

pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
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
