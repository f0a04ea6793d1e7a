//! The key map from Secrets Manager: moto's server behind the real `aws-sdk-secretsmanager`, the
//! proxy router in-process, and a relay that counts `GetSecretValue` calls, holds them and injects
//! faults. The outcomes are decided by events, not by how fast the machine is: the key cache's
//! clock is stopped and moved on by the test, and a burst is gathered before its refresh ends.

use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use openai_proxy::app::router;
use openai_proxy::secrets::SecretsManagerSource;
use openai_proxy::state::AppState;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::support::moto::{Fault, Moto, Relay, client_for};
use crate::support::upstream::{FakeUpstream, Received};
use crate::support::{InProcessProxy, openai, state_with};

const SECRET: &str = "openai-proxy/keys";

/// Bounds every wait on an event, so a broken build fails instead of hanging. While the clock is
/// stopped it runs out only after the clock gives up (`STOPPED_AT_MOST`).
const WAIT: Duration = Duration::from_secs(60);

/// A proxy whose key map is the secret `SECRET`, read through `endpoint`.
async fn proxy_over(
    upstream: &FakeUpstream,
    endpoint: &str,
    extra: &[(&str, &str)],
) -> InProcessProxy {
    proxy_over_secret(upstream, endpoint, SECRET, extra).await
}

async fn proxy_over_secret(
    upstream: &FakeUpstream,
    endpoint: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> InProcessProxy {
    InProcessProxy::serve(state_over(upstream, endpoint, secret, extra).await).await
}

/// Proxy state over the secret `secret` read through `endpoint`, its key map loaded (or not).
async fn state_over(
    upstream: &FakeUpstream,
    endpoint: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> AppState {
    let source = SecretsManagerSource::new(client_for(endpoint), secret.to_owned());
    state_with(&upstream.base_url(), extra, Box::new(source)).await
}

/// The key cache measures TTLs, refresh intervals and map ages on tokio's clock. Stopped, that
/// clock moves only when the test moves it, so "within the TTL" and "after the TTL" are steps of
/// the test instead of races with a busy machine. A paused tokio clock jumps to its next timer
/// whenever the runtime waits on a socket (moto, the relay, the upstream), except while a blocking
/// task runs; one runs for as long as the clock is stopped. It gives up after `STOPPED_AT_MOST`,
/// and then the pending timeouts fire: a hung test fails instead of hanging.
///
/// Pausing needs the `current_thread` runtime, `#[tokio::test]`'s default. Not for tests whose
/// refreshes retry: the SDK's backoff sleeps would never end.
struct StoppedClock {
    _stopped: mpsc::Sender<()>,
    keeper: JoinHandle<()>,
}

const STOPPED_AT_MOST: Duration = Duration::from_secs(300);

impl StoppedClock {
    fn stop() -> Self {
        tokio::time::pause();
        let (stopped, dropped) = mpsc::channel::<()>();
        // Ends when the clock is dropped (the sender disconnects), or at the bound.
        let keeper = tokio::task::spawn_blocking(move || {
            let _ = dropped.recv_timeout(STOPPED_AT_MOST);
        });
        Self {
            _stopped: stopped,
            keeper,
        }
    }

    /// Moves the clock on by `duration`, as if that much time had passed.
    async fn pass(&self, duration: Duration) {
        assert!(
            !self.keeper.is_finished(),
            "the clock was stopped for more than {STOPPED_AT_MOST:?}"
        );
        tokio::time::advance(duration).await;
    }
}

/// The proxy's router on a free port, counting the requests handed to it. Every route
/// authenticates before any I/O, in the same poll, so a request counted here has already asked
/// the key cache for its key: when a refresh is held, it is waiting on that refresh.
struct CountedProxy {
    addr: SocketAddr,
    entered: Arc<watch::Sender<usize>>,
    task: JoinHandle<()>,
}

impl CountedProxy {
    async fn serve(state: AppState) -> Self {
        let entered = Arc::new(watch::Sender::new(0));
        let counter = entered.clone();
        let app = router(state).layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                counter.send_modify(|entered| *entered += 1);
                next.run(request)
            },
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            entered,
            task,
        }
    }

    async fn until_entered(&self, requests: usize) {
        let mut entered = self.entered.subscribe();
        let _ = entered.wait_for(|entered| *entered >= requests).await;
    }
}

impl Drop for CountedProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where a proxy under test listens.
trait Listening {
    fn url(&self, path: &str) -> String;
}

impl Listening for InProcessProxy {
    fn url(&self, path: &str) -> String {
        InProcessProxy::url(self, path)
    }
}

