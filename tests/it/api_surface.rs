//! The whole API through the router: per-key route and model policy wherever a request names a
//! model (JSON, multipart, `session.model`, the path), methods and query strings passed
//! unchanged, bodies of every kind relayed byte for byte, and records that name the route group,
//! never an object id.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::support::upstream::{FakeUpstream, Received};
use crate::support::{
    BinaryProxy, FixedSource, InProcessProxy, REAL_KEY, TempFile, WRAPPER_KEY, http_client,
    state_with,
};

const CAROL: &str = "wrapper-key-carol";
const DAVE: &str = "wrapper-key-dave";

/// alice: no limits; carol: three models and no `routes`; dave: one model, files and chat.
fn key_map() -> String {
    json!({
        WRAPPER_KEY: REAL_KEY,
        CAROL: {"api_key": "sk-carol-real", "tenant": "carol",
                "models": ["gpt-4o-mini", "whisper-1", "gpt-realtime"]},
        DAVE: {"api_key": "sk-dave-real", "tenant": "dave", "models": ["gpt-4o-mini"],
               "routes": ["files", "chat.completions"]},
    })
    .to_string()
}

/// An upstream that answers every request with a fixed binary body of every byte value.
fn binary_body() -> Vec<u8> {
    (0..=255u8).cycle().take(3 * 256 + 7).collect()
}

fn answer(_: &Received) -> Response {
    (
        [("content-type", "application/octet-stream")],
        binary_body(),
    )
        .into_response()
}

async fn proxy(upstream: &FakeUpstream) -> InProcessProxy {
    let source = Box::new(FixedSource(key_map()));
    InProcessProxy::serve(state_with(&upstream.base_url(), &[], source).await).await
}

fn multipart(model: &str) -> (String, Vec<u8>) {
    multipart_with("model", model)
}

/// A body with the field `name`, then a file of every byte value.
fn multipart_with(name: &str, value: &str) -> (String, Vec<u8>) {
    let boundary = "----proxy-test-7MA4YWxkTrZu0gW";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\
         Content-Type: audio/wav\r\n\r\n"
    )
    .into_bytes();
    body.extend(0..=255u8);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn send(
    method: reqwest::Method,
    url: String,
    key: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Bytes) {
    let mut request = http_client()
        .request(method, url)
        .bearer_auth(key)
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.bytes().await.unwrap())
}

fn error_code(body: &[u8]) -> String {
    let error: Value = serde_json::from_slice(body).unwrap();
    error["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_multipart_model_outside_the_list_is_refused_before_the_upstream() {
    let upstream = FakeUpstream::start(answer).await;
    let proxy = proxy(&upstream).await;
    let url = proxy.url("/v1/audio/transcriptions");
    let (content_type, refused) = multipart("gpt-4o-transcribe");
    let (status, body) = send(
        reqwest::Method::POST,
        url.clone(),
        CAROL,
        Some(&content_type),
        refused,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&body), "model_not_allowed");
    assert!(upstream.received().is_empty());

    let (content_type, allowed) = multipart("whisper-1");
    let (status, body) = send(
        reqwest::Method::POST,
        url,
        CAROL,
        Some(&content_type),
        allowed.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, binary_body());
    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].body, allowed,
        "the multipart body, byte for byte"
    );
    assert_eq!(received[0].headers["content-type"], content_type.as_str());
    assert_eq!(received[0].headers["authorization"], "Bearer sk-carol-real");
}

#[tokio::test]
async fn a_model_restricted_key_calls_unseen_model_routes_only_when_it_lists_them() {
    let upstream = FakeUpstream::start(answer).await;
    let proxy = proxy(&upstream).await;
    let (content_type, upload) = multipart_with("purpose", "batch");
    // carol is restricted by models and lists no routes: files, batches are closed to her.
    for (method, path) in [
        (reqwest::Method::POST, "/v1/files"),
        (reqwest::Method::GET, "/v1/files/file-abc123/content"),
        (reqwest::Method::POST, "/v1/batches"),
    ] {
        let (status, body) = send(
            method.clone(),
            proxy.url(path),
            CAROL,
            Some(&content_type),
            upload.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(error_code(&body), "route_not_allowed", "{method} {path}");
    }
    assert!(upstream.received().is_empty());
    // dave lists files: his upload goes through, byte for byte.
    let (status, _) = send(
        reqwest::Method::POST,
        proxy.url("/v1/files"),
        DAVE,
        Some(&content_type),
        upload.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(upstream.received()[0].body, upload);
    // …and anything his routes do not list is closed, whatever the model.
    let (status, body) = send(
        reqwest::Method::POST,
        proxy.url("/v1/embeddings"),
        DAVE,
        Some("application/json"),
        br#"{"model":"gpt-4o-mini","input":"x"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&body), "route_not_allowed");
    assert_eq!(upstream.received().len(), 1);
}

#[tokio::test]
async fn models_by_id_are_answered_from_a_restricted_keys_list() {
    let upstream = FakeUpstream::start(answer).await;
    let proxy = proxy(&upstream).await;
    let get = |path: &str, key: &'static str| {
        send(reqwest::Method::GET, proxy.url(path), key, None, Vec::new())
    };
    let (status, body) = get("/v1/models/whisper-1", CAROL).await;
    assert_eq!(status, StatusCode::OK);
    let model: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(model["id"], "whisper-1");
    assert_eq!(model["object"], "model");
    let (status, body) = get("/v1/models/gpt-4o", CAROL).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "model_not_found");
    // Deleting a model is checked against the list too.
    let (status, body) = send(
        reqwest::Method::DELETE,
        proxy.url("/v1/models/ft%3Agpt-4o%3Aorg%3A%3Ax"),
        CAROL,
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&body), "model_not_allowed");
    assert!(upstream.received().is_empty());
    // An unrestricted key asks the upstream.
    let (status, _) = get("/v1/models/gpt-4o", WRAPPER_KEY).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(upstream.received()[0].path_and_query, "/v1/models/gpt-4o");
}

