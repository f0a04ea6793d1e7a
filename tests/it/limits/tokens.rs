//! Tokens: reserved at admission, settled to the usage the fake reports (streams and other
//! routes included), given back when the upstream fails, kept when the client leaves; and day
//! budgets that admit only what fits, and what a changed budget does.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use super::{TABLE, USED, assert_rate_limited, header, key_file};
use crate::support::http_client;
use crate::support::limits::{
    Answer, ENDLESS_MODEL, LimitsUpstream, ProxyEnv, REFUSED_MODEL, WAIT, assert_same_minute, chat,
    chat_body, fresh_minute, leave_after_first_chunk, post, stop,
};
use crate::support::limits_store::{DynamoRelay, only_item, scan};
use crate::support::moto::Moto;

const TOKENS_KEY: &str = "wk-limits-tokens";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settled_usage_fills_the_tokens_per_minute_and_then_the_next_request_is_refused() {
    // Four requests, plain and streamed, fit one after another only because each settles to its
    // usage (14): the limit leaves room for three settled requests and one reservation. The
    // fifth reserves as much as the fourth did and no longer fits.
    let bodies: Vec<(String, u64)> = (0..5)
        .map(|n| chat_body("gpt-4o-mini", n % 2 == 1, 50))
        .collect();
    let limit = 3 * USED as u64 + bodies[3].1;
    assert!(bodies[4].1 + 4 * USED as u64 > limit && bodies[4].1 <= limit);
    let moto = Moto::start().await;
    moto.create_limits_table(TABLE).await;
    let fake = LimitsUpstream::start().await;
    let keys = key_file(&json!({"version": 2, "keys": {TOKENS_KEY: {
        "api_key": "sk-limits-tokens", "id": "tok", "limits": {"tokens_per_minute": limit}}}}));
    let proxy = ProxyEnv::new(&keys, &fake.upstream)
        .table(&moto.endpoint, TABLE)
        .start();
    let (base, client) = (proxy.base_url(), http_client());

    let started = fresh_minute().await;
    let mut answers = Vec::new();
    let mut items = Vec::new();
    for (body, _) in &bodies {
        answers.push(chat(&client, &base, TOKENS_KEY, body).await);
        // Read to its end, the answer's tokens are settled already.
        items.push(only_item(&scan(&moto, TABLE).await, "key#tok#minute#"));
    }
    assert_same_minute(started);

    for (n, (answer, (body, estimate))) in answers.iter().zip(&bodies).take(4).enumerate() {
        assert_eq!(answer.status, 200, "{answer:?}");
        if body.contains(r#""stream":true"#) {
            assert!(answer.body.ends_with("data: [DONE]\n\n"), "{answer:?}");
        }
        let settled = USED * n as i64;
        assert_eq!(
            header(answer, "x-ratelimit-limit-tokens"),
            limit.to_string()
        );
        // At admission: the settled requests before it, plus its reservation.
        let left = limit as i64 - settled - *estimate as i64;
        assert_eq!(
            header(answer, "x-ratelimit-remaining-tokens"),
            left.to_string()
        );
        assert!(answer.header("x-ratelimit-limit-requests").is_none());
        let item = &items[n];
        assert_eq!(
            (item.requests, item.tokens),
            (n as i64 + 1, settled + USED),
            "after request {n}: the reservation replaced by the usage"
        );
    }
    let refused = &answers[4];
    assert_rate_limited(refused, "tokens", "this API key");
    assert_eq!(
        header(refused, "x-ratelimit-limit-tokens"),
        limit.to_string()
    );
    let left = limit as i64 - 4 * USED;
    assert_eq!(
        header(refused, "x-ratelimit-remaining-tokens"),
        left.to_string()
    );
    assert_eq!(
        fake.chats().len(),
        4,
        "the refused request was not forwarded"
    );
    assert_eq!((items[4].requests, items[4].tokens), (4, 4 * USED));

    let (lines, _) = stop(proxy, &[TOKENS_KEY, "sk-limits-tokens"]);
    assert_eq!(lines[4]["outcome"], "throttled", "{}", lines[4]);
    assert_eq!(lines[4]["limit"], "key.tokens_per_minute", "{}", lines[4]);
}

