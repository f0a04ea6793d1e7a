//! Per-key upstreams end to end: one version-2 key map in moto's Secrets Manager binds a wrapper
//! key to each of four upstreams (the default, an Azure-style `api-key` one, one that takes no
//! credential and one that verifies AWS SigV4 with botocore), and the official Python SDK does
//! chat, streaming chat and embeddings with a `model_map`ped model on each, through the binary
//! and under `cargo lambda watch`. Each fake checks its own credential inside its handler; the
//! test then checks that each saw only its own, and that a body reached it byte for byte apart
//! from the mapped `model`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::binary::assert_no_key_in;
use crate::support::lambda::LambdaEmulator;
use crate::support::moto::{Moto, REGION};
use crate::support::sigv4_upstream::{
    SigV4Upstream, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, TEST_SESSION_TOKEN,
};
use crate::support::upstream::{FakeUpstream, Received};
use crate::support::{ALL_TEST_KEYS, BinaryProxy, REAL_KEY, WRAPPER_KEY, http_client, openai};

const SECRET: &str = "openai-proxy/keys";
const AZURE_KEY: &str = "wrapper-key-carol";
const AZURE_REAL_KEY: &str = "sk-carol-real";
const OPEN_KEY: &str = "wrapper-key-dave";
const BEDROCK_KEY: &str = "wrapper-key-bob";
const WRONG_REGION_KEY: &str = "wrapper-key-hidden";

/// upstream name → (wrapper key, the name gpt-4o-mini is mapped to for it).
const BINDINGS: [(&str, &str, &str); 4] = [
    ("default", WRAPPER_KEY, "gpt-4o-mini-2024-07-18"),
    ("azure-eu", AZURE_KEY, "prod-4o-mini"),
    ("open-vllm", OPEN_KEY, "meta-llama/Llama-3.1-8B-Instruct"),
    ("bedrock", BEDROCK_KEY, "openai.gpt-oss-20b-1:0"),
];

