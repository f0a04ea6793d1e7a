//! The function-URL path end to end under `cargo lambda watch`: the emulator's runtime API and
//! function URL, the built binary as the function, its key map in moto's Secrets Manager, a fake
//! upstream, and the official Python and Node SDKs at `/lambda-url/openai-proxy/v1`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;

use crate::api_sdks::{PYTHON_API_CHECKS, check_upstream_saw_only_the_real_key};
use crate::binary::assert_no_key_in;
use crate::support::lambda::LambdaEmulator;
use crate::support::moto::{ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY};
use crate::support::upstream::{FakeUpstream, HeadDelay, LongStream, long_stream};
use crate::support::{
    ALL_TEST_KEYS, BinaryProxy, REAL_KEY, TempFile, WRAPPER_KEY, key_map_json,
    leave_after_first_chunk, openai, run_node_sdk, run_node_sdk_script, run_sdk_script,
};

const SECRET: &str = "openai-proxy/keys";

/// A function under the emulator with its key map (`key_map_json`) in moto and the OpenAI-like
/// fake upstream; `extra` adds settings.
struct Deployment {
    function: BinaryProxy,
    emulator: LambdaEmulator,
    upstream: FakeUpstream,
    _moto: Moto,
}

impl Deployment {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let moto = Moto::start().await;
        moto.create_secret(SECRET, &key_map_json()).await;
        let upstream = FakeUpstream::start(openai::respond).await;
        let emulator = LambdaEmulator::start().await;
        let upstream_url = upstream.base_url();
        let mut settings = vec![
            ("KEY_MAP_SECRET_ID", SECRET),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("UPSTREAM_BASE_URL", upstream_url.as_str()),
        ];
        settings.extend_from_slice(extra);
        let function = emulator.start_function(&settings);
        Self {
            function,
            emulator,
            upstream,
            _moto: moto,
        }
    }
}

/// What the SDK scripts read: the function URL, the wrapper key, and the fake upstream's own URL
/// (where held streams are released).
fn sdk_env<'a>(base_url: &'a str, upstream_url: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("OPENAI_PROXY_BASE_URL", base_url),
        ("OPENAI_PROXY_KEY", WRAPPER_KEY),
        ("OPENAI_PROXY_TEST_UPSTREAM", upstream_url),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_and_node_sdks_work_through_the_emulated_function_url() {
    let Deployment {
        function,
        emulator,
        upstream,
        _moto,
    } = Deployment::start(&[("RUST_LOG", "debug")]).await;

    let base_url = emulator.base_url();
    let upstream_url = upstream.base_url();
    let sdk_env = sdk_env(&base_url, &upstream_url);
    let python = run_sdk_script("sdk_python.py", &sdk_env).await;
    assert!(
        python.contains("ok - streamed chunks arrive one by one"),
        "{python}"
    );
    assert!(python.contains("ok - embeddings.create values"), "{python}");
    let node = run_node_sdk(&sdk_env).await;
    assert!(
        node.contains("ok - streamed chunks arrived one by one"),
        "{node}"
    );
    assert!(
        node.contains("ok - unknown key is AuthenticationError"),
        "{node}"
    );

    // (The scripts' releases of their held streams went to the upstream directly.)
    for seen in upstream.received().iter().filter(|seen| {
        seen.method != "HEAD" && !seen.path_and_query.starts_with("/v1/test-release/")
    }) {
        assert_eq!(seen.headers["authorization"], format!("Bearer {REAL_KEY}"));
    }
    let log = function.stop();
    assert!(log.contains("openai_proxy::request"), "{log}");
    assert_no_key_in(&log, &[WRAPPER_KEY, REAL_KEY, "wrapper-key-mallory"]);
}

/// The whole API under the emulator: the Python SDK's whole-API script, and the Node SDK's
/// speech, transcription, file round trip and resumed stream; multipart bodies reach the
/// function base64-encoded in their events, and the upstream must get the client's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_api_works_through_the_emulated_function_url() {
    let Deployment {
        function,
        emulator,
        upstream,
        _moto,
    } = Deployment::start(&[("RUST_LOG", "debug")]).await;
    let base_url = emulator.base_url();
    let upstream_url = upstream.base_url();
    let sdk_env = sdk_env(&base_url, &upstream_url);
    let python = run_sdk_script("sdk_python_api.py", &sdk_env).await;
    for check in PYTHON_API_CHECKS {
        assert!(python.contains(check), "{check}:\n{python}");
    }
    let node = run_node_sdk_script("sdk_node_api.mjs", &sdk_env).await;
    for check in [
        "ok - audio.speech streams its first bytes before the rest is sent",
        "ok - audio.speech bytes identical",
        "ok - audio.transcriptions.create",
        "ok - files.content bytes identical",
    ] {
        assert!(node.contains(check), "{check}:\n{node}");
    }
    check_upstream_saw_only_the_real_key(&upstream);
    let log = function.stop();
    assert_no_key_in(&log, &ALL_TEST_KEYS);
}

/// A function under the emulator with the key map from a file and `upstream` behind it.
struct FileDeployment {
    function: BinaryProxy,
    emulator: LambdaEmulator,
    _keys: TempFile,
}

