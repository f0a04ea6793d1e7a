//! Usage metering: the request log line and the EMF record the binary writes for each request
//! carry the usage the fake upstream reported; a chat stream for which the proxy asked for usage
//! reaches the client byte for byte as a direct call without the flag would; in-band error
//! events pass unchanged.

use std::collections::HashSet;

use serde_json::Value;

use crate::support::openai::{self, CHAT_USAGE, IN_BAND_ERROR};
use crate::support::upstream::FakeUpstream;
use crate::support::{BinaryProxy, InProcessProxy, REAL_KEY, TempFile, WRAPPER_KEY, emf};

const STREAM_BODY: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;

/// The same body straight to the fake upstream, with the real key: what OpenAI would send.
async fn direct(upstream: &FakeUpstream, path: &str, body: &str) -> Vec<u8> {
    crate::support::http_client()
        .post(format!("{}{path}", upstream.base_url()))
        .bearer_auth(REAL_KEY)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn a_stream_the_proxy_asked_usage_for_reaches_the_client_as_if_it_had_not() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;
    for model in ["gpt-4o-mini", "gpt-4o-mini-error"] {
        let body = STREAM_BODY.replace("gpt-4o-mini", model);
        let proxied = proxy.post("/v1/chat/completions", body.clone()).await;
        assert_eq!(proxied.status(), 200);
        let proxied = proxied.bytes().await.unwrap();
        // The upstream was asked for usage…
        let asked: Value =
            serde_json::from_slice(&upstream.received().last().unwrap().body).unwrap();
        assert_eq!(asked["stream_options"]["include_usage"], true, "{model}");
        assert_eq!(asked["messages"][0]["content"], "Hi");
        // …which changes what it sends…
        let with_flag = body.replacen('{', r#"{"stream_options":{"include_usage":true},"#, 1);
        let direct_with_flag = direct(&upstream, "/chat/completions", &with_flag).await;
        assert!(String::from_utf8_lossy(&direct_with_flag).contains(r#""usage":null"#));
        // …and the client still gets exactly what the upstream sends without the flag.
        let direct_without = direct(&upstream, "/chat/completions", &body).await;
        assert_ne!(direct_with_flag, direct_without);
        assert_eq!(
            String::from_utf8_lossy(&proxied),
            String::from_utf8_lossy(&direct_without),
            "{model}"
        );
    }
    // The in-band error event is the stream's last event, unchanged.
    let body = STREAM_BODY.replace("gpt-4o-mini", "gpt-4o-mini-error");
    let proxied = proxy
        .post("/v1/chat/completions", body)
        .await
        .bytes()
        .await
        .unwrap();
    assert!(proxied.ends_with(format!("{IN_BAND_ERROR}\n\n").as_bytes()));
}

#[tokio::test]
async fn a_client_that_asks_for_usage_itself_gets_it_untouched() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy = InProcessProxy::start(&upstream.base_url(), &[]).await;
    let body = STREAM_BODY.replacen('{', r#"{"stream_options":{"include_usage":true},"#, 1);
    let proxied = proxy.post("/v1/chat/completions", body.clone()).await;
    let proxied = proxied.bytes().await.unwrap();
    assert_eq!(upstream.received().last().unwrap().body, body.as_bytes());
    let direct = direct(&upstream, "/chat/completions", &body).await;
    assert_eq!(proxied.as_ref(), direct.as_slice());
    assert!(String::from_utf8_lossy(&proxied).contains(r#""choices":[],"#));
}

#[tokio::test]
async fn with_stream_include_usage_off_the_request_body_is_untouched() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy =
        InProcessProxy::start(&upstream.base_url(), &[("STREAM_INCLUDE_USAGE", "false")]).await;
    let proxied = proxy.post("/v1/chat/completions", STREAM_BODY).await;
    let proxied = proxied.bytes().await.unwrap();
    assert_eq!(upstream.received()[0].body, STREAM_BODY.as_bytes());
    assert_eq!(
        proxied.as_ref(),
        direct(&upstream, "/chat/completions", STREAM_BODY)
            .await
            .as_slice()
    );
}

/// One request the metering test sends, and what its log line must say.
struct Case {
    path: &'static str,
    body: &'static str,
    key: &'static str,
    status: u64,
    stream: bool,
    usage: Option<(u64, u64, u64)>,
}

const TENANT_KEY: &str = "wrapper-key-carol";
const CHAT: Option<(u64, u64, u64)> = Some(CHAT_USAGE);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_one_log_line_and_one_valid_emf_record_with_the_upstreams_usage() {
    let upstream = FakeUpstream::start(openai::respond).await;
    let keys = TempFile::with_contents(
        "keys.json",
        &format!(
            r#"{{"{WRAPPER_KEY}": "{REAL_KEY}", "{TENANT_KEY}": {{"api_key": "sk-carol-real", "tenant": "carol"}}}}"#
        ),
    );
    let upstream_url = upstream.base_url();
    let proxy = BinaryProxy::start(&[
        ("KEY_MAP_FILE", keys.path_str()),
        ("UPSTREAM_BASE_URL", upstream_url.as_str()),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "debug"),
        ("METRICS_EMF", "true"),
        ("METRICS_NAMESPACE", "openai-proxy-test"),
    ]);
    let cases = [
        Case {
            path: "/v1/chat/completions",
            body: r#"{"model":"gpt-4o-mini","messages":[]}"#,
            key: WRAPPER_KEY,
            status: 200,
            stream: false,
            usage: CHAT,
        },
        Case {
            path: "/v1/chat/completions",
            body: STREAM_BODY,
            key: TENANT_KEY,
            status: 200,
            stream: true,
            usage: CHAT,
        },
        Case {
            path: "/v1/chat/completions",
            body: r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#,
            key: TENANT_KEY,
            status: 200,
            stream: true,
            usage: CHAT,
        },
        Case {
            path: "/v1/embeddings",
            body: r#"{"model":"text-embedding-3-small","input":"Hi"}"#,
            key: WRAPPER_KEY,
            status: 200,
            stream: false,
            usage: Some((4, 0, 4)),
        },
        Case {
            path: "/v1/responses",
            body: r#"{"model":"gpt-4o-mini","input":"Hi"}"#,
            key: TENANT_KEY,
            status: 200,
            stream: false,
            usage: CHAT,
        },
        Case {
            path: "/v1/responses",
            body: r#"{"model":"gpt-4o-mini","input":"Hi","stream":true}"#,
            key: TENANT_KEY,
            status: 200,
            stream: true,
            usage: CHAT,
        },
        Case {
            path: "/v1/chat/completions",
            body: r#"{"model":"gpt-4o-mini-error","stream":true,"messages":[]}"#,
            key: TENANT_KEY,
            status: 200,
            stream: true,
            usage: None,
        },
        Case {
            path: "/v1/chat/completions",
            body: r#"{"model":"gpt-4o-mini","messages":[]}"#,
            key: "wrapper-key-mallory",
            status: 401,
            stream: false,
            usage: None,
        },
    ];
    let client = crate::support::http_client();
    let mut sizes = Vec::new();
    for case in &cases {
        let response = client
            .post(format!("http://{}{}", proxy.addr, case.path))
            .bearer_auth(case.key)
            .header("content-type", "application/json")
            .body(case.body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            u64::from(response.status().as_u16()),
            case.status,
            "{}",
            case.body
        );
        sizes.push(response.bytes().await.unwrap().len() as u64);
    }

    let (log, stdout) = proxy.stop_with_stdout();
    // With JSON logs, each request's line is its EMF record too: one line on stdout, one write.
    assert!(
        !log.contains("openai_proxy::request"),
        "a request line on stderr beside its record:\n{log}"
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap_or_else(|_| panic!("not JSON: {line}"))
        })
        .collect();
    assert!(
        lines
            .iter()
            .all(|line| line["target"] == "openai_proxy::request"),
        "{stdout}"
    );
    assert_eq!(lines.len(), cases.len(), "one line per request:\n{stdout}");
    let records = lines.clone();
    let mut request_ids = HashSet::new();

    for (((case, line), record), size) in cases.iter().zip(&lines).zip(&records).zip(&sizes) {
        let what = format!(
            "{} {}\nline: {line}\nrecord: {record}",
            case.path, case.body
        );
        // Lambda's JSON log shape: timestamp, level and message at the top level.
        assert!(line["timestamp"].is_string(), "{what}");
        assert_eq!(line["level"], "INFO", "{what}");
        assert_eq!(line["message"], "request", "{what}");
        assert!(
            request_ids.insert(line["requestId"].as_str().unwrap().to_owned()),
            "{what}"
        );
        // The route group, never the raw path.
        let group = match case.path {
            "/v1/chat/completions" => "chat.completions",
            other => other.trim_start_matches("/v1/"),
        };
        assert_eq!(line["route"], group, "{what}");
        assert_eq!(line["status"], case.status, "{what}");
        let tenant = line["tenant"].as_str().unwrap();
        match (case.status, case.key) {
            (401, _) => assert_eq!(tenant, "unknown", "{what}"),
            (_, TENANT_KEY) => assert_eq!(tenant, "carol", "{what}"),
            _ => {
                let id = tenant.strip_prefix("key:").unwrap();
                assert!(
                    id.len() == 8 && id.chars().all(|c| c.is_ascii_hexdigit()),
                    "{what}"
                );
            }
        }
        if case.status == 200 {
            assert_eq!(line["stream"], case.stream, "{what}");
            assert_eq!(line["upstream_status"], 200, "{what}");
            assert!(
                line["upstream_request_id"]
                    .as_str()
                    .unwrap()
                    .starts_with("req_fake"),
                "{what}"
            );
            assert_eq!(
                line["model"],
                serde_json::from_str::<Value>(case.body).unwrap()["model"],
                "{what}"
            );
            assert!(
                line["ttfb_ms"].as_f64().unwrap() <= line["duration_ms"].as_f64().unwrap(),
                "{what}"
            );
            assert_eq!(line["bytes_in"], case.body.len() as u64, "{what}");
            assert_eq!(line["bytes_out"], *size, "{what}");
            let outcome = if case.body.contains("-error") {
                "error_event"
            } else {
                "complete"
            };
            assert_eq!(line["outcome"], outcome, "{what}");
        }
        let logged = line["prompt_tokens"].as_u64().map(|prompt| {
            (
                prompt,
                line["completion_tokens"].as_u64().unwrap(),
                line["total_tokens"].as_u64().unwrap(),
            )
        });
        assert_eq!(logged, case.usage, "{what}");

        // The EMF record: valid by the specification, and saying the same.
        let problems = emf::problems(&record.to_string());
        assert!(problems.is_empty(), "{what}\n{problems:?}");
        assert_eq!(
            record["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "openai-proxy-test"
        );
        assert_eq!(record["tenant"], line["tenant"], "{what}");
        assert_eq!(record["requestId"], line["requestId"], "{what}");
        assert_eq!(record["Requests"], 1);
        assert_eq!(record["Throttled"], 0, "{what}");
        assert!(record.get("LimitsStoreErrors").is_none(), "{what}");
        assert_eq!(record["Errors4xx"], u64::from(case.status == 401), "{what}");
        assert_eq!(
            record["Errors5xx"],
            u64::from(case.body.contains("-error")),
            "{what}"
        );
        let model = if case.status == 200 {
            line["model"].as_str().unwrap()
        } else {
            "(none)"
        };
        assert_eq!(record["model"], model, "{what}");
        // The refused key's line says no upstream and no model (its body was never read).
        if case.status == 401 {
            assert_eq!(line["upstream"], "(none)", "{what}");
            assert!(line.get("requested_model").is_none(), "{what}");
            assert!(line.get("requested_upstream").is_none(), "{what}");
        }
        let metered = record["PromptTokens"]
            .as_u64()
            .map(|p| (p, record["CompletionTokens"].as_u64().unwrap()));
        assert_eq!(metered, case.usage.map(|(p, c, _)| (p, c)), "{what}");
        assert!(record["Duration"].as_f64().unwrap() > 0.0, "{what}");
    }
}

/// A key map read that fails is counted in EMF (`KeyMapLoadFailures`, no dimensions, a valid
/// record), so an alarm can see it; reads that succeed write no such record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_key_map_read_is_counted_in_emf_and_a_good_one_is_not() {
    use crate::support::moto::Moto;
    let mut moto = Moto::start().await;
    let secret = format!(r#"{{"{WRAPPER_KEY}": "{REAL_KEY}"}}"#);
    moto.create_secret("openai-proxy/keys", &secret).await;
    let upstream = FakeUpstream::start(openai::respond).await;
    let upstream_url = upstream.base_url();
    let start = || {
        let mut env = moto.aws_env();
        env.extend([
            ("KEY_MAP_SECRET_ID", "openai-proxy/keys"),
            ("UPSTREAM_BASE_URL", upstream_url.as_str()),
            ("KEY_MAP_TTL_SECONDS", "1"),
            ("KEY_MAP_MIN_REFRESH_INTERVAL_SECONDS", "1"),
            ("METRICS_EMF", "true"),
            ("RUST_LOG", "info"),
        ]);
        BinaryProxy::start(&env)
    };
    let chat = |proxy: &BinaryProxy| {
        let url = format!("{}/chat/completions", proxy.base_url());
        async move {
            let response = crate::support::http_client()
                .post(url)
                .bearer_auth(WRAPPER_KEY)
                .header("content-type", "application/json")
                .body(r#"{"model":"gpt-4o-mini","messages":[]}"#)
                .send()
                .await
                .unwrap();
            let status = response.status();
            response.bytes().await.unwrap();
            status
        }
    };
    let failures = |stdout: &str| -> Vec<Value> {
        stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|record| record.get("KeyMapLoadFailures").is_some())
            .collect()
    };

    // Reads that succeed, at start and after the TTL: no failure record.
    let healthy = start();
    assert_eq!(chat(&healthy).await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(chat(&healthy).await, 200);
    let (_, stdout) = healthy.stop_with_stdout();
    assert!(failures(&stdout).is_empty(), "{stdout}");

    // The secret cannot be read any more: the refresh after the TTL fails (the last good map
    // still serves) and is counted.
    let proxy = start();
    assert_eq!(chat(&proxy).await, 200);
    moto.stop();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(chat(&proxy).await, 200);
    let (_, stdout) = proxy.stop_with_stdout();
    let records = failures(&stdout);
    assert!(
        !records.is_empty(),
        "no KeyMapLoadFailures record in:\n{stdout}"
    );
    for record in &records {
        let problems = emf::problems(&record.to_string());
        assert!(problems.is_empty(), "{record}\n{problems:?}");
        assert_eq!(record["KeyMapLoadFailures"], 1);
        let directive = &record["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "openai-proxy");
        assert_eq!(directive["Dimensions"], serde_json::json!([[]]));
    }
}
