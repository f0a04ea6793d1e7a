//! The version-2 document: the issue's example loads as written, and each mistake is refused
//! with a message that names the position and holds none of the document's values.

use crate::keymap::{KeyMap, KeyMapError};
use crate::keys::WrapperKeyDigest;
use crate::upstream::Auth;

use super::Problem;

const EXAMPLE: &str = r#"{
  "version": 2,
  "upstreams": {
    "azure-eu": { "base_url": "https://contoso.openai.azure.com/openai/v1", "auth": "api-key" },
    "bedrock":  { "base_url": "https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1",
                  "auth": "aws-sigv4", "region": "us-east-1", "service": "bedrock" },
    "vllm":     { "base_url": "http://10.0.0.12:8000/v1", "auth": "none", "include_usage": false,
                  "headers": { "x-team": "research" }, "query": { "api-version": "preview" } }
  },
  "keys": {
    "wrapper-key-alice": "sk-alice-real-openai-key",
    "wrapper-key-carol": { "api_key": "azure-key", "tenant": "eu-team", "upstream": "azure-eu",
                      "models": ["gpt-4o-mini"], "model_map": { "gpt-4o-mini": "prod-4o-mini" } },
    "wrapper-key-bob": { "tenant": "bedrock-team", "upstream": "bedrock" },
    "wrapper-key-dave": { "tenant": "research", "upstream": "vllm" }
  }
}"#;

fn entry(map: &KeyMap, key: &str) -> std::sync::Arc<crate::keys::KeyEntry> {
    map.lookup(&WrapperKeyDigest::of(key)).unwrap().clone()
}

#[test]
fn the_example_document_loads_as_written() {
    let map = KeyMap::parse(EXAMPLE.as_bytes()).unwrap();
    assert_eq!(map.len(), 4);
    let names: Vec<&str> = map.upstreams().iter().map(|u| &*u.name).collect();
    assert_eq!(names, ["azure-eu", "bedrock", "vllm"]);
    let alice = entry(&map, "wrapper-key-alice");
    assert!(alice.upstream.is_none());
    let carol = entry(&map, "wrapper-key-carol");
    let azure = carol.upstream.as_ref().unwrap();
    assert_eq!(azure.auth, Auth::ApiKey);
    assert_eq!(carol.mapped_model("gpt-4o-mini"), Some("prod-4o-mini"));
    assert_eq!(carol.mapped_model("gpt-4o"), None);
    let bob = entry(&map, "wrapper-key-bob");
    assert!(bob.real_key.is_none());
    assert_eq!(
        bob.upstream.as_ref().unwrap().auth,
        Auth::AwsSigV4 {
            region: "us-east-1".into(),
            service: "bedrock".into()
        }
    );
    let vllm = entry(&map, "wrapper-key-dave").upstream.clone().unwrap();
    assert!(vllm.is_plain_http() && !vllm.include_usage);
    assert_eq!(
        vllm.url("/v1/chat/completions", None),
        "http://10.0.0.12:8000/v1/chat/completions?api-version=preview"
    );
    assert!(vllm.headers["x-team"].is_sensitive());
}

