//! The router in-process against a recording fake upstream: what goes upstream and what comes
//! back, byte for byte and as it arrives.

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::Value;

use crate::support::upstream::{FakeUpstream, scripted_stream};
use crate::support::{InProcessProxy, OTHER_REAL_KEY, REAL_KEY, WRAPPER_KEY, openai};

pub const CHAT_BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"héllo"}]}"#;
/// Every wait in these tests is bounded by this.
pub const BOUND: Duration = Duration::from_secs(10);

pub fn http() -> reqwest::Client {
    crate::support::http_client_builder()
        .timeout(BOUND)
        .build()
        .unwrap()
}

pub async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// Asserts OpenAI's error shape and returns the `code`.
pub async fn openai_error(response: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = json_of(response).await;
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].is_string(), "{body}");
    assert!(error["param"].is_null(), "{body}");
    let text = body.to_string();
    for key in [WRAPPER_KEY, REAL_KEY] {
        assert!(!text.contains(key), "key leaked into {text}");
    }
    error["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_real_key_goes_upstream_and_the_wrapper_key_never_does() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;

    let response = http()
        .post(proxy.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {WRAPPER_KEY}"))
        .header("content-type", "application/json")
        .header("openai-beta", "assistants=v2")
        .header("openai-organization", "org-client")
        .header("idempotency-key", "idem-1")
        .header("x-stainless-retry-count", "0")
        .header("api-key", WRAPPER_KEY)
        .header("cookie", format!("k={WRAPPER_KEY}"))
        .header("x-forwarded-for", "10.0.0.1")
        .body(CHAT_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-request-id"], "req_fake");
    assert_eq!(
        json_of(response).await["choices"][0]["message"]["content"],
        openai::REPLY
    );

    let received = upstream.received();
    assert_eq!(received.len(), 1);
    let seen = &received[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path_and_query, "/v1/chat/completions");
    assert_eq!(seen.headers["authorization"], format!("Bearer {REAL_KEY}"));
    assert_eq!(
        seen.body,
        CHAT_BODY.as_bytes(),
        "request body must go upstream unchanged"
    );
    for (name, value) in [
        ("content-type", "application/json"),
        ("openai-beta", "assistants=v2"),
        ("openai-organization", "org-client"),
        ("idempotency-key", "idem-1"),
        ("x-stainless-retry-count", "0"),
    ] {
        assert_eq!(seen.headers[name], value, "{name} not forwarded");
    }
    for name in ["api-key", "cookie", "x-forwarded-for", "accept-encoding"] {
        assert!(
            !seen.headers.contains_key(name),
            "{name} must not be forwarded"
        );
    }
    for value in seen.headers.values() {
        assert!(
            !value
                .as_bytes()
                .windows(WRAPPER_KEY.len())
                .any(|w| w == WRAPPER_KEY.as_bytes())
        );
    }
    // The host header names the upstream, not the proxy.
    assert_eq!(seen.headers["host"], upstream.addr.to_string());
}

#[tokio::test]
async fn each_wrapper_key_maps_to_its_own_real_key_and_models_is_forwarded() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;

    let response = http()
        .get(proxy.url("/v1/models?limit=2"))
        .bearer_auth("wrapper-key-bob")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let models = json_of(response).await;
    assert_eq!(models["data"][0]["id"], "gpt-4o-mini");

    let received = upstream.received();
    assert_eq!(received[0].method, "GET");
    assert_eq!(received[0].path_and_query, "/v1/models?limit=2");
    assert_eq!(
        received[0].headers["authorization"],
        format!("Bearer {OTHER_REAL_KEY}")
    );
}

/// Serves one scripted response to the first request, for tests that need exact bytes or timing.
pub async fn upstream_serving(response: Response) -> FakeUpstream {
    let once = Mutex::new(Some(response));
    FakeUpstream::start(move |_| once.lock().unwrap().take().expect("one request only")).await
}

#[tokio::test]
async fn sse_bytes_out_equal_bytes_in() {
    // CRLF line endings, a comment line, an event line, and "é" and "🦀" split across writes.
    let crab = "🦀".as_bytes();
    let writes: Vec<Vec<u8>> = vec![
        b": keep-alive comment\r\n\r\n".to_vec(),
        b"event: response.output_text.delta\r\ndata: {\"delta\":\"h\xC3".to_vec(),
        [b"\xA9llo ".as_slice(), &crab[..2]].concat(),
        [&crab[2..], b"\"}\r\n\r\n".as_slice()].concat(),
        b"data: {\"choices\":[]}\n\n: another comment\n\ndata: [DONE]\n\n".to_vec(),
    ];
    let (tx, response) = scripted_stream("text/event-stream");
    let upstream = upstream_serving(response).await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;

    let expected: Vec<u8> = writes.concat();
    let sender = tokio::spawn(async move {
        for write in writes {
            tx.send(Bytes::from(write)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let response = proxy
        .post(
            "/v1/responses",
            r#"{"model":"gpt-4o-mini","input":"hi","stream":true}"#,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = response.bytes().await.unwrap();
    sender.await.unwrap();
    assert_eq!(body.as_ref(), expected.as_slice());
}

#[tokio::test]
async fn the_first_chunk_reaches_the_client_before_the_upstream_sends_the_next() {
    let (tx, response) = scripted_stream("text/event-stream");
    let upstream = upstream_serving(response).await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;

    let first = Bytes::from_static(b"data: {\"n\":1}\n\n");
    let second = Bytes::from_static(b"data: [DONE]\n\n");
    tx.send(first.clone()).await.unwrap();

    let response = proxy
        .post(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","messages":[],"stream":true}"#,
        )
        .await;
    let mut chunks = response.bytes_stream();
    // The upstream has sent only the first chunk and holds the second until we have seen it.
    let mut seen = Vec::new();
    while seen.len() < first.len() {
        let chunk = tokio::time::timeout(BOUND, chunks.next())
            .await
            .expect("first chunk was held back by the proxy")
            .unwrap()
            .unwrap();
        seen.extend_from_slice(&chunk);
    }
    assert_eq!(seen, first);

    tx.send(second.clone()).await.unwrap();
    drop(tx);
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(BOUND, chunks.next()).await.unwrap() {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, second);
}

#[tokio::test]
async fn upstream_errors_pass_through_unchanged() {
    let body = r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    let upstream = upstream_serving(
        (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("content-type", "application/json"),
                ("retry-after", "7"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-request-id", "req_429"),
                ("openai-organization", "org-owner-of-real-key"),
            ],
            body,
        )
            .into_response(),
    )
    .await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;

    let response = proxy
        .post(
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":"x"}"#,
        )
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = response.headers().clone();
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    assert_eq!(headers["x-request-id"], "req_429");
    assert!(!headers.contains_key("openai-organization"));
    assert_eq!(response.bytes().await.unwrap(), body.as_bytes());
}

#[tokio::test]
async fn upstream_5xx_bodies_pass_through_unchanged() {
    let body = "upstream exploded, not even JSON";
    let upstream = upstream_serving((StatusCode::SERVICE_UNAVAILABLE, body).into_response()).await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;
    let response = proxy.post("/v1/chat/completions", CHAT_BODY).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.bytes().await.unwrap(), body.as_bytes());
}

#[tokio::test]
async fn a_stream_slower_than_the_idle_timeout_per_chunk_is_never_cut_while_chunks_flow() {
    // A chunk every 100 ms for 2.5 s: longer than the 2 s idle timeout overall, but never idle
    // for long, so the stream must arrive whole. The gaps are a twentieth of the timeout: the
    // process would have to stall for nearly two seconds to make one look idle.
    const CHUNKS: usize = 25;
    let (tx, response) = scripted_stream("text/event-stream");
    let upstream = upstream_serving(response).await;
    let proxy = InProcessProxy::start(
        &upstream.base_url(),
        &[("UPSTREAM_IDLE_TIMEOUT_SECONDS", "2")],
    )
    .await;
    let started = std::time::Instant::now();
    let sender = tokio::spawn(async move {
        for n in 0..CHUNKS {
            tx.send(Bytes::from(format!("data: {n}\n\n")))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let response = proxy
        .post("/v1/chat/completions", r#"{"stream":true}"#)
        .await;
    let body = response.bytes().await.unwrap();
    sender.await.unwrap();
    let expected: String = (0..CHUNKS).map(|n| format!("data: {n}\n\n")).collect();
    assert_eq!(body, expected.as_bytes());
    // The sleeps alone add up to more than the idle timeout.
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn health_says_ok_with_version_key_map_age_and_source_and_upstream_host() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;
    let response = http().get(proxy.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["key_map_loaded"], true);
    assert_eq!(body["key_map"]["source"], "fixed");
    assert!(
        body["key_map"]["age_seconds"].as_u64().unwrap() < 60,
        "{body}"
    );
    assert_eq!(body["upstream"], upstream.addr.to_string());
    // Without LIMITS_TABLE, counters are this process's own.
    assert_eq!(body["limits"]["store"], "memory");
    assert_eq!(body["limits"]["shared"], false);
    assert!(upstream.received().is_empty());
}

/// A body the proxy passes unchanged keeps the upstream's length: the client gets the same
/// `content-length` (so the answer is complete on the wire with its last byte), an empty body
/// included; a stream, whose length nobody knows, stays chunked.
#[tokio::test]
async fn a_json_answer_keeps_the_upstreams_length_and_a_stream_stays_chunked() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;
    let embeddings = r#"{"model":"text-embedding-3-small","input":"Hi"}"#;
    let response = proxy.post("/v1/embeddings", embeddings).await;
    assert_eq!(response.status(), StatusCode::OK);
    let declared: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(response.headers().get("transfer-encoding").is_none());
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), declared);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["object"], "list");

    let response = proxy
        .post(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("content-length").is_none());
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    let stream = response.bytes().await.unwrap();
    assert!(stream.ends_with(b"data: [DONE]\n\n"));

    // A HEAD answer declares the length of a body it does not have; the proxy does not relay a
    // length of its own making.
    let response = http()
        .head(proxy.url("/v1/models"))
        .bearer_auth(WRAPPER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(
        response
            .headers()
            .get("content-length")
            .map(|value| value.to_str().unwrap()),
        Some("0")
    );

    let empty = upstream_serving(StatusCode::OK.into_response()).await;
    let proxy = InProcessProxy::start(&empty.base_url(), &[]).await;
    let response = proxy.post("/v1/embeddings", embeddings).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-length"], "0");
    assert!(response.bytes().await.unwrap().is_empty());
}

/// An SSE answer that declares its length still goes to the client chunked, byte for byte: the
/// proxy may end a stream with an error event of its own, which a fixed length would cut.
#[tokio::test]
async fn an_sse_answer_with_a_declared_length_is_relayed_chunked_and_unchanged() {
    let events = "data: {\"choices\":[]}\n\ndata: [DONE]\n\n";
    let upstream =
        upstream_serving(([("content-type", "text/event-stream")], events).into_response()).await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;
    let response = proxy
        .post(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":false},"messages":[]}"#,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("content-length").is_none());
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    assert_eq!(response.bytes().await.unwrap().as_ref(), events.as_bytes());
}
