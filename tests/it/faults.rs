//! An upstream that fails after the status line went out: the client's SSE stream ends with an
//! OpenAI-shaped error event and a clean close, never a cut mid-frame or a hang.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::Value;

use crate::proxy::BOUND;
use crate::support::upstream::{FakeUpstream, LongStream, long_stream};
use crate::support::{InProcessProxy, leave_after_first_chunk};

const FIRST: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n";

/// After `FIRST`, either a broken connection or a stall of `stall`.
fn failing_stream(stall: Option<Duration>) -> Response {
    let stream = futures_util::stream::unfold(0, move |step| async move {
        match step {
            0 => Some((Ok(Bytes::from_static(FIRST)), 1)),
            1 => {
                if let Some(stall) = stall {
                    tokio::time::sleep(stall).await;
                    Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), 2))
                } else {
                    // Long enough for the status line and the first frame to be flushed.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Some((Err(std::io::Error::other("upstream reset")), 2))
                }
            }
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
    let upstream = FakeUpstream::start(|_| failing_stream(None)).await;
    let (body, _) = stream_through(&upstream, &[]).await;
    assert!(
        body.starts_with(FIRST),
        "the frames before the fault arrive unchanged"
    );
    assert_eq!(final_error_code(&body), "upstream_stream_broken");
}

#[tokio::test]
async fn a_stall_past_the_idle_timeout_mid_stream_ends_with_an_error_event() {
    let upstream = FakeUpstream::start(|_| failing_stream(Some(Duration::from_secs(5)))).await;
    let (body, took) = stream_through(&upstream, &[("UPSTREAM_IDLE_TIMEOUT_SECONDS", "1")]).await;
    assert!(body.starts_with(FIRST));
    assert_eq!(final_error_code(&body), "upstream_timeout");
    assert!(
        took < Duration::from_secs(4) && took < BOUND,
        "ended after {took:?}"
    );
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_upstream_request() {
    // Up to 200 frames, 50 ms apart: ten seconds of stream unless someone stops it.
    let LongStream {
        upstream,
        produced,
        dropped,
    } = long_stream(200).await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;

    leave_after_first_chunk(&proxy.url("/v1/chat/completions")).await;
    let left_at = Instant::now();

    tokio::time::timeout(Duration::from_secs(5), dropped)
        .await
        .expect("the upstream kept streaming to a client that had left")
        .unwrap();
    let frames = produced.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        frames < 40,
        "{frames} frames were produced; the upstream stopped {:?} after the client left",
        left_at.elapsed()
    );
}
