//! The key map's limits: `limits` objects (on an entry or a tenant), the top-level `tenants`
//! member that names tenants and their shared limits, and the counter ids (`id`) limits count in.

use std::collections::HashMap;

use serde_json::Value;

use super::KeyMapError;
use super::node::Node;
use crate::limits::Limits;

/// The document's `tenants`: name → its limits, if any. `None` when the document has none, so
/// a key's `tenant` is then only a name for logs.
pub type Tenants = Option<HashMap<String, Option<Limits>>>;

pub fn parse_tenants(
    members: Vec<(String, Node)>,
) -> Result<HashMap<String, Option<Limits>>, KeyMapError> {
    let mut tenants = HashMap::with_capacity(members.len());
    for (position, (name, value)) in members.into_iter().enumerate() {
        let tenant = position + 1;
        if !is_counter_name(&name) {
            return Err(KeyMapError::BadTenantName { tenant });
        }
        let Node::Object(fields) = value else {
            return Err(KeyMapError::BadTenantEntry { tenant });
        };
        let mut limits = None;
        for (field, value) in fields {
            match field.as_str() {
                "limits" => {
                    let parsed = parse_limits(&value.into_value());
                    limits = Some(parsed.ok_or(KeyMapError::BadTenantLimits { tenant })?);
                }
                _ => return Err(KeyMapError::BadTenantEntry { tenant }),
            }
        }
        tenants.insert(name, limits);
    }
    Ok(tenants)
}

/// The largest limit: the largest integer a JSON number (and a JavaScript reader of the table)
/// holds exactly, far from where counts could overflow.
pub const MAX_LIMIT: u64 = (1 << 53) - 1;

/// `{"requests_per_minute": 60, …}`: known members only, each a positive integer up to
/// `MAX_LIMIT`, at least one.
pub fn parse_limits(value: &Value) -> Option<Limits> {
    let members = value.as_object().filter(|members| !members.is_empty())?;
    let mut limits = Limits::default();
    for (name, value) in members {
        let number = value
            .as_u64()
            .filter(|&number| (1..=MAX_LIMIT).contains(&number))?;
        let slot = match name.as_str() {
            "requests_per_minute" => &mut limits.requests_per_minute,
            "tokens_per_minute" => &mut limits.tokens_per_minute,
            "tokens_per_day" => &mut limits.tokens_per_day,
            "tokens_per_month" => &mut limits.tokens_per_month,
            _ => return None,
        };
        *slot = Some(number);
    }
    Some(limits)
}

/// Counter ids and tenant names become part of counter item names (`key#<id>#minute#…`): 1 to
/// 128 letters, digits and `. _ - : @ / + =`, never the `#` that separates the parts.
pub fn is_counter_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:@/+=".contains(&b))
}
