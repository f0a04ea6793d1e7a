//! Who used what: one structured log line per request (target `openai_proxy::request`), and,
//! when switched on, one CloudWatch Embedded Metric Format record per request on stdout, from
//! which CloudWatch makes per-tenant, per-model metrics without a database.
//!
//! A `RequestRecord` is filled in as the request goes and written exactly once: when the response
//! body ends, when the proxy answers with its own error, or, if the client leaves mid-stream,
//! when the body is dropped. It holds no key: the tenant is the key map's name for the caller,
//! else the short non-reversible key id (`key:` and 8 hex digits of the wrapper key's SHA-256).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::Method;
use tokio::time::Instant;

use crate::usage::Usage;

mod emf;

pub use emf::key_map_failure;

/// How requests are metered, from the configuration.
#[derive(Clone, Debug)]
pub struct Metering {
    /// The CloudWatch namespace of the EMF records; `None`: no EMF records.
    pub emf_namespace: Option<Arc<str>>,
    /// Ask the upstream for usage on chat streams that did not (and undo what that changes).
    pub include_stream_usage: bool,
}

/// How a response ended, as the log line says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The whole upstream body reached the client (or the proxy answered itself).
    Complete,
    /// The upstream failed mid-body; the client got an error event or a cut.
    UpstreamFailed,
    /// The upstream's stream carried its own in-band error event (passed on unchanged).
    ErrorEvent,
    /// The Lambda invocation's deadline came first.
    Deadline,
    /// The client left before the end.
    ClientGone,
    /// A key's or its tenant's limit refused the request (429, no upstream call).
    Throttled,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::UpstreamFailed => "upstream_failed",
            Self::ErrorEvent => "error_event",
            Self::Deadline => "deadline",
            Self::ClientGone => "client_gone",
            Self::Throttled => "throttled",
        }
    }
}

/// Dimension value for requests without a model the upstream accepted: client-chosen model
/// names are only used once the upstream answered 2xx, so nobody can mint metrics at will.
const NO_MODEL: &str = "(none)";

/// Dimension value for requests the proxy answered itself, before or instead of an upstream.
const NO_UPSTREAM: &str = "(none)";

pub struct RequestRecord {
    request_id: String,
    pub tenant: String,
    method: Method,
    pub route: String,
    /// The upstream's key-map name, once one is chosen.
    pub upstream: Option<Arc<str>>,
    pub model: Option<String>,
    pub stream: bool,
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub upstream_request_id: Option<String>,
    started: Instant,
    first_byte: Option<Duration>,
    pub bytes_in: u64,
    bytes_out: u64,
    pub usage: Option<Usage>,
    /// For a limited key: whose counters it counts in (the entry's `id`, else the key id), so a
    /// throttled request can be matched with its counters.
    pub key_id: Option<String>,
    /// The limit that refused the request (`key.requests_per_minute`, …).
    pub limit: Option<&'static str>,
    /// The limits store failed for this request (admission or settling).
    pub limits_store_error: bool,
    outcome: Outcome,
    emf_namespace: Option<Arc<str>>,
    written: bool,
}

impl RequestRecord {
    pub fn new(
        metering: &Metering,
        lambda_request_id: Option<&str>,
        method: &Method,
        route: &str,
    ) -> Self {
        Self {
            request_id: lambda_request_id.map_or_else(local_request_id, str::to_owned),
            tenant: "unknown".to_owned(),
            method: method.clone(),
            route: route.to_owned(),
            upstream: None,
            model: None,
            stream: false,
            status: 0,
            upstream_status: None,
            upstream_request_id: None,
            started: Instant::now(),
            first_byte: None,
            bytes_in: 0,
            bytes_out: 0,
            usage: None,
            key_id: None,
            limit: None,
            limits_store_error: false,
            outcome: Outcome::ClientGone,
            emf_namespace: metering.emf_namespace.clone(),
            written: false,
        }
    }

    /// Counts bytes sent to the client; the first of them fixes the time to first byte.
    pub fn sent(&mut self, bytes: usize) {
        if self.first_byte.is_none() {
            self.first_byte = Some(self.started.elapsed());
        }
        self.bytes_out += bytes as u64;
    }

    /// Bytes sent to the client so far.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    /// The response is over: writes the log line and the EMF record.
    pub fn finish(&mut self, outcome: Outcome) {
        self.outcome = outcome;
        self.write();
    }

    fn write(&mut self) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        let duration = self.started.elapsed();
        let usage = self.usage;
        tracing::info!(
            target: "openai_proxy::request",
            requestId = %self.request_id,
            tenant = %self.tenant,
            method = %self.method,
            route = %self.route,
            upstream = self.upstream.as_deref(),
            model = self.model.as_deref(),
            stream = self.stream,
            status = self.status,
            upstream_status = self.upstream_status,
            upstream_request_id = self.upstream_request_id.as_deref(),
            outcome = self.outcome.as_str(),
            key_id = self.key_id.as_deref(),
            limit = self.limit,
            limits_store_error = self.limits_store_error.then_some(true),
            ttfb_ms = self.first_byte.map(millis),
            duration_ms = millis(duration),
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            prompt_tokens = usage.map(|u| u.prompt_tokens),
            completion_tokens = usage.map(|u| u.completion_tokens),
            total_tokens = usage.map(|u| u.total_tokens),
            "request"
        );
        if let Some(namespace) = &self.emf_namespace {
            write_emf_line(&self.emf(namespace, duration));
        }
    }
}

impl Drop for RequestRecord {
    /// A body dropped before its end means the client left (or the server shut down).
    fn drop(&mut self) {
        self.write();
    }
}

/// One write of one whole EMF line, under stdout's lock: records never interleave.
pub fn write_emf_line(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"));
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// Outside Lambda: a per-process prefix and a counter, unique enough to match log lines up.
fn local_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        nanos ^ std::process::id().rotate_left(16)
    });
    format!(
        "local-{prefix:08x}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
