//! The CloudWatch Embedded Metric Format record of one request, written as one JSON line.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{NO_MODEL, NO_UPSTREAM, Outcome, RequestRecord, millis};

impl RequestRecord {
    /// The EMF record, one JSON line: `_aws` says which root members are metrics, in which
    /// namespace, along which dimensions; the members themselves follow (plus the request id,
    /// route and status, for Logs Insights).
    pub fn emf(&self, namespace: &str, duration: Duration) -> String {
        // `model` was cut to 100 characters when it was read.
        let model = match (&self.model, self.upstream_status) {
            (Some(model), Some(200..=299)) => model.as_str(),
            _ => NO_MODEL,
        };
        let failed = matches!(
            self.outcome,
            Outcome::UpstreamFailed | Outcome::ErrorEvent | Outcome::Deadline
        );
        let client_error = (400..500).contains(&self.status);
        let server_error = self.status >= 500 || failed;
        let mut metrics = vec![
            Metric::count("Requests"),
            Metric::count("Errors"),
            Metric::count("Errors4xx"),
            Metric::count("Errors5xx"),
            Metric::milliseconds("Duration"),
            Metric::count("Throttled"),
        ];
        if self.limits_store_error {
            metrics.push(Metric::count("LimitsStoreErrors"));
        }
        if self.first_byte.is_some() {
            metrics.push(Metric::milliseconds("TimeToFirstByte"));
        }
        if self.usage.is_some() {
            metrics.extend([
                Metric::count("PromptTokens"),
                Metric::count("CompletionTokens"),
            ]);
        }
        let record = EmfRecord {
            aws: Aws {
                timestamp: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |since| since.as_millis() as u64),
                cloud_watch_metrics: [Directive {
                    namespace,
                    // `[]`: the proxy-wide totals, which plain alarms (5xx rate, throttling)
                    // read without a query language.
                    dimensions: &[&["tenant", "model"], &["tenant"], &["upstream"], &[]],
                    metrics,
                }],
            },
            tenant: &self.tenant,
            model,
            // Requests the proxy answered itself went to no upstream.
            upstream: self
                .upstream
                .as_deref()
                .filter(|_| self.upstream_status.is_some())
                .unwrap_or(NO_UPSTREAM),
            requests: 1,
            errors: u8::from(client_error || server_error),
            errors_4xx: u8::from(client_error),
            errors_5xx: u8::from(server_error),
            duration: millis(duration),
            throttled: u8::from(self.outcome == Outcome::Throttled),
            limits_store_errors: self.limits_store_error.then_some(1),
            time_to_first_byte: self.first_byte.map(millis),
            prompt_tokens: self.usage.map(|usage| usage.prompt_tokens),
            completion_tokens: self.usage.map(|usage| usage.completion_tokens),
            request_id: &self.request_id,
            route: &self.route,
            status: self.status,
        };
        // Strings and numbers only: serialising cannot fail.
        serde_json::to_string(&record).unwrap_or_default()
    }
}

/// The EMF record of one failed key map load or refresh: `KeyMapLoadFailures`, with no
/// dimensions, so one alarm sees every failure (the log line says which and why).
pub fn key_map_failure(namespace: &str) -> String {
    let record = serde_json::json!({
        "_aws": {
            "Timestamp": SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[]],
                "Metrics": [{"Name": "KeyMapLoadFailures", "Unit": "Count"}],
            }],
        },
        "KeyMapLoadFailures": 1,
    });
    record.to_string()
}

/// The EMF record's fields, in the order they are written.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EmfRecord<'a> {
    #[serde(rename = "_aws")]
    aws: Aws<'a>,
    #[serde(rename = "tenant")]
    tenant: &'a str,
    #[serde(rename = "model")]
    model: &'a str,
    #[serde(rename = "upstream")]
    upstream: &'a str,
    requests: u8,
    errors: u8,
    #[serde(rename = "Errors4xx")]
    errors_4xx: u8,
    #[serde(rename = "Errors5xx")]
    errors_5xx: u8,
    duration: f64,
    throttled: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits_store_errors: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_to_first_byte: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens: Option<u64>,
    #[serde(rename = "requestId")]
    request_id: &'a str,
    #[serde(rename = "route")]
    route: &'a str,
    #[serde(rename = "status")]
    status: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Aws<'a> {
    timestamp: u64,
    cloud_watch_metrics: [Directive<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    namespace: &'a str,
    dimensions: &'static [&'static [&'static str]],
    metrics: Vec<Metric>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Metric {
    name: &'static str,
    unit: &'static str,
}

impl Metric {
    fn count(name: &'static str) -> Self {
        Self {
            name,
            unit: "Count",
        }
    }
    fn milliseconds(name: &'static str) -> Self {
        Self {
            name,
            unit: "Milliseconds",
        }
    }
}
