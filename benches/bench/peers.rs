//! B13: the best peer in the same run. crabllm, a Rust LLM gateway that `make bench-peers`
//! installs into target/bench-peers, configured with one client key and one OpenAI provider
//! pointing at the fake, measured beside a fresh openai-proxy with the same client, fake and
//! rounds as B1, B3 and B4; the three arms (direct, openai-proxy, crabllm) take turns round by
//! round so the machine's drift falls on all alike. It never installs anything: absent, the row
//! says so, and no figure is made up.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::cells::{Paired, Target, first_chunk, interleaved, paced_streams, round_trip};
use crate::process::Proxy;
use crate::report::Report;
use crate::stats::{Sample, Spread, round};
use crate::{Plan, REAL_KEY, WRAPPER_KEY, fake};

/// How far below crabllm's the proxy's figures must be (issue 18).
const TARGET_RATIO: f64 = 1.3;
const TARGET: &str = "crabllm's ≥ 1.3× openai-proxy's";

fn peers_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-peers")
}

/// crabllm's config: one virtual key (the bench's wrapper key), one OpenAI provider whose base
/// URL is the fake and whose key is the real one, the models the cells ask for (crabllm routes
/// by model name and answers 404 for any other), everything else crabllm's defaults.
fn config(upstream: &str, frames: usize) -> String {
    format!(
        r#"[[keys]]
name = "bench"
key = "{WRAPPER_KEY}"
models = ["*"]

[providers.fake]
kind = "openai"
api_key = "{REAL_KEY}"
base_url = "{upstream}"
models = ["chat", "sse:0:3", "sse:20:{frames}"]
"#
    )
}