#[tokio::test]
async fn json_models_are_checked_where_each_route_keeps_them() {
    let upstream = FakeUpstream::start(answer).await;
    let proxy = proxy(&upstream).await;
    let post = |path: &str, body: &str| {
        send(
            reqwest::Method::POST,
            proxy.url(path),
            CAROL,
            Some("application/json"),
            body.as_bytes().to_vec(),
        )
    };
    let cases = [
        (
            "/v1/realtime/client_secrets",
            r#"{"session":{"type":"realtime","model":"gpt-realtime"}}"#,
            200,
            None,
        ),
        (
            "/v1/realtime/client_secrets",
            r#"{"session":{"type":"realtime","model":"gpt-4o-realtime"}}"#,
            403,
            Some("model_not_allowed"),
        ),
        (
            "/v1/realtime/client_secrets",
            r#"{"session":{"type":"realtime"}}"#,
            403,
            Some("model_not_allowed"),
        ),
        // The API's default moderation model is not on carol's list.
        (
            "/v1/moderations",
            r#"{"input":"x"}"#,
            403,
            Some("model_not_allowed"),
        ),
        (
            "/v1/completions",
            r#"{"model":"gpt-4o-mini","prompt":"x"}"#,
            200,
            None,
        ),
        (
            "/v1/images/generations",
            r#"{"model":"gpt-image-1","prompt":"x"}"#,
            403,
            Some("model_not_allowed"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":7,"messages":[]}"#,
            400,
            Some("invalid_model"),
        ),
        // Cancelling makes no model work: no model needed, and no body either.
        ("/v1/responses/resp_1/cancel", "", 200, None),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = post(path, body).await;
        assert_eq!(got.as_u16(), status, "{path} {body}");
        if let Some(code) = code {
            assert_eq!(error_code(&answer), code, "{path} {body}");
        }
    }
    assert_eq!(upstream.received().len(), 3);
}

#[tokio::test]
async fn methods_and_query_strings_reach_the_upstream_unchanged() {
    let upstream = FakeUpstream::start(answer).await;
    let proxy = proxy(&upstream).await;
    let requests = [
        (
            reqwest::Method::GET,
            "/v1/responses/resp_1?stream=true&starting_after=3",
        ),
        (
            reqwest::Method::GET,
            "/v1/responses/resp_1/input_items?after=msg_1&limit=2&order=asc",
        ),
        (reqwest::Method::DELETE, "/v1/responses/resp_1"),
        (reqwest::Method::GET, "/v1/files?purpose=batch&limit=1"),
        (
            reqwest::Method::GET,
            "/v1/containers/cntr_1/files/cfile_1/content",
        ),
    ];
    for (method, path) in &requests {
        // A body sent with GET or DELETE does not go on.
        let (status, body) = send(
            method.clone(),
            proxy.url(path),
            WRAPPER_KEY,
            None,
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{method} {path}");
        assert_eq!(body, binary_body(), "{method} {path}");
    }
    let received = upstream.received();
    assert_eq!(received.len(), requests.len());
    for (seen, (method, path)) in received.iter().zip(&requests) {
        assert_eq!(seen.method.as_str(), method.as_str());
        assert_eq!(seen.path_and_query, *path);
        assert!(seen.body.is_empty(), "{method} {path}");
        assert_eq!(seen.headers["authorization"], format!("Bearer {REAL_KEY}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_name_the_route_group_and_never_an_object_id() {
    let upstream = FakeUpstream::start(answer).await;
    let keys = TempFile::with_contents("keys.json", &key_map());
    let proxy = BinaryProxy::start(&[
        ("KEY_MAP_FILE", keys.path_str()),
        ("UPSTREAM_BASE_URL", &upstream.base_url()),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
        ("METRICS_EMF", "true"),
    ]);
    let url = format!("http://{}/v1/files/file-abc123/content", proxy.addr);
    let (status, body) = send(reqwest::Method::GET, url, WRAPPER_KEY, None, Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, binary_body());
    // An unknown path is recorded without it, too.
    let url = format!("http://{}/v1/no-such-api/file-abc123", proxy.addr);
    let (status, _) = send(reqwest::Method::GET, url, WRAPPER_KEY, None, Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, stdout) = proxy.stop_with_stdout();
    // With JSON logs and EMF, a request's line is its EMF record, on stdout.
    let lines: Vec<Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "openai_proxy::request")
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["route"], "files");
    assert_eq!(lines[0]["bytes_out"], binary_body().len());
    assert_eq!(lines[1]["route"], "(unrouted)");
    let records: Vec<&str> = stdout.lines().collect();
    assert_eq!(records.len(), 2, "{stdout}");
    let record: Value = serde_json::from_str(records[0]).unwrap();
    assert_eq!(record["route"], "files");
    for written in lines
        .iter()
        .map(Value::to_string)
        .chain(records.iter().map(|r| r.to_string()))
    {
        assert!(!written.contains("file-abc123"), "{written}");
    }
}
