//! A fake Lambda Runtime API on a free loopback port, for the benchmark's Lambda cells (B11, B12)
//! and for the test that holds it to the real `lambda_runtime` client (tests/it/bench_runtime_api.rs).
//! It speaks the protocol as that client does (lambda_runtime 1.5, `requests.rs`):
//! - `GET …/invocation/next` is a long poll, answered with the event and the
//!   `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn` and `-Trace-Id` headers;
//! - `POST …/invocation/{id}/response` in streaming mode (`Lambda-Runtime-Function-Response-Mode:
//!   streaming`, a chunked body) carries a JSON prelude (`statusCode`, `headers`, `cookies`), eight
//!   NUL bytes, then the response body; an error mid-stream may come as HTTP trailers
//!   (`Lambda-Runtime-Function-Error-Type` / `-Body`);
//! - `POST …/invocation/{id}/error` and `POST …/init/error` carry an error-type header and an
//!   `errorType`/`errorMessage` body.
//!
//! It records, for each invocation, when it was queued, the prelude, every body chunk with the
//! time it arrived, trailers and errors. It judges none of it: its callers decide what is right.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

const PREFIX: &str = "/2018-06-01/runtime/";
/// Ends the prelude of a streamed HTTP-integration response.
const DELIMITER: [u8; 8] = [0; 8];
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:openai-proxy";
/// The content type of a function URL's streamed response (`Content-Type` of the POST).
pub const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";
/// Each invocation's deadline: the template's timeout, Lambda's maximum.
const TIMEOUT: Duration = Duration::from_secs(900);

/// What the Runtime API saw of one invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub queued_at: Instant,
    pub response: Option<Streamed>,
    pub error: Option<Reported>,
    /// When the response's body ended (whole or broken) or the error arrived.
    pub finished_at: Option<Instant>,
    event: Bytes,
}

/// A response as posted: the POST's own headers, the prelude, and the body as it arrived.
#[derive(Debug, Clone, Default)]
pub struct Streamed {
    /// `Lambda-Runtime-Function-Response-Mode`.
    pub mode: Option<String>,
    pub content_type: Option<String>,
    /// From the prelude (absent until its eight NULs arrive, and for a response not streamed).
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub cookies: Vec<String>,
    /// Body bytes after the prelude, each read with the time it arrived.
    pub chunks: Vec<(Instant, Bytes)>,
    pub trailers: Vec<(String, String)>,
    /// The body ended with its last chunk and the prelude was whole.
    pub complete: bool,
    /// Why the body is not whole: a cut connection, a missing or malformed prelude.
    pub broken: Option<String>,
}

impl Streamed {
    pub fn body(&self) -> Vec<u8> {
        self.chunks
            .iter()
            .flat_map(|(_, chunk)| chunk.to_vec())
            .collect()
    }

    /// A prelude header, by name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// An error posted to `/invocation/{id}/error` or `/init/error`.
#[derive(Debug, Clone, Default)]
pub struct Reported {
    /// The `Lambda-Runtime-Function-Error-Type` header.
    pub type_header: Option<String>,
    pub error_type: String,
    pub error_message: String,
}

pub struct FakeRuntimeApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// Set on drop: the accept loop and every connection end, long polls included.
    stop: watch::Sender<bool>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    queued: Notify,
    changed: Notify,
    ids: AtomicU64,
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    invocations: HashMap<String, Invocation>,
    init_error: Option<Reported>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Invocation)) {
        if let Some(invocation) = self.state().invocations.get_mut(id) {
            change(invocation);
        }
        self.changed.notify_waiters();
    }

    fn update_response(&self, id: &str, change: impl FnOnce(&mut Streamed)) {
        self.update(id, |invocation| {
            if let Some(response) = invocation.response.as_mut() {
                change(response);
            }
        });
    }
}

