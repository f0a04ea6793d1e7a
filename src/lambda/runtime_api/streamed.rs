//! A streamed answer's body as the Runtime API takes it: the JSON prelude and the eight-NUL
//! delimiter, then the router's body as it comes, and on a failure mid-body the error in the
//! trailers.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use http_body::Frame;
use lambda_http::Error as BoxError;

use super::{ERROR_BODY, ERROR_TYPE};

/// The response's prelude and delimiter, then the router's body as it comes. The two are chunks
/// of their own, as `cargo lambda watch` reads them, ready at once, so they leave in one write.
/// A body that fails ends with the error in the trailers, as the Runtime API expects.
pub(super) struct Streamed {
    /// What is still to go before the body.
    pub(super) head: Vec<Bytes>,
    pub(super) body: Body,
    pub(super) over: bool,
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.head.is_empty() {
            let next = self.head.remove(0);
            return Poll::Ready(Some(Ok(Frame::data(next))));
        }
        if self.over {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Err(err))) => {
                self.over = true;
                Poll::Ready(Some(Ok(Frame::trailers(error_trailers(&err.to_string())))))
            }
            other => other.map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty() && (self.over || self.body.is_end_stream())
    }
}

/// `Lambda-Runtime-Function-Error-Type` and `-Body` (base64 of the error's JSON).
fn error_trailers(message: &str) -> HeaderMap {
    let body = serde_json::json!({"errorType": "Runtime.StreamError", "errorMessage": message});
    let encoded = base64::engine::general_purpose::STANDARD.encode(body.to_string());
    let mut trailers = HeaderMap::new();
    trailers.insert(
        HeaderName::from_static(ERROR_TYPE),
        HeaderValue::from_static("Runtime.StreamError"),
    );
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        trailers.insert(HeaderName::from_static(ERROR_BODY), value);
    }
    trailers
}
