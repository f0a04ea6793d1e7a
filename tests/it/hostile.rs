//! Hostile and odd input, sent as raw HTTP so nothing normalises it on the way: each case gets its
//! stated status, a 4xx always in OpenAI's error shape, and no configured key appears anywhere in
//! the response. The same table runs against the router in-process and the real binary.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::upstream::FakeUpstream;
use crate::support::{
    BinaryProxy, InProcessProxy, OTHER_REAL_KEY, OTHER_WRAPPER_KEY, REAL_KEY, TempFile,
    WRAPPER_KEY, key_map_json, openai,
};

const CHAT: &str = "/v1/chat/completions";
const TRANSCRIPTIONS: &str = "/v1/audio/transcriptions";
const MULTIPART: &[u8] = b"multipart/form-data; boundary=b0und";

/// A transcription upload as an SDK sends one: a model, and a file of every byte value.
fn upload_body() -> Vec<u8> {
    let mut body = b"--b0und\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b0und\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n".to_vec();
    body.extend(0..=255u8);
    body.extend_from_slice(b"\r\n--b0und--\r\n");
    body
}
const GOOD_BODY: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const BODY_LIMIT: usize = 65_536;

struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    status: u16,
    code: Option<&'static str>,
    /// A `content-length` other than the body's: the request then ends (half-close) early.
    declared_length: Option<usize>,
}

fn auth(value: impl Into<Vec<u8>>) -> (&'static str, Vec<u8>) {
    ("authorization", value.into())
}

fn good_auth() -> (&'static str, Vec<u8>) {
    auth(format!("Bearer {WRAPPER_KEY}"))
}

fn json_type() -> (&'static str, Vec<u8>) {
    ("content-type", b"application/json".to_vec())
}

fn case(
    what: &'static str,
    method: &'static str,
    path: &str,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: &[u8],
    status: u16,
    code: Option<&'static str>,
) -> Case {
    Case {
        what,
        method,
        path: path.to_owned(),
        headers,
        body: body.to_vec(),
        status,
        code,
        declared_length: None,
    }
}

/// A multipart upload to the transcriptions route.
fn upload(
    what: &'static str,
    content_type: &[u8],
    body: &[u8],
    status: u16,
    code: Option<&'static str>,
) -> Case {
    let headers = vec![("content-type", content_type.to_vec()), good_auth()];
    case(what, "POST", TRANSCRIPTIONS, headers, body, status, code)
}

fn lying_length(mut case: Case, declared: usize) -> Case {
    case.declared_length = Some(declared);
    case
}

