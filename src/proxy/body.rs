//! The POST body phase: the body read whole under the size limit, checked against the key's
//! model list, renamed by its `model_map`, given the usage flag for a chat stream, and the
//! tokens a limited key reserves for it estimated.

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;

use crate::error::ProxyError;
use crate::keys::KeyEntry;
use crate::metering::RequestRecord;
use crate::policy;
use crate::request::{BodyKind, RequestSummary, read_body, with_include_usage, with_model};
use crate::routes::{ModelAt, Route, RouteGroup};
use crate::state::AppState;
use crate::upstream::Upstream;

/// What goes upstream: the client's bytes, or, for a chat stream the proxy asks usage for, those
/// bytes with the flag added (the relay must then undo what the flag changes); and the tokens
/// a limited key reserves for the request.
#[derive(Default)]
pub struct Policed {
    pub body: Bytes,
    pub undo_include_usage: bool,
    pub tokens: u64,
}

/// A POST's body, read whole under the size limit and checked against the key's model list.
pub async fn policed_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    route: &Route,
    entry: &KeyEntry,
    upstream: &Upstream,
    record: &mut RequestRecord,
) -> Result<Policed, ProxyError> {
    let kind = BodyKind::of(headers, route)?;
    let body = read_body(body, headers, state.max_request_body_bytes).await?;
    record.bytes_in = body.len() as u64;
    let summary = RequestSummary::of(&body, &kind, route)?;
    // The whole name is checked; the record keeps at most 100 characters of it.
    policy::check_model(entry, route, summary.model.as_deref())?;
    // The key's `model_map` renames the model for its upstream: the top-level JSON member only,
    // every other byte as sent. Policy and the record keep the client's name.
    let mapped = summary
        .model
        .as_deref()
        .and_then(|model| entry.mapped_model(model));
    let body = match (mapped, &kind, route.model_at) {
        (Some(upstream_model), BodyKind::Json, ModelAt::Body) => with_model(&body, upstream_model),
        _ => body,
    };
    record.model = summary.model.as_deref().map(policy::shown_model);
    record.stream = summary.stream;
    // Usage for a chat stream comes only if asked for; asking changes the stream, which the
    // relay undoes (`usage.rs`). A client that set `stream_options` itself is left be.
    let ask_for_usage = state.metering.include_stream_usage
        && upstream.include_usage
        && summary.stream
        && !summary.stream_options
        && route.group == RouteGroup::ChatCompletions
        && route.uses_model;
    let tokens = match (entry.is_limited(), &kind) {
        (false, _) => 0,
        (true, BodyKind::Json) => {
            let generates = matches!(
                route.group,
                RouteGroup::ChatCompletions | RouteGroup::Completions | RouteGroup::Responses
            ) && route.uses_model;
            state
                .limiter
                .estimate(body.len(), summary.max_output_tokens, generates)
        }
        (true, BodyKind::Multipart { .. }) => state.limiter.estimate(0, None, false),
    };
    Ok(Policed {
        body: if ask_for_usage {
            with_include_usage(&body)
        } else {
            body
        },
        undo_include_usage: ask_for_usage,
        tokens,
    })
}
