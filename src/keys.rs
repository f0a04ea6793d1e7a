//! Wrapper keys, real keys and the map between them.
//! The map is indexed by the SHA-256 digest of each wrapper key: a lookup hashes what the client
//! presented and compares digests, so neither timing nor a memory dump reveals a wrapper key.
//! No type here can print a key: `Debug` writes `*****`, and parse errors name members by position.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use axum::http::HeaderValue;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use sha2::{Digest, Sha256};

/// SHA-256 of a wrapper key: the only form in which the proxy keeps or compares wrapper keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WrapperKeyDigest([u8; 32]);

impl WrapperKeyDigest {
    pub fn of(presented: &str) -> Self {
        Self(Sha256::digest(presented.as_bytes()).into())
    }
}

impl fmt::Debug for WrapperKeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WrapperKeyDigest(*****)")
    }
}

/// The upstream key, kept ready as the `Authorization` header value it will be sent as,
/// marked sensitive so HTTP libraries keep it out of their own debug output.
#[derive(Clone)]
pub struct RealKey(HeaderValue);

impl RealKey {
    fn new(key: &str) -> Option<Self> {
        let mut value = HeaderValue::from_str(&format!("Bearer {key}")).ok()?;
        value.set_sensitive(true);
        Some(Self(value))
    }

    pub fn authorization(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Debug for RealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RealKey(*****)")
    }
}

/// What one wrapper key grants.
#[derive(Debug)]
pub struct KeyEntry {
    pub real_key: RealKey,
}

/// An immutable, parsed key map. A new version of the map is a new `KeyMap`.
#[derive(Debug, Default)]
pub struct KeyMap {
    entries: HashMap<WrapperKeyDigest, Arc<KeyEntry>>,
}

/// Why a key map was refused. Members are named by their position in the document, never by
/// their name, because the name is a wrapper key.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyMapError {
    #[error("not valid JSON: {0}")]
    Syntax(String),
    #[error("the key map must be a JSON object of {{\"wrapper key\": \"real key\"}} members")]
    NotAnObject,
    #[error("member #{index}: the wrapper key is empty")]
    EmptyWrapperKey { index: usize },
    #[error("member #{index}: the value must be a string, the real upstream key")]
    ValueNotString { index: usize },
    #[error("member #{index}: the real key is empty")]
    EmptyRealKey { index: usize },
    #[error("member #{index}: the real key has characters an HTTP header cannot carry")]
    RealKeyNotHeaderSafe { index: usize },
    #[error("member #{index}: the same wrapper key as member #{first}")]
    DuplicateWrapperKey { index: usize, first: usize },
}

impl KeyMap {
    /// Parses the key map document: `{"wrapper-key": "sk-real-key", …}`.
    pub fn parse(document: &[u8]) -> Result<Self, KeyMapError> {
        let members = serde_json::from_slice::<Members>(document).map_err(|err| {
            // Only syntax errors carry their own message; serde's type errors can quote input.
            match err.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    KeyMapError::Syntax(err.to_string())
                }
                _ => KeyMapError::NotAnObject,
            }
        })?;
        let mut entries = HashMap::with_capacity(members.0.len());
        let mut first_seen = HashMap::with_capacity(members.0.len());
        for (position, (wrapper, value)) in members.0.into_iter().enumerate() {
            let index = position + 1;
            if wrapper.is_empty() {
                return Err(KeyMapError::EmptyWrapperKey { index });
            }
            let serde_json::Value::String(real) = value else {
                return Err(KeyMapError::ValueNotString { index });
            };
            if real.is_empty() {
                return Err(KeyMapError::EmptyRealKey { index });
            }
            let real_key =
                RealKey::new(&real).ok_or(KeyMapError::RealKeyNotHeaderSafe { index })?;
            let digest = WrapperKeyDigest::of(&wrapper);
            if let Some(&first) = first_seen.get(&digest) {
                return Err(KeyMapError::DuplicateWrapperKey { index, first });
            }
            first_seen.insert(digest, index);
            entries.insert(digest, Arc::new(KeyEntry { real_key }));
        }
        Ok(Self { entries })
    }

    pub fn lookup(&self, presented: &str) -> Option<&Arc<KeyEntry>> {
        self.entries.get(&WrapperKeyDigest::of(presented))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The document's members in file order, duplicates kept, so errors can point at positions.
struct Members(Vec<(String, serde_json::Value)>);

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
mod tests {
    use super::*;

    #[test]
    fn parses_the_flat_seed_format() {
        let map =
            KeyMap::parse(br#"{"wrapper-key-alice": "sk-alice", "wrapper-key-bob": "sk-bob"}"#)
                .unwrap();
        assert_eq!(map.len(), 2);
        let alice = map.lookup("wrapper-key-alice").unwrap();
        assert_eq!(alice.real_key.authorization(), "Bearer sk-alice");
        assert!(alice.real_key.authorization().is_sensitive());
        assert!(map.lookup("wrapper-key-carol").is_none());
        assert!(map.lookup("").is_none());
    }

    #[test]
    fn errors_name_positions_and_never_keys() {
        let cases: [(&[u8], KeyMapError); 7] = [
            (br#"["sk-secret-in-array"]"#, KeyMapError::NotAnObject),
            (br#""sk-secret-string""#, KeyMapError::NotAnObject),
            (
                br#"{"ok": "sk-1", "": "sk-secret"}"#,
                KeyMapError::EmptyWrapperKey { index: 2 },
            ),
            (
                br#"{"w-secret": 5}"#,
                KeyMapError::ValueNotString { index: 1 },
            ),
            (
                br#"{"w-secret": ""}"#,
                KeyMapError::EmptyRealKey { index: 1 },
            ),
            (
                b"{\"w-secret\": \"sk\\nsecret\"}",
                KeyMapError::RealKeyNotHeaderSafe { index: 1 },
            ),
            (
                br#"{"w-secret": "sk-1", "x": "sk-2", "w-secret": "sk-3"}"#,
                KeyMapError::DuplicateWrapperKey { index: 3, first: 1 },
            ),
        ];
        for (document, expected) in cases {
            let err = KeyMap::parse(document).unwrap_err();
            assert_eq!(err, expected);
            let message = err.to_string();
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = KeyMap::parse(b"{\"w-secret\": \"sk-secret\",}").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("not valid JSON:"), "{message}");
        assert!(message.contains("line 1"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn keys_do_not_print() {
        let map = KeyMap::parse(br#"{"w-secret": "sk-secret"}"#).unwrap();
        let debug = format!("{map:?}");
        assert!(!debug.contains("secret"), "{debug}");
    }
}
