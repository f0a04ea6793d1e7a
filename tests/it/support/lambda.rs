//! The Lambda path under `cargo lambda watch`: its runtime API and function-URL emulator on a free
//! port, and the built `openai-proxy` binary polling it as the Lambda runtime would.
//!
//! The emulator runs with `--only-lambda-apis`, so it does not build the function itself (a nested
//! `cargo build` would wait on the lock `cargo test` holds); the tests start the binary that
//! `cargo test` built, pointed at the emulator exactly as `cargo lambda watch` would point it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{BinaryProxy, ChildGuard, manifest_dir, python, upstream::closed_port};

pub const FUNCTION: &str = "openai-proxy";

pub struct LambdaEmulator {
    pub port: u16,
    _process: ChildGuard,
}

impl LambdaEmulator {
    pub async fn start() -> Self {
        let cargo_lambda = python().with_file_name("cargo-lambda");
        assert!(
            cargo_lambda.exists(),
            "{} not found: run `make test` (it installs cargo-lambda into .venv)",
            cargo_lambda.display()
        );
        let port = closed_port().port();
        let child = Command::new(cargo_lambda)
            .args(["lambda", "watch", "--only-lambda-apis", "--ignore-changes"])
            .args([
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .current_dir(manifest_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let emulator = Self {
            port,
            _process: ChildGuard(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        emulator
    }

    /// The `base_url` an SDK uses for the emulated function URL.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/lambda-url/{FUNCTION}/v1", self.port)
    }

    /// The environment the Lambda service gives a function, pointed at this emulator.
    pub fn function_env(&self) -> Vec<(String, String)> {
        [
            (
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt/{FUNCTION}", self.port),
            ),
            ("AWS_LAMBDA_FUNCTION_NAME", FUNCTION.to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// Starts the built binary as the function; returns once its key map is loaded.
    pub fn start_function(&self, envs: &[(&str, &str)]) -> BinaryProxy {
        let function_env = self.function_env();
        let mut all: Vec<(&str, &str)> = function_env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        all.extend_from_slice(envs);
        BinaryProxy::start_until(&all, "key map loaded")
    }
}
