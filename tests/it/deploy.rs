//! What can be checked of the deployment offline: the SAM template (cfn-lint, the SAM transform
//! and the properties that matter, in tests/e2e/template_check.py) and the cargo lambda deploy
//! settings in Cargo.toml.

use crate::support::{manifest_dir, python};

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
    assert!(
        stdout.contains("ok - GetSecretValue on the key map secret only"),
        "{stdout}"
    );
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
