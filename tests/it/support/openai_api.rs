//! The rest of the OpenAI API as the fake upstream answers it, past what `openai` knows: legacy
//! completions, moderations, images, the Responses API's retrieve / delete / cancel / input items
//! and resumed streams, and (in `openai_media` and `openai_files`) audio, files and batches.
//!
//! Each handler checks the shape of the request where a proxy could get it wrong (method, query
//! string, body, content type) and, when it is wrong, answers 400 with an OpenAI-shaped error whose
//! message starts `fake upstream:` and names the failed check: the SDK raises it, so the script
//! fails saying what the proxy changed, rather than the fake panicking with the client's socket.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::openai::{REPLY, WORDS, json_response, response_events, response_object};
use super::openai_files;
use super::openai_media;
use super::openai_stream::{PACE, sse};
use super::upstream::Received;

/// The usage every legacy completion reports (the final chunk of a stream with `include_usage`).
pub const COMPLETION_USAGE: (u64, u64, u64) = (7, 5, 12);
/// The usage `images.generate` reports, as gpt-image-1 does: (input, output, total) tokens.
pub const IMAGE_USAGE: (u64, u64, u64) = (50, 4160, 4210);
/// What a `b64_json` image decodes to: a PNG signature, then a marker.
pub const IMAGE_BYTES: &[u8] = b"\x89PNG\r\n\x1a\nfake image";
/// The input items of every stored response, oldest first (ids `msg_in_0` …).
pub const INPUT_ITEMS: usize = 5;

pub fn answer(request: &Received) -> Response {
    let (path, query) = request
        .path_and_query
        .split_once('?')
        .unwrap_or((&request.path_and_query, ""));
    let query = Query(query);
    let bodiless = request.method == Method::GET || request.method == Method::DELETE;
    if bodiless && !request.body.is_empty() {
        return fake_error(&format!(
            "a {} arrived with a {}-byte body",
            request.method,
            request.body.len()
        ));
    }
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["completions"]) => with_json(request, completions),
        ("POST", ["moderations"]) => with_json(request, |body| json_response(moderations(body))),
        ("POST", ["images", "generations"]) => {
            with_json(request, |body| json_response(images(body)))
        }
        ("POST", ["audio", "speech"]) => with_json(request, openai_media::speech),
        ("POST", ["audio", "transcriptions"]) => openai_media::transcription(request),
        ("POST", ["files"]) => openai_files::upload(request),
        ("GET", ["files", id]) => openai_files::file_object(id),
        ("GET", ["files", id, "content"]) => openai_files::content(id),
        ("POST", ["batches"]) => with_json(request, openai_files::create_batch),
        ("GET", ["batches", id]) => openai_files::batch(id, "in_progress"),
        ("POST", ["batches", id, "cancel"]) => {
            without_body(request, || openai_files::batch(id, "cancelling"))
        }
        ("GET", ["responses", id]) => retrieve_response(id, &query),
        ("DELETE", ["responses", id]) => json_response(json!({
            "id": id, "object": "response.deleted", "deleted": true,
        })),
        ("POST", ["responses", id, "cancel"]) => {
            without_body(request, || json_response(stored_response(id, "cancelled")))
        }
        ("GET", ["responses", _, "input_items"]) => input_items(&query),
        _ => (StatusCode::NOT_FOUND, "no such fake route").into_response(),
    }
}

/// An OpenAI-shaped error: `{"error": {"message", "type", "param", "code"}}`.
pub(super) fn error(status: StatusCode, message: &str, kind: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    let mut response = json_response(body);
    *response.status_mut() = status;
    response
}

/// `404` as OpenAI answers for an id it does not have.
pub(super) fn not_found(kind: &str, id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("No such {kind}: '{id}'"),
        "invalid_request_error",
    )
}

/// A request the fake refuses because its shape is wrong: `fake upstream: <the failed check>`.
pub(super) fn fake_error(failed: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        &format!("fake upstream: {failed}"),
        "invalid_request_error",
    )
}

/// Runs `handler` on a JSON object body sent as `application/json`, or refuses the request.
fn with_json(request: &Received, handler: impl FnOnce(&Value) -> Response) -> Response {
    let content_type = request
        .headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return fake_error(&format!(
            "a JSON body came as content-type {content_type:?}"
        ));
    }
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(body) if body.is_object() => handler(&body),
        _ => fake_error("the body is not a JSON object"),
    }
}

/// Runs `handler` for a POST that carries no body (a cancel), or refuses the request.
fn without_body(request: &Received, handler: impl FnOnce() -> Response) -> Response {
    if request.body.is_empty() {
        handler()
    } else {
        fake_error(&format!(
            "a bodiless POST arrived with {} bytes",
            request.body.len()
        ))
    }
}

/// A raw query string, read by name. Values are compared undecoded: every value the scripts send
/// (ids, numbers, `true`, `asc`) is already URL-safe.
pub(super) struct Query<'a>(pub &'a str);

impl Query<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find_map(|(key, value)| (key == name).then_some(value))
    }
}

