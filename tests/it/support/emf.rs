//! A checker for CloudWatch Embedded Metric Format records, written from the rules of the EMF
//! specification (docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
//! CloudWatch_Embedded_Metric_Format_Specification.html): the `_aws` metadata object, its
//! `Timestamp` and `CloudWatchMetrics` directives, and the root members they refer to.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Every rule the record breaks (empty: a valid record).
pub fn problems(line: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut fail = |problem: String| problems.push(problem);
    if line.len() > 1_000_000 {
        fail(format!("{} bytes: over the 1 MB record limit", line.len()));
    }
    let Ok(Value::Object(root)) = serde_json::from_str::<Value>(line) else {
        fail("not a JSON object".to_owned());
        return problems;
    };
    let Some(Value::Object(aws)) = root.get("_aws") else {
        fail("no `_aws` object".to_owned());
        return problems;
    };
    match aws.get("Timestamp").and_then(Value::as_u64) {
        None => fail("`_aws.Timestamp` is not a whole number of milliseconds".to_owned()),
        Some(ms) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            // CloudWatch accepts metrics up to two weeks old and two hours ahead.
            if ms + 14 * 24 * 3_600_000 < now || ms > now + 2 * 3_600_000 {
                fail(format!(
                    "`_aws.Timestamp` {ms} is outside what CloudWatch accepts"
                ));
            }
        }
    }
    let Some(Value::Array(directives)) = aws.get("CloudWatchMetrics") else {
        fail("no `_aws.CloudWatchMetrics` array".to_owned());
        return problems;
    };
    if directives.is_empty() {
        fail("`CloudWatchMetrics` is empty".to_owned());
    }
    for directive in directives {
        let name_ok = |name: &str| !name.is_empty() && name.len() <= 255 && !name.starts_with(':');
        match directive.get("Namespace").and_then(Value::as_str) {
            Some(namespace) if name_ok(namespace) => {}
            other => fail(format!("bad Namespace {other:?}")),
        }
        match directive.get("Dimensions").and_then(Value::as_array) {
            None => fail("a directive has no Dimensions array".to_owned()),
            Some(sets) => {
                for set in sets {
                    let Some(keys) = set.as_array() else {
                        fail(format!("dimension set {set} is not an array"));
                        continue;
                    };
                    if keys.len() > 30 {
                        fail(format!("dimension set {set} has over 30 dimensions"));
                    }
                    for key in keys {
                        let Some(key) = key.as_str().filter(|key| name_ok(key)) else {
                            fail(format!("dimension name {key} is not a valid name"));
                            continue;
                        };
                        match root.get(key).and_then(Value::as_str) {
                            Some(value) if !value.is_empty() && value.len() <= 1024 => {}
                            other => fail(format!(
                                "dimension {key} refers to {other:?}, not a 1–1024 character string"
                            )),
                        }
                    }
                }
            }
        }
        let Some(metrics) = directive.get("Metrics").and_then(Value::as_array) else {
            fail("a directive has no Metrics array".to_owned());
            continue;
        };
        if metrics.len() > 100 {
            fail(format!("{} metrics: over 100", metrics.len()));
        }
        for metric in metrics {
            let Some(name) = metric
                .get("Name")
                .and_then(Value::as_str)
                .filter(|n| name_ok(n))
            else {
                fail(format!("metric {metric} has no valid Name"));
                continue;
            };
            if let Some(unit) = metric.get("Unit")
                && !unit.as_str().is_some_and(|unit| UNITS.contains(&unit))
            {
                fail(format!(
                    "metric {name}: unit {unit} is not a CloudWatch unit"
                ));
            }
            if let Some(resolution) = metric.get("StorageResolution")
                && !matches!(resolution.as_u64(), Some(1 | 60))
            {
                fail(format!("metric {name}: StorageResolution {resolution}"));
            }
            match root.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(values))
                    if values.len() <= 100 && values.iter().all(Value::is_number) => {}
                other => fail(format!(
                    "metric {name} refers to {other:?}, not a number or up to 100 numbers"
                )),
            }
        }
    }
    problems
}

#[test]
fn the_checker_catches_what_the_specification_forbids() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let good = format!(
        r#"{{"_aws":{{"Timestamp":{now},"CloudWatchMetrics":[{{"Namespace":"ns","Dimensions":[["tenant"]],"Metrics":[{{"Name":"Requests","Unit":"Count"}}]}}]}},"tenant":"a","Requests":1}}"#
    );
    assert_eq!(problems(&good), Vec::<String>::new());
    for (broken, why) in [
        (
            good.replace(r#""tenant":"a","#, ""),
            "missing dimension value",
        ),
        (
            good.replace(r#""Requests":1"#, r#""Requests":"1""#),
            "metric value not a number",
        ),
        (
            good.replace(r#""Unit":"Count""#, r#""Unit":"Tokens""#),
            "unknown unit",
        ),
        (good.replace(&format!("{now}"), "1"), "timestamp from 1970"),
        (good.replace(r#""Namespace":"ns","#, ""), "no namespace"),
        (good.replace("_aws", "aws"), "no _aws"),
    ] {
        assert!(!problems(&broken).is_empty(), "not caught: {why}");
    }
}
