//! What can be checked of the deployment offline: the SAM template (cfn-lint, the SAM transform
//! and the properties that matter, dashboard and alarms included, in
//! tests/e2e/template_check.py), `sam build` itself, and the cargo lambda deploy settings in
//! Cargo.toml. What the dashboard and alarms refer to is checked in `dashboard`.

use std::ffi::OsString;

use crate::support::moto::{ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY};
use crate::support::{manifest_dir, python};

/// `PATH` with the test virtualenv's bin first (sam, aws, cargo-lambda, zig).
fn path_with_venv() -> OsString {
    let venv_bin = python().parent().unwrap().to_owned();
    std::env::join_paths(std::iter::once(venv_bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap()
}

#[test]
fn template_passes_cfn_lint_and_has_what_matters() {
    let output = std::process::Command::new(python())
        .arg("tests/e2e/template_check.py")
        .current_dir(manifest_dir())
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "template check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok - function URL streams"), "{stdout}");
    for check in [
        "ok - GetSecretValue on the key map secret only",
        "ok - Lambda's START and REPORT lines kept",
        "ok - the log group has a retention",
        "ok - the key map survives sam delete and replacement",
        "ok - a partial secret ARN is refused",
        "ok - samconfig.toml sets the architecture for build and deploy alike",
        "ok - dynamodb:UpdateItem on the limits table only",
        "ok - no DynamoDB action but UpdateItem",
        "ok - expired windows delete themselves (TTL on expires_at)",
        "ok - with ExistingLimitsTableName the limits table is not created",
        "ok - the dashboard is created by default",
        "ok - CreateDashboard=false creates no dashboard",
        "ok - outputs the dashboard's URL when there is a dashboard",
        "ok - no alarm by default (no e-mail address, no topic)",
        "ok - with AlarmEmail the alarms tell the stack's topic, which e-mails it",
        "ok - with AlarmTopicArn the alarms tell that topic, and no topic is created",
        "ok - the key map alarm: KeyMapLoadFailures >= 1, no dimensions, in MetricsNamespace",
    ] {
        assert!(stdout.contains(check), "{check} missing from:\n{stdout}");
    }
}

/// `sam build` for x86_64 (arm64 needs a standard library this machine lacks) yields an x86-64
/// `bootstrap`, and SAM's builder would pass `--arm64` for arm64 (tests/e2e/sam_build_check.py).
/// A full release build the first time: minutes.
#[test]
fn sam_build_builds_the_architecture_it_is_given() {
    let output = std::process::Command::new(python())
        .arg("tests/e2e/sam_build_check.py")
        .current_dir(manifest_dir())
        .env("PATH", path_with_venv())
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sam build check failed:\n{stdout}\n{stderr}"
    );
    for check in [
        "ok - an arm64 build passes --arm64 to cargo lambda",
        "ok - bootstrap is built for x86-64",
    ] {
        assert!(stdout.contains(check), "{check} missing from:\n{stdout}");
    }
}

/// The README's secret and role commands (cargo lambda step 1, the SAM section's full-ARN command,
/// the teardown), taken from the README and run with the AWS CLI against moto
/// (tests/e2e/readme_deploy_steps.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_secret_steps_work_against_moto() {
    let moto = Moto::start().await;
    let output = tokio::process::Command::new(python())
        .arg("tests/e2e/readme_deploy_steps.py")
        .current_dir(manifest_dir())
        .env("PATH", path_with_venv())
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "README deploy steps failed:\n{stdout}\n{stderr}"
    );
    for check in [
        "ok - the template accepts the printed ARN",
        "ok - the template refuses it without its suffix",
        "ok - the secret is scheduled for deletion, still restorable",
    ] {
        assert!(stdout.contains(check), "{check} missing from:\n{stdout}");
    }
}

#[test]
fn cargo_lambda_deploy_settings_fit_a_streaming_proxy() {
    // What `cargo lambda deploy` reads: the package metadata as cargo itself reports it.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(manifest_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let deploy = &metadata["packages"][0]["metadata"]["lambda"]["deploy"];
    assert_eq!(deploy["runtime"], "provided.al2023");
    assert!(
        deploy["timeout"].as_u64().is_some_and(|t| t >= 840),
        "{deploy}"
    );
    let env = &deploy["env"];
    for name in ["KEY_MAP_SECRET_ID", "UPSTREAM_BASE_URL"] {
        assert!(env[name].is_string(), "{name} missing from {env}");
    }
    // Keys belong in the secret, never in the function's configuration.
    assert!(!deploy.to_string().contains("sk-"), "{deploy}");
}

/// The README's key-management commands (`openai-proxy keys …`, then the roll-back to
/// AWSPREVIOUS with the AWS CLI), taken from the README and run against moto
/// (tests/e2e/readme_keys_steps.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_key_commands_work_against_moto() {
    let moto = Moto::start().await;
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_openai-proxy"));
    let path = std::env::join_paths(
        std::iter::once(binary.parent().unwrap().to_owned())
            .chain(std::env::split_paths(&path_with_venv())),
    )
    .unwrap();
    let output = tokio::process::Command::new(python())
        .arg("tests/e2e/readme_keys_steps.py")
        .current_dir(manifest_dir())
        .env("PATH", path)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_REGION", REGION)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("KEY_MAP_FILE")
        .env_remove("KEY_MAP_SECRET_ID")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(300), output)
        .await
        .expect("the README key commands did not finish in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "README key commands failed:\n{stdout}\n{stderr}"
    );
    for check in [
        "ok - create printed one wrapper key",
        "ok - set-real-key set the new real key",
        "ok - the roll-back made the version before it current again",
    ] {
        assert!(stdout.contains(check), "{check} missing from:\n{stdout}");
    }
}
