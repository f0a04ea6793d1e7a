//! The measurements. Every cell sends the same request to the fake upstream directly (the floor)
//! and through the proxy, and reports the difference; arms alternate round by round so drift
//! in the machine's speed falls on both.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::fake::since;
use crate::stats::{Sample, Spread};

/// Where a request goes, and the key it carries there.
#[derive(Clone)]
pub struct Target {
    pub base: String,
    pub authorization: String,
}

pub fn client() -> reqwest::Client {
    // reqwest's TLS comes without a crypto provider in this project; the proxy's is installed.
    openai_proxy::upstream::install_crypto_provider();
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default()
}

pub fn body(model: &str) -> String {
    format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"Hello"}}],"stream":true}}"#
    )
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// One request, whole body read; the time it took, or `None` on any failure.
pub async fn round_trip(
    client: &reqwest::Client,
    target: &Target,
    path: &str,
    body: &str,
) -> Option<f64> {
    let started = Instant::now();
    let response = client
        .post(format!("{}{path}", target.base))
        .header("authorization", &target.authorization)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .ok()?;
    let ok = response.status().is_success();
    response.bytes().await.ok()?;
    ok.then(|| micros(started.elapsed()))
}

/// Time from sending a streaming request to its first body chunk.
pub async fn first_chunk(client: &reqwest::Client, target: &Target) -> Option<f64> {
    let started = Instant::now();
    let response = client
        .post(format!("{}/chat/completions", target.base))
        .header("authorization", &target.authorization)
        .body(body("sse:0:3"))
        .send()
        .await
        .ok()?;
    let mut chunks = response.bytes_stream();
    chunks.next().await?.ok()?;
    let elapsed = micros(started.elapsed());
    while chunks.next().await.is_some() {}
    Some(elapsed)
}

/// Δp50 and Δp99 (proxy minus direct) per round, and both arms' pooled samples.
pub struct Paired {
    pub dp50: Spread,
    pub dp99: Spread,
    pub direct: Sample,
    pub proxy: Sample,
    pub failures: usize,
}

pub async fn paired<F, Fut>(
    rounds: usize,
    per_round: usize,
    direct: &Target,
    proxy: &Target,
    measure: F,
) -> Paired
where
    F: Fn(Target) -> Fut,
    Fut: Future<Output = Option<f64>>,
{
    let [_, proxy] = interleaved(rounds, per_round, [direct, proxy], measure).await;
    proxy
}

/// `paired` for any number of arms, the first the direct call: each arm's figures against it,
/// measured in the same rounds, the order rotating each round so drift falls on every arm
/// alike. Element 0 is the direct arm against itself (Δ 0).
pub async fn interleaved<const N: usize, F, Fut>(
    rounds: usize,
    per_round: usize,
    arms: [&Target; N],
    measure: F,
) -> [Paired; N]
where
    F: Fn(Target) -> Fut,
    Fut: Future<Output = Option<f64>>,
{
    // Warm-up: connections opened, caches filled, on every arm.
    for target in arms {
        for _ in 0..per_round.min(100) {
            let _ = measure(target.clone()).await;
        }
    }
    let mut deltas: [(Vec<f64>, Vec<f64>); N] = std::array::from_fn(|_| Default::default());
    let mut all: [Sample; N] = std::array::from_fn(|_| Sample::default());
    let mut failures = [0; N];
    for round in 0..rounds {
        let mut samples: [Sample; N] = std::array::from_fn(|_| Sample::default());
        for turn in 0..N {
            let arm = (turn + round) % N;
            for _ in 0..per_round {
                match measure(arms[arm].clone()).await {
                    Some(value) => samples[arm].push(value),
                    None => failures[arm] += 1,
                }
            }
        }
        for (arm, sample) in samples.iter().enumerate() {
            deltas[arm].0.push(sample.p50() - samples[0].p50());
            deltas[arm].1.push(sample.p99() - samples[0].p99());
            all[arm].0.extend(&sample.0);
        }
    }
    std::array::from_fn(|arm| Paired {
        dp50: Spread::of(&deltas[arm].0),
        dp99: Spread::of(&deltas[arm].1),
        direct: all[0].clone(),
        proxy: all[arm].clone(),
        failures: failures[0] + if arm == 0 { 0 } else { failures[arm] },
    })
}

/// Requests at a fixed rate whatever the answers do (open loop); latency counts from when each
/// request was due, so a stall cannot hide queued requests.
pub async fn open_loop(
    client: &reqwest::Client,
    target: &Target,
    rate: u32,
    duration: Duration,
) -> (Sample, usize) {
    let total = (f64::from(rate) * duration.as_secs_f64()) as u32;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = start + interval * n;
        tokio::time::sleep_until(due).await;
        let (client, target) = (client.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let ok = round_trip(
                &client,
                &target,
                "/chat/completions",
                r#"{"model":"chat","messages":[]}"#,
            )
            .await
            .is_some();
            (ok, micros(due.elapsed()))
        }));
    }
    let mut sample = Sample::default();
    let mut errors = 0;
    for task in tasks {
        match task.await {
            Ok((true, latency)) => sample.push(latency),
            _ => errors += 1,
        }
    }
    (sample, errors)
}

/// `streams` concurrent SSE streams of `frames` frames `pace_ms` apart. Returns each frame's delay
/// (receive time minus the send time it carries) and how many frames did not arrive.
pub async fn paced_streams(
    client: &reqwest::Client,
    target: &Target,
    epoch: Instant,
    streams: usize,
    frames: usize,
    pace_ms: u64,
) -> (Sample, usize) {
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let (client, target) = (client.clone(), target.clone());
            tokio::spawn(async move { one_stream(&client, &target, epoch, frames, pace_ms).await })
        })
        .collect();
    let mut delays = Sample::default();
    let mut lost = 0;
    for task in tasks {
        match task.await {
            Ok(stream_delays) => {
                lost += frames.saturating_sub(stream_delays.len());
                delays.0.extend(stream_delays);
            }
            Err(_) => lost += frames,
        }
    }
    (delays, lost)
}

async fn one_stream(
    client: &reqwest::Client,
    target: &Target,
    epoch: Instant,
    frames: usize,
    pace_ms: u64,
) -> Vec<f64> {
    let mut delays = Vec::with_capacity(frames);
    let Ok(response) = client
        .post(format!("{}/chat/completions", target.base))
        .header("authorization", &target.authorization)
        .body(body(&format!("sse:{pace_ms}:{frames}")))
        .send()
        .await
    else {
        return delays;
    };
    let mut chunks = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(Ok(chunk)) = chunks.next().await {
        let now = since(epoch);
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = pending.drain(..end + 2).collect();
            if let Some(sent) = sent_at(&frame) {
                delays.push(now.saturating_sub(sent) as f64 / 1e3);
            }
        }
    }
    delays
}

/// The `"t":<nanos>` a frame carries.
fn sent_at(frame: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(frame).ok()?;
    let rest = text.split("\"t\":").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
