//! Response bodies that arrive in pieces, as OpenAI's do: each chunk its own write, paced, or
//! held after the first chunks until the client releases them (`openai::HELD_INFIX`), which proves
//! a proxy relays each piece as it comes rather than the whole body at the end. Any content type:
//! SSE and binary audio alike.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures_util::StreamExt;

/// Pause between streamed events, so a stream is a stream and not one packet.
pub const PACE: Duration = Duration::from_millis(5);
/// A held body not released by then goes on regardless, so a test never hangs on it.
pub const HOLD_AT_MOST: Duration = Duration::from_secs(60);

/// Held streams waiting for their release, by token.
static HELD: std::sync::Mutex<Vec<(String, tokio::sync::oneshot::Sender<()>)>> =
    std::sync::Mutex::new(Vec::new());

/// Releases the held stream `token`; whether one was waiting.
pub(super) fn release(token: &str) -> bool {
    let mut held = HELD.lock().unwrap();
    match held.iter().position(|(waiting, _)| waiting == token) {
        Some(at) => held.swap_remove(at).1.send(()).is_ok(),
        None => false,
    }
}

/// The first `split` chunks of a body, then the rest once `token` is released (see
/// `openai::HELD_INFIX`).
pub(super) fn held(content_type: &str, chunks: Vec<Bytes>, split: usize, token: &str) -> Response {
    let (release, released) = tokio::sync::oneshot::channel();
    HELD.lock().unwrap().push((token.to_owned(), release));
    let token = token.to_owned();
    let split = chunks.len().min(split);
    let mut chunks = chunks.into_iter();
    let first: Vec<Bytes> = chunks.by_ref().take(split).collect();
    let rest: Vec<Bytes> = chunks.collect();
    let first = futures_util::stream::iter(first);
    let rest = futures_util::stream::once(async move {
        if tokio::time::timeout(HOLD_AT_MOST, released).await.is_err() {
            // Not released: no longer held, so a late release says so.
            HELD.lock()
                .unwrap()
                .retain(|(waiting, _)| *waiting != token);
        }
        futures_util::stream::iter(rest)
    })
    .flatten();
    let stream = first.chain(rest).map(Ok::<_, std::convert::Infallible>);
    Response::builder()
        .header("content-type", content_type)
        .header("x-request-id", "req_fake_stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Sends each event as its own write, `pace` apart.
pub(super) fn sse(events: Vec<String>, pace: Duration) -> Response {
    let chunks = events.into_iter().map(Bytes::from).collect();
    paced("text/event-stream; charset=utf-8", chunks, pace)
}

/// Sends each chunk as its own write, `pace` apart: a body that arrives in pieces.
pub(super) fn paced(content_type: &str, chunks: Vec<Bytes>, pace: Duration) -> Response {
    let stream = futures_util::stream::unfold(chunks.into_iter(), move |mut chunks| async move {
        let chunk = chunks.next()?;
        tokio::time::sleep(pace).await;
        Some((Ok::<_, std::convert::Infallible>(chunk), chunks))
    });
    Response::builder()
        .header("content-type", content_type)
        .header("x-request-id", "req_fake_stream")
        .body(Body::from_stream(stream))
        .unwrap()
}