impl FileDeployment {
    async fn start(upstream: &FakeUpstream, extra: &[(&str, &str)]) -> Self {
        let keys = TempFile::with_contents("keys.json", &key_map_json());
        let emulator = LambdaEmulator::start().await;
        let upstream_url = upstream.base_url();
        let mut settings = vec![
            ("KEY_MAP_FILE", keys.path_str()),
            ("UPSTREAM_BASE_URL", upstream_url.as_str()),
        ];
        settings.extend_from_slice(extra);
        let function = emulator.start_function(&settings);
        Self {
            function,
            emulator,
            _keys: keys,
        }
    }
}

/// How long a test waits for something that should happen at once (a bound, not a speed).
const BOUND: Duration = Duration::from_secs(30);

/// A streaming chat through the emulated function URL; its body must arrive whole.
async fn stream_to_the_end(base_url: &str) {
    let response = crate::support::http_client()
        .post(format!("{base_url}/chat/completions"))
        .bearer_auth(WRAPPER_KEY)
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#)
        .timeout(BOUND)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.bytes().await.unwrap();
    assert!(
        body.ends_with(b"data: [DONE]\n\n"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

/// Four streams whose upstream holds every first byte until all four requests have reached it:
/// one invocation at a time (as without `AWS_LAMBDA_MAX_CONCURRENCY`) can never get there, since
/// the first stream would have to end before the second invocation begins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_managed_instances_one_process_serves_concurrent_streams() {
    let together = Arc::new(tokio::sync::Barrier::new(4));
    let met = Arc::new(AtomicUsize::new(0));
    let (barrier, count) = (together.clone(), met.clone());
    let upstream = FakeUpstream::start(move |_| {
        let (barrier, count) = (barrier.clone(), count.clone());
        let first = async move {
            // Bounded, so a runtime that polls one invocation at a time fails instead of hanging.
            if tokio::time::timeout(BOUND, barrier.wait()).await.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, std::convert::Infallible>(Bytes::from_static(
                b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n",
            ))
        };
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(axum::body::Body::from_stream(futures_util::stream::once(
                first,
            )))
            .unwrap()
    })
    .await;
    let deployment = FileDeployment::start(&upstream, &[("AWS_LAMBDA_MAX_CONCURRENCY", "4")]).await;

    let base_url = deployment.emulator.base_url();
    futures_util::future::join_all((0..4).map(|_| stream_to_the_end(&base_url))).await;
    assert_eq!(
        met.load(Ordering::SeqCst),
        4,
        "the four streams were never open at the same time"
    );
}

/// Under `cargo lambda watch`, a client that leaves mid-stream stops the upstream stream too: the
/// emulator drops the function's response stream, and the proxy's upstream request goes with it.
/// (A real function URL keeps streamed invocations running after the client leaves; see the
/// README on how that waste is bounded.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_cargo_lambda_watch_a_departed_client_stops_the_upstream() {
    // 1,000 frames, 50 ms apart: nearly a minute of stream unless someone stops it.
    let LongStream {
        upstream,
        produced,
        dropped,
    } = long_stream(1_000).await;
    let deployment = FileDeployment::start(&upstream, &[]).await;

    leave_after_first_chunk(&format!(
        "{}/chat/completions",
        deployment.emulator.base_url()
    ))
    .await;

    tokio::time::timeout(BOUND, dropped)
        .await
        .expect("the upstream stream was never dropped after the client left")
        .unwrap();
    let frames = produced.load(Ordering::SeqCst);
    assert!(frames < 1_000, "the upstream stream ran to its end");
}

/// A client that leaves before the upstream's first byte: the function's response then has no
/// one to go to, and the emulator refuses it. That costs that invocation only; the next request
/// is answered by the same process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_cargo_lambda_watch_a_client_gone_before_the_first_byte_costs_one_invocation() {
    // The upstream thinks for two seconds before its status line.
    let upstream = FakeUpstream::start(|request| {
        let mut response = openai::respond(request);
        response
            .extensions_mut()
            .insert(HeadDelay(Duration::from_secs(2)));
        response
    })
    .await;
    let mut deployment = FileDeployment::start(&upstream, &[]).await;
    let url = format!("{}/chat/completions", deployment.emulator.base_url());
    let chat = |stream: bool| {
        crate::support::http_client()
            .post(&url)
            .bearer_auth(WRAPPER_KEY)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"model":"gpt-4o-mini","stream":{stream},"messages":[]}}"#
            ))
            .timeout(BOUND)
            .send()
    };

    // The client leaves once its request has reached the upstream, before any answer.
    let departing = tokio::spawn(chat(true));
    let reached = async {
        while upstream.received().iter().all(|seen| seen.method != "POST") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(BOUND, reached).await.unwrap();
    departing.abort();

    for stream in [false, true, true, false] {
        let next = chat(stream).await.unwrap();
        assert_eq!(next.status(), StatusCode::OK);
        assert!(next.text().await.unwrap().contains("chat.completion"));
    }
    assert!(
        deployment.function.child.0.try_wait().unwrap().is_none(),
        "the function process exited"
    );
}
