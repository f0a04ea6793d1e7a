//! `openai-proxy keys …` end to end: the built binary edits the key map that a running proxy
//! binary serves (a secret in moto's Secrets Manager, or a file), and what it did is judged by
//! what the proxy then does with the keys it printed, what the official Python SDK meets, what the
//! fake upstream receives, and what the secret's versions or the file's inode show. Races are made
//! deterministic by a relay in front of moto. Every command's output is checked at the end for
//! every key the test used: none is ever shown except the new key a create or rotate prints.

mod edge_cases;
mod file;
mod races;
mod refused;
mod secret;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::keys_cli::{key_id, member_name};
use crate::support::moto::Moto;
use crate::support::upstream::FakeUpstream;
use crate::support::{BinaryProxy, REAL_KEY, WRAPPER_KEY, manifest_dir, run_sdk_script};

pub const SECRET: &str = "openai-proxy/keys";
/// Bounds each wait for the proxy to pick up an edit: it re-reads an unknown key at once (at
/// most once a second here) and everything else within its 1 s TTL.
pub const PICKED_UP: Duration = Duration::from_secs(15);

/// A version-2 key map with one key (held as its digest), for the commands to add to.
pub fn seed() -> Value {
    json!({
        "version": 2,
        "keys": {
            member_name(WRAPPER_KEY): {"api_key": REAL_KEY, "tenant": "seed"},
        },
    })
}

/// The seed's flat example, as the repository ships it.
pub fn flat_example() -> String {
    std::fs::read_to_string(manifest_dir().join("keys.example.json")).unwrap()
}

/// The proxy binary over the secret, with a short TTL so edits show within a second or two.
pub fn proxy_over_secret(moto: &Moto, upstream: &FakeUpstream) -> BinaryProxy {
    let upstream_url = upstream.base_url();
    let mut env = moto.aws_env();
    env.extend([
        ("KEY_MAP_SECRET_ID", SECRET),
        ("UPSTREAM_BASE_URL", upstream_url.as_str()),
        ("KEY_MAP_TTL_SECONDS", "1"),
        ("KEY_MAP_MIN_REFRESH_INTERVAL_SECONDS", "1"),
    ]);
    BinaryProxy::start(&env)
}

pub fn proxy_over_file(path: &str, upstream: &FakeUpstream) -> BinaryProxy {
    BinaryProxy::start(&[
        ("KEY_MAP_FILE", path),
        ("UPSTREAM_BASE_URL", &upstream.base_url()),
        ("KEY_MAP_TTL_SECONDS", "1"),
        ("KEY_MAP_MIN_REFRESH_INTERVAL_SECONDS", "1"),
    ])
}

/// Moto with the secret holding `document`.
pub async fn moto_with(document: &str) -> Moto {
    let moto = Moto::start().await;
    moto.create_secret(SECRET, document).await;
    moto
}

/// The chat completions the upstream received with `real_key` as their bearer token.
pub fn chats_with(upstream: &FakeUpstream, real_key: &str) -> usize {
    upstream
        .received()
        .iter()
        .filter(|seen| seen.path_and_query == "/v1/chat/completions")
        .filter(|seen| {
            seen.headers
                .get("authorization")
                .is_some_and(|value| value == format!("Bearer {real_key}").as_str())
        })
        .count()
}

/// No request reached the upstream carrying any of `wrapper_keys` anywhere in its headers.
pub fn upstream_never_saw(upstream: &FakeUpstream, wrapper_keys: &[&str]) {
    for seen in upstream.received() {
        for value in seen.headers.values() {
            let value = value.to_str().unwrap_or_default();
            for key in wrapper_keys {
                assert!(!value.contains(key), "a wrapper key reached the upstream");
            }
        }
    }
}

/// One chat completion with the official Python SDK: "reply" (it works) or "401".
pub async fn sdk_chat(proxy: &BinaryProxy, key: &str, expect: &str) -> String {
    run_sdk_script(
        "sdk_python_key.py",
        &[
            ("OPENAI_PROXY_BASE_URL", &proxy.base_url()),
            ("OPENAI_PROXY_KEY", key),
            ("EXPECT", expect),
        ],
    )
    .await
}

/// The rows of `keys list --json` whose `id` is `id`.
pub fn rows_with<'a>(rows: &'a [Value], id: &str) -> Vec<&'a Value> {
    rows.iter().filter(|row| row["id"] == id).collect()
}

/// The row of `keys list --json` for the wrapper key `key` (found by its key id).
pub fn row_of<'a>(rows: &'a [Value], key: &str) -> &'a Value {
    let key_id = key_id(key);
    rows.iter()
        .find(|row| row["key_id"] == key_id.as_str())
        .unwrap_or_else(|| panic!("no row has the key id {key_id}: {rows:?}"))
}

pub fn parse_rfc3339(text: &str) -> SystemTime {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
    UNIX_EPOCH + Duration::from_secs(u64::try_from(at.unix_timestamp()).unwrap())
}

/// The version id a successful edit of a secret names on stderr as now `AWSCURRENT`.
pub fn version_said_current(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|line| {
            line.split(" version ")
                .nth(1)?
                .strip_suffix(" is now AWSCURRENT (the one before is AWSPREVIOUS)")
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("stderr does not name the new current version: {stderr}"))
}

pub fn seconds_left_in_minute() -> f64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    60.0 - (now.as_secs_f64() % 60.0)
}

pub fn minute_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60
}

/// The key map file as JSON.
pub fn read_document(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}
