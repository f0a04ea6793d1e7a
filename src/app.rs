//! The shared state and the one `Router` both front doors serve: the routes, the OpenAI-shaped
//! 404 and 405, and `/health`. Every route but `/health` goes through `proxy::forward`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;

use crate::cache::KeyCache;
use crate::config::{Config, KeySourceConfig};
use crate::error::ProxyError;
use crate::metering::{Metering, RequestRecord};
use crate::proxy::{answered, forward, list_models};
use crate::secrets::{FileSource, KeySource, SecretsManagerSource, SourceError};
use crate::upstream;

/// Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct AppState {
    pub client: reqwest::Client,
    pub keys: Arc<KeyCache>,
    /// `UPSTREAM_BASE_URL` without a trailing slash; request paths after `/v1` are appended.
    upstream_base: Arc<str>,
    pub max_request_body_bytes: usize,
    /// Under Lambda: how long before the invocation's deadline a response is ended.
    pub deadline_margin: std::time::Duration,
    pub metering: Metering,
    /// `host[:port]` of the upstream, for `/health`.
    upstream_host: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("{0}")]
    KeyMap(#[from] SourceError),
}

impl AppState {
    /// Builds the state for serving: loads the key map while a connection to the upstream is
    /// opened, so the first request pays for neither. A bad key file stops start-up; a secret
    /// that cannot be read does not (requests get 503 and `/health` says why until it can).
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let source: Box<dyn KeySource> = match &config.key_source {
            KeySourceConfig::File(path) => Box::new(FileSource { path: path.clone() }),
            KeySourceConfig::SecretsManager(secret_id) => {
                Box::new(SecretsManagerSource::from_environment(secret_id.clone()).await)
            }
        };
        let keys = Arc::new(KeyCache::new(
            source,
            config.key_map_ttl,
            config.key_map_min_refresh_interval,
        ));
        let state = Self::new(config, keys)?;
        let (loaded, ()) = tokio::join!(
            state.keys.load(),
            upstream::warm_up(&state.client, &state.upstream_base)
        );
        match (loaded, &config.key_source) {
            (Err(err), KeySourceConfig::File(_)) => Err(err.into()),
            _ => Ok(state),
        }
    }

    pub fn new(config: &Config, keys: Arc<KeyCache>) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: upstream::client(config)?,
            keys,
            upstream_base: config
                .upstream_base_url
                .as_str()
                .trim_end_matches('/')
                .into(),
            max_request_body_bytes: config.max_request_body_bytes,
            deadline_margin: config.deadline_margin,
            metering: Metering {
                emf_namespace: config.emf_namespace.as_deref().map(Arc::from),
                include_stream_usage: config.stream_include_usage,
            },
            upstream_host: match (
                config.upstream_base_url.host_str(),
                config.upstream_base_url.port(),
            ) {
                (Some(host), Some(port)) => format!("{host}:{port}").into(),
                (Some(host), None) => host.into(),
                (None, _) => "".into(),
            },
        })
    }

    /// A fresh record for `request`, under its Lambda request id when it has one.
    pub fn record_for(&self, request: &Request) -> RequestRecord {
        let lambda_request_id = request
            .extensions()
            .get::<lambda_http::Context>()
            .map(|context| context.request_id.as_str())
            .filter(|id| !id.is_empty());
        RequestRecord::new(
            &self.metering,
            lambda_request_id,
            request.method(),
            request.uri().path(),
        )
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
        .route("/v1/models", get(list_models))
        .route("/health", get(health))
        .fallback(unknown_route)
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
        "upstream": state.upstream_host,
    });
    (status, Json(body))
}

async fn unknown_route(State(state): State<AppState>, request: Request) -> Response {
    let err = ProxyError::UnknownRoute {
        method: request.method().to_string(),
        path: shown_path(request.uri()),
    };
    answered(err, unrouted_record(&state, &request))
}

async fn method_not_allowed(State(state): State<AppState>, request: Request) -> Response {
    let err = ProxyError::MethodNotAllowed {
        method: request.method().to_string(),
        path: shown_path(request.uri()),
    };
    answered(err, unrouted_record(&state, &request))
}

/// Unrouted paths are client-chosen: the log line carries the shortened path.
fn unrouted_record(state: &AppState, request: &Request) -> RequestRecord {
    let mut record = state.record_for(request);
    record.route = shown_path(request.uri());
    record
}

/// The request path as echoed in error messages: enough to spot a typo, never a whole
/// oversized URL.
fn shown_path(uri: &Uri) -> String {
    const SHOWN: usize = 200;
    let path = uri.path();
    match path.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &path[..cut]),
        None => path.to_owned(),
    }
}
