//! The state every request shares: the HTTP client, the key cache, the limits and metering
//! settings. The router (`app.rs`) and every phase of a request (`proxy.rs`) import it; it
//! imports neither.

use std::sync::Arc;

use axum::extract::Request;

use crate::cache::KeyCache;
use crate::config::{Config, FrontDoor, KeySourceConfig};
use crate::limits::{Clock, DynamoStore, LimitStore, Limiter, MemoryStore};
use crate::metering::{LineFormat, Metering, RequestRecord};
use crate::secrets::{FileSource, KeySource, SecretsManagerSource, SourceError};
use crate::upstream::{self, Signer, Upstream};

/// Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct AppState {
    pub client: upstream::Client,
    pub keys: Arc<KeyCache>,
    /// The `UPSTREAM_BASE_URL` upstream, for keys that name none.
    pub default_upstream: Arc<Upstream>,
    /// Signs requests to `aws-sigv4` upstreams; made at the first such request.
    signer: Arc<tokio::sync::OnceCell<Signer>>,
    pub max_request_body_bytes: usize,
    /// Under Lambda: how long before the invocation's deadline a response is ended.
    pub deadline_margin: std::time::Duration,
    pub metering: Metering,
    /// Counts limited keys' requests and tokens (`limits.rs`).
    pub limiter: Arc<Limiter>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] rustls::Error),
    #[error("{0}")]
    KeyMap(#[from] SourceError),
}

impl AppState {
    /// Builds the state for serving: loads the key map while a connection to the upstream is
    /// opened, so the first request pays for neither. A bad key file stops start-up; a secret
    /// that cannot be read does not (requests get 503 and `/health` says why until it can).
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        // Loaded once, and only if an AWS client is needed.
        let aws = tokio::sync::OnceCell::new();
        let aws_config = || aws.get_or_init(crate::aws::shared_config);
        let source: Box<dyn KeySource> = match &config.key_source {
            KeySourceConfig::File(path) => Box::new(FileSource { path: path.clone() }),
            KeySourceConfig::SecretsManager(secret_id) => Box::new(
                SecretsManagerSource::from_config(aws_config().await, secret_id.clone()),
            ),
        };
        let keys = KeyCache::new(
            source,
            config.key_map_ttl,
            config.key_map_min_refresh_interval,
        );
        let keys =
            Arc::new(keys.with_failure_metric(config.emf_namespace.as_deref().map(Arc::from)));
        let mut state = Self::new(config, keys)?;
        match &config.limits_table {
            Some(table) => {
                let store = DynamoStore::new(aws_config().await, table.clone());
                tracing::info!(
                    table = store.table(),
                    "limits: counters in DynamoDB, shared by every instance"
                );
                state = state.with_limits_store(config, Box::new(store));
            }
            _ if config.front_door == FrontDoor::Lambda => tracing::warn!(
                "limits: LIMITS_TABLE is not set, so each Lambda execution environment counts alone and keys' limits are not enforced across instances; set LIMITS_TABLE (template.yaml does)"
            ),
            _ => {}
        }
        let (loaded, ()) = tokio::join!(
            state.keys.load(),
            upstream::warm_up(&state.client, &state.default_upstream.base)
        );
        match (loaded, &config.key_source) {
            (Err(err), KeySourceConfig::File(_)) => Err(err.into()),
            _ => Ok(state),
        }
    }

    pub fn new(config: &Config, keys: Arc<KeyCache>) -> Result<Self, rustls::Error> {
        Ok(Self {
            client: upstream::Client::new(config)?,
            keys,
            default_upstream: Arc::new(Upstream::default_at(&config.upstream_base_url)),
            signer: Arc::default(),
            max_request_body_bytes: config.max_request_body_bytes,
            deadline_margin: config.deadline_margin,
            metering: Metering {
                emf_namespace: config.emf_namespace.as_deref().map(Arc::from),
                include_stream_usage: config.stream_include_usage,
                line_format: match (config.log_json, &config.front_door) {
                    (true, _) => LineFormat::Json,
                    // Lambda stamps each plain-text line itself.
                    (false, FrontDoor::Lambda) => LineFormat::Text { time: false },
                    (false, FrontDoor::Local { .. }) => LineFormat::Text { time: true },
                },
            },
            limiter: Arc::new(limiter(config, |clock| Box::new(MemoryStore::new(clock)))),
        })
    }

    /// The same state with its counters in `store` (the embedded default is in memory).
    pub fn with_limits_store(self, config: &Config, store: Box<dyn LimitStore>) -> Self {
        Self {
            limiter: Arc::new(limiter(config, |_| store)),
            ..self
        }
    }

    /// A fresh record for `request` on `route` (a route group's name, never the raw path), under
    /// its Lambda request id when it has one.
    pub fn record_for(&self, request: &Request, route: &str) -> RequestRecord {
        let lambda_request_id = request
            .extensions()
            .get::<lambda_http::Context>()
            .map(|context| context.request_id.as_str())
            .filter(|id| !id.is_empty());
        RequestRecord::new(&self.metering, lambda_request_id, request.method(), route)
    }

    /// The signer for `aws-sigv4` upstreams, with the standard credential chain. Loading that
    /// chain is a large future, boxed so it does not grow every request's future (which is
    /// moved, and copied, whole) on the paths that never sign.
    pub async fn signer(&self) -> &Signer {
        self.signer
            .get_or_init(|| Box::pin(Signer::from_environment()))
            .await
    }
}

/// The limiter over the store `store` makes, both on one clock.
fn limiter(config: &Config, store: impl FnOnce(Clock) -> Box<dyn LimitStore>) -> Limiter {
    let clock = Clock::new();
    Limiter::new(
        store(clock),
        clock,
        config.limits_on_store_error,
        config.limits_default_output_tokens,
    )
}
