//! The forwarding handler, in phases: route (`routes.rs`) → admit the key → policy (route,
//! model: `policy.rs`) → limits (`limits.rs`: count the request, reserve its tokens) → build the
//! key's upstream request (`upstream/outbound.rs`) → send → relay (`relay.rs`, then `stream.rs`,
//! which settles the tokens before the body's end). The response body is the upstream's byte
//! stream handed straight to the client: no buffering, no re-framing (the one exception, a usage
//! flag the proxy itself added, is undone event by event in `usage.rs`). Every request ends in
//! exactly one `RequestRecord` log line. Nothing here logs a header map or a key.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use crate::cache::Authorized;
use crate::deadline::{before, invocation_cutoff};
use crate::error::ProxyError;
use crate::headers;
use crate::keys::RealKey;
use crate::limits::{Admission, RateHeaders, Reservation};
use crate::metering::{Outcome, RequestRecord};
use crate::policy;
use crate::relay;
use crate::routes::{self, ModelAt, ModelListing, Route};
use crate::state::AppState;
use crate::upstream::{self, Auth, ErrorChain, Outbound, Signer};

mod body;

use body::{Policed, policed_body};

pub async fn forward(State(state): State<AppState>, request: Request) -> Response {
    let route = match routes::route(request.method(), request.uri().path()) {
        Ok(route) => route,
        Err(unrouted) => return answered(unrouted, state.record_for(&request, UNROUTED)),
    };
    let record = state.record_for(&request, route.group.name());
    let (authorized, record) = match admit(&state, request.headers(), record).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    if let Err(refused) = policy::check_route(&authorized.entry, &route) {
        return answered(refused, record);
    }
    if let (Some(listing), Some(models)) = (route.model_listing, &authorized.entry.policy().models)
    {
        return answer_from_list(listing, models, request.uri().path(), record);
    }
    let mut record = record;
    match forward_authorized(&state, request, &route, authorized, &mut record).await {
        Ok(answer) => relay::relay(answer, record),
        Err(err) => answered(err, record),
    }
}

/// The record's route for a request outside the route table: never the client's path, which
/// could mint log fields and metric values at will (the 404's message echoes it to the client).
const UNROUTED: &str = "(unrouted)";

/// `GET /v1/models[/{model}]` for a key limited to some models, answered from its list.
fn answer_from_list(
    listing: ModelListing,
    models: &[String],
    path: &str,
    mut record: RequestRecord,
) -> Response {
    match policy::listed_models(listing, models, path) {
        Ok(body) => {
            record.status = StatusCode::OK.as_u16();
            record.finish(Outcome::Complete);
            Json(body).into_response()
        }
        Err(refused) => answered(refused, record),
    }
}

/// The request's record, and its caller once the wrapper key is accepted; a refusal is the
/// finished answer.
async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    mut record: RequestRecord,
) -> Result<(Authorized, RequestRecord), Response> {
    match authenticate(state, headers).await {
        Ok(authorized) => {
            record.tenant = authorized.entry.caller(&authorized.digest).to_string();
            Ok((authorized, record))
        }
        Err(err) => Err(answered(err, record)),
    }
}

