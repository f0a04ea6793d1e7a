//! Pure header rules: reading the wrapper key out of `Authorization`, and the two allow-lists that
//! decide what crosses the proxy in each direction.
//! Allow-lists, not deny-lists: a header nobody thought about (a new credential, a hop-by-hop
//! header, `host`) stays behind by default. Nothing here logs or formats a header value.

use axum::http::{HeaderMap, HeaderName, header};

use crate::error::ProxyError;

/// Request headers the SDKs send that the upstream may act on. `accept-encoding` is left out on
/// purpose: the upstream then answers uncompressed, so the relayed bytes stay observable.
static FORWARD_REQUEST: [HeaderName; 8] = [
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::USER_AGENT,
    HeaderName::from_static("openai-beta"),
    HeaderName::from_static("openai-organization"),
    HeaderName::from_static("openai-project"),
    HeaderName::from_static("idempotency-key"),
    HeaderName::from_static("x-client-request-id"),
];

/// SDK telemetry and retry bookkeeping (`x-stainless-retry-count`, `-lang`, `-timeout`, …).
const FORWARD_REQUEST_PREFIX: &str = "x-stainless-";

/// Response headers clients rely on: the body's type, request ids for support tickets,
/// rate-limit state for back-off. `openai-organization` is not among them: it names the owner of
/// the real key, which is not the caller's business.
static RELAY_RESPONSE: [HeaderName; 7] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CACHE_CONTROL,
    header::RETRY_AFTER,
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("openai-processing-ms"),
    HeaderName::from_static("openai-version"),
];

const RELAY_RESPONSE_PREFIXES: [&str; 2] = ["x-ratelimit-", "retry-after-"];

/// Reads `Authorization: Bearer <token>`: the scheme in any case, spaces around either part
/// tolerated. More than one `Authorization` header is refused rather than guessed at.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ProxyError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(ProxyError::MissingKey)?;
    if values.next().is_some() {
        return Err(ProxyError::MalformedAuthorization);
    }
    let text = value
        .to_str()
        .map_err(|_| ProxyError::MalformedAuthorization)?
        .trim();
    if text.is_empty() {
        return Err(ProxyError::MissingKey);
    }
    let (scheme, token) = text
        .split_once(|c: char| c.is_ascii_whitespace())
        .ok_or(ProxyError::MalformedAuthorization)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.contains(|c: char| c.is_ascii_whitespace())
    {
        return Err(ProxyError::MalformedAuthorization);
    }
    Ok(token)
}

/// Request headers larger than this in total are refused: far beyond what an SDK sends, and a
/// function URL would refuse them anyway.
pub const MAX_REQUEST_HEADER_BYTES: usize = 32 * 1024;

/// Refuses oversized header sections.
pub fn check_request_headers(headers: &HeaderMap) -> Result<(), ProxyError> {
    let size: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if size > MAX_REQUEST_HEADER_BYTES {
        return Err(ProxyError::HeadersTooLarge {
            limit: MAX_REQUEST_HEADER_BYTES,
        });
    }
    Ok(())
}

/// The client's headers that go upstream: the allow-listed ones (the upstream's own credential
/// is added by `upstream::Upstream::authorise`).
pub fn upstream_request_headers(client: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(client.len() + 2);
    for (name, value) in client {
        if FORWARD_REQUEST.contains(name) || name.as_str().starts_with(FORWARD_REQUEST_PREFIX) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The upstream's headers worth relaying to the client.
pub fn client_response_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        let keep = RELAY_RESPONSE.contains(name)
            || RELAY_RESPONSE_PREFIXES
                .iter()
                .any(|prefix| name.as_str().starts_with(prefix));
        if keep {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with_auth(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn accepts_bearer_in_any_case_with_spaces() {
        for value in [
            "Bearer k1",
            "bearer k1",
            "BEARER  k1",
            "  Bearer k1  ",
            "Bearer\tk1",
        ] {
            assert_eq!(
                bearer_token(&with_auth(&[value])).unwrap(),
                "k1",
                "{value:?}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_single_bearer_token() {
        let cases: [(&[&str], &str); 7] = [
            (&[], "missing"),
            (&[""], "empty"),
            (&["Basic dXNlcjpwYXNz"], "basic"),
            (&["k1"], "no scheme"),
            (&["Bearer"], "no token"),
            (&["Bearer a b"], "two tokens"),
            (&["Bearer k1", "Bearer k2"], "duplicate header"),
        ];
        for (values, what) in cases {
            assert!(bearer_token(&with_auth(values)).is_err(), "{what}");
        }
    }

    #[test]
    fn forwards_allow_listed_headers_and_no_credential() {
        let mut client = with_auth(&["Bearer wrapper"]);
        for (name, value) in [
            ("content-type", "application/json"),
            ("x-stainless-retry-count", "0"),
            ("openai-beta", "assistants=v2"),
            ("host", "proxy.example"),
            ("connection", "keep-alive"),
            ("cookie", "session=1"),
            ("api-key", "wrapper"),
            ("accept-encoding", "gzip"),
        ] {
            client.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let out = upstream_request_headers(&client);
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["content-type", "openai-beta", "x-stainless-retry-count"]
        );
    }

    #[test]
    fn relays_useful_response_headers_only() {
        let mut upstream = HeaderMap::new();
        for (name, value) in [
            ("content-type", "text/event-stream"),
            ("x-request-id", "req_1"),
            ("x-ratelimit-remaining-requests", "99"),
            ("retry-after-ms", "20"),
            ("openai-organization", "org-secret"),
            ("set-cookie", "__cf_bm=1"),
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive"),
        ] {
            upstream.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let out = client_response_headers(&upstream);
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "content-type",
                "retry-after-ms",
                "x-ratelimit-remaining-requests",
                "x-request-id"
            ]
        );
    }
}
