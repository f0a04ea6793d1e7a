//! A function-URL event (payload format 2.0) as the request the router serves, reading only what
//! the proxy uses: the method, `rawPath`, `rawQueryString`, the headers and cookies, and the body
//! (base64-decoded when `isBase64Encoded`). Everything else in the event (the request context's
//! other dozen fields) is skipped unread. lambda_http's parser, which this replaces on the hot
//! path, builds all of it and then an absolute URL (about 50,000 instructions per invocation
//! under callgrind); its result is the reference this parser is tested against
//! (`tests/it/lambda_event_parse.rs`).
//!
//! The request's URI is the path and query, as the local server's requests have it. A body
//! without JSON escapes is a slice of the event's buffer, not a copy.

use std::borrow::Cow;
use std::fmt;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use base64::Engine as _;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::json_text::Text;

/// Why an event is not a request the router can take. Its text never quotes the event.
#[derive(Debug, thiserror::Error)]
pub enum BadEvent {
    #[error(
        "the event is not a function URL request ({kind:?} error at line {line}, column {column})"
    )]
    Json {
        kind: serde_json::error::Category,
        line: usize,
        column: usize,
    },
    #[error("the event's {0} is not valid HTTP")]
    Invalid(&'static str),
}

impl From<serde_json::Error> for BadEvent {
    fn from(err: serde_json::Error) -> Self {
        // Where and what kind of error, never serde's message: it can quote the event's values,
        // and an event invoked directly could hold anything.
        Self::Json {
            kind: err.classify(),
            line: err.line(),
            column: err.column(),
        }
    }
}

/// The request in `event` (the bytes `/next` gave).
pub fn request(event: &Bytes) -> Result<Request<Body>, BadEvent> {
    let parsed: Event<'_> = serde_json::from_slice(event)?;
    let method = Method::from_bytes(parsed.request_context.http.method.0.as_bytes())
        .map_err(|_| BadEvent::Invalid("method"))?;
    let uri = uri(
        parsed.raw_path.as_ref().map_or("/", |path| &path.0),
        parsed
            .raw_query_string
            .as_ref()
            .map_or("", |query| &query.0),
    )?;
    let mut headers = parsed.headers.map(|headers| headers.0).unwrap_or_default();
    if let Some(cookies) = parsed.cookies.filter(|cookies| !cookies.is_empty()) {
        let joined = cookies
            .iter()
            .map(|cookie| cookie.0.as_ref())
            .collect::<Vec<_>>()
            .join("; ");
        if let Ok(value) = HeaderValue::try_from(joined) {
            headers.insert(header::COOKIE, value);
        }
    }
    let body = match (parsed.body, parsed.is_base64_encoded) {
        (None, _) => Bytes::new(),
        (Some(text), true) => base64::engine::general_purpose::STANDARD
            .decode(text.0.as_bytes())
            .map_err(|_| BadEvent::Invalid("base64 body"))?
            .into(),
        (Some(Text(Cow::Borrowed(text))), false) => event.slice_ref(text.as_bytes()),
        (Some(Text(Cow::Owned(text))), false) => text.into(),
    };
    let mut request = Request::new(Body::from(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// What URL parsing would escape in a path or query: a function URL passes the client's raw
/// target, and `http` refuses a few characters that browsers and `url` percent-encode.
const ESCAPED: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

fn uri(path: &str, query: &str) -> Result<Uri, BadEvent> {
    let target = |path: &str, query: &str| {
        let mut target = String::with_capacity(path.len() + query.len() + 2);
        if !path.starts_with('/') {
            target.push('/');
        }
        target.push_str(path);
        if !query.is_empty() {
            target.push('?');
            target.push_str(query);
        }
        target
    };
    Uri::try_from(target(path, query)).or_else(|_| {
        let path = utf8_percent_encode(path, ESCAPED).to_string();
        let query = utf8_percent_encode(query, ESCAPED).to_string();
        Uri::try_from(target(&path, &query)).map_err(|_| BadEvent::Invalid("path or query"))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(borrow, default)]
    raw_path: Option<Text<'a>>,
    #[serde(borrow, default)]
    raw_query_string: Option<Text<'a>>,
    #[serde(default)]
    headers: Option<Headers>,
    #[serde(borrow, default)]
    cookies: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    request_context: RequestContext<'a>,
    #[serde(borrow, default)]
    body: Option<Text<'a>>,
    #[serde(default)]
    is_base64_encoded: bool,
}

#[derive(Deserialize)]
struct RequestContext<'a> {
    #[serde(borrow)]
    http: Http<'a>,
}

#[derive(Deserialize)]
struct Http<'a> {
    #[serde(borrow)]
    method: Text<'a>,
}

/// `headers`: name → value, or name → [values] (as lambda_http also takes them).
struct Headers(HeaderMap);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(HeadersVisitor)
    }
}

struct HeadersVisitor;

impl<'de> Visitor<'de> for HeadersVisitor {
    type Value = Headers;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of header names to values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut headers = HeaderMap::with_capacity(16);
        while let Some(name) = map.next_key::<Text<'de>>()? {
            let name = HeaderName::from_bytes(name.0.as_bytes())
                .map_err(|_| de::Error::custom("a header name is not valid HTTP"))?;
            map.next_value_seed(AppendTo {
                headers: &mut headers,
                name,
            })?;
        }
        Ok(Headers(headers))
    }
}

/// Puts one header's value in the map, or appends each of its values.
struct AppendTo<'m> {
    headers: &'m mut HeaderMap,
    name: HeaderName,
}

impl AppendTo<'_> {
    fn append<E: de::Error>(&mut self, value: &str) -> Result<(), E> {
        let value = HeaderValue::from_str(value)
            .map_err(|_| E::custom("a header value is not valid HTTP"))?;
        self.headers.append(&self.name, value);
        Ok(())
    }
}

/// Replaces the header's values with one (a name given twice with a string each: the last
/// wins, as lambda_http has it).
fn insert<E: de::Error>(headers: &mut HeaderMap, name: HeaderName, value: &str) -> Result<(), E> {
    let value =
        HeaderValue::from_str(value).map_err(|_| E::custom("a header value is not valid HTTP"))?;
    headers.insert(name, value);
    Ok(())
}

impl<'de> DeserializeSeed<'de> for AppendTo<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AppendTo<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        insert(self.headers, self.name, value)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Text<'de>>()? {
            self.append(&value.0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw_path: &str, raw_query: &str) -> Uri {
        let event = serde_json::json!({
            "rawPath": raw_path,
            "rawQueryString": raw_query,
            "requestContext": { "http": { "method": "GET" } },
        });
        request(&Bytes::from(event.to_string()))
            .unwrap()
            .uri()
            .clone()
    }

    #[test]
    fn a_target_http_refuses_is_escaped_as_url_parsing_would_escape_it() {
        assert_eq!(
            parsed("/v1/models/a b<c>", "q=\"x\""),
            "/v1/models/a%20b%3Cc%3E?q=%22x%22"
        );
        assert_eq!(parsed("/v1/models", "limit=2"), "/v1/models?limit=2");
        assert_eq!(parsed("v1/models", ""), "/v1/models");
    }
}
