//! The request the proxy sends to a key's upstream: the client's method, path, query and
//! allow-listed headers, the body as the policy left it, and the upstream's own credential and
//! extras. Built once per request; built again (with a rotated key) for the 401 retry. A SigV4
//! upstream's request is signed last, over exactly what is sent.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Uri, header};

use super::{Auth, Signer, Upstream};
use crate::error::ProxyError;
use crate::headers;
use crate::keys::RealKey;

pub struct Outbound<'a> {
    pub upstream: &'a Upstream,
    method: Method,
    /// `None`: no URI can be made (see `Upstream::request_url`).
    url: Option<Uri>,
    client_headers: &'a HeaderMap,
    body: Bytes,
}

impl<'a> Outbound<'a> {
    pub fn new(
        upstream: &'a Upstream,
        method: &Method,
        path: &str,
        query: Option<&str>,
        client_headers: &'a HeaderMap,
        body: Bytes,
    ) -> Self {
        Self {
            upstream,
            method: method.clone(),
            url: upstream.request_url(path, query),
            client_headers,
            body,
        }
    }

    /// The request, authorised with `real_key` (if the upstream's auth takes one) or signed
    /// with `signer`'s credentials (if it is SigV4).
    pub async fn build(
        &self,
        real_key: Option<&RealKey>,
        signer: Option<&Signer>,
    ) -> Result<Request<Bytes>, ProxyError> {
        let mut headers = headers::upstream_request_headers(self.client_headers);
        self.upstream.authorise(&mut headers, real_key);
        if self.body.is_empty() && self.method == Method::POST {
            // A POST without a body (`…/cancel`) still says so: some servers insist (411).
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        let url = self.url.clone().ok_or(ProxyError::UpstreamUnreachable)?;
        let mut request = Request::new(self.body.clone());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = url;
        *request.headers_mut() = headers;
        if let Auth::AwsSigV4 { region, service } = &self.upstream.auth {
            let signer = signer.ok_or(ProxyError::UpstreamCredentials)?;
            signer.sign(&mut request, region, service).await?;
        }
        Ok(request)
    }
}
