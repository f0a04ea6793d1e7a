//! The key map format: what parses, and errors that point at positions without quoting keys.

use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn lookup<'a>(map: &'a KeyMap, key: &str) -> Option<&'a Arc<KeyEntry>> {
    map.lookup(&WrapperKeyDigest::of(key))
}

#[test]
fn parses_the_flat_seed_format() {
    let map = KeyMap::parse(br#"{"wrapper-key-alice": "sk-alice", "wrapper-key-bob": "sk-bob"}"#)
        .unwrap();
    assert_eq!(map.len(), 2);
    let alice = lookup(&map, "wrapper-key-alice").unwrap();
    assert_eq!(
        alice.real_key.as_ref().unwrap().authorization(),
        "Bearer sk-alice"
    );
    assert!(alice.allows_model("anything"));
    assert!(lookup(&map, "wrapper-key-carol").is_none());
    assert!(lookup(&map, "").is_none());
}

#[test]
fn parses_hashed_names_and_policy_objects() {
    let hashed = WrapperKeyDigest::of("wrapper-key-hidden").member_name();
    let document = format!(
        r#"{{
            "{hashed}": "sk-hidden",
            "wrapper-key-carol": {{"api_key": "sk-carol", "tenant": "carol",
                "models": ["gpt-4o-mini"], "expires_at": "2030-01-01T00:00:00+01:00"}}
        }}"#
    );
    let map = KeyMap::parse(document.as_bytes()).unwrap();
    let hidden = lookup(&map, "wrapper-key-hidden").unwrap();
    assert_eq!(
        hidden.real_key.as_ref().unwrap().authorization(),
        "Bearer sk-hidden"
    );
    let carol = lookup(&map, "wrapper-key-carol").unwrap();
    assert_eq!(carol.tenant.as_deref(), Some("carol"));
    assert!(carol.allows_model("gpt-4o-mini"));
    assert!(!carol.allows_model("gpt-4o"));
    let expected = UNIX_EPOCH + Duration::from_secs(1_893_452_400);
    assert_eq!(carol.expires_at, Some(expected));
    assert!(!carol.is_expired(expected - Duration::from_secs(1)));
    assert!(carol.is_expired(expected));
}

#[test]
fn routes_name_route_groups() {
    let map = KeyMap::parse(
        br#"{"wrapper-key-carol": {"api_key": "sk-carol", "models": ["gpt-4o-mini"],
             "routes": ["chat.completions", "files", "batches"]}}"#,
    )
    .unwrap();
    let carol = lookup(&map, "wrapper-key-carol").unwrap();
    assert_eq!(
        carol.routes.as_deref(),
        Some(
            &[
                RouteGroup::ChatCompletions,
                RouteGroup::Files,
                RouteGroup::Batches
            ][..]
        )
    );
    let message = KeyMapError::BadRoutes { index: 1 }.to_string();
    assert!(
        message.contains("chat.completions, completions"),
        "{message}"
    );
}

#[test]
fn errors_name_positions_and_never_keys() {
    let hashed_twice = format!(
        r#"{{"w-secret": "sk-1", "{}": "sk-2"}}"#,
        WrapperKeyDigest::of("w-secret").member_name()
    );
    let cases: Vec<(&[u8], KeyMapError)> = vec![
        (br#"["sk-secret-in-array"]"#, KeyMapError::NotAnObject),
        (br#""sk-secret-string""#, KeyMapError::NotAnObject),
        (
            br#"{"ok": "sk-1", "": "sk-secret"}"#,
            KeyMapError::EmptyWrapperKey { index: 2 },
        ),
        (
            br#"{"sha256:secretsecret": "sk-1"}"#,
            KeyMapError::BadDigest { index: 1 },
        ),
        (br#"{"w-secret": 5}"#, KeyMapError::BadValue { index: 1 }),
        (br#"{"w-secret": ""}"#, KeyMapError::BadRealKey { index: 1 }),
        (
            b"{\"w-secret\": \"sk\\nsecret\"}",
            KeyMapError::BadRealKey { index: 1 },
        ),
        (
            br#"{"w-secret": "sk-1", "x": "sk-2", "w-secret": "sk-3"}"#,
            KeyMapError::DuplicateWrapperKey { index: 3, first: 1 },
        ),
        (
            hashed_twice.as_bytes(),
            KeyMapError::DuplicateWrapperKey { index: 2, first: 1 },
        ),
        (
            br#"{"w-secret": {"tenant": "t"}}"#,
            KeyMapError::MissingApiKey { index: 1 },
        ),
        (
            br#"{"w-secret": {"api_key": "sk-secret", "modles": ["a"]}}"#,
            KeyMapError::UnknownField {
                index: 1,
                field: "\"modles\"".to_owned(),
            },
        ),
        (
            br#"{"w-secret": {"api_key": "sk-1", "sk-secret-pasted": 1}}"#,
            KeyMapError::UnknownField {
                index: 1,
                field: "(name not shown)".to_owned(),
            },
        ),
        (
            br#"{"w-secret": {"api_key": "sk-1", "tenant": 7}}"#,
            KeyMapError::BadTenant { index: 1 },
        ),
        (
            br#"{"w-secret": {"api_key": "sk-1", "models": []}}"#,
            KeyMapError::BadModels { index: 1 },
        ),
        (
            br#"{"w-secret": {"api_key": "sk-1", "models": "sk-secret"}}"#,
            KeyMapError::BadModels { index: 1 },
        ),
        (
            br#"{"w-secret": {"api_key": "sk-1", "expires_at": "sk-secret"}}"#,
            KeyMapError::BadExpiry { index: 1 },
        ),
        (
            br#"{"w-secret": {"api_key": "sk-1", "routes": []}}"#,
            KeyMapError::BadRoutes { index: 1 },
        ),
        (
            br#"{"w-secret": {"api_key": "sk-1", "routes": ["files", "sk-secret"]}}"#,
            KeyMapError::BadRoutes { index: 1 },
        ),
        (
            br#"{"w-secret": {"api_key": "sk-1", "routes": "files"}}"#,
            KeyMapError::BadRoutes { index: 1 },
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
fn the_map_does_not_print_keys() {
    let map = KeyMap::parse(br#"{"w-secret": {"api_key": "sk-secret", "tenant": "t"}}"#).unwrap();
    let debug = format!("{map:?}");
    assert!(!debug.contains("secret"), "{debug}");
}
