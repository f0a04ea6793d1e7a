//! The store's side: the writes the proxy makes (settles answered before an answer ends, none
//! for a repeated refusal or a key without limits), and a table that cannot be reached.

use std::time::Duration;

use serde_json::json;

use super::{TABLE, USED, assert_rate_limited, header, key_file};
use crate::support::http_client;
use crate::support::limits::{
    LimitsUpstream, ProxyEnv, UPSTREAM_RATE_HEADERS, assert_same_minute, chat, chat_body,
    fresh_minute, health, stop,
};
use crate::support::limits_store::{DynamoRelay, scan};
use crate::support::moto::Moto;
use crate::support::upstream::closed_port;

const RELAYED_KEY: &str = "wk-limits-relayed";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_settle_is_answered_before_the_answer_ends_and_a_refusal_costs_one_write() {
    let moto = Moto::start().await;
    moto.create_limits_table(TABLE).await;
    // Settle writes wait a while at the relay: an answer that ended before its settle was
    // answered would be seen here.
    let relay = DynamoRelay::start(&moto, Duration::from_millis(300)).await;
    let fake = LimitsUpstream::start().await;
    let keys = key_file(
        &json!({"version": 2, "keys": {RELAYED_KEY: {"api_key": "sk-limits-relayed",
        "id": "relayed", "limits": {"requests_per_minute": 3, "tokens_per_minute": 100_000}}}}),
    );
    let proxy = ProxyEnv::new(&keys, &fake.upstream)
        .table(&relay.endpoint, TABLE)
        .start();
    let (base, client) = (proxy.base_url(), http_client());

    let started = fresh_minute().await;
    for (n, stream) in [false, true, false].into_iter().enumerate() {
        let (body, estimate) = chat_body("gpt-4o-mini", stream, 20);
        let answer = chat(&client, &base, RELAYED_KEY, &body).await;
        let writes = relay.writes();
        assert_eq!(answer.status, 200, "{answer:?}");
        let settles: Vec<_> = writes.iter().filter(|write| write.is_settle()).collect();
        assert_eq!(settles.len(), n + 1, "{writes:?}");
        let settle = settles[n];
        assert!(
            settle.answered,
            "the answer (stream: {stream}) ended before its settle write was answered: {writes:?}"
        );
        assert_eq!(settle.tokens, USED - estimate as i64, "{settle:?}");
        assert!(settle.pk.starts_with("key#relayed#minute#"), "{settle:?}");
    }
    // The fourth is refused by the store; the next two by the proxy's memory of that, unwritten.
    let (body, _) = chat_body("gpt-4o-mini", false, 20);
    let mut refused = Vec::new();
    for _ in 0..3 {
        refused.push(chat(&client, &base, RELAYED_KEY, &body).await);
    }
    let writes = relay.writes();
    assert_same_minute(started);

    for answer in &refused {
        assert_rate_limited(answer, "requests", "this API key");
        assert_eq!(header(answer, "x-ratelimit-remaining-requests"), "0");
    }
    let admissions = writes.iter().filter(|write| write.conditional).count();
    assert_eq!(
        admissions, 4,
        "three admitted, one refused by the store: {writes:?}"
    );
    assert_eq!(writes.len(), 7, "{writes:?}");
    assert_eq!(fake.chats().len(), 3);
    stop(proxy, &[RELAYED_KEY, "sk-limits-relayed"]);
}

const UNREACHABLE_KEY: &str = "wk-limits-unreachable";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_table_is_served_uncounted_or_refused_as_configured() {
    let fake = LimitsUpstream::start().await;
    let keys = key_file(&json!({"version": 2, "keys": {UNREACHABLE_KEY: {
        "api_key": "sk-limits-unreachable", "limits": {"requests_per_minute": 5}}}}));
    let nowhere = format!("http://{}", closed_port());
    let env = ProxyEnv::new(&keys, &fake.upstream).table(&nowhere, TABLE);
    let deny = env.clone().set("LIMITS_ON_STORE_ERROR", "deny").start();
    let allow = env.start();
    let client = http_client();
    let (body, _) = chat_body("gpt-4o-mini", false, 16);
    for proxy in [&deny, &allow] {
        let limits = health(proxy.addr).await["limits"].clone();
        assert_eq!(limits, json!({"store": "dynamodb", "shared": true}));
    }

    let denied = chat(&client, &deny.base_url(), UNREACHABLE_KEY, &body).await;
    assert_eq!(denied.status, 503, "{denied:?}");
    assert_eq!(denied.error().0, "limits_unavailable", "{denied:?}");
    assert!(fake.chats().is_empty(), "a denied request went upstream");
    let allowed = chat(&client, &allow.base_url(), UNREACHABLE_KEY, &body).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(fake.chats().len(), 1);

    let secrets = [UNREACHABLE_KEY, "sk-limits-unreachable"];
    for (proxy, status) in [(deny, 503), (allow, 200)] {
        let (lines, records) = stop(proxy, &secrets);
        assert_eq!((lines.len(), records.len()), (1, 1));
        assert_eq!(lines[0]["status"], status, "{}", lines[0]);
        assert_eq!(lines[0]["limits_store_error"], true, "{}", lines[0]);
        assert_eq!(records[0]["LimitsStoreErrors"], 1, "{}", records[0]);
        assert_eq!(records[0]["Throttled"], 0, "{}", records[0]);
        let named = records[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|metric| metric["Name"] == "LimitsStoreErrors");
        assert!(named, "LimitsStoreErrors is declared: {}", records[0]);
    }
}

