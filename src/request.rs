//! The client's request body, which the proxy reads whole (requests are small; responses are
//! what stream): read under a size limit, checked to be one JSON object or a well-formed
//! multipart body, summarised for the key policy and metering, and, for a chat stream, given the
//! usage flag the proxy asks for.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;

mod member;

use crate::error::ProxyError;
use crate::multipart;
use crate::routes::{ModelAt, Route};

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

/// How a POST body is to be read, from its declared content type.
pub enum BodyKind<'a> {
    /// `application/json`, or no content type at all (the API tolerates that).
    Json,
    /// `multipart/form-data`, on a route that takes it.
    Multipart { boundary: &'a str },
}

impl<'a> BodyKind<'a> {
    /// Anything else is refused (415), as is multipart on a route that only takes JSON.
    pub fn of(headers: &'a HeaderMap, route: &Route) -> Result<Self, ProxyError> {
        let Some(value) = headers.get(header::CONTENT_TYPE) else {
            return Ok(Self::Json);
        };
        let value = value
            .to_str()
            .map_err(|_| ProxyError::UnsupportedContentType)?;
        let media_type = value.split(';').next().unwrap_or_default().trim();
        if media_type.eq_ignore_ascii_case("application/json") {
            Ok(Self::Json)
        } else if media_type.eq_ignore_ascii_case("multipart/form-data") && route.multipart {
            Ok(Self::Multipart {
                boundary: multipart::boundary(value)?,
            })
        } else {
            Err(ProxyError::UnsupportedContentType)
        }
    }
}

/// What the proxy itself reads from a request body: the model it names (where the route table
/// says it is), and whether it asks for a stream (and set `stream_options` itself).
#[derive(Debug, Default)]
pub struct RequestSummary {
    pub model: Option<String>,
    pub stream: bool,
    pub stream_options: bool,
    /// The output cap it sets (`max_tokens`, `max_completion_tokens` or `max_output_tokens`),
    /// which a limited key reserves (`limits.rs`); a value that is no count is left to the API.
    pub max_output_tokens: Option<u64>,
}

/// The JSON members read. Parsing also checks the whole body is one JSON object, so malformed
/// input gets a clear 400 here; the bytes still go upstream unchanged.
#[derive(Deserialize)]
struct JsonFields {
    #[serde(default)]
    model: Option<serde_json::Value>,
    #[serde(default)]
    stream: Option<bool>,
    /// Whether the member is there at all, whatever its value (`null` included).
    #[serde(default)]
    stream_options: Present,
    #[serde(default)]
    session: Option<SessionFields>,
    #[serde(default)]
    max_tokens: Option<Count>,
    #[serde(default)]
    max_completion_tokens: Option<Count>,
    #[serde(default)]
    max_output_tokens: Option<Count>,
}

/// A member read as a count if it is a non-negative integer, and as nothing otherwise (the
/// upstream judges it), without building a value for it.
struct Count(Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E>(self, value: u64) -> Result<Count, E> {
                Ok(Count(Some(value)))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Count, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Count(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Count, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Count(None))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// `session` of a realtime client secret: its model (a second `model` in it is refused, as at
/// the top level, so the proxy and the upstream cannot read different ones).
#[derive(Deserialize)]
struct SessionFields {
    #[serde(default)]
    model: Option<serde_json::Value>,
}

#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Self(true))
    }
}

impl RequestSummary {
    pub fn of(body: &[u8], kind: &BodyKind<'_>, route: &Route) -> Result<Self, ProxyError> {
        match kind {
            BodyKind::Multipart { boundary } => Ok(Self {
                model: multipart::model_field(body, boundary)?,
                ..Self::default()
            }),
            // A POST that makes nothing (`…/cancel`) may come with no body at all.
            BodyKind::Json if body.is_empty() && !route.uses_model => Ok(Self::default()),
            BodyKind::Json => Self::of_json(body, route.model_at),
        }
    }

    fn of_json(body: &[u8], model_at: ModelAt) -> Result<Self, ProxyError> {
        // serde would also accept a JSON array for a struct; the API takes only objects.
        let is_object = body
            .iter()
            .find(|byte| !byte.is_ascii_whitespace())
            .is_some_and(|&byte| byte == b'{');
        if !is_object {
            return Err(ProxyError::InvalidJson);
        }
        let fields: JsonFields =
            serde_json::from_slice(body).map_err(|_| ProxyError::InvalidJson)?;
        let model = match model_at {
            ModelAt::Session => fields.session.and_then(|session| session.model),
            ModelAt::Body | ModelAt::Path => fields.model,
        };
        let model = match model {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(name)) => Some(name),
            // The API refuses it too; a key's model list cannot be checked against it.
            Some(_) => return Err(ProxyError::ModelNotText),
        };
        let max_output_tokens = [
            fields.max_tokens,
            fields.max_completion_tokens,
            fields.max_output_tokens,
        ]
        .into_iter()
        .find_map(|count| count.and_then(|count| count.0));
        Ok(Self {
            model,
            stream: fields.stream == Some(true),
            stream_options: fields.stream_options.0,
            max_output_tokens,
        })
    }
}

/// The JSON body with its top-level `model` set to `model` (the one member serde found, so it
/// is there and unique); every other byte unchanged.
pub fn with_model(body: &Bytes, model: &str) -> Bytes {
    let Some(range) = member::top_level_value(body, "model") else {
        return body.clone();
    };
    let value = serde_json::Value::from(model).to_string();
    let mut changed = Vec::with_capacity(body.len() + value.len());
    changed.extend_from_slice(&body[..range.start]);
    changed.extend_from_slice(value.as_bytes());
    changed.extend_from_slice(&body[range.end..]);
    Bytes::from(changed)
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
