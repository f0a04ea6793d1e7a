//! The function-URL front door: the sample events in `events/` are parsed the way the proxy's
//! Lambda loop parses them (`lambda/event.rs`) and served by the same router, and served through
//! `lambda_http::StreamAdapter`, the adapter that turns the router's responses into the
//! RESPONSE_STREAM metadata prelude plus body stream.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::StatusCode;
use futures_util::StreamExt;
use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt;
use lambda_http::{Context, LambdaEvent, Service, StreamAdapter};
use openai_proxy::app::router;
use serde_json::Value;

use crate::proxy::upstream_serving;
use crate::support::upstream::{FakeUpstream, HeadDelay, LongStream, long_stream, scripted_stream};
use crate::support::{REAL_KEY, manifest_dir, openai, state};

const BOUND: Duration = Duration::from_secs(10);

fn event_text(name: &str) -> String {
    std::fs::read_to_string(manifest_dir().join("events").join(name)).unwrap()
}

fn function_url_request(event: &str) -> axum::extract::Request {
    openai_proxy::lambda::event::request(&Bytes::copy_from_slice(event.as_bytes())).unwrap()
}

/// Every sample event, and what the router must answer to it.
const EXPECTED: [(&str, StatusCode); 10] = [
    ("health.json", StatusCode::OK),
    ("models.json", StatusCode::OK),
    ("chat.json", StatusCode::OK),
    ("chat-stream.json", StatusCode::OK),
    ("embeddings.json", StatusCode::OK),
    ("responses.json", StatusCode::OK),
    ("transcription-upload.json", StatusCode::OK),
    ("speech.json", StatusCode::OK),
    ("missing-key.json", StatusCode::UNAUTHORIZED),
    ("bad-json.json", StatusCode::BAD_REQUEST),
];

#[test]
fn every_sample_event_is_listed_here() {
    let mut on_disk: Vec<String> = std::fs::read_dir(Path::new(manifest_dir()).join("events"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut listed: Vec<&str> = EXPECTED.iter().map(|(name, _)| *name).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[tokio::test]
async fn sample_events_parse_and_are_served_by_the_router() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let app = router(state(&upstream.base_url(), &[]).await);
    for (name, status) in EXPECTED {
        let request = function_url_request(&event_text(name));
        let response = tokio::time::timeout(BOUND, app.clone().oneshot(request))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), status, "{name}");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(!body.is_empty(), "{name}: empty body");
        if status.is_client_error() {
            let error: Value = serde_json::from_slice(&body).unwrap();
            assert!(error["error"]["message"].is_string(), "{name}: {error}");
        }
    }
    // Every upstream call carried the real key, for the wrapper key in the events.
    let received = upstream.received();
    assert_eq!(received.len(), 7);
    for seen in received {
        assert_eq!(seen.headers["authorization"], format!("Bearer {REAL_KEY}"));
    }
}

/// A function URL hands a multipart body over base64-encoded: the upstream must get the
/// client's bytes, boundary and all, and a binary answer must come back as sent.
#[tokio::test]
async fn base64_bodies_reach_the_upstream_as_the_clients_bytes() {
    use base64::Engine;
    let upstream = FakeUpstream::start(openai::respond).await;
    let app = router(state(&upstream.base_url(), &[]).await);
    let text = event_text("transcription-upload.json");
    let event: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(event["isBase64Encoded"], true);
    let sent = base64::engine::general_purpose::STANDARD
        .decode(event["body"].as_str().unwrap())
        .unwrap();
    let request = function_url_request(&text);
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let received = upstream.received();
    assert_eq!(received[0].body, sent);
    assert!(
        sent.windows(256)
            .any(|window| window.iter().copied().eq(0..=255u8))
    );
    assert_eq!(
        received[0].headers["content-type"],
        event["headers"]["content-type"].as_str().unwrap()
    );

    // The speech answer is binary; through the router it is the upstream's bytes.
    let text = event_text("speech.json");
    let event: Value = serde_json::from_str(&text).unwrap();
    let direct = crate::support::http_client()
        .post(format!("{}/audio/speech", upstream.base_url()))
        .bearer_auth(REAL_KEY)
        .header("content-type", "application/json")
        .body(event["body"].as_str().unwrap().to_owned())
        .send()
        .await
        .unwrap();
    let content_type = direct.headers()["content-type"].clone();
    let direct = direct.bytes().await.unwrap();
    let request = function_url_request(&text);
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.headers()["content-type"], content_type);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(direct.len() > 1024 && !content_type.to_str().unwrap().contains("json"));
    assert_eq!(body, direct);
}

