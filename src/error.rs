//! Every way a request can fail before the upstream's own answer is relayed, and the one table
//! that turns each into a status code and OpenAI's `{"error":{…}}` body.
//! Messages here are fixed sentences or carry only request metadata: never a key, never a header.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Faults are named by whose fault they are: the client's (4xx), the upstream's (502/504), or
/// ours (5xx), in the spirit of pingora's `ErrorSource`.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    )]
    MissingKey,
    #[error("The Authorization header is malformed. Expected 'Authorization: Bearer YOUR_KEY'.")]
    MalformedAuthorization,
    #[error("Incorrect API key provided.")]
    UnknownKey,
    #[error("This API key is not allowed to use the model {model:?}.")]
    ModelNotAllowed { model: String },
    #[error(
        "This API key may use only the models on its list, and the API's default model for this request is not one of them: name a model in the request."
    )]
    ModelRequired,
    #[error("The model {model:?} does not exist or you do not have access to it.")]
    ModelNotFound { model: String },
    #[error("This API key is not allowed to call the {route} API.")]
    RouteNotAllowed { route: &'static str },
    #[error("Invalid URL ({method} {path})")]
    UnknownRoute { method: String, path: String },
    #[error("Method {method} is not allowed for {path}.")]
    MethodNotAllowed { method: String, path: String },
    #[error(
        "We could not parse the JSON body of your request. The OpenAI API expects a JSON object as the request body."
    )]
    InvalidJson,
    #[error(
        "The request body must be JSON (Content-Type: application/json) or multipart/form-data."
    )]
    UnsupportedContentType,
    #[error("The \"model\" of a request must be a string.")]
    ModelNotText,
    #[error("The multipart/form-data request body is malformed: {0}.")]
    InvalidMultipart(#[from] crate::multipart::Malformed),
    #[error("The request headers are larger than the proxy's limit of {limit} bytes.")]
    HeadersTooLarge { limit: usize },
    #[error("The request body is larger than the proxy's limit of {limit} bytes.")]
    BodyTooLarge { limit: usize },
    #[error("The request body could not be read.")]
    BodyUnreadable,
    #[error("The upstream API could not be reached.")]
    UpstreamUnreachable,
    #[error(
        "The proxy could not obtain AWS credentials to sign the request to its upstream; an operator must check the function's role."
    )]
    UpstreamCredentials,
    #[error("The upstream API did not answer in time.")]
    UpstreamTimeout,
    #[error("The upstream API stopped sending before the response was complete.")]
    UpstreamStreamBroken,
    #[error(
        "The proxy's Lambda invocation reached its time limit before the upstream finished; the response was ended early."
    )]
    FunctionDeadline,
    #[error(
        "The proxy has no key map: its source (a Secrets Manager secret or a key file) could not be read. An operator must check that the secret exists and that the function's role may read it; /health shows the last error."
    )]
    KeyMapUnavailable,
    /// A key's or its tenant's limit (`limits.rs`): 429, with the rate-limit headers.
    #[error("{0}")]
    RateLimited(Box<crate::limits::Refusal>),
    #[error(
        "The proxy could not check this API key's limits (its limits store is unreachable), and is configured to refuse requests until it can. Try again shortly."
    )]
    LimitsUnavailable,
}

/// OpenAI's error body, field for field, so SDKs raise their usual typed exceptions.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
struct ErrorDetail<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

impl ProxyError {
    /// The one exhaustive table: status, OpenAI error type, machine-readable code.
    pub fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        use ProxyError::*;
        const CLIENT: &str = "invalid_request_error";
        const SERVER: &str = "server_error";
        match self {
            MissingKey | MalformedAuthorization | UnknownKey => {
                (StatusCode::UNAUTHORIZED, CLIENT, "invalid_api_key")
            }
            ModelNotAllowed { .. } | ModelRequired => {
                (StatusCode::FORBIDDEN, CLIENT, "model_not_allowed")
            }
            ModelNotFound { .. } => (StatusCode::NOT_FOUND, CLIENT, "model_not_found"),
            RouteNotAllowed { .. } => (StatusCode::FORBIDDEN, CLIENT, "route_not_allowed"),
            UnknownRoute { .. } => (StatusCode::NOT_FOUND, CLIENT, "unknown_url"),
            MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, CLIENT, "method_not_allowed")
            }
            InvalidJson => (StatusCode::BAD_REQUEST, CLIENT, "invalid_json"),
            ModelNotText => (StatusCode::BAD_REQUEST, CLIENT, "invalid_model"),
            InvalidMultipart(_) => (StatusCode::BAD_REQUEST, CLIENT, "invalid_multipart"),
            UnsupportedContentType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                CLIENT,
                "unsupported_content_type",
            ),
            HeadersTooLarge { .. } => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                CLIENT,
                "request_headers_too_large",
            ),
            BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, CLIENT, "request_too_large"),
            BodyUnreadable => (StatusCode::BAD_REQUEST, CLIENT, "invalid_body"),
            UpstreamUnreachable => (StatusCode::BAD_GATEWAY, SERVER, "upstream_unreachable"),
            UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, SERVER, "upstream_timeout"),
            UpstreamCredentials => (
                StatusCode::SERVICE_UNAVAILABLE,
                SERVER,
                "upstream_credentials_unavailable",
            ),
            UpstreamStreamBroken => (StatusCode::BAD_GATEWAY, SERVER, "upstream_stream_broken"),
            FunctionDeadline => (StatusCode::GATEWAY_TIMEOUT, SERVER, "function_deadline"),
            KeyMapUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                SERVER,
                "key_map_unavailable",
            ),
            RateLimited(refusal) if refusal.is_budget() => (
                StatusCode::TOO_MANY_REQUESTS,
                refusal.error_type(),
                "insufficient_quota",
            ),
            RateLimited(refusal) => (
                StatusCode::TOO_MANY_REQUESTS,
                refusal.error_type(),
                "rate_limit_exceeded",
            ),
            LimitsUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                SERVER,
                "limits_unavailable",
            ),
        }
    }
}

impl ProxyError {
    /// The OpenAI-shaped JSON body for this error.
    pub fn body(&self) -> Vec<u8> {
        let (_, kind, code) = self.classify();
        let body = ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                kind,
                param: None,
                code,
            },
        };
        // Serialising a struct of strings cannot fail; the fallback keeps the shape regardless.
        serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"error":{"message":"error","type":"server_error","param":null,"code":null}}"#
                .to_vec()
        })
    }

    /// The same error as a final SSE event, for a stream whose status line has already gone out.
    pub fn sse_event(&self) -> Vec<u8> {
        let mut event = b"data: ".to_vec();
        event.extend_from_slice(&self.body());
        event.extend_from_slice(b"\n\n");
        event
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let (status, _, _) = self.classify();
        let mut response = (status, self.body()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let ProxyError::RateLimited(refusal) = &self {
            refusal.add_headers(response.headers_mut());
        }
        response
    }
}
