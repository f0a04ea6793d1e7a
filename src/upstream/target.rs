//! Where a key's requests go and how they are authorised there: the default upstream
//! (`UPSTREAM_BASE_URL`, Bearer) or a named one from the key map's `upstreams`. Everything that
//! could be a credential (an extra header or query value) is kept marked sensitive and never
//! printed: `Debug` shows the name and host only.

use std::fmt;
use std::sync::Arc;

use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use url::Url;

use crate::keys::RealKey;

/// The name the default upstream goes by in records, `/health` and `x-openai-proxy-upstream`.
pub const DEFAULT_NAME: &str = "default";

/// An upstream's base URL as `UPSTREAM_BASE_URL` or a key map's `base_url` gives it: http or
/// https with a host, no credentials (keys belong in the key map), no query or fragment; one
/// trailing slash normalised away, since request paths are appended to it.
pub fn checked_base_url(raw: &str) -> Result<Url, &'static str> {
    let mut url = Url::parse(raw).map_err(|_| "not a valid URL")?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("the scheme must be http or https, with a host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not allowed; keys belong in the key map");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the URL must not have a query or fragment");
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// How requests to an upstream are authorised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <api_key>`.
    Bearer,
    /// `api-key: <api_key>` (Azure OpenAI).
    ApiKey,
    /// No credential at all.
    None,
    /// AWS SigV4 with the process's own AWS credentials, for `service` in `region`.
    AwsSigV4 { region: String, service: String },
}

impl Auth {
    /// The name the key map uses for it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::ApiKey => "api-key",
            Self::None => "none",
            Self::AwsSigV4 { .. } => "aws-sigv4",
        }
    }

    /// Whether an entry on this upstream needs its own `api_key`.
    pub fn needs_api_key(&self) -> bool {
        matches!(self, Self::Bearer | Self::ApiKey)
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: Arc<str>,
    /// The name as the `x-openai-proxy-upstream` value, made once (`None`: not a header value).
    pub name_header: Option<HeaderValue>,
    /// The base URL without a trailing slash; request paths after `/v1` are appended.
    pub base: Arc<str>,
    /// The base URL's scheme and host, parsed once for every request's URI (`None`: the base
    /// URL is not one `http` can carry, and requests to it fail).
    origin: Option<(Scheme, Authority)>,
    /// The base URL's path without a trailing slash (`/openai/v1`, or empty).
    base_path: Arc<str>,
    /// `host[:port]`, for `/health`.
    pub host: Arc<str>,
    pub auth: Auth,
    /// Static headers added to every request (values marked sensitive).
    pub headers: HeaderMap,
    /// A static query added to every request, already encoded (a secret as much as a header).
    pub query: Option<Arc<str>>,
    /// Whether the proxy may ask this upstream for stream usage (`stream_options`).
    pub include_usage: bool,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// An upstream at `base_url` (already checked to be http or https with a host).
    pub fn new(name: &str, base_url: &Url, auth: Auth) -> Self {
        let host = match (base_url.host_str(), base_url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => String::new(),
        };
        let origin = Uri::try_from(base_url.as_str())
            .ok()
            .map(http::uri::Parts::from)
            .and_then(|parts| Some((parts.scheme?, parts.authority?)));
        Self {
            name: name.into(),
            name_header: HeaderValue::from_str(name).ok(),
            base: base_url.as_str().trim_end_matches('/').into(),
            origin,
            base_path: base_url.path().trim_end_matches('/').into(),
            host: host.into(),
            auth,
            headers: HeaderMap::new(),
            query: None,
            include_usage: true,
        }
    }

    /// The `UPSTREAM_BASE_URL` upstream.
    pub fn default_at(base_url: &Url) -> Self {
        Self::new(DEFAULT_NAME, base_url, Auth::Bearer)
    }

    /// Plain http: allowed (a vLLM on a private network), and flagged in `/health`.
    pub fn is_plain_http(&self) -> bool {
        self.base.starts_with("http://")
    }

    /// `url`'s URL as the request's URI: made from the base URL's scheme and host, parsed once,
    /// so that only the path and query are parsed for each request.
    pub fn request_url(&self, path: &str, query: Option<&str>) -> Option<Uri> {
        let (scheme, authority) = self.origin.clone()?;
        let mut path_and_query = String::with_capacity(self.base_path.len() + path.len() + 64);
        path_and_query.push_str(&self.base_path);
        self.push_path_and_query(&mut path_and_query, path, query);
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme);
        parts.authority = Some(authority);
        parts.path_and_query = Some(PathAndQuery::from_maybe_shared(path_and_query).ok()?);
        Uri::from_parts(parts).ok()
    }

    /// `/v1/files/f-1/content?x=1` → `<base>/files/f-1/content?x=1[&<extra query>]`. A client
    /// parameter named like one of the upstream's own is dropped: servers that read the first of
    /// two would otherwise take the client's.
    pub fn url(&self, path: &str, query: Option<&str>) -> String {
        let mut url = String::with_capacity(self.base.len() + path.len() + 64);
        url.push_str(&self.base);
        self.push_path_and_query(&mut url, path, query);
        url
    }

    /// Appends the path after `/v1` and the query, the client's and the upstream's own.
    fn push_path_and_query(&self, url: &mut String, path: &str, query: Option<&str>) {
        url.push_str(path.strip_prefix("/v1").unwrap_or(path));
        let client = query.into_iter().flat_map(|query| query.split('&'));
        let own = self
            .query
            .as_deref()
            .into_iter()
            .flat_map(|query| query.split('&'));
        let client = client.filter(|part| {
            !self
                .query
                .as_deref()
                .is_some_and(|own| shares_a_name(part, own))
        });
        for (index, part) in client
            .chain(own)
            .filter(|part| !part.is_empty())
            .enumerate()
        {
            url.push(if index == 0 { '?' } else { '&' });
            url.push_str(part);
        }
    }

    /// Puts this upstream's credential and extras into `headers`: the entry's key as its `auth`
    /// wants it (SigV4 signs later, over the final request), then the static headers.
    pub fn authorise(&self, headers: &mut HeaderMap, real_key: Option<&RealKey>) {
        match (&self.auth, real_key) {
            (Auth::Bearer, Some(key)) => {
                headers.insert(header::AUTHORIZATION, key.authorization().clone());
            }
            (Auth::ApiKey, Some(key)) => {
                if let Some(raw) = key.raw() {
                    headers.insert(API_KEY.clone(), raw);
                }
            }
            _ => {}
        }
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// Whether the query parameter `part` (`name=value`) has the name of one in `query`, both
/// percent-decoded as servers read them.
fn shares_a_name(part: &str, query: &str) -> bool {
    let name = |pair: &str| {
        url::form_urlencoded::parse(pair.as_bytes())
            .next()
            .map(|(name, _)| name.into_owned())
    };
    let Some(client) = name(part) else {
        return false;
    };
    query
        .split('&')
        .any(|own| name(own).as_deref() == Some(client.as_str()))
}

static API_KEY: HeaderName = HeaderName::from_static("api-key");

/// A sensitive header value for an extra header; `None` if HTTP cannot carry it.
pub fn secret_header_value(value: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests;
