//! Property tests (proptest, bounded case counts): the Authorization parser, the key-map parser
//! and request-path handling never panic, never answer 5xx, and never echo a key; the usage watch
//! never panics and never changes a stream it was not asked to restore, and restores any chat
//! stream with `include_usage` to the stream without it, however it is cut into chunks; any
//! other answer (binary, JSON) passes byte for byte however it is cut, and so does every answer
//! to a limited key, whose end waits for its tokens to be settled.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Request, header};
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use lambda_http::tower::ServiceExt;
use openai_proxy::app::router;
use openai_proxy::headers::bearer_token;
use openai_proxy::keymap::KeyMap;
use openai_proxy::limits::{
    Admission, Clock, Counted, Fit, LimitStore, Limiter, Limits, MemoryStore, OnStoreError, Period,
    StoreError, Subject, Update,
};
use openai_proxy::metering::{Metering, RequestRecord};
use openai_proxy::stream::Relayed;
use openai_proxy::usage::UsageWatch;
use proptest::prelude::*;
use serde_json::Value;

use crate::support::chat_stream::{self, split_points, watched};
use crate::support::state;
use crate::support::upstream::closed_port;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Whatever the header holds, the parser answers; a token it returns is exactly what follows
    /// a case-insensitive `Bearer` and whitespace.
    #[test]
    fn authorization_parsing_is_total_and_exact(raw in proptest::collection::vec(any::<u8>(), 0..80)) {
        let Ok(value) = HeaderValue::from_bytes(&raw) else { return Ok(()) };
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value);
        if let Ok(token) = bearer_token(&headers) {
            let text = std::str::from_utf8(&raw).unwrap().trim();
            prop_assert!(!token.is_empty());
            prop_assert!(!token.contains(|c: char| c.is_ascii_whitespace()));
            prop_assert!(text[..6].eq_ignore_ascii_case("bearer"));
            prop_assert_eq!(text[6..].trim(), token);
        }
    }

    /// Random documents never panic the key-map parser.
    #[test]
    fn key_map_parsing_is_total(document in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = KeyMap::parse(&document);
    }

    /// Maps with random keys and random (often wrong) values: an error names no key or value.
    #[test]
    fn key_map_errors_never_echo_keys(
        members in proptest::collection::vec(("K[A-Z0-9]{10}", prop_oneof![
            "S[A-Z0-9]{10}".prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            "S[A-Z0-9]{10}".prop_map(|s| serde_json::json!({"api_key": s, "bogus": 1})),
            "S[A-Z0-9]{10}".prop_map(|s| serde_json::json!({"api_key": s, "models": s})),
            "S[A-Z0-9]{10}".prop_map(|s| serde_json::json!({"api_key": s, "expires_at": s})),
            "S[A-Z0-9]{10}".prop_map(|s| serde_json::json!({s: 1})),
        ]), 1..6)
    ) {
        let document: serde_json::Map<String, Value> = members.iter().cloned().collect();
        let text = serde_json::to_string(&document).unwrap();
        if let Err(err) = KeyMap::parse(text.as_bytes()) {
            let message = err.to_string();
            for (key, value) in &members {
                prop_assert!(!message.contains(key.as_str()), "{} in {}", key, message);
                let value = value.to_string();
                for secret in value.split('"').filter(|part| part.starts_with('S') && part.len() == 11) {
                    prop_assert!(!message.contains(secret), "{} in {}", secret, message);
                }
            }
        }
    }
}

/// The whole relay over `bytes` in reads ending at `points`, as the server polls it; returns
/// the body the client got.
fn relayed(bytes: &[u8], points: &[usize], undo_include_usage: bool) -> Vec<u8> {
    relayed_with(bytes, points, UsageWatch::sse(undo_include_usage), None)
}

