//! The proxy behind its Lambda front door, as Lambda runs it: the release binary with
//! `AWS_LAMBDA_RUNTIME_API` pointing at the benchmark's fake Runtime API (`runtime_api.rs`), each
//! invocation a function-URL event (payload 2.0, `events/chat.json`'s shape) with the bench's
//! wrapper key. Every measurement here checks what it times (the answer streamed, status 200,
//! the whole body, every frame in order): anything else is an error, so a broken Lambda path can
//! never yield figures.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::WRAPPER_KEY;
use crate::cells::body;
use crate::cpu_share::CpuShare;
use crate::fake::chat_completion;
use crate::function::{Function, cpu_ns};
use crate::runtime_api::{FakeRuntimeApi, HTTP_INTEGRATION, Invocation, Streamed};

/// B1's request.
pub const CHAT: &str = r#"{"model":"chat","messages":[{"role":"user","content":"Hello"}]}"#;
/// The function-URL event the bench's events are made from.
const TEMPLATE: &str = include_str!("../../events/chat.json");
/// No answer by then is a failure (a paced stream of 50 frames takes about 1 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// The pace of B4's streams.
pub const PACE_MS: u64 = 20;

/// A function-URL event for `POST /v1/chat/completions` with `body`, the bench's wrapper key.
pub fn event(body: &str, accept: &str) -> Result<Bytes, String> {
    let mut event: serde_json::Value =
        serde_json::from_str(TEMPLATE).map_err(|err| format!("events/chat.json: {err}"))?;
    for (pointer, value) in [
        ("/headers/authorization", format!("Bearer {WRAPPER_KEY}")),
        ("/headers/accept", accept.to_owned()),
        ("/body", body.to_owned()),
    ] {
        *event
            .pointer_mut(pointer)
            .ok_or_else(|| format!("events/chat.json has no {pointer}"))? = value.into();
    }
    serde_json::to_vec(&event)
        .map(Bytes::from)
        .map_err(|err| err.to_string())
}

/// A function started and answering, with the events the cells send it.
pub struct Front {
    pub api: FakeRuntimeApi,
    pub function: Function,
    chat: Bytes,
    first_chunk: Bytes,
    paced: Bytes,
    frames: usize,
    expected_chat: Vec<u8>,
    /// Exec → last byte of the first answer (a cold start).
    pub first_answered: Duration,
    /// The process's CPU time when the first answer had arrived (its threads then alive; one
    /// that had already exited is not counted): what a start costs, which under a small share
    /// decides how many CFS periods it spans.
    pub start_cpu: Duration,
}

impl Front {
    /// Starts a function and waits for its first answer (and, with a share, checks that the
    /// process is in it). Paced streams are `frames` frames `PACE_MS` apart.
    pub async fn start(
        memory_mb: u32,
        settings: &[(&str, &str)],
        share: Option<CpuShare>,
        frames: usize,
    ) -> Result<Self, String> {
        let chat = event(CHAT, "application/json")?;
        let first_chunk = event(&body("sse:0:3"), "text/event-stream")?;
        let paced = event(
            &body(&format!("sse:{PACE_MS}:{frames}")),
            "text/event-stream",
        )?;
        let api = FakeRuntimeApi::start().await?;
        let function = Function::start(&api, memory_mb, settings, share)?;
        let mut front = Self {
            api,
            function,
            chat,
            first_chunk,
            paced,
            frames,
            expected_chat: chat_completion().into_bytes(),
            first_answered: Duration::ZERO,
            start_cpu: Duration::ZERO,
        };
        let (_, response) = front.answer(&front.chat).await?;
        front.first_answered = front.chat_answered(&response)? - front.function.exec_at;
        front.start_cpu = Duration::from_nanos(cpu_ns(front.function.pid()));
        if let Some(share) = &front.function.share
            && !share.holds(front.function.pid())
        {
            return Err("the Lambda-mode proxy is not in its cgroup".to_owned());
        }
        Ok(front)
    }

    /// Queued → last body byte of a chat answer, in µs.
    pub async fn chat(&self) -> Result<f64, String> {
        let (queued_at, response) = self.answer(&self.chat).await?;
        Ok(micros(self.chat_answered(&response)? - queued_at))
    }

    /// When the last byte of a chat answer arrived, if the body is the fake upstream's.
    fn chat_answered(&self, response: &Streamed) -> Result<Instant, String> {
        match response.chunks.last() {
            Some((last, _)) if response.body() == self.expected_chat => Ok(*last),
            _ => Err(format!(
                "a wrong chat body through the Lambda front door: {}",
                String::from_utf8_lossy(&response.body())
            )),
        }
    }

    /// Queued → first body chunk of a streamed answer, in µs.
    pub async fn first_chunk(&self) -> Result<f64, String> {
        let (queued_at, response) = self.answer(&self.first_chunk).await?;
        frames(&response, 3)?;
        let first = response.chunks.first().map(|(at, _)| *at);
        Ok(micros(first.unwrap_or(queued_at) - queued_at))
    }

