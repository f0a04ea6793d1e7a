//! The one HTTP client to every upstream: hyper-util's pooled client over rustls (HTTP/1.1, or
//! HTTP/2 where the upstream offers it), trusting the system's roots (`tls.rs`). It follows no
//! redirects and takes no ambient `HTTP(S)_PROXY`: the real key goes to the configured upstream
//! and nowhere else.
//!
//! Timeouts are a connect timeout (DNS, TCP and TLS together) plus an idle timeout that bounds
//! the wait for the response's head and then restarts with every chunk of its body; never a
//! total timeout: a reasoning model may think for minutes and then stream for minutes more.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use http::{Request, Response, Uri};
use http_body::Body as _;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::config::Config;

/// Connections idle longer than this are not reused: a Lambda environment can sit frozen for
/// minutes, and a pooled socket the far end has long closed would fail the next request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

type Connector = Timed<HttpsConnector<HttpConnector<Resolver>>>;

/// Cheap to clone: the pool is shared.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<Connector, Full<Bytes>>,
    idle_timeout: Duration,
}

/// Looks a host name up; tests script it. The answer's addresses are tried in order.
pub type Resolve = dyn Fn(&str) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> + Send + Sync;

impl Client {
    /// The client with the system's resolver (getaddrinfo, on a blocking thread).
    pub fn new(config: &Config) -> Result<Self, rustls::Error> {
        Self::build(config, Resolver::System(GaiResolver::new()))
    }

    /// The client with host names looked up by `resolve`.
    pub fn with_resolver(config: &Config, resolve: Arc<Resolve>) -> Result<Self, rustls::Error> {
        Self::build(config, Resolver::Scripted(resolve))
    }

    fn build(config: &Config, resolver: Resolver) -> Result<Self, rustls::Error> {
        // No roots stop the start, as they did with the platform verifier: a proxy that starts
        // and then fails every TLS handshake is harder to diagnose.
        let roots = crate::tls::roots().store();
        if roots.is_empty() {
            return Err(rustls::Error::General(crate::tls::NO_ROOTS.to_owned()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new_with_resolver(resolver);
        // https and plain http (a vLLM on a private network) alike.
        tcp.enforce_http(false);
        // Small SSE frames must not wait for Nagle's algorithm.
        tcp.set_nodelay(true);
        // A peer that vanished is found in about a minute, not after the idle timeout.
        tcp.set_keepalive(Some(Duration::from_secs(30)));
        tcp.set_keepalive_interval(Some(Duration::from_secs(15)));
        tcp.set_keepalive_retries(Some(3));
        // Shared among a name's addresses, so one that drops packets leaves time for the next;
        // `Timed` below bounds the whole connect (lookup, TCP and TLS) by the same.
        tcp.set_connect_timeout(Some(config.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(Timed {
                inner: connector,
                timeout: config.connect_timeout,
            });
        Ok(Self {
            inner,
            idle_timeout: config.idle_timeout,
        })
    }

    /// Sends `request` (its URI absolute) and waits for the response's head, at most the idle
    /// timeout. The body then arrives under the same timeout, restarted by every chunk.
    pub async fn send(&self, request: Request<Bytes>) -> Result<Response<Body>, Error> {
        let sent = self.inner.request(request.map(Full::new));
        let response = tokio::time::timeout(self.idle_timeout, sent)
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(Error::Request)?;
        let idle_timeout = self.idle_timeout;
        Ok(response.map(|body| Body {
            inner: body,
            idle_timeout,
            idle: None,
        }))
    }
}

/// A failed exchange with an upstream. Its text never holds the request's URL (which can
/// carry an upstream's secret query) or a header.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the upstream sent nothing within the idle timeout")]
    Timeout,
    #[error("the request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    #[error("the body broke")]
    Body(#[source] hyper::Error),
}

impl Error {
    /// The idle timeout, or the connect timeout (which ends the connect with `TimedOut`).
    pub fn is_timeout(&self) -> bool {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(err) = source {
            if matches!(err.downcast_ref::<Self>(), Some(Self::Timeout))
                || err
                    .downcast_ref::<io::Error>()
                    .is_some_and(|err| err.kind() == io::ErrorKind::TimedOut)
            {
                return true;
            }
            source = err.source();
        }
        false
    }

    /// No connection was made, so the request never reached the upstream.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Request(err) if err.is_connect())
    }

    /// An HTTP/2 upstream refused the request before processing it: it sent a graceful GOAWAY
    /// (`NO_ERROR`) or reset the stream with `REFUSED_STREAM` (RFC 9113, 8.7), so it is safe to
    /// send again.
    pub fn is_refused(&self) -> bool {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(err) = source {
            if let Some(h2) = err.downcast_ref::<h2::Error>() {
                let reason = h2.reason();
                return h2.is_remote()
                    && ((h2.is_go_away() && reason == Some(h2::Reason::NO_ERROR))
                        || (h2.is_reset() && reason == Some(h2::Reason::REFUSED_STREAM)));
            }
            source = err.source();
        }
        false
    }
}

/// A response body: its data chunks as they arrive (trailers are not relayed), each within the
/// idle timeout of the one before.
pub struct Body {
    inner: Incoming,
    idle_timeout: Duration,
    /// Armed at the first wait; moved on by every chunk.
    idle: Option<Pin<Box<Sleep>>>,
}

impl Body {
    /// The length its head declares, if any.
    pub fn exact_length(&self) -> Option<u64> {
        self.inner.size_hint().exact()
    }
}

impl Stream for Body {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if let Some(idle) = &mut this.idle {
                            idle.as_mut().reset(Instant::now() + this.idle_timeout);
                        }
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(Error::Body(err)))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    let timeout = this.idle_timeout;
                    let idle = this
                        .idle
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    ready!(idle.as_mut().poll(cx));
                    return Poll::Ready(Some(Err(Error::Timeout)));
                }
            }
        }
    }
}

/// The system's resolver or a scripted one, behind one type.
#[derive(Clone)]
enum Resolver {
    System(GaiResolver),
    Scripted(Arc<Resolve>),
}

impl Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<Self::Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::System(gai) => gai.poll_ready(cx),
            Self::Scripted(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, name: Name) -> Self::Future {
        match self {
            Self::System(gai) => {
                let looked_up = gai.call(name);
                Box::pin(async move { Ok(looked_up.await?.collect::<Vec<_>>().into_iter()) })
            }
            Self::Scripted(resolve) => {
                let looked_up = resolve(name.as_str());
                Box::pin(async move { Ok(looked_up.await?.into_iter()) })
            }
        }
    }
}

/// A connector whose whole connect (lookup, TCP, TLS) ends with `TimedOut` after `timeout`.
#[derive(Clone)]
struct Timed<C> {
    inner: C,
    timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> Service<Uri> for Timed<C>
where
    C: Service<Uri>,
    C::Response: Send,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out").into()),
            }
        })
    }
}
