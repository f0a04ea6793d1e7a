//! The relayed body: the upstream's chunks passed on as they arrive, untouched (its status and
//! headers: `relay.rs`). Two additions, both about how a body ends early:
//! - if an SSE stream breaks after the status line went out (reset, or idle past the timeout),
//!   the client gets a final `data: {"error": …}` event in OpenAI's shape and a clean end, instead
//!   of a connection cut mid-frame that SDKs report as an unexplained network error;
//! - under Lambda, a body still flowing shortly before the invocation's deadline ends the same
//!   way (`function_deadline`), and dropping the upstream stream cancels the upstream request.
//!
//! A non-SSE body has no in-band way to say "error", so it ends with an error instead, which cuts
//! the connection just as the upstream's failure would have without the proxy.
//!
//! Every chunk is also shown to a `UsageWatch` (token usage) and counted in the request's
//! `RequestRecord`, which is written when the body ends or is dropped. For a limited key, the
//! tokens reserved at admission are settled (`limits.rs`) before the end is passed on: the last
//! chunk of a body of known length, or the end of any other, waits for that one write, so it is
//! done inside the invocation, which a Lambda environment may be frozen right after.
//!
//! A body that is not an SSE stream keeps the upstream's length: the server is told it exactly,
//! and that the body is over with its last byte, so the answer is complete on the wire without
//! waiting for the upstream connection to report the end of a body whose length said it all
//! (one more hand-over between tasks, a large part of what the proxy added to a JSON answer on
//! the benchmark machine).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::ProxyError;
use crate::limits::Reservation;
use crate::metering::{Outcome, RequestRecord};
use crate::upstream;
use crate::usage::UsageWatch;

/// The upstream body as the client receives it. Polled by the server for each chunk; a chunk of
/// whole events is passed on as the same `Bytes`, without a copy (only a stream whose
/// `include_usage` is being undone gets rewritten events).
pub struct Relayed<S> {
    upstream: S,
    /// The body's length when the upstream declared it and the proxy passes it unchanged (never
    /// for SSE, whose end the proxy may rewrite). The record counts the bytes passed so far.
    length: Option<u64>,
    /// When to stop waiting for the upstream (`None`: no deadline, as in local mode).
    cutoff: Option<Pin<Box<Sleep>>>,
    watch: UsageWatch,
    record: RequestRecord,
    ended: bool,
    /// Tokens reserved for this request, and whether the upstream answered with success (a
    /// failed answer used no tokens).
    reservation: Option<(Reservation, bool)>,
    /// The settle write in flight, and the last chunk held back until it is done.
    settling: Option<(BoxFuture<'static, bool>, Option<Bytes>)>,
}

impl<S> Relayed<S> {
    /// `reservation`: the tokens a limited key reserved, settled before the body's end with the
    /// usage read from it if the upstream succeeded, with none if it failed; without usage the
    /// reservation stays.
    pub fn new(
        upstream: S,
        length: Option<u64>,
        cutoff: Option<Instant>,
        watch: UsageWatch,
        record: RequestRecord,
        reservation: Option<(Reservation, bool)>,
    ) -> Self {
        let mut relayed = Self {
            upstream,
            length,
            cutoff: cutoff.map(|at| Box::pin(tokio::time::sleep_until(at))),
            watch,
            record,
            ended: false,
            reservation,
            settling: None,
        };
        // A body of length zero is over before it starts (the server may drop it unpolled),
        // unless it has a reservation to settle first.
        if length == Some(0) && relayed.reservation.is_none() {
            relayed.end(Outcome::Complete);
        }
        relayed
    }

