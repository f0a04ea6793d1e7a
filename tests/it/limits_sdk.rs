//! Limits as the official Python SDK meets them, with the counters in moto's DynamoDB as deployed:
//! a spent day budget is a `RateLimitError` (`insufficient_quota`) the SDK does not retry, through
//! the binary; a requests-per-minute limit is one (`rate_limit_exceeded`, with `retry-after`)
//! under `cargo lambda watch`. The fake upstream sends the real key's own `x-ratelimit-*`
//! headers, which the caller must never see.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use axum::http::HeaderValue;
use axum::response::Response;
use serde_json::json;

use crate::support::lambda::LambdaEmulator;
use crate::support::moto::{ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY};
use crate::support::upstream::{FakeUpstream, Received};
use crate::support::{
    BinaryProxy, OTHER_REAL_KEY, OTHER_WRAPPER_KEY, REAL_KEY, TempFile, WRAPPER_KEY, openai,
    run_sdk_script,
};

const TABLE: &str = "openai-proxy-limits";
/// The budget key's counter id.
const BUDGET_ID: &str = "budget";
const MAX_TOKENS: u64 = 200;
/// What one call of sdk_python_budget.py reserves: its body, as the SDK writes it, is 106 bytes
/// (27 tokens at 4 bytes a token), plus `max_tokens`.
const RESERVED: u64 = 27 + MAX_TOKENS;
const USAGE: u64 = openai::CHAT_USAGE.2;
/// Two completions fit (`USAGE + RESERVED` at the second) and a third does not (`2 × USAGE +
/// RESERVED`); the middle of that range leaves the SDK's body 28 bytes either way to change in.
/// The script checks the arithmetic against the bodies it actually sent.
const BUDGET: u64 = RESERVED + USAGE + USAGE / 2;
const REQUESTS_PER_MINUTE: u64 = 2;
/// Bounds every call on moto.
const WAIT: Duration = Duration::from_secs(60);

/// A day budget for the test wrapper key (counting under `BUDGET_ID`), and a per-minute request
/// limit for the other key (counting under its default id, `key:` and its digest).
fn key_map() -> String {
    json!({
        "version": 2,
        "keys": {
            WRAPPER_KEY: {
                "api_key": REAL_KEY,
                "id": BUDGET_ID,
                "limits": {"tokens_per_day": BUDGET},
            },
            OTHER_WRAPPER_KEY: {
                "api_key": OTHER_REAL_KEY,
                "limits": {"requests_per_minute": REQUESTS_PER_MINUTE},
            },
        },
    })
    .to_string()
}

