//! The function-URL front door: the sample events in `events/` are parsed the way the Lambda
//! runtime parses them and served by the same router, both plainly and through
//! `lambda_http::StreamAdapter`, the adapter that turns the router's responses into the
//! RESPONSE_STREAM metadata prelude plus body stream.

use std::path::Path;
use std::time::Duration;

use axum::http::StatusCode;
use futures_util::StreamExt;
use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt;
use lambda_http::{Context, LambdaEvent, Service, StreamAdapter};
use openai_proxy::app::router;
use serde_json::Value;

use crate::support::upstream::FakeUpstream;
use crate::support::{REAL_KEY, manifest_dir, openai, state};

const BOUND: Duration = Duration::from_secs(10);

fn event_text(name: &str) -> String {
    std::fs::read_to_string(manifest_dir().join("events").join(name)).unwrap()
}

/// Every sample event, and what the router must answer to it.
const EXPECTED: [(&str, StatusCode); 8] = [
    ("health.json", StatusCode::OK),
    ("models.json", StatusCode::OK),
    ("chat.json", StatusCode::OK),
    ("chat-stream.json", StatusCode::OK),
    ("embeddings.json", StatusCode::OK),
    ("responses.json", StatusCode::OK),
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
        let request = lambda_http::request::from_str(&event_text(name)).unwrap();
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
    assert_eq!(received.len(), 5);
    for seen in received {
        assert_eq!(seen.headers["authorization"], format!("Bearer {REAL_KEY}"));
    }
}

/// Runs one event through the streaming adapter, as `run_with_streaming_response_concurrent`
/// does, and returns the prelude's status and headers and the body as the chunks it streamed.
async fn through_stream_adapter(
    app: axum::Router,
    name: &str,
) -> (StatusCode, axum::http::HeaderMap, Vec<Vec<u8>>) {
    let payload: LambdaRequest = serde_json::from_str(&event_text(name)).unwrap();
    let mut adapter = StreamAdapter::from(app);
    let response = tokio::time::timeout(
        BOUND,
        adapter.call(LambdaEvent::new(payload, Context::default())),
    )
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

#[tokio::test]
async fn a_streaming_chat_event_streams_the_upstream_bytes_chunk_by_chunk() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let app = router(state(&upstream.base_url(), &[]).await);
    let (status, headers, chunks) = through_stream_adapter(app, "chat-stream.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/event-stream; charset=utf-8");

    // The same request sent straight to the fake upstream is the reference.
    let event: Value = serde_json::from_str(&event_text("chat-stream.json")).unwrap();
    let direct = reqwest::Client::new()
        .post(format!("{}/chat/completions", upstream.base_url()))
        .body(event["body"].as_str().unwrap().to_owned())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(chunks.concat(), direct.as_ref());
    // The fake writes each SSE event separately; one chunk per event shows nothing was pooled.
    assert_eq!(chunks.len(), openai::WORDS.len() + 3, "chunks: {chunks:?}");
    assert!(chunks.last().unwrap().ends_with(b"data: [DONE]\n\n"));
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
