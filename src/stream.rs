//! The relayed body: the upstream's chunks passed on as they arrive, untouched. One addition: if
//! an SSE stream breaks after the status line went out (reset, or idle past the timeout), the
//! client gets a final `data: {"error": …}` event in OpenAI's shape and a clean end, instead of a
//! connection cut mid-frame that SDKs report as an unexplained network error.

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};

use crate::error::ProxyError;
use crate::upstream;

/// Passes `upstream` through; on a mid-stream failure ends with an SSE error event.
pub fn sse_ending_cleanly<S>(
    upstream: S,
    caller: String,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + Unpin + 'static,
{
    // State: the upstream, whether the bytes so far end on an event boundary, and who is calling
    // (for the log line); `None` once the stream has ended. Nothing is cloned per chunk.
    let start = Some((upstream, Boundary::default(), caller));
    futures_util::stream::unfold(start, |state| {
        async move {
            let (mut upstream, mut boundary, caller) = state?;
            match upstream.next().await {
                Some(Ok(chunk)) => {
                    boundary.observe(&chunk);
                    Some((Ok(chunk), Some((upstream, boundary, caller))))
                }
                Some(Err(err)) => {
                    let fault = match upstream::classify(&err) {
                        ProxyError::UpstreamTimeout => ProxyError::UpstreamTimeout,
                        _ => ProxyError::UpstreamStreamBroken,
                    };
                    tracing::warn!(%caller, error = %err, "upstream stream broke; ending it with an error event");
                    // A half-sent event is closed first, so the error event stands on its own.
                    let mut tail = if boundary.at_event_end() {
                        Vec::new()
                    } else {
                        b"\n\n".to_vec()
                    };
                    tail.extend_from_slice(&fault.sse_event());
                    Some((Ok(Bytes::from(tail)), None))
                }
                None => None,
            }
        }
    })
}

/// The last four bytes relayed, enough to tell whether the stream stands between events
/// (`\n\n` or `\r\n\r\n`, the endings OpenAI-compatible servers use).
#[derive(Default, Clone, Copy)]
struct Boundary {
    last: [u8; 4],
    seen: usize,
}

impl Boundary {
    fn observe(&mut self, chunk: &[u8]) {
        for &byte in chunk.iter().rev().take(4).rev() {
            self.last = [self.last[1], self.last[2], self.last[3], byte];
        }
        self.seen += chunk.len();
    }

    fn at_event_end(&self) -> bool {
        self.seen == 0 || self.last[2..] == *b"\n\n" || self.last == *b"\r\n\r\n"
    }
}

#[cfg(test)]
mod tests {
    use super::Boundary;

    #[test]
    fn event_boundaries_are_recognised_across_chunks() {
        let mut boundary = Boundary::default();
        assert!(boundary.at_event_end());
        boundary.observe(b"data: {\"a\":1}\n");
        assert!(!boundary.at_event_end());
        boundary.observe(b"\n");
        assert!(boundary.at_event_end());
        boundary.observe(b"data: {\"b\"");
        assert!(!boundary.at_event_end());
        boundary.observe(b"}\r\n");
        assert!(!boundary.at_event_end());
        boundary.observe(b"\r\n");
        assert!(boundary.at_event_end());
    }
}
