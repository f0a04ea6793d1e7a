//! An upstream that fails after the status line went out: the client's SSE stream ends with an
//! OpenAI-shaped error event and a clean close, never a cut mid-frame or a hang.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::Value;

use crate::support::upstream::{FakeUpstream, LongStream, long_stream};
use crate::support::{InProcessProxy, leave_after_first_chunk};

/// Only keeps a broken build from hanging: the proxy notices a departed client within a frame.
const GUARD: Duration = Duration::from_secs(30);
const FIRST: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n";

/// What the upstream does after `FIRST`.
#[derive(Clone, Copy)]
enum Then {
    /// Breaks the connection.
    Reset,
    /// Sends nothing more and keeps the connection open for as long as the proxy does.
    FallSilent,
}

fn failing_stream(then: Then) -> Response {
    let stream = futures_util::stream::unfold(0, move |step| async move {
        match (step, then) {
            (0, _) => Some((Ok(Bytes::from_static(FIRST)), 1)),
            (1, Then::Reset) => {
                // hyper flushes the status line and the first frame when this sleep first
                // returns Pending, so the reset always comes after them.
                tokio::time::sleep(Duration::from_millis(200)).await;
                Some((Err(std::io::Error::other("upstream reset")), 2))
            }
            (1, Then::FallSilent) => std::future::pending().await,
            _ => None,
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Streams a chat request through a proxy in front of `upstream`; returns the whole body the
/// client received (which must end cleanly) and how long it took.
async fn stream_through(upstream: &FakeUpstream, extra: &[(&str, &str)]) -> (Vec<u8>, Duration) {
    let proxy = InProcessProxy::start(&upstream.base_url(), extra).await;
    let started = Instant::now();
    let response = proxy
        .post(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#,
        )
        .await;
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.expect("the stream must end cleanly");
    (body.to_vec(), started.elapsed())
}

fn final_error_code(body: &[u8]) -> String {
    let text = String::from_utf8(body.to_vec()).unwrap();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let json: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(json["error"]["type"], "server_error", "{json}");
    assert!(json["error"]["message"].is_string(), "{json}");
    json["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_reset_mid_stream_ends_with_an_error_event() {
    let upstream = FakeUpstream::start(|_| failing_stream(Then::Reset)).await;
    let (body, _) = stream_through(&upstream, &[]).await;
    assert!(
        body.starts_with(FIRST),
        "the frames before the fault arrive unchanged"
    );
    assert_eq!(final_error_code(&body), "upstream_stream_broken");
}

#[tokio::test]
async fn a_stall_past_the_idle_timeout_mid_stream_ends_with_an_error_event() {
    // The upstream never sends another byte: only the proxy's 1 s idle timeout can end the stream
    // (the client's own bound is ten times that), and not before that second has passed.
    let upstream = FakeUpstream::start(|_| failing_stream(Then::FallSilent)).await;
    let (body, took) = stream_through(&upstream, &[("UPSTREAM_IDLE_TIMEOUT_SECONDS", "1")]).await;
    assert!(body.starts_with(FIRST));
    assert_eq!(final_error_code(&body), "upstream_timeout");
    assert!(took >= Duration::from_millis(900), "ended after {took:?}");
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_upstream_request() {
    // A stream that never ends by itself (a frame every 50 ms): its end can only be the proxy
    // dropping the upstream request.
    let LongStream {
        upstream, dropped, ..
    } = long_stream(usize::MAX).await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;

    leave_after_first_chunk(&proxy.url("/v1/chat/completions")).await;

    tokio::time::timeout(GUARD, dropped)
        .await
        .expect("the upstream kept streaming to a client that had left")
        .unwrap();
}
