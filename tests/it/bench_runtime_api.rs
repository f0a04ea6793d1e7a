//! The benchmark's fake Lambda Runtime API (benches/bench/runtime_api.rs) held to the proxy
//! binary's Runtime API client (`src/lambda.rs`): a streamed answer reaches it chunk by chunk
//! with the upstream's bytes, an event the function cannot take is reported on `/error`, and a
//! body that breaks mid-stream ends with the error in the trailers, as the Runtime API documents.
//! The first two also hold it to `lambda_runtime`'s own client, the reference
//! (`examples/lambda_runtime_reference.rs`), so the fake is not only right by the proxy's reading.

#[expect(
    dead_code,
    reason = "shared with the benchmark, which reads parts of the record this test does not"
)]
#[path = "../../benches/bench/runtime_api.rs"]
mod runtime_api;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::Method;
use axum::response::Response;
use runtime_api::{FakeRuntimeApi, HTTP_INTEGRATION, Invocation};
use tokio::sync::{mpsc, oneshot};

use crate::support::upstream::{FakeUpstream, scripted_stream};
use crate::support::{BinaryProxy, TempFile, key_map_json, manifest_dir};

/// Every wait here is bounded by this; none decides on how fast anything happened.
const WAIT: Duration = Duration::from_secs(20);

fn event(name: &str) -> Bytes {
    Bytes::from(std::fs::read(manifest_dir().join("events").join(name)).unwrap())
}

/// Which Runtime API client runs the function.
#[derive(Clone, Copy)]
enum Client {
    /// The proxy binary's own (`src/lambda/runtime_api.rs`).
    Proxy,
    /// `lambda_runtime`'s, through lambda_http's streaming runner.
    LambdaRuntime,
}

impl Client {
    fn program(self) -> PathBuf {
        match self {
            Self::Proxy => PathBuf::from(env!("CARGO_BIN_EXE_openai-proxy")),
            // Examples are built next to the test binaries' `deps` folder by `cargo test`.
            Self::LambdaRuntime => {
                let test_binary = std::env::current_exe().unwrap();
                let profile = test_binary.parent().and_then(Path::parent).unwrap();
                let example = profile.join("examples/lambda_runtime_reference");
                assert!(
                    example.exists(),
                    "{} is missing: run the whole `cargo test` (or `make test`), which builds the examples",
                    example.display()
                );
                example
            }
        }
    }
}