fn chat(
    what: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: &[u8],
    status: u16,
    code: Option<&'static str>,
) -> Case {
    case(what, "POST", CHAT, headers, body, status, code)
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    const KEY: Option<&str> = Some("invalid_api_key");
    const JSON: Option<&str> = Some("invalid_json");
    const URL: Option<&str> = Some("unknown_url");
    const METHOD: Option<&str> = Some("method_not_allowed");
    const MULTI: Option<&str> = Some("invalid_multipart");
    let long_key = format!("Bearer {}", "k".repeat(10 * 1024));
    let upload_body = upload_body();
    let (whole, cut) = (upload_body.as_slice(), &upload_body[..upload_body.len() - 12]);
    let deep = format!(r#"{{"model":"x","n":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    vec![
        // Authorization
        chat("no Authorization", vec![json_type()], GOOD_BODY, 401, KEY),
        chat("empty Authorization", vec![json_type(), auth("")], GOOD_BODY, 401, KEY),
        chat("scheme only", vec![json_type(), auth("Bearer")], GOOD_BODY, 401, KEY),
        chat("scheme and a space", vec![json_type(), auth("Bearer ")], GOOD_BODY, 401, KEY),
        chat("Basic credentials", vec![json_type(), auth("Basic dXNlcjpwYXNz")], GOOD_BODY, 401, KEY),
        chat("no scheme", vec![json_type(), auth(WRAPPER_KEY)], GOOD_BODY, 401, KEY),
        chat("other scheme", vec![json_type(), auth(format!("Token {WRAPPER_KEY}"))], GOOD_BODY, 401, KEY),
        chat("two tokens", vec![json_type(), auth(format!("Bearer {WRAPPER_KEY} extra"))], GOOD_BODY, 401, KEY),
        chat("10 KB key", vec![json_type(), auth(long_key)], GOOD_BODY, 401, KEY),
        chat("non-ASCII key", vec![json_type(), auth("Bearer cl\u{e9}-\u{1f980}".as_bytes())], GOOD_BODY, 401, KEY),
        chat("Latin-1 byte in key", vec![json_type(), auth(b"Bearer cl\xe9".to_vec())], GOOD_BODY, 401, KEY),
        chat("duplicate Authorization", vec![json_type(), good_auth(), auth(format!("Bearer {OTHER_WRAPPER_KEY}"))], GOOD_BODY, 401, KEY),
        chat("key in other case", vec![json_type(), auth("Bearer WRAPPER-KEY-ALICE")], GOOD_BODY, 401, KEY),
        chat("the real key as wrapper key", vec![json_type(), auth(format!("Bearer {REAL_KEY}"))], GOOD_BODY, 401, KEY),
        chat("api-key header only", vec![json_type(), ("api-key", WRAPPER_KEY.into())], GOOD_BODY, 401, KEY),
        chat("lower-case scheme", vec![json_type(), auth(format!("bearer {WRAPPER_KEY}"))], GOOD_BODY, 200, None),
        chat("padded with spaces", vec![json_type(), auth(format!("  BEARER   {WRAPPER_KEY}  "))], GOOD_BODY, 200, None),
        chat("tab after the scheme", vec![json_type(), auth(format!("Bearer\t{WRAPPER_KEY}"))], GOOD_BODY, 200, None),
        // Bodies
        chat("invalid JSON", vec![json_type(), good_auth()], b"{", 400, JSON),
        chat("JSON array", vec![json_type(), good_auth()], b"[1,2]", 400, JSON),
        chat("JSON null", vec![json_type(), good_auth()], b"null", 400, JSON),
        chat("JSON string", vec![json_type(), good_auth()], b"\"text\"", 400, JSON),
        chat("JSON number", vec![json_type(), good_auth()], b"42", 400, JSON),
        chat("empty body", vec![json_type(), good_auth()], b"", 400, JSON),
        chat("trailing garbage", vec![json_type(), good_auth()], b"{} trailing", 400, JSON),
        chat("byte-order mark", vec![json_type(), good_auth()], "\u{feff}{}".as_bytes(), 400, JSON),
        chat("invalid UTF-8", vec![json_type(), good_auth()], b"{\"model\":\"\xff\xfe\"}", 400, JSON),
        // Valid JSON however deep: the proxy skims it without recursion and passes it on.
        chat("nesting 10,000 deep", vec![json_type(), good_auth()], deep.as_bytes(), 200, None),
        chat("body over the limit", vec![json_type(), good_auth()], &vec![b' '; BODY_LIMIT + 1], 413, Some("request_too_large")),
        chat("text/plain", vec![("content-type", b"text/plain".to_vec()), good_auth()], GOOD_BODY, 415, Some("unsupported_content_type")),
        chat("multipart", vec![("content-type", b"multipart/form-data; boundary=x".to_vec()), good_auth()], GOOD_BODY, 415, Some("unsupported_content_type")),
        chat("form-encoded", vec![("content-type", b"application/x-www-form-urlencoded".to_vec()), good_auth()], GOOD_BODY, 415, Some("unsupported_content_type")),
        chat("JSON with charset", vec![("content-type", b"application/json; charset=utf-8".to_vec()), good_auth()], GOOD_BODY, 200, None),
        chat("JSON in upper case", vec![("content-type", b"APPLICATION/JSON".to_vec()), good_auth()], GOOD_BODY, 200, None),
        // Multipart bodies, on a route that takes them
        upload("multipart upload", MULTIPART, whole, 200, None),
        upload("multipart without a boundary", b"multipart/form-data", whole, 400, MULTI),
        upload("multipart with an empty boundary", b"multipart/form-data; boundary=", whole, 400, MULTI),
        upload("multipart with another boundary", b"multipart/form-data; boundary=other", whole, 400, MULTI),
        upload("multipart cut before its end", MULTIPART, cut, 400, MULTI),
        upload("multipart part without a name", MULTIPART, b"--b0und\r\nContent-Type: text/plain\r\n\r\nx\r\n--b0und--\r\n", 400, MULTI),
        upload("multipart headers never end", MULTIPART, b"--b0und\r\nContent-Disposition: form-data; name=\"model\"", 400, MULTI),
        upload("multipart with two models", MULTIPART, &[&whole[..whole.len() - 4], b"\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nx\r\n--b0und--\r\n"].concat(), 400, MULTI),
        upload("multipart empty body", MULTIPART, b"", 400, MULTI),
        upload("multipart body over the limit", MULTIPART, &[whole, &vec![b'x'; BODY_LIMIT]].concat(), 413, Some("request_too_large")),
        upload("JSON declared, multipart sent", b"application/json", whole, 400, JSON),
        upload("octet-stream upload", b"application/octet-stream", whole, 415, Some("unsupported_content_type")),
        lying_length(upload("content-length longer than the body", MULTIPART, whole, 400, Some("invalid_body")), whole.len() + 100),
        lying_length(chat("JSON shorter than its content-length", vec![json_type(), good_auth()], GOOD_BODY, 400, Some("invalid_body")), GOOD_BODY.len() + 1),
        chat("64 KB of headers", vec![json_type(), good_auth(), ("x-padding", vec![b'a'; 64 * 1024])], GOOD_BODY, 431, Some("request_headers_too_large")),
        // Paths and methods
        case("dot segments", "POST", "/v1/../v1/chat/completions", vec![json_type(), good_auth()], GOOD_BODY, 404, URL),
        case("encoded dot segments", "POST", "/v1/%2e%2e/v1/chat/completions", vec![json_type(), good_auth()], GOOD_BODY, 404, URL),
        case("encoded slash", "POST", "/v1/chat%2Fcompletions", vec![json_type(), good_auth()], GOOD_BODY, 404, URL),
        case("double slash", "POST", "//v1/chat/completions", vec![json_type(), good_auth()], GOOD_BODY, 404, URL),
        case("trailing slash", "POST", "/v1/chat/completions/", vec![json_type(), good_auth()], GOOD_BODY, 404, URL),
        case("upper-case path", "POST", "/V1/CHAT/COMPLETIONS", vec![json_type(), good_auth()], GOOD_BODY, 404, URL),
        case("root", "GET", "/", vec![], b"", 404, URL),
        case("very long path", "GET", &format!("/v1/{}", "a".repeat(8_000)), vec![], b"", 404, URL),
        case("query string", "POST", "/v1/chat/completions?x=1&y=%00", vec![json_type(), good_auth()], GOOD_BODY, 200, None),
        case("an API the table does not know", "GET", "/v1/no-such-api", vec![good_auth()], b"", 404, URL),
        case("an unknown API under a known word", "POST", "/v1/chat", vec![json_type(), good_auth()], GOOD_BODY, 404, URL),
        case("percent-encoded letter in a path", "POST", "/v1/realtime/client_secret%73", vec![json_type(), good_auth()], b"{}", 404, URL),
        case("path parameter", "POST", "/v1/images/generations;x=1", vec![json_type(), good_auth()], b"{}", 404, URL),
        upload("multipart with a preamble", MULTIPART, &[b"x\n".as_slice(), whole].concat(), 400, MULTI),
        upload("multipart model part that is a file", MULTIPART, b"--b0und\r\nContent-Disposition: form-data; name=\"model\"; filename=\"m\"\r\n\r\nwhisper-1\r\n--b0und--\r\n", 400, MULTI),
        case("encoded slash in an id", "GET", "/v1/files/file-1%2F..%2Fadmin", vec![good_auth()], b"", 404, URL),
        case("dot segment after a group", "GET", "/v1/files/../models", vec![good_auth()], b"", 404, URL),
        case("PUT on a resource", "PUT", "/v1/files/file-1", vec![good_auth()], b"", 405, METHOD),
        case("PATCH", "PATCH", CHAT, vec![good_auth()], b"", 405, METHOD),
        case("PUT on embeddings", "PUT", "/v1/embeddings", vec![json_type(), good_auth()], GOOD_BODY, 405, METHOD),
        case("OPTIONS", "OPTIONS", CHAT, vec![], b"", 405, METHOD),
        case("PATCH on health", "PATCH", "/health", vec![], b"", 405, METHOD),
    ]
}

