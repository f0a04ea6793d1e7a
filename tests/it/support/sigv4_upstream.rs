//! An upstream that demands AWS SigV4, as Amazon Bedrock's OpenAI-compatible endpoint does:
//! tests/e2e/fake_sigv4_upstream.py, run with the test Python. It verifies every signature with
//! botocore, so the proxy's signer is judged by code it shares nothing with; it answers verified
//! requests like OpenAI, refuses the rest with a 403 (`signature_mismatch`, the message naming the
//! failed check) and records everything it received, verdict included.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use super::{ChildGuard, manifest_dir, python};

/// The credentials the fake accepts (fake values in AWS's documented example format).
pub const TEST_ACCESS_KEY_ID: &str = "AKIDEXAMPLEOPENAIPROXY";
pub const TEST_SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// The session token [`SigV4Upstream::start_with_session_token`] requires.
pub const TEST_SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE//openai-proxy+session=";
/// The assistant's reply in every chat completion (streamed one word per event).
pub const REPLY: &str = "Hello from the fake upstream";

/// One request as the fake received it, with its verdict.
#[derive(Debug, Clone)]
pub struct SigV4Received {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Lower-case names; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub verified: bool,
    /// The check that failed, when not verified.
    pub failure: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body_b64: String,
    verified: bool,
    failure: Option<String>,
}

pub struct SigV4Upstream {
    /// The base URL to configure, `http://127.0.0.1:PORT/openai/v1`.
    pub base_url: String,
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    pub region: String,
    pub service: String,
    pub session_token: Option<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    _process: ChildGuard,
}

impl SigV4Upstream {
    /// Starts the fake for long-term credentials (no session token) and waits (bounded) until it
    /// listens.
    pub async fn start(region: &str, service: &str) -> Self {
        Self::start_with(region, service, None).await
    }

    /// Starts the fake for temporary credentials: requests must carry (and sign)
    /// `x-amz-security-token: TEST_SESSION_TOKEN`.
    pub async fn start_with_session_token(region: &str, service: &str) -> Self {
        Self::start_with(region, service, Some(TEST_SESSION_TOKEN)).await
    }

    pub async fn start_with(region: &str, service: &str, session_token: Option<&str>) -> Self {
        let script = manifest_dir().join("tests/e2e/fake_sigv4_upstream.py");
        let mut command = Command::new(python());
        command
            .arg(&script)
            .env_clear()
            .env("SIGV4_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID)
            .env("SIGV4_SECRET_ACCESS_KEY", TEST_SECRET_ACCESS_KEY)
            .env("SIGV4_REGION", region)
            .env("SIGV4_SERVICE", service)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(token) = session_token {
            command.env("SIGV4_SESSION_TOKEN", token);
        }
        let mut process = ChildGuard(command.spawn().unwrap());
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let collected = stderr.clone();
        let errors = process.0.stderr.take().unwrap();
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(errors).lines().map_while(Result::ok) {
                collected.lock().unwrap().push(line);
            }
        });
        let (ready, listening) = tokio::sync::oneshot::channel();
        let output = process.0.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(output).lines().map_while(Result::ok);
            if let Some(first) = lines.next() {
                let _ = ready.send(first);
            }
            lines.for_each(drop);
        });
        let line = match tokio::time::timeout(Duration::from_secs(30), listening).await {
            Ok(Ok(line)) => line,
            _ => {
                drop(process);
                let _ = stderr_reader.join();
                panic!(
                    "{} never printed its listening line; stderr:\n{}",
                    script.display(),
                    stderr.lock().unwrap().join("\n")
                );
            }
        };
        let origin = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the fake: {line:?}"))
            .trim()
            .to_owned();
        Self {
            base_url: format!("{origin}/openai/v1"),
            origin,
            region: region.to_owned(),
            service: service.to_owned(),
            session_token: session_token.map(str::to_owned),
            stderr,
            _process: process,
        }
    }

    /// Every request the fake has received so far, in arrival order.
    pub async fn received(&self) -> Vec<SigV4Received> {
        let response = super::http_client()
            .get(format!("{}/_test/received", self.origin))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET /_test/received");
        let records: Vec<Record> =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        records
            .into_iter()
            .map(|record| SigV4Received {
                method: record.method,
                path: record.path,
                headers: record.headers,
                body: base64::engine::general_purpose::STANDARD
                    .decode(record.body_b64)
                    .unwrap(),
                verified: record.verified,
                failure: record.failure,
            })
            .collect()
    }

    /// What the fake wrote to stderr so far: one line per refused request, naming the failed
    /// check (a signature mismatch is followed by botocore's canonical request).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}
