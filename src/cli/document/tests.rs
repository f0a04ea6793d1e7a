//! Edits of the key map document: each keeps what it does not touch, ends as a map the proxy
//! accepts, and finds keys by the id their counters belong to.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::keymap::KeyMap;

const FLAT: &str = r#"{"wrapper-key-alice": "sk-alice", "wrapper-key-bob": {"api_key": "sk-bob", "tenant": "bob"}}"#;

fn names(document: &Document) -> Vec<String> {
    document.keys().keys().cloned().collect()
}

fn entry(fields: serde_json::Value) -> Map<String, Value> {
    match fields {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}

#[test]
fn a_flat_map_becomes_version_2_with_hashed_names_that_serve_the_same_keys() {
    let document = Document::parse(FLAT.as_bytes()).unwrap();
    assert!(document.migrated);
    let bytes = document.to_bytes(true).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains("\"version\": 2"), "{text}");
    assert!(!text.contains("wrapper-key-alice"), "{text}");
    let map = KeyMap::parse(&bytes).unwrap();
    for key in ["wrapper-key-alice", "wrapper-key-bob"] {
        assert!(map.lookup(&WrapperKeyDigest::of(key)).is_some(), "{key}");
    }
    // Version 2 already: read as it is.
    assert!(!Document::parse(&bytes).unwrap().migrated);
}

#[test]
fn create_adds_a_hashed_member_and_refuses_a_taken_id() {
    let mut document = Document::parse(FLAT.as_bytes()).unwrap();
    let new = WrapperKeyDigest::of("sk-proxy-new");
    let fields = entry(
        json!({"api_key": "sk-new", "tenant": "team", "id": "team-ci", "limits": {"requests_per_minute": 5}}),
    );
    document.add(&new, fields.clone()).unwrap();
    assert!(names(&document).contains(&new.member_name()));
    let again = WrapperKeyDigest::of("sk-proxy-other");
    assert_eq!(
        document.add(&again, fields),
        Err(EditError::IdTaken("team-ci".to_owned()))
    );
    let map = KeyMap::parse(&document.to_bytes(true).unwrap()).unwrap();
    assert!(map.lookup(&new).unwrap().is_limited());
}

#[test]
fn an_unlisted_tenant_is_refused_when_the_document_lists_tenants() {
    // A misspelt tenant would otherwise be a new tenant without the real one's limits.
    let mut document = Document::parse(
        br#"{"version": 2, "tenants": {"team": {"limits": {"requests_per_minute": 9}}}, "keys": {}}"#,
    )
    .unwrap();
    let fields = entry(json!({"api_key": "sk-new", "tenant": "taem", "id": "n1"}));
    document
        .add(&WrapperKeyDigest::of("sk-proxy-n1"), fields)
        .unwrap();
    assert!(matches!(
        document.to_bytes(true),
        Err(EditError::WouldBreak(_))
    ));
}

#[test]
fn keys_sharing_an_id_but_not_a_policy_are_not_rotated_or_rekeyed_together() {
    let mut document = Document::parse(
        br#"{"version": 2, "keys": {
            "k1": {"api_key": "sk-1", "id": "shared", "models": ["a"]},
            "k2": {"api_key": "sk-2", "id": "shared", "models": ["b"]}}}"#,
    )
    .unwrap();
    let new = WrapperKeyDigest::of("sk-proxy-new");
    let mixed = Err(EditError::MixedEntry("shared".to_owned()));
    assert_eq!(document.rotate("shared", &new, None), mixed);
    assert_eq!(document.set_real_key("shared", "sk-3").map(|_| ()), mixed);
    // One of them can still be revoked alone, by its key id.
    let k1 = key_id("k1");
    assert_eq!(document.revoke("shared", Some(&k1)), Ok(1));
    let gone = EditError::NoSuchKey("shared".to_owned(), k1.clone());
    assert_eq!(document.revoke("shared", Some(&k1)), Err(gone));
    assert_eq!(document.revoke("shared", None), Ok(1));
}

#[test]
fn an_expired_entry_is_not_rotated_into_a_dead_key() {
    let mut document = Document::parse(
        br#"{"k1": {"api_key": "sk-1", "id": "old", "expires_at": "2020-01-01T00:00:00Z"}}"#,
    )
    .unwrap();
    let new = WrapperKeyDigest::of("sk-proxy-new");
    let expired = Err(EditError::Expired("old".to_owned()));
    assert_eq!(document.rotate("old", &new, None), expired);
}

