//! The built binary as a child process: started with a chosen environment, its stderr collected,
//! killed when its guard drops.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
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

/// The built `openai-proxy` binary, its stderr (the log) and stdout (EMF records) collected. It
/// logs at `trace` unless a test says otherwise, and when it stops, everything it wrote is
/// checked for every key the tests use: the log-capture check runs under every end-to-end test
/// that starts the binary.
pub struct BinaryProxy {
    /// Where it listens, in local mode.
    pub addr: SocketAddr,
    pub child: ChildGuard,
    lines: mpsc::Receiver<Line>,
    log: Vec<String>,
    stdout: Vec<String>,
}

enum Line {
    Err(String),
    Out(String),
}

/// Sends each line `from` writes, wrapped by `wrap`, until the pipe closes.
fn forward_lines(
    from: impl std::io::Read + Send + 'static,
    to: mpsc::Sender<Line>,
    wrap: fn(String) -> Line,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if to.send(wrap(line)).is_err() {
                break;
            }
        }
    });
}

impl BinaryProxy {
    /// Starts the binary in local mode and waits (bounded) for the line naming the bound address.
    pub fn start(envs: &[(&str, &str)]) -> Self {
        Self::start_until(envs, "listening on http://")
    }

    /// Starts the binary and waits (bounded) for a log line containing `marker`.
    pub fn start_until(envs: &[(&str, &str)], marker: &str) -> Self {
        Self::start_program_until(Path::new(env!("CARGO_BIN_EXE_openai-proxy")), envs, marker)
    }

    /// `start_until` for another program built from this package (an example).
    pub fn start_program_until(program: &Path, envs: &[(&str, &str)], marker: &str) -> Self {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "trace")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(command.spawn().unwrap());
        let (tx, rx) = mpsc::channel();
        forward_lines(child.0.stderr.take().unwrap(), tx.clone(), Line::Err);
        forward_lines(child.0.stdout.take().unwrap(), tx, Line::Out);
        let mut seen = Vec::new();
        let mut stdout = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(Line::Out(line)) => stdout.push(line),
                Ok(Line::Err(line)) if line.contains(marker) => {
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
                        lines: rx,
                        log: seen,
                        stdout,
                    };
                }
                Ok(Line::Err(line)) => seen.push(line),
                Err(_) => panic!(
                    "{} never logged {marker:?}; stderr:\n{}",
                    program.display(),
                    seen.join("\n")
                ),
            }
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Waits (bounded) for a log line that `matches`: for what the process logs after the event
    /// a test saw, such as a failure logged once the connection it failed on is gone.
    pub fn wait_for_line(&mut self, matches: impl Fn(&str) -> bool) {
        if self.log.iter().any(|line| matches(line)) {
            return;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(Line::Out(line)) => self.stdout.push(line),
                Ok(Line::Err(line)) => {
                    let found = matches(&line);
                    self.log.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!("no such log line; stderr:\n{}", self.log.join("\n")),
            }
        }
    }

    /// Kills the process and returns everything it wrote to stderr.
    pub fn stop(self) -> String {
        self.stop_with_stdout().0
    }

    /// Kills the process and returns its stderr and its stdout.
    pub fn stop_with_stdout(mut self) -> (String, String) {
        self.drain();
        (self.log.join("\n"), self.stdout.join("\n"))
    }

    fn drain(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        // The pipes are closed now, so the reader threads end and the channel disconnects.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            match line {
                Line::Err(line) => self.log.push(line),
                Line::Out(line) => self.stdout.push(line),
            }
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
            for line in self.log.iter().chain(&self.stdout) {
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