/// Sends one raw HTTP/1.1 request and reads the whole response (the connection is closed after).
async fn send_raw(addr: std::net::SocketAddr, case: &Case) -> Vec<u8> {
    let mut request = format!(
        "{} {} HTTP/1.1\r\nhost: proxy.test\r\nconnection: close\r\n",
        case.method, case.path
    )
    .into_bytes();
    for (name, value) in &case.headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    let length = case.declared_length.unwrap_or(case.body.len());
    request.extend_from_slice(format!("content-length: {length}\r\n\r\n").as_bytes());
    request.extend_from_slice(&case.body);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    if case.declared_length.is_some() {
        // The body ends here, short of what was declared.
        stream.shutdown().await.unwrap();
    }
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .unwrap_or_else(|_| panic!("{}: no complete response", case.what))
        .unwrap();
    response
}

fn check(case: &Case, response: &[u8]) {
    let text = String::from_utf8_lossy(response);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert_eq!(
        status,
        case.status,
        "{}: {}",
        case.what,
        text.lines().next().unwrap_or_default()
    );
    for key in [WRAPPER_KEY, REAL_KEY, OTHER_WRAPPER_KEY, OTHER_REAL_KEY] {
        assert!(
            !text.contains(key),
            "{}: a key appears in the response",
            case.what
        );
    }
    if let Some(code) = case.code {
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{}: {head}",
            case.what
        );
        let json: Value = serde_json::from_str(body)
            .unwrap_or_else(|_| panic!("{}: not JSON: {body}", case.what));
        let error = &json["error"];
        assert_eq!(error["code"], code, "{}: {json}", case.what);
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            case.what
        );
        assert!(
            error["type"].is_string() && error["param"].is_null(),
            "{}: {json}",
            case.what
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_clear_openai_errors_from_the_router() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let limit = BODY_LIMIT.to_string();
    let proxy =
        InProcessProxy::start(&upstream.base_url(), &[("MAX_REQUEST_BODY_BYTES", &limit)]).await;
    let cases = cases();
    assert!(cases.len() >= 40);
    for case in &cases {
        check(case, &send_raw(proxy.addr, case).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_clear_openai_errors_from_the_binary() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let keys = TempFile::with_contents("keys.json", &key_map_json());
    let limit = BODY_LIMIT.to_string();
    let proxy = BinaryProxy::start(&[
        ("KEY_MAP_FILE", keys.path_str()),
        ("UPSTREAM_BASE_URL", &upstream.base_url()),
        ("MAX_REQUEST_BODY_BYTES", &limit),
        ("RUST_LOG", "debug"),
    ]);
    for case in &cases() {
        check(case, &send_raw(proxy.addr, case).await);
    }
    let log = proxy.stop();
    for key in [WRAPPER_KEY, REAL_KEY, OTHER_WRAPPER_KEY, OTHER_REAL_KEY] {
        assert!(!log.contains(key), "a key appears in the log");
    }
}