const DAY_KEY: &str = "wk-limits-day";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_answer_gives_its_reservation_back_and_an_abandoned_stream_keeps_it() {
    let moto = Moto::start().await;
    moto.create_limits_table(TABLE).await;
    let fake = LimitsUpstream::start().await;
    let keys = key_file(&json!({"version": 2, "keys": {DAY_KEY: {
        "api_key": "sk-limits-day", "id": "day",
        "limits": {"tokens_per_day": 1_000_000, "tokens_per_month": 10_000_000}}}}));
    let proxy = ProxyEnv::new(&keys, &fake.upstream)
        .table(&moto.endpoint, TABLE)
        .start();
    let (base, client) = (proxy.base_url(), http_client());

    // The upstream refuses it: no tokens used, the reservation is given back.
    let (body, _) = chat_body(REFUSED_MODEL, false, 30);
    let answer = chat(&client, &base, DAY_KEY, &body).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    let items = scan(&moto, TABLE).await;
    for window in ["key#day#day#", "key#day#month#"] {
        let item = only_item(&items, window);
        assert_eq!((item.requests, item.tokens), (1, 0), "{item:?}");
    }

    // The client leaves mid-stream: no usage ever arrives, the reservation stays. The estimate
    // is of the client's bytes, not of the body with the usage flag the proxy adds.
    let (body, estimate) = chat_body(ENDLESS_MODEL, true, 40);
    leave_after_first_chunk(&base, DAY_KEY, &body).await;
    tokio::time::timeout(WAIT, fake.dropped)
        .await
        .expect("the proxy kept streaming to a client that had left")
        .unwrap_err();
    let items = scan(&moto, TABLE).await;
    for window in ["key#day#day#", "key#day#month#"] {
        let item = only_item(&items, window);
        assert_eq!(
            (item.requests, item.tokens),
            (2, estimate as i64),
            "the abandoned stream's reservation ({} bytes / 4 + 40) stays charged",
            body.len()
        );
    }

    let (lines, _) = stop(proxy, &[DAY_KEY, "sk-limits-day"]);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["outcome"], "client_gone", "{}", lines[1]);
}

