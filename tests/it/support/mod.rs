//! Shared test fixtures: the fake upstream, the proxy in-process or as the built binary, and the
//! external tools the end-to-end tests drive. Every port is a free loopback port, every wait is
//! bounded, and every process started here is killed when its guard drops.

pub mod lambda;
pub mod moto;
pub mod openai;
pub mod upstream;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use openai_proxy::app::{AppState, router};
use openai_proxy::cache::KeyCache;
use openai_proxy::config::Config;
use openai_proxy::keymap::KeyMap;
use openai_proxy::secrets::{KeySource, SourceError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const WRAPPER_KEY: &str = "wrapper-key-alice";
pub const REAL_KEY: &str = "sk-alice-real-openai-key";
pub const OTHER_WRAPPER_KEY: &str = "wrapper-key-bob";
pub const OTHER_REAL_KEY: &str = "sk-bob-real-openai-key";

pub fn key_map_json() -> String {
    format!(r#"{{"{WRAPPER_KEY}": "{REAL_KEY}", "{OTHER_WRAPPER_KEY}": "{OTHER_REAL_KEY}"}}"#)
}

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The configuration the proxy would read from this environment (plus the key-file variable,
/// which in-process tests satisfy with a map they pass directly).
pub fn config(upstream_base_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("UPSTREAM_BASE_URL".to_owned(), upstream_base_url.to_owned()),
        ("KEY_MAP_FILE".to_owned(), "in-memory".to_owned()),
    ]);
    for (name, value) in extra {
        vars.insert((*name).to_owned(), (*value).to_owned());
    }
    Config::from_lookup(|name| vars.get(name).cloned()).unwrap()
}

/// A key source that always serves the same document, for tests that are not about sources.
pub struct FixedSource(pub String);

impl KeySource for FixedSource {
    fn kind(&self) -> &'static str {
        "fixed"
    }
    fn fetch(&self) -> BoxFuture<'_, Result<Arc<KeyMap>, SourceError>> {
        Box::pin(async move {
            KeyMap::parse(self.0.as_bytes())
                .map(Arc::new)
                .map_err(|reason| SourceError::Malformed {
                    location: "fixed".into(),
                    reason,
                })
        })
    }
}

/// State over a loaded cache of `source`, configured as the environment `extra` would.
pub async fn state_with(
    upstream_base_url: &str,
    extra: &[(&str, &str)],
    source: Box<dyn KeySource>,
) -> AppState {
    let config = config(upstream_base_url, extra);
    let cache = Arc::new(KeyCache::new(
        source,
        config.key_map_ttl,
        config.key_map_min_refresh_interval,
    ));
    let _ = cache.load().await;
    AppState::new(&config, cache).unwrap()
}

pub async fn state(upstream_base_url: &str, extra: &[(&str, &str)]) -> AppState {
    state_with(
        upstream_base_url,
        extra,
        Box::new(FixedSource(key_map_json())),
    )
    .await
}

/// The router served in-process on a free port, over real sockets.
pub struct InProcessProxy {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl InProcessProxy {
    pub async fn start(upstream_base_url: &str, extra: &[(&str, &str)]) -> Self {
        Self::serve(state(upstream_base_url, extra).await).await
    }

    pub async fn serve(state: AppState) -> Self {
        let app = router(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for InProcessProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A child process that is killed when the guard drops, so a failing test leaves nothing behind.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The built `openai-proxy` binary, its stderr collected.
pub struct BinaryProxy {
    /// Where it listens, in local mode.
    pub addr: SocketAddr,
    pub child: ChildGuard,
    pub stderr: mpsc::Receiver<String>,
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
            .env("RUST_LOG", "info")
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

    /// Kills the process and returns everything it wrote to stderr after start-up.
    pub fn stop(mut self) -> String {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        let mut lines = Vec::new();
        // The pipe is closed now, so the reader thread ends and the channel disconnects.
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        lines.join("\n")
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

/// Runs one of the Python SDK scripts in tests/e2e; returns its stdout.
pub async fn run_sdk_script(script: &str, envs: &[(&str, &str)]) -> String {
    run_client(
        python(),
        manifest_dir().join("tests/e2e").join(script),
        envs,
    )
    .await
}

/// Runs the Node SDK script; returns its stdout.
pub async fn run_node_sdk(envs: &[(&str, &str)]) -> String {
    run_client(PathBuf::from("node"), node_sdk_script(), envs).await
}

/// Runs an SDK client script (bounded), with the fake upstream's expected reply in its
/// environment and no ambient OpenAI settings; fails the test with its output if it fails.
async fn run_client(program: PathBuf, script: PathBuf, envs: &[(&str, &str)]) -> String {
    let mut client = tokio::process::Command::new(&program);
    client
        .arg(&script)
        .envs(envs.iter().copied())
        .env("EXPECTED_REPLY", openai::REPLY)
        .env("SLOW_MODEL", format!("gpt-4o-mini{}", openai::SLOW_SUFFIX))
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

/// The Node SDK script and its pinned `node_modules`; fails loudly when they are missing.
pub fn node_sdk_script() -> PathBuf {
    let dir = manifest_dir().join("tests/e2e/node");
    assert!(
        dir.join("node_modules/openai").exists(),
        "the OpenAI Node SDK is not installed: run `make test` (it runs `npm ci` in tests/e2e/node)"
    );
    dir.join("sdk_node.mjs")
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

/// A file in a fresh temporary directory that is removed when the guard drops.
static TEMP_FILES: AtomicUsize = AtomicUsize::new(0);

pub struct TempFile {
    dir: PathBuf,
    pub path: PathBuf,
}

impl TempFile {
    pub fn with_contents(name: &str, contents: &str) -> Self {
        let unique = format!(
            "openai-proxy-test-{}-{}",
            std::process::id(),
            TEMP_FILES.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        Self { dir, path }
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
