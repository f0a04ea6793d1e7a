//! The SigV4 fake upstream (tests/e2e/fake_sigv4_upstream.py) checked on its own, with no proxy:
//! botocore's signer gets correctly signed requests answered and every kind of wrong one refused,
//! so when the proxy's signed requests are refused, the proxy is at fault, and when they are
//! answered, the signature really was checked.

use std::time::Duration;

use crate::support::sigv4_upstream::{
    REPLY, SigV4Upstream, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, TEST_SESSION_TOKEN,
};
use crate::support::{http_client, manifest_dir, python};

/// Every check tests/e2e/sigv4_verifier_selftest.py makes.
const SELFTEST_CHECKS: [&str; 22] = [
    "a correctly signed chat completion is answered",
    "a correctly signed streaming chat is answered as SSE",
    "correctly signed base64 embeddings are answered",
    "a correctly signed GET of the models is answered",
    "a body changed after signing is refused",
    "a body changed after signing, its hash header updated, is refused",
    "a request signed for another region is refused",
    "a request signed for another service is refused",
    "a request signed with a wrong secret key is refused",
    "a request sent to another path than it was signed for is refused",
    "a signed header changed after signing is refused",
    "an hour-old signature is refused",
    "an unsigned x-amz-content-sha256 is refused",
    "a request without a signature is refused",
    "a Bearer key is refused",
    "a signed request that also carries api-key is refused",
    "a session token sent for credentials without one is refused",
    "a request signed with the session token is answered",
    "a request without the session token is refused",
    "a request with another session token is refused",
    "a session token added after signing is refused",
    "the fake records every request with its verdict",
];

/// Runs a Python program (bounded) with exactly this environment; returns (success, stdout,
/// stderr).
async fn run_python(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = tokio::process::Command::new(python());
    command
        .args(args)
        .env_clear()
        .envs(envs.iter().copied())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the Python program did not finish in time")
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sigv4_verifier_answers_good_signatures_and_refuses_bad_ones() {
    let script = manifest_dir().join("tests/e2e/sigv4_verifier_selftest.py");
    let (ok, stdout, stderr) = run_python(&[script.to_str().unwrap()], &[]).await;
    eprintln!("{stdout}");
    assert!(ok, "the self-test failed:\n{stdout}\n{stderr}");
    assert!(!stdout.contains("not ok"), "{stdout}");
    for check in SELFTEST_CHECKS {
        assert!(
            stdout.contains(&format!("ok - {check}\n")),
            "{check}:\n{stdout}"
        );
    }
}

/// Signs one chat completion with botocore and sends it; prints the status and the body.
const BOTOCORE_CLIENT: &str = r#"
import hashlib, json, os, urllib.error, urllib.request
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
env = os.environ
url = env["BASE_URL"] + "/chat/completions"
body = json.dumps({"model": "openai.gpt-oss-20b-1:0", "messages": []}).encode()
request = AWSRequest(method="POST", url=url, data=body, headers={
    "content-type": "application/json", "x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
credentials = Credentials(env["KEY"], env["SECRET"], env.get("TOKEN"))
SigV4Auth(credentials, env["SERVICE"], env["REGION"]).add_auth(request)
sent = urllib.request.Request(url, data=body, headers=dict(request.headers.items()), method="POST")
try:
    with urllib.request.urlopen(sent, timeout=10) as answer:
        print(answer.status, answer.read().decode())
except urllib.error.HTTPError as refused:
    print(refused.code, refused.read().decode())
"#;

async fn botocore_chat(upstream: &SigV4Upstream, token: Option<&str>) -> String {
    let mut envs = vec![
        ("BASE_URL", upstream.base_url.as_str()),
        ("KEY", TEST_ACCESS_KEY_ID),
        ("SECRET", TEST_SECRET_ACCESS_KEY),
        ("REGION", upstream.region.as_str()),
        ("SERVICE", upstream.service.as_str()),
    ];
    if let Some(token) = token {
        envs.push(("TOKEN", token));
    }
    let (ok, stdout, stderr) = run_python(&["-c", BOTOCORE_CLIENT], &envs).await;
    assert!(ok, "the botocore client failed:\n{stdout}\n{stderr}");
    stdout
}

/// The Rust wrapper starts the fake with the credentials its constants name, for the region and
/// service asked, and reports what the fake received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrapper_configures_the_fake_with_its_test_credentials() {
    let upstream = SigV4Upstream::start("us-west-2", "bedrock").await;
    assert!(
        upstream.base_url.ends_with("/openai/v1"),
        "{}",
        upstream.base_url
    );

    let answer = botocore_chat(&upstream, None).await;
    assert!(
        answer.starts_with("200 "),
        "{answer}\n{}",
        upstream.stderr()
    );
    assert!(answer.contains(REPLY), "{answer}");
    assert!(answer.contains("openai.gpt-oss-20b-1:0"), "{answer}");

    let refused = http_client()
        .post(format!("{}/chat/completions", upstream.base_url))
        .bearer_auth("sk-not-a-signature")
        .body("{}")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let error: serde_json::Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "signature_mismatch", "{error}");
    assert_eq!(
        error["error"]["message"],
        "fake sigv4 upstream: a Bearer authorization was sent"
    );

    let received = upstream.received().await;
    assert_eq!(received.len(), 2, "{received:#?}");
    assert!(received[0].verified, "{received:#?}");
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].path, "/openai/v1/chat/completions");
    assert!(
        received[0].headers["authorization"].starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential={TEST_ACCESS_KEY_ID}/"
        )),
        "{received:#?}"
    );
    assert!(String::from_utf8_lossy(&received[0].body).contains("openai.gpt-oss-20b-1:0"));
    assert!(!received[1].verified);
    assert_eq!(
        received[1].failure.as_deref(),
        Some("a Bearer authorization was sent")
    );
    assert!(
        upstream
            .stderr()
            .contains("a Bearer authorization was sent"),
        "{}",
        upstream.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrapper_can_require_a_session_token() {
    let upstream = SigV4Upstream::start_with_session_token("eu-central-1", "bedrock").await;
    assert_eq!(upstream.session_token.as_deref(), Some(TEST_SESSION_TOKEN));
    let answer = botocore_chat(&upstream, Some(TEST_SESSION_TOKEN)).await;
    assert!(
        answer.starts_with("200 "),
        "{answer}\n{}",
        upstream.stderr()
    );
    let answer = botocore_chat(&upstream, None).await;
    assert!(answer.starts_with("403 "), "{answer}");
    assert!(
        answer.contains("x-amz-security-token is not signed"),
        "{answer}"
    );
}
