//! Fixtures for the limits tests: the built proxy over a limits table (`limits_store.rs` reads
//! it), answers read whole, and a fake upstream with the few extra behaviours limits need (a
//! failed answer, a stream that never ends and says when it is dropped, upstream rate-limit
//! headers). Windows are real UTC minutes, so a test that counts in one starts early enough in it
//! (`fresh_minute`) and says so plainly when its requests straddled two.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::oneshot;

use super::moto::{ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use super::upstream::{FakeUpstream, Received};
use super::{BinaryProxy, TempFile, openai};

/// Bounds every request a limits test makes, and every wait on the fake or the table.
pub const WAIT: Duration = Duration::from_secs(30);

/// A request this close to a minute's end may be counted in the next one: a test that counts in
/// one minute starts with at least this much of it left.
const MINUTE_MARGIN: Duration = Duration::from_secs(20);

/// Sleeps (less than `MINUTE_MARGIN`) until the current UTC minute has at least `MINUTE_MARGIN`
/// left, and returns that minute's start (Unix seconds).
pub async fn fresh_minute() -> u64 {
    let now = since_epoch();
    let into_minute = Duration::new(now.as_secs() % 60, now.subsec_nanos());
    let left = Duration::from_secs(60) - into_minute;
    if left < MINUTE_MARGIN {
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
    minute_now()
}

/// The current UTC minute's start, Unix seconds.
pub fn minute_now() -> u64 {
    let seconds = since_epoch().as_secs();
    seconds - seconds % 60
}

fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Fails with a clear message if the minute is no longer `started`: counts spread over two
/// windows cannot be compared with one limit.
pub fn assert_same_minute(started: u64) {
    let now = minute_now();
    assert_eq!(
        now, started,
        "the requests straddled two UTC minutes (started in the one at {started}, ended in the \
         one at {now}) although {MINUTE_MARGIN:?} of the first were left: the run was too slow \
         to count in one window"
    );
}

/// The proxy's environment, built up by the test, then started as the binary.
#[derive(Clone)]
pub struct ProxyEnv {
    vars: Vec<(String, String)>,
}

impl ProxyEnv {
    /// A local proxy over the key file `keys` forwarding to `upstream`, logging request lines
    /// as JSON and writing EMF records to stdout.
    pub fn new(keys: &TempFile, upstream: &FakeUpstream) -> Self {
        let vars = [
            ("KEY_MAP_FILE", keys.path_str().to_owned()),
            ("UPSTREAM_BASE_URL", upstream.base_url()),
            ("LOG_FORMAT", "json".to_owned()),
            ("RUST_LOG", "info".to_owned()),
            ("METRICS_EMF", "true".to_owned()),
        ];
        Self {
            vars: vars
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
        }
    }

    /// Counters in `table` at the DynamoDB endpoint `endpoint` (moto's, or a closed port).
    pub fn table(self, endpoint: &str, table: &str) -> Self {
        self.set("LIMITS_TABLE", table)
            .set("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
            .set("AWS_REGION", REGION)
            .set("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .set("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    }

    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.vars.retain(|(set, _)| set != name);
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn start(&self) -> BinaryProxy {
        let vars: Vec<(&str, &str)> = self
            .vars
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        BinaryProxy::start(&vars)
    }
}

/// Stops `proxy`, checks that none of `keys` appears in anything it wrote, and returns its
/// request log lines (JSON) and EMF records.
pub fn stop(proxy: BinaryProxy, keys: &[&str]) -> (Vec<Value>, Vec<Value>) {
    let (log, stdout) = proxy.stop_with_stdout();
    for key in keys {
        assert!(
            !log.contains(key) && !stdout.contains(key),
            "a key appears in the proxy's output:\n{log}\n{stdout}"
        );
    }
    // With JSON logs and EMF, a request's line is its EMF record, on stdout.
    let lines = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "openai_proxy::request")
        .collect();
    let records = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (lines, records)
}

/// One answer, read to its end.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    /// The OpenAI-shaped error: (`code`, `type`, `message`).
    pub fn error(&self) -> (String, String, String) {
        let body: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not a JSON error: {self:?}"));
        let field = |name: &str| body["error"][name].as_str().unwrap_or_default().to_owned();
        (field("code"), field("type"), field("message"))
    }
}

/// POSTs `body` to the chat completions route of the proxy at `base` with wrapper key `key` and
/// reads the answer whole (for a stream: to its last event).
pub async fn chat(client: &reqwest::Client, base: &str, key: &str, body: &str) -> Answer {
    post(client, &format!("{base}/chat/completions"), key, body).await
}

/// POSTs the JSON `body` to `url` with wrapper key `key` and reads the answer whole.
pub async fn post(client: &reqwest::Client, url: &str, key: &str, body: &str) -> Answer {
    let response = client
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .timeout(WAIT)
        .send()
        .await
        .unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let body = response.text().await.unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

/// A chat request body for `model` with `max_tokens`, and the tokens the proxy reserves for it:
/// its bytes / 4, rounded up, plus `max_tokens`.
pub fn chat_body(model: &str, stream: bool, max_tokens: u64) -> (String, u64) {
    let body = serde_json::json!({
        "model": model,
        "stream": stream,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "How many tokens is this?"}],
    })
    .to_string();
    let estimate = (body.len() as u64).div_ceil(4) + max_tokens;
    (body, estimate)
}

/// A chat model the fake answers with 400, as OpenAI answers a bad request.
pub const REFUSED_MODEL: &str = "gpt-4o-mini-refused";
/// A chat model whose stream never ends: a chunk every 50 ms until the proxy drops it.
pub const ENDLESS_MODEL: &str = "gpt-4o-mini-endless";

/// The rate-limit headers OpenAI sends about the real key's organisation.
pub const UPSTREAM_RATE_HEADERS: [(&str, &str); 3] = [
    ("x-ratelimit-limit-requests", "10000"),
    ("x-ratelimit-remaining-requests", "9999"),
    ("x-ratelimit-limit-tokens", "2000000"),
];

/// The fake OpenAI (`openai::respond`) plus `REFUSED_MODEL` and `ENDLESS_MODEL`, every answer
/// with `UPSTREAM_RATE_HEADERS`; `dropped` resolves when the (first) endless stream is dropped,
/// which only the proxy can do.
pub struct LimitsUpstream {
    pub upstream: FakeUpstream,
    pub dropped: oneshot::Receiver<()>,
}

impl LimitsUpstream {
    pub async fn start() -> Self {
        let (tx, dropped) = oneshot::channel::<()>();
        let slot = Mutex::new(Some(tx));
        let upstream = FakeUpstream::start(move |request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            let mut response = match body["model"].as_str() {
                Some(REFUSED_MODEL) => refused(),
                Some(ENDLESS_MODEL) => endless(slot.lock().unwrap().take()),
                _ => openai::respond(request),
            };
            for (name, value) in UPSTREAM_RATE_HEADERS {
                let value = HeaderValue::from_static(value);
                response.headers_mut().insert(name, value);
            }
            response
        })
        .await;
        Self { upstream, dropped }
    }

    /// The chat completions the fake received (not its test-release calls).
    pub fn chats(&self) -> Vec<Received> {
        self.upstream
            .received()
            .into_iter()
            .filter(|seen| seen.path_and_query == "/v1/chat/completions")
            .collect()
    }
}

