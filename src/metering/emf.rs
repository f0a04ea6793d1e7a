//! The CloudWatch Embedded Metric Format record of one request, written as one JSON line.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::line::{Line, LineFormat, push_json_string, push_millis, push_u64};
use super::{NO_MODEL, NO_UPSTREAM, Outcome, RequestRecord, micros};

/// The dimension sets every request record declares. `[]`: the proxy-wide totals, which plain
/// alarms (5xx rate, throttling) read without a query language.
const DIMENSIONS: &str = r#"[["tenant","model"],["tenant"],["upstream"],[]]"#;

impl RequestRecord {
    /// The EMF record on a line of its own (the log line is written apart): `_aws` says which
    /// root members are metrics, in which namespace, along which dimensions; the dimensions and
    /// metrics themselves follow, plus the request id, route and status, for Logs Insights.
    pub fn emf(&self, namespace: &str, duration: Duration) -> String {
        let mut out = String::with_capacity(640);
        out.push('{');
        self.push_aws(&mut out, namespace);
        out.push_str("\"tenant\":");
        push_json_string(&mut out, &self.tenant);
        out.push_str(",\"model\":");
        push_json_string(&mut out, self.model_dimension());
        out.push_str(",\"upstream\":");
        push_json_string(&mut out, self.upstream_dimension());
        out.push(',');
        self.push_metrics(&mut out, duration);
        out.push_str(",\"requestId\":");
        push_json_string(&mut out, &self.request_id);
        out.push_str(",\"route\":");
        push_json_string(&mut out, &self.route);
        out.push_str(",\"status\":");
        push_u64(&mut out, u64::from(self.status));
        out.push('}');
        out
    }

    /// The log line and the EMF record in one JSON line, one write: EMF records are log events
    /// themselves, so the line's own fields sit beside the metrics. The `model` and `upstream`
    /// members are the metrics' dimensions (`(none)` where no upstream answered 2xx, or none was
    /// asked); a model asked for and not answered for is `requested_model`, an upstream chosen
    /// and not answered by (unreachable, or the proxy answered first) `requested_upstream`.
    pub fn line_with_emf(&self, namespace: &str, duration: Duration) -> String {
        let mut aws = String::with_capacity(400);
        self.push_aws(&mut aws, namespace);
        let mut line = Line::start(LineFormat::Json, &aws);
        let (model, upstream) = (self.model_dimension(), self.upstream_dimension());
        self.push_fields(&mut line, Some(upstream), Some(model), duration);
        // What the dimensions leave out: the model asked for, the upstream chosen.
        if let Some(requested) = self.model.as_deref().filter(|&asked| asked != model) {
            line.quoted("requested_model", requested);
        }
        if let Some(chosen) = self
            .upstream
            .as_deref()
            .filter(|&chosen| chosen != upstream)
        {
            line.quoted("requested_upstream", chosen);
        }
        let mut metrics = String::with_capacity(200);
        self.push_metrics(&mut metrics, duration);
        line.members(&metrics);
        line.finish()
    }

    /// The model as a dimension: client-chosen model names count only once the upstream
    /// answered 2xx, so nobody can mint metrics at will. (`model` was cut to 100 characters
    /// when it was read.)
    fn model_dimension(&self) -> &str {
        match (&self.model, self.upstream_status) {
            (Some(model), Some(200..=299)) => model.as_str(),
            _ => NO_MODEL,
        }
    }

    /// Requests the proxy answered itself went to no upstream.
    fn upstream_dimension(&self) -> &str {
        self.upstream
            .as_deref()
            .filter(|_| self.upstream_status.is_some())
            .unwrap_or(NO_UPSTREAM)
    }

