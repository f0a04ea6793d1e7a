//! Answers the way OpenAI does, closely enough for the official SDKs to parse every response:
//! chat completions (plain and SSE), embeddings (float and base64), the model list, and the
//! Responses API (plain and SSE). The content is fixed so the SDK-side scripts can check it.
//! Every other path falls through to `openai_api`, which answers the rest of the API, so one fake
//! upstream serves every SDK script.

use std::time::Duration;

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::openai_api;
use super::openai_stream::{PACE, held, release, sse};
use super::upstream::{HeadDelay, Received};

/// The words the fake model says, one streamed chunk each.
pub const WORDS: [&str; 5] = ["Hello", " from", " the", " fake", " upstream"];
pub const REPLY: &str = "Hello from the fake upstream";
/// A model named `…-held-TOKEN` streams its first word (speech: its first write), then holds the
/// rest until the client asks `GET /v1/test-release/TOKEN` of this upstream (or
/// `openai_stream::HOLD_AT_MOST` passes). The release answers whether the stream was still held:
/// `{"held": true}` proves the client got the first word while the upstream had not yet sent the
/// rest, so the proxy streamed it, whatever the machine's speed.
pub const HELD_INFIX: &str = "-held-";
/// A model name ending in this breaks off its stream with OpenAI's in-band error event.
pub const ERROR_SUFFIX: &str = "-error";
pub const IN_BAND_ERROR: &str = r#"data: {"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#;
/// The usage every chat completion reports (`stream_options.include_usage` streams included).
pub const CHAT_USAGE: (u64, u64, u64) = (9, 5, 14);
/// A model name ending in this answers only after thinking for `THINKING_TIME`.
pub const THINKING_SUFFIX: &str = "-thinking";
pub const THINKING_TIME: Duration = Duration::from_millis(800);

pub fn respond(request: &Received) -> Response {
    let mut response = answer(request);
    let thinking = serde_json::from_slice::<Value>(&request.body)
        .ok()
        .and_then(|body| {
            body["model"]
                .as_str()
                .map(|model| model.ends_with(THINKING_SUFFIX))
        })
        .unwrap_or(false);
    if thinking {
        response.extensions_mut().insert(HeadDelay(THINKING_TIME));
    }
    response
}

fn answer(request: &Received) -> Response {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let path = request.path_and_query.split('?').next().unwrap_or_default();
    let stream = body["stream"].as_bool().unwrap_or(false);
    let model = body["model"].as_str().unwrap_or("gpt-4o-mini").to_owned();
    match path {
        "/v1/chat/completions" if stream => {
            let include_usage = body["stream_options"]["include_usage"] == json!(true);
            let events = chat_chunks(&model, include_usage);
            match model.split_once(HELD_INFIX) {
                Some((_, token)) => held_sse(events, token),
                None => sse(events, PACE),
            }
        }
        release_path if release_path.starts_with("/v1/test-release/") => {
            let token = release_path.trim_start_matches("/v1/test-release/");
            json_response(json!({"held": release(token)}))
        }
        "/v1/chat/completions" => json_response(chat_completion(&model)),
        "/v1/embeddings" => json_response(embeddings(&body, &model)),
        "/v1/models" => json_response(json!({
            "object": "list",
            "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 1_700_000_000, "owned_by": "system"},
                {"id": "text-embedding-3-small", "object": "model", "created": 1_700_000_000, "owned_by": "system"},
            ],
        })),
        "/v1/responses" if stream => sse(response_events(&model), PACE),
        "/v1/responses" => json_response(response_object(&model, "completed")),
        _ => openai_api::answer(request),
    }
}

pub(super) fn json_response(value: Value) -> Response {
    (
        [
            ("content-type", "application/json"),
            ("x-request-id", "req_fake"),
        ],
        value.to_string(),
    )
        .into_response()
}

/// The role and first-word events, then the rest once released (see `HELD_INFIX`).
fn held_sse(events: Vec<String>, token: &str) -> Response {
    let chunks = events.into_iter().map(Bytes::from).collect();
    held("text/event-stream; charset=utf-8", chunks, 2, token)
}

