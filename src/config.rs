//! Typed configuration, read once at start-up from a lookup function (the process environment in
//! production, a map in tests), so no test ever mutates the process environment.
//! Every bad variable is reported at once; values that could be keys are never echoed.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::limits::OnStoreError;

pub const DEFAULT_UPSTREAM: &str = "https://api.openai.com/v1";
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8000";
/// Just under the 6 MB payload cap of a function URL invocation, so an oversized body gets our
/// clear 413 instead of a bare error from the Lambda service.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 6_000_000;
pub const DEFAULT_NAMESPACE: &str = "openai-proxy";
/// Enough to write the final SSE event and return before Lambda stops the invocation.
pub const DEFAULT_DEADLINE_MARGIN_MILLISECONDS: u64 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontDoor {
    /// Under the Lambda runtime: a function URL in RESPONSE_STREAM mode.
    Lambda,
    /// A plain HTTP server, for trying the proxy without an AWS account.
    Local { listen_addr: SocketAddr },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySourceConfig {
    File(PathBuf),
    /// A Secrets Manager secret name or ARN.
    SecretsManager(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub front_door: FrontDoor,
    /// Base URL ending in `/v1` (or the compatible upstream's equivalent); request paths after
    /// `/v1` are appended to it.
    pub upstream_base_url: Url,
    pub key_source: KeySourceConfig,
    /// How long a fetched key map is used before the next request refreshes it.
    pub key_map_ttl: Duration,
    /// At most one extra refresh (unknown key, failed refresh) per this interval.
    pub key_map_min_refresh_interval: Duration,
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes from the upstream: the response head or the next chunk.
    pub idle_timeout: Duration,
    pub max_request_body_bytes: usize,
    /// Under Lambda, streams end (and waits for a response head give up) this long before the
    /// invocation's deadline, so the client gets a clean ending instead of a killed connection.
    pub deadline_margin: Duration,
    /// `RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info`.
    pub log_filter: String,
    /// Log lines as JSON objects: `LOG_FORMAT=json`, or Lambda's `AWS_LAMBDA_LOG_FORMAT=JSON`.
    pub log_json: bool,
    /// The CloudWatch namespace for per-request EMF records; `None` when they are switched off
    /// (`METRICS_EMF`, on by default under Lambda, off in local mode).
    pub emf_namespace: Option<String>,
    /// Ask the upstream for token usage on chat streams (`STREAM_INCLUDE_USAGE`, default on).
    pub stream_include_usage: bool,
    /// `LIMITS_TABLE`: the DynamoDB table of shared counters; `None`: counters in this process.
    pub limits_table: Option<String>,
    /// `LIMITS_ON_STORE_ERROR`: serve (`allow`, the default) or refuse (`deny`) when the limits
    /// store cannot be reached.
    pub limits_on_store_error: OnStoreError,
    /// `LIMITS_DEFAULT_OUTPUT_TOKENS`: what a generating request that sets no output cap
    /// reserves for its output.
    pub limits_default_output_tokens: u64,
    /// `WORKER_THREADS`: threads serving requests; `None`, one per CPU (tokio's default, and
    /// the default locally and under Lambda Managed Instances). Classic Lambda defaults to 1:
    /// one invocation at a time, on less than one CPU below 1,769 MB, where a second thread only
    /// adds hand-overs (a futex wake per request) and idle wake-ups.
    pub worker_threads: Option<usize>,
}

pub const DEFAULT_LIMITS_OUTPUT_TOKENS: u64 = 1_000;

/// All problems found in the environment, one per line.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigErrors> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let mut problems = Vec::new();

        let front_door = if get("AWS_LAMBDA_RUNTIME_API").is_some() {
            FrontDoor::Lambda
        } else {
            let raw = get("LISTEN_ADDR").unwrap_or_else(|| DEFAULT_LISTEN_ADDR.to_owned());
            match raw.trim().parse() {
                Ok(listen_addr) => FrontDoor::Local { listen_addr },
                Err(_) => {
                    problems.push(format!(
                        "LISTEN_ADDR: expected an address like {DEFAULT_LISTEN_ADDR}, got {raw:?}"
                    ));
                    FrontDoor::Local {
                        listen_addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
                    }
                }
            }
        };

        let upstream_raw = get("UPSTREAM_BASE_URL").unwrap_or_else(|| DEFAULT_UPSTREAM.to_owned());
        let upstream_base_url = match crate::upstream::checked_base_url(upstream_raw.trim()) {
            Ok(url) => Some(url),
            Err(problem) => {
                // The URL is not echoed: a mistaken paste could hold credentials.
                problems.push(format!("UPSTREAM_BASE_URL: {problem}"));
                None
            }
        };

        let key_source = match (get("KEY_MAP_FILE"), get("KEY_MAP_SECRET_ID")) {
            (Some(path), None) => Some(KeySourceConfig::File(PathBuf::from(path))),
            (None, Some(secret_id)) => {
                Some(KeySourceConfig::SecretsManager(secret_id.trim().to_owned()))
            }
            (Some(_), Some(_)) => {
                problems.push(
                    "KEY_MAP_FILE and KEY_MAP_SECRET_ID are both set: configure exactly one key map source"
                        .to_owned(),
                );
                None
            }
            (None, None) => {
                problems.push(
                    "no key map source: set KEY_MAP_SECRET_ID to a Secrets Manager secret, or KEY_MAP_FILE to a JSON file such as keys.example.json"
                        .to_owned(),
                );
                None
            }
        };

        let mut seconds = |name: &str, default: u64| -> Duration {
            match get(name).map(|raw| (raw.trim().parse::<u64>(), raw)) {
                None => Duration::from_secs(default),
                Some((Ok(value), _)) if value > 0 => Duration::from_secs(value),
                Some((_, raw)) => {
                    problems.push(format!(
                        "{name}: expected a whole number of seconds above 0, got {raw:?}"
                    ));
                    Duration::from_secs(default)
                }
            }
        };
        let connect_timeout = seconds("UPSTREAM_CONNECT_TIMEOUT_SECONDS", 10);
        let idle_timeout = seconds("UPSTREAM_IDLE_TIMEOUT_SECONDS", 600);
        let key_map_ttl = seconds("KEY_MAP_TTL_SECONDS", 300);
        let key_map_min_refresh_interval = seconds("KEY_MAP_MIN_REFRESH_INTERVAL_SECONDS", 10);

        let max_request_body_bytes = match get("MAX_REQUEST_BODY_BYTES") {
            None => DEFAULT_MAX_REQUEST_BODY_BYTES,
            Some(raw) => match raw.trim().parse::<usize>() {
                Ok(value) if value > 0 => value,
                _ => {
                    problems.push(format!(
                        "MAX_REQUEST_BODY_BYTES: expected a whole number of bytes above 0, got {raw:?}"
                    ));
                    DEFAULT_MAX_REQUEST_BODY_BYTES
                }
            },
        };

        let deadline_margin = match get("LAMBDA_DEADLINE_MARGIN_MILLISECONDS") {
            None => Duration::from_millis(DEFAULT_DEADLINE_MARGIN_MILLISECONDS),
            Some(raw) => match raw.trim().parse::<u64>() {
                Ok(millis) => Duration::from_millis(millis),
                Err(_) => {
                    problems.push(format!(
                        "LAMBDA_DEADLINE_MARGIN_MILLISECONDS: expected a whole number of milliseconds, got {raw:?}"
                    ));
                    Duration::from_millis(DEFAULT_DEADLINE_MARGIN_MILLISECONDS)
                }
            },
        };

        let log_filter = get("RUST_LOG")
            .or_else(|| get("AWS_LAMBDA_LOG_LEVEL").map(|level| level.to_ascii_lowercase()))
            .unwrap_or_else(|| "info".to_owned());
        let log_json = get("LOG_FORMAT")
            .or_else(|| get("AWS_LAMBDA_LOG_FORMAT"))
            .is_some_and(|format| format.trim().eq_ignore_ascii_case("json"));

        let mut switch = |name: &str, default: bool| -> bool {
            match get(name).map(|raw| (raw.trim().to_ascii_lowercase(), raw)) {
                None => default,
                Some((value, raw)) => match value.as_str() {
                    "1" | "true" | "on" | "yes" => true,
                    "0" | "false" | "off" | "no" => false,
                    _ => {
                        problems.push(format!("{name}: expected true or false, got {raw:?}"));
                        default
                    }
                },
            }
        };
        let emf = switch("METRICS_EMF", front_door == FrontDoor::Lambda);
        let stream_include_usage = switch("STREAM_INCLUDE_USAGE", true);
        let namespace = get("METRICS_NAMESPACE").unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        let namespace = namespace.trim().to_owned();
        if namespace.len() > 255 || namespace.starts_with(':') {
            problems.push(
                "METRICS_NAMESPACE: expected at most 255 characters, not starting with ':'"
                    .to_owned(),
            );
        }
        let emf_namespace = emf.then_some(namespace);

        let limits_table = get("LIMITS_TABLE").map(|table| table.trim().to_owned());
        let limits_on_store_error =
            match get("LIMITS_ON_STORE_ERROR").map(|raw| (raw.trim().to_ascii_lowercase(), raw)) {
                None => OnStoreError::Allow,
                Some((value, _)) if value == "allow" => OnStoreError::Allow,
                Some((value, _)) if value == "deny" => OnStoreError::Deny,
                Some((_, raw)) => {
                    problems.push(format!(
                        "LIMITS_ON_STORE_ERROR: expected allow or deny, got {raw:?}"
                    ));
                    OnStoreError::Allow
                }
            };
        let limits_default_output_tokens = match get("LIMITS_DEFAULT_OUTPUT_TOKENS") {
            None => DEFAULT_LIMITS_OUTPUT_TOKENS,
            Some(raw) => match raw.trim().parse::<u64>() {
                Ok(value) => value,
                Err(_) => {
                    problems.push(format!(
                        "LIMITS_DEFAULT_OUTPUT_TOKENS: expected a whole number of tokens, got {raw:?}"
                    ));
                    DEFAULT_LIMITS_OUTPUT_TOKENS
                }
            },
        };

        let classic_lambda =
            front_door == FrontDoor::Lambda && get("AWS_LAMBDA_MAX_CONCURRENCY").is_none();
        let worker_threads = match get("WORKER_THREADS") {
            None => classic_lambda.then_some(1),
            Some(raw) => match raw.trim().parse::<usize>() {
                Ok(threads @ 1..=1024) => Some(threads),
                _ => {
                    problems.push(format!(
                        "WORKER_THREADS: expected a number of threads from 1 to 1024, got {raw:?}"
                    ));
                    None
                }
            },
        };

        match (upstream_base_url, key_source) {
            (Some(upstream_base_url), Some(key_source)) if problems.is_empty() => Ok(Self {
                front_door,
                upstream_base_url,
                key_source,
                key_map_ttl,
                key_map_min_refresh_interval,
                connect_timeout,
                idle_timeout,
                max_request_body_bytes,
                deadline_margin,
                log_filter,
                log_json,
                emf_namespace,
                stream_include_usage,
                limits_table,
                limits_on_store_error,
                limits_default_output_tokens,
                worker_threads,
            }),
            _ => Err(ConfigErrors(problems)),
        }
    }
}

#[cfg(test)]
mod tests;