/// The version cargo install recorded, e.g. "crabllm 0.0.25".
fn installed_version(root: &Path) -> String {
    std::fs::read_to_string(root.join(".crates.toml"))
        .ok()
        .and_then(|list| {
            list.split('"')
                .find(|entry| entry.starts_with("crabllm "))
                .and_then(|entry| entry.split(" (").next())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "crabllm".to_owned())
}

/// B13. `settings` start the fresh openai-proxy arm as the other cells start theirs; `dir` holds
/// crabllm's config.
pub async fn peer_cells(
    plan: &Plan,
    http: &reqwest::Client,
    direct: &Target,
    settings: &[(&str, &str)],
    dir: &Path,
    epoch: Instant,
    report: &mut Report,
) -> Result<(), String> {
    let root = peers_root();
    let binary = root.join("bin/crabllm");
    if !binary.exists() {
        report.row(
            "B13",
            "crabllm not installed: run `make bench-peers`",
            "not run".to_owned(),
            "",
            None,
        );
        return Ok(());
    }
    let name = installed_version(&root);
    let config_file = dir.join("crabllm.toml");
    std::fs::write(&config_file, config(&direct.base, plan.frames))
        .map_err(|err| err.to_string())?;
    let peer = Proxy::peer(&binary, &config_file)?;
    let proxy = Proxy::start(settings)?;
    // Both answer already; a moment more lets start-up's last allocations settle before the
    // idle RSS is read (a reading, not a wait for an event: nothing here decides on it).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let processes = [&proxy, &peer];
    let idle_kib = processes.map(Proxy::rss_kib);
    let target = |process: &Proxy| Target {
        base: format!("http://{}/v1", process.addr),
        authorization: format!("Bearer {WRAPPER_KEY}"),
    };
    let (through, crab) = (target(&proxy), target(&peer));
    for (arm, process) in [(&through, &proxy), (&crab, &peer)] {
        check(http, arm)
            .await
            .map_err(|err| format!("B13: {err}; its log:\n{}", process.log_text()))?;
    }
    report.row(
        "B13",
        &format!("{name}: one key, an OpenAI provider on the fake; answers checked"),
        "same bytes as direct, 401 for an unknown key".to_owned(),
        "",
        None,
    );

    let cpu_before = processes.map(Proxy::cpu_seconds);
    let chat = r#"{"model":"chat","messages":[{"role":"user","content":"Hello"}]}"#;
    let arms = [direct, &through, &crab];
    let [_, b1_proxy, b1_peer] = interleaved(plan.rounds, plan.per_round, arms, |t| {
        let http = http.clone();
        async move { round_trip(&http, &t, "/chat/completions", chat).await }
    })
    .await;
    let [_, b3_proxy, b3_peer] = interleaved(plan.rounds, plan.per_round, arms, |t| {
        let http = http.clone();
        async move { first_chunk(&http, &t).await }
    })
    .await;
    // Per arm, warm-up included, as `proxied_requests` counts B1's.
    let requests = 2 * (plan.per_round.min(100) + plan.rounds * plan.per_round);
    let cpu_after = processes.map(Proxy::cpu_seconds);
    let chat_kib = processes.map(Proxy::rss_kib);
    let cpu_us = [0, 1].map(|arm| (cpu_after[arm] - cpu_before[arm]) / requests as f64 * 1e6);

    versus(
        report,
        "B1 chat one at a time Δp50",
        b1_proxy.dp50,
        b1_peer.dp50,
        true,
    );
    versus(
        report,
        "B1 chat one at a time Δp99",
        b1_proxy.dp99,
        b1_peer.dp99,
        true,
    );
    versus(
        report,
        "B3 time to first chunk Δp50",
        b3_proxy.dp50,
        b3_peer.dp50,
        false,
    );
    versus(
        report,
        "B3 time to first chunk Δp99",
        b3_proxy.dp99,
        b3_peer.dp99,
        false,
    );
    let (shown, met) = ratio(cpu_us[0], cpu_us[1]);
    report.row(
        "B13",
        "CPU time per request (B1/B3 traffic): openai-proxy vs crabllm",
        format!(
            "{} µs vs {} µs: {shown}; failed requests {} vs {}",
            round(cpu_us[0]),
            round(cpu_us[1]),
            b1_proxy.failures + b3_proxy.failures,
            b1_peer.failures + b3_peer.failures
        ),
        TARGET,
        met,
    );
    report.figure(
        "b13_chat",
        json!({
            "peer": name, "requests_per_arm": requests,
            "b1": {"openai_proxy": arm_json(&b1_proxy), "crabllm": arm_json(&b1_peer)},
            "b3": {"openai_proxy": arm_json(&b3_proxy), "crabllm": arm_json(&b3_peer)},
            "cpu_us_per_request": {"openai_proxy": cpu_us[0], "crabllm": cpu_us[1]},
        }),
    );

    let mut lost_late = Vec::new();
    for &streams in &plan.stream_counts {
        let cpu_before = processes.map(Proxy::cpu_seconds);
        let measured = stream_arms(plan, http, arms, epoch, streams).await;
        let cpu_after = processes.map(Proxy::cpu_seconds);
        let what = format!("B4 {streams} streams × {} frames @ 20 ms", plan.frames);
        versus(
            report,
            &format!("{what}: per-chunk Δp50"),
            measured.dp50[0],
            measured.dp50[1],
            true,
        );
        versus(
            report,
            &format!("{what}: per-chunk Δp99"),
            measured.dp99[0],
            measured.dp99[1],
            false,
        );
        // Each stream's request is in it too: per frame, not per chunk relayed alone.
        let cpu_us = [0, 1].map(|arm| {
            (cpu_after[arm] - cpu_before[arm]) / measured.frames[arm].max(1) as f64 * 1e6
        });
        report.row(
            "B13",
            &format!("{what}: CPU per frame, its stream's request included"),
            format!("{} µs vs {} µs", round(cpu_us[0]), round(cpu_us[1])),
            "",
            None,
        );
        lost_late.push(format!(
            "{streams} streams: {} / {} vs {} / {}",
            measured.lost[0], measured.late[0], measured.lost[1], measured.late[1]
        ));
        report.figure(
            &format!("b13_{streams}_streams"),
            json!({
                "dp50_us": {"openai_proxy": measured.dp50[0], "crabllm": measured.dp50[1]},
                "dp99_us": {"openai_proxy": measured.dp99[0], "crabllm": measured.dp99[1]},
                "frames": measured.frames, "lost": measured.lost, "late": measured.late,
                "cpu_us_per_frame": cpu_us,
            }),
        );
    }
    if !lost_late.is_empty() {
        report.row(
            "B13",
            "B4 frames lost / late: openai-proxy vs crabllm",
            lost_late.join("; "),
            "",
            None,
        );
    }

    let mb = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
    let now_kib = processes.map(Proxy::rss_kib);
    let peak_kib = processes.map(Proxy::peak_kib);
    let rss = |arm: usize| {
        format!(
            "{} / {} / {} ({}) MB",
            mb(idle_kib[arm]),
            mb(chat_kib[arm]),
            mb(now_kib[arm]),
            mb(peak_kib[arm])
        )
    };
    report.row(
        "B13",
        "RSS idle / after B1+B3 / after B4 (peak): openai-proxy (10,000-key map) vs crabllm (one key)",
        format!("{} vs {}", rss(0), rss(1)),
        "",
        None,
    );
    report.figure(
        "b13_rss_kib",
        json!({
            "arms": ["openai-proxy", "crabllm"], "idle": idle_kib, "after_chat": chat_kib,
            "after_streams": now_kib, "peak": peak_kib,
        }),
    );
    Ok(())
}

/// One figure for both gateways, and crabllm's over openai-proxy's against the target.
fn versus(report: &mut Report, figure: &str, ours: Spread, peer: Spread, targeted: bool) {
    let (shown, met) = ratio(ours.median, peer.median);
    report.row(
        "B13",
        &format!("{figure}: openai-proxy vs crabllm"),
        format!("{} vs {}: {shown}", ours.show("µs"), peer.show("µs")),
        if targeted { TARGET } else { "" },
        met.filter(|_| targeted),
    );
}

/// crabllm's figure over openai-proxy's. Where either is not above zero (adds nothing the noise
/// lets us see) there is no ratio: the target is met if only the proxy's is, missed if only
/// crabllm's is, and not judged if neither is.
fn ratio(ours: f64, peer: f64) -> (String, Option<bool>) {
    match (ours > 0.0, peer > 0.0) {
        (true, true) => {
            let times = peer / ours;
            (format!("{times:.2}×"), Some(times >= TARGET_RATIO))
        }
        (false, true) => ("openai-proxy's ≤ 0".to_owned(), Some(true)),
        (true, false) => ("crabllm's ≤ 0".to_owned(), Some(false)),
        (false, false) => ("both ≤ 0".to_owned(), None),
    }
}

fn arm_json(paired: &Paired) -> serde_json::Value {
    json!({
        "dp50_us": paired.dp50, "dp99_us": paired.dp99,
        "p50_us": paired.proxy.p50(), "p99_us": paired.proxy.p99(),
        "direct_p50_us": paired.direct.p50(), "direct_p99_us": paired.direct.p99(),
        "failures": paired.failures,
    })
}

/// B4's paced streams for openai-proxy and crabllm (index 0 and 1), against direct.
struct StreamArms {
    dp50: [Spread; 2],
    dp99: [Spread; 2],
    frames: [usize; 2],
    lost: [usize; 2],
    late: [usize; 2],
}

async fn stream_arms(
    plan: &Plan,
    http: &reqwest::Client,
    arms: [&Target; 3],
    epoch: Instant,
    streams: usize,
) -> StreamArms {
    let (mut dp50, mut dp99) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let (mut frames, mut lost, mut late) = ([0; 2], [0; 2], [0; 2]);
    for round in 0..plan.rounds.min(3) {
        let mut samples: [Sample; 3] = Default::default();
        for turn in 0..3 {
            let arm = (turn + round) % 3;
            let (delays, missing) =
                paced_streams(http, arms[arm], epoch, streams, plan.frames, 20).await;
            if let Some(gateway) = arm.checked_sub(1) {
                lost[gateway] += missing;
                frames[gateway] += delays.0.len();
                // Late, as in B4: held back longer than the pace, so the next frame would overtake.
                late[gateway] += delays.0.iter().filter(|&&d| d > 20_000.0).count();
            }
            samples[arm] = delays;
        }
        for gateway in 0..2 {
            dp50[gateway].push(samples[gateway + 1].p50() - samples[0].p50());
            dp99[gateway].push(samples[gateway + 1].p99() - samples[0].p99());
        }
    }
    StreamArms {
        dp50: dp50.each_ref().map(|values| Spread::of(values)),
        dp99: dp99.each_ref().map(|values| Spread::of(values)),
        frames,
        lost,
        late,
    }
}

/// The gateway answers as the fake does: a chat completion byte for byte, a stream's frames
/// with the fake's payloads and a `[DONE]`, and 401 for a key it does not know.
async fn check(http: &reqwest::Client, gateway: &Target) -> Result<(), String> {
    let send = |authorization: &str, body: &str| {
        http.post(format!("{}/chat/completions", gateway.base))
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    let chat = r#"{"model":"chat","messages":[{"role":"user","content":"Hello"}]}"#;
    let response = send(&gateway.authorization, chat)
        .await
        .map_err(|err| format!("{}: chat request failed: {err}", gateway.base))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() || body != fake::chat_completion() {
        return Err(format!(
            "{} answered a chat request with {status}: {body}",
            gateway.base
        ));
    }
    let response = send(&gateway.authorization, &crate::cells::body("sse:0:3"))
        .await
        .map_err(|err| format!("{}: streaming request failed: {err}", gateway.base))?;
    let mut chunks = response.bytes_stream();
    let mut text = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, chunks.next()).await {
        text.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&text);
    let frames = text.matches("data: {\"t\":").count();
    if frames != 3 || !text.trim_end().ends_with("data: [DONE]") {
        return Err(format!(
            "{} relayed a 3-frame stream as: {text}",
            gateway.base
        ));
    }
    let refused = send("Bearer bench-key-unknown", chat)
        .await
        .map_err(|err| format!("{}: request failed: {err}", gateway.base))?
        .status();
    if refused != reqwest::StatusCode::UNAUTHORIZED {
        return Err(format!(
            "{} answered an unknown key with {refused}",
            gateway.base
        ));
    }
    Ok(())
}