/// As OpenAI streams a chat completion: with `include_usage`, every chunk carries
/// `"usage":null` and one more chunk, with no choices, carries the usage before `[DONE]`.
fn chat_chunks(model: &str, include_usage: bool) -> Vec<String> {
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut chunk = json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": choices,
        });
        if include_usage {
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        format!("data: {chunk}\n\n")
    };
    let choice = |delta: Value, finish: Value| {
        chunk(
            json!([{"index": 0, "delta": delta, "finish_reason": finish}]),
            None,
        )
    };
    let mut events = vec![choice(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if model.ends_with(ERROR_SUFFIX) {
        events.push(choice(json!({"content": WORDS[0]}), Value::Null));
        events.push(format!("{IN_BAND_ERROR}\n\n"));
        return events;
    }
    events.extend(
        WORDS
            .iter()
            .map(|word| choice(json!({"content": word}), Value::Null)),
    );
    events.push(choice(json!({}), json!("stop")));
    if include_usage {
        let (prompt, completion, total) = CHAT_USAGE;
        events.push(chunk(
            json!([]),
            Some(json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total})),
        ));
    }
    events.push("data: [DONE]\n\n".to_owned());
    events
}

fn chat_completion(model: &str) -> Value {
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": REPLY, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
    })
}

/// Embedding `i` is `[i + 0.5, -1.0, 0.25, 2.0]`: exactly representable, so float32 base64
/// round-trips to the same numbers.
fn embeddings(body: &Value, model: &str) -> Value {
    let inputs = match &body["input"] {
        Value::Array(items) => items.len(),
        _ => 1,
    };
    let base64 = body["encoding_format"].as_str() == Some("base64");
    let data: Vec<Value> = (0..inputs)
        .map(|index| {
            let vector = [index as f32 + 0.5, -1.0, 0.25, 2.0];
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    })
}

pub(super) fn response_object(model: &str, status: &str) -> Value {
    let output = if status == "completed" {
        json!([{
            "type": "message",
            "id": "msg_fake",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": REPLY, "annotations": []}],
        }])
    } else {
        json!([])
    };
    json!({
        "id": "resp_fake",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        // Only a finished response has usage; OpenAI sends `null` until then.
        "usage": if status == "completed" {
            json!({"input_tokens": 9, "output_tokens": 5, "total_tokens": 14,
                   "input_tokens_details": {"cached_tokens": 0},
                   "output_tokens_details": {"reasoning_tokens": 0}})
        } else {
            Value::Null
        },
    })
}

pub(super) fn response_events(model: &str) -> Vec<String> {
    let mut sequence = 0;
    let mut event = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(sequence);
        sequence += 1;
        format!("event: {kind}\ndata: {data}\n\n")
    };
    let item = |status: &str, text: &str| {
        json!({"type": "message", "id": "msg_fake", "status": status, "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]})
    };
    let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
    let at = json!({"item_id": "msg_fake", "output_index": 0, "content_index": 0});
    let mut events = vec![
        event(
            "response.created",
            json!({"response": response_object(model, "in_progress")}),
        ),
        event(
            "response.output_item.added",
            json!({"output_index": 0, "item": {"type": "message", "id": "msg_fake",
                   "status": "in_progress", "role": "assistant", "content": []}}),
        ),
        event(
            "response.content_part.added",
            merge(&at, json!({"part": part("")})),
        ),
    ];
    for word in WORDS {
        events.push(event(
            "response.output_text.delta",
            merge(&at, json!({"delta": word, "logprobs": []})),
        ));
    }
    events.push(event(
        "response.output_text.done",
        merge(&at, json!({"text": REPLY, "logprobs": []})),
    ));
    events.push(event(
        "response.content_part.done",
        merge(&at, json!({"part": part(REPLY)})),
    ));
    events.push(event(
        "response.output_item.done",
        json!({"output_index": 0, "item": item("completed", REPLY)}),
    ));
    events.push(event(
        "response.completed",
        json!({"response": response_object(model, "completed")}),
    ));
    events
}

fn merge(base: &Value, extra: Value) -> Value {
    let mut merged = base.clone();
    if let (Value::Object(into), Value::Object(from)) = (&mut merged, extra) {
        into.extend(from);
    }
    merged
}