const BUDGET_KEY: &str = "wk-limits-budget";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_against_a_day_budget_admit_only_what_fits() {
    // Streams the fake holds after their first chunk, so no admitted request settles (and
    // frees room) before every request has been answered.
    let bodies: Vec<(String, u64)> = (0..20)
        .map(|n| chat_body(&format!("gpt-4o-mini-held-limits-budget-{n:02}"), true, 100))
        .collect();
    let estimate = bodies[0].1;
    assert!(bodies.iter().all(|(_, each)| *each == estimate));
    let budget = 5 * estimate;
    let moto = Moto::start().await;
    moto.create_limits_table(TABLE).await;
    let fake = LimitsUpstream::start().await;
    let keys = key_file(&json!({"version": 2, "keys": {BUDGET_KEY: {
        "api_key": "sk-limits-budget", "id": "budget", "limits": {"tokens_per_day": budget}}}}));
    let proxy = ProxyEnv::new(&keys, &fake.upstream)
        .table(&moto.endpoint, TABLE)
        .start();
    let (base, client) = (proxy.base_url(), http_client());

    let sent = join_all(bodies.iter().map(|(body, _)| {
        client
            .post(format!("{base}/chat/completions"))
            .bearer_auth(BUDGET_KEY)
            .header("content-type", "application/json")
            .body(body.clone())
            .timeout(WAIT)
            .send()
    }))
    .await;
    let (mut admitted, mut refused) = (Vec::new(), Vec::new());
    for response in sent.into_iter().map(Result::unwrap) {
        if response.status() == 200 {
            admitted.push(response);
        } else {
            let (status, headers) = (response.status().as_u16(), response.headers().clone());
            let body = response.text().await.unwrap();
            refused.push(Answer {
                status,
                headers,
                body,
            });
        }
    }
    assert_eq!((admitted.len(), refused.len()), (5, 15));
    let forwarded = fake.chats();
    assert_eq!(forwarded.len(), 5, "only what fits reached the upstream");
    let mut left: Vec<u64> = admitted
        .iter()
        .map(|response| {
            let headers = response.headers();
            assert_eq!(headers["x-ratelimit-limit-tokens"], budget.to_string());
            headers["x-ratelimit-remaining-tokens"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    left.sort_unstable();
    assert_eq!(left, (0..5).map(|n| n * estimate).collect::<Vec<_>>());
    for answer in &refused {
        assert_eq!(answer.status, 429, "{answer:?}");
        let (code, error_type, message) = answer.error();
        assert_eq!(
            (code.as_str(), error_type.as_str()),
            ("insufficient_quota", "insufficient_quota")
        );
        assert!(
            message.contains("token budget per day of this API key"),
            "{message}"
        );
        assert_eq!(header(answer, "x-should-retry"), "false");
        assert!(answer.header("retry-after").is_none(), "{answer:?}");
        assert_eq!(
            header(answer, "x-ratelimit-limit-tokens"),
            budget.to_string()
        );
        assert_eq!(header(answer, "x-ratelimit-remaining-tokens"), "0");
    }

    // Released, the five streams end with their usage and settle to it.
    for seen in &forwarded {
        let body: Value = serde_json::from_slice(&seen.body).unwrap();
        let token = body["model"]
            .as_str()
            .unwrap()
            .split("-held-")
            .nth(1)
            .unwrap();
        let release = client
            .get(format!("{}/test-release/{token}", fake.upstream.base_url()))
            .timeout(WAIT)
            .send()
            .await
            .unwrap();
        let release: Value = serde_json::from_slice(&release.bytes().await.unwrap()).unwrap();
        assert_eq!(release["held"], true, "{token} was still held");
    }
    for response in admitted {
        let text = tokio::time::timeout(WAIT, response.text())
            .await
            .unwrap()
            .unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    }
    let item = only_item(&scan(&moto, TABLE).await, "key#budget#day#");
    assert_eq!((item.requests, item.tokens), (5, 5 * USED), "{item:?}");

    let (lines, _) = stop(proxy, &[BUDGET_KEY, "sk-limits-budget"]);
    let throttled = lines
        .iter()
        .filter(|line| line["limit"] == "key.tokens_per_day" && line["outcome"] == "throttled");
    assert_eq!(throttled.count(), 15);
}

const ROUTES_KEY: &str = "wk-limits-routes";

/// Responses (plain and streamed) and embeddings settle to their usage as chat does; an
/// embedding reserves its input only, since it generates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metered_route_settles_to_its_usage() {
    let moto = Moto::start().await;
    moto.create_limits_table(TABLE).await;
    let relay = DynamoRelay::start(&moto, Duration::ZERO).await;
    let fake = LimitsUpstream::start().await;
    let keys = key_file(
        &json!({"version": 2, "keys": {ROUTES_KEY: {"api_key": "sk-limits-routes",
        "id": "routes", "limits": {"tokens_per_day": 1_000_000}}}}),
    );
    let proxy = ProxyEnv::new(&keys, &fake.upstream)
        .table(&relay.endpoint, TABLE)
        .set("LIMITS_DEFAULT_OUTPUT_TOKENS", "300")
        .start();
    let (base, client) = (proxy.base_url(), http_client());

    let cases = [
        (
            "responses",
            r#"{"model":"gpt-4o-mini","input":"Hi"}"#,
            300,
            USED,
        ),
        (
            "responses",
            r#"{"model":"gpt-4o-mini","input":"Hi","stream":true,"max_output_tokens":64}"#,
            64,
            USED,
        ),
        (
            "embeddings",
            r#"{"model":"text-embedding-3-small","input":"Hi"}"#,
            0,
            4,
        ),
    ];
    let mut total = 0;
    for (n, (path, body, output, used)) in cases.into_iter().enumerate() {
        let answer = post(&client, &format!("{base}/{path}"), ROUTES_KEY, body).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let estimate = (body.len() as i64 + 3) / 4 + output;
        let writes = relay.writes();
        let admission = &writes[2 * n];
        assert_eq!(admission.tokens, estimate, "{path} {body}: {writes:?}");
        let settle = writes.get(2 * n + 1);
        assert_eq!(
            settle.map(|settle| (settle.is_settle(), settle.tokens)),
            Some((true, used - estimate)),
            "{path} {body} settles to its usage: {writes:?}"
        );
        total += used;
        let item = only_item(&scan(&moto, TABLE).await, "key#routes#day#");
        assert_eq!(item.tokens, total, "{path} {body}");
    }
    stop(proxy, &[ROUTES_KEY, "sk-limits-routes"]);
}

const RAISED_KEY: &str = "wk-limits-raised";

/// An operator raises a spent budget: the next request fits the new one, though this process
/// saw the old one refuse earlier in the same window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_budget_admits_at_once() {
    let fake = LimitsUpstream::start().await;
    let (body, estimate) = chat_body("gpt-4o-mini", false, 20);
    let document = |budget: u64| {
        json!({"version": 2, "keys": {RAISED_KEY: {"api_key": "sk-limits-raised", "id": "raised",
            "limits": {"tokens_per_day": budget}}}})
    };
    let keys = key_file(&document(estimate));
    let proxy = ProxyEnv::new(&keys, &fake.upstream)
        .set("KEY_MAP_MIN_REFRESH_INTERVAL_SECONDS", "1")
        .start();
    let (base, client) = (proxy.base_url(), http_client());

    let first = chat(&client, &base, RAISED_KEY, &body).await;
    assert_eq!(first.status, 200, "{first:?}");
    // Settled to 14, the day has room for less than one more estimate.
    let spent = chat(&client, &base, RAISED_KEY, &body).await;
    assert_eq!(spent.status, 429, "{spent:?}");
    assert_eq!(spent.error().0, "insufficient_quota", "{spent:?}");

    std::fs::write(&keys.path, document(100 * estimate).to_string()).unwrap();
    // An unknown key makes the proxy read the file again at once.
    let unknown = chat(&client, &base, "wk-limits-nobody", &body).await;
    assert_eq!(unknown.status, 401, "{unknown:?}");
    let raised = chat(&client, &base, RAISED_KEY, &body).await;
    assert_eq!(
        raised.status, 200,
        "the raised budget still refused: {raised:?}"
    );
    assert_eq!(
        header(&raised, "x-ratelimit-limit-tokens"),
        (100 * estimate).to_string()
    );
    stop(proxy, &[RAISED_KEY, "sk-limits-raised"]);
}
