//! The benchmark: what openai-proxy adds on top of a direct call, measured side by side in one run.
//!
//!   cargo bench --bench bench            full run (a few minutes), table on stdout
//!   cargo bench --bench bench -- --smoke a short run that proves the benchmark still works
//!   … -- --cells B1,B4 --proxy-env RUST_LOG=warn   some cells only, extra proxy settings
//!   … -- --soak 300                       the soak instead of the cells (`make soak`)
//!   BENCH_PROXY_BIN=/path/openai-proxy cargo bench …   the same cells against another build
//!                                         (an A/B of two revisions in one harness)
//!
//! It starts a fast fake upstream in this process and the release proxy binary in local mode,
//! then measures each cell against the same request sent straight to the fake (the floor).
//! Figures go to stdout as a markdown table and to target/bench/results.json.
#![expect(clippy::print_stdout, reason = "the benchmark's table is its output")]

mod cells;
mod cpu_share;
mod fake;
mod function;
mod instructions;
mod lambda;
mod lambda_cells;
mod lambda_measure;
mod latency;
mod limits;
mod peers;
mod process;
mod report;
mod resources;
mod rounds;
mod runtime_api;
mod signing;
mod soak;
mod stats;

use std::time::{Duration, Instant};

use serde_json::json;

use cells::{Target, client};
use latency::{floor_cells, latency_cells, rate_cells, stream_cells};
use process::Proxy;
use report::Report;
use resources::{lookup_cells, memory_cells, metering_cells, startup_cells};
use stats::round;

pub(crate) const WRAPPER_KEY: &str = "bench-key-0";
pub(crate) const REAL_KEY: &str = "sk-bench-real-key-0";
/// The key map size the lookup cost is quoted for.
const KEYS: usize = 10_000;

pub(crate) struct Plan {
    smoke: bool,
    /// Cells to run (`None`: all).
    cells: Option<Vec<String>>,
    rounds: usize,
    per_round: usize,
    rates: Vec<u32>,
    rate_duration: Duration,
    stream_counts: Vec<usize>,
    frames: usize,
    soak: Duration,
    startups: usize,
}

impl Plan {
    fn runs(&self, cell: &str) -> bool {
        self.cells
            .as_ref()
            .is_none_or(|cells| cells.iter().any(|c| c.eq_ignore_ascii_case(cell)))
    }

    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                smoke,
                cells: None,
                rounds: 2,
                per_round: 50,
                rates: vec![500],
                rate_duration: Duration::from_millis(300),
                stream_counts: vec![8],
                frames: 5,
                soak: Duration::from_secs(1),
                startups: 1,
            }
        } else {
            Self {
                smoke,
                cells: None,
                rounds: 10,
                per_round: 500,
                rates: vec![500, 1_000, 2_000],
                rate_duration: Duration::from_secs(5),
                stream_counts: vec![64, 256],
                frames: 50,
                soak: Duration::from_secs(30),
                startups: 7,
            }
        }
    }
}

/// How many requests the latency cells send through the proxy, warm-up included.
fn proxied_requests(plan: &Plan) -> usize {
    let per_cell = |per_round: usize| per_round.min(100) + plan.rounds * per_round;
    let mut total = 0;
    if plan.runs("B1") {
        total += per_cell(plan.per_round);
    }
    if plan.runs("B3") {
        total += per_cell(plan.per_round);
    }
    if plan.runs("B5") {
        total += 2 * per_cell(plan.per_round / 2);
    }
    total
}

pub(crate) fn key_map() -> String {
    key_map_of(KEYS)
}

/// The most a Secrets Manager secret holds (its quota on a secret value's size, in bytes).
const SECRET_VALUE_BYTES: usize = 65_536;

/// The bench's key map cut to the most members that fit in one Secrets Manager secret (about
/// 1,500 of these plain keys): the largest map a deployment reading a secret can have. moto does
/// not enforce the quota, so B12 measures cold starts with both.
pub(crate) fn largest_secret_key_map() -> String {
    let mut keys = KEYS;
    let mut document = key_map_of(keys);
    while document.len() > SECRET_VALUE_BYTES && keys > 1 {
        keys = keys * SECRET_VALUE_BYTES / document.len();
        document = key_map_of(keys);
    }
    document
}