/// The fake OpenAI, sending the rate-limit headers of the real key's organisation as OpenAI does.
fn with_upstream_rate_headers(request: &Received) -> Response {
    let mut response = openai::respond(request);
    for (name, value) in [
        ("x-ratelimit-limit-requests", "10000"),
        ("x-ratelimit-remaining-requests", "9999"),
        ("x-ratelimit-reset-requests", "6ms"),
        ("x-ratelimit-limit-tokens", "2000000"),
        ("x-ratelimit-remaining-tokens", "1999990"),
        ("x-ratelimit-reset-tokens", "0s"),
    ] {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The limits table in moto, and the settings that point the proxy at it.
struct Counters {
    moto: Moto,
}

impl Counters {
    async fn start() -> Self {
        let moto = Moto::start().await;
        moto.create_limits_table(TABLE).await;
        Self { moto }
    }

    fn settings(&self) -> [(&'static str, &str); 6] {
        [
            ("LIMITS_TABLE", TABLE),
            ("AWS_ENDPOINT_URL_DYNAMODB", self.moto.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
    }

    /// The counter items whose names start with `prefix`: (name, requests, tokens).
    async fn items(&self, prefix: &str) -> Vec<(String, i64, i64)> {
        let scan = self.moto.dynamodb_client().scan().table_name(TABLE).send();
        let items = tokio::time::timeout(WAIT, scan)
            .await
            .expect("moto did not answer the scan in time")
            .unwrap()
            .items
            .unwrap_or_default();
        let number = |item: &std::collections::HashMap<String, AttributeValue>, name: &str| {
            item.get(name)
                .map(|value| value.as_n().unwrap().parse::<i64>().unwrap())
                .unwrap_or_default()
        };
        items
            .iter()
            .filter_map(|item| {
                let name = item.get("pk")?.as_s().ok()?;
                name.starts_with(prefix).then(|| {
                    (
                        name.clone(),
                        number(item, "requests"),
                        number(item, "tokens"),
                    )
                })
            })
            .collect()
    }
}

/// The chat completions that reached the upstream, each checked to carry `real_key`.
fn chats_received(upstream: &FakeUpstream, real_key: &str) -> usize {
    let chats: Vec<_> = upstream
        .received()
        .into_iter()
        .filter(|seen| seen.path_and_query == "/v1/chat/completions")
        .collect();
    for seen in &chats {
        assert_eq!(seen.headers["authorization"], format!("Bearer {real_key}"));
    }
    chats.len()
}

/// The proxy's request records (one line each) that name `limit` as what refused them.
fn throttled_records(log: &str, limit: &str) -> usize {
    log.lines()
        .filter(|line| line.contains("openai_proxy::request"))
        .filter(|line| line.contains("throttled") && line.contains(limit))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_day_budget_is_a_rate_limit_error_the_python_sdk_does_not_retry() {
    let counters = Counters::start().await;
    let upstream = FakeUpstream::start(with_upstream_rate_headers).await;
    let keys = TempFile::with_contents("keys.json", &key_map());
    let upstream_url = upstream.base_url();
    let mut settings = counters.settings().to_vec();
    settings.extend([
        ("KEY_MAP_FILE", keys.path_str()),
        ("UPSTREAM_BASE_URL", upstream_url.as_str()),
    ]);
    let proxy = BinaryProxy::start(&settings);

    let stdout = run_sdk_script(
        "sdk_python_budget.py",
        &[
            ("OPENAI_PROXY_BASE_URL", &proxy.base_url()),
            ("OPENAI_PROXY_KEY", WRAPPER_KEY),
            ("BUDGET_TOKENS", &BUDGET.to_string()),
            ("MAX_TOKENS", &MAX_TOKENS.to_string()),
            ("USAGE_TOKENS", &USAGE.to_string()),
        ],
    )
    .await;
    for check in [
        "ok - call 2: x-ratelimit-remaining-tokens is the budget less usage and this reservation",
        "ok - remaining tokens decrease by the first call's usage",
        "ok - the budget fits two calls and not a third",
        "ok - budget spent: exactly one HTTP attempt",
        "ok - budget spent: code insufficient_quota",
        "ok - budget spent: x-should-retry false",
        "ok - budget still spent: one attempt",
    ] {
        assert!(stdout.contains(check), "{check}:\n{stdout}");
    }

    assert_eq!(
        chats_received(&upstream, REAL_KEY),
        2,
        "only the admitted calls reach the upstream"
    );
    // The day's counter holds the two completions' usage: each reservation was replaced by it.
    let items = counters.items(&format!("key#{BUDGET_ID}#")).await;
    let [(item, requests, tokens)] = items.as_slice() else {
        panic!("one day item expected: {items:?}");
    };
    assert!(item.starts_with("key#budget#day#"), "{item}");
    assert_eq!((*requests, *tokens), (2, 2 * USAGE as i64), "{item}");

    let log = proxy.stop();
    assert_eq!(throttled_records(&log, "key.tokens_per_day"), 2, "{log}");
    assert!(!log.contains("limits_store_error"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_cargo_lambda_watch_the_python_sdk_meets_a_requests_per_minute_limit() {
    let counters = Counters::start().await;
    let upstream = FakeUpstream::start(with_upstream_rate_headers).await;
    let keys = TempFile::with_contents("keys.json", &key_map());
    let emulator = LambdaEmulator::start().await;
    let upstream_url = upstream.base_url();
    let mut settings = counters.settings().to_vec();
    settings.extend([
        ("KEY_MAP_FILE", keys.path_str()),
        ("UPSTREAM_BASE_URL", upstream_url.as_str()),
    ]);
    let function = emulator.start_function(&settings);

    let stdout = run_sdk_script(
        "sdk_python_rate_limit.py",
        &[
            ("OPENAI_PROXY_BASE_URL", &emulator.base_url()),
            ("OPENAI_PROXY_KEY", OTHER_WRAPPER_KEY),
            ("REQUESTS_PER_MINUTE", &REQUESTS_PER_MINUTE.to_string()),
        ],
    )
    .await;
    for check in [
        "ok - call 2: x-ratelimit-remaining-requests",
        "ok - call 2: no x-ratelimit-*-tokens",
        "ok - the first refused call is the one past the limit",
        "ok - refused: code rate_limit_exceeded",
        "ok - refused: retry-after is whole seconds, 1 to 60",
        "ok - refused: retry-after runs to the minute's end",
    ] {
        assert!(stdout.contains(check), "{check}:\n{stdout}");
    }

    assert_eq!(chats_received(&upstream, OTHER_REAL_KEY), 2);
    // One minute item under the key's default id, holding the two admitted requests only.
    let items = counters.items("key#key:").await;
    let [(item, requests, _)] = items.as_slice() else {
        panic!("one minute item expected: {items:?}");
    };
    assert!(item.contains("#minute#"), "{item}");
    assert_eq!(*requests, 2, "{item}");

    let log = function.stop();
    assert_eq!(
        throttled_records(&log, "key.requests_per_minute"),
        1,
        "{log}"
    );
    assert!(!log.contains("limits_store_error"), "{log}");
}
