//! Against moto's Secrets Manager, with the proxy binary serving the same secret: what each
//! command does to the keys the proxy accepts, the limits it enforces, and the seed's flat
//! example migrated.

use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{
    PICKED_UP, SECRET, chats_with, flat_example, minute_now, moto_with, parse_rfc3339,
    proxy_over_secret, row_of, rows_with, sdk_chat, seconds_left_in_minute, seed,
    upstream_never_saw, version_said_current,
};
use crate::support::keys_cli::{
    KeysCli, assert_none_in, assert_well_formed, chat_status, current, json_body, key_id, labelled,
    member_name, until_status, versions,
};
use crate::support::upstream::FakeUpstream;
use crate::support::{OTHER_REAL_KEY, OTHER_WRAPPER_KEY, REAL_KEY, WRAPPER_KEY, openai};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_rotated_rekeyed_and_revoked_keys_behave_so_in_the_proxy_over_secrets_manager() {
    let moto = moto_with(&seed().to_string()).await;
    let client = moto.client();
    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy = proxy_over_secret(&moto, &upstream);
    let base = proxy.base_url();
    let cli = KeysCli::over_secret(&moto.endpoint, SECRET);
    cli.secret(WRAPPER_KEY);
    cli.secret(REAL_KEY);

    // Create: the printed key works through the proxy with the official SDK, and the upstream
    // gets the real key given on stdin.
    let (before, _) = current(&client, SECRET).await;
    let first = cli
        .create(&["--tenant", "acme", "--id", "acme-app"], "sk-acme-real-1")
        .await;
    let created = cli.last();
    assert!(
        created
            .stderr
            .contains("created the key acme-app (tenant acme) in secret openai-proxy/keys"),
        "{}",
        created.stderr
    );
    let stages = versions(&client, SECRET).await;
    assert_eq!(
        labelled(&stages, "AWSCURRENT"),
        version_said_current(&created.stderr)
    );
    assert_eq!(labelled(&stages, "AWSPREVIOUS"), before);
    let (_, document) = current(&client, SECRET).await;
    assert_eq!(
        document["keys"][member_name(&first)],
        json!({"api_key": "sk-acme-real-1", "tenant": "acme", "id": "acme-app"})
    );
    assert!(
        !document.to_string().contains(&first),
        "only the digest is stored"
    );
    until_status(&base, &first, StatusCode::OK, PICKED_UP).await;
    let sdk = sdk_chat(&proxy, &first, "reply").await;
    assert!(sdk.contains("ok - chat.completions.create"), "{sdk}");
    assert_eq!(chats_with(&upstream, "sk-acme-real-1"), 2);

    // Rotate with a grace: the new key works, the old one too until its expiry, then only the
    // new one.
    let rotated_at = SystemTime::now();
    let second = cli.rotate("acme-app", &["--grace", "5s"]).await;
    assert_ne!(first, second);
    let rows = cli.list_json().await;
    assert_eq!(rows_with(&rows, "acme-app").len(), 2, "{rows:?}");
    let old = row_of(&rows, &first);
    let new = row_of(&rows, &second);
    assert_eq!(
        new["expires_at"],
        Value::Null,
        "the new key does not expire"
    );
    assert_eq!(new["tenant"], "acme");
    assert_eq!(old["expired"], false);
    let grace_ends = parse_rfc3339(old["expires_at"].as_str().unwrap());
    assert!(
        grace_ends >= rotated_at + Duration::from_secs(4)
            && grace_ends <= rotated_at + Duration::from_secs(6),
        "the grace is 5 s (to the second) from the rotation"
    );
    until_status(&base, &second, StatusCode::OK, PICKED_UP).await;
    let asked = SystemTime::now();
    assert_eq!(chat_status(&base, &first).await.status(), StatusCode::OK);
    assert!(
        asked + Duration::from_millis(500) < grace_ends,
        "the old key was checked too late to prove it works within its grace"
    );
    let wait = grace_ends
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        + PICKED_UP;
    let (refused, refused_at) = until_status(&base, &first, StatusCode::UNAUTHORIZED, wait).await;
    assert!(
        refused_at >= grace_ends,
        "the old key was refused before its grace ended"
    );
    let body = json_body(refused).await;
    assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
    let sdk = sdk_chat(&proxy, &second, "reply").await;
    assert!(sdk.contains("ok - chat.completions.create"), "{sdk}");
    let rows = cli.list_json().await;
    assert_eq!(row_of(&rows, &first)["expired"], true);
    assert_eq!(row_of(&rows, &second)["expired"], false);

    // Set the real key: the upstream sees the new one, and no entry keeps the old one.
    cli.secret("sk-acme-real-2");
    let set = cli
        .ok(
            &["set-real-key", "acme-app", "--real-key-stdin"],
            Some("sk-acme-real-2\n"),
        )
        .await;
    assert!(
        set.stderr
            .contains("set the real key of acme-app (2 wrapper key(s))"),
        "{}",
        set.stderr
    );
    let (_, document) = current(&client, SECRET).await;
    assert!(!document.to_string().contains("sk-acme-real-1"));
    assert_eq!(
        document["keys"][member_name(&second)]["api_key"],
        "sk-acme-real-2"
    );
    let deadline = std::time::Instant::now() + PICKED_UP;
    while chats_with(&upstream, "sk-acme-real-2") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream never saw the new real key"
        );
        assert_eq!(chat_status(&base, &second).await.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before_last = chats_with(&upstream, "sk-acme-real-1");
    assert_eq!(chat_status(&base, &second).await.status(), StatusCode::OK);
    assert_eq!(chats_with(&upstream, "sk-acme-real-1"), before_last);

    // Revoke: every key of the id is gone, and the SDK meets a 401.
    let revoked = cli.ok(&["revoke", "acme-app"], None).await;
    assert!(
        revoked
            .stderr
            .contains("revoked the key acme-app (2 wrapper key(s) removed)"),
        "{}",
        revoked.stderr
    );
    until_status(&base, &second, StatusCode::UNAUTHORIZED, PICKED_UP).await;
    let sdk = sdk_chat(&proxy, &second, "401").await;
    assert!(sdk.contains("ok - the key is refused with 401"), "{sdk}");
    let rows = cli.list_json().await;
    assert!(rows_with(&rows, "acme-app").is_empty(), "{rows:?}");
    assert_eq!(row_of(&rows, WRAPPER_KEY)["tenant"], "seed");
    let table = cli.ok(&["list"], None).await;
    assert!(
        table.stdout.starts_with("ID") && table.stdout.contains(&key_id(WRAPPER_KEY)),
        "{}",
        table.stdout
    );
    // The seed key was never disturbed.
    assert_eq!(
        chat_status(&base, WRAPPER_KEY).await.status(),
        StatusCode::OK
    );

    upstream_never_saw(&upstream, &[&first, &second, WRAPPER_KEY]);
    assert!(cli.assert_no_key_shown() >= 8);
    let log = proxy.stop();
    assert_none_in(&log, &cli.secrets(), "the proxy's log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_keys_limits_are_enforced_by_the_proxy_and_kept_through_a_rotation() {
    let moto = moto_with(&seed().to_string()).await;
    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy = proxy_over_secret(&moto, &upstream);
    let base = proxy.base_url();
    let cli = KeysCli::over_secret(&moto.endpoint, SECRET);

    let limited = cli
        .create(
            &["--tenant", "acme", "--id", "limited", "--rpm", "2"],
            "sk-limited-real",
        )
        .await;
    let rows = cli.list_json().await;
    assert_eq!(
        row_of(&rows, &limited)["limits"],
        json!({"requests_per_minute": 2})
    );
    let table = cli.ok(&["list"], None).await;
    assert!(table.stdout.contains("rpm=2"), "{}", table.stdout);

    // The three requests (and the rotation after them) must fall in one minute's window.
    if seconds_left_in_minute() < 15.0 {
        tokio::time::sleep(Duration::from_secs_f64(seconds_left_in_minute() + 0.5)).await;
    }
    let minute = minute_now();
    // Refused (401) while the proxy does not know the key yet: those are not counted.
    until_status(&base, &limited, StatusCode::OK, PICKED_UP).await;
    assert_eq!(chat_status(&base, &limited).await.status(), StatusCode::OK);
    let third = chat_status(&base, &limited).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.headers()["x-ratelimit-limit-requests"], "2");
    assert!(third.headers().contains_key("retry-after"));
    let body = json_body(third).await;
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert_eq!(chats_with(&upstream, "sk-limited-real"), 2);

    // The rotated key keeps the id, so it counts in the same, spent, window.
    let rotated = cli.rotate("limited", &[]).await;
    until_status(&base, &rotated, StatusCode::TOO_MANY_REQUESTS, PICKED_UP).await;
    assert_eq!(
        chat_status(&base, &limited).await.status(),
        StatusCode::UNAUTHORIZED,
        "rotated without a grace, the old key stops at once"
    );
    assert_eq!(chats_with(&upstream, "sk-limited-real"), 2);
    assert_eq!(
        minute_now(),
        minute,
        "the checks spilled into the next minute"
    );

    cli.assert_no_key_shown();
    let log = proxy.stop();
    assert_none_in(&log, &cli.secrets(), "the proxy's log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_fresh_and_migrating_the_seed_example_keeps_its_wrapper_keys() {
    let moto = moto_with(&flat_example()).await;
    let client = moto.client();
    let cli = KeysCli::over_secret(&moto.endpoint, SECRET);
    for key in [WRAPPER_KEY, REAL_KEY, OTHER_WRAPPER_KEY, OTHER_REAL_KEY] {
        cli.secret(key);
    }

    // A flat document is listed by key ids only.
    let rows = cli.list_json().await;
    assert_eq!(rows.len(), 2);
    row_of(&rows, WRAPPER_KEY);
    row_of(&rows, OTHER_WRAPPER_KEY);
    cli.ok(&["list"], None).await;

    let migrated = cli.ok(&["migrate"], None).await;
    assert!(
        migrated.stderr.contains("was a flat key map"),
        "{}",
        migrated.stderr
    );
    let (_, document) = current(&client, SECRET).await;
    assert_eq!(
        document,
        json!({
            "version": 2,
            "keys": {
                member_name(WRAPPER_KEY): REAL_KEY,
                member_name(OTHER_WRAPPER_KEY): OTHER_REAL_KEY,
            },
        })
    );

    // Two creates: two different keys of the documented form, both stored by digest.
    let one = cli.create(&["--tenant", "fresh"], "sk-fresh-real").await;
    let two = cli.create(&["--tenant", "fresh"], "sk-fresh-real").await;
    assert_ne!(one, two);
    for key in [&one, &two] {
        assert_well_formed(key);
        // The default id is the key id.
        let rows = cli.list_json().await;
        assert_eq!(row_of(&rows, key)["id"], key_id(key));
    }
    let (_, document) = current(&client, SECRET).await;
    assert_eq!(document["version"], 2);
    assert_eq!(document["keys"].as_object().unwrap().len(), 4);

    // A proxy started on the migrated secret serves the example's wrapper keys and the new ones.
    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy = proxy_over_secret(&moto, &upstream);
    for (key, real) in [(WRAPPER_KEY, REAL_KEY), (OTHER_WRAPPER_KEY, OTHER_REAL_KEY)] {
        assert_eq!(
            chat_status(&proxy.base_url(), key).await.status(),
            StatusCode::OK
        );
        assert_eq!(chats_with(&upstream, real), 1);
    }
    for key in [&one, &two] {
        assert_eq!(
            chat_status(&proxy.base_url(), key).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(chats_with(&upstream, "sk-fresh-real"), 2);
    cli.assert_no_key_shown();
    let log = proxy.stop();
    assert_none_in(&log, &cli.secrets(), "the proxy's log");
}
