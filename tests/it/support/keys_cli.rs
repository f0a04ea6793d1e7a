//! `openai-proxy keys …` as an operator runs it: the built binary with only the variables that
//! name its key map, real keys on stdin, every run bounded and recorded so a test can check at
//! the end that no key, real or wrapper, was ever shown except the one a command exists to print;
//! and what the tests check the commands' work by: keys' digests, the proxy's answers, the
//! secret's versions.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_secretsmanager::Client;
use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::moto::{ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};

/// Bounds one run of the command (it makes a handful of calls on a local moto).
const RUN_AT_MOST: Duration = Duration::from_secs(60);
pub const PREFIX: &str = "sk-proxy-";

/// One finished run.
#[derive(Debug, Clone)]
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fails the test unless the command exited with `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "openai-proxy keys {:?} exited {}; stdout:\n{}\nstderr:\n{}",
            self.args, self.code, self.stdout, self.stderr
        );
        self
    }

    /// The key a successful create or rotate printed: alone on stdout, one line.
    pub fn printed_key(&self) -> String {
        self.expect_code(0);
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "stdout must be the key alone: {:?}",
            self.stdout
        );
        let key = lines[0].to_owned();
        assert_well_formed(&key);
        key
    }
}

/// `sk-proxy-` and 43 URL-safe base64 characters that decode to 256 bits.
pub fn assert_well_formed(key: &str) {
    let encoded = key
        .strip_prefix(PREFIX)
        .unwrap_or_else(|| panic!("the key lacks the {PREFIX} prefix"));
    assert_eq!(encoded.len(), 43, "43 base64 characters after the prefix");
    assert!(
        encoded
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'),
        "URL-safe base64 only"
    );
    let bits = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .expect("the key's characters are canonical unpadded base64url");
    assert_eq!(bits.len(), 32, "256 random bits");
}

/// The member name a key map stores for `key`, computed here, not by the proxy's code.
pub fn member_name(key: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(key.as_bytes())))
}

/// The key id logs and `keys list` show for `key`: `key:` and 8 hex digits of its digest.
pub fn key_id(key: &str) -> String {
    format!("key:{}", &hex(&Sha256::digest(key.as_bytes()))[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The command line over one key map, remembering every run and every key in play.
pub struct KeysCli {
    envs: Vec<(String, String)>,
    runs: Mutex<Vec<Run>>,
    secrets: Mutex<Vec<String>>,
}

impl KeysCli {
    /// Over the secret `secret_id` of the Secrets Manager at `endpoint` (moto or a relay).
    pub fn over_secret(endpoint: &str, secret_id: &str) -> Self {
        Self::with_envs(&[
            ("KEY_MAP_SECRET_ID", secret_id),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ])
    }

    pub fn over_file(path: &str) -> Self {
        Self::with_envs(&[("KEY_MAP_FILE", path)])
    }

    fn with_envs(envs: &[(&str, &str)]) -> Self {
        Self {
            envs: envs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            runs: Mutex::new(Vec::new()),
            secrets: Mutex::new(Vec::new()),
        }
    }

    /// A key (real, wrapper, or the source of a hashed name) that no output may show.
    pub fn secret(&self, key: &str) {
        self.secrets.lock().unwrap().push(key.to_owned());
    }

    /// Runs `openai-proxy keys ARGS` with `stdin` piped in (or none), bounded in time.
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_openai-proxy"));
        command
            .arg("keys")
            .args(args)
            .env_clear()
            .envs(self.envs.iter().map(|(name, value)| (name, value)))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            // A command refused before it reads stdin (a usage error) may have exited already.
            if let Err(err) = pipe.write_all(text.as_bytes()).await {
                assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
            }
            // Closed here: the command reads stdin to its end.
            drop(pipe);
        }
        let output = tokio::time::timeout(RUN_AT_MOST, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("openai-proxy keys {args:?} did not finish in time"))
            .unwrap();
        let run = Run {
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            code: output
                .status
                .code()
                .expect("the command exits, not killed by a signal"),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        };
        self.runs.lock().unwrap().push(run.clone());
        run
    }

    /// Runs a command that must succeed.
    pub async fn ok(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let run = self.run(args, stdin).await;
        run.expect_code(0);
        run
    }

    /// `keys create ARGS --real-key-stdin` with `real_key` on stdin; the printed key, which is
    /// remembered as a secret along with the real key.
    pub async fn create(&self, args: &[&str], real_key: &str) -> String {
        self.secret(real_key);
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        all.push("--real-key-stdin");
        let key = self
            .run(&all, Some(&format!("{real_key}\n")))
            .await
            .printed_key();
        self.secret(&key);
        key
    }

    /// `keys rotate ID [ARGS]`; the printed key, remembered as a secret.
    pub async fn rotate(&self, id: &str, args: &[&str]) -> String {
        let mut all = vec!["rotate", id];
        all.extend_from_slice(args);
        let key = self.run(&all, None).await.printed_key();
        self.secret(&key);
        key
    }

    /// `keys list --json`, parsed: one object per row.
    pub async fn list_json(&self) -> Vec<Value> {
        let run = self.ok(&["list", "--json"], None).await;
        match serde_json::from_str(&run.stdout).unwrap() {
            Value::Array(rows) => rows,
            other => panic!("keys list --json is not an array: {other}"),
        }
    }

    /// Every run so far, in the order they finished.
    pub fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }

    /// The run that finished last.
    pub fn last(&self) -> Run {
        self.runs().pop().expect("a command has run")
    }

    /// Every key this test has used or been given.
    pub fn secrets(&self) -> Vec<String> {
        self.secrets.lock().unwrap().clone()
    }

    /// Every run so far: each stderr line is a message with the command's prefix and names no
    /// key; stdout names no key either, except that a successful create or rotate prints its
    /// own new key, alone. Returns how many runs were checked.
    pub fn assert_no_key_shown(&self) -> usize {
        let secrets = self.secrets();
        let runs = self.runs.lock().unwrap().clone();
        for run in &runs {
            for line in run.stderr.lines() {
                assert!(
                    line.starts_with("openai-proxy keys: ") || run.code == 2,
                    "stderr of {:?} has a line without the prefix: {line}",
                    run.args
                );
            }
            let prints_a_key = run.code == 0 && matches!(run.args[0].as_str(), "create" | "rotate");
            let own = prints_a_key.then(|| run.stdout.trim_end().to_owned());
            for secret in &secrets {
                assert!(
                    !run.stderr.contains(secret.as_str()),
                    "stderr of {:?} shows a key: {}",
                    run.args,
                    run.stderr
                );
                if own.as_deref() != Some(secret.as_str()) {
                    assert!(
                        !run.stdout.contains(secret.as_str()),
                        "stdout of {:?} shows a key: {}",
                        run.args,
                        run.stdout
                    );
                }
            }
        }
        runs.len()
    }
}

/// A response's JSON body.
pub async fn json_body(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// Asserts that `text` (a log, a listing) contains none of `secrets`.
pub fn assert_none_in(text: &str, secrets: &[String], what: &str) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} shows a key: {text}"
        );
    }
}

/// A chat completion through the proxy at `base_url` with `key`.
pub async fn chat_status(base_url: &str, key: &str) -> reqwest::Response {
    super::http_client()
        .post(format!("{base_url}/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
}

/// Polls (every 100 ms, for at most `within`) until a chat completion with `key` gets `status`;
/// the response that did, and when.
pub async fn until_status(
    base_url: &str,
    key: &str,
    status: StatusCode,
    within: Duration,
) -> (reqwest::Response, SystemTime) {
    let deadline = Instant::now() + within;
    loop {
        let response = chat_status(base_url, key).await;
        if response.status() == status {
            return (response, SystemTime::now());
        }
        assert!(
            Instant::now() < deadline,
            "a request never got {status} within {within:?}; the last got {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The secret's `AWSCURRENT` version: its id and its document.
pub async fn current(client: &Client, secret_id: &str) -> (String, Value) {
    let read = client
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    (
        read.version_id().unwrap().to_owned(),
        serde_json::from_str(read.secret_string().unwrap()).unwrap(),
    )
}

/// Every version of the secret (labelled or not) and its labels.
pub async fn versions(client: &Client, secret_id: &str) -> HashMap<String, Vec<String>> {
    let listed = client
        .list_secret_version_ids()
        .secret_id(secret_id)
        .include_deprecated(true)
        .send()
        .await
        .unwrap();
    listed
        .versions()
        .iter()
        .map(|version| {
            (
                version.version_id().unwrap().to_owned(),
                version.version_stages().to_vec(),
            )
        })
        .collect()
}

/// The version holding `stage`.
pub fn labelled<'a>(versions: &'a HashMap<String, Vec<String>>, stage: &str) -> &'a str {
    let holding: Vec<&String> = versions
        .iter()
        .filter(|(_, stages)| stages.iter().any(|held| held == stage))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        holding.len(),
        1,
        "exactly one version holds {stage}: {versions:?}"
    );
    holding[0]
}
