//! Resource cells: B6 key lookup, B7 start-up, B8 memory, B10 metering cost. B9 (binary size)
//! is read in main.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cells::{Target, client, open_loop, paced_streams, round_trip};
use crate::process::{Moto, Proxy};
use crate::report::Report;
use crate::stats::{Sample, Spread, round};
use crate::{Plan, WRAPPER_KEY, key_map};

/// B6: key lookup cost in a 10,000-key map, and the time to refuse an unknown key.
pub async fn lookup_cells(
    plan: &Plan,
    http: &reqwest::Client,
    through: &Target,
    report: &mut Report,
) {
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
pub async fn startup_cells(
    plan: &Plan,
    settings: &[(&str, &str)],
    upstream: &str,
    report: &mut Report,
) -> Result<(), String> {
    let moto = Moto::start().await?;
    let from_moto = moto.key_map_settings("bench/keys", upstream).await?;
    let from_moto: Vec<(&str, &str)> = from_moto
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
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
pub async fn memory_cells(
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

/// B10: what metering costs the proxy's CPU, measured in-process on the library's own code: the
/// usage watch per streamed chunk (observing, and undoing an `include_usage` the proxy added) and
/// building the per-request line with its EMF record (as under Lambda's JSON log format).
pub fn metering_cells(plan: &Plan, report: &mut Report) {
    use axum::body::Bytes;
    use openai_proxy::metering::{Metering, RequestRecord};
    use openai_proxy::usage::UsageWatch;

    // A chat chunk as OpenAI sends it with `include_usage`, and as it is without.
    const WITH_NULL: &[u8] = br#"data: {"id":"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}],"usage":null}

"#;
    let plain: Vec<u8> = String::from_utf8_lossy(WITH_NULL)
        .replace(r#","usage":null"#, "")
        .into_bytes();
    let chunks = if plan.smoke { 10_000 } else { 1_000_000 };
    let per_chunk_ns = |undo: bool, chunk: &[u8]| {
        let chunk = Bytes::copy_from_slice(chunk);
        let mut watch = UsageWatch::sse(undo);
        let started = Instant::now();
        let mut out = 0;
        for _ in 0..chunks {
            out += watch
                .pass(std::hint::black_box(chunk.clone()))
                .map_or(0, |b| b.len());
        }
        std::hint::black_box(out);
        started.elapsed().as_nanos() as f64 / chunks as f64
    };
    let observe = per_chunk_ns(false, &plain);
    let undo = per_chunk_ns(true, WITH_NULL);
    report.row(
        "B10",
        "metering per streamed chunk: observe / undo include_usage",
        format!("{} ns / {} ns", round(observe), round(undo)),
        "a few µs at most",
        Some(undo < 3_000.0 && observe < 3_000.0),
    );
    let metering = Metering {
        emf_namespace: None,
        include_stream_usage: true,
        line_format: openai_proxy::metering::LineFormat::Json,
    };
    let records = if plan.smoke { 1_000 } else { 100_000 };
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..records {
        let mut record = RequestRecord::new(
            &metering,
            None,
            &axum::http::Method::POST,
            "/v1/chat/completions",
        );
        record.tenant = "team-a".to_owned();
        record.model = Some("gpt-4o-mini".to_owned());
        record.sent(1_000);
        bytes += record
            .line_with_emf("openai-proxy", Duration::from_millis(3))
            .len();
    }
    std::hint::black_box(bytes);
    let per_record_us = started.elapsed().as_secs_f64() * 1e6 / records as f64;
    report.row(
        "B10",
        "metering per request: record + its JSON line with EMF (not the write)",
        format!("{} µs", round(per_record_us)),
        "",
        None,
    );
    report.figure(
        "b10",
        json!({"observe_ns_per_chunk": observe, "undo_ns_per_chunk": undo, "record_us": per_record_us}),
    );
}
