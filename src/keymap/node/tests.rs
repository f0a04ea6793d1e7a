//! The flat path (`Flat`) against the `Node` path, on the same documents.

use super::super::{KeyMap, KeyMapError, UpstreamsByName};
use super::Node;
use crate::keys::WrapperKeyDigest;

/// The document read as `Node`s, as every document was before the flat path (`Flat`).
fn by_nodes(document: &str) -> Result<KeyMap, KeyMapError> {
    let Ok(Node::Object(members)) = serde_json::from_slice::<Node>(document.as_bytes()) else {
        return Err(KeyMapError::NotAnObject);
    };
    KeyMap::from_keys(members, &UpstreamsByName::default(), &None)
}

#[test]
fn a_flat_document_of_strings_reads_as_it_did_through_nodes() {
    let hashed = WrapperKeyDigest::of("hashed-wrapper").member_name();
    let read = [
        r#"{"wrapper-1": "sk-1", "wrapper-2": "sk-2"}"#.to_owned(),
        // Escapes: names and values that cannot be borrowed.
        r#"{"wr\u0061pper-\"3\"": "sk-\u00e9", "w\\4": "sk-4"}"#.to_owned(),
        format!(r#"{{"{hashed}": "sk-5", "version": "2"}}"#),
        "{}".to_owned(),
    ];
    for document in &read {
        let fast = KeyMap::parse(document.as_bytes()).unwrap();
        let slow = by_nodes(document).unwrap();
        assert_eq!(fast.len(), slow.len(), "{document}");
        for (digest, (index, entry)) in &slow.entries {
            assert_eq!(fast.entries.get(digest), Some(&(*index, entry.clone())));
        }
    }
    let refused = [
        r#"{"wrapper-1": "sk-1", "wrapper-1": "sk-2"}"#,
        r#"{"wrapper-1": ""}"#,
        r#"{"": "sk-1"}"#,
        r#"{"sha256:abc": "sk-1"}"#,
        r#"{"wrapper-1": "sk-1\n"}"#,
    ];
    for document in refused {
        let fast = KeyMap::parse(document.as_bytes()).err();
        assert!(fast.is_some(), "{document}");
        assert_eq!(fast, by_nodes(document).err(), "{document}");
    }
}
