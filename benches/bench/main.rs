//! The benchmark: what openai-proxy adds on top of a direct call, measured side by side in one run.
//!
//!   cargo bench --bench bench            full run (a few minutes), table on stdout
//!   cargo bench --bench bench -- --smoke a short run that proves the benchmark still works
//!   … -- --cells B1,B4 --proxy-env RUST_LOG=warn   some cells only, extra proxy settings
//!
//! It starts a fast fake upstream in this process and the release proxy binary in local mode,
//! then measures each cell against the same request sent straight to the fake (the floor).
//! Figures go to stdout as a markdown table and to target/bench/results.json.
#![expect(clippy::print_stdout, reason = "the benchmark's table is its output")]

mod cells;
mod fake;
mod process;
mod report;
mod stats;

use std::time::{Duration, Instant};

use serde_json::json;

use cells::{Target, client, first_chunk, open_loop, paced_streams, paired, round_trip};
use process::{Moto, Proxy};
use report::Report;
use stats::{Sample, Spread, round};

const WRAPPER_KEY: &str = "bench-key-0";
const REAL_KEY: &str = "sk-bench-real-key-0";
/// The key map size the lookup cost is quoted for.
const KEYS: usize = 10_000;

struct Plan {
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

fn key_map() -> String {
    let members: Vec<String> = (0..KEYS)
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
    let relay_addr = fake::relay(fake.addr).await?;
    let relay = Target {
        base: format!("http://{relay_addr}/v1"),
        authorization: format!("Bearer {REAL_KEY}"),
    };
    if plan.runs("B0") {
        floor_cells(&plan, &http, &direct, &relay, epoch, &mut report).await;
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

    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
    let machine = report::machine(plan.smoke);
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
    std::fs::write(out.join("results.json"), json_text).map_err(|err| err.to_string())?;
    println!("figures written to target/bench/results.json");
    Ok(())
}

fn delta_rows(
    report: &mut Report,
    cell: &str,
    what: &str,
    paired: &cells::Paired,
    p50_target: Option<f64>,
    p99_target: Option<f64>,
) {
    let met = |spread: Spread, target: Option<f64>| target.map(|t| spread.median <= t);
    let shown = |target: Option<f64>| target.map(|t| format!("≤ {t} µs")).unwrap_or_default();
    report.row(
        cell,
        &format!("{what} Δp50"),
        paired.dp50.show("µs"),
        &shown(p50_target),
        met(paired.dp50, p50_target),
    );
    report.row(
        cell,
        &format!("{what} Δp99"),
        paired.dp99.show("µs"),
        &shown(p99_target),
        met(paired.dp99, p99_target),
    );
    let key = format!("{}_{}", cell.to_lowercase(), what.replace(' ', "_"));
    report.figure(
        &key,
        json!({
            "dp50_us": paired.dp50, "dp99_us": paired.dp99,
            "direct_p50_us": paired.direct.p50(), "direct_p99_us": paired.direct.p99(),
            "proxy_p50_us": paired.proxy.p50(), "proxy_p99_us": paired.proxy.p99(),
            "failures": paired.failures,
        }),
    );
}

/// B0: the same cells through a bare TCP relay instead of the proxy, for scale.
async fn floor_cells(
    plan: &Plan,
    http: &reqwest::Client,
    direct: &Target,
    relay: &Target,
    epoch: Instant,
    report: &mut Report,
) {
    let chat = r#"{"model":"chat","messages":[{"role":"user","content":"Hello"}]}"#;
    let hop = paired(plan.rounds, plan.per_round, direct, relay, |t| {
        let http = http.clone();
        async move { round_trip(&http, &t, "/chat/completions", chat).await }
    })
    .await;
    delta_rows(
        report,
        "B0",
        "bare TCP relay, chat one at a time",
        &hop,
        None,
        None,
    );
    let (mut dp50, mut dp99) = (Vec::new(), Vec::new());
    for _ in 0..plan.rounds.min(3) {
        let (direct_delays, _) = paced_streams(http, direct, epoch, 64, plan.frames, 20).await;
        let (relay_delays, _) = paced_streams(http, relay, epoch, 64, plan.frames, 20).await;
        dp50.push(relay_delays.p50() - direct_delays.p50());
        dp99.push(relay_delays.p99() - direct_delays.p99());
    }
    report.row(
        "B0",
        "bare TCP relay, 64 streams: per-chunk Δp50",
        Spread::of(&dp50).show("µs"),
        "",
        None,
    );
    report.row(
        "B0",
        "bare TCP relay, 64 streams: per-chunk Δp99",
        Spread::of(&dp99).show("µs"),
        "",
        None,
    );
    report.figure(
        "b0_relay_stream_delta",
        json!({"dp50_us": Spread::of(&dp50), "dp99_us": Spread::of(&dp99)}),
    );
}

/// B1 (one request at a time), B3 (time to first streamed chunk), B5 (embeddings).
async fn latency_cells(
    plan: &Plan,
    http: &reqwest::Client,
    direct: &Target,
    through: &Target,
    report: &mut Report,
) {
    let chat = r#"{"model":"chat","messages":[{"role":"user","content":"Hello"}]}"#;
    if plan.runs("B1") {
        let b1 = paired(plan.rounds, plan.per_round, direct, through, |t| {
            let http = http.clone();
            async move { round_trip(&http, &t, "/chat/completions", chat).await }
        })
        .await;
        delta_rows(
            report,
            "B1",
            "chat, one at a time",
            &b1,
            Some(50.0),
            Some(150.0),
        );
    }
    if plan.runs("B3") {
        let b3 = paired(plan.rounds, plan.per_round, direct, through, |t| {
            let http = http.clone();
            async move { first_chunk(&http, &t).await }
        })
        .await;
        delta_rows(report, "B3", "time to first chunk", &b3, None, Some(200.0));
    }
    for dims in [1536, 4096].into_iter().filter(|_| plan.runs("B5")) {
        let body = format!(r#"{{"model":"emb:{dims}","input":"bench"}}"#);
        let b5 = paired(plan.rounds, plan.per_round / 2, direct, through, |t| {
            let (http, body) = (http.clone(), body.clone());
            async move { round_trip(&http, &t, "/embeddings", &body).await }
        })
        .await;
        let target = (dims == 4096).then_some(200.0);
        delta_rows(
            report,
            "B5",
            &format!("embeddings {dims}-d"),
            &b5,
            target,
            None,
        );
    }
}

/// B2: open-loop fixed rates. Returns the proxy's peak RSS after it.
async fn rate_cells(
    plan: &Plan,
    http: &reqwest::Client,
    direct: &Target,
    through: &Target,
    proxy: &Proxy,
    report: &mut Report,
) -> u64 {
    let mut best = None;
    for &rate in &plan.rates {
        let (direct_sample, direct_errors) =
            open_loop(http, direct, rate, plan.rate_duration).await;
        let (proxy_sample, proxy_errors) = open_loop(http, through, rate, plan.rate_duration).await;
        let dp99 = proxy_sample.p99() - direct_sample.p99();
        let under_5ms = proxy_sample.p99() < 5_000.0 && proxy_errors == 0;
        if under_5ms {
            best = Some(rate);
        }
        let target = if rate == 2_000 {
            "Δp99 ≤ 1000 µs, 0 errors"
        } else {
            ""
        };
        let met = (rate == 2_000).then_some(dp99 <= 1_000.0 && proxy_errors == 0);
        report.row(
            "B2",
            &format!("{rate} req/s open loop"),
            format!(
                "p99 {} µs direct, {} µs proxy (Δp99 {} µs); errors {direct_errors}/{proxy_errors}",
                round(direct_sample.p99()),
                round(proxy_sample.p99()),
                round(dp99)
            ),
            target,
            met,
        );
        report.figure(
            &format!("b2_{rate}_rps"),
            json!({
                "direct_p50_us": direct_sample.p50(), "direct_p99_us": direct_sample.p99(),
                "proxy_p50_us": proxy_sample.p50(), "proxy_p99_us": proxy_sample.p99(),
                "dp99_us": dp99, "direct_errors": direct_errors, "proxy_errors": proxy_errors,
            }),
        );
    }
    let shown = best
        .map(|rate| format!("{rate} req/s"))
        .unwrap_or_else(|| "none tested".to_owned());
    report.row(
        "B2",
        "highest tested rate with proxy p99 < 5 ms",
        shown,
        "",
        None,
    );
    report.figure("b2_highest_rate_p99_under_5ms", json!(best));
    proxy.peak_kib()
}

/// B4: per-chunk forwarding delay of paced streams, and frames in = frames out.
async fn stream_cells(
    plan: &Plan,
    http: &reqwest::Client,
    direct: &Target,
    through: &Target,
    epoch: Instant,
    proxy: &Proxy,
    report: &mut Report,
) -> u64 {
    for &streams in &plan.stream_counts {
        let (mut dp50, mut dp99) = (Vec::new(), Vec::new());
        let (mut lost, mut late, mut frames) = (0, 0, 0);
        let mut worst: f64 = 0.0;
        for round in 0..plan.rounds.min(3) {
            let mut arms = [Sample::default(), Sample::default()];
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for arm in order {
                let target = if arm == 0 { direct } else { through };
                let (delays, missing) =
                    paced_streams(http, target, epoch, streams, plan.frames, 20).await;
                if arm == 1 {
                    lost += missing;
                    frames += delays.0.len();
                    // Late: held back longer than the 20 ms pace, so the next frame would overtake it.
                    late += delays.0.iter().filter(|&&d| d > 20_000.0).count();
                    worst = worst.max(delays.max());
                }
                arms[arm] = delays;
            }
            dp50.push(arms[1].p50() - arms[0].p50());
            dp99.push(arms[1].p99() - arms[0].p99());
        }
        let (dp50, dp99) = (Spread::of(&dp50), Spread::of(&dp99));
        let what = format!("{streams} streams × {} frames @ 20 ms", plan.frames);
        report.row(
            "B4",
            &format!("{what}: per-chunk Δp50"),
            dp50.show("µs"),
            "≤ 25 µs",
            Some(dp50.median <= 25.0),
        );
        report.row(
            "B4",
            &format!("{what}: per-chunk Δp99"),
            dp99.show("µs"),
            "≤ 100 µs",
            Some(dp99.median <= 100.0),
        );
        let intact = lost == 0 && late == 0;
        report.row(
            "B4",
            &format!("{what}: frames lost / late"),
            format!(
                "{lost} / {late} of {frames} (worst delay {} µs)",
                round(worst)
            ),
            if streams == 256 { "0 / 0" } else { "" },
            (streams == 256).then_some(intact),
        );
        report.figure(&format!("b4_{streams}_streams"), json!({
            "dp50_us": dp50, "dp99_us": dp99, "frames_through_proxy": frames, "lost": lost, "late": late, "worst_delay_us": worst,
        }));
    }
    proxy.peak_kib()
}

/// B6: key lookup cost in a 10,000-key map, and the time to refuse an unknown key.
async fn lookup_cells(plan: &Plan, http: &reqwest::Client, through: &Target, report: &mut Report) {
    let map = openai_proxy::keymap::KeyMap::parse(key_map().as_bytes()).unwrap_or_default();
    let lookups = if plan.smoke { 10_000 } else { 1_000_000 };
    let started = Instant::now();
    let mut found = 0;
    for n in 0..lookups {
        let key = if n % 2 == 0 {
            WRAPPER_KEY
        } else {
            "bench-key-9999"
        };
        let digest = openai_proxy::keys::WrapperKeyDigest::of(std::hint::black_box(key));
        found += usize::from(map.lookup(&digest).is_some());
    }
    let per_lookup_ns = started.elapsed().as_nanos() as f64 / lookups as f64;
    report.row(
        "B6",
        "lookup in a 10,000-key map (SHA-256 + map)",
        format!("{} ns", round(per_lookup_ns)),
        "≤ 1 µs",
        Some(per_lookup_ns <= 1_000.0 && found == lookups),
    );
    let unknown = Target {
        authorization: "Bearer not-a-key".to_owned(),
        ..through.clone()
    };
    let mut refusals = Sample::default();
    for _ in 0..plan.per_round {
        let started = Instant::now();
        let status = http
            .post(format!("{}/chat/completions", unknown.base))
            .header("authorization", &unknown.authorization)
            .body("{}")
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status == 401 {
            refusals.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    report.row(
        "B6",
        "unknown key refused (HTTP round trip)",
        format!(
            "p50 {} µs, p99 {} µs",
            round(refusals.p50()),
            round(refusals.p99())
        ),
        "",
        None,
    );
    report.figure("b6", json!({"lookup_ns": per_lookup_ns, "refusal_p50_us": refusals.p50(), "refusal_p99_us": refusals.p99()}));
}

/// B7: from exec to the first proxied 200, with the key map from a file and from moto.
async fn startup_cells(
    plan: &Plan,
    settings: &[(&str, &str)],
    upstream: &str,
    report: &mut Report,
) -> Result<(), String> {
    let moto = Moto::start().await?;
    let secrets = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "testing", "testing", None, None, "bench",
            ))
            .endpoint_url(&moto.endpoint)
            .build(),
    );
    secrets
        .create_secret()
        .name("bench/keys")
        .secret_string(key_map())
        .send()
        .await
        .map_err(|err| format!("moto: {err}"))?;
    let from_moto = [
        ("KEY_MAP_SECRET_ID", "bench/keys"),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("UPSTREAM_BASE_URL", upstream),
    ];
    for (label, envs, target) in [("file", settings, 15.0), ("moto", &from_moto[..], 60.0)] {
        let mut times = Vec::new();
        for _ in 0..plan.startups {
            let started = Instant::now();
            let proxy = Proxy::start(envs)?;
            let through = Target {
                base: format!("http://{}/v1", proxy.addr),
                authorization: format!("Bearer {WRAPPER_KEY}"),
            };
            let http = client();
            while round_trip(&http, &through, "/chat/completions", r#"{"model":"chat"}"#)
                .await
                .is_none()
            {
                if started.elapsed() > Duration::from_secs(30) {
                    return Err(format!("no 200 from a fresh proxy ({label})"));
                }
            }
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let spread = Spread::of(&times);
        report.row(
            "B7",
            &format!("exec → first proxied 200, key map from {label}"),
            spread.show("ms"),
            &format!("≤ {target} ms"),
            Some(spread.median <= target),
        );
        report.figure(&format!("b7_startup_{label}_ms"), json!(spread));
    }
    Ok(())
}

/// B8: idle RSS, peak RSS under B2 and B4, and growth over a bounded soak.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the figures gathered so far"
)]
async fn memory_cells(
    plan: &Plan,
    http: &reqwest::Client,
    through: &Target,
    epoch: Instant,
    proxy: &Proxy,
    idle_kib: u64,
    peaks: [u64; 2],
    report: &mut Report,
) {
    let mb = |kib: u64| kib as f64 / 1024.0;
    report.row(
        "B8",
        "idle RSS after start-up",
        format!("{:.1} MB", mb(idle_kib)),
        "≤ 10 MB",
        Some(mb(idle_kib) <= 10.0),
    );
    report.row(
        "B8",
        "peak RSS after B2 / after B4",
        format!("{:.1} MB / {:.1} MB", mb(peaks[0]), mb(peaks[1])),
        "≤ 40 MB",
        Some(mb(peaks[1]) <= 40.0),
    );
    // Soak: the same mixed load twice; memory after the second must not exceed the first.
    let mut after = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        while started.elapsed() < plan.soak {
            let streams = paced_streams(http, through, epoch, 32, plan.frames.min(25), 20);
            let calls = open_loop(http, through, 500, Duration::from_secs(1));
            let _ = tokio::join!(streams, calls);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        after.push(proxy.rss_kib());
    }
    let growth = mb(after[1]) - mb(after[0]);
    report.row(
        "B8",
        &format!("RSS after soak 1 → soak 2 ({} s each)", plan.soak.as_secs()),
        format!(
            "{:.1} MB → {:.1} MB ({growth:+.1} MB)",
            mb(after[0]),
            mb(after[1])
        ),
        "no growth (≤ +0.5 MB)",
        Some(growth <= 0.5),
    );
    report.figure("b8", json!({"idle_kib": idle_kib, "peak_after_b2_kib": peaks[0], "peak_after_b4_kib": peaks[1], "after_soak_kib": after}));
}
