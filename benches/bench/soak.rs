//! The soak (`make soak`, = `cargo bench --bench bench -- --soak SECONDS`): hundreds of SSE
//! streams reopened back to back plus non-streaming calls at a fixed rate, through the release
//! proxy, for a bounded time. Every frame and every body is checked byte for byte against what
//! the fake upstream sent, and the proxy's RSS is sampled throughout. It fails (exit status 1)
//! on any lost or corrupted frame, any failed call, or memory that grows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::cells::{Target, body};
use crate::fake::{self, FRAME_PADDING};
use crate::process::Proxy;
use crate::report::Report;

pub struct SoakPlan {
    pub duration: Duration,
    /// Streams open at any moment: each worker reopens its stream as soon as one ends.
    pub streams: usize,
    pub frames_per_stream: usize,
    pub pace_ms: u64,
    /// Non-streaming calls per second (one in ten an embeddings call, the rest chat).
    pub rate: u32,
}

impl SoakPlan {
    pub fn new(duration: Duration) -> Self {
        Self {
            duration,
            streams: 256,
            frames_per_stream: 50,
            pace_ms: 20,
            rate: 200,
        }
    }
}

/// Longest wait for any one chunk or answer before it counts as lost.
const STALL: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Counters {
    streams_done: AtomicU64,
    stream_failures: AtomicU64,
    frames_ok: AtomicU64,
    frames_lost: AtomicU64,
    frames_corrupt: AtomicU64,
    calls_ok: AtomicU64,
    call_failures: AtomicU64,
    bodies_corrupt: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub async fn run(
    plan: &SoakPlan,
    http: &reqwest::Client,
    through: &Target,
    proxy: &Proxy,
    report: &mut Report,
) -> Result<(), String> {
    let counters = Arc::new(Counters::default());
    let stop_at = Instant::now() + plan.duration;
    let mut workers = Vec::with_capacity(plan.streams + 1);
    for _ in 0..plan.streams {
        let (http, through, counters) = (http.clone(), through.clone(), counters.clone());
        let (frames, pace) = (plan.frames_per_stream, plan.pace_ms);
        workers.push(tokio::spawn(async move {
            while Instant::now() < stop_at {
                one_stream(&http, &through, frames, pace, &counters).await;
            }
        }));
    }
    let (http_calls, through_calls, counters_calls) =
        (http.clone(), through.clone(), counters.clone());
    let rate = plan.rate;
    workers.push(tokio::spawn(async move {
        calls(&http_calls, &through_calls, rate, stop_at, &counters_calls).await;
    }));

    // About sixty RSS samples whatever the length, at most one every five seconds.
    let every = (plan.duration / 60).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let started = Instant::now();
    let mut rss = Vec::new();
    while Instant::now() < stop_at {
        tokio::time::sleep(every).await;
        rss.push((started.elapsed().as_secs_f64(), proxy.rss_kib()));
    }
    for worker in workers {
        let _ = tokio::time::timeout(STALL * 2, worker).await;
    }

    let c = &counters;
    let frames_ok = Counters::get(&c.frames_ok);
    let lost = Counters::get(&c.frames_lost);
    let corrupt = Counters::get(&c.frames_corrupt);
    let stream_failures = Counters::get(&c.stream_failures);
    let calls_ok = Counters::get(&c.calls_ok);
    let call_failures = Counters::get(&c.call_failures);
    let bodies_corrupt = Counters::get(&c.bodies_corrupt);
    let (first_minute, last_minute) = memory_windows(&rss, plan.duration);
    let growth_mb = (last_minute - first_minute) / 1024.0;
    let peak_mb = proxy.peak_kib() as f64 / 1024.0;

    let seconds = plan.duration.as_secs();
    report.row(
        "S1",
        &format!(
            "{} streams × {} frames at {} ms, reopened for {seconds} s",
            plan.streams, plan.frames_per_stream, plan.pace_ms
        ),
        format!(
            "{} streams, {frames_ok} frames intact, {lost} lost, {corrupt} corrupted, {stream_failures} failed",
            Counters::get(&c.streams_done)
        ),
        "0 lost, 0 corrupted, 0 failed",
        Some(lost == 0 && corrupt == 0 && stream_failures == 0),
    );
    report.row(
        "S1",
        &format!(
            "non-streaming calls at {} req/s (chat, 1 in 10 embeddings)",
            plan.rate
        ),
        format!("{calls_ok} exact, {call_failures} failed, {bodies_corrupt} corrupted"),
        "0 failed, 0 corrupted",
        Some(call_failures == 0 && bodies_corrupt == 0),
    );
    report.row(
        "S1",
        "proxy RSS: median of the minute from half-time → of the last minute (peak)",
        format!(
            "{:.1} MB → {:.1} MB ({growth_mb:+.2} MB; peak {peak_mb:.1} MB)",
            first_minute / 1024.0,
            last_minute / 1024.0
        ),
        "flat (≤ +1 MB)",
        Some(growth_mb <= 1.0),
    );
    let at = |fraction: f64| {
        let moment = plan.duration.as_secs_f64() * fraction;
        rss.iter()
            .find(|(t, _)| *t >= moment)
            .map_or(0.0, |(_, kib)| *kib as f64 / 1024.0)
    };
    report.row(
        "S1",
        "proxy RSS at 20 % / 50 % / 100 % of the soak",
        format!("{:.1} / {:.1} / {:.1} MB", at(0.2), at(0.5), at(1.0)),
        "",
        None,
    );
    report.figure(
        "soak",
        json!({
            "seconds": seconds, "streams": plan.streams, "frames_per_stream": plan.frames_per_stream,
            "pace_ms": plan.pace_ms, "rate": plan.rate, "streams_done": Counters::get(&c.streams_done),
            "frames_ok": frames_ok, "frames_lost": lost, "frames_corrupt": corrupt,
            "stream_failures": stream_failures, "calls_ok": calls_ok, "call_failures": call_failures,
            "bodies_corrupt": bodies_corrupt, "rss_kib": rss, "peak_kib": proxy.peak_kib(),
        }),
    );
    let passed = lost == 0
        && corrupt == 0
        && stream_failures == 0
        && call_failures == 0
        && bodies_corrupt == 0
        && growth_mb <= 1.0;
    if passed {
        Ok(())
    } else {
        Err("the soak found lost or corrupted data or memory growth (table above)".to_owned())
    }
}

/// Median RSS (KiB) of the minute that starts half-way through the soak and of the last minute.
/// The first half is warm-up: the allocator's arenas grow to the working set of hundreds of
/// streams (a 5-minute run climbs for about two minutes, then stays level); a leak would keep
/// climbing through the second half. Soaks shorter than four minutes use quarters.
fn memory_windows(samples: &[(f64, u64)], duration: Duration) -> (f64, f64) {
    let end = duration.as_secs_f64();
    let half = end / 2.0;
    let window = 60f64.min(end / 4.0);
    let median = |from: f64, to: f64| {
        let mut values: Vec<u64> = samples
            .iter()
            .filter(|(at, _)| (from..=to).contains(at))
            .map(|(_, kib)| *kib)
            .collect();
        values.sort_unstable();
        values.get(values.len() / 2).copied().unwrap_or(0) as f64
    };
    (median(half, half + window), median(end - window, end))
}

/// One stream, every frame checked: `data: {"t":<digits>,"i":<n>,"pad":"x…"}` for n = 0, 1, …
/// in order, then `data: [DONE]`, then the end.
async fn one_stream(
    http: &reqwest::Client,
    through: &Target,
    frames: usize,
    pace_ms: u64,
    counters: &Counters,
) {
    let response = tokio::time::timeout(
        STALL,
        http.post(format!("{}/chat/completions", through.base))
            .header("authorization", &through.authorization)
            .header("content-type", "application/json")
            .body(body(&format!("sse:{pace_ms}:{frames}")))
            .send(),
    )
    .await;
    let Ok(Ok(response)) = response else {
        Counters::add(&counters.stream_failures, 1);
        Counters::add(&counters.frames_lost, frames as u64);
        return;
    };
    if response.status() != 200 {
        Counters::add(&counters.stream_failures, 1);
        Counters::add(&counters.frames_lost, frames as u64);
        return;
    }
    let mut check = FrameCheck::default();
    let mut chunks = response.bytes_stream();
    let ended_cleanly = loop {
        match tokio::time::timeout(STALL, chunks.next()).await {
            Ok(Some(Ok(chunk))) => check.feed(&chunk),
            Ok(None) => break true,
            Ok(Some(Err(_))) | Err(_) => break false,
        }
    };
    Counters::add(&counters.frames_ok, check.intact);
    Counters::add(&counters.frames_corrupt, check.corrupt);
    let seen = (check.intact + check.corrupt) as usize;
    Counters::add(&counters.frames_lost, frames.saturating_sub(seen) as u64);
    if ended_cleanly && check.done && check.pending.is_empty() {
        Counters::add(&counters.streams_done, 1);
    } else {
        Counters::add(&counters.stream_failures, 1);
    }
}

#[derive(Default)]
struct FrameCheck {
    pending: Vec<u8>,
    next: u64,
    intact: u64,
    corrupt: u64,
    done: bool,
}

impl FrameCheck {
    fn feed(&mut self, chunk: &[u8]) {
        self.pending.extend_from_slice(chunk);
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = self.pending.drain(..end + 2).collect();
            let frame = &frame[..end];
            if frame == b"data: [DONE]" && !self.done {
                self.done = true;
            } else if !self.done && is_frame(frame, self.next) {
                self.intact += 1;
                self.next += 1;
            } else {
                self.corrupt += 1;
                self.next += 1;
            }
        }
    }
}

