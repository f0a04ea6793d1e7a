//! The fast fake upstream the benchmark measures against: axum on loopback with TCP_NODELAY, every
//! answer precomputed. The request's `model` picks the answer:
//!   `chat`             a small chat completion, at once
//!   `sse:<pace>:<n>`   n SSE frames, `pace` ms apart, each carrying its send time
//!   `emb:<dims>`       an embeddings response with `dims` floats

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

/// Frame payload padding: OpenAI's chat chunks are about this long.
pub const FRAME_PADDING: usize = 160;

pub struct Fake {
    pub addr: SocketAddr,
}

#[derive(Clone)]
struct Answers {
    epoch: Instant,
    chat: Bytes,
    embeddings_1536: Bytes,
    embeddings_4096: Bytes,
}

/// Nanoseconds since the benchmark's epoch: the clock both the fake and the client read.
pub fn since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

pub async fn start(epoch: Instant) -> Result<Fake, String> {
    let answers = Arc::new(Answers {
        epoch,
        chat: Bytes::from(chat_completion()),
        embeddings_1536: Bytes::from(embeddings(1536)),
        embeddings_4096: Bytes::from(embeddings(4096)),
    });
    let app = axum::Router::new().fallback(answer).with_state(answers);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|err| format!("cannot bind the fake upstream: {err}"))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Fake { addr })
}

async fn answer(State(answers): State<Arc<Answers>>, body: Bytes) -> Response {
    let model = model_of(&body);
    if let Some(spec) = model.strip_prefix("sse:") {
        let mut parts = spec.split(':');
        let pace = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let frames = parts.next().and_then(|n| n.parse().ok()).unwrap_or(3);
        return sse(answers.epoch, Duration::from_millis(pace), frames);
    }
    let json = match model {
        "emb:1536" => answers.embeddings_1536.clone(),
        "emb:4096" => answers.embeddings_4096.clone(),
        _ => answers.chat.clone(),
    };
    ([(CONTENT_TYPE, "application/json")], json).into_response()
}

fn model_of(body: &[u8]) -> &str {
    // `"model":"<value>"`, found without a JSON parse so the fake stays cheap.
    let text = std::str::from_utf8(body).unwrap_or_default();
    text.split("\"model\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
}

fn sse(epoch: Instant, pace: Duration, frames: u32) -> Response {
    let stream = futures_util::stream::unfold(0u32, move |index| async move {
        if index > frames {
            return None;
        }
        if index > 0 && !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        let frame = if index == frames {
            Bytes::from_static(b"data: [DONE]\n\n")
        } else {
            Bytes::from(format!(
                "data: {{\"t\":{},\"i\":{index},\"pad\":\"{}\"}}\n\n",
                since(epoch),
                "x".repeat(FRAME_PADDING)
            ))
        };
        Some((Ok::<_, std::convert::Infallible>(frame), index + 1))
    });
    Response::builder()
        .header(CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

pub fn chat_completion() -> String {
    r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}"#.to_owned()
}

/// An embeddings body the size OpenAI sends: floats printed with their usual precision.
pub fn embeddings(dims: usize) -> String {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let floats: Vec<String> = (0..dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let value = (state % 2_000_000) as f64 / 1e8 - 0.01;
            format!("{value:.9}")
        })
        .collect();
    format!(
        r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[{}]}}],"model":"text-embedding-3-small","usage":{{"prompt_tokens":5,"total_tokens":5}}}}"#,
        floats.join(",")
    )
}

/// A bare TCP relay in front of the fake: each connection is copied byte for byte to a fresh
/// upstream connection. It parses nothing, so what it adds is the cost of one more loopback hop
/// through another process on this machine, the floor under any proxy that terminates the
/// client's connection. Runs in its own process (`--relay-to`), which reads the address from
/// stderr as it does the proxy's. `listen` may have port 0 (any free port).
pub async fn relay(target: SocketAddr, listen: SocketAddr) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|err| format!("cannot bind the relay: {err}"))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = inbound.set_nodelay(true);
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok(addr)
}