/// A limited key's relay: the same as `relayed_with`, on a limiter whose store answers only
/// after yielding once (as a network store would), with `reserved` tokens reserved at
/// admission; returns what the client got and the tokens charged once the body ended.
fn relayed_limited(
    bytes: &[u8],
    points: &[usize],
    watch: UsageWatch,
    length: Option<u64>,
    reserved: u64,
) -> (Vec<u8>, i64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let clock = Clock::new();
        let limiter = Arc::new(Limiter::new(
            Box::new(Yielding(MemoryStore::new(clock))),
            clock,
            OnStoreError::Deny,
            0,
        ));
        let limits = Limits {
            tokens_per_day: Some(1_000_000),
            ..Limits::default()
        };
        let subject = Subject {
            key: Some(("prop", &limits)),
            tenant: None,
        };
        let Ok(Admission::Admitted(admitted)) = limiter.admit(subject, reserved).await else {
            panic!("a fresh budget admits the request");
        };
        let reservation = admitted.reservation.map(|reservation| (reservation, true));
        let body = Relayed::new(
            reads(bytes, points),
            length,
            None,
            watch,
            record(),
            reservation,
        );
        let out = body.collect().await.unwrap().to_bytes().to_vec();
        let item = Period::Day.window_at(clock.now()).item("key", "prop");
        let charged = match limiter
            .store()
            .update(Update {
                item: &item,
                expires_at: 0,
                requests: 0,
                tokens: 0,
                fit: Fit::default(),
            })
            .await
        {
            Ok(Counted::Made(counts)) => counts.tokens,
            other => panic!("the memory store answers: {other:?}"),
        };
        (out, charged)
    })
}

/// A memory store that yields once before each update, so the relay meets a pending settle.
struct Yielding(MemoryStore);

impl LimitStore for Yielding {
    fn kind(&self) -> &'static str {
        "yielding"
    }

    fn shared(&self) -> bool {
        false
    }

    fn update<'a>(&'a self, update: Update<'a>) -> BoxFuture<'a, Result<Counted, StoreError>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.0.update(update).await
        })
    }
}

fn reads(
    bytes: &[u8],
    points: &[usize],
) -> futures_util::stream::Iter<std::vec::IntoIter<Result<Bytes, openai_proxy::upstream::Error>>> {
    let mut from = 0;
    let reads: Vec<Result<Bytes, openai_proxy::upstream::Error>> = points
        .iter()
        .map(|&to| {
            let read = Bytes::copy_from_slice(&bytes[from..to]);
            from = to;
            Ok(read)
        })
        .collect();
    futures_util::stream::iter(reads)
}

fn record() -> RequestRecord {
    let metering = Metering {
        emf_namespace: None,
        include_stream_usage: true,
        line_format: openai_proxy::metering::LineFormat::Json,
    };
    RequestRecord::new(&metering, None, &Method::POST, "/v1/chat/completions")
}