#[test]
fn an_edit_that_breaks_the_map_is_refused() {
    let mut document = Document::parse(FLAT.as_bytes()).unwrap();
    let fields = entry(json!({"api_key": "sk-new", "upstream": "nowhere"}));
    document
        .add(&WrapperKeyDigest::of("sk-proxy-x"), fields)
        .unwrap();
    assert!(matches!(
        document.to_bytes(true),
        Err(EditError::WouldBreak(_))
    ));
    // Nothing the proxy would refuse is read either.
    assert!(matches!(
        Document::parse(b"{\"k\": 5}"),
        Err(EditError::Invalid(_))
    ));
}

#[test]
fn rotation_keeps_the_entry_and_its_id_and_expires_the_old_key() {
    let mut document = Document::parse(FLAT.as_bytes()).unwrap();
    let bob = key_id(&WrapperKeyDigest::of("wrapper-key-bob").member_name());
    let new = WrapperKeyDigest::of("sk-proxy-bob-2");
    let until = UNIX_EPOCH + Duration::from_secs(1_893_456_000);
    document.rotate(&bob, &new, Some(until)).unwrap();
    let map = KeyMap::parse(&document.to_bytes(true).unwrap()).unwrap();
    let old = map
        .lookup(&WrapperKeyDigest::of("wrapper-key-bob"))
        .unwrap();
    let fresh = map.lookup(&new).unwrap();
    assert_eq!(old.policy().expires_at, Some(until));
    assert_eq!(fresh.policy().expires_at, None);
    assert_eq!(fresh.policy().tenant.as_deref(), Some("bob"));
    // Both count in the old key's counters.
    assert_eq!(old.counter_id(&WrapperKeyDigest::of("x")), bob);
    assert_eq!(fresh.counter_id(&new), bob);
    // The rotated entry is found by the same id; without grace the old keys go at once.
    let newest = WrapperKeyDigest::of("sk-proxy-bob-3");
    document.rotate(&bob, &newest, None).unwrap();
    assert_eq!(names(&document).len(), 2, "{:?}", names(&document));
    assert!(names(&document).contains(&newest.member_name()));
}

#[test]
fn revoke_and_set_real_key_act_on_every_key_of_an_id() {
    let mut document = Document::parse(FLAT.as_bytes()).unwrap();
    let alice = key_id(&WrapperKeyDigest::of("wrapper-key-alice").member_name());
    assert_eq!(document.set_real_key(&alice, "sk-alice-2"), Ok(1));
    let map = KeyMap::parse(&document.to_bytes(true).unwrap()).unwrap();
    let entry = map
        .lookup(&WrapperKeyDigest::of("wrapper-key-alice"))
        .unwrap();
    assert_eq!(
        entry.real_key.as_ref().unwrap().raw().unwrap(),
        "sk-alice-2"
    );
    assert_eq!(document.revoke(&alice, None), Ok(1));
    assert_eq!(
        document.revoke(&alice, None),
        Err(EditError::NoSuchId(alice))
    );
}

#[test]
fn the_list_shows_ids_and_policy_and_never_a_key() {
    let mut document = Document::parse(FLAT.as_bytes()).unwrap();
    let fields = entry(
        json!({"api_key": "sk-secret-real", "tenant": "team", "id": "team-ci",
        "models": ["gpt-4o-mini"], "limits": {"tokens_per_day": 100}, "expires_at": "2020-01-01T00:00:00Z"}),
    );
    document
        .add(&WrapperKeyDigest::of("sk-proxy-secret"), fields)
        .unwrap();
    let rows = crate::cli::list::rows(&document, UNIX_EPOCH + Duration::from_secs(1_796_044_719));
    assert_eq!(rows.len(), 3);
    let team = rows.iter().find(|row| row.id == "team-ci").unwrap();
    assert!(team.expired);
    assert_eq!(
        team.models.as_deref(),
        Some(&["gpt-4o-mini".to_owned()][..])
    );
    let text = crate::cli::list::table(&rows) + &serde_json::to_string(&rows).unwrap();
    for secret in [
        "sk-secret-real",
        "sk-proxy-secret",
        "wrapper-key-alice",
        "sk-alice",
        "sk-bob",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("tokens/day=100"), "{text}");
}
