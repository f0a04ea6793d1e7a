//! Every error the proxy itself produces, in OpenAI's shape: bad credentials, unknown routes and
//! methods, bad bodies, and an upstream that cannot be reached or does not answer.

use std::time::Duration;

use axum::http::StatusCode;

use crate::proxy::{CHAT_BODY, http, openai_error};
use crate::support::upstream::{FakeUpstream, closed_port};
use crate::support::{InProcessProxy, REAL_KEY, WRAPPER_KEY, openai};

#[tokio::test]
async fn bad_credentials_get_401_and_the_upstream_is_never_called() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;
    let cases: [(&str, Option<String>); 6] = [
        ("missing", None),
        ("empty", Some(String::new())),
        (
            "basic scheme",
            Some("Basic d3JhcHBlcjpzZWNyZXQ=".to_owned()),
        ),
        ("no scheme", Some(WRAPPER_KEY.to_owned())),
        ("unknown key", Some("Bearer wrapper-key-mallory".to_owned())),
        ("the real key itself", Some(format!("Bearer {REAL_KEY}"))),
    ];
    for (what, authorization) in cases {
        let mut request = http()
            .post(proxy.url("/v1/chat/completions"))
            .body(CHAT_BODY);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        let code = openai_error(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(code, "invalid_api_key", "{what}");
    }
    // Lower-case scheme and padding are fine.
    let response = http()
        .post(proxy.url("/v1/chat/completions"))
        .header("authorization", format!("  bearer   {WRAPPER_KEY} "))
        .body(CHAT_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        upstream.received().len(),
        1,
        "only the good request may reach the upstream"
    );
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;

    let response = http()
        .post(proxy.url("/v1/legacy/completions"))
        .bearer_auth(WRAPPER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        openai_error(response, StatusCode::NOT_FOUND).await,
        "unknown_url"
    );

    let response = http()
        .put(proxy.url("/v1/chat/completions"))
        .bearer_auth(WRAPPER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        openai_error(response, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );

    let response = http().patch(proxy.url("/v1/models")).send().await.unwrap();
    assert_eq!(
        openai_error(response, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );
    assert!(upstream.received().is_empty());
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_get_400_and_oversized_ones_413() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy =
        InProcessProxy::start(&upstream.base_url(), &[("MAX_REQUEST_BODY_BYTES", "1000")]).await;
    for body in ["", "{", "[1,2]", "\"text\"", "{\"model\":\"x\"} trailing"] {
        let response = proxy.post("/v1/chat/completions", body).await;
        assert_eq!(
            openai_error(response, StatusCode::BAD_REQUEST).await,
            "invalid_json",
            "{body:?}"
        );
    }
    let big = format!(r#"{{"input":"{}"}}"#, "x".repeat(2000));
    let response = proxy.post("/v1/embeddings", big).await;
    assert_eq!(
        openai_error(response, StatusCode::PAYLOAD_TOO_LARGE).await,
        "request_too_large"
    );
    assert!(upstream.received().is_empty());
}

#[tokio::test]
async fn an_unreachable_upstream_is_502() {
    let proxy = InProcessProxy::start(&format!("http://{}/v1", closed_port()), &[]).await;
    let response = proxy.post("/v1/chat/completions", CHAT_BODY).await;
    assert_eq!(
        openai_error(response, StatusCode::BAD_GATEWAY).await,
        "upstream_unreachable"
    );
}

#[tokio::test]
async fn an_upstream_silent_past_the_idle_timeout_is_504() {
    // Holds the request without answering or closing until the test ends: only the proxy's 1 s
    // idle timeout can end the exchange (the client's own bound is ten times that).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let (_socket, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await;
    });
    let proxy = InProcessProxy::start(
        &format!("http://{addr}/v1"),
        &[("UPSTREAM_IDLE_TIMEOUT_SECONDS", "1")],
    )
    .await;
    let started = std::time::Instant::now();
    let response = proxy.post("/v1/chat/completions", CHAT_BODY).await;
    assert_eq!(
        openai_error(response, StatusCode::GATEWAY_TIMEOUT).await,
        "upstream_timeout"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "answered after {took:?}"
    );
    silent.abort();
}