/// `bytes` read in the pieces `points` cut them into, through the relay with `watch`, declared
/// `length` long (or not): what the client receives.
fn relayed_with(bytes: &[u8], points: &[usize], watch: UsageWatch, length: Option<u64>) -> Vec<u8> {
    let body = Relayed::new(reads(bytes, points), length, None, watch, record(), None);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(body.collect())
        .unwrap()
        .to_bytes()
        .to_vec()
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes in arbitrary chunks: no panic, and a watch that only observes passes every
    /// byte on unchanged.
    #[test]
    fn the_usage_watch_is_total(
        bytes in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'\n'), Just(b'\r'), Just(b'{'), Just(b'"')], 0..300),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let points = split_points(&cuts, bytes.len());
        for undo in [false, true] {
            let mut watch = UsageWatch::sse(undo);
            let out = watched(&mut watch, &bytes, &points);
            if !undo {
                prop_assert_eq!(&out, &bytes);
            }
            let _ = watch.usage();
        }
        let mut json = UsageWatch::json();
        prop_assert_eq!(watched(&mut json, &bytes, &points), bytes);
        let _ = json.usage();
    }

    /// A realistic chat stream (see `support::chat_stream`) split into 1 to 40 reads anywhere:
    /// a watch restoring it gives the client exactly the upstream's bytes less the flag's
    /// additions, and reads the usage.
    #[test]
    fn include_usage_is_undone_byte_for_byte_however_reads_split_the_stream(
        spec in proptest::collection::vec(any::<u8>(), 0..160),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let stream = chat_stream::decode(&spec);
        let points = split_points(&cuts, stream.upstream.len());
        let mut watch = UsageWatch::sse(true);
        let out = watched(&mut watch, &stream.upstream, &points);
        prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&stream.client));
        prop_assert_eq!(watch.usage().map(|u| u.total_tokens), stream.total_tokens);
    }

    /// The same property for the whole relay as the server polls it, restoring or only
    /// observing (which passes every byte).
    #[test]
    fn the_relay_gives_the_client_the_upstreams_bytes_however_reads_split_them(
        spec in proptest::collection::vec(any::<u8>(), 0..160),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let stream = chat_stream::decode(&spec);
        let points = split_points(&cuts, stream.upstream.len());
        let restored = relayed(&stream.upstream, &points, true);
        prop_assert_eq!(String::from_utf8_lossy(&restored), String::from_utf8_lossy(&stream.client));
        let observed = relayed(&stream.upstream, &points, false);
        prop_assert_eq!(observed, stream.upstream);
    }

    /// Audio, file contents, images, plain text and JSON (the whole API's other answers): any
    /// bytes, however the reads split them, reach the client unchanged, with or without a
    /// declared length.
    #[test]
    fn binary_and_json_answers_pass_unchanged_however_reads_split_them(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        declared in any::<bool>(),
    ) {
        let points = split_points(&cuts, bytes.len());
        let length = declared.then_some(bytes.len() as u64);
        prop_assert_eq!(&relayed_with(&bytes, &points, UsageWatch::opaque(), length), &bytes);
        prop_assert_eq!(&relayed_with(&bytes, &points, UsageWatch::json(), length), &bytes);
    }

    /// A limited key's answers: the same bytes however the reads split them, the stream's end
    /// (or a JSON body's last chunk) held only until the settle write is done, after which the
    /// charge is the usage the body reported, or the reservation if it reported none.
    #[test]
    fn a_limited_keys_answer_passes_unchanged_and_settles_its_usage(
        spec in proptest::collection::vec(any::<u8>(), 0..160),
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        declared in any::<bool>(),
        reserved in 0u64..5_000,
    ) {
        let stream = chat_stream::decode(&spec);
        let points = split_points(&cuts, stream.upstream.len());
        let (out, charged) = relayed_limited(&stream.upstream, &points, UsageWatch::sse(true), None, reserved);
        prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&stream.client));
        prop_assert_eq!(charged as u64, stream.total_tokens.unwrap_or(reserved));

        let json = br#"{"id":"chatcmpl-1","object":"chat.completion","usage":{"prompt_tokens":9,"completion_tokens":5,"total_tokens":14}}"#;
        let points = split_points(&cuts, json.len());
        let length = declared.then_some(json.len() as u64);
        let (out, charged) = relayed_limited(json, &points, UsageWatch::json(), length, reserved);
        prop_assert_eq!(&out[..], &json[..]);
        prop_assert_eq!(charged, 14);

        let points = split_points(&cuts, bytes.len());
        let length = declared.then_some(bytes.len() as u64);
        let (out, charged) = relayed_limited(&bytes, &points, UsageWatch::opaque(), length, reserved);
        prop_assert_eq!(&out, &bytes);
        prop_assert_eq!(charged as u64, reserved);
    }
}

/// Any request path gets 401, 404 or 405 in OpenAI's shape, never a 5xx.
#[test]
fn any_path_gets_a_clear_answer() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime
        .block_on(async { router(state(&format!("http://{}/v1", closed_port()), &[]).await) });
    let segment = "[a-zA-Z0-9._~%-]{0,12}";
    let path =
        proptest::collection::vec(segment, 0..6).prop_map(|parts| format!("/{}", parts.join("/")));
    let method = prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PUT"),
        Just("DELETE"),
        Just("PATCH")
    ];
    let mut runner = proptest::test_runner::TestRunner::new(config());
    runner
        .run(&(path, method), |(path, method)| {
            let Ok(request) = Request::builder()
                .method(method)
                .uri(path.as_str())
                .body(Body::empty())
            else {
                return Ok(());
            };
            let response = runtime.block_on(app.clone().oneshot(request)).unwrap();
            let status = response.status().as_u16();
            prop_assert!(
                [200, 401, 404, 405].contains(&status),
                "{} {} -> {}",
                method,
                path,
                status
            );
            if status != 200 {
                let body = runtime
                    .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
                    .unwrap();
                let json: Value = serde_json::from_slice(&body).unwrap();
                prop_assert!(json["error"]["code"].is_string(), "{}", json);
            }
            Ok(())
        })
        .unwrap();
}