    /// `"_aws":{…},`: the metadata, naming this request's metrics.
    fn push_aws(&self, out: &mut String, namespace: &str) {
        out.push_str("\"_aws\":{\"Timestamp\":");
        push_u64(out, unix_millis());
        out.push_str(",\"CloudWatchMetrics\":[{\"Namespace\":");
        push_json_string(out, namespace);
        out.push_str(",\"Dimensions\":");
        out.push_str(DIMENSIONS);
        out.push_str(",\"Metrics\":[");
        let mut metrics = vec![
            ("Requests", COUNT),
            ("Errors", COUNT),
            ("Errors4xx", COUNT),
            ("Errors5xx", COUNT),
            ("Duration", MILLISECONDS),
            ("Throttled", COUNT),
        ];
        if self.limits_store_error {
            metrics.push(("LimitsStoreErrors", COUNT));
        }
        if self.first_byte.is_some() {
            metrics.push(("TimeToFirstByte", MILLISECONDS));
        }
        if self.usage.is_some() {
            metrics.extend([("PromptTokens", COUNT), ("CompletionTokens", COUNT)]);
        }
        for (index, (name, unit)) in metrics.into_iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str("{\"Name\":\"");
            out.push_str(name);
            out.push_str("\",\"Unit\":\"");
            out.push_str(unit);
            out.push_str("\"}");
        }
        out.push_str("]}]},");
    }

    /// The metrics' values: `"Requests":1,…` (no leading or trailing comma).
    fn push_metrics(&self, out: &mut String, duration: Duration) {
        let failed = matches!(
            self.outcome,
            Outcome::UpstreamFailed | Outcome::ErrorEvent | Outcome::Deadline
        );
        let client_error = (400..500).contains(&self.status);
        let server_error = self.status >= 500 || failed;
        let mut line = Members { out, first: true };
        line.count("Requests", 1);
        line.count("Errors", u64::from(client_error || server_error));
        line.count("Errors4xx", u64::from(client_error));
        line.count("Errors5xx", u64::from(server_error));
        line.millis("Duration", duration);
        line.count("Throttled", u64::from(self.outcome == Outcome::Throttled));
        if self.limits_store_error {
            line.count("LimitsStoreErrors", 1);
        }
        if let Some(first_byte) = self.first_byte {
            line.millis("TimeToFirstByte", first_byte);
        }
        if let Some(usage) = self.usage {
            line.count("PromptTokens", usage.prompt_tokens);
            line.count("CompletionTokens", usage.completion_tokens);
        }
    }
}

const COUNT: &str = "Count";
const MILLISECONDS: &str = "Milliseconds";

/// JSON members written one after another, comma-separated.
struct Members<'a> {
    out: &'a mut String,
    first: bool,
}

impl Members<'_> {
    fn name(&mut self, name: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
    }

    fn count(&mut self, name: &str, value: u64) {
        self.name(name);
        push_u64(self.out, value);
    }

    fn millis(&mut self, name: &str, duration: Duration) {
        self.name(name);
        push_millis(self.out, micros(duration));
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// The EMF record of one failed key map load or refresh: `KeyMapLoadFailures`, with no
/// dimensions, so one alarm sees every failure (the log line says which and why).
pub fn key_map_failure(namespace: &str) -> String {
    let record = serde_json::json!({
        "_aws": {
            "Timestamp": unix_millis(),
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::metering::Metering;

    /// A request the proxy refused after choosing its upstream (a 429 from a limit).
    fn refused() -> RequestRecord {
        let metering = Metering {
            emf_namespace: None,
            include_stream_usage: true,
            line_format: LineFormat::Json,
        };
        let mut record = RequestRecord::new(
            &metering,
            Some("id-1"),
            &http::Method::POST,
            "chat.completions",
        );
        record.tenant = "team \"a\"".to_owned();
        record.model = Some("gpt-4o-mini".to_owned());
        record.upstream = Some("azure".into());
        record.status = 429;
        record
    }

    /// Every metric `_aws` names is a number at the root, and every dimension a string.
    fn check_emf(record: &Value) {
        let directive = &record["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "ns");
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(record[name].is_number(), "{name} missing in {record}");
        }
        for set in directive["Dimensions"].as_array().unwrap() {
            for dimension in set.as_array().unwrap() {
                let name = dimension.as_str().unwrap();
                assert!(record[name].is_string(), "{name} missing in {record}");
            }
        }
        assert!(record["_aws"]["Timestamp"].is_u64());
    }

    #[test]
    fn the_record_alone_and_the_line_with_it_are_valid_emf() {
        let record = refused();
        let alone: Value =
            serde_json::from_str(&record.emf("ns", Duration::from_micros(2_178))).unwrap();
        check_emf(&alone);
        assert_eq!(alone["model"], "(none)");
        assert_eq!(alone["upstream"], "(none)");
        assert_eq!(alone["tenant"], "team \"a\"");
        assert_eq!(alone["Duration"].as_f64(), Some(2.178));

        let line = record.line_with_emf("ns", Duration::from_micros(2_178));
        assert!(
            line.ends_with("}\n") && line.matches('\n').count() == 1,
            "{line}"
        );
        let line: Value = serde_json::from_str(&line).unwrap();
        check_emf(&line);
        assert_eq!(line["message"], "request");
        assert_eq!(line["target"], "openai_proxy::request");
        assert_eq!(line["status"], 429);
        assert_eq!(line["duration_ms"].as_f64(), Some(2.178));
        // The dimensions say `(none)`; what the request asked for and was sent to stays.
        assert_eq!(line["model"], "(none)");
        assert_eq!(line["requested_model"], "gpt-4o-mini");
        assert_eq!(line["upstream"], "(none)");
        assert_eq!(line["requested_upstream"], "azure");
    }
}