/// The proxy's own answer to a request it will not or cannot forward, metered like any other.
pub fn answered(err: ProxyError, mut record: RequestRecord) -> Response {
    record.status = err.classify().0.as_u16();
    let outcome = match &err {
        ProxyError::RateLimited(refusal) => {
            record.limit = Some(refusal.limit.as_str());
            Outcome::Throttled
        }
        ProxyError::LimitsUnavailable => {
            record.limits_store_error = true;
            Outcome::Complete
        }
        _ => Outcome::Complete,
    };
    record.finish(outcome);
    err.into_response()
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Authorized, ProxyError> {
    headers::check_request_headers(headers)?;
    let token = headers::bearer_token(headers)?;
    state.keys.authorize(token).await
}

async fn forward_authorized(
    state: &AppState,
    request: Request,
    route: &Route,
    authorized: Authorized,
    record: &mut RequestRecord,
) -> Result<relay::Answer, ProxyError> {
    let (parts, body) = request.into_parts();
    let cutoff = invocation_cutoff(&parts.extensions, state.deadline_margin);
    let upstream = authorized
        .entry
        .upstream
        .as_deref()
        .unwrap_or(&state.default_upstream);
    record.upstream = Some(upstream.name.clone());
    let Policed {
        body,
        undo_include_usage,
        tokens,
    } = if parts.method == Method::POST {
        let entry = &authorized.entry;
        policed_body(state, &parts.headers, body, route, entry, upstream, record).await?
    } else {
        // GET, HEAD and DELETE carry no body in the OpenAI API: none goes upstream.
        if route.model_at == ModelAt::Path {
            let model = routes::path_model(parts.uri.path());
            policy::check_path_model(&authorized.entry, route, model.as_deref())?;
            record.model = model.as_deref().map(policy::shown_model);
        }
        Policed::default()
    };
    let mut limits = if authorized.entry.is_limited() {
        Some(admit_within_limits(state, &authorized, tokens, record).await?)
    } else {
        None
    };

    let (path, query) = (parts.uri.path(), parts.uri.query());
    let outbound = Outbound::new(upstream, &parts.method, path, query, &parts.headers, body);
    let signer = match upstream.auth {
        Auth::AwsSigV4 { .. } => Some(state.signer().await),
        _ => None,
    };
    let send = |real_key| {
        Sent {
            state,
            outbound: &outbound,
            signer,
            cutoff,
            caller: &record.tenant,
        }
        .send(real_key)
    };
    let mut sent = send(authorized.entry.real_key.as_ref()).await;
    if sent
        .as_ref()
        .is_ok_and(|response| response.status() == StatusCode::UNAUTHORIZED)
    {
        // The real key may have been rotated in the secret since this map was read.
        if let Some(renewed) = state.keys.refresh_after_upstream_401(&authorized).await {
            tracing::info!(caller = %record.tenant, "upstream refused the real key; retrying once with the rotated key");
            sent = send(renewed.entry.real_key.as_ref()).await;
        }
    }
    let response = match sent {
        Ok(response) => response,
        Err(failed) => {
            // A request that never reached the upstream used no tokens: its reservation is
            // given back. One that may have (a timeout, a reset) keeps it.
            if let Some((_, Some(reservation))) = limits
                && !failed.delivered
                && !reservation.settle(0).await
            {
                record.limits_store_error = true;
            }
            return Err(failed.err);
        }
    };
    // An empty body reports no usage, and the server may drop it unpolled: a reservation is
    // settled here (given back for a failed answer, kept for a successful one).
    if response.body().exact_length() == Some(0)
        && let Some((_, reservation)) = &mut limits
        && let Some(reservation) = reservation.take()
        && !response.status().is_success()
        && !reservation.settle(0).await
    {
        record.limits_store_error = true;
    }
    Ok(relay::Answer {
        response,
        cutoff,
        undo_include_usage,
        head: parts.method == Method::HEAD,
        served_by: upstream.name_header.clone(),
        limits,
    })
}

/// Counts a limited key's request against its limits and its tenant's, reserving `tokens`.
async fn admit_within_limits(
    state: &AppState,
    authorized: &Authorized,
    tokens: u64,
    record: &mut RequestRecord,
) -> Result<(RateHeaders, Option<Reservation>), ProxyError> {
    let counter_id = authorized.entry.counter_id(&authorized.digest);
    record.key_id = Some(counter_id.to_string());
    let subject = authorized.entry.limit_subject(&counter_id);
    match state.limiter.admit(subject, tokens).await? {
        Admission::Admitted(admitted) => Ok((admitted.headers, admitted.reservation)),
        // Served uncounted: no rate-limit headers, and none of the upstream's either (they
        // describe the real key's organisation, not this caller).
        Admission::Unchecked => {
            record.limits_store_error = true;
            Ok((RateHeaders::default(), None))
        }
    }
}

/// One send of the upstream request (the 401 retry is a second one).
struct Sent<'a> {
    state: &'a AppState,
    outbound: &'a Outbound<'a>,
    signer: Option<&'a Signer>,
    cutoff: Option<Instant>,
    caller: &'a str,
}

/// A send that failed: the error to answer, and whether the upstream may have received the
/// request (and spent tokens on it): not if it was never built or no connection was made.
struct Failed {
    err: ProxyError,
    delivered: bool,
}

impl Sent<'_> {
    async fn send(self, real_key: Option<&RealKey>) -> Result<upstream::Response, Failed> {
        let client = &self.state.client;
        let mut refused = 0;
        loop {
            let request = self
                .outbound
                .build(real_key, self.signer)
                .await
                .map_err(|err| Failed {
                    err,
                    delivered: false,
                })?;
            let method = request.method().clone();
            let sent = before(self.cutoff, client.send(request))
                .await
                .map_err(|err| Failed {
                    err,
                    delivered: true,
                })?;
            let err = match sent {
                Ok(response) => return Ok(response),
                // An HTTP/2 upstream refused the stream unprocessed (a graceful GOAWAY, or
                // REFUSED_STREAM): sent again, on another stream or connection, as reqwest did.
                Err(err) if err.is_refused() && refused < REFUSED_RETRIES => {
                    refused += 1;
                    continue;
                }
                Err(err) => err,
            };
            let upstream = &self.outbound.upstream.name;
            tracing::warn!(caller = %self.caller, %method, %upstream, error = %ErrorChain(&err), "upstream request failed");
            return Err(Failed {
                err: upstream::classify(&err),
                delivered: !err.is_connect() && !err.is_refused(),
            });
        }
    }
}

/// How often a request an HTTP/2 upstream refused unprocessed is sent again.
const REFUSED_RETRIES: u32 = 2;
