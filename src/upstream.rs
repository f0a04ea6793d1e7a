//! The one shared HTTP client to the upstream, and how its failures are classified.
//! Timeouts are a connect timeout plus an idle timeout that restarts with every read, never a
//! total timeout: a reasoning model may think for minutes and then stream for minutes more.

use std::time::Duration;

use crate::config::Config;
use crate::error::ProxyError;

/// Connections idle longer than this are not reused: a Lambda environment can sit frozen for
/// minutes, and a pooled socket the far end has long closed would fail the next request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

pub fn client(config: &Config) -> Result<reqwest::Client, reqwest::Error> {
    builder(config).build()
}

/// The client's settings, for callers that add to them (tests give it a scripted resolver).
pub fn builder(config: &Config) -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.idle_timeout)
        // Small SSE frames must not wait for Nagle's algorithm.
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(30))
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        // The proxy relays redirects instead of following them with the real key attached.
        .redirect(reqwest::redirect::Policy::none())
        // No ambient HTTP(S)_PROXY: the real key goes to the configured upstream and nowhere else.
        .no_proxy()
}

/// Makes ring rustls's process-wide crypto provider, which reqwest's TLS then uses. Idempotent:
/// a provider already installed stays.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whose fault a failed upstream exchange was, as the client will see it.
pub fn classify(err: &reqwest::Error) -> ProxyError {
    if err.is_timeout() {
        ProxyError::UpstreamTimeout
    } else {
        ProxyError::UpstreamUnreachable
    }
}

/// Opens a pooled connection (TCP and TLS) to the upstream ahead of the first request. The
/// request carries no key; whatever the upstream answers, the connection stays in the pool.
pub async fn warm_up(client: &reqwest::Client, upstream_base: &str) {
    match client.head(format!("{upstream_base}/models")).send().await {
        Ok(response) => tracing::debug!(
            status = response.status().as_u16(),
            "upstream connection warmed"
        ),
        Err(err) => {
            tracing::warn!(error = %err, "could not open a connection to the upstream at start-up")
        }
    }
}
