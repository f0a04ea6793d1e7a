//! The whole-API fake upstream checked against the official SDKs directly, with no proxy between
//! them: the SDK scripts point both their base URL and their release URL at the fake. This shows
//! the fake and the scripts agree, so when the same scripts fail through the proxy, the proxy is
//! at fault. Every request the fake saw is printed to stderr (`--nocapture`): the shapes the SDKs
//! send.

use crate::support::upstream::{FakeUpstream, Received};
use crate::support::{WRAPPER_KEY, openai, run_node_sdk_script, run_sdk_script};

fn describe(seen: &Received) -> String {
    let header = |name: &str| {
        seen.headers
            .get(name)
            .map(|value| value.to_str().unwrap_or("?").to_owned())
            .unwrap_or_else(|| "-".to_owned())
    };
    format!(
        "{} {} | content-type: {} | content-length: {} | transfer-encoding: {} | accept: {} \
         | accept-encoding: {} | body: {} bytes",
        seen.method,
        seen.path_and_query,
        header("content-type"),
        header("content-length"),
        header("transfer-encoding"),
        header("accept"),
        header("accept-encoding"),
        seen.body.len()
    )
}

async fn run(script: &str, node: bool, expected: &[&str]) {
    let upstream = FakeUpstream::start(openai::respond).await;
    let base = upstream.base_url();
    let env = [
        ("OPENAI_PROXY_BASE_URL", base.as_str()),
        ("OPENAI_PROXY_KEY", WRAPPER_KEY),
        ("OPENAI_PROXY_TEST_UPSTREAM", base.as_str()),
    ];
    let stdout = if node {
        run_node_sdk_script(script, &env).await
    } else {
        run_sdk_script(script, &env).await
    };
    eprintln!("{script}:\n{stdout}");
    for seen in upstream.received() {
        eprintln!("  {}", describe(&seen));
    }
    for line in expected {
        assert!(
            stdout.contains(&format!("ok - {line}\n")),
            "{line}: {stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_api_script_passes_against_the_fake_alone() {
    run(
        "sdk_python_api.py",
        false,
        &[
            "audio.speech streams its first bytes before the rest is sent",
            "audio.speech bytes identical",
            "audio.transcriptions.create",
            "files.content bytes identical",
            "responses.retrieve(stream=True, starting_after=3) starts at 4",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_api_script_passes_against_the_fake_alone() {
    run(
        "sdk_node_api.mjs",
        true,
        &[
            "audio.speech streams its first bytes before the rest is sent",
            "audio.speech bytes identical",
            "files.content bytes identical",
        ],
    )
    .await;
}

/// The fake's own checks fire: a request the proxy had mangled is refused with a message that
/// names what is wrong, not answered as if it were fine.
#[tokio::test]
async fn the_fake_refuses_mangled_requests_naming_the_check() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let url = |path: &str| format!("{}{path}", upstream.base_url());
    let clip: Vec<u8> = (0..=255).collect();
    let form = |boundary: &str, end: &str| {
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n\
             Content-Type: audio/mpeg\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&clip);
        body.extend_from_slice(format!("\r\n--{boundary}--{end}").as_bytes());
        body
    };
    let client = crate::support::http_client();
    let cases: [(reqwest::RequestBuilder, &str); 6] = [
        (
            client
                .post(url("/audio/transcriptions"))
                .header("content-type", "multipart/form-data; boundary=b0")
                .body(form("b0", "\r\n")),
            "",
        ),
        (
            client
                .post(url("/audio/transcriptions"))
                .header("content-type", "multipart/form-data")
                .body(form("b0", "\r\n")),
            "carries no boundary",
        ),
        (
            client
                .post(url("/audio/transcriptions"))
                .header("content-type", "multipart/form-data; boundary=b1")
                .body(form("b0", "\r\n")),
            "first line is not --<boundary>",
        ),
        (
            client
                .post(url("/audio/transcriptions"))
                .header("content-type", "multipart/form-data; boundary=b0")
                .body(form("b0", "")),
            "does not end with --<boundary>--",
        ),
        (
            client.get(url("/responses/resp_1/input_items")).body("{}"),
            "a GET arrived with a 2-byte body",
        ),
        (
            client.get(url("/responses/resp_1?stream=true&starting_after=x")),
            "starting_after is not a number",
        ),
    ];
    for (request, failed) in cases {
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        if failed.is_empty() {
            assert_eq!(status, 200, "{body}");
            continue;
        }
        assert_eq!(status, 400, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("fake upstream: "), "{message}");
        assert!(message.contains(failed), "{failed}: {message}");
    }
}
