//! The built binary in local mode: start-up errors, and the official OpenAI Python SDK driving
//! it end to end against the fake upstream.

use crate::support::moto::{ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY};
use crate::support::upstream::FakeUpstream;
use axum::body::Bytes;

use crate::support::http_client;
use crate::support::{
    BinaryProxy, OTHER_REAL_KEY, OTHER_WRAPPER_KEY, REAL_KEY, TempFile, WRAPPER_KEY, key_map_json,
    openai, run_binary_to_exit, run_sdk_script,
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

pub fn assert_no_key_in(log: &str, keys: &[&str]) {
    for key in keys {
        assert!(!log.contains(key), "{key} appears in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_works_through_the_binary() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let keys = TempFile::with_contents("keys.json", &key_map_json());
    let proxy = BinaryProxy::start(&[
        ("KEY_MAP_FILE", keys.path_str()),
        ("UPSTREAM_BASE_URL", &upstream.base_url()),
        ("RUST_LOG", "trace"),
    ]);

    let stdout = run_sdk_script(
        "sdk_python.py",
        &[
            ("OPENAI_PROXY_BASE_URL", &proxy.base_url()),
            ("OPENAI_PROXY_KEY", WRAPPER_KEY),
            ("OPENAI_PROXY_TEST_UPSTREAM", &upstream.base_url()),
        ],
    )
    .await;
    assert!(stdout.contains("ok - embeddings base64 bytes"), "{stdout}");
    assert!(
        stdout.contains("ok - streamed chunks arrive one by one"),
        "{stdout}"
    );

    // At start-up the proxy opened a connection with one keyless HEAD request.
    // (The script's releases of its held stream went to the upstream directly.)
    let (warm_up, received): (Vec<_>, Vec<_>) = upstream
        .received()
        .into_iter()
        .filter(|seen| !seen.path_and_query.starts_with("/v1/test-release/"))
        .partition(|seen| seen.method == "HEAD");
    assert_eq!(warm_up.len(), 1);
    assert!(!warm_up[0].headers.contains_key("authorization"));
    // chat, chat stream, slow chat stream, stream helper, two embeddings, models, responses
    // stream; the request with the unknown key never left the proxy.
    assert_eq!(received.len(), 8);
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
    assert!(log.contains("openai_proxy::request"), "{log}");
    assert_no_key_in(
        &log,
        &[
            WRAPPER_KEY,
            REAL_KEY,
            OTHER_WRAPPER_KEY,
            OTHER_REAL_KEY,
            "wrapper-key-mallory",
        ],
    );
}

#[test]
fn hash_key_prints_the_member_name_for_a_key_on_stdin() {
    assert_eq!(
        hash_key("abc\n"),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

fn hash_key(input: &str) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_openai-proxy"))
        .arg("hash-key")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_meets_key_policy_from_secrets_manager() {
    const HIDDEN: &str = "wrapper-key-hidden";
    const CAROL: &str = "wrapper-key-carol";
    const DAVE: &str = "wrapper-key-dave";
    let moto = Moto::start().await;
    let secret = format!(
        r#"{{
            "{hidden}": {{"api_key": "{REAL_KEY}", "tenant": "hidden-team"}},
            "{CAROL}": {{"api_key": "sk-carol-real", "tenant": "carol", "models": ["gpt-4o-mini"]}},
            "{DAVE}": {{"api_key": "sk-dave-real", "expires_at": "2020-01-01T00:00:00Z"}}
        }}"#,
        hidden = hash_key(HIDDEN),
    );
    assert!(
        !secret.contains(HIDDEN),
        "the secret holds only the hashed form"
    );
    moto.create_secret("openai-proxy/keys", &secret).await;

    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy = BinaryProxy::start(&[
        ("KEY_MAP_SECRET_ID", "openai-proxy/keys"),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", &moto.endpoint),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("UPSTREAM_BASE_URL", &upstream.base_url()),
        ("RUST_LOG", "trace"),
    ]);
    let health = crate::support::http_client()
        .get(format!("http://{}/health", proxy.addr))
        .send()
        .await
        .unwrap();
    let health: serde_json::Value = serde_json::from_slice(&health.bytes().await.unwrap()).unwrap();
    assert_eq!(health["key_map"]["source"], "secretsmanager");
    assert_eq!(health["key_map"]["loaded"], true);

    // The whole SDK tour with the key that the secret holds only as a digest.
    run_sdk_script(
        "sdk_python.py",
        &[
            ("OPENAI_PROXY_BASE_URL", &proxy.base_url()),
            ("OPENAI_PROXY_KEY", HIDDEN),
            ("OPENAI_PROXY_TEST_UPSTREAM", &upstream.base_url()),
        ],
    )
    .await;
    let stdout = run_sdk_script(
        "sdk_python_policy.py",
        &[
            ("OPENAI_PROXY_BASE_URL", &proxy.base_url()),
            ("RESTRICTED_KEY", CAROL),
            ("EXPIRED_KEY", DAVE),
        ],
    )
    .await;
    assert!(stdout.contains("ok - expired key is 401"), "{stdout}");

    let carol_calls = upstream
        .received()
        .iter()
        .filter(|seen| {
            seen.headers
                .get("authorization")
                .is_some_and(|v| v == "Bearer sk-carol-real")
        })
        .count();
    assert_eq!(
        carol_calls, 1,
        "only the allowed model reached the upstream"
    );
    assert!(upstream.received().iter().all(|seen| {
        seen.headers
            .get("authorization")
            .is_none_or(|v| v != "Bearer sk-dave-real")
    }));

    let log = proxy.stop();
    // The refusal is in the request line, under the tenant's name.
    assert!(
        log.lines()
            .any(|line| line.contains("openai_proxy::request")
                && line.contains("tenant=carol")
                && line.contains("status=403")),
        "{log}"
    );
    assert_no_key_in(
        &log,
        &[
            HIDDEN,
            REAL_KEY,
            CAROL,
            "sk-carol-real",
            DAVE,
            "sk-dave-real",
            &hash_key(HIDDEN),
        ],
    );
}

/// The stream of the bug report's shape: CRLF line ends, comments, multi-byte text, an in-band
/// error event, `[DONE]`; as an upstream that ignores `stream_options` sends it (nothing to undo)
/// or one that honours it. Returns the upstream's bytes in pieces that cut every event in three,
/// and what the client must receive.
fn pieces_of_a_chat_stream(with_flag: bool) -> (Vec<Bytes>, String) {
    let null = if with_flag { ",\"usage\":null" } else { "" };
    let mut upstream = String::from(": OPENROUTER PROCESSING\r\n\r\n");
    let mut client = upstream.clone();
    for (n, text) in ["Hé", "llo ", "wörld", "! ✓"].into_iter().enumerate() {
        let chunk = |usage: &str| {
            format!(
                "data: {{\"id\":\"c{n}\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}]{usage}}}\r\n\r\n"
            )
        };
        upstream.push_str(&chunk(null));
        client.push_str(&chunk(""));
    }
    let error = "data: {\"error\":{\"message\":\"slow down\",\"type\":\"server_error\"}}\r\n\r\n";
    upstream.push_str(error);
    client.push_str(error);
    if with_flag {
        upstream.push_str("data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\r\n\r\n");
    }
    upstream.push_str("data: [DONE]\r\n\r\n");
    client.push_str("data: [DONE]\r\n\r\n");
    // Two cuts in every event, at offsets that grow by two from one event to the next, so the
    // bytes held back from one read are as many as those held from the read before (the bug's
    // shape); and one cut inside "é".
    let mut cuts = Vec::new();
    let mut start = 0;
    for (n, event) in upstream.split_inclusive("\r\n\r\n").enumerate() {
        for offset in [3 + 2 * n, 5 + 2 * n] {
            if offset < event.len() {
                cuts.push(start + offset);
            }
        }
        start += event.len();
    }
    cuts.push(upstream.find('é').unwrap() + 1);
    cuts.sort_unstable();
    cuts.push(upstream.len());
    let bytes = Bytes::from(upstream);
    let mut from = 0;
    let pieces = cuts
        .into_iter()
        .map(|to| {
            let piece = bytes.slice(from..to);
            from = to;
            piece
        })
        .collect();
    (pieces, client)
}

/// A chat stream whose request has no `stream_options`, so the proxy asks for usage and undoes
/// it (the default), reaches the client byte for byte though the upstream writes every event in
/// pieces (HTTP chunks, which the proxy reads one by one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_stream_written_in_pieces_reaches_the_client_byte_for_byte() {
    for with_flag in [false, true] {
        let (pieces, client) = pieces_of_a_chat_stream(with_flag);
        let events = client.matches("\r\n\r\n").count();
        assert!(pieces.len() > 2 * events, "{} pieces", pieces.len());
        let upstream = FakeUpstream::start(move |_| {
            let stream = futures_util::stream::iter(
                pieces
                    .clone()
                    .into_iter()
                    .map(Ok::<_, std::convert::Infallible>),
            );
            axum::response::Response::builder()
                .header("content-type", "text/event-stream")
                .body(axum::body::Body::from_stream(stream))
                .unwrap()
        })
        .await;
        let keys = TempFile::with_contents("keys.json", &key_map_json());
        let proxy = BinaryProxy::start(&[
            ("KEY_MAP_FILE", keys.path_str()),
            ("UPSTREAM_BASE_URL", &upstream.base_url()),
        ]);
        let response = http_client()
            .post(format!("{}/chat/completions", proxy.base_url()))
            .bearer_auth(WRAPPER_KEY)
            .header("content-type", "application/json")
            .body(r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#)
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.bytes().await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&body),
            client,
            "with_flag {with_flag}"
        );
        // The proxy did ask for usage: that is what it undid.
        let sent = &upstream.received()[1].body;
        assert!(
            String::from_utf8_lossy(sent).contains("include_usage"),
            "{sent:?}"
        );
        let log = proxy.stop();
        let tokens = if with_flag {
            "total_tokens=7"
        } else {
            "outcome=\"error_event\""
        };
        assert!(log.contains(tokens), "{log}");
    }
}
