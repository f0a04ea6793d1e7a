//! The SDK clients the end-to-end tests drive: the pinned Python and Node SDKs, run as scripts
//! from tests/e2e, each bounded in time.

use std::path::PathBuf;
use std::time::Duration;

use super::{manifest_dir, openai};

/// Runs one of the Python SDK scripts in tests/e2e; returns its stdout.
pub async fn run_sdk_script(script: &str, envs: &[(&str, &str)]) -> String {
    run_client(
        python(),
        manifest_dir().join("tests/e2e").join(script),
        envs,
    )
    .await
}

/// Runs the Node SDK script sdk_node.mjs; returns its stdout.
pub async fn run_node_sdk(envs: &[(&str, &str)]) -> String {
    run_node_sdk_script("sdk_node.mjs", envs).await
}

/// Runs one of the Node SDK scripts in tests/e2e/node; returns its stdout.
pub async fn run_node_sdk_script(script: &str, envs: &[(&str, &str)]) -> String {
    run_client(PathBuf::from("node"), node_sdk_script(script), envs).await
}

/// Runs an SDK client script (bounded), with the fake upstream's expected reply in its
/// environment and no ambient OpenAI settings; fails the test with its output if it fails.
async fn run_client(program: PathBuf, script: PathBuf, envs: &[(&str, &str)]) -> String {
    let mut client = tokio::process::Command::new(&program);
    client
        .arg(&script)
        .envs(envs.iter().copied())
        .env("EXPECTED_REPLY", openai::REPLY)
        .env(
            "HELD_MODEL_PREFIX",
            format!("gpt-4o-mini{}", openai::HELD_INFIX),
        )
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), client.output())
        .await
        .expect("the SDK script did not finish in time")
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed:\n{stdout}\n{stderr}",
        script.display()
    );
    stdout
}

/// A Node SDK script and its pinned `node_modules`; fails loudly when they are missing.
fn node_sdk_script(script: &str) -> PathBuf {
    let dir = manifest_dir().join("tests/e2e/node");
    assert!(
        dir.join("node_modules/openai").exists(),
        "the OpenAI Node SDK is not installed: run `make test` (it runs `npm ci` in tests/e2e/node)"
    );
    dir.join(script)
}

/// The Python interpreter with the pinned test requirements; fails loudly when it is missing.
pub fn python() -> PathBuf {
    let python = std::env::var_os("OPENAI_PROXY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} not found: run `make test` (it installs tests/e2e/requirements.txt into .venv), \
         or `make test-deps` first",
        python.display()
    );
    python
}
