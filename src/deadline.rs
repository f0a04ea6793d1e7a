//! The Lambda invocation's deadline: the moment the proxy gives up waiting on the upstream, so
//! the client gets a clean ending instead of an invocation killed mid-frame. Local mode has none.

use std::future::Future;
use std::time::{Duration, SystemTime};

use axum::http::Extensions;
use tokio::time::Instant;

use crate::error::ProxyError;

/// Under Lambda, the moment to give up on the upstream: `margin` before the invocation's
/// deadline. `None` in local mode, where requests carry no Lambda context, and for a deadline
/// that has already passed when the request arrives: the Lambda service never sends one, but
/// `cargo lambda watch` always sends the same fixed value (600,000 ms after the Unix epoch).
pub fn invocation_cutoff(extensions: &Extensions, margin: Duration) -> Option<Instant> {
    let context = extensions.get::<lambda_http::Context>()?;
    let left = context.deadline().duration_since(SystemTime::now()).ok()?;
    Some(Instant::now() + left.saturating_sub(margin))
}

/// Runs `future` unless the invocation's cutoff comes first.
pub async fn before<F: Future>(
    cutoff: Option<Instant>,
    future: F,
) -> Result<F::Output, ProxyError> {
    match cutoff {
        None => Ok(future.await),
        Some(at) => tokio::time::timeout_at(at, future).await.map_err(|_| {
            tracing::warn!(
                "the Lambda invocation is about to time out before the upstream answered"
            );
            ProxyError::FunctionDeadline
        }),
    }
}
