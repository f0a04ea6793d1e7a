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
    assert_eq!(carol.policy().tenant.as_deref(), Some("carol"));
    assert!(carol.allows_model("gpt-4o-mini"));
    assert!(!carol.allows_model("gpt-4o"));
    let expected = UNIX_EPOCH + Duration::from_secs(1_893_452_400);
    assert_eq!(carol.policy().expires_at, Some(expected));
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
        carol.policy().routes.as_deref(),
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

#[test]
fn limits_ids_and_tenants_parse() {
    let map = KeyMap::parse(
        br#"{"version": 2,
             "tenants": {"team-a": {"limits": {"requests_per_minute": 100, "tokens_per_month": 40000000}},
                         "team-b": {}},
             "keys": {
               "wk-alice": {"api_key": "sk-a", "tenant": "team-a", "id": "alice@team-a",
                            "limits": {"requests_per_minute": 60, "tokens_per_minute": 200000,
                                       "tokens_per_day": 2000000}},
               "wk-bob": {"api_key": "sk-b", "tenant": "team-b"},
               "wk-carol": "sk-c"}}"#,
    )
    .unwrap();
    let alice = lookup(&map, "wk-alice").unwrap();
    let limits = alice.policy().limits.as_ref().unwrap();
    assert_eq!(limits.id.as_deref(), Some("alice@team-a"));
    let own = limits.own.unwrap();
    assert_eq!(
        (
            own.requests_per_minute,
            own.tokens_per_minute,
            own.tokens_per_day,
            own.tokens_per_month
        ),
        (Some(60), Some(200_000), Some(2_000_000), None)
    );
    let shared = limits.tenant.unwrap();
    assert_eq!(
        (shared.requests_per_minute, shared.tokens_per_month),
        (Some(100), Some(40_000_000))
    );
    let digest = WrapperKeyDigest::of("wk-alice");
    assert_eq!(alice.counter_id(&digest), "alice@team-a");
    let bob = lookup(&map, "wk-bob").unwrap();
    assert!(!bob.is_limited());
    let carol = lookup(&map, "wk-carol").unwrap();
    // Without an `id`, counters belong to the key id the logs show.
    let digest = WrapperKeyDigest::of("wk-carol");
    assert_eq!(carol.counter_id(&digest), carol.caller(&digest).to_string());
}

#[test]
fn bad_limits_are_refused_by_position() {
    let cases: &[(&str, KeyMapError)] = &[
        (
            r#"{"k": {"api_key": "s", "limits": {"requests_per_minute": 0}}}"#,
            KeyMapError::BadLimits { index: 1 },
        ),
        (
            r#"{"k": {"api_key": "s", "limits": {"requests_per_minute": 1.5}}}"#,
            KeyMapError::BadLimits { index: 1 },
        ),
        (
            r#"{"k": {"api_key": "s", "limits": {"request_per_minute": 5}}}"#,
            KeyMapError::BadLimits { index: 1 },
        ),
        (
            r#"{"k": {"api_key": "s", "limits": {}}}"#,
            KeyMapError::BadLimits { index: 1 },
        ),
        (
            r#"{"k": {"api_key": "s", "id": "a#b"}}"#,
            KeyMapError::BadId { index: 1 },
        ),
        (
            r#"{"k": {"api_key": "s", "id": ""}}"#,
            KeyMapError::BadId { index: 1 },
        ),
        (
            r#"{"version": 2, "tenants": {"team": {}}, "keys": {"k": {"api_key": "s", "tenant": "taem"}}}"#,
            KeyMapError::UnknownTenant { index: 1 },
        ),
        (
            r#"{"version": 2, "tenants": {"te#am": {}}, "keys": {}}"#,
            KeyMapError::BadTenantName { tenant: 1 },
        ),
        (
            r#"{"version": 2, "tenants": {"team": {"limit": {}}}, "keys": {}}"#,
            KeyMapError::BadTenantEntry { tenant: 1 },
        ),
        (
            r#"{"version": 2, "tenants": {"team": {"limits": {"tokens_per_day": -1}}}, "keys": {}}"#,
            KeyMapError::BadTenantLimits { tenant: 1 },
        ),
        (
            r#"{"version": 2, "tenants": [], "keys": {}}"#,
            KeyMapError::MemberNotAnObject { member: "tenants" },
        ),
    ];
    for (document, expected) in cases {
        assert_eq!(
            KeyMap::parse(document.as_bytes()).err().as_ref(),
            Some(expected),
            "{document}"
        );
    }
}
