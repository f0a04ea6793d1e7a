//! The built binary as a child process: started with a chosen environment, its stderr collected,
//! killed when its guard drops.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::upstream;

/// A child process that is killed when the guard drops, so a failing test leaves nothing behind.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The built `openai-proxy` binary, its stderr collected. It logs at `trace` unless a test says
/// otherwise, and when it stops, its whole log is checked for every key the tests use: the
/// log-capture check runs under every end-to-end test that starts the binary.
pub struct BinaryProxy {
    /// Where it listens, in local mode.
    pub addr: SocketAddr,
    pub child: ChildGuard,
    stderr: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl BinaryProxy {
    /// Starts the binary in local mode and waits (bounded) for the line naming the bound address.
    pub fn start(envs: &[(&str, &str)]) -> Self {
        Self::start_until(envs, "listening on http://")
    }

    /// Starts the binary and waits (bounded) for a log line containing `marker`.
    pub fn start_until(envs: &[(&str, &str)], marker: &str) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_openai-proxy"));
        command
            .env_clear()
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "trace")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(command.spawn().unwrap());
        let stderr = child.0.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(marker) => {
                    seen.push(line.clone());
                    let addr = line
                        .split("listening on http://")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                        .map(|addr| addr.parse().unwrap())
                        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                    return Self {
                        addr,
                        child,
                        stderr: rx,
                        log: seen,
                    };
                }
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "openai-proxy never logged {marker:?}; stderr:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Kills the process and returns everything it wrote to stderr.
    pub fn stop(mut self) -> String {
        self.drain();
        self.log.join("\n")
    }

    fn drain(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        // The pipe is closed now, so the reader thread ends and the channel disconnects.
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            self.log.push(line);
        }
    }
}

impl Drop for BinaryProxy {
    fn drop(&mut self) {
        self.drain();
        if std::thread::panicking() {
            return;
        }
        for key in super::ALL_TEST_KEYS {
            for line in &self.log {
                assert!(
                    !line.contains(key),
                    "a key appears in the proxy's log: {line}"
                );
            }
        }
    }
}

/// Runs the binary to completion with this environment; returns (exit success, stderr).
/// The upstream is a closed loopback port unless `envs` says otherwise: start-up opens a
/// connection to it, and tests talk to nothing beyond this machine.
pub fn run_binary_to_exit(envs: &[(&str, &str)]) -> (bool, String) {
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_openai-proxy"))
            .env_clear()
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env(
                "UPSTREAM_BASE_URL",
                format!("http://{}/v1", upstream::closed_port()),
            )
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "openai-proxy did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.success(), stderr)
}
