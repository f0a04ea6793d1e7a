//! What B11 and B12 measure of one front door: chat one at a time, time to first chunk and a
//! paced stream's per-chunk delay against the direct call (and the local server) in the same
//! rounds, the CPU the processes spent on them, and cold starts.

use std::cell::Cell;
use std::time::Instant;

use serde_json::{Value, json};

use crate::Plan;
use crate::cells::{Target, first_chunk, paced_streams, round_trip};
use crate::cpu_share::CpuShare;
use crate::function::cpu_ns;
use crate::lambda::{CHAT, Front, PACE_MS};
use crate::process::Proxy;
use crate::rounds::{Arm, Rounds, interleaved};
use crate::stats::Spread;

/// Chunks of the 3-frame stream the time-to-first-chunk figure uses (3 frames and `[DONE]`).
const SHORT_STREAM_CHUNKS: usize = 4;

/// What the cells share: the plan, the client, the arms' targets, the local proxy, the clock of
/// the fake upstream's frames, and the proxy's settings with the key map from a file and moto.
pub struct Setup<'a> {
    pub plan: &'a Plan,
    pub http: reqwest::Client,
    pub direct: &'a Target,
    pub through: &'a Target,
    pub local: &'a Proxy,
    pub epoch: Instant,
    pub from_file: &'a [(&'a str, &'a str)],
    pub from_moto: Vec<(String, String)>,
    /// From moto, the largest map one secret can hold (`largest_secret_key_map`).
    pub from_moto_largest_secret: Vec<(String, String)>,
}

impl Setup<'_> {
    pub fn file(&self) -> Vec<(&str, &str)> {
        self.from_file.to_vec()
    }

    pub fn moto(&self) -> Vec<(&str, &str)> {
        borrowed(&self.from_moto)
    }

    pub fn moto_largest_secret(&self) -> Vec<(&str, &str)> {
        borrowed(&self.from_moto_largest_secret)
    }
}