impl Listening for CountedProxy {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// `event`, or a failure naming `what` once `WAIT` has passed.
async fn within(what: &str, event: impl Future<Output = ()>) {
    tokio::time::timeout(WAIT, event)
        .await
        .unwrap_or_else(|_| panic!("waited {WAIT:?} for {what}"));
}

/// Sends a chat request with `wrapper_key`; returns the status and the real key the upstream saw.
async fn chat(
    proxy: &impl Listening,
    upstream: &FakeUpstream,
    wrapper_key: &str,
) -> (StatusCode, Option<String>) {
    let before = upstream.received().len();
    let response = crate::support::http_client()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(wrapper_key)
        .body(r#"{"model":"gpt-4o-mini","messages":[]}"#)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let _ = response.bytes().await.unwrap();
    let received = upstream.received();
    let real_key = received
        .get(before)
        .map(|seen| seen.headers["authorization"].to_str().unwrap().to_owned());
    (status, real_key)
}

fn ok_with(real_key: &str) -> (StatusCode, Option<String>) {
    (StatusCode::OK, Some(format!("Bearer {real_key}")))
}

async fn health(proxy: &InProcessProxy) -> (StatusCode, Value) {
    let response = crate::support::http_client()
        .get(proxy.url("/health"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (
        status,
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn loads_at_start_refreshes_after_the_ttl_and_follows_rotation() {
    let moto = Moto::start().await;
    moto.create_secret(SECRET, r#"{"alice": "sk-alice-1", "bob": "sk-bob"}"#)
        .await;
    let relay = Relay::start(&moto.endpoint).await;
    let upstream = FakeUpstream::start(openai::respond).await;
    let clock = StoppedClock::stop();
    let proxy = proxy_over(&upstream, &relay.endpoint, &[("KEY_MAP_TTL_SECONDS", "2")]).await;
    assert_eq!(relay.get_secret_value_calls(), 1, "loaded at start-up");

    assert_eq!(
        chat(&proxy, &upstream, "alice").await,
        ok_with("sk-alice-1")
    );
    assert_eq!(chat(&proxy, &upstream, "bob").await, ok_with("sk-bob"));
    assert_eq!(relay.get_secret_value_calls(), 1, "served from memory");

    // Rotation: alice's upstream key changes, bob is removed, carol is added.
    moto.put_secret(SECRET, r#"{"alice": "sk-alice-2", "carol": "sk-carol"}"#)
        .await;
    assert_eq!(
        chat(&proxy, &upstream, "bob").await,
        ok_with("sk-bob"),
        "within the TTL"
    );
    clock.pass(Duration::from_secs(2)).await;
    assert_eq!(
        chat(&proxy, &upstream, "alice").await,
        ok_with("sk-alice-2")
    );
    assert_eq!(
        relay.get_secret_value_calls(),
        2,
        "one refresh after the TTL"
    );
    assert_eq!(chat(&proxy, &upstream, "carol").await, ok_with("sk-carol"));
    assert_eq!(
        chat(&proxy, &upstream, "bob").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_burst_after_the_ttl_makes_one_call() {
    const BURST: usize = 30;
    let moto = Moto::start().await;
    moto.create_secret(SECRET, r#"{"alice": "sk-alice"}"#).await;
    let relay = Relay::start(&moto.endpoint).await;
    let upstream = FakeUpstream::start(openai::respond).await;
    let clock = StoppedClock::stop();
    let state = state_over(
        &upstream,
        &relay.endpoint,
        SECRET,
        &[("KEY_MAP_TTL_SECONDS", "1")],
    );
    let proxy = CountedProxy::serve(state.await).await;
    clock.pass(Duration::from_secs(1)).await;

    // The refresh the first request starts is held at the relay until every request of the
    // burst has reached the key cache: all of them are then waiting on that one refresh.
    relay.hold();
    let burst = (0..BURST).map(|_| chat(&proxy, &upstream, "alice"));
    let gathered = async {
        within("the burst to reach the cache", proxy.until_entered(BURST)).await;
        within("the refresh to reach the relay", relay.until_calls(2)).await;
        assert_eq!(
            relay.get_secret_value_calls(),
            2,
            "{BURST} requests wait on one call"
        );
        relay.release();
    };
    let (results, ()) = tokio::join!(futures_util::future::join_all(burst), gathered);
    for result in results {
        assert_eq!(result, ok_with("sk-alice"));
    }
    assert_eq!(relay.get_secret_value_calls(), 2, "one call for the burst");
}

#[tokio::test]
async fn an_unknown_key_refreshes_at_once_but_a_flood_makes_one_call_per_interval() {
    let moto = Moto::start().await;
    moto.create_secret(SECRET, r#"{"alice": "sk-alice"}"#).await;
    let relay = Relay::start(&moto.endpoint).await;
    let upstream = FakeUpstream::start(openai::respond).await;
    let clock = StoppedClock::stop();
    let proxy = proxy_over(
        &upstream,
        &relay.endpoint,
        &[("KEY_MAP_MIN_REFRESH_INTERVAL_SECONDS", "2")],
    )
    .await;

    moto.put_secret(SECRET, r#"{"alice": "sk-alice", "dave": "sk-dave"}"#)
        .await;
    assert_eq!(
        chat(&proxy, &upstream, "dave").await,
        ok_with("sk-dave"),
        "a new key works at once"
    );
    assert_eq!(relay.get_secret_value_calls(), 2);

    for n in 0..25 {
        let (status, _) = chat(&proxy, &upstream, &format!("mallory-{n}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        relay.get_secret_value_calls(),
        2,
        "the flood is refused from memory"
    );

    clock.pass(Duration::from_secs(2)).await;
    assert_eq!(
        chat(&proxy, &upstream, "mallory-late").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        relay.get_secret_value_calls(),
        3,
        "one more call after the interval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_or_throttling_keeps_the_last_good_map_in_service() {
    let mut moto = Moto::start().await;
    moto.create_secret(SECRET, r#"{"alice": "sk-alice"}"#).await;
    let relay = Relay::start(&moto.endpoint).await;
    let upstream = FakeUpstream::start(openai::respond).await;
    let extra = [
        ("KEY_MAP_TTL_SECONDS", "1"),
        ("KEY_MAP_MIN_REFRESH_INTERVAL_SECONDS", "1"),
    ];
    let throttled = proxy_over(&upstream, &relay.endpoint, &extra).await;
    let direct = proxy_over(&upstream, &moto.endpoint, &extra).await;

    relay.inject(Some(Fault::Throttling));
    moto.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for proxy in [&throttled, &direct] {
        for _ in 0..3 {
            assert_eq!(chat(proxy, &upstream, "alice").await, ok_with("sk-alice"));
        }
        let (status, body) = health(proxy).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["key_map"]["loaded"], true);
        assert!(body["key_map"]["last_error"].is_string(), "{body}");
    }
    assert!(relay.get_secret_value_calls() >= 2);
}

#[tokio::test]
async fn a_malformed_update_is_rejected_and_the_last_good_map_stays() {
    let moto = Moto::start().await;
    moto.create_secret(SECRET, r#"{"alice": "sk-alice"}"#).await;
    let upstream = FakeUpstream::start(openai::respond).await;
    let clock = StoppedClock::stop();
    let proxy = proxy_over(&upstream, &moto.endpoint, &[("KEY_MAP_TTL_SECONDS", "1")]).await;

    moto.put_secret(
        SECRET,
        r#"{"alice": "sk-alice-typo", "bob": {"api_key": "sk-bob", "modles": []}}"#,
    )
    .await;
    clock.pass(Duration::from_secs(1)).await;
    assert_eq!(chat(&proxy, &upstream, "alice").await, ok_with("sk-alice"));
    let (_, body) = health(&proxy).await;
    let error = body["key_map"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("member #2: unknown field \"modles\""),
        "{error}"
    );
    assert!(!error.contains("sk-"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_or_denied_access_gives_503_and_health_says_why() {
    let moto = Moto::start().await;
    let upstream = FakeUpstream::start(openai::respond).await;
    let missing = proxy_over_secret(&upstream, &moto.endpoint, "openai-proxy/missing", &[]).await;

    moto.create_secret(SECRET, r#"{"alice": "sk-alice"}"#).await;
    let relay = Relay::start(&moto.endpoint).await;
    relay.inject(Some(Fault::AccessDenied));
    let denied = proxy_over(&upstream, &relay.endpoint, &[]).await;

    let cases = [
        (
            &missing,
            "ResourceNotFoundException",
            "openai-proxy/missing",
        ),
        (&denied, "AccessDeniedException", SECRET),
    ];
    for (proxy, cause, secret) in cases {
        let response = crate::support::http_client()
            .post(proxy.url("/v1/chat/completions"))
            .bearer_auth("alice")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "key_map_unavailable");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Secrets Manager")
        );

        let (status, body) = health(proxy).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["key_map"]["loaded"], false);
        assert_eq!(body["key_map"]["source"], "secretsmanager");
        let error = body["key_map"]["last_error"].as_str().unwrap();
        assert!(error.contains(cause) && error.contains(secret), "{error}");
    }
    assert!(upstream.received().is_empty());
}

#[tokio::test]
async fn an_upstream_401_after_key_rotation_is_retried_once_with_the_new_key() {
    let moto = Moto::start().await;
    moto.create_secret(SECRET, r#"{"alice": "sk-old"}"#).await;
    let relay = Relay::start(&moto.endpoint).await;
    // The upstream has already revoked sk-old.
    let upstream = FakeUpstream::start(|seen: &Received| -> Response {
        if seen.headers["authorization"] == "Bearer sk-new" {
            openai::respond(seen)
        } else {
            (
                StatusCode::UNAUTHORIZED,
                r#"{"error":{"code":"invalid_api_key"}}"#,
            )
                .into_response()
        }
    })
    .await;
    let clock = StoppedClock::stop();
    let proxy = proxy_over(&upstream, &relay.endpoint, &[]).await;

    // A fresh map is believed: the 401 passes through without a refresh.
    assert_eq!(
        chat(&proxy, &upstream, "alice").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(relay.get_secret_value_calls(), 1);

    moto.put_secret(SECRET, r#"{"alice": "sk-new"}"#).await;
    clock
        .pass(openai_proxy::cache::UPSTREAM_401_REFRESH_AGE)
        .await;
    let (status, _) = chat(&proxy, &upstream, "alice").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(relay.get_secret_value_calls(), 2);
    let keys: Vec<String> = upstream
        .received()
        .iter()
        .map(|seen| seen.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["Bearer sk-old", "Bearer sk-old", "Bearer sk-new"]);
}
