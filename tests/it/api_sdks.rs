//! The whole API end to end in local mode: the official Python SDK's `sdk_python_api.py` through
//! the built binary against the whole-API fake upstream, which checks inside its handlers what
//! each request must look like (multipart bodies byte for byte, empty GET and DELETE bodies,
//! resumed-stream queries). Under `cargo lambda watch` the same script and the Node one run in
//! `lambda_watch.rs`.

use crate::binary::assert_no_key_in;
use crate::support::upstream::FakeUpstream;
use crate::support::{
    ALL_TEST_KEYS, BinaryProxy, REAL_KEY, TempFile, WRAPPER_KEY, key_map_json, openai,
    run_sdk_script,
};

/// The lines `sdk_python_api.py` prints that prove the points.
pub const PYTHON_API_CHECKS: [&str; 12] = [
    "ok - completions.create(stream=True) text",
    "ok - moderations.create",
    "ok - images.generate b64_json",
    "ok - audio.speech streams its first bytes before the rest is sent",
    "ok - audio.speech bytes identical",
    "ok - audio.transcriptions.create",
    "ok - files.content bytes identical",
    "ok - batches.retrieve",
    "ok - responses.retrieve",
    "ok - responses.delete",
    "ok - responses.input_items.list pages on",
    "ok - responses.retrieve(stream=True, starting_after=3) starts at 4",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_calls_the_whole_api_through_the_binary() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let keys = TempFile::with_contents("keys.json", &key_map_json());
    let proxy = BinaryProxy::start(&[
        ("KEY_MAP_FILE", keys.path_str()),
        ("UPSTREAM_BASE_URL", &upstream.base_url()),
        ("RUST_LOG", "debug"),
    ]);
    let stdout = run_sdk_script(
        "sdk_python_api.py",
        &[
            ("OPENAI_PROXY_BASE_URL", &proxy.base_url()),
            ("OPENAI_PROXY_KEY", WRAPPER_KEY),
            ("OPENAI_PROXY_TEST_UPSTREAM", &upstream.base_url()),
        ],
    )
    .await;
    for check in PYTHON_API_CHECKS {
        assert!(stdout.contains(check), "{check}:\n{stdout}");
    }
    check_upstream_saw_only_the_real_key(&upstream);
    let log = proxy.stop();
    assert!(log.contains("openai_proxy::request"), "{log}");
    assert_no_key_in(&log, &ALL_TEST_KEYS);
}

/// Every request that reached the upstream through the proxy carried the real key and nothing
/// of the wrapper key (the scripts' releases of held streams go to the upstream directly).
pub fn check_upstream_saw_only_the_real_key(upstream: &FakeUpstream) {
    let received: Vec<_> = upstream
        .received()
        .into_iter()
        .filter(|seen| {
            seen.method != "HEAD" && !seen.path_and_query.starts_with("/v1/test-release/")
        })
        .collect();
    assert!(received.len() >= 20, "{}", received.len());
    for seen in &received {
        assert_eq!(seen.headers["authorization"], format!("Bearer {REAL_KEY}"));
        let raw = format!("{:?} {}", seen.headers, String::from_utf8_lossy(&seen.body));
        assert!(!raw.contains(WRAPPER_KEY), "{}", seen.path_and_query);
    }
}