fn borrowed(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// What one front door gave: each figure's rounds, and CPU per request and per chunk (µs) of
/// the Lambda-mode process and (if measured) the local server.
pub struct Figures {
    pub chat: Rounds,
    pub first_chunk: Rounds,
    pub stream: Rounds,
    pub streams_per_round: usize,
    pub cpu: [(f64, f64); 2],
    pub lost_frames: [usize; 2],
}

impl Figures {
    pub fn latencies(&self, frames: usize) -> [(String, &Rounds); 3] {
        [
            ("chat one at a time".to_owned(), &self.chat),
            ("time to first chunk".to_owned(), &self.first_chunk),
            (
                format!(
                    "paced stream ({} × 1 stream × {frames} frames @ {PACE_MS} ms per round): per-chunk delay",
                    self.streams_per_round
                ),
                &self.stream,
            ),
        ]
    }

    pub fn json(&self) -> Value {
        json!({
            "chat": self.chat.json(),
            "first_chunk": self.first_chunk.json(),
            "paced_stream_per_chunk": self.stream.json(),
            "lambda_cpu_us_per_request": self.cpu[0].0,
            "lambda_cpu_us_per_chunk": self.cpu[0].1,
            "local_cpu_us_per_request": self.cpu[1].0,
            "local_cpu_us_per_chunk": self.cpu[1].1,
            "frames_lost_direct_local": self.lost_frames,
        })
    }
}

/// How many calls a cell makes: `rounds` rounds of `per_round` calls per arm for chat and time
/// to first chunk, `stream_rounds` rounds of paced streams. Fewer than B1's: an invocation through
/// the Lambda front door takes longer than a local request.
#[derive(Clone, Copy)]
pub struct Shape {
    pub rounds: usize,
    pub per_round: usize,
    pub stream_rounds: usize,
}

/// Chat one at a time, time to first chunk and a paced stream's per-chunk delay on `arms` (the
/// first the direct call), with the CPU the Lambda-mode process (and the local server) spent on
/// them. Paced streams: one at a time, `stream_rounds` rounds of 1 (smoke) or 2 per arm.
pub async fn measure(
    setup: &Setup<'_>,
    front: &Front,
    arms: &[Arm],
    shape: Shape,
) -> Result<Figures, String> {
    let Shape {
        rounds,
        per_round,
        stream_rounds,
    } = shape;
    let plan = setup.plan;
    let (http, direct, through, epoch) = (&setup.http, setup.direct, setup.through, setup.epoch);
    let target = move |arm: Arm| if arm == Arm::Local { through } else { direct };
    let pids = [front.function.pid(), setup.local.pid()];
    let cpu = || pids.map(cpu_ns);

    let before = cpu();
    let chat = interleaved(rounds, per_round, arms, move |arm| async move {
        match arm {
            Arm::Lambda => front.chat().await.map(|value| vec![value]),
            _ => Ok(round_trip(http, target(arm), "/chat/completions", CHAT)
                .await
                .into_iter()
                .collect()),
        }
    })
    .await?;
    let after_chat = cpu();
    let first = interleaved(rounds, per_round, arms, move |arm| async move {
        match arm {
            Arm::Lambda => front.first_chunk().await.map(|value| vec![value]),
            _ => Ok(first_chunk(http, target(arm)).await.into_iter().collect()),
        }
    })
    .await?;
    let after_first = cpu();
    let lost = [Cell::new(0), Cell::new(0)];
    let lost_ref = &lost;
    let streams_per_round = if plan.smoke { 1 } else { 2 };
    let stream = interleaved(
        stream_rounds,
        streams_per_round,
        arms,
        move |arm| async move {
            match arm {
                Arm::Lambda => front.paced(epoch).await,
                _ => {
                    let (delays, missing) =
                        paced_streams(http, target(arm), epoch, 1, plan.frames, PACE_MS).await;
                    let counter = &lost_ref[usize::from(arm == Arm::Local)];
                    counter.set(counter.get() + missing);
                    Ok(delays.0)
                }
            }
        },
    )
    .await?;
    let after_stream = cpu();

    // Per request: the chat phase's CPU over its calls. Per chunk: what a paced stream cost more
    // than the 3-frame one, over the chunks it had more, so the request's own cost drops out.
    let per_call = |from: [u64; 2], to: [u64; 2], calls: usize, at: usize| {
        to[at].saturating_sub(from[at]) as f64 / calls as f64 / 1e3
    };
    let extra_chunks = front
        .chunks_per_stream()
        .saturating_sub(SHORT_STREAM_CHUNKS)
        .max(1) as f64;
    let cpu = [0, 1].map(|at| {
        let per_request = per_call(before, after_chat, chat.calls, at);
        let per_short = per_call(after_chat, after_first, first.calls, at);
        let per_stream = per_call(after_first, after_stream, stream.calls, at);
        (
            per_request,
            ((per_stream - per_short) / extra_chunks).max(0.0),
        )
    });
    let cpu = if arms.contains(&Arm::Local) {
        cpu
    } else {
        [cpu[0], (f64::NAN, f64::NAN)]
    };
    Ok(Figures {
        chat,
        first_chunk: first,
        stream,
        streams_per_round,
        cpu,
        lost_frames: lost.map(Cell::into_inner),
    })
}

/// Exec → first invocation answered, `plan.startups` times, confined to the share of
/// `memory_mb` or not; with the CPU (ms) each start had used by then.
pub async fn cold_starts(
    plan: &Plan,
    memory_mb: u32,
    confined: bool,
    settings: &[(&str, &str)],
) -> Result<(Spread, Spread), String> {
    let mut times = Vec::with_capacity(plan.startups);
    let mut cpu = Vec::with_capacity(plan.startups);
    for _ in 0..plan.startups {
        let share = if confined {
            Some(CpuShare::create(memory_mb)?)
        } else {
            None
        };
        let front = Front::start(memory_mb, settings, share, plan.frames).await?;
        times.push(front.first_answered.as_secs_f64() * 1e3);
        cpu.push(front.start_cpu.as_secs_f64() * 1e3);
    }
    Ok((Spread::of(&times), Spread::of(&cpu)))
}
