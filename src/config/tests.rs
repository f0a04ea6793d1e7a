use super::*;
use std::collections::HashMap;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|name| vars.get(name).cloned())
}

#[test]
fn defaults_apply() {
    let config = config(&[("KEY_MAP_FILE", "keys.json")]).unwrap();
    assert_eq!(
        config.upstream_base_url.as_str(),
        "https://api.openai.com/v1"
    );
    assert_eq!(
        config.front_door,
        FrontDoor::Local {
            listen_addr: "127.0.0.1:8000".parse().unwrap()
        }
    );
    assert_eq!(config.key_source, KeySourceConfig::File("keys.json".into()));
    assert_eq!(config.connect_timeout, Duration::from_secs(10));
    assert_eq!(config.idle_timeout, Duration::from_secs(600));
    assert_eq!(
        config.max_request_body_bytes,
        DEFAULT_MAX_REQUEST_BODY_BYTES
    );
    assert_eq!(config.deadline_margin, Duration::from_secs(1));
    assert_eq!(config.emf_namespace, None, "no EMF records in local mode");
    assert!(config.stream_include_usage);
    assert!(!config.log_json);
    assert_eq!(config.limits_table, None, "counters in memory by default");
    assert_eq!(config.limits_on_store_error, OnStoreError::Allow);
    assert_eq!(config.limits_default_output_tokens, 1_000);
}

#[test]
fn limits_settings() {
    let set = config(&[
        ("KEY_MAP_FILE", "keys.json"),
        ("LIMITS_TABLE", " openai-proxy-limits "),
        ("LIMITS_ON_STORE_ERROR", "Deny"),
        ("LIMITS_DEFAULT_OUTPUT_TOKENS", "256"),
    ])
    .unwrap();
    assert_eq!(set.limits_table.as_deref(), Some("openai-proxy-limits"));
    assert_eq!(set.limits_on_store_error, OnStoreError::Deny);
    assert_eq!(set.limits_default_output_tokens, 256);
    let errors = config(&[
        ("KEY_MAP_FILE", "keys.json"),
        ("LIMITS_ON_STORE_ERROR", "maybe"),
        ("LIMITS_DEFAULT_OUTPUT_TOKENS", "lots"),
    ])
    .unwrap_err();
    assert_eq!(errors.0.len(), 2, "{errors}");
    assert!(errors.0[0].starts_with("LIMITS_ON_STORE_ERROR"));
    assert!(errors.0[1].starts_with("LIMITS_DEFAULT_OUTPUT_TOKENS"));
}

#[test]
fn metering_settings() {
    let lambda = config(&[
        ("KEY_MAP_FILE", "keys.json"),
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
    ])
    .unwrap();
    assert_eq!(lambda.emf_namespace.as_deref(), Some("openai-proxy"));
    assert!(lambda.log_json);
    let switched = config(&[
        ("KEY_MAP_FILE", "keys.json"),
        ("METRICS_EMF", "on"),
        ("METRICS_NAMESPACE", "team/llm"),
        ("STREAM_INCLUDE_USAGE", "false"),
        ("LOG_FORMAT", "json"),
    ])
    .unwrap();
    assert_eq!(switched.emf_namespace.as_deref(), Some("team/llm"));
    assert!(!switched.stream_include_usage);
    assert!(switched.log_json);
    let err = config(&[("KEY_MAP_FILE", "k"), ("METRICS_EMF", "maybe")]).unwrap_err();
    assert!(err.to_string().contains("METRICS_EMF"), "{err}");
}

#[test]
fn lambda_runtime_selects_the_lambda_front_door() {
    let config = config(&[
        ("KEY_MAP_FILE", "keys.json"),
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("UPSTREAM_BASE_URL", "http://127.0.0.1:9/v1/"),
    ])
    .unwrap();
    assert_eq!(config.front_door, FrontDoor::Lambda);
    assert_eq!(config.upstream_base_url.as_str(), "http://127.0.0.1:9/v1");
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = config(&[
        ("UPSTREAM_BASE_URL", "ftp://user:sk-secret@host/v1"),
        ("UPSTREAM_IDLE_TIMEOUT_SECONDS", "soon"),
        ("UPSTREAM_CONNECT_TIMEOUT_SECONDS", "0"),
        ("LISTEN_ADDR", "localhost"),
        ("MAX_REQUEST_BODY_BYTES", "-1"),
        ("LAMBDA_DEADLINE_MARGIN_MILLISECONDS", "1s"),
    ])
    .unwrap_err();
    let text = err.to_string();
    for name in [
        "UPSTREAM_BASE_URL",
        "UPSTREAM_IDLE_TIMEOUT_SECONDS",
        "UPSTREAM_CONNECT_TIMEOUT_SECONDS",
        "LISTEN_ADDR",
        "KEY_MAP_FILE",
        "MAX_REQUEST_BODY_BYTES",
        "LAMBDA_DEADLINE_MARGIN_MILLISECONDS",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(!text.contains("sk-secret"), "{text}");
}

#[test]
fn worker_threads_default_to_one_under_classic_lambda_only() {
    let local = config(&[("KEY_MAP_FILE", "k")]).unwrap();
    assert_eq!(local.worker_threads, None, "one per CPU locally");
    let lambda = [
        ("KEY_MAP_FILE", "k"),
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
    ];
    assert_eq!(config(&lambda).unwrap().worker_threads, Some(1));
    let managed = [
        ("KEY_MAP_FILE", "k"),
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_MAX_CONCURRENCY", "8"),
    ];
    assert_eq!(config(&managed).unwrap().worker_threads, None);
    let chosen = config(&[("KEY_MAP_FILE", "k"), ("WORKER_THREADS", "3")]).unwrap();
    assert_eq!(chosen.worker_threads, Some(3));
    for bad in ["0", "many", "-1", "100000"] {
        let err = config(&[("KEY_MAP_FILE", "k"), ("WORKER_THREADS", bad)]).unwrap_err();
        assert!(err.to_string().contains("WORKER_THREADS"), "{bad}: {err}");
    }
}
