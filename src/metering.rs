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
mod line;

pub use emf::key_map_failure;
use line::Line;
pub use line::LineFormat;

/// How requests are metered, from the configuration.
#[derive(Clone, Debug)]
pub struct Metering {
    /// The CloudWatch namespace of the EMF records; `None`: no EMF records.
    pub emf_namespace: Option<Arc<str>>,
    /// Ask the upstream for usage on chat streams that did not (and undo what that changes).
    pub include_stream_usage: bool,
    /// How the request's line looks (the log's format).
    pub line_format: LineFormat,
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
    line_format: LineFormat,
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
            line_format: metering.line_format,
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

    /// Writes the request's line (if `RUST_LOG` lets its target through) and its EMF record:
    /// with JSON logs, both are one line on stdout, one write; otherwise the line goes to stderr
    /// with the rest of the log and the record to stdout.
    fn write(&mut self) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        let duration = self.started.elapsed();
        let logged = tracing::enabled!(target: "openai_proxy::request", tracing::Level::INFO);
        match (&self.emf_namespace, self.line_format) {
            (Some(namespace), LineFormat::Json) if logged => {
                write_line(
                    &mut std::io::stdout().lock(),
                    &self.line_with_emf(namespace, duration),
                );
            }
            (namespace, format) => {
                if logged {
                    write_line(&mut std::io::stderr().lock(), &self.line(format, duration));
                }
                if let Some(namespace) = namespace {
                    write_emf_line(&self.emf(namespace, duration));
                }
            }
        }
    }

    /// The request's log line on its own.
    pub fn line(&self, format: LineFormat, duration: Duration) -> String {
        let mut line = Line::start(format, "");
        self.push_fields(
            &mut line,
            self.upstream.as_deref(),
            self.model.as_deref(),
            duration,
        );
        line.finish()
    }

    /// The line's fields, in the order they have always had. `upstream` and `model` are given:
    /// a line that is also an EMF record has their dimension values there.
    fn push_fields(
        &self,
        line: &mut Line,
        upstream: Option<&str>,
        model: Option<&str>,
        duration: Duration,
    ) {
        line.str("requestId", &self.request_id);
        line.str("tenant", &self.tenant);
        line.str("method", self.method.as_str());
        line.str("route", &self.route);
        line.opt_quoted("upstream", upstream);
        line.opt_quoted("model", model);
        line.bool("stream", self.stream);
        line.u64("status", u64::from(self.status));
        line.opt_u64("upstream_status", self.upstream_status.map(u64::from));
        line.opt_quoted("upstream_request_id", self.upstream_request_id.as_deref());
        line.quoted("outcome", self.outcome.as_str());
        line.opt_quoted("key_id", self.key_id.as_deref());
        line.opt_quoted("limit", self.limit);
        if self.limits_store_error {
            line.bool("limits_store_error", true);
        }
        if let Some(first_byte) = self.first_byte {
            line.millis("ttfb_ms", micros(first_byte));
        }
        line.millis("duration_ms", micros(duration));
        line.u64("bytes_in", self.bytes_in);
        line.u64("bytes_out", self.bytes_out);
        if let Some(usage) = self.usage {
            line.u64("prompt_tokens", usage.prompt_tokens);
            line.u64("completion_tokens", usage.completion_tokens);
            line.u64("total_tokens", usage.total_tokens);
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
    let mut whole = String::with_capacity(line.len() + 1);
    whole.push_str(line);
    whole.push('\n');
    write_line(&mut stdout, &whole);
}

/// A whole line (newline included) in one call under the stream's lock: stderr is unbuffered and
/// stdout flushes at a line's end, so it is one `write`, which no other line can split.
fn write_line(out: &mut impl Write, line: &str) {
    let _ = out.write_all(line.as_bytes());
}

/// A duration in whole microseconds, rounded.
fn micros(duration: Duration) -> u64 {
    u64::try_from((duration.as_nanos() + 500) / 1_000).unwrap_or(u64::MAX)
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