/// The function in Lambda mode against `api`, forwarding to `upstream`.
fn function(
    client: Client,
    api: &FakeRuntimeApi,
    upstream: &FakeUpstream,
    keys: &TempFile,
) -> BinaryProxy {
    let (address, upstream_url) = (api.runtime_api(), upstream.base_url());
    BinaryProxy::start_program_until(
        &client.program(),
        &[
            ("AWS_LAMBDA_RUNTIME_API", address.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", "openai-proxy"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("KEY_MAP_FILE", keys.path_str()),
            ("UPSTREAM_BASE_URL", upstream_url.as_str()),
            ("RUST_LOG", "info"),
        ],
        "key map loaded",
    )
}

/// An upstream whose one answer the test writes piece by piece: the sender arrives on the
/// returned channel when the proxy's request does.
async fn scripted_upstream(
    content_type: &'static str,
) -> (FakeUpstream, oneshot::Receiver<mpsc::Sender<Bytes>>) {
    let (sender_tx, sender_rx) = oneshot::channel();
    let slot = Mutex::new(Some(sender_tx));
    let upstream = FakeUpstream::start(move |received| {
        if received.method != Method::POST {
            return warm_up_answer();
        }
        let (tx, response) = scripted_stream(content_type);
        if let Some(slot) = slot.lock().unwrap().take() {
            let _ = slot.send(tx);
        }
        response
    })
    .await;
    (upstream, sender_rx)
}

/// The answer to the proxy's start-up warm-up (`HEAD /models`), which is not the request a test
/// scripts.
fn warm_up_answer() -> Response {
    Response::new(Body::empty())
}

fn body_len(invocation: &Invocation) -> usize {
    invocation.response.as_ref().map_or(0, |response| {
        response.chunks.iter().map(|(_, chunk)| chunk.len()).sum()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_reaches_the_fake_runtime_api_chunk_by_chunk_with_the_upstreams_bytes() {
    streams_chunk_by_chunk(Client::Proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_runtimes_own_client_streams_to_the_fake_chunk_by_chunk() {
    streams_chunk_by_chunk(Client::LambdaRuntime).await;
}

async fn streams_chunk_by_chunk(client: Client) {
    let (upstream, sender) = scripted_upstream("text/event-stream").await;
    let api = FakeRuntimeApi::start().await.unwrap();
    let keys = TempFile::with_contents("keys.json", &key_map_json());
    let function = function(client, &api, &upstream, &keys);

    let id = api.invoke(event("chat-stream.json"));
    let frames: [&[u8]; 4] = [
        br#"data: {"choices":[{"delta":{"content":"Lambda"}}]}"#,
        br#"data: {"choices":[{"delta":{"content":" streams"}}]}"#,
        br#"data: {"choices":[{"delta":{"content":" chunks"}}]}"#,
        b"data: [DONE]",
    ];
    let frames: Vec<Vec<u8>> = frames
        .iter()
        .map(|frame| [*frame, b"\n\n"].concat())
        .collect();
    let upstream_body = tokio::time::timeout(WAIT, sender).await.unwrap().unwrap();
    let mut sent = 0;
    for (n, frame) in frames.iter().enumerate() {
        upstream_body
            .send(Bytes::from(frame.clone()))
            .await
            .unwrap();
        sent += frame.len();
        // The next frame is held until this one has reached the Runtime API: a runtime (or a
        // fake) that gathered the body before passing it on would leave this wait to run out.
        let arrived = api
            .wait_until(&id, WAIT, |seen| body_len(seen) >= sent)
            .await;
        assert!(
            arrived,
            "frame {n} never reached the Runtime API on its own"
        );
    }
    drop(upstream_body);

    let invocation = api.finished(&id, WAIT).await.unwrap();
    assert!(invocation.error.is_none(), "{:?}", invocation.error);
    let response = invocation.response.unwrap();
    assert_eq!(response.mode.as_deref(), Some("streaming"));
    assert_eq!(response.content_type.as_deref(), Some(HTTP_INTEGRATION));
    assert_eq!(response.status, Some(200));
    assert!(
        response
            .header("content-type")
            .is_some_and(|kind| kind.starts_with("text/event-stream")),
        "{:?}",
        response.headers
    );
    assert!(response.cookies.is_empty(), "{:?}", response.cookies);
    assert!(response.complete, "{:?}", response.broken);
    assert!(response.trailers.is_empty(), "{:?}", response.trailers);
    assert_eq!(
        response.body(),
        frames.concat(),
        "the body is not the upstream's bytes"
    );
    assert!(
        response.chunks.len() >= frames.len(),
        "{} chunks for {} frames",
        response.chunks.len(),
        frames.len()
    );
    assert!(api.init_error().is_none());
    function.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_runtime_cannot_take_is_reported_on_the_error_route_and_the_next_is_answered()
{
    let error = reports_a_bad_event_and_answers_the_next(Client::Proxy).await;
    assert_eq!(
        error.type_header.as_deref(),
        Some("Runtime.DeserializeError")
    );
    assert_eq!(error.error_type, "Runtime.DeserializeError", "{error:?}");
    assert!(
        error
            .error_message
            .contains("the event is not a function URL request"),
        "{error:?}"
    );
}

/// `lambda_runtime` names the error by its Rust type, and its message is serde's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_runtimes_own_client_reports_a_bad_event_on_the_fakes_error_route() {
    let error = reports_a_bad_event_and_answers_the_next(Client::LambdaRuntime).await;
    assert!(error.error_type.ends_with("DeserializeError"), "{error:?}");
    assert!(!error.error_message.is_empty(), "{error:?}");
}

/// Invokes the function with an event that is not a function-URL request, then with one that
/// is; returns the error the first was reported with.
async fn reports_a_bad_event_and_answers_the_next(client: Client) -> runtime_api::Reported {
    let (upstream, _sender) = scripted_upstream("application/json").await;
    let api = FakeRuntimeApi::start().await.unwrap();
    let keys = TempFile::with_contents("keys.json", &key_map_json());
    let mut function = function(client, &api, &upstream, &keys);

    let id = api.invoke(Bytes::from_static(br#"{"foo":1}"#));
    let failed = api.finished(&id, WAIT).await.unwrap();
    assert!(failed.response.is_none(), "{:?}", failed.response);
    let error = failed.error.unwrap();

    // The same process takes the next invocation.
    let next = api.invoke(event("health.json"));
    let answered = api.finished(&next, WAIT).await.unwrap();
    let response = answered.response.unwrap();
    assert_eq!(response.status, Some(200));
    assert!(
        String::from_utf8_lossy(&response.body()).contains(r#""status":"ok""#),
        "{:?}",
        String::from_utf8_lossy(&response.body())
    );
    assert!(
        function.child.0.try_wait().unwrap().is_none(),
        "the function exited"
    );
    assert!(api.init_error().is_none());
    function.stop();
    error
}

/// A body that breaks after its first chunk: the Runtime API gets that chunk, then the error as
/// the trailers `Lambda-Runtime-Function-Error-Type` and `-Body` (base64 of the error's JSON),
/// and nothing of it in the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_breaks_mid_stream_ends_with_the_error_in_the_trailers() {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release = Mutex::new(Some(release_rx));
    let upstream = FakeUpstream::start(move |received| {
        if received.method != Method::POST {
            return warm_up_answer();
        }
        let released = release.lock().unwrap().take();
        let first = futures_util::stream::once(async {
            Ok::<_, std::io::Error>(Bytes::from_static(br#"{"partial":"#))
        });
        let broken = futures_util::stream::once(async move {
            if let Some(released) = released {
                let _ = tokio::time::timeout(WAIT, released).await;
            }
            Err(std::io::Error::other("the upstream went away"))
        });
        // A JSON body with no length: a stream the proxy relays as it comes, with no in-band
        // way to say "error", so its failure ends the response with an error.
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(futures_util::StreamExt::chain(
                first, broken,
            )))
            .unwrap()
    })
    .await;
    let api = FakeRuntimeApi::start().await.unwrap();
    let keys = TempFile::with_contents("keys.json", &key_map_json());
    let function = function(Client::Proxy, &api, &upstream, &keys);

    let id = api.invoke(event("chat.json"));
    let first = br#"{"partial":"#;
    assert!(
        api.wait_until(&id, WAIT, |seen| body_len(seen) >= first.len())
            .await,
        "the first chunk never reached the Runtime API"
    );
    release_tx.send(()).unwrap();
    let invocation = api.finished(&id, WAIT).await.unwrap();
    assert!(invocation.error.is_none(), "{:?}", invocation.error);
    let response = invocation.response.unwrap();
    assert_eq!(response.status, Some(200));
    let body = response.body();
    assert!(
        body.starts_with(first),
        "{:?}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(body, first, "{:?}", String::from_utf8_lossy(&body));
    let trailer = |name: &str| {
        response
            .trailers
            .iter()
            .find(|(found, _)| found.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    assert_eq!(
        trailer("lambda-runtime-function-error-type").as_deref(),
        Some("Runtime.StreamError"),
        "{:?}",
        response.trailers
    );
    let encoded = trailer("lambda-runtime-function-error-body").unwrap();
    let decoded =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap();
    let error: serde_json::Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(error["errorType"], "Runtime.StreamError", "{error}");
    assert!(error["errorMessage"].is_string(), "{error}");
    function.stop();
}