impl FakeRuntimeApi {
    pub async fn start() -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|err| format!("cannot bind the fake Runtime API: {err}"))?;
        let addr = listener.local_addr().map_err(|err| err.to_string())?;
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = watch::channel(false);
        let serving = shared.clone();
        tokio::spawn(async move {
            let mut stopping = stopped.clone();
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stopping.wait_for(|stop| *stop) => return,
                };
                let Ok((stream, _)) = accepted else { return };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, serving.clone(), stopped.clone()));
            }
        });
        Ok(Self { addr, shared, stop })
    }

    /// The `AWS_LAMBDA_RUNTIME_API` value (host and port, as Lambda gives it).
    pub fn runtime_api(&self) -> String {
        self.addr.to_string()
    }

    /// Queues an invocation of `event`; returns its request id.
    pub fn invoke(&self, event: Bytes) -> String {
        let n = self.shared.ids.fetch_add(1, Ordering::Relaxed);
        let id = format!("8f5c3b1e-0000-4000-8000-{n:012x}");
        let mut state = self.shared.state();
        let invocation = Invocation {
            queued_at: Instant::now(),
            response: None,
            error: None,
            finished_at: None,
            event,
        };
        state.invocations.insert(id.clone(), invocation);
        state.queue.push_back(id.clone());
        drop(state);
        self.shared.queued.notify_waiters();
        id
    }

    /// Waits, at most `timeout`, until what was seen of invocation `id` satisfies `done`.
    pub async fn wait_until(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Invocation) -> bool,
    ) -> bool {
        let wait = async {
            loop {
                let changed = self.shared.changed.notified();
                if self.shared.state().invocations.get(id).is_some_and(&done) {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Invocation `id` once it has finished (its record is handed over and forgotten here), or
    /// `None` if it has not within `timeout`.
    pub async fn finished(&self, id: &str, timeout: Duration) -> Option<Invocation> {
        let done = self
            .wait_until(id, timeout, |invocation| invocation.finished_at.is_some())
            .await;
        done.then(|| self.shared.state().invocations.remove(id))
            .flatten()
    }

    /// What the function posted to `/init/error`, if it did.
    pub fn init_error(&self) -> Option<Reported> {
        self.shared.state().init_error.clone()
    }
}

impl Drop for FakeRuntimeApi {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One connection from the function's runtime client, until it closes or the fake stops.
async fn serve(stream: TcpStream, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(answer(request, &shared).await) }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = stopped.wait_for(|stop| *stop) => {}
    }
}

async fn answer(request: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let route = path.strip_prefix(PREFIX).unwrap_or_default();
    if request.method() == Method::GET && route == "invocation/next" {
        return next(shared).await;
    }
    if request.method() != Method::POST {
        return reply(StatusCode::NOT_FOUND, "NotFound", "no such route");
    }
    if route == "init/error" {
        let report = reported(request).await;
        shared.state().init_error = Some(report);
        shared.changed.notify_waiters();
        return accepted();
    }
    let Some((id, what)) = route
        .strip_prefix("invocation/")
        .and_then(|rest| rest.split_once('/'))
    else {
        return reply(StatusCode::NOT_FOUND, "NotFound", "no such route");
    };
    let finished = shared
        .state()
        .invocations
        .get(id)
        .map(|invocation| invocation.finished_at.is_some());
    match (finished, what) {
        (None, _) => reply(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "no such invocation",
        ),
        (Some(true), _) => reply(
            StatusCode::BAD_REQUEST,
            "InvalidStateTransition",
            "this invocation was already answered",
        ),
        (Some(false), "response") => {
            receive_response(id, request, shared).await;
            accepted()
        }
        (Some(false), "error") => {
            let report = reported(request).await;
            shared.update(id, |invocation| {
                invocation.error = Some(report);
                invocation.finished_at = Some(Instant::now());
            });
            accepted()
        }
        _ => reply(StatusCode::NOT_FOUND, "NotFound", "no such route"),
    }
}

/// The next queued invocation, waiting for one if none is queued (a long poll, as Lambda's).
async fn next(shared: &Shared) -> Response<Full<Bytes>> {
    let (id, event) = loop {
        let queued = shared.queued.notified();
        {
            let mut state = shared.state();
            let id = state.queue.pop_front();
            let found = id.and_then(|id| {
                let event = state.invocations.get(&id)?.event.clone();
                Some((id, event))
            });
            if let Some(found) = found {
                break found;
            }
        }
        queued.await;
    };
    let now = SystemTime::now();
    let deadline_ms = now
        .checked_add(TIMEOUT)
        .and_then(|deadline| deadline.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |deadline| deadline.as_millis());
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let n = shared.ids.load(Ordering::Relaxed);
    Response::builder()
        .header("Lambda-Runtime-Aws-Request-Id", id)
        .header("Lambda-Runtime-Deadline-Ms", deadline_ms.to_string())
        .header("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN)
        .header(
            "Lambda-Runtime-Trace-Id",
            format!("Root=1-{seconds:08x}-{n:024x};Parent={n:016x};Sampled=0"),
        )
        .header("Content-Type", "application/json")
        .body(Full::new(event))
        .unwrap_or_default()
}

/// Reads a posted response to its end, recording each piece as it arrives.
async fn receive_response(id: &str, request: Request<Incoming>, shared: &Shared) {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let mode = header("lambda-runtime-function-response-mode");
    // Only a streamed response has a prelude; a buffered one is the body alone.
    let mut prelude = (mode.as_deref() == Some("streaming")).then(Vec::new);
    let response = Streamed {
        mode,
        content_type: header("content-type"),
        ..Streamed::default()
    };
    shared.update(id, |invocation| invocation.response = Some(response));
    let mut body = request.into_body();
    loop {
        let frame = body.frame().await;
        let at = Instant::now();
        let data = match frame {
            None => {
                let whole = prelude.is_none();
                shared.update(id, |invocation| {
                    if let Some(response) = invocation.response.as_mut() {
                        response.complete = whole && response.broken.is_none();
                        if !whole {
                            response.broken = Some("the body ended inside the prelude".to_owned());
                        }
                    }
                    invocation.finished_at = Some(at);
                });
                return;
            }
            Some(Err(err)) => {
                shared.update(id, |invocation| {
                    if let Some(response) = invocation.response.as_mut() {
                        response.broken = Some(format!("the body broke off: {err}"));
                    }
                    invocation.finished_at = Some(at);
                });
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let trailers: Vec<(String, String)> = trailers
                            .iter()
                            .map(|(name, value)| {
                                let value = String::from_utf8_lossy(value.as_bytes());
                                (name.as_str().to_owned(), value.into_owned())
                            })
                            .collect();
                        shared.update_response(id, |response| response.trailers.extend(trailers));
                    }
                    continue;
                }
            },
        };
        let data = match prelude.as_mut() {
            None => data,
            Some(pending) => {
                pending.extend_from_slice(&data);
                let Some(end) = pending.windows(8).position(|w| w == DELIMITER) else {
                    continue;
                };
                let rest = Bytes::copy_from_slice(&pending[end + DELIMITER.len()..]);
                let parsed = parse_prelude(&pending[..end]);
                prelude = None;
                shared.update_response(id, |response| match parsed {
                    Ok((status, headers, cookies)) => {
                        response.status = Some(status);
                        response.headers = headers;
                        response.cookies = cookies;
                    }
                    Err(problem) => response.broken = Some(problem),
                });
                rest
            }
        };
        if !data.is_empty() {
            shared.update_response(id, |response| response.chunks.push((at, data)));
        }
    }
}

type Prelude = (u16, Vec<(String, String)>, Vec<String>);

fn parse_prelude(text: &[u8]) -> Result<Prelude, String> {
    let prelude: serde_json::Value = serde_json::from_slice(text)
        .map_err(|err| format!("the prelude is not JSON ({err}): {text:?}"))?;
    let status = prelude["statusCode"]
        .as_u64()
        .and_then(|status| u16::try_from(status).ok())
        .ok_or_else(|| format!("the prelude has no statusCode: {prelude}"))?;
    let headers = prelude["headers"]
        .as_object()
        .map(|headers| {
            headers
                .iter()
                .map(|(name, value)| {
                    let value = match value {
                        serde_json::Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    (name.clone(), value)
                })
                .collect()
        })
        .unwrap_or_default();
    let cookies = prelude["cookies"]
        .as_array()
        .map(|cookies| {
            cookies
                .iter()
                .filter_map(|cookie| cookie.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok((status, headers, cookies))
}

async fn reported(request: Request<Incoming>) -> Reported {
    let type_header = request
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = request
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let field = |name: &str| json[name].as_str().unwrap_or_default().to_owned();
    Reported {
        type_header,
        error_type: field("errorType"),
        error_message: field("errorMessage"),
    }
}

fn accepted() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .body(Full::new(Bytes::from_static(br#"{"status":"OK"}"#)))
        .unwrap_or_default()
}

fn reply(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"errorType": error_type, "errorMessage": message});
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}