const FREE_KEY: &str = "wk-limits-free";
const PAID_KEY: &str = "wk-limits-paid";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_limits_writes_nothing_and_keeps_the_upstreams_rate_headers() {
    let moto = Moto::start().await;
    moto.create_limits_table(TABLE).await;
    let fake = LimitsUpstream::start().await;
    let keys = key_file(&json!({"version": 2, "keys": {
        FREE_KEY: {"api_key": "sk-limits-free", "id": "free"},
        PAID_KEY: {"api_key": "sk-limits-paid", "id": "paid", "limits": {"requests_per_minute": 5}},
    }}));
    let proxy = ProxyEnv::new(&keys, &fake.upstream)
        .table(&moto.endpoint, TABLE)
        .start();
    let (base, client) = (proxy.base_url(), http_client());

    for stream in [false, true] {
        let (body, _) = chat_body("gpt-4o-mini", stream, 16);
        let free = chat(&client, &base, FREE_KEY, &body).await;
        assert_eq!(free.status, 200, "{free:?}");
        for (name, value) in UPSTREAM_RATE_HEADERS {
            assert_eq!(header(&free, name), value, "untouched: {free:?}");
        }
        assert!(free.header("x-ratelimit-reset-requests").is_none());
    }
    let items = scan(&moto, TABLE).await;
    assert!(items.is_empty(), "a key without limits wrote {items:?}");

    let (body, _) = chat_body("gpt-4o-mini", false, 16);
    let paid = chat(&client, &base, PAID_KEY, &body).await;
    assert_eq!(paid.status, 200, "{paid:?}");
    assert_eq!(header(&paid, "x-ratelimit-limit-requests"), "5");
    assert_eq!(header(&paid, "x-ratelimit-remaining-requests"), "4");
    header(&paid, "x-ratelimit-reset-requests");
    // The upstream's token trio describes the real key's organisation: gone, not passed on.
    assert!(
        paid.header("x-ratelimit-limit-tokens").is_none(),
        "{paid:?}"
    );
    let items = scan(&moto, TABLE).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(items[0].pk.starts_with("key#paid#minute#"), "{items:?}");

    let secrets = [FREE_KEY, PAID_KEY, "sk-limits-free", "sk-limits-paid"];
    let (lines, _) = stop(proxy, &secrets);
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|line| line["limit"].is_null()));
}

/// Served uncounted (the table unreachable, `allow`), a limited key's answer has no counts of the
/// proxy's to show; the upstream's own rate-limit headers describe the real key's organisation,
/// not this caller, and are not passed on in their place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_key_served_uncounted_gets_no_upstream_rate_headers() {
    let fake = LimitsUpstream::start().await;
    let keys = key_file(&json!({"version": 2, "keys": {UNREACHABLE_KEY: {
        "api_key": "sk-limits-unreachable", "limits": {"requests_per_minute": 5}}}}));
    let nowhere = format!("http://{}", closed_port());
    let proxy = ProxyEnv::new(&keys, &fake.upstream)
        .table(&nowhere, TABLE)
        .start();
    let (body, _) = chat_body("gpt-4o-mini", false, 16);
    let allowed = chat(&http_client(), &proxy.base_url(), UNREACHABLE_KEY, &body).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    for (name, _) in UPSTREAM_RATE_HEADERS {
        assert!(
            allowed.header(name).is_none(),
            "{name} passed on: {allowed:?}"
        );
    }
    stop(proxy, &[UNREACHABLE_KEY, "sk-limits-unreachable"]);
}
