//! Latency cells: B0 (a bare relay, for scale), B1, B2, B3, B4 and B5, each against the direct call.

use std::time::Instant;

use serde_json::json;

use crate::Plan;
use crate::cells::{self, Target, first_chunk, open_loop, paced_streams, paired, round_trip};
use crate::function::cpu_ns;
use crate::process::Proxy;
use crate::report::Report;
use crate::stats::{Sample, Spread, round};

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
pub async fn floor_cells(
    plan: &Plan,
    http: &reqwest::Client,
    direct: &Target,
    relay: &Target,
    relay_pid: u32,
    epoch: Instant,
    report: &mut Report,
) {
    let chat = r#"{"model":"chat","messages":[{"role":"user","content":"Hello"}]}"#;
    let relayed = std::sync::atomic::AtomicUsize::new(0);
    let cpu_before = cpu_ns(relay_pid);
    let hop = paired(plan.rounds, plan.per_round, direct, relay, |t| {
        let http = http.clone();
        if t.base == relay.base {
            relayed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        async move { round_trip(&http, &t, "/chat/completions", chat).await }
    })
    .await;
    let per_request = per(cpu_ns(relay_pid) - cpu_before, relayed.into_inner());
    delta_rows(
        report,
        "B0",
        "bare TCP relay, chat one at a time",
        &hop,
        None,
        None,
    );
    let (mut dp50, mut dp99) = (Vec::new(), Vec::new());
    let (mut stream_cpu, mut frames) = (0, 0);
    for _ in 0..plan.rounds.min(3) {
        let (direct_delays, _) = paced_streams(http, direct, epoch, 64, plan.frames, 20).await;
        let cpu_before = cpu_ns(relay_pid);
        let (relay_delays, _) = paced_streams(http, relay, epoch, 64, plan.frames, 20).await;
        stream_cpu += cpu_ns(relay_pid) - cpu_before;
        frames += 64 * plan.frames;
        dp50.push(relay_delays.p50() - direct_delays.p50());
        dp99.push(relay_delays.p99() - direct_delays.p99());
    }
    let per_frame = per(stream_cpu, frames);
    report.row(
        "B0",
        "bare TCP relay, CPU per chat request / per frame (64 streams, its stream's request included)",
        format!("{} µs / {} µs", round(per_request), round(per_frame)),
        "",
        None,
    );
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
    report.figure(
        "b0_relay_cpu_us",
        json!({"per_request": per_request, "per_frame": per_frame}),
    );
}

/// `ns` of CPU over `count` things, in µs each.
fn per(ns: u64, count: usize) -> f64 {
    ns as f64 / 1e3 / count.max(1) as f64
}

/// B1 (one request at a time), B3 (time to first streamed chunk), B5 (embeddings).
pub async fn latency_cells(
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
pub async fn rate_cells(
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
pub async fn stream_cells(
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