/// Runs one event through the streaming adapter, as `run_with_streaming_response_concurrent`
/// does, and returns the prelude's status and headers and the body as the chunks it streamed.
async fn through_stream_adapter(
    app: axum::Router,
    name: &str,
) -> (StatusCode, axum::http::HeaderMap, Vec<Vec<u8>>) {
    with_context(app, name, Context::default()).await
}

/// The same, for an invocation with `context` (its deadline, say).
async fn with_context(
    app: axum::Router,
    name: &str,
    context: Context,
) -> (StatusCode, axum::http::HeaderMap, Vec<Vec<u8>>) {
    let payload: LambdaRequest = serde_json::from_str(&event_text(name)).unwrap();
    let mut adapter = StreamAdapter::from(app);
    let response = tokio::time::timeout(BOUND, adapter.call(LambdaEvent::new(payload, context)))
        .await
        .unwrap()
        .unwrap();
    let prelude = response.metadata_prelude;
    let mut chunks = Vec::new();
    let mut stream = response.stream;
    while let Some(chunk) = tokio::time::timeout(BOUND, stream.next()).await.unwrap() {
        chunks.push(chunk.unwrap().to_vec());
    }
    (prelude.status_code, prelude.headers, chunks)
}

/// `body` as its SSE events, each with the blank line that ends it.
fn sse_events(body: &[u8]) -> Vec<&[u8]> {
    let mut events = Vec::new();
    let mut rest = body;
    while let Some(end) = rest.windows(2).position(|pair| pair == b"\n\n") {
        let (event, after) = rest.split_at(end + 2);
        events.push(event);
        rest = after;
    }
    assert!(rest.is_empty(), "an unterminated event: {rest:?}");
    events
}

