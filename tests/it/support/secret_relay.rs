//! A Secrets Manager relay in front of moto that makes `openai-proxy keys` races deterministic:
//! it gathers concurrent reads, writes another edit between a command's read and its stage
//! move, or loses the answer to a stage move; and counts every call by operation. (The relay in
//! moto.rs serves the proxy's reads; this one serves the command's writes.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::keys_cli::current;

/// What the relay does besides forwarding.
#[derive(Default)]
struct Plan {
    /// Hold the `GetSecretValue` calls numbered in `(after, until]` until the last of them has
    /// arrived.
    gather_reads: Option<(usize, usize)>,
    /// Put this document as the new current version (with a plain `PutSecretValue`) before
    /// forwarding the first `UpdateSecretVersionStage`: another edit wins the race.
    other_edit: Option<(String, Value)>,
    /// Forward the first `UpdateSecretVersionStage`, but answer it with a 500, as if the answer
    /// had been lost on the way back.
    lose_stage_answer: bool,
}

/// Forwards every Secrets Manager call to moto, counting them by operation, and makes the race
/// the test asks for.
pub struct SecretRelay {
    pub endpoint: String,
    calls: Arc<watch::Sender<HashMap<String, usize>>>,
    plan: Arc<Mutex<Plan>>,
    task: JoinHandle<()>,
}

impl SecretRelay {
    pub async fn start(moto_endpoint: &str, secret_id: &str) -> Self {
        let calls = Arc::new(watch::Sender::new(HashMap::new()));
        let plan = Arc::new(Mutex::new(Plan::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            target: moto_endpoint.to_owned(),
            secret_id: secret_id.to_owned(),
            moto: super::moto::client_for(moto_endpoint),
            http: super::http_client(),
            calls: calls.clone(),
            plan: plan.clone(),
            stage_moves_seen: AtomicBool::new(false),
        });
        let app = axum::Router::new().fallback(move |request: Request| {
            let shared = shared.clone();
            async move { shared.handle(request).await }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            endpoint: format!("http://{addr}"),
            calls,
            plan,
            task,
        }
    }

    /// The next `reads` `GetSecretValue` calls are each held until all have arrived.
    pub fn gather_reads(&self, reads: usize) {
        let after = self.calls("GetSecretValue");
        self.plan.lock().unwrap().gather_reads = Some((after, after + reads));
    }

    /// Before the first stage move is forwarded, `member` with `entry` is added to the current
    /// document by another writer, whose version becomes current.
    pub fn other_edit_before_the_stage_move(&self, member: &str, entry: Value) {
        self.plan.lock().unwrap().other_edit = Some((member.to_owned(), entry));
    }

    /// The first stage move reaches moto, but its answer is a 500.
    pub fn lose_the_stage_moves_answer(&self) {
        self.plan.lock().unwrap().lose_stage_answer = true;
    }

    /// How many calls of `operation` (e.g. `UpdateSecretVersionStage`) have arrived.
    pub fn calls(&self, operation: &str) -> usize {
        self.calls
            .borrow()
            .get(operation)
            .copied()
            .unwrap_or_default()
    }
}

impl Drop for SecretRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    target: String,
    secret_id: String,
    moto: Client,
    http: reqwest::Client,
    calls: Arc<watch::Sender<HashMap<String, usize>>>,
    plan: Arc<Mutex<Plan>>,
    stage_moves_seen: AtomicBool,
}

impl Shared {
    async fn handle(&self, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let operation = parts
            .headers
            .get("x-amz-target")
            .and_then(|target| target.to_str().ok())
            .and_then(|target| target.strip_prefix("secretsmanager."))
            .unwrap_or_default()
            .to_owned();
        let mut arrived = 0;
        self.calls.send_modify(|calls| {
            let count = calls.entry(operation.clone()).or_default();
            *count += 1;
            arrived = *count;
        });
        let mut lose_answer = false;
        match operation.as_str() {
            "GetSecretValue" => {
                let gather = self.plan.lock().unwrap().gather_reads;
                if let Some((after, until)) = gather
                    && arrived > after
                    && arrived <= until
                {
                    let mut calls = self.calls.subscribe();
                    let all_here = calls.wait_for(|calls| {
                        calls
                            .get("GetSecretValue")
                            .is_some_and(|reads| *reads >= until)
                    });
                    let gathered = tokio::time::timeout(Duration::from_secs(30), all_here).await;
                    assert!(
                        matches!(gathered, Ok(Ok(_))),
                        "the gathered reads never all arrived"
                    );
                }
            }
            "UpdateSecretVersionStage" if !self.stage_moves_seen.swap(true, Ordering::SeqCst) => {
                let (other_edit, lose) = {
                    let mut plan = self.plan.lock().unwrap();
                    (plan.other_edit.take(), plan.lose_stage_answer)
                };
                if let Some((member, entry)) = other_edit {
                    self.write_other_edit(&member, entry).await;
                }
                lose_answer = lose;
            }
            _ => {}
        }
        let body = body.collect().await.unwrap().to_bytes();
        let uri = parts.uri.path_and_query().map_or("/", |path| path.as_str());
        let forwarded = self
            .http
            .request(parts.method, format!("{}{uri}", self.target))
            .headers(parts.headers)
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        let answer = match forwarded {
            Ok(answer) => answer,
            Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
        };
        if lose_answer {
            let _ = answer.bytes().await;
            let body = r#"{"__type":"InternalServiceError","message":"the answer was lost"}"#;
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("content-type", "application/x-amz-json-1.1")],
                body,
            )
                .into_response();
        }
        let mut response = Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            if name != "transfer-encoding" && name != "connection" {
                response = response.header(name, value);
            }
        }
        let bytes = answer.bytes().await.unwrap_or_default();
        response.body(Body::from(bytes)).unwrap()
    }

    /// Another operator's edit, made the way the AWS CLI makes one: read the current document,
    /// add a member, `PutSecretValue` (which makes the new version current).
    async fn write_other_edit(&self, member: &str, entry: Value) {
        let (_, mut document) = current(&self.moto, &self.secret_id).await;
        document["keys"][member] = entry;
        self.moto
            .put_secret_value()
            .secret_id(&self.secret_id)
            .secret_string(document.to_string())
            .send()
            .await
            .unwrap();
    }
}
