//! The one shared HTTP client to every upstream (`client.rs`), how its failures are classified,
//! and the upstreams themselves (`target.rs`: where a key's requests go and how they are
//! authorised; `outbound.rs`: the request sent there; `sigv4.rs`: signing for AWS upstreams).

mod client;
mod outbound;
mod sigv4;
mod target;

use std::time::Duration;

use axum::body::Bytes;
use http::{Method, Request};

pub use client::{Body, Client, Error, Resolve};

/// An upstream's answer, its head received and its body to come.
pub type Response = http::Response<Body>;
pub use outbound::Outbound;
pub use sigv4::Signer;
pub use target::{Auth, DEFAULT_NAME, Upstream, checked_base_url, secret_header_value};

use crate::error::ProxyError;

/// Makes ring rustls's process-wide crypto provider, which the AWS SDK's TLS (and the tests'
/// reqwest) then use. Idempotent: a provider already installed stays.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whose fault a failed upstream exchange was, as the client will see it.
pub fn classify(err: &Error) -> ProxyError {
    if err.is_timeout() {
        ProxyError::UpstreamTimeout
    } else {
        ProxyError::UpstreamUnreachable
    }
}

/// The longest the start-up warm-up may take. Lambda gives the whole init phase 10 s; an upstream
/// that accepts a connection and then says nothing must not spend them (the connect and idle
/// timeouts alone would allow 10 s and 600 s).
pub const WARM_UP_BOUND: Duration = Duration::from_secs(3);

/// Opens a pooled connection (TCP and TLS) to the upstream ahead of the first request. The
/// request carries no key; whatever the upstream answers, the connection stays in the pool.
/// Bounded by `WARM_UP_BOUND`, and never a reason to fail start-up.
pub async fn warm_up(client: &Client, upstream_base: &str) {
    let request = Request::builder()
        .method(Method::HEAD)
        .uri(format!("{upstream_base}/models"))
        .body(Bytes::new());
    let Ok(request) = request else {
        return;
    };
    match tokio::time::timeout(WARM_UP_BOUND, client.send(request)).await {
        Ok(Ok(response)) => tracing::debug!(
            status = response.status().as_u16(),
            "upstream connection warmed"
        ),
        Ok(Err(err)) => tracing::warn!(
            error = %ErrorChain(&err),
            "could not open a connection to the upstream at start-up"
        ),
        Err(_) => tracing::warn!("the upstream did not answer at start-up"),
    }
}

/// Displays an error with its sources (`a: b: c`), which is where hyper puts the useful part
/// ("connection refused").
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that accepts the connection and never answers does not hold start-up past
    /// the bound (tokio's paused clock: the bound passes as soon as nothing else can happen).
    #[tokio::test(start_paused = true)]
    async fn the_warm_up_gives_up_on_a_silent_upstream_at_its_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let config = crate::config::Config::from_lookup(|name| match name {
            "UPSTREAM_BASE_URL" => Some(format!("http://{addr}/v1")),
            "KEY_MAP_FILE" => Some("unused".to_owned()),
            _ => None,
        })
        .unwrap();
        let client = Client::new(&config).unwrap();
        let started = tokio::time::Instant::now();
        let warmed = tokio::time::timeout(
            Duration::from_secs(60),
            warm_up(&client, &format!("http://{addr}/v1")),
        )
        .await;
        assert!(warmed.is_ok(), "the warm-up waited for the idle timeout");
        assert!(started.elapsed() <= WARM_UP_BOUND + Duration::from_millis(100));
    }
}