    /// Each frame's delay in a paced stream (arrival at the Runtime API minus the send time the
    /// fake upstream wrote into it), in µs.
    pub async fn paced(&self, epoch: Instant) -> Result<Vec<f64>, String> {
        let (_, response) = self.answer(&self.paced).await?;
        Ok(frames(&response, self.frames)?
            .into_iter()
            .map(|(at, sent)| {
                let arrived = at.saturating_duration_since(epoch).as_nanos() as f64;
                (arrived - sent as f64).max(0.0) / 1e3
            })
            .collect())
    }

    /// Chunks (frames and `[DONE]`) in one paced stream.
    pub fn chunks_per_stream(&self) -> usize {
        self.frames + 1
    }

    /// Invokes `event` and waits for its answer, checked: streamed as a function URL's response,
    /// status 200, whole, no error. Returns when it was queued, and the response.
    async fn answer(&self, event: &Bytes) -> Result<(Instant, Streamed), String> {
        let id = self.api.invoke(event.clone());
        let deadline = Instant::now() + ANSWER_WITHIN;
        loop {
            let slice = Duration::from_millis(250);
            if let Some(invocation) = self.api.finished(&id, slice).await {
                return answered(invocation)
                    .map_err(|problem| format!("{problem}\n{}", self.function.log_tail()));
            }
            let exited = self.function.exited();
            if exited.is_some() || Instant::now() > deadline {
                let init = self
                    .api
                    .init_error()
                    .map(|error| {
                        format!(
                            " (init error {}: {})",
                            error.error_type, error.error_message
                        )
                    })
                    .unwrap_or_default();
                let what = match exited {
                    Some(status) => format!("the Lambda-mode proxy exited ({status})"),
                    None => "no answer from the Lambda-mode proxy".to_owned(),
                };
                return Err(format!("{what}{init}:\n{}", self.function.log_tail()));
            }
        }
    }
}

pub fn answered(invocation: Invocation) -> Result<(Instant, Streamed), String> {
    if let Some(error) = &invocation.error {
        return Err(format!(
            "the invocation was reported failed ({:?}): {}: {}",
            error.type_header, error.error_type, error.error_message
        ));
    }
    let response = invocation
        .response
        .ok_or("the invocation finished without a response")?;
    let problem = if response.mode.as_deref() != Some("streaming") {
        Some(format!("not streamed (response mode {:?})", response.mode))
    } else if response.content_type.as_deref() != Some(HTTP_INTEGRATION) {
        Some(format!("content type {:?}", response.content_type))
    } else if let Some(broken) = &response.broken {
        Some(broken.clone())
    } else if !response.complete {
        Some("the body is not complete".to_owned())
    } else if !response.trailers.is_empty() {
        Some(format!("an error in trailers: {:?}", response.trailers))
    } else if response.status != Some(200) {
        Some(format!(
            "status {:?}: {}",
            response.status,
            String::from_utf8_lossy(&response.body())
        ))
    } else if !response.cookies.is_empty() {
        // The fake upstream sets none, so none may appear.
        Some(format!("cookies {:?}", response.cookies))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(format!("a Lambda answer went wrong: {problem}")),
        None => Ok((invocation.queued_at, response)),
    }
}

/// The SSE frames of a streamed answer, each with the time the chunk that completed it arrived
/// and the send time it carries; exactly `expected` of them, in order, then `[DONE]`.
fn frames(response: &Streamed, expected: usize) -> Result<Vec<(Instant, u64)>, String> {
    if !response
        .header("content-type")
        .is_some_and(|kind| kind.starts_with("text/event-stream"))
    {
        return Err(format!(
            "a stream without its content type: {:?}",
            response.headers
        ));
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut frames = Vec::with_capacity(expected);
    let mut done = false;
    for (at, chunk) in &response.chunks {
        pending.extend_from_slice(chunk);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = pending.drain(..end + 2).collect();
            if frame.starts_with(b"data: [DONE]") {
                done = true;
                continue;
            }
            let (sent, index) = number_after(&frame, "\"t\":")
                .zip(number_after(&frame, "\"i\":"))
                .ok_or_else(|| {
                    format!(
                        "a frame without its send time or index: {}",
                        String::from_utf8_lossy(&frame)
                    )
                })?;
            if done || index != frames.len() as u64 {
                return Err(format!(
                    "frames lost or out of order: frame {index} after {} frames",
                    frames.len()
                ));
            }
            frames.push((*at, sent));
        }
    }
    if !done || !pending.is_empty() || frames.len() != expected {
        return Err(format!(
            "a stream lost chunks: {} of {expected} frames, [DONE] {done}, {} bytes left over",
            frames.len(),
            pending.len()
        ));
    }
    Ok(frames)
}

/// The number after `key` in `frame`.
fn number_after(frame: &[u8], key: &str) -> Option<u64> {
    let text = std::str::from_utf8(frame).ok()?;
    let rest = text.split(key).nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

pub fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