fn key_map_of(keys: usize) -> String {
    let members: Vec<String> = (0..keys)
        .map(|n| format!(r#""bench-key-{n}": "sk-bench-real-key-{n}""#))
        .collect();
    format!("{{{}}}", members.join(","))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mut plan = Plan::new(args.iter().any(|arg| arg == "--smoke"));
    plan.cells = value_of("--cells").map(|list| list.split(',').map(str::to_owned).collect());
    let extra_env: Vec<(String, String)> = args
        .windows(2)
        .filter(|pair| pair[0] == "--proxy-env")
        .filter_map(|pair| {
            pair[1]
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    if let Some(target) = value_of("--relay-to") {
        let listen = value_of("--listen").unwrap_or_else(|| "127.0.0.1:0".to_owned());
        return relay_process(&target, &listen).await;
    }
    let epoch = Instant::now();
    let fake = fake::start(epoch).await?;
    let dir = std::env::temp_dir().join(format!("openai-proxy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|err| err.to_string())?;
    let key_file = dir.join("keys.json");
    std::fs::write(&key_file, key_map()).map_err(|err| err.to_string())?;
    let upstream = format!("http://{}/v1", fake.addr);
    let key_file_str = key_file.display().to_string();
    let mut settings = vec![
        ("KEY_MAP_FILE", key_file_str.as_str()),
        ("UPSTREAM_BASE_URL", upstream.as_str()),
    ];
    settings.extend(extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));

    let mut report = Report::new();
    let proxy = Proxy::start(&settings)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_kib = proxy.rss_kib();
    let direct = Target {
        base: upstream.clone(),
        authorization: format!("Bearer {REAL_KEY}"),
    };
    let through = Target {
        base: format!("http://{}/v1", proxy.addr),
        authorization: format!("Bearer {WRAPPER_KEY}"),
    };
    let http = client();
    let relay_child = Proxy::relay(fake.addr)?;
    let relay = Target {
        base: format!("http://{}/v1", relay_child.addr),
        authorization: format!("Bearer {REAL_KEY}"),
    };
    if let Some(seconds) = value_of("--soak") {
        let seconds = seconds
            .parse()
            .map_err(|_| "--soak takes a number of seconds")?;
        let soak_plan = soak::SoakPlan::new(Duration::from_secs(seconds));
        let outcome = soak::run(&soak_plan, &http, &through, &proxy, &mut report).await;
        drop(proxy);
        let _ = std::fs::remove_dir_all(&dir);
        publish(&report, plan.smoke, "soak.json")?;
        return outcome;
    }
    if plan.runs("B0") {
        let relay_pid = relay_child.pid();
        floor_cells(&plan, &http, &direct, &relay, relay_pid, epoch, &mut report).await;
    }

    let cpu_before = proxy.cpu_seconds();
    latency_cells(&plan, &http, &direct, &through, &mut report).await;
    let proxied = proxied_requests(&plan);
    if proxied > 0 {
        let per_request = (proxy.cpu_seconds() - cpu_before) / proxied as f64 * 1e6;
        report.row(
            "B1",
            "proxy CPU time per request (B1/B3/B5 traffic)",
            format!("{} µs", round(per_request)),
            "",
            None,
        );
        report.figure("proxy_cpu_us_per_request", json!(per_request));
    }
    let mut peaks = [proxy.peak_kib(), 0];
    if plan.runs("B2") {
        peaks[0] = rate_cells(&plan, &http, &direct, &through, &proxy, &mut report).await;
    }
    peaks[1] = proxy.peak_kib();
    if plan.runs("B4") {
        peaks[1] = stream_cells(&plan, &http, &direct, &through, epoch, &proxy, &mut report).await;
    }
    if plan.runs("B6") {
        lookup_cells(&plan, &http, &through, &mut report).await;
    }
    if plan.runs("B10") {
        metering_cells(&plan, &mut report);
    }
    if plan.runs("B13") {
        peers::peer_cells(&plan, &http, &direct, &settings, &dir, epoch, &mut report).await?;
    }
    if plan.runs("B15") {
        signing::signing_cells(&plan, &mut report).await;
    }
    if plan.runs("B14") {
        limits::limits_cells(&plan, &upstream, &mut report).await?;
    }
    if plan.runs("B16") {
        instructions::instruction_cells(&plan, &settings, fake.addr, &mut report).await?;
    }
    if plan.runs("B7") {
        startup_cells(&plan, &settings, &upstream, &mut report).await?;
    }
    if plan.runs("B8") {
        memory_cells(
            &plan,
            &http,
            &through,
            epoch,
            &proxy,
            idle_kib,
            peaks,
            &mut report,
        )
        .await;
    }
    let size = std::fs::metadata(process::binary())
        .map(|m| m.len())
        .unwrap_or(0);
    report.row(
        "B9",
        "release binary size",
        format!("{:.2} MB", size as f64 / 1e6),
        "≤ 10 MB",
        Some(size <= 10_000_000),
    );
    report.figure("b9_binary_bytes", json!(size));
    if plan.runs("B11") || plan.runs("B12") {
        lambda_cells::lambda_cells(
            &plan,
            &direct,
            &through,
            &proxy,
            epoch,
            &settings,
            &mut report,
        )
        .await?;
    }

    if plan.smoke && plan.runs("S1") {
        // The soak's code path, briefly, so `make test` proves `make soak` still works.
        let soak_plan = soak::SoakPlan {
            duration: Duration::from_secs(3),
            streams: 16,
            frames_per_stream: 5,
            pace_ms: 20,
            rate: 50,
        };
        soak::run(&soak_plan, &http, &through, &proxy, &mut report).await?;
    }

    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
    publish(&report, plan.smoke, "results.json")
}

/// The bare relay's process (B0): relays until the benchmark kills it.
#[expect(
    clippy::print_stderr,
    reason = "the parent reads the address from stderr"
)]
async fn relay_process(target: &str, listen: &str) -> Result<(), String> {
    let target = target.parse().map_err(|_| "--relay-to takes an address")?;
    let listen = listen.parse().map_err(|_| "--listen takes an address")?;
    let addr = fake::relay(target, listen).await?;
    eprintln!("relay listening on http://{addr}");
    std::future::pending().await
}

/// The table on stdout, every figure in target/bench/`file`.
fn publish(report: &Report, smoke: bool, file: &str) -> Result<(), String> {
    let machine = report::machine(smoke);
    println!(
        "\nopenai-proxy benchmark ({} mode) on {}",
        machine["mode"], machine["cpu"]
    );
    println!(
        "{} cores, {}, revision {}\n",
        machine["cores"], machine["rustc"], machine["revision"]
    );
    println!(
        "Δ = through the proxy minus direct to the fake upstream; median over rounds (min…max).\n"
    );
    println!("{}", report.markdown());
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).map_err(|err| err.to_string())?;
    let json_text =
        serde_json::to_string_pretty(&report.json(machine)).map_err(|err| err.to_string())?;
    std::fs::write(out.join(file), json_text).map_err(|err| err.to_string())?;
    println!("figures written to target/bench/{file}");
    Ok(())
}
