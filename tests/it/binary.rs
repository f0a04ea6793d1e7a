//! The built binary in local mode: start-up errors, and the official OpenAI Python SDK driving
//! it end to end against the fake upstream.

use std::time::Duration;

use crate::support::upstream::FakeUpstream;
use crate::support::{
    BinaryProxy, OTHER_REAL_KEY, OTHER_WRAPPER_KEY, REAL_KEY, TempFile, WRAPPER_KEY, key_map_json,
    manifest_dir, openai, python, run_binary_to_exit,
};

#[test]
fn a_missing_key_map_file_is_a_clear_start_up_error() {
    let (ok, stderr) = run_binary_to_exit(&[("KEY_MAP_FILE", "/nonexistent/keys.json")]);
    assert!(!ok);
    assert!(
        stderr.contains("key map file /nonexistent/keys.json: cannot be read"),
        "{stderr}"
    );
}

#[test]
fn no_key_source_is_a_clear_start_up_error() {
    let (ok, stderr) = run_binary_to_exit(&[]);
    assert!(!ok);
    assert!(stderr.contains("KEY_MAP_FILE"), "{stderr}");
}

#[test]
fn a_malformed_key_map_names_the_file_and_the_problem_but_no_key() {
    let cases = [
        (
            r#"{"wrapper-secret-1": 42}"#,
            "member #1: the value must be the real key as a string",
        ),
        (r#"{"wrapper-secret-1": "sk-secret-1",}"#, "not valid JSON"),
        (
            r#"["wrapper-secret-1", "sk-secret-1"]"#,
            "must be a JSON object",
        ),
    ];
    for (contents, problem) in cases {
        let file = TempFile::with_contents("keys.json", contents);
        let (ok, stderr) = run_binary_to_exit(&[("KEY_MAP_FILE", file.path_str())]);
        assert!(!ok, "{contents}");
        assert!(stderr.contains(file.path_str()), "{stderr}");
        assert!(stderr.contains(problem), "{stderr}");
        assert!(!stderr.contains("secret"), "a key leaked: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_works_through_the_binary() {
    let python = python();
    let upstream = FakeUpstream::start(openai::respond).await;
    let keys = TempFile::with_contents("keys.json", &key_map_json());
    let proxy = BinaryProxy::start(&[
        ("KEY_MAP_FILE", keys.path_str()),
        ("UPSTREAM_BASE_URL", &upstream.base_url()),
        ("RUST_LOG", "trace"),
    ]);

    let mut sdk = tokio::process::Command::new(python);
    sdk.arg(manifest_dir().join("tests/e2e/sdk_python.py"))
        .env("OPENAI_PROXY_BASE_URL", proxy.base_url())
        .env("OPENAI_PROXY_KEY", WRAPPER_KEY)
        .env("EXPECTED_REPLY", openai::REPLY)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), sdk.output())
        .await
        .expect("the SDK script did not finish in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok - embeddings base64 bytes"), "{stdout}");

    // At start-up the proxy opened a connection with one keyless HEAD request.
    let (warm_up, received): (Vec<_>, Vec<_>) = upstream
        .received()
        .into_iter()
        .partition(|seen| seen.method == "HEAD");
    assert_eq!(warm_up.len(), 1);
    assert!(!warm_up[0].headers.contains_key("authorization"));
    // chat, chat stream, stream helper, two embeddings, models, responses stream; the request
    // with the unknown key never left the proxy.
    assert_eq!(received.len(), 7);
    for seen in &received {
        assert_eq!(seen.headers["authorization"], format!("Bearer {REAL_KEY}"));
        assert!(seen.headers["x-stainless-lang"] == "python");
    }
    // The SDK's default embeddings request asks for base64, and that reached the upstream.
    assert!(received.iter().any(|seen| {
        seen.path_and_query == "/v1/embeddings"
            && String::from_utf8_lossy(&seen.body).contains(r#""encoding_format":"base64""#)
    }));

    // Even at the most verbose level, the proxy's log holds no key.
    let log = proxy.stop();
    assert!(log.contains("relaying upstream response"), "{log}");
    for key in [
        WRAPPER_KEY,
        REAL_KEY,
        OTHER_WRAPPER_KEY,
        OTHER_REAL_KEY,
        "wrapper-key-mallory",
    ] {
        assert!(!log.contains(key), "{key} appears in the log");
    }
}
