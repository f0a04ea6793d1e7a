//! Upstream faults before any response: TLS that fails (an untrusted certificate, a plain-HTTP
//! server behind an `https://` URL, a server that never finishes the handshake) and DNS that
//! fails or never answers. Each is a 502 or 504 in OpenAI's shape: a fault is reported when it
//! happens, a silence at the connect timeout. (Connection refused, no first byte, 429 and 5xx are
//! in `errors.rs`.)

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::support::tls::self_signed_for_loopback;
use crate::support::upstream::FakeUpstream;
use crate::support::{InProcessProxy, WRAPPER_KEY, config, http_client_builder, openai, state};
use openai_proxy::upstream;

/// Only keeps a broken build from hanging: every answer is expected within a second or so.
const GUARD: Duration = Duration::from_secs(30);
/// For a silence: the connect timeout is what must answer.
const ONE_SECOND_CONNECT: [(&str, &str); 1] = [("UPSTREAM_CONNECT_TIMEOUT_SECONDS", "1")];
/// For a fault: a connect timeout far past `GUARD`, so an answer at all shows the fault was
/// reported when it happened, not at the timeout, and a slow handshake cannot turn it into a 504.
const TEN_MINUTE_CONNECT: [(&str, &str); 1] = [("UPSTREAM_CONNECT_TIMEOUT_SECONDS", "600")];

/// Sends a chat request through `proxy`; returns the status, the error code and how long it took.
async fn outcome(proxy: &InProcessProxy) -> (u16, String, Duration) {
    let started = Instant::now();
    let response = http_client_builder()
        .timeout(GUARD)
        .build()
        .unwrap()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(WRAPPER_KEY)
        .body(r#"{"model":"gpt-4o-mini"}"#)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["type"], "server_error", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    let code = body["error"]["code"].as_str().unwrap().to_owned();
    (status, code, started.elapsed())
}

/// A TLS server on loopback with a freshly made self-signed certificate for 127.0.0.1, which no
/// trust store holds. Each handshake's outcome (the server's view) is recorded.
struct UntrustedTls {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<Result<(), String>>>>,
    task: JoinHandle<()>,
}

impl UntrustedTls {
    async fn start() -> Self {
        let acceptor = self_signed_for_loopback().acceptor;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let log = handshakes.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let outcome = acceptor
                    .accept(stream)
                    .await
                    .map(drop)
                    .map_err(|err| err.to_string());
                log.lock().unwrap().push(outcome);
            }
        });
        Self {
            addr,
            handshakes,
            task,
        }
    }
}

impl Drop for UntrustedTls {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn an_upstream_certificate_nobody_trusts_is_a_502() {
    let tls = UntrustedTls::start().await;
    let base = format!("https://{}/v1", tls.addr);
    let proxy = InProcessProxy::start(&base, &TEN_MINUTE_CONNECT).await;
    let (status, code, _) = outcome(&proxy).await;
    assert_eq!((status, code.as_str()), (502, "upstream_unreachable"));
    // The proxy did reach the server and refused its certificate during the handshake.
    let handshakes = tls.handshakes.lock().unwrap().clone();
    assert!(
        !handshakes.is_empty(),
        "no TLS handshake reached the server"
    );
    assert!(
        handshakes.iter().all(Result::is_err),
        "a handshake with an untrusted certificate completed: {handshakes:?}"
    );
}

#[tokio::test]
async fn a_plain_http_server_behind_an_https_url_is_a_502() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let base = format!("https://{}/v1", upstream.addr);
    let proxy = InProcessProxy::start(&base, &TEN_MINUTE_CONNECT).await;
    let (status, code, _) = outcome(&proxy).await;
    assert_eq!((status, code.as_str()), (502, "upstream_unreachable"));
    assert!(upstream.received().is_empty(), "no HTTP request was made");
}

#[tokio::test]
async fn a_tls_handshake_that_never_finishes_is_a_504_at_the_connect_timeout() {
    // Accepts connections and reads nothing: the ClientHello is never answered.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let proxy = InProcessProxy::start(&format!("https://{addr}/v1"), &ONE_SECOND_CONNECT).await;
    let (status, code, took) = outcome(&proxy).await;
    silent.abort();
    // Not before the timeout; and the answer came within `GUARD`, so it came at the timeout.
    assert_eq!((status, code.as_str()), (504, "upstream_timeout"));
    assert!(took >= Duration::from_millis(900), "took {took:?}");
}

/// A proxy whose upstream `https://api.upstream.test/v1` is resolved by a name server
/// stand-in: it records each name it is asked for and either answers that the name does not
/// exist (as getaddrinfo reports NXDOMAIN) or never answers at all. The connect timeout is the
/// one `connect` sets.
async fn behind_scripted_dns(
    answers: bool,
    connect: &[(&str, &str)],
) -> (InProcessProxy, Arc<Mutex<Vec<String>>>) {
    let base = "https://api.upstream.test/v1";
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let resolve: Arc<upstream::Resolve> = Arc::new(move |name: &str| {
        log.lock().unwrap().push(name.to_owned());
        Box::pin(async move {
            if !answers {
                std::future::pending::<()>().await;
            }
            Err(std::io::Error::other(
                "failed to lookup address information: Name or service not known",
            ))
        })
    });
    let mut state = state(base, connect).await;
    state.client = upstream::Client::with_resolver(&config(base, connect), resolve).unwrap();
    (InProcessProxy::serve(state).await, asked)
}

#[tokio::test]
async fn an_upstream_name_that_does_not_resolve_is_a_502() {
    let (proxy, asked) = behind_scripted_dns(true, &TEN_MINUTE_CONNECT).await;
    let (status, code, _) = outcome(&proxy).await;
    assert_eq!((status, code.as_str()), (502, "upstream_unreachable"));
    assert_eq!(*asked.lock().unwrap(), ["api.upstream.test"]);
}

#[tokio::test]
async fn a_name_server_that_never_answers_is_a_504_at_the_connect_timeout() {
    let (proxy, asked) = behind_scripted_dns(false, &ONE_SECOND_CONNECT).await;
    let (status, code, took) = outcome(&proxy).await;
    // Not before the timeout; and the answer came within `GUARD`, so it came at the timeout.
    assert_eq!((status, code.as_str()), (504, "upstream_timeout"));
    assert!(took >= Duration::from_millis(900), "took {took:?}");
    assert_eq!(*asked.lock().unwrap(), ["api.upstream.test"]);
}
