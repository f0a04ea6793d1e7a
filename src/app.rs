//! The shared state and the one `Router` both front doors serve: the routes, the OpenAI-shaped
//! 404 and 405, and `/health`. Every route but `/health` goes through `proxy::forward`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::Uri;
use axum::routing::{get, post};
use serde_json::json;

use crate::config::Config;
use crate::error::ProxyError;
use crate::keys::KeyMap;
use crate::proxy::forward;
use crate::upstream;

/// Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct AppState {
    pub client: reqwest::Client,
    pub keys: Arc<KeyMap>,
    /// `UPSTREAM_BASE_URL` without a trailing slash; request paths after `/v1` are appended.
    upstream_base: Arc<str>,
    pub max_request_body_bytes: usize,
}

impl AppState {
    pub fn new(config: &Config, keys: KeyMap) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: upstream::client(config)?,
            keys: Arc::new(keys),
            upstream_base: config
                .upstream_base_url
                .as_str()
                .trim_end_matches('/')
                .into(),
            max_request_body_bytes: config.max_request_body_bytes,
        })
    }

    /// `/v1/chat/completions?x=1` → `<base>/chat/completions?x=1`. Only routed paths get here,
    /// so the path is one of the fixed routes below.
    pub fn upstream_url(&self, uri: &Uri) -> String {
        let suffix = uri.path().strip_prefix("/v1").unwrap_or(uri.path());
        match uri.query() {
            Some(query) => format!("{}{suffix}?{query}", self.upstream_base),
            None => format!("{}{suffix}", self.upstream_base),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(forward))
        .route("/v1/embeddings", post(forward))
        .route("/v1/responses", post(forward))
        .route("/v1/models", get(forward))
        .route("/health", get(health))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "key_map_loaded": !state.keys.is_empty(),
    }))
}

async fn unknown_route(request: Request) -> ProxyError {
    ProxyError::UnknownRoute {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    }
}

async fn method_not_allowed(request: Request) -> ProxyError {
    ProxyError::MethodNotAllowed {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    }
}