fn refused() -> Response {
    let body = r#"{"error":{"message":"Invalid value for 'messages'.","type":"invalid_request_error","param":"messages","code":null}}"#;
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/json")],
        body,
    )
        .into_response()
}

/// Chat chunks, one every 50 ms, forever; `guard` is dropped with the stream.
fn endless(guard: Option<oneshot::Sender<()>>) -> Response {
    let stream = futures_util::stream::unfold((0_u64, guard), |(n, guard)| async move {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let chunk = serde_json::json!({
            "id": "chatcmpl-endless",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": ENDLESS_MODEL,
            "choices": [{"index": 0, "delta": {"content": "la "}, "finish_reason": null}],
        });
        let frame = Bytes::from(format!("data: {chunk}\n\n"));
        Some((Ok::<_, std::convert::Infallible>(frame), (n + 1, guard)))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// `/health` of the proxy at `addr`.
pub async fn health(addr: std::net::SocketAddr) -> Value {
    let response = super::http_client()
        .get(format!("http://{addr}/health"))
        .timeout(WAIT)
        .send()
        .await
        .unwrap();
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// Reads the first chunk of a stream, then leaves: the response and its connection are dropped.
pub async fn leave_after_first_chunk(base: &str, key: &str, body: &str) {
    let client = super::http_client_builder().timeout(WAIT).build().unwrap();
    let response = client
        .post(format!("{base}/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut chunks = response.bytes_stream();
    futures_util::StreamExt::next(&mut chunks)
        .await
        .unwrap()
        .unwrap();
}
