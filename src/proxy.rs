//! The forwarding handler, in four phases: authenticate → build the upstream request → send →
//! relay. The response body is the upstream's byte stream handed straight to the client: no
//! buffering, no SSE parsing, no re-framing. Nothing here logs a header map or a key.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::app::AppState;
use crate::error::ProxyError;
use crate::headers;
use crate::keys::KeyEntry;
use crate::upstream;

pub async fn forward(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ProxyError> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();

    let entry = authenticate(&state, &parts.headers)?;
    let body = if parts.method == Method::POST {
        read_json_object(body, &parts.headers, state.max_request_body_bytes).await?
    } else {
        Bytes::new()
    };

    let url = state.upstream_url(&parts.uri);
    let outbound = state
        .client
        .request(parts.method.clone(), url)
        .headers(headers::upstream_request_headers(
            &parts.headers,
            entry.real_key.authorization(),
        ))
        .body(body);

    let upstream_response = outbound.send().await.map_err(|err| {
        let fault = upstream::classify(&err);
        tracing::warn!(
            method = %parts.method,
            path = parts.uri.path(),
            error = %ErrorChain(&err),
            "upstream request failed"
        );
        fault
    })?;

    tracing::info!(
        method = %parts.method,
        path = parts.uri.path(),
        status = upstream_response.status().as_u16(),
        head_ms = started.elapsed().as_secs_f64() * 1e3,
        "relaying upstream response"
    );
    Ok(relay(upstream_response))
}

fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<KeyEntry>, ProxyError> {
    let token = headers::bearer_token(headers)?;
    state
        .keys
        .lookup(token)
        .cloned()
        .ok_or(ProxyError::UnknownKey)
}

/// Reads the whole request body (requests are small; responses are what stream) and checks it is
/// a JSON object, so malformed input gets a clear 400 here. The bytes go upstream unchanged.
async fn read_json_object(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ProxyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    let bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|err| {
            if err.is::<LengthLimitError>() {
                ProxyError::BodyTooLarge { limit }
            } else {
                ProxyError::BodyUnreadable
            }
        })?
        .to_bytes();
    let starts_as_object = bytes
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|&byte| byte == b'{');
    if !starts_as_object || serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
        return Err(ProxyError::InvalidJson);
    }
    Ok(bytes)
}

/// The upstream's status, its allow-listed headers, and its body as a stream of the chunks
/// exactly as they arrive.
fn relay(upstream_response: reqwest::Response) -> Response {
    let status = upstream_response.status();
    let headers = headers::client_response_headers(upstream_response.headers());
    let mut response = Response::new(Body::from_stream(upstream_response.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Displays an error with its sources (`a: b: c`), which is where reqwest puts the useful part
/// ("connection refused"). reqwest's messages name the URL, which never carries a key.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}
