//! The fake's Files and Batch APIs. An upload's bytes are kept (process-wide, under a fresh
//! `file-…` id) and its content is answered back exactly, in several writes, so a script can prove
//! a binary round trip through the proxy byte for byte. A batch must name an uploaded file, as
//! OpenAI's does.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::response::Response;
use serde_json::{Value, json};

use super::openai::json_response;
use super::openai_api::{fake_error, not_found};
use super::openai_media::Form;
use super::openai_stream::{PACE, paced};
use super::upstream::Received;

/// A stored file's content is answered in writes of this size.
pub const FILE_CHUNK: usize = 16 * 1024;

struct Stored {
    filename: String,
    purpose: String,
    data: Bytes,
}

/// Every upload and batch of this test process, by id: ids are never reused, so tests sharing the
/// process do not see each other's.
static FILES: Mutex<BTreeMap<String, Stored>> = Mutex::new(BTreeMap::new());
static BATCHES: Mutex<BTreeMap<String, Value>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn new_id(prefix: &str) -> String {
    format!("{prefix}fake{:06}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// The bytes uploaded as `id`, for tests that check what arrived.
pub fn uploaded(id: &str) -> Option<Bytes> {
    FILES.lock().unwrap().get(id).map(|file| file.data.clone())
}

fn object(id: &str, file: &Stored) -> Value {
    json!({
        "id": id,
        "object": "file",
        "bytes": file.data.len(),
        "created_at": 1_700_000_000,
        "filename": file.filename,
        "purpose": file.purpose,
        "status": "processed",
        "expires_at": null,
        "status_details": null,
    })
}

/// `POST /v1/files`: a multipart upload with a `file` part (with a filename) and a `purpose`.
pub(super) fn upload(request: &Received) -> Response {
    let form = match Form::parse(request) {
        Ok(form) => form,
        Err(failed) => return fake_error(&failed),
    };
    let Some(file) = form.part("file") else {
        return fake_error("no file part");
    };
    let Some(filename) = file.filename.clone() else {
        return fake_error("the file part has no filename");
    };
    let Some(purpose) = form.text("purpose") else {
        return fake_error("no purpose field");
    };
    let stored = Stored {
        filename,
        purpose,
        data: Bytes::from(file.data.clone()),
    };
    let id = new_id("file-");
    let answer = object(&id, &stored);
    FILES.lock().unwrap().insert(id, stored);
    json_response(answer)
}

/// `GET /v1/files/{id}`.
pub(super) fn file_object(id: &str) -> Response {
    match FILES.lock().unwrap().get(id) {
        Some(file) => json_response(object(id, file)),
        None => not_found("File", id),
    }
}

/// `GET /v1/files/{id}/content`: the stored bytes exactly, as `application/octet-stream`, in
/// `FILE_CHUNK` writes.
pub(super) fn content(id: &str) -> Response {
    let Some(data) = uploaded(id) else {
        return not_found("File", id);
    };
    let chunks = (0..data.len())
        .step_by(FILE_CHUNK)
        .map(|at| data.slice(at..data.len().min(at + FILE_CHUNK)))
        .collect();
    paced("application/octet-stream", chunks, PACE)
}

/// `POST /v1/batches`: needs an uploaded `input_file_id`, an `endpoint` and a `completion_window`.
pub(super) fn create_batch(body: &Value) -> Response {
    let (Some(input), Some(endpoint), Some(window)) = (
        body["input_file_id"].as_str(),
        body["endpoint"].as_str(),
        body["completion_window"].as_str(),
    ) else {
        return fake_error("a batch needs input_file_id, endpoint and completion_window");
    };
    if uploaded(input).is_none() {
        return not_found("File", input);
    }
    let id = new_id("batch_");
    let batch = json!({
        "id": id,
        "object": "batch",
        "endpoint": endpoint,
        "errors": null,
        "input_file_id": input,
        "completion_window": window,
        "status": "validating",
        "output_file_id": null,
        "error_file_id": null,
        "created_at": 1_700_000_000,
        "expires_at": 1_700_086_400,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": body.get("metadata").cloned().unwrap_or(Value::Null),
    });
    BATCHES.lock().unwrap().insert(id, batch.clone());
    json_response(batch)
}

/// `GET /v1/batches/{id}` and its cancel: the stored batch, now in `status`.
pub(super) fn batch(id: &str, status: &str) -> Response {
    let mut batches = BATCHES.lock().unwrap();
    let Some(batch) = batches.get_mut(id) else {
        return not_found("Batch", id);
    };
    batch["status"] = json!(status);
    json_response(batch.clone())
}