#[test]
fn a_flat_document_still_means_what_it_meant() {
    let map = KeyMap::parse(br#"{"version": "sk-a-key-named-version", "k": "sk-b"}"#).unwrap();
    assert_eq!(map.len(), 2);
    assert!(map.upstreams().is_empty());
    assert!(entry(&map, "version").upstream.is_none());
}

#[test]
fn each_mistake_is_refused_by_position_without_a_value() {
    let upstream = |problem| KeyMapError::BadUpstream {
        upstream: 2,
        problem,
    };
    let with_upstream = |definition: &str| {
        format!(
            r#"{{"version":2,"upstreams":{{"ok":{{"base_url":"https://ok.example/v1"}},"u-secret":{definition}}},"keys":{{}}}}"#
        )
    };
    let with_key = |entry: &str| {
        format!(
            r#"{{"version":2,"upstreams":{{"none":{{"base_url":"https://n.example/v1","auth":"none"}}}},"keys":{{"w-secret-1":"sk-secret-1","w-secret-2":{entry}}}}}"#
        )
    };
    let cases: Vec<(String, KeyMapError)> = vec![
        (with_key(r#"{"api_key":"sk-secret","upstream":"nowhere-secret"}"#), KeyMapError::UnknownUpstream { index: 2 }),
        (with_upstream(r#"{"base_url":"https://x.example/v1","auth":"basic-secret"}"#), upstream(Problem::BadAuth)),
        (with_upstream(r#"{"base_url":"ftp://x.example/secret"}"#), upstream(Problem::BadBaseUrl)),
        (with_upstream(r#"{"base_url":"https://user:secret@x.example/v1"}"#), upstream(Problem::BadBaseUrl)),
        (with_upstream(r#"{"base_url":"https://x.example/v1?key=secret"}"#), upstream(Problem::BadBaseUrl)),
        (with_upstream(r#"{"base_url":"not a url secret"}"#), upstream(Problem::BadBaseUrl)),
        (with_upstream(r#"{"auth":"none"}"#), upstream(Problem::MissingBaseUrl)),
        (with_key(r#"{"api_key":"sk-secret","model_map":{"a":7}}"#), KeyMapError::BadModelMap { index: 2 }),
        (with_key(r#"{"api_key":"sk-secret","model_map":["secret"]}"#), KeyMapError::BadModelMap { index: 2 }),
        (with_key(r#"{"tenant":"t"}"#), KeyMapError::MissingApiKey { index: 2 }),
        (with_key(r#"{"api_key":"sk-secret","colour":"secret"}"#), KeyMapError::UnknownField { index: 2, field: "\"colour\"".into() }),
        (with_upstream(r#"{"base_url":"https://x.example/v1","secret_field":"secret"}"#), upstream(Problem::UnknownField)),
        (with_upstream(r#"{"base_url":"https://x.example/v1","auth":"aws-sigv4","region":"eu-secret-1"}"#), upstream(Problem::SigV4Fields)),
        (with_upstream(r#"{"base_url":"https://x.example/v1","region":"eu-secret-1"}"#), upstream(Problem::SigV4Fields)),
        (with_upstream(r#"{"base_url":"https://x.example/v1","headers":{"host":"secret"}}"#), upstream(Problem::BadHeaders)),
        (with_upstream(r#"{"base_url":"https://x.example/v1","headers":{"x-k":"sec\nret"}}"#), upstream(Problem::BadHeaders)),
        (with_upstream(r#"{"base_url":"https://x.example/v1","query":{"k":1}}"#), upstream(Problem::BadQuery)),
        (with_upstream(r#"{"base_url":"https://x.example/v1","include_usage":"secret"}"#), upstream(Problem::BadIncludeUsage)),
        (with_upstream(r#""https://secret.example/v1""#), upstream(Problem::NotAnObject)),
        (r#"{"version":2,"upstreams":{"default":{"base_url":"https://x.example/v1"}},"keys":{}}"#.into(), KeyMapError::BadUpstream { upstream: 1, problem: Problem::BadName }),
        (r#"{"version":3,"keys":{"w-secret":"sk-secret"}}"#.into(), KeyMapError::BadVersion),
        (r#"{"version":2,"keys":["sk-secret"]}"#.into(), KeyMapError::MemberNotAnObject { member: "keys" }),
        (r#"{"version":2,"upstreams":"secret","keys":{}}"#.into(), KeyMapError::MemberNotAnObject { member: "upstreams" }),
        (r#"{"version":2,"upstreams":{}}"#.into(), KeyMapError::MissingKeys),
        (r#"{"version":2,"keys":{},"extra":"secret"}"#.into(), KeyMapError::UnknownTopLevelMember),
        (r#"{"version":2,"keys":{"w-secret":"sk-1","w-secret":"sk-2"}}"#.into(), KeyMapError::DuplicateWrapperKey { index: 2, first: 1 }),
    ];
    for (document, expected) in cases {
        let err = KeyMap::parse(document.as_bytes()).unwrap_err();
        assert_eq!(err, expected, "{document}");
        let message = err.to_string();
        assert!(
            !message.contains("secret") && !message.contains("nowhere"),
            "{message}"
        );
    }
}

#[test]
fn a_key_on_an_upstream_without_auth_needs_no_api_key() {
    let map = KeyMap::parse(
        br#"{"version":2,"upstreams":{"open":{"base_url":"http://127.0.0.1:9/v1","auth":"none"}},
             "keys":{"w":{"upstream":"open"},"d":{"api_key":"sk-d","upstream":"default"}}}"#,
    )
    .unwrap();
    assert!(entry(&map, "w").real_key.is_none());
    assert!(entry(&map, "d").upstream.is_none());
}
