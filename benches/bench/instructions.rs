//! B16: instructions per proxied request and per relayed chunk, counted by callgrind, beside the
//! bare relay (B0) doing the same traffic. Instruction counts do not move with the machine's
//! noise, so a regression shows here as a number where the timed cells only wobble.
//!
//! The process under test runs under `valgrind --tool=callgrind`. After a warm-up its counters
//! are zeroed (`callgrind_control -z`), the workload runs, and a dump (`callgrind_control -d`)
//! gives the instructions it took; an idle stretch as long as the workload, counted the same way,
//! is taken off. Per chunk is the difference between streams of many frames and streams of one,
//! divided by the frames between them. `BENCH_CALLGRIND_DIR=<dir>` keeps the dumps there, for
//! `callgrind_annotate` (a binary with symbols: `BENCH_PROXY_BIN`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::cells::{Target, body};
use crate::report::Report;
use crate::runtime_api::FakeRuntimeApi;
use crate::stats::round;
use crate::{Plan, REAL_KEY, WRAPPER_KEY};

const CHAT: &str = r#"{"model":"chat","messages":[{"role":"user","content":"Hello"}]}"#;
/// Frames per stream in the long streams; the short ones have one.
const FRAMES: usize = 41;
/// The fake's pace between frames: wide enough that each frame is its own read under valgrind.
const PACE_MS: u64 = 5;

/// What one arm counted.
struct Counts {
    per_request: f64,
    per_chunk: f64,
}

pub async fn instruction_cells(
    plan: &Plan,
    settings: &[(&str, &str)],
    upstream: std::net::SocketAddr,
    report: &mut Report,
) -> Result<(), String> {
    if let Err(missing) = tools_present() {
        report.row(
            "B16",
            "instructions per request / per chunk",
            format!("skipped: {missing}"),
            "",
            None,
        );
        return Ok(());
    }
    let (requests, streams) = if plan.smoke { (20, 2) } else { (200, 10) };
    let proxy = counted(Counted::proxy(settings)?, WRAPPER_KEY, requests, streams).await?;
    let relay = counted(Counted::relay(upstream)?, REAL_KEY, requests, streams).await?;
    let lambda = lambda_counted(settings, requests).await?;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    report.row(
        "B16",
        "instructions per chat request (callgrind): proxy / bare relay (B0)",
        format!(
            "{} / {} ({}×)",
            thousands(proxy.per_request),
            thousands(relay.per_request),
            round(ratio(proxy.per_request, relay.per_request))
        ),
        "",
        None,
    );
    report.row(
        "B16",
        "instructions per chat request behind the Lambda front door (callgrind; B11's fake Runtime API)",
        thousands(lambda),
        "",
        None,
    );
    report.row(
        "B16",
        "instructions per relayed chunk (callgrind): proxy / bare relay (B0)",
        format!(
            "{} / {} ({}×)",
            thousands(proxy.per_chunk),
            thousands(relay.per_chunk),
            round(ratio(proxy.per_chunk, relay.per_chunk))
        ),
        "",
        None,
    );
    report.figure(
        "b16_instructions",
        json!({
            "proxy_per_request": proxy.per_request, "proxy_per_chunk": proxy.per_chunk,
            "relay_per_request": relay.per_request, "relay_per_chunk": relay.per_chunk,
            "lambda_per_request": lambda,
            "requests": requests, "streams": streams, "frames": FRAMES,
        }),
    );
    Ok(())
}

fn tools_present() -> Result<(), String> {
    for tool in ["valgrind", "callgrind_control"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            return Err(format!(
                "{tool} not found (Debian: apt-get install valgrind)"
            ));
        }
    }
    Ok(())
}

/// A process running under callgrind, killed (and its files removed) on drop.
struct Counted {
    child: Child,
    base: String,
    dir: PathBuf,
    keep: Option<PathBuf>,
    dumps: usize,
}

