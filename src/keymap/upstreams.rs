//! The version-2 document's `upstreams`: named places a key's requests can go, each with its
//! auth and static extras. Problems name the upstream by position and the field by name, and
//! never quote a value (an extra header may well be a credential).

use std::sync::Arc;

use axum::http::HeaderName;
use serde_json::Value;

use super::KeyMapError;
use super::node::Node;
use crate::upstream::{Auth, DEFAULT_NAME, Upstream, secret_header_value};

/// The named upstreams of one document.
#[derive(Default)]
pub struct UpstreamsByName(Vec<Arc<Upstream>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the name must be non-empty and not \"default\" (the UPSTREAM_BASE_URL upstream)")]
    BadName,
    #[error("the same name as an earlier upstream")]
    DuplicateName,
    #[error("the value must be an object with \"base_url\"")]
    NotAnObject,
    #[error("\"base_url\" is required")]
    MissingBaseUrl,
    #[error("\"base_url\" must be an http or https URL without credentials, query or fragment")]
    BadBaseUrl,
    #[error("\"auth\" must be one of bearer, api-key, none, aws-sigv4")]
    BadAuth,
    #[error("\"auth\": \"aws-sigv4\" needs \"region\" and \"service\" (and only it takes them)")]
    SigV4Fields,
    #[error("\"{0}\" must be a non-empty string")]
    NotAString(&'static str),
    #[error(
        "\"headers\" must be an object of header name → string value (not host, content-length, transfer-encoding or connection)"
    )]
    BadHeaders,
    #[error("\"query\" must be an object of parameter name → string value")]
    BadQuery,
    #[error("\"include_usage\" must be true or false")]
    BadIncludeUsage,
    #[error(
        "unknown field (allowed: base_url, auth, region, service, headers, query, include_usage)"
    )]
    UnknownField,
}

impl UpstreamsByName {
    pub fn parse(named: Vec<(String, Node)>) -> Result<Self, KeyMapError> {
        let mut upstreams: Vec<Arc<Upstream>> = Vec::with_capacity(named.len());
        for (position, (name, definition)) in named.into_iter().enumerate() {
            let problem = |problem| KeyMapError::BadUpstream {
                upstream: position + 1,
                problem,
            };
            if name.is_empty() || name == DEFAULT_NAME {
                return Err(problem(Problem::BadName));
            }
            if upstreams.iter().any(|known| *known.name == *name) {
                return Err(problem(Problem::DuplicateName));
            }
            let Node::Object(fields) = definition else {
                return Err(problem(Problem::NotAnObject));
            };
            upstreams.push(Arc::new(parse_one(&name, fields).map_err(problem)?));
        }
        Ok(Self(upstreams))
    }

    pub fn get(&self, name: &str) -> Option<Arc<Upstream>> {
        self.0
            .iter()
            .find(|upstream| *upstream.name == *name)
            .cloned()
    }

    pub fn in_order(&self) -> Vec<Arc<Upstream>> {
        self.0.clone()
    }
}

fn parse_one(name: &str, fields: Vec<(String, Node)>) -> Result<Upstream, Problem> {
    let (mut base_url, mut auth, mut region, mut service) = (None, None, None, None);
    let (mut headers, mut query, mut include_usage) = (None, None, true);
    for (field, value) in fields {
        let value = value.into_value();
        let text = |field: &'static str| {
            value
                .as_str()
                .filter(|text| !text.is_empty())
                .map(str::to_owned)
                .ok_or(Problem::NotAString(field))
        };
        match field.as_str() {
            "base_url" => {
                base_url = Some(
                    crate::upstream::checked_base_url(&text("base_url")?)
                        .map_err(|_| Problem::BadBaseUrl)?,
                )
            }
            "auth" => auth = Some(text("auth")?),
            "region" => region = Some(text("region")?),
            "service" => service = Some(text("service")?),
            "headers" => headers = Some(parse_headers(&value).ok_or(Problem::BadHeaders)?),
            "query" => query = Some(parse_query(&value).ok_or(Problem::BadQuery)?),
            "include_usage" => include_usage = value.as_bool().ok_or(Problem::BadIncludeUsage)?,
            _ => return Err(Problem::UnknownField),
        }
    }
    let auth = match (auth.as_deref().unwrap_or("bearer"), region, service) {
        ("aws-sigv4", Some(region), Some(service)) => Auth::AwsSigV4 { region, service },
        ("aws-sigv4", _, _) | (_, Some(_), _) | (_, _, Some(_)) => {
            return Err(Problem::SigV4Fields);
        }
        ("bearer", None, None) => Auth::Bearer,
        ("api-key", None, None) => Auth::ApiKey,
        ("none", None, None) => Auth::None,
        _ => return Err(Problem::BadAuth),
    };
    let mut upstream = Upstream::new(name, &base_url.ok_or(Problem::MissingBaseUrl)?, auth);
    upstream.headers = headers.unwrap_or_default();
    upstream.query = query;
    upstream.include_usage = include_usage;
    Ok(upstream)
}

fn parse_headers(value: &Value) -> Option<axum::http::HeaderMap> {
    // Framing headers are the HTTP client's; credential headers are the upstream's `auth`.
    const REFUSED: [&str; 6] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "authorization",
        "api-key",
    ];
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in value.as_object()? {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        if REFUSED.contains(&name.as_str()) || name.as_str().starts_with("x-amz-") {
            return None;
        }
        headers.insert(name, secret_header_value(value.as_str()?)?);
    }
    Some(headers)
}

fn parse_query(value: &Value) -> Option<Arc<str>> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in value.as_object()? {
        query.append_pair(name, value.as_str()?);
    }
    Some(query.finish().into())
}

#[cfg(test)]
mod tests;
