//! The trust roots (src/tls.rs) as an operator sets them: a private CA in `SSL_CERT_FILE` is
//! trusted by both TLS clients the binary has, the upstreams' and the AWS SDK's, which now read
//! one set of roots; without it, the same certificate is refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use openai_proxy::tls::TrustRoots;

use crate::support::moto::Moto;
use crate::support::tls::{SelfSigned, self_signed_for_loopback};
use crate::support::upstream::FakeUpstream;
use crate::support::{
    BinaryProxy, TempFile, WRAPPER_KEY, http_client, key_map_json, openai, run_binary_to_exit,
};

/// TLS on loopback in front of a plain-HTTP server, with a fresh self-signed certificate for
/// 127.0.0.1 that no system trusts: what a private CA looks like to the proxy.
struct TlsFront {
    addr: SocketAddr,
    pem: String,
    handshakes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsFront {
    async fn start(target: SocketAddr) -> Self {
        let SelfSigned { acceptor, cert } = self_signed_for_loopback();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = handshakes.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut plain) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        Self {
            addr,
            // Written by the proxy's own PEM writer, which the AWS SDK's client reads too.
            pem: String::from_utf8(TrustRoots::from_certificates(vec![cert]).pem().to_vec())
                .unwrap(),
            handshakes,
            task,
        }
    }

    fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn port_of(endpoint: &str) -> u16 {
    endpoint.rsplit(':').next().unwrap().parse().unwrap()
}

/// What one test starts: the binary, and behind TLS its upstream and moto.
struct Setup {
    proxy: BinaryProxy,
    upstream_front: TlsFront,
    moto_front: TlsFront,
    _upstream: FakeUpstream,
    _moto: Moto,
}

/// Starts the binary with its upstream behind TLS and its key map in moto behind TLS (or, with
/// `from_file`, in a file); with `trusted`, both certificates are in `SSL_CERT_FILE`.
async fn behind_tls(trusted: bool, from_file: bool) -> Setup {
    let upstream = FakeUpstream::start(openai::respond).await;
    let moto = Moto::start().await;
    moto.create_secret("tls-key-map", &key_map_json()).await;
    let upstream_front = TlsFront::start(upstream.addr).await;
    let moto_front =
        TlsFront::start(SocketAddr::from(([127, 0, 0, 1], port_of(&moto.endpoint)))).await;
    let upstream_url = format!("https://{}/v1", upstream_front.addr);
    let moto_url = format!("https://{}", moto_front.addr);
    let bundle = TempFile::with_contents(
        "roots.pem",
        &format!("{}{}", upstream_front.pem, moto_front.pem),
    );
    let mut env: Vec<(&str, &str)> = moto
        .aws_env()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("AWS_ENDPOINT_URL"))
        .collect();
    let keys = TempFile::with_contents("keys.json", &key_map_json());
    env.extend([
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_url.as_str()),
        ("UPSTREAM_BASE_URL", upstream_url.as_str()),
    ]);
    env.push(match from_file {
        true => ("KEY_MAP_FILE", keys.path_str()),
        false => ("KEY_MAP_SECRET_ID", "tls-key-map"),
    });
    if trusted {
        env.push(("SSL_CERT_FILE", bundle.path_str()));
    }
    // Both files are read before the proxy listens, which `start` waits for.
    let proxy = BinaryProxy::start(&env);
    Setup {
        proxy,
        upstream_front,
        moto_front,
        _upstream: upstream,
        _moto: moto,
    }
}

async fn chat(proxy: &BinaryProxy) -> (u16, Value) {
    let response = http_client()
        .post(format!("{}/chat/completions", proxy.base_url()))
        .bearer_auth(WRAPPER_KEY)
        .header("content-type", "application/json")
        .body(
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_in_ssl_cert_file_is_trusted_by_the_upstream_and_the_aws_clients() {
    let setup = behind_tls(true, false).await;
    let (status, body) = chat(&setup.proxy).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        openai::REPLY,
        "{body}"
    );
    // The key map came from Secrets Manager over TLS, the answer from the upstream over TLS.
    assert!(
        setup.moto_front.handshakes() >= 1,
        "no TLS handshake with moto"
    );
    assert!(
        setup.upstream_front.handshakes() >= 1,
        "no TLS handshake with the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_it_the_same_certificates_are_refused() {
    // Secrets Manager's certificate refused: no key map, so every key is answered 503.
    let setup = behind_tls(false, false).await;
    let (status, body) = chat(&setup.proxy).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(setup.moto_front.handshakes(), 0);
    // The upstream's refused: the key is known (from a file), the upstream unreachable, 502.
    let setup = behind_tls(false, true).await;
    let (status, body) = chat(&setup.proxy).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(setup.upstream_front.handshakes(), 0);
}

#[test]
fn no_trusted_roots_at_all_is_a_clear_start_up_error() {
    let keys = TempFile::with_contents("keys.json", &key_map_json());
    let empty = TempFile::with_contents("roots.pem", "");
    let (ok, stderr) = run_binary_to_exit(&[
        ("KEY_MAP_FILE", keys.path_str()),
        ("SSL_CERT_FILE", empty.path_str()),
    ]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("no trusted root certificates were found"),
        "{stderr}"
    );
    assert!(stderr.contains("SSL_CERT_FILE"), "{stderr}");
}
