//! The client's request body, which the proxy reads whole (requests are small; responses are
//! what stream): read under a size limit, checked to be one JSON object, summarised for the key
//! policy and metering, and, for a chat stream, given the usage flag the proxy asks for.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;

use crate::error::ProxyError;

/// Reads the whole request body: requests are small, responses are what stream.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ProxyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    let collected = Limited::new(body, limit).collect().await.map_err(|err| {
        if err.is::<LengthLimitError>() {
            ProxyError::BodyTooLarge { limit }
        } else {
            ProxyError::BodyUnreadable
        }
    })?;
    Ok(collected.to_bytes())
}

/// The fields the proxy itself looks at. Parsing it also checks the whole body is one JSON
/// object, so malformed input gets a clear 400 here; the bytes still go upstream unchanged.
#[derive(Deserialize)]
pub struct RequestSummary {
    #[serde(default)]
    pub model: Option<serde_json::Value>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// Whether the member is there at all, whatever its value (`null` included).
    #[serde(default)]
    pub stream_options: Present,
}

#[derive(Default)]
pub struct Present(pub bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Self(true))
    }
}

impl RequestSummary {
    pub fn of(body: &[u8]) -> Result<Self, ProxyError> {
        // serde would also accept a JSON array for a struct; the API takes only objects.
        let is_object = body
            .iter()
            .find(|byte| !byte.is_ascii_whitespace())
            .is_some_and(|&byte| byte == b'{');
        if !is_object {
            return Err(ProxyError::InvalidJson);
        }
        serde_json::from_slice(body).map_err(|_| ProxyError::InvalidJson)
    }
}

/// The request body with `"stream_options":{"include_usage":true}` as its first member. The
/// body is a JSON object (checked) with at least `stream` in it, so a comma always follows.
pub fn with_include_usage(body: &[u8]) -> Bytes {
    const MEMBER: &[u8] = br#""stream_options":{"include_usage":true},"#;
    let open = body.iter().position(|&b| b == b'{').map_or(0, |at| at + 1);
    let mut changed = Vec::with_capacity(body.len() + MEMBER.len());
    changed.extend_from_slice(&body[..open]);
    changed.extend_from_slice(MEMBER);
    changed.extend_from_slice(&body[open..]);
    Bytes::from(changed)
}
