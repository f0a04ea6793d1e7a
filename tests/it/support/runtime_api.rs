//! A fake Lambda Runtime API on a free loopback port: it hands the function the invocations a
//! test queues, collects the responses the function posts, and can cut the connection of a chosen
//! invocation's response the moment it starts, as a Runtime API whose caller has gone may.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Shared {
    queued: Mutex<VecDeque<(String, Bytes)>>,
    queued_changed: Notify,
    cut: Mutex<HashSet<String>>,
    responses: Mutex<Vec<(String, Bytes)>>,
    responded: Notify,
}

pub struct FakeRuntimeApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeRuntimeApi {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, serving.clone()));
            }
        });
        Self { addr, shared, task }
    }

    /// The `AWS_LAMBDA_RUNTIME_API` value (host and port, as Lambda gives it).
    pub fn runtime_api(&self) -> String {
        self.addr.to_string()
    }

    /// Queues an invocation of `event` (a function-URL payload).
    pub fn invoke(&self, request_id: &str, event: &str) {
        self.shared
            .queued
            .lock()
            .unwrap()
            .push_back((request_id.to_owned(), Bytes::from(event.to_owned())));
        self.shared.queued_changed.notify_waiters();
    }

    /// The connection that posts this invocation's response is closed as soon as it begins.
    pub fn cut_response(&self, request_id: &str) {
        self.shared
            .cut
            .lock()
            .unwrap()
            .insert(request_id.to_owned());
    }

    /// Waits (bounded) for the whole response body the function posted for `request_id`.
    pub async fn response(&self, request_id: &str) -> Bytes {
        let wait = async {
            loop {
                let responded = self.shared.responded.notified();
                if let Some((_, body)) = self
                    .shared
                    .responses
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(id, _)| id == request_id)
                {
                    return body.clone();
                }
                responded.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("the function never responded to {request_id}"))
    }
}

impl Drop for FakeRuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection from the function's runtime client; dropped (closed) when a cut response
/// begins on it.
async fn serve_connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let cut_now = Arc::new(Notify::new());
    let cut_signal = cut_now.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let (shared, cut_signal) = (shared.clone(), cut_signal.clone());
        async move { Ok::<_, Infallible>(answer(request, &shared, &cut_signal).await) }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        () = cut_now.notified() => {}
    }
}

async fn answer(
    request: Request<Incoming>,
    shared: &Shared,
    cut_signal: &Notify,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    if path.ends_with("/invocation/next") {
        return next_invocation(shared).await;
    }
    let request_id = path
        .split("/invocation/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    if path.ends_with("/response") && shared.cut.lock().unwrap().contains(&request_id) {
        cut_signal.notify_one();
        return std::future::pending().await;
    }
    let body = request
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    shared.responses.lock().unwrap().push((request_id, body));
    shared.responded.notify_waiters();
    Response::builder()
        .status(202)
        .body(Full::new(Bytes::from_static(b"{\"status\":\"OK\"}")))
        .unwrap()
}

/// The next queued invocation, waiting for one if none is queued (a long poll, as Lambda's).
async fn next_invocation(shared: &Shared) -> Response<Full<Bytes>> {
    let (request_id, event) = loop {
        let changed = shared.queued_changed.notified();
        if let Some(next) = shared.queued.lock().unwrap().pop_front() {
            break next;
        }
        changed.await;
    };
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(300);
    Response::builder()
        .header("lambda-runtime-aws-request-id", request_id)
        .header(
            "lambda-runtime-deadline-ms",
            deadline.as_millis().to_string(),
        )
        .header(
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:openai-proxy",
        )
        .header("content-type", "application/json")
        .body(Full::new(event))
        .unwrap()
}
