//! The proxy's own function-URL event parser (`lambda/event.rs`) against lambda_http's, which it
//! replaced on the hot path: for every sample event and for generated ones (any method, path,
//! query, headers with multiple values and JSON escapes, cookies, text and base64 bodies) both
//! give the same method, path, query, headers and body bytes. Events that are not function-URL
//! requests are refused with an error that never quotes the event.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request};
use base64::Engine as _;
use http_body_util::BodyExt;
use openai_proxy::lambda::event;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::manifest_dir;

/// What a parsed request is made of, as the router reads it.
#[derive(Debug, PartialEq)]
struct Seen {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

async fn seen<B>(request: Request<B>) -> Seen
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = request.into_parts();
    Seen {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Both parsers' view of `event`.
async fn both(event: &str) -> (Seen, Seen) {
    let ours = event::request(&Bytes::copy_from_slice(event.as_bytes())).unwrap();
    let reference = lambda_http::request::from_str(event).unwrap();
    (seen(ours).await, seen(reference).await)
}

#[tokio::test]
async fn every_sample_event_parses_as_lambda_http_parses_it() {
    let mut parsed = 0;
    for entry in std::fs::read_dir(manifest_dir().join("events")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let (ours, reference) = both(&text).await;
        assert_eq!(ours, reference, "{}", path.display());
        parsed += 1;
    }
    assert!(parsed >= 10, "only {parsed} sample events");
}

#[tokio::test]
async fn events_that_are_not_requests_are_refused_without_quoting_them() {
    let secret = "sk-event-value-never-echoed";
    let refused = [
        json!({ "secret": secret }).to_string(),
        json!({ "rawPath": secret, "requestContext": {} }).to_string(),
        json!({ "requestContext": { "http": { "method": "GET" } }, "headers": { "x-a": [secret, 7] } })
            .to_string(),
        json!({ "requestContext": { "http": { "method": "GET" } }, "headers": { "bad name": secret } })
            .to_string(),
        json!({ "requestContext": { "http": { "method": "GET" } }, "headers": { "x-a": format!("{secret}\n") } })
            .to_string(),
        json!({ "requestContext": { "http": { "method": "G ET" } }, "body": secret }).to_string(),
        json!({ "requestContext": { "http": { "method": "POST" } }, "isBase64Encoded": true, "body": format!("{secret}!") })
            .to_string(),
        format!("[\"{secret}\"]"),
        format!("{{\"rawPath\": \"{secret}"),
    ];
    for event in refused {
        let err = event::request(&Bytes::from(event.clone())).unwrap_err();
        let message = err.to_string();
        assert!(!message.contains(secret), "{event}: {message}");
        assert!(!message.is_empty());
    }
}

/// JSON that names a header twice (a direct invocation could): the last string wins, and a list
/// adds its values, as in lambda_http.
#[tokio::test]
async fn a_header_named_twice_is_read_as_lambda_http_reads_it() {
    let event = r#"{"requestContext":{"http":{"method":"GET"}},"rawPath":"/v1/models",
        "headers":{"x-a":"1","x-a":"2","x-b":["1"],"x-b":["2","3"]}}"#;
    let (ours, reference) = both(event).await;
    assert_eq!(ours, reference);
    assert_eq!(ours.headers["x-a"], "2");
    assert_eq!(ours.headers.get_all("x-b").iter().count(), 3);
}

#[tokio::test]
async fn a_minimal_event_is_a_request_for_the_root_with_no_body() {
    let event = json!({ "requestContext": { "http": { "method": "GET" } } }).to_string();
    let request = seen(event::request(&Bytes::from(event)).unwrap()).await;
    assert_eq!(
        (request.method, request.path.as_str(), request.query),
        (Method::GET, "/", None)
    );
    assert!(request.headers.is_empty() && request.body.is_empty());
}

/// A header value: printable ASCII, including the characters JSON escapes (`"` and `\`).
fn header_value() -> impl Strategy<Value = String> {
    "[ -~]{0,24}".prop_map(|value| value.trim().to_owned())
}

fn event_strategy() -> impl Strategy<Value = Value> {
    let method = prop::sample::select(vec!["GET", "POST", "DELETE", "HEAD", "PUT", "PATCH"]);
    // Not `%2E`: lambda_http's URL parsing resolves an encoded dot segment, the proxy's parser
    // keeps it, and the router refuses such a path either way (`routes::is_plain_segment`).
    let segment = "[A-Za-z0-9_~!$&'()*+,;=:@-]{1,12}|%[0-9A-F]{2}"
        .prop_filter("an encoded dot segment", |segment| segment != "%2E");
    let path = prop::collection::vec(segment, 0..5).prop_map(|segments| {
        let mut path = String::from("/v1");
        for segment in segments {
            path.push('/');
            path.push_str(&segment);
        }
        path
    });
    let query = "([a-z_]{1,8}=[A-Za-z0-9%_.-]{0,10}(&[a-z_]{1,8}=[A-Za-z0-9%_.-]{0,10}){0,3})?";
    // Not `host` or `x-forwarded-proto`: lambda_http builds an absolute URL from them.
    let name = "[a-z][a-z0-9-]{0,15}".prop_filter("host", |name| {
        !matches!(name.as_str(), "host" | "x-forwarded-proto")
    });
    let values = prop_oneof![
        header_value().prop_map(Value::from),
        prop::collection::vec(header_value(), 1..3).prop_map(Value::from),
    ];
    let headers = prop::collection::btree_map(name, values, 0..8);
    let cookies = prop::option::of(prop::collection::vec("[a-z]{1,6}=[A-Za-z0-9]{0,8}", 1..3));
    let body = prop_oneof![
        Just(None),
        "\\PC{0,64}".prop_map(|text| Some((false, text))),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|bytes| {
            Some((
                true,
                base64::engine::general_purpose::STANDARD.encode(bytes),
            ))
        }),
    ];
    (method, path, query, headers, cookies, body).prop_map(
        |(method, path, query, headers, cookies, body)| {
            let mut event = json!({
                "version": "2.0",
                "routeKey": "$default",
                "rawPath": path,
                "rawQueryString": query,
                "headers": headers,
                "requestContext": {
                    "accountId": "anonymous",
                    "http": { "method": method, "path": path, "protocol": "HTTP/1.1" },
                    "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                    "stage": "$default",
                    "timeEpoch": 1_795_536_000_000_u64
                },
                "isBase64Encoded": false,
            });
            if let Some(cookies) = cookies {
                event["cookies"] = json!(cookies);
            }
            if let Some((encoded, body)) = body {
                event["isBase64Encoded"] = json!(encoded);
                event["body"] = json!(body);
            }
            event
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_events_parse_as_lambda_http_parses_them(event in event_strategy()) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (ours, reference) = runtime.block_on(both(&event.to_string()));
        prop_assert_eq!(ours, reference);
    }
}
