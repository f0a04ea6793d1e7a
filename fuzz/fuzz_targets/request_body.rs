//! What the proxy reads from a request body, fuzzed: any body and content type, read as a JSON or
//! a multipart body, never panics. A model the multipart walk reports is in the body; a JSON
//! body whose top-level `model` the key's `model_map` renames is the same JSON object with only
//! that member's value changed.
#![no_main]

use axum::http::Method;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use openai_proxy::multipart;
use openai_proxy::request::{BodyKind, RequestSummary, with_model};
use openai_proxy::routes::route;

fuzz_target!(|data: &[u8]| {
    // The first line is the boundary to use; the rest is the body.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (boundary_bytes, body) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let transcription = route(&Method::POST, "/v1/audio/transcriptions").unwrap();
    if let Ok(text) = std::str::from_utf8(boundary_bytes) {
        let content_type = format!("multipart/form-data; boundary={text}");
        if let Ok(boundary) = multipart::boundary(&content_type) {
            if let Ok(Some(model)) = multipart::model_field(body, boundary) {
                let found = body.windows(model.len().max(1)).any(|w| w == model.as_bytes());
                assert!(model.is_empty() || found, "a model that is not in the body");
            }
            let kind = BodyKind::Multipart { boundary };
            let _ = RequestSummary::of(body, &kind, &transcription);
        }
    }

    // The body as it is, and the body's text as every string of a chat request around its model
    // (so the member finder meets escapes, quotes and braces in the values around it).
    let text = serde_json::Value::from(String::from_utf8_lossy(body).into_owned());
    let wrapped = format!(r#"{{"messages":[{text}],"model" : {text},"x":{{"model":{text}}}}}"#);
    renamed_keeps_all_but_the_model(body);
    renamed_keeps_all_but_the_model(wrapped.as_bytes());
});

fn renamed_keeps_all_but_the_model(body: &[u8]) {
    let chat = route(&Method::POST, "/v1/chat/completions").unwrap();
    let Ok(summary) = RequestSummary::of(body, &BodyKind::Json, &chat) else {
        return;
    };
    let Some(model) = summary.model else {
        return;
    };
    let renamed = with_model(&Bytes::copy_from_slice(body), "upstream-model");
    let before: serde_json::Value = serde_json::from_slice(body).unwrap();
    let mut after: serde_json::Value = serde_json::from_slice(&renamed).unwrap();
    assert_eq!(after["model"], "upstream-model");
    after["model"] = serde_json::Value::String(model);
    assert_eq!(before, after, "model_map changed more than the model");
}