impl Counted {
    fn proxy(settings: &[(&str, &str)]) -> Result<Self, String> {
        let addr = crate::process::free_addr()?;
        let mut command = Command::new("valgrind");
        command
            .args(callgrind_args("proxy"))
            .arg(crate::process::binary())
            .env_clear()
            .env("LISTEN_ADDR", addr.to_string())
            .envs(settings.iter().copied());
        Self::start(command, "proxy", Some(addr))
    }

    fn relay(upstream: std::net::SocketAddr) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|err| err.to_string())?;
        let addr = crate::process::free_addr()?;
        let mut command = Command::new("valgrind");
        command
            .args(callgrind_args("relay"))
            .arg(exe)
            .args(["--relay-to", &upstream.to_string()])
            .args(["--listen", &addr.to_string()]);
        Self::start(command, "relay", Some(addr))
    }

    /// The proxy in Lambda mode, polling `api` for invocations.
    fn function(settings: &[(&str, &str)], api: &FakeRuntimeApi) -> Result<Self, String> {
        let mut command = Command::new("valgrind");
        command
            .args(callgrind_args("function"))
            .arg(crate::process::binary())
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.runtime_api())
            .env("AWS_LAMBDA_FUNCTION_NAME", "openai-proxy")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
            .envs(settings.iter().copied());
        Self::start(command, "function", None)
    }

    fn start(
        mut command: Command,
        name: &str,
        addr: Option<std::net::SocketAddr>,
    ) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "openai-proxy-bench-callgrind-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|err| err.to_string())?;
        let log = std::fs::File::create(dir.join("stderr.log")).map_err(|err| err.to_string())?;
        let child = command
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|err| format!("cannot start valgrind: {err}"))?;
        let counted = Self {
            child,
            base: addr
                .map(|addr| format!("http://{addr}/v1"))
                .unwrap_or_default(),
            dir,
            keep: std::env::var_os("BENCH_CALLGRIND_DIR").map(PathBuf::from),
            dumps: 0,
        };
        let Some(addr) = addr else {
            return Ok(counted);
        };
        // Valgrind starts a program some 50 times slower than it runs natively.
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                let logged =
                    std::fs::read_to_string(counted.dir.join("stderr.log")).unwrap_or_default();
                return Err(format!("{name} under valgrind did not listen:\n{logged}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(counted)
    }

    /// `callgrind_control <action> <pid>`, bounded. The process under valgrind has a cleared
    /// environment, so its vgdb files are under /tmp: the control command looks there too.
    async fn control(&self, action: &str) -> Result<(), String> {
        let run = tokio::process::Command::new("callgrind_control")
            .args([action, &self.child.id().to_string()])
            .env_remove("TMPDIR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status();
        let status = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .map_err(|_| format!("callgrind_control {action} did not finish in 60 s"))?
            .map_err(|err| format!("callgrind_control: {err}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("callgrind_control {action} failed ({status})"))
        }
    }

    /// Zeroes the counters, runs `work`, and returns the instructions since the zero.
    async fn count<F: std::future::Future<Output = Result<(), String>>>(
        &mut self,
        work: F,
    ) -> Result<(u64, Duration), String> {
        self.control("-z").await?;
        let started = Instant::now();
        work.await?;
        let took = started.elapsed();
        self.control("-d").await?;
        self.dumps += 1;
        let dump = self
            .dir
            .join(format!("callgrind.out.{}.{}", self.child.id(), self.dumps));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(total) = std::fs::read_to_string(&dump)
                .ok()
                .and_then(|text| summary(&text))
            {
                if let Some(keep) = &self.keep {
                    let _ = std::fs::create_dir_all(keep);
                    let name = dump.file_name().unwrap_or_default();
                    let _ = std::fs::copy(&dump, keep.join(name));
                }
                return Ok((total, took));
            }
            if Instant::now() > deadline {
                return Err(format!("no callgrind dump at {}", dump.display()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn callgrind_args(name: &str) -> Vec<String> {
    vec![
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file=callgrind.out.%p"),
        format!("--log-file=valgrind-{name}.log"),
    ]
}

/// The `summary:` (or `totals:`) line of a callgrind dump: instructions executed.
fn summary(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or(line.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Counts one arm: chat requests one at a time, then streams of one and of `FRAMES` frames, each
/// less an idle stretch of the same length.
async fn counted(
    mut process: Counted,
    key: &str,
    requests: usize,
    streams: usize,
) -> Result<Counts, String> {
    let client = crate::cells::client();
    let target = Target {
        base: process.base.clone(),
        authorization: format!("Bearer {key}"),
    };
    // Warm-up: connections, the key map's first use, lazily built state.
    chats(&client, &target, 10).await?;
    stream_many(&client, &target, 1, 1).await?;
    let chat = net(&mut process, chats(&client, &target, requests)).await?;
    let short = net(&mut process, stream_many(&client, &target, streams, 1)).await?;
    let long = net(&mut process, stream_many(&client, &target, streams, FRAMES)).await?;
    Ok(Counts {
        per_request: chat / requests as f64,
        per_chunk: (long - short) / (streams * (FRAMES - 1)) as f64,
    })
}

/// Instructions per chat invocation of the proxy in Lambda mode (less an idle stretch as long).
async fn lambda_counted(settings: &[(&str, &str)], requests: usize) -> Result<f64, String> {
    let api = FakeRuntimeApi::start().await?;
    let mut function = Counted::function(settings, &api)?;
    let chat = crate::lambda::event(CHAT, "application/json")?;
    let expected = crate::fake::chat_completion().into_bytes();
    let invoke = async |n: usize| -> Result<(), String> {
        for _ in 0..n {
            let id = api.invoke(chat.clone());
            let invocation = api
                .finished(&id, Duration::from_secs(120))
                .await
                .ok_or("no chat answer from the Lambda-mode proxy under callgrind")?;
            let body = crate::lambda::answered(invocation)?.1.body();
            if body != expected {
                return Err(format!(
                    "a wrong chat body from the Lambda-mode proxy under callgrind: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
        }
        Ok(())
    };
    // Warm-up: the first invocation also waits for valgrind's start.
    invoke(10).await?;
    let total = net(&mut function, invoke(requests)).await?;
    Ok(total / requests as f64)
}

/// The instructions `work` took, less those of an idle stretch as long.
async fn net(
    process: &mut Counted,
    work: impl std::future::Future<Output = Result<(), String>>,
) -> Result<f64, String> {
    let (busy, took) = process.count(work).await?;
    let (idle, _) = process
        .count(async {
            tokio::time::sleep(took).await;
            Ok(())
        })
        .await?;
    Ok(busy.saturating_sub(idle) as f64)
}

async fn chats(client: &reqwest::Client, target: &Target, n: usize) -> Result<(), String> {
    for _ in 0..n {
        crate::cells::round_trip(client, target, "/chat/completions", CHAT)
            .await
            .ok_or("a chat request failed under callgrind")?;
    }
    Ok(())
}

/// `n` streams one after another, each of `frames` frames `PACE_MS` apart, read to the end.
async fn stream_many(
    client: &reqwest::Client,
    target: &Target,
    n: usize,
    frames: usize,
) -> Result<(), String> {
    for _ in 0..n {
        let response = client
            .post(format!("{}/chat/completions", target.base))
            .header("authorization", &target.authorization)
            .body(body(&format!("sse:{PACE_MS}:{frames}")))
            .send()
            .await
            .map_err(|err| format!("a stream failed under callgrind: {err}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "a stream answered {} under callgrind",
                response.status()
            ));
        }
        let mut chunks = response.bytes_stream();
        let mut received = Vec::new();
        while let Some(chunk) = chunks.next().await {
            received.extend_from_slice(&chunk.map_err(|err| err.to_string())?);
        }
        let events = received.windows(2).filter(|w| w == b"\n\n").count();
        if events != frames + 1 || !received.ends_with(b"data: [DONE]\n\n") {
            return Err(format!(
                "a stream of {frames} frames arrived as {events} events under callgrind"
            ));
        }
    }
    Ok(())
}

fn thousands(instructions: f64) -> String {
    if instructions >= 10_000.0 {
        format!("{:.1}k", instructions / 1e3)
    } else {
        format!("{}", instructions.round())
    }
}
