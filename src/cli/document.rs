//! The key map document as `openai-proxy keys` edits it: a JSON tree, always version 2 after an
//! edit (a flat document is migrated, its plain wrapper keys hashed), whose members are found by
//! the id their counters belong to. Every change is a pure function of the tree; whether the
//! result is a key map the proxy would accept is decided by the proxy's own parser, before
//! anything is written.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::keymap::{KeyMap, KeyMapError, digest_of_member};
use crate::keys::WrapperKeyDigest;

/// A parsed document, version 2: its `keys`, and its other members as they were. It holds real
/// keys, so it has no `Debug`: nothing can print it.
pub struct Document {
    head: Map<String, Value>,
    keys: Map<String, Value>,
    /// It was flat when read, and is rewritten as version 2.
    pub migrated: bool,
    /// Plain wrapper keys hashed so far (a flat document's, when it was read).
    pub hashed: usize,
}

/// Why an edit cannot be made. Messages name ids and tenants, never a key.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the key map is not valid: {0}")]
    Invalid(KeyMapError),
    #[error("the change would make the key map invalid, so nothing was written: {0}")]
    WouldBreak(KeyMapError),
    #[error("no key has the id {0:?} (see `openai-proxy keys list`)")]
    NoSuchId(String),
    #[error(
        "a key with the id {0:?} exists already (use `openai-proxy keys rotate` for a new key for it)"
    )]
    IdTaken(String),
    #[error(
        "the keys of the id {0:?} differ in more than their real keys and expiry (they share a budget, not a policy): revoke or re-create them one by one (revoke --key)"
    )]
    MixedEntry(String),
    #[error("every key of the id {0:?} has expired: create a new key instead")]
    Expired(String),
    #[error(
        "the id {0:?} has no key with the key id {1:?} (see the KEY ID column of `openai-proxy keys list`)"
    )]
    NoSuchKey(String, String),
}

impl Document {
    /// Reads a document the proxy accepts (anything else is refused: an edit must start from a
    /// valid map), as version 2.
    pub fn parse(bytes: &[u8]) -> Result<Self, EditError> {
        KeyMap::parse(bytes).map_err(EditError::Invalid)?;
        let Ok(Value::Object(mut root)) = serde_json::from_slice::<Value>(bytes) else {
            return Err(EditError::Invalid(KeyMapError::NotAnObject));
        };
        let versioned = root.get("version").is_some_and(Value::is_number);
        if versioned {
            let keys = match root.shift_remove("keys") {
                Some(Value::Object(keys)) => keys,
                _ => Map::new(),
            };
            return Ok(Self {
                head: root,
                keys,
                migrated: false,
                hashed: 0,
            });
        }
        let mut document = Self {
            head: Map::from_iter([("version".to_owned(), json!(2))]),
            keys: root,
            migrated: true,
            hashed: 0,
        };
        document.hash_plain_names();
        Ok(document)
    }

    /// The document as it is written, pretty (a file people read) or compact (a secret, whose
    /// value may hold 64 KiB), and a key map the proxy accepts.
    pub fn to_bytes(&self, pretty: bool) -> Result<Vec<u8>, EditError> {
        let mut root = self.head.clone();
        root.insert("keys".to_owned(), Value::Object(self.keys.clone()));
        let written = if pretty {
            serde_json::to_vec_pretty(&root)
        } else {
            serde_json::to_vec(&root)
        };
        let mut bytes = written.unwrap_or_default();
        bytes.push(b'\n');
        KeyMap::parse(&bytes).map_err(EditError::WouldBreak)?;
        Ok(bytes)
    }

    /// Every plain wrapper key's member renamed to its `sha256:` name, in place (`keys
    /// migrate`); adds how many to `hashed`.
    pub fn hash_plain_names(&mut self) {
        let members = std::mem::take(&mut self.keys);
        for (name, value) in members {
            if name.starts_with("sha256:") {
                self.keys.insert(name, value);
            } else {
                self.hashed += 1;
                self.keys
                    .insert(WrapperKeyDigest::of(&name).member_name(), value);
            }
        }
    }

    /// Adds a member for `wrapper` with `entry` (an object). Its `id` must be new.
    pub fn add(
        &mut self,
        wrapper: &WrapperKeyDigest,
        entry: Map<String, Value>,
    ) -> Result<(), EditError> {
        if let Some(Value::String(id)) = entry.get("id")
            && self.members_with(id).next().is_some()
        {
            return Err(EditError::IdTaken(id.clone()));
        }
        self.keys
            .insert(wrapper.member_name(), Value::Object(entry));
        Ok(())
    }

