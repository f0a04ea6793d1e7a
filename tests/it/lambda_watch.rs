//! The function-URL path end to end under `cargo lambda watch`: the emulator's runtime API and
//! function URL, the built binary as the function, its key map in moto's Secrets Manager, a fake
//! upstream, and the official Python and Node SDKs at `/lambda-url/openai-proxy/v1`.

use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::binary::assert_no_key_in;
use crate::support::lambda::LambdaEmulator;
use crate::support::moto::{ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY};
use crate::support::upstream::{FakeUpstream, LongStream, long_stream};
use crate::support::{
    BinaryProxy, REAL_KEY, TempFile, WRAPPER_KEY, key_map_json, leave_after_first_chunk, openai,
    run_node_sdk, run_sdk_script,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_and_node_sdks_work_through_the_emulated_function_url() {
    let Deployment {
        function,
        emulator,
        upstream,
        _moto,
    } = Deployment::start(&[("RUST_LOG", "debug")]).await;

    let base_url = emulator.base_url();
    let sdk_env = [
        ("OPENAI_PROXY_BASE_URL", base_url.as_str()),
        ("OPENAI_PROXY_KEY", WRAPPER_KEY),
    ];
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

    for seen in upstream
        .received()
        .iter()
        .filter(|seen| seen.method != "HEAD")
    {
        assert_eq!(seen.headers["authorization"], format!("Bearer {REAL_KEY}"));
    }
    let log = function.stop();
    assert!(log.contains("openai_proxy::request"), "{log}");
    assert_no_key_in(&log, &[WRAPPER_KEY, REAL_KEY, "wrapper-key-mallory"]);
}

/// One stream from a model that thinks before its first byte, through the emulated function URL;
/// returns how long it took.
async fn thinking_stream(base_url: &str) -> Duration {
    let started = Instant::now();
    let response = crate::support::http_client()
        .post(format!("{base_url}/chat/completions"))
        .bearer_auth(WRAPPER_KEY)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"model":"o4-mini{}","stream":true,"messages":[]}}"#,
            openai::THINKING_SUFFIX
        ))
        .timeout(Duration::from_secs(30))
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
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_managed_instances_one_process_serves_concurrent_streams() {
    let deployment = Deployment::start(&[("AWS_LAMBDA_MAX_CONCURRENCY", "4")]).await;
    let base_url = deployment.emulator.base_url();

    let one = thinking_stream(&base_url).await;
    let started = Instant::now();
    let four = futures_util::future::join_all((0..4).map(|_| thinking_stream(&base_url))).await;
    let together = started.elapsed();
    assert_eq!(four.len(), 4);
    // Each invocation waits for the upstream's first byte before its response can begin. One
    // invocation at a time (as without AWS_LAMBDA_MAX_CONCURRENCY) would take about four times
    // as long as one; the concurrent runner polls four invocations at once in this one process.
    assert!(
        together < one * 2,
        "four concurrent streams took {together:?}, one alone {one:?}"
    );
}

/// Under `cargo lambda watch`, a client that leaves mid-stream stops the upstream stream too: the
/// emulator drops the function's response stream, and the proxy's upstream request goes with it.
/// (A real function URL keeps streamed invocations running after the client leaves; see the
/// README on how that waste is bounded.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_cargo_lambda_watch_a_departed_client_stops_the_upstream() {
    // 100 frames, 50 ms apart: five seconds of stream unless someone stops it.
    let LongStream {
        upstream, produced, ..
    } = long_stream(100).await;
    let keys = TempFile::with_contents("keys.json", &key_map_json());
    let emulator = LambdaEmulator::start().await;
    let upstream_url = upstream.base_url();
    let function = emulator.start_function(&[
        ("KEY_MAP_FILE", keys.path_str()),
        ("UPSTREAM_BASE_URL", &upstream_url),
    ]);

    leave_after_first_chunk(&format!("{}/chat/completions", emulator.base_url())).await;

    // Well past the point where an unstopped stream would have produced 40 more frames.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frames = produced.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        frames < 20,
        "the upstream produced {frames} frames after the client left"
    );
    drop(function);
}