fn refused(why: &str) -> Response {
    let body = json!({"error": {"message": format!("fake upstream: {why}"),
        "type": "invalid_request_error", "param": null, "code": "fake_refused"}});
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

/// Azure-style: only `api-key` with the entry's key; a Bearer header is refused.
fn azure(request: &Received) -> Response {
    if request.headers.contains_key("authorization") {
        return refused("an Authorization header reached an api-key upstream");
    }
    if request
        .headers
        .get("api-key")
        .is_none_or(|key| key != AZURE_REAL_KEY)
    {
        return refused("no api-key, or the wrong one");
    }
    openai::respond(request)
}

/// No credential at all, its static header and query, and no `stream_options` (it would 422).
fn open(request: &Received) -> Response {
    let credential = [
        "authorization",
        "api-key",
        "x-amz-date",
        "x-amz-content-sha256",
    ]
    .iter()
    .find(|name| request.headers.contains_key(**name));
    if let Some(name) = credential {
        return refused(&format!(
            "a credential header ({name}) reached a no-auth upstream"
        ));
    }
    if request
        .headers
        .get("x-team")
        .is_none_or(|team| team != "research")
    {
        return refused("the static x-team header is missing");
    }
    if !request.path_and_query.contains("api-version=preview") {
        return refused("the static query is missing");
    }
    if String::from_utf8_lossy(&request.body).contains("stream_options") {
        return refused("stream_options sent to an upstream with include_usage false");
    }
    openai::respond(request)
}

struct Upstreams {
    default: FakeUpstream,
    default_url: String,
    azure: FakeUpstream,
    open: FakeUpstream,
    bedrock: SigV4Upstream,
}

impl Upstreams {
    async fn start() -> Self {
        let default = FakeUpstream::start(openai::respond).await;
        Self {
            default_url: default.base_url(),
            default,
            azure: FakeUpstream::start(azure).await,
            open: FakeUpstream::start(open).await,
            bedrock: SigV4Upstream::start_with_session_token("us-east-1", "bedrock").await,
        }
    }

    fn key_map(&self) -> String {
        let mapped = |upstream: &str| {
            let (_, _, to) = BINDINGS
                .iter()
                .find(|(name, ..)| *name == upstream)
                .unwrap();
            json!({"gpt-4o-mini": to})
        };
        json!({
            "version": 2,
            "upstreams": {
                "azure-eu": {"base_url": self.azure.base_url(), "auth": "api-key"},
                "open-vllm": {"base_url": self.open.base_url(), "auth": "none",
                              "include_usage": false, "headers": {"x-team": "research"},
                              "query": {"api-version": "preview"}},
                "bedrock": {"base_url": self.bedrock.base_url, "auth": "aws-sigv4",
                            "region": "us-east-1", "service": "bedrock"},
                "bedrock-wrong-region": {"base_url": self.bedrock.base_url, "auth": "aws-sigv4",
                                         "region": "eu-west-1", "service": "bedrock"},
            },
            "keys": {
                WRAPPER_KEY: {"api_key": REAL_KEY, "model_map": mapped("default")},
                AZURE_KEY: {"api_key": AZURE_REAL_KEY, "tenant": "eu-team", "upstream": "azure-eu",
                            "model_map": mapped("azure-eu")},
                OPEN_KEY: {"tenant": "vllm-team", "upstream": "open-vllm",
                           "model_map": mapped("open-vllm")},
                BEDROCK_KEY: {"tenant": "bedrock-team", "upstream": "bedrock",
                              "model_map": mapped("bedrock")},
                WRONG_REGION_KEY: {"upstream": "bedrock-wrong-region"},
            }
        })
        .to_string()
    }

    /// What the proxy needs to reach moto and to sign: the standard AWS variables.
    fn settings<'a>(&'a self, moto: &'a Moto) -> Vec<(&'a str, &'a str)> {
        vec![
            ("KEY_MAP_SECRET_ID", SECRET),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", TEST_SECRET_ACCESS_KEY),
            ("AWS_SESSION_TOKEN", TEST_SESSION_TOKEN),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("UPSTREAM_BASE_URL", self.default_url.as_str()),
            ("RUST_LOG", "debug"),
        ]
    }

    /// Each fake saw only its own credential, and none saw a wrapper key or another's real key.
    async fn check_credentials(&self) {
        let foreign = |seen: &str, own: &[&str]| {
            ALL_TEST_KEYS
                .iter()
                .filter(|key| !own.contains(key))
                .find(|key| seen.contains(**key))
                .map(|key| (*key).to_owned())
        };
        for seen in self
            .default
            .received()
            .iter()
            .filter(|seen| seen.method != "HEAD")
        {
            assert_eq!(seen.headers["authorization"], format!("Bearer {REAL_KEY}"));
            assert!(!seen.headers.contains_key("api-key"));
            let raw = format!("{:?}{}", seen.headers, String::from_utf8_lossy(&seen.body));
            assert_eq!(foreign(&raw, &[REAL_KEY]), None);
        }
        for (fake, own) in [(&self.azure, vec![AZURE_REAL_KEY]), (&self.open, vec![])] {
            let received = fake.received();
            assert!(received.len() >= 3);
            for seen in received {
                let raw = format!("{:?}{}", seen.headers, String::from_utf8_lossy(&seen.body));
                assert_eq!(foreign(&raw, &own), None, "{}", seen.path_and_query);
            }
        }
        let signed = self.bedrock.received().await;
        for seen in signed
            .iter()
            .filter(|seen| seen.headers.contains_key("x-amz-date"))
        {
            let raw = format!("{:?}{}", seen.headers, String::from_utf8_lossy(&seen.body));
            assert_eq!(foreign(&raw, &[]), None, "{}", seen.path);
            assert!(!seen.headers.contains_key("api-key"));
        }
    }
}

