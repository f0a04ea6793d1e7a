//! The one `Router` both front doors serve: `/health`, and every other request through
//! `proxy::forward`, which finds its route in the route table (`routes.rs`) or answers the
//! OpenAI-shaped 404 or 405 itself.

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use crate::error::ProxyError;
use crate::proxy::{answered, forward};
use crate::routes::shown_path;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .fallback(forward)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// 200 when requests can be served; 503 while no key map has ever been loaded.
async fn health(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let key_map = state.keys.status();
    let (status, word) = if key_map.loaded {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    let body = json!({
        "status": word,
        "version": env!("CARGO_PKG_VERSION"),
        "key_map_loaded": key_map.loaded,
        "key_map": key_map,
        "upstream": state.default_upstream.host,
        "upstreams": upstreams(&state),
        // `shared: false` under Lambda means each execution environment counts alone.
        "limits": {
            "store": state.limiter.store().kind(),
            "shared": state.limiter.store().shared(),
        },
    });
    (status, Json(body))
}

/// Every upstream a request can go to, by name and host (never a credential); plain http is
/// flagged, since requests and keys then cross the network unencrypted.
fn upstreams(state: &AppState) -> Vec<serde_json::Value> {
    let named = state
        .keys
        .map()
        .map(|map| map.upstreams().to_vec())
        .unwrap_or_default();
    std::iter::once(&state.default_upstream)
        .chain(named.iter())
        .map(|upstream| {
            json!({
                "name": upstream.name,
                "host": upstream.host,
                "auth": upstream.auth.name(),
                "plain_http": upstream.is_plain_http(),
            })
        })
        .collect()
}

/// A method other than GET on `/health`.
async fn method_not_allowed(State(state): State<AppState>, request: Request) -> Response {
    let err = ProxyError::MethodNotAllowed {
        method: request.method().to_string(),
        path: shown_path(request.uri().path()),
    };
    answered(err, state.record_for(&request, "/health"))
}