#[tokio::test]
async fn a_streaming_chat_event_streams_the_upstream_bytes_chunk_by_chunk() {
    // The reference: the fake model's stream for this request, sent straight to it.
    let model = FakeUpstream::start(openai::respond).await;
    let event: Value = serde_json::from_str(&event_text("chat-stream.json")).unwrap();
    let direct = crate::support::http_client()
        .post(format!("{}/chat/completions", model.base_url()))
        .body(event["body"].as_str().unwrap().to_owned())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let events = sse_events(&direct);
    assert_eq!(events.len(), openai::WORDS.len() + 3, "events: {events:?}");

    // The same events from an upstream that sends each one only after the client has the one
    // before: one chunk per event, each as it was sent, shows nothing is pooled on the way.
    let (tx, response) = scripted_stream("text/event-stream; charset=utf-8");
    let upstream = upstream_serving(response).await;
    let app = router(state(&upstream.base_url(), &[]).await);
    let payload: LambdaRequest = serde_json::from_str(&event_text("chat-stream.json")).unwrap();
    let mut adapter = StreamAdapter::from(app);
    let response = tokio::time::timeout(
        BOUND,
        adapter.call(LambdaEvent::new(payload, Context::default())),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.metadata_prelude.status_code, StatusCode::OK);
    assert_eq!(
        response.metadata_prelude.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let mut stream = response.stream;
    for event in &events {
        tx.send(Bytes::copy_from_slice(event)).await.unwrap();
        let chunk = tokio::time::timeout(BOUND, stream.next())
            .await
            .expect("an event was held back")
            .unwrap()
            .unwrap();
        assert_eq!(chunk.as_ref(), *event);
    }
    drop(tx);
    assert!(
        tokio::time::timeout(BOUND, stream.next())
            .await
            .unwrap()
            .is_none()
    );
    assert!(events.last().unwrap().ends_with(b"data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_non_streaming_embeddings_event_returns_a_non_empty_json_body() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let app = router(state(&upstream.base_url(), &[]).await);
    let (status, headers, chunks) = through_stream_adapter(app, "embeddings.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let body = chunks.concat();
    assert!(!body.is_empty(), "streaming mode lost the buffered body");
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["object"], "list");
    assert!(
        json["data"][0]["embedding"]
            .as_str()
            .is_some_and(|b64| !b64.is_empty())
    );
}

#[tokio::test]
async fn an_error_event_streams_an_openai_error() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let app = router(state(&upstream.base_url(), &[]).await);
    let (status, headers, chunks) = through_stream_adapter(app, "missing-key.json").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["content-type"], "application/json");
    let json: Value = serde_json::from_slice(&chunks.concat()).unwrap();
    assert_eq!(json["error"]["code"], "invalid_api_key");
    assert!(upstream.received().is_empty());
}

/// An invocation context whose deadline is `left` from now, as the runtime API announces it.
fn context_with_deadline(left: Duration) -> Context {
    let deadline = SystemTime::now() + left;
    let mut context = Context::default();
    context.deadline = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    context
}

/// The time left in the invocations below: far past `GUARD`, so a response that ends at all
/// ended before the deadline.
const LEFT: Duration = Duration::from_secs(60);
/// When the proxy must give up: `LEFT` less the margin, which `near_deadline` configures.
const CUTOFF: Duration = Duration::from_secs(3);
/// Only keeps a broken build from hanging; any ending within it is long before the deadline.
const GUARD: Duration = Duration::from_secs(30);

/// The streaming chat event against `upstream`, in an invocation with `LEFT` to go and a margin
/// of all but `CUTOFF` of it: what the client got, and how long it took. The events are seconds
/// apart (the cutoff a few seconds after the request, the deadline a minute), so a slow machine
/// cannot change which comes first.
async fn near_deadline(
    upstream: &FakeUpstream,
) -> ((StatusCode, axum::http::HeaderMap, Vec<Vec<u8>>), Duration) {
    let margin = (LEFT - CUTOFF).as_millis().to_string();
    let extra = [("LAMBDA_DEADLINE_MARGIN_MILLISECONDS", margin.as_str())];
    let app = router(state(&upstream.base_url(), &extra).await);
    let started = Instant::now();
    let context = context_with_deadline(LEFT);
    let answer = tokio::time::timeout(GUARD, with_context(app, "chat-stream.json", context))
        .await
        .expect("the response outlived the margin");
    (answer, started.elapsed())
}

/// Ended at the margin: not before it (the deadline is read as milliseconds, so up to one early).
fn assert_ended_at_the_cutoff(took: Duration) {
    assert!(
        took >= CUTOFF - Duration::from_millis(100),
        "ended after only {took:?}, before the cutoff"
    );
}

#[tokio::test]
async fn a_stream_still_running_near_the_deadline_ends_with_an_error_event_and_stops_upstream() {
    // A frame every 50 ms that never ends by itself: far past this invocation's deadline.
    let LongStream {
        upstream, dropped, ..
    } = long_stream(usize::MAX).await;
    let ((status, _, chunks), took) = near_deadline(&upstream).await;

    assert_eq!(status, StatusCode::OK);
    // Ended a margin before the deadline (within `GUARD`), not at it, and not before the margin.
    assert_ended_at_the_cutoff(took);
    let body = String::from_utf8(chunks.concat()).unwrap();
    let events: Vec<&str> = body.trim_end().split("\n\n").collect();
    let (last, frames) = events.split_last().unwrap();
    assert!(!frames.is_empty(), "no frame before the end");
    for (n, frame) in frames.iter().enumerate() {
        assert_eq!(
            *frame,
            format!("data: {{\"n\":{n}}}"),
            "frames arrive unchanged"
        );
    }
    let error: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "function_deadline", "{error}");
    assert_eq!(error["error"]["type"], "server_error");
    // The upstream request was dropped with the response: the fake's endless stream stops.
    tokio::time::timeout(GUARD, dropped)
        .await
        .expect("the upstream kept streaming after the response ended")
        .unwrap();
}

#[tokio::test]
async fn a_deadline_already_past_on_arrival_is_ignored() {
    // `cargo lambda watch` announces every invocation with `lambda-runtime-deadline-ms: 600000`,
    // a moment in 1970; the Lambda service never sends a past deadline.
    let upstream = FakeUpstream::start(openai::respond).await;
    let app = router(state(&upstream.base_url(), &[]).await);
    let mut context = Context::default();
    context.deadline = 600_000;
    let (status, _, chunks) = with_context(app, "chat-stream.json", context).await;
    assert_eq!(status, StatusCode::OK);
    assert!(chunks.concat().ends_with(b"data: [DONE]\n\n"));
}

#[tokio::test]
async fn an_upstream_still_silent_near_the_deadline_gets_a_504_before_it() {
    // Thinks for an hour: only the proxy's cutoff can answer within `GUARD`.
    let upstream = FakeUpstream::start(|received| {
        let mut response = openai::respond(received);
        response
            .extensions_mut()
            .insert(HeadDelay(Duration::from_secs(3_600)));
        response
    })
    .await;
    let ((status, headers, chunks), took) = near_deadline(&upstream).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(headers["content-type"], "application/json");
    let error: Value = serde_json::from_slice(&chunks.concat()).unwrap();
    assert_eq!(error["error"]["code"], "function_deadline", "{error}");
    assert_ended_at_the_cutoff(took);
}