/// Runs the SDK script against `base_url`, sends one fixed raw body per key, and checks what
/// each upstream made of it.
async fn drive(base_url: &str, upstreams: &Upstreams) {
    let keys: serde_json::Map<String, Value> = BINDINGS
        .iter()
        .map(|(name, key, _)| ((*name).to_owned(), json!(key)))
        .collect();
    let mapped: serde_json::Map<String, Value> = BINDINGS
        .iter()
        .map(|(name, _, to)| ((*name).to_owned(), json!(to)))
        .collect();
    let stdout = crate::support::run_sdk_script(
        "sdk_python_upstreams.py",
        &[
            ("OPENAI_PROXY_BASE_URL", base_url),
            ("UPSTREAM_KEYS", &Value::Object(keys).to_string()),
            ("MAPPED_MODELS", &Value::Object(mapped).to_string()),
        ],
    )
    .await;
    for (name, ..) in BINDINGS {
        assert!(
            stdout.contains(&format!("ok - {name}: the mapped model reached it")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("ok - {name}: embeddings")),
            "{stdout}"
        );
    }

    // A body with odd spacing and member order: only the model's value may change.
    let sent = "{ \"messages\" : [{\"role\":\"user\",\"content\":\"model: gpt-4o-mini\"}],\n  \"model\":\"gpt-4o-mini\" ,\"temperature\":0.5}";
    for (name, key, to) in BINDINGS {
        let response = http_client()
            .post(format!("{base_url}/chat/completions"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(sent)
            .timeout(std::time::Duration::from_secs(20))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        assert_eq!(response.headers()["x-openai-proxy-upstream"], name);
        // Read to the end: the emulated function URL serves one invocation at a time.
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(
            answer["model"], to,
            "{name}: relayed as the upstream sent it"
        );
        let expected = sent.replace(
            "\"model\":\"gpt-4o-mini\"",
            &format!("\"model\":{}", json!(to)),
        );
        let body = match name {
            "default" => upstreams.default.received().last().unwrap().body.to_vec(),
            "azure-eu" => upstreams.azure.received().last().unwrap().body.to_vec(),
            "open-vllm" => upstreams.open.received().last().unwrap().body.to_vec(),
            _ => upstreams
                .bedrock
                .received()
                .await
                .last()
                .unwrap()
                .body
                .clone(),
        };
        assert_eq!(String::from_utf8(body).unwrap(), expected, "{name}");
    }

    // Signed for the wrong region: the verifier refuses, and the client gets its answer.
    let response = http_client()
        .post(format!("{base_url}/chat/completions"))
        .bearer_auth(WRONG_REGION_KEY)
        .header("content-type", "application/json")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let error: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "signature_mismatch", "{error}");
    let verdicts = upstreams.bedrock.received().await;
    assert!(!verdicts.last().unwrap().verified);
    assert!(verdicts.iter().filter(|seen| seen.verified).count() >= 4);
    upstreams.check_credentials().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_reaches_its_own_upstream_with_its_own_auth_through_the_binary() {
    let upstreams = Upstreams::start().await;
    let moto = Moto::start().await;
    moto.create_secret(SECRET, &upstreams.key_map()).await;
    let proxy = BinaryProxy::start(&upstreams.settings(&moto));

    let health = http_client()
        .get(format!("http://{}/health", proxy.addr))
        .send()
        .await
        .unwrap();
    let health: Value = serde_json::from_slice(&health.bytes().await.unwrap()).unwrap();
    let named: Vec<&str> = health["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|upstream| upstream["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        named,
        [
            "default",
            "azure-eu",
            "open-vllm",
            "bedrock",
            "bedrock-wrong-region"
        ]
    );
    assert_eq!(health["upstreams"][1]["plain_http"], true);
    assert_eq!(health["upstreams"][3]["auth"], "aws-sigv4");
    assert!(!health.to_string().contains("research") && !health.to_string().contains("preview"));

    drive(&proxy.base_url(), &upstreams).await;
    let log = proxy.stop();
    assert!(log.contains("upstream=\"bedrock\""), "{log}");
    assert_no_key_in(&log, &ALL_TEST_KEYS);
    assert_no_key_in(
        &log,
        &[TEST_SECRET_ACCESS_KEY, TEST_SESSION_TOKEN, "research"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_reaches_its_own_upstream_under_cargo_lambda_watch() {
    let upstreams = Upstreams::start().await;
    let moto = Moto::start().await;
    moto.create_secret(SECRET, &upstreams.key_map()).await;
    let emulator = LambdaEmulator::start().await;
    let function = emulator.start_function(&upstreams.settings(&moto));
    drive(&emulator.base_url(), &upstreams).await;
    let log = function.stop();
    assert_no_key_in(&log, &ALL_TEST_KEYS);
    assert_no_key_in(
        &log,
        &[TEST_SECRET_ACCESS_KEY, TEST_SESSION_TOKEN, "research"],
    );
}