fn completions(body: &Value) -> Response {
    let model = body["model"].as_str().unwrap_or("gpt-3.5-turbo-instruct");
    let (prompt, completion, total) = COMPLETION_USAGE;
    let usage =
        json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total});
    let chunk = |text: &str, finish: Value| {
        json!({
            "id": "cmpl-fake", "object": "text_completion", "created": 1_700_000_000,
            "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
        })
    };
    if body["stream"] != json!(true) {
        let mut whole = chunk(REPLY, json!("stop"));
        whole["usage"] = usage;
        return json_response(whole);
    }
    // As chat streams: with `include_usage`, every chunk has `"usage": null` and one more chunk,
    // with no choices, carries the usage before `[DONE]`.
    let include_usage = body["stream_options"]["include_usage"] == json!(true);
    let mut chunks: Vec<Value> = WORDS.iter().map(|word| chunk(word, Value::Null)).collect();
    chunks.push(chunk("", json!("stop")));
    if include_usage {
        for chunk in &mut chunks {
            chunk["usage"] = Value::Null;
        }
        let mut last = chunk("", Value::Null);
        last["choices"] = json!([]);
        last["usage"] = usage;
        chunks.push(last);
    }
    let mut events: Vec<String> = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    events.push("data: [DONE]\n\n".to_owned());
    sse(events, PACE)
}

fn moderations(body: &Value) -> Value {
    const CATEGORIES: [&str; 13] = [
        "harassment",
        "harassment/threatening",
        "hate",
        "hate/threatening",
        "illicit",
        "illicit/violent",
        "self-harm",
        "self-harm/instructions",
        "self-harm/intent",
        "sexual",
        "sexual/minors",
        "violence",
        "violence/graphic",
    ];
    let inputs = match &body["input"] {
        Value::Array(items) => items.len(),
        _ => 1,
    };
    let each = |value: Value| -> Value {
        CATEGORIES
            .iter()
            .map(|name| ((*name).to_owned(), value.clone()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let result = json!({
        "flagged": false,
        "categories": each(json!(false)),
        "category_scores": each(json!(0.0001)),
        "category_applied_input_types": each(json!(["text"])),
    });
    json!({
        "id": "modr-fake",
        "model": body["model"].as_str().unwrap_or("omni-moderation-latest"),
        "results": vec![result; inputs],
    })
}

fn images(body: &Value) -> Value {
    let n = body["n"].as_u64().unwrap_or(1) as usize;
    let image = if body["response_format"] == json!("url") {
        json!({"url": "https://images.fake.invalid/image.png", "revised_prompt": body["prompt"]})
    } else {
        json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(IMAGE_BYTES)})
    };
    let (input, output, total) = IMAGE_USAGE;
    json!({
        "created": 1_700_000_000,
        "data": vec![image; n],
        "usage": {
            "input_tokens": input,
            "input_tokens_details": {"text_tokens": input, "image_tokens": 0},
            "output_tokens": output,
            "total_tokens": total,
        },
    })
}

/// A stored response: the fake's finished response under the id asked for.
fn stored_response(id: &str, status: &str) -> Value {
    let mut response = response_object("gpt-4o-mini", status);
    response["id"] = json!(id);
    response
}

/// `GET /v1/responses/{id}`: the response, or with `stream=true` its events again, those after
/// `starting_after` (OpenAI's way to resume a background response's stream).
fn retrieve_response(id: &str, query: &Query) -> Response {
    match query.get("stream") {
        None | Some("false") => json_response(stored_response(id, "completed")),
        Some("true") => {
            let after = match query.get("starting_after").map(str::parse::<i64>) {
                None => -1,
                Some(Ok(after)) => after,
                Some(Err(_)) => return fake_error("starting_after is not a number"),
            };
            let events = response_events("gpt-4o-mini")
                .into_iter()
                .enumerate()
                .filter(|(sequence, _)| *sequence as i64 > after)
                .map(|(_, event)| event.replace("resp_fake", id))
                .collect();
            sse(events, PACE)
        }
        Some(other) => fake_error(&format!("stream={other} in the query")),
    }
}

/// One page of the input items, honouring `limit`, `after` and `order` (default `desc`).
fn input_items(query: &Query) -> Response {
    let mut ids: Vec<String> = (0..INPUT_ITEMS).map(|n| format!("msg_in_{n}")).collect();
    match query.get("order") {
        None | Some("desc") => ids.reverse(),
        Some("asc") => {}
        Some(other) => return fake_error(&format!("order={other} in the query")),
    }
    let limit = match query.get("limit").map(str::parse::<usize>) {
        None => 20,
        Some(Ok(limit)) if limit > 0 => limit,
        _ => return fake_error("limit is not a positive number"),
    };
    let start = match query.get("after") {
        None => 0,
        Some(after) => match ids.iter().position(|id| id == after) {
            Some(at) => at + 1,
            None => return fake_error(&format!("after={after} is not an item id")),
        },
    };
    let page: Vec<Value> = ids
        .iter()
        .skip(start)
        .take(limit)
        .map(|id| {
            json!({"type": "message", "id": id, "status": "completed", "role": "user",
                   "content": [{"type": "input_text", "text": format!("input {id}")}]})
        })
        .collect();
    json_response(json!({
        "object": "list",
        "first_id": page.first().map(|item| item["id"].clone()),
        "last_id": page.last().map(|item| item["id"].clone()),
        "has_more": start + page.len() < ids.len(),
        "data": page,
    }))
}