fn is_frame(frame: &[u8], index: u64) -> bool {
    let Ok(text) = std::str::from_utf8(frame) else {
        return false;
    };
    let Some(rest) = text.strip_prefix("data: {\"t\":") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let expected_tail = format!(",\"i\":{index},\"pad\":\"{}\"}}", "x".repeat(FRAME_PADDING));
    digits > 0 && rest[digits..] == expected_tail
}

/// Non-streaming calls at a fixed rate until `stop_at`; each body must equal the fake's exactly.
async fn calls(
    http: &reqwest::Client,
    through: &Target,
    rate: u32,
    stop_at: Instant,
    counters: &Arc<Counters>,
) {
    let chat = Arc::new(fake::chat_completion());
    let embeddings = Arc::new(fake::embeddings(1536));
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    let mut n: u64 = 0;
    while Instant::now() < stop_at {
        ticker.tick().await;
        n += 1;
        let (model, path, expected) = if n.is_multiple_of(10) {
            ("emb:1536", "/embeddings", embeddings.clone())
        } else {
            ("chat", "/chat/completions", chat.clone())
        };
        let (http, through, counters) = (http.clone(), through.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            let call = async {
                let response = http
                    .post(format!("{}{path}", through.base))
                    .header("authorization", &through.authorization)
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"model":"{model}","input":"soak"}}"#))
                    .send()
                    .await
                    .ok()?;
                let status = response.status();
                let bytes = response.bytes().await.ok()?;
                Some((status, bytes))
            };
            match tokio::time::timeout(STALL, call).await {
                Ok(Some((status, bytes))) if status == 200 => {
                    if bytes.as_ref() == expected.as_bytes() {
                        Counters::add(&counters.calls_ok, 1);
                    } else {
                        Counters::add(&counters.bodies_corrupt, 1);
                    }
                }
                _ => Counters::add(&counters.call_failures, 1),
            }
        }));
        // Finished calls are let go as the soak runs, so the list stays short.
        if tasks.len() >= 1_000 {
            tasks.retain(|task| !task.is_finished());
        }
    }
    for task in tasks {
        let _ = task.await;
    }
}
