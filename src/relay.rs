//! The relayed answer's head: the upstream's status and its allow-listed headers, plus the
//! proxy's own (which upstream served it; a limited key's rate-limit headers), in front of its
//! body as `stream.rs` passes it on.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::time::Instant;

use crate::headers;
use crate::limits::{RateHeaders, Reservation};
use crate::metering::RequestRecord;
use crate::stream::Relayed;
use crate::upstream;
use crate::usage::UsageWatch;

/// Says which upstream served the request, by its key-map name (`default`: `UPSTREAM_BASE_URL`).
const UPSTREAM_HEADER: HeaderName = HeaderName::from_static("x-openai-proxy-upstream");

/// The upstream's answer (head received), and how to relay its body.
pub struct Answer {
    pub response: upstream::Response,
    pub cutoff: Option<Instant>,
    /// The proxy added `stream_options.include_usage`; the stream is to be restored.
    pub undo_include_usage: bool,
    /// A HEAD request: the answer has no body, whatever length its headers declare.
    pub head: bool,
    /// The `x-openai-proxy-upstream` value.
    pub served_by: Option<HeaderValue>,
    /// A limited key: its rate-limit headers, and the tokens to settle when the body ends.
    pub limits: Option<(RateHeaders, Option<Reservation>)>,
}

/// The upstream's status, its allow-listed headers, and its body as a stream of the chunks
/// as they arrive (see `stream.rs` for how a body may end early, `usage.rs` for what is read).
pub fn relay(answer: Answer, mut record: RequestRecord) -> Response {
    let Answer {
        response,
        cutoff,
        undo_include_usage,
        head,
        served_by,
        limits,
    } = answer;
    let status = response.status();
    let mut headers = headers::client_response_headers(response.headers());
    if let Some(name) = served_by {
        headers.insert(UPSTREAM_HEADER, name);
    }
    let (rate_headers, reservation) = limits.unzip();
    if let Some(rate_headers) = rate_headers {
        rate_headers.apply(&mut headers);
    }
    record.status = status.as_u16();
    record.upstream_status = Some(status.as_u16());
    record.upstream_request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(|id| id.chars().take(100).collect());
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map_or(&b""[..], |value| value.as_bytes());
    let is_sse = content_type.starts_with(b"text/event-stream");
    // Usage is read where the API reports it: SSE events and JSON bodies. Audio, files and
    // plain text pass unread.
    let watch = if is_sse {
        UsageWatch::sse(undo_include_usage)
    } else if content_type.starts_with(b"application/json") {
        UsageWatch::json()
    } else {
        UsageWatch::opaque()
    };
    // A JSON body keeps the upstream's length (which the HTTP client enforces). Not an SSE
    // stream, which may be restored or end with an error event of the proxy's own, nor an answer
    // that has no body whatever its headers say.
    let bodyless = head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let length = if is_sse || bodyless {
        None
    } else {
        response.body().exact_length()
    };
    let reservation = reservation
        .flatten()
        .map(|reservation| (reservation, status.is_success()));
    let body = Relayed::new(
        response.into_body(),
        length,
        cutoff,
        watch,
        record,
        reservation,
    );
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