    /// A new wrapper key for the entry `id`, with the same contents and the same counters; the
    /// old keys expire at `old_until` (removed at once when `None`).
    pub fn rotate(
        &mut self,
        id: &str,
        wrapper: &WrapperKeyDigest,
        old_until: Option<SystemTime>,
    ) -> Result<(), EditError> {
        let names = self.member_names_with(id)?;
        self.same_policy(id, &names)?;
        // The model for the new key: the member that expires last (a rotation's grace only ever
        // brings an old key's expiry forward), or never.
        let expiry = |name: &String| {
            let at = self
                .keys
                .get(name)
                .and_then(|value| value.get("expires_at"));
            at.and_then(Value::as_str)
                .and_then(crate::keymap::parse_rfc3339)
                .map_or((1, SystemTime::UNIX_EPOCH), |at| (0, at))
        };
        let newest = names
            .iter()
            .max_by_key(|name| expiry(name))
            .cloned()
            .unwrap_or_default();
        if let (0, at) = expiry(&newest)
            && at <= SystemTime::now()
        {
            return Err(EditError::Expired(id.to_owned()));
        }
        let mut entry = match self.keys.get(&newest) {
            Some(Value::Object(entry)) => entry.clone(),
            Some(Value::String(real)) => Map::from_iter([("api_key".to_owned(), json!(real))]),
            _ => Map::new(),
        };
        // The id is written out, so counters stay with the entry whichever key is used.
        entry.insert("id".to_owned(), json!(id));
        for name in &names {
            match old_until {
                Some(until) => self.expire(name, id, until),
                None => {
                    self.keys.shift_remove(name);
                }
            }
        }
        self.keys
            .insert(wrapper.member_name(), Value::Object(entry));
        Ok(())
    }

    /// Removes every key of the entry `id`, or only its key with the key id `key`; how many.
    pub fn revoke(&mut self, id: &str, key: Option<&str>) -> Result<usize, EditError> {
        let mut names = self.member_names_with(id)?;
        if let Some(key) = key {
            names.retain(|name| key_id(name) == key);
            if names.is_empty() {
                return Err(EditError::NoSuchKey(id.to_owned(), key.to_owned()));
            }
        }
        for name in &names {
            self.keys.shift_remove(name);
        }
        Ok(names.len())
    }

    /// Sets the real key of every key of the entry `id`.
    pub fn set_real_key(&mut self, id: &str, real_key: &str) -> Result<usize, EditError> {
        let names = self.member_names_with(id)?;
        self.same_policy(id, &names)?;
        for name in &names {
            let keys = &mut self.keys;
            match keys.get_mut(name) {
                Some(Value::Object(entry)) => {
                    entry.insert("api_key".to_owned(), json!(real_key));
                }
                Some(value) => *value = json!(real_key),
                None => {}
            }
        }
        Ok(names.len())
    }

    pub fn keys(&self) -> &Map<String, Value> {
        &self.keys
    }

    /// Several keys may share an id to share a budget while differing in upstream, models or
    /// tenant: one new key, or one real key, cannot stand for all of them.
    fn same_policy(&self, id: &str, names: &[String]) -> Result<(), EditError> {
        let policy = |name: &String| match self.keys.get(name) {
            Some(Value::Object(entry)) => entry
                .iter()
                .filter(|(field, _)| !matches!(field.as_str(), "api_key" | "expires_at" | "id"))
                .map(|(field, value)| (field.clone(), value.clone()))
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        let first = names.first().map(policy);
        if names.iter().all(|name| Some(policy(name)) == first) {
            Ok(())
        } else {
            Err(EditError::MixedEntry(id.to_owned()))
        }
    }

    fn members_with<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.keys().iter().filter_map(move |(name, value)| {
            let explicit = value.get("id").and_then(Value::as_str);
            let matches = match explicit {
                Some(explicit) => explicit == id,
                None => key_id(name) == id,
            };
            matches.then_some(name)
        })
    }

    fn member_names_with(&self, id: &str) -> Result<Vec<String>, EditError> {
        let names: Vec<String> = self.members_with(id).cloned().collect();
        if names.is_empty() {
            return Err(EditError::NoSuchId(id.to_owned()));
        }
        Ok(names)
    }

    /// The member `name` expires at `until` at the latest, and says whose counters it uses.
    fn expire(&mut self, name: &str, id: &str, until: SystemTime) {
        let until_text = rfc3339(until);
        let keys = &mut self.keys;
        let Some(value) = keys.get_mut(name) else {
            return;
        };
        if let Value::String(real) = value {
            *value = json!({"api_key": real.clone()});
        }
        if let Value::Object(entry) = value {
            entry.insert("id".to_owned(), json!(id));
            let sooner = entry
                .get("expires_at")
                .and_then(Value::as_str)
                .and_then(crate::keymap::parse_rfc3339)
                .is_some_and(|at| at <= until);
            if !sooner {
                entry.insert("expires_at".to_owned(), json!(until_text));
            }
        }
    }
}

/// `key:` and 8 hex digits of a member's wrapper key digest: the key id the logs show.
pub fn key_id(member_name: &str) -> String {
    // Members come from a document the proxy's parser accepted: every name has a digest.
    digest_of_member(member_name).map_or_else(String::new, |digest| digest.key_id())
}

/// An instant as RFC 3339 in UTC, to the second.
pub fn rfc3339(at: SystemTime) -> String {
    let seconds = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
    });
    let at = time::OffsetDateTime::from_unix_timestamp(seconds)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests;
