//! The processes the benchmark starts: the release proxy binary in local mode, a bare relay (this
//! executable again), B13's peer gateway, and moto's Secrets Manager server for the start-up
//! figure. Each is killed when its handle drops.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Proxy {
    pub addr: SocketAddr,
    child: Child,
    /// The proxy's log file, removed with the handle.
    log: Option<PathBuf>,
}

impl Proxy {
    /// Starts the proxy on a free port and returns once the port accepts connections. Its log
    /// goes to a file, as a deployed proxy's would: read here line by line through a pipe, every
    /// request's log line would wake a thread of this benchmark on the two cores it measures on.
    pub fn start(envs: &[(&str, &str)]) -> Result<Self, String> {
        let addr = free_addr()?;
        let mut command = Command::new(binary());
        command
            .env_clear()
            .env("LISTEN_ADDR", addr.to_string())
            .envs(envs.iter().copied());
        Self::spawn_listening(command, addr, false)
    }

    /// Starts B13's peer (crabllm) with its config file on a free port, logging as it does by
    /// default (tracing's fmt to stdout) into a file, as the proxy's log goes to one.
    pub fn peer(binary: &Path, config: &Path) -> Result<Self, String> {
        let addr = free_addr()?;
        let mut command = Command::new(binary);
        command
            .env_clear()
            .args(["serve", "--config"])
            .arg(config)
            .args(["--bind", &addr.to_string()]);
        Self::spawn_listening(command, addr, true)
    }

    /// Starts `command`, which listens on `addr`, with its stderr (and stdout if
    /// `stdout_to_log`) in a log file, and returns once the port accepts connections.
    fn spawn_listening(
        mut command: Command,
        addr: SocketAddr,
        stdout_to_log: bool,
    ) -> Result<Self, String> {
        let log = std::env::temp_dir().join(format!(
            "openai-proxy-bench-{}-{}.log",
            std::process::id(),
            addr.port()
        ));
        let file = std::fs::File::create(&log).map_err(|err| err.to_string())?;
        let stdout = if stdout_to_log {
            Stdio::from(file.try_clone().map_err(|err| err.to_string())?)
        } else {
            Stdio::null()
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(file)
            .spawn()
            .map_err(|err| format!("cannot start {:?}: {err}", command.get_program()))?;
        // Made before the wait, so a process that never listens is still killed on the way out.
        let proxy = Self {
            addr,
            child,
            log: Some(log.clone()),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                let logged = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!(
                    "{:?} did not start listening:\n{logged}",
                    command.get_program()
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(proxy)
    }

    /// The log file's text so far (empty for a process that logs nowhere).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default()
    }

    /// Starts this benchmark's own executable as a bare TCP relay to `target` (B0), a process of
    /// its own like the proxy, so the relay's hop costs what the proxy's does: another process to
    /// wake on every packet.
    pub fn relay(target: SocketAddr) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|err| err.to_string())?;
        let mut command = Command::new(exe);
        command.args(["--relay-to", &target.to_string()]);
        Self::spawn_reporting_address(command)
    }

    /// Starts `command`, which reports the address it listens on to stderr, and returns once it
    /// has.
    fn spawn_reporting_address(mut command: Command) -> Result<Self, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("cannot start {:?}: {err}", command.get_program()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        // Keeps draining stderr for the proxy's whole life, so its log never blocks it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
                    let _ = tx.send(addr);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(addr)) => Ok(Self {
                addr,
                child,
                log: None,
            }),
            _ => {
                let _ = child.kill();
                Err(format!(
                    "{:?} did not report its address",
                    command.get_program()
                ))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        status_field(self.pid(), "VmRSS:")
    }

    /// CPU time (user + system) the proxy has used so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        // Fields 14 and 15 of /proc/PID/stat, in clock ticks (100 per second on Linux).
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .ok()
            .and_then(|stat| {
                let after_name = stat.rsplit_once(')')?.1;
                let fields: Vec<&str> = after_name.split_whitespace().collect();
                let user: f64 = fields.get(11)?.parse().ok()?;
                let system: f64 = fields.get(12)?.parse().ok()?;
                Some((user + system) / 100.0)
            })
            .unwrap_or(0.0)
    }

    /// Peak resident set size so far, in KiB.
    pub fn peak_kib(&self) -> u64 {
        status_field(self.pid(), "VmHWM:")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(log) = &self.log {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// The proxy binary under test: this build's, or `BENCH_PROXY_BIN` (another revision's, for an
/// A/B in one harness).
pub fn binary() -> &'static Path {
    static BINARY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        std::env::var_os("BENCH_PROXY_BIN")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_openai-proxy").into())
    })
}

/// A port free on loopback now (bound, then let go, for the child to bind).
pub fn free_addr() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|err| format!("no free port: {err}"))
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Moto {
    /// A Secrets Manager client for this moto, with the test credentials moto takes.
    pub fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::Config::builder()
                .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
                .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                    "testing", "testing", None, None, "bench",
                ))
                .endpoint_url(&self.endpoint)
                .http_client(openai_proxy::aws::https_client())
                .build(),
        )
    }

    /// Stores the bench's key map as secret `name`, and returns the settings that make the proxy
    /// read it from there (with `upstream` as its upstream).
    pub async fn key_map_settings(
        &self,
        name: &str,
        upstream: &str,
    ) -> Result<Vec<(String, String)>, String> {
        self.key_map_settings_of(name, upstream, crate::key_map())
            .await
    }

    /// The same for the key map `document`.
    pub async fn key_map_settings_of(
        &self,
        name: &str,
        upstream: &str,
        document: String,
    ) -> Result<Vec<(String, String)>, String> {
        self.secrets()
            .create_secret()
            .name(name)
            .secret_string(document)
            .send()
            .await
            .map_err(|err| format!("moto: {err}"))?;
        Ok([
            ("KEY_MAP_SECRET_ID", name),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", self.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("UPSTREAM_BASE_URL", upstream),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .to_vec())
    }

    pub async fn start() -> Result<Self, String> {
        let server = venv_tool("moto_server");
        if !server.exists() {
            return Err(format!(
                "{} not found: run `make test-deps` first",
                server.display()
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|err| err.to_string())?
            .port();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot start moto_server: {err}"))?;
        let moto = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = crate::cells::client();
        while http
            .get(format!("{}/moto-api/", moto.endpoint))
            .send()
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err("moto_server did not start".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(moto)
    }

    /// Creates the limits table `name` from template.yaml's `LimitsTable` (the tests' script).
    pub async fn create_limits_table(&self, name: &str) -> Result<(), String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let created = tokio::process::Command::new(venv_tool("python"))
            .arg(root.join("tests/e2e/limits_table.py"))
            .args(["--endpoint", &self.endpoint, "--name", name, "--template"])
            .arg(root.join("template.yaml"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), created)
            .await
            .map_err(|_| "limits_table.py did not finish".to_owned())?
            .map_err(|err| format!("cannot run limits_table.py: {err}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "limits_table.py failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn venv_tool(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name)
}