    /// Passes one chunk on, counted; with it the body may be complete.
    fn send(
        &mut self,
        chunk: Bytes,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, ProxyError>>> {
        if self.length == Some(self.record.bytes_out() + chunk.len() as u64) {
            return self.finish(Some(chunk), cx);
        }
        self.record.sent(chunk.len());
        Poll::Ready(Some(Ok(chunk)))
    }

    /// The upstream's body is over: `last` (if any) is its last chunk, passed on once the
    /// reservation is settled.
    fn finish(
        &mut self,
        last: Option<Bytes>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, ProxyError>>> {
        if let Some((reservation, succeeded)) = self.reservation.take() {
            let used = if succeeded {
                self.watch.usage().map(|usage| usage.total_tokens)
            } else {
                Some(0)
            };
            if let Some(used) = used {
                self.settling = Some((Box::pin(reservation.settle(used)), last));
                return self.poll_settling(cx);
            }
        }
        self.pass_last(last)
    }

    /// Waits for the settle write, then passes the held-back end on. Under Lambda the deadline
    /// comes first: the client gets its answer whole, and the write is dropped (it may or may
    /// not have landed; the record says the store failed).
    fn poll_settling(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, ProxyError>>> {
        let Some((write, _)) = &mut self.settling else {
            return self.pass_last(None);
        };
        let settled = match write.as_mut().poll(cx) {
            Poll::Ready(settled) => settled,
            Poll::Pending => {
                let cutoff = self.cutoff.as_mut().map(|cutoff| cutoff.as_mut().poll(cx));
                if cutoff != Some(Poll::Ready(())) {
                    return Poll::Pending;
                }
                tracing::warn!(caller = %self.record.tenant, "the Lambda invocation is about to time out; the answer ends before its tokens are settled");
                false
            }
        };
        if !settled {
            self.record.limits_store_error = true;
        }
        let last = self.settling.take().and_then(|(_, last)| last);
        self.pass_last(last)
    }

    fn pass_last(&mut self, last: Option<Bytes>) -> Poll<Option<Result<Bytes, ProxyError>>> {
        match last {
            Some(chunk) => {
                self.record.sent(chunk.len());
                self.end(self.complete());
                Poll::Ready(Some(Ok(chunk)))
            }
            None => {
                self.end(self.complete());
                Poll::Ready(None)
            }
        }
    }

    /// How a body that reached its end went.
    fn complete(&self) -> Outcome {
        if self.watch.saw_error_event() {
            Outcome::ErrorEvent
        } else {
            Outcome::Complete
        }
    }

    /// The body is over: the record gets the usage read from it and is written.
    fn end(&mut self, outcome: Outcome) {
        self.ended = true;
        self.record.usage = self.watch.usage();
        self.record.finish(outcome);
    }

    /// The last item: an error event for SSE, an error (a cut connection) for anything else.
    fn end_early(&mut self, fault: ProxyError) -> Poll<Option<Result<Bytes, ProxyError>>> {
        let outcome = match fault {
            ProxyError::FunctionDeadline => Outcome::Deadline,
            _ => Outcome::UpstreamFailed,
        };
        if !self.watch.is_sse() {
            self.end(outcome);
            return Poll::Ready(Some(Err(fault)));
        }
        // A half-sent event is closed first, so the error event stands on its own.
        let mut tail = if self.watch.sent_partial_event() {
            b"\n\n".to_vec()
        } else {
            Vec::new()
        };
        tail.extend_from_slice(&fault.sse_event());
        self.record.sent(tail.len());
        self.end(outcome);
        Poll::Ready(Some(Ok(Bytes::from(tail))))
    }
}

impl<S> Drop for Relayed<S> {
    /// Dropped before its end: the client left. The record says so, with the usage seen so far.
    fn drop(&mut self) {
        if !self.ended {
            self.end(Outcome::ClientGone);
        }
    }
}

impl<S> http_body::Body for Relayed<S>
where
    S: Stream<Item = Result<Bytes, upstream::Error>> + Unpin,
{
    type Data = Bytes;
    type Error = ProxyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProxyError>>> {
        self.get_mut()
            .poll_chunk(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(length) => SizeHint::with_exact(length.saturating_sub(self.record.bytes_out())),
            None => SizeHint::default(),
        }
    }
}

impl<S> Relayed<S>
where
    S: Stream<Item = Result<Bytes, upstream::Error>> + Unpin,
{
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, ProxyError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.settling.is_some() {
            return self.poll_settling(cx);
        }
        // The upstream first: a chunk that is ready when the deadline fires still goes out.
        loop {
            match self.upstream.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(chunk))) => match self.watch.pass(chunk) {
                    Some(chunk) => return self.send(chunk, cx),
                    // All of it held back or left out (see `usage.rs`): read on.
                    None => continue,
                },
                Poll::Ready(Some(Err(err))) => {
                    let fault = match upstream::classify(&err) {
                        ProxyError::UpstreamTimeout => ProxyError::UpstreamTimeout,
                        _ => ProxyError::UpstreamStreamBroken,
                    };
                    tracing::warn!(caller = %self.record.tenant, error = %upstream::ErrorChain(&err), "upstream stream broke; ending the response early");
                    return self.end_early(fault);
                }
                Poll::Ready(None) => {
                    if let Some(rest) = self.watch.rest() {
                        return self.send(rest, cx);
                    }
                    return self.finish(None, cx);
                }
                Poll::Pending => break,
            }
        }
        if let Some(cutoff) = &mut self.cutoff {
            ready!(cutoff.as_mut().poll(cx));
            tracing::warn!(caller = %self.record.tenant, "the Lambda invocation is about to time out; ending the response early");
            return self.end_early(ProxyError::FunctionDeadline);
        }
        Poll::Pending
    }
}
