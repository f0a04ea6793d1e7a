//! The processes the benchmark starts: the release proxy binary in local mode, and moto's
//! Secrets Manager server for the start-up figure. Each is killed when its handle drops.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Proxy {
    pub addr: SocketAddr,
    child: Child,
}

impl Proxy {
    /// Starts the proxy and returns once it has logged the address it listens on.
    pub fn start(envs: &[(&str, &str)]) -> Result<Self, String> {
        let mut child = Command::new(binary())
            .env_clear()
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("cannot start the proxy: {err}"))?;
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
            Ok(Some(addr)) => Ok(Self { addr, child }),
            _ => {
                let _ = child.kill();
                Err("the proxy did not report its address".to_owned())
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
    }
}

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_openai-proxy"))
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
