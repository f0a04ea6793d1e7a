//! The fake's audio endpoints and the multipart/form-data reader its uploads share. Speech is a
//! binary body in several writes (held, like a chat stream, when its model names a `HELD_INFIX`
//! token); a transcription is a multipart upload whose encoding the handler checks strictly, so a
//! proxy that re-encodes, truncates or re-frames the body fails the SDK script with the reason.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::openai::{HELD_INFIX, REPLY, json_response};
use super::openai_api::fake_error;
use super::openai_stream::{PACE, held, paced};
use super::upstream::Received;

/// Speech audio: `SPEECH_AUDIO_LEN` bytes, byte `i` being `(i ^ (i >> 8)) & 0xff`. Every 256-byte
/// block holds every byte value, each block in a different order, so a dropped, repeated or
/// reordered chunk shows. The SDK scripts recompute it.
pub const SPEECH_AUDIO_LEN: usize = 64 * 1024;
/// Speech is sent in writes of this size (8 of them).
pub const SPEECH_CHUNK: usize = 8 * 1024;
/// The usage every JSON transcription reports: (input, output, total) tokens.
pub const TRANSCRIPTION_USAGE: (u64, u64, u64) = (14, 6, 20);

pub fn speech_audio() -> Vec<u8> {
    (0..SPEECH_AUDIO_LEN)
        .map(|i| (i ^ (i >> 8)) as u8)
        .collect()
}

/// `POST /v1/audio/speech`: the audio as `audio/mpeg`, in `SPEECH_CHUNK` writes. A model named
/// `…-held-TOKEN` sends its first write, then holds the rest until TOKEN is released.
pub(super) fn speech(body: &Value) -> Response {
    let (Some(model), Some(_)) = (body["model"].as_str(), body["input"].as_str()) else {
        return fake_error("speech needs a model and an input");
    };
    let chunks: Vec<Bytes> = speech_audio()
        .chunks(SPEECH_CHUNK)
        .map(Bytes::copy_from_slice)
        .collect();
    match model.split_once(HELD_INFIX) {
        Some((_, token)) => held("audio/mpeg", chunks, 1, token),
        None => paced("audio/mpeg", chunks, PACE),
    }
}

/// `POST /v1/audio/transcriptions`: checks the multipart encoding and that the `file` part is
/// exactly the bytes 0..=255 (the scripts' clip), then answers the transcription with token usage,
/// or plain text for `response_format=text`.
pub(super) fn transcription(request: &Received) -> Response {
    let form = match Form::parse(request) {
        Ok(form) => form,
        Err(failed) => return fake_error(&failed),
    };
    let Some(file) = form.part("file") else {
        return fake_error("no file part");
    };
    if file.filename.is_none() {
        return fake_error("the file part has no filename");
    }
    let clip: Vec<u8> = (0..=255).collect();
    if file.data != clip {
        return fake_error(&format!(
            "the file part is not the bytes 0..=255 in order ({} bytes arrived)",
            file.data.len()
        ));
    }
    if form.text("model").is_none() {
        return fake_error("no model field");
    }
    if form.text("response_format").as_deref() == Some("text") {
        return (
            [("content-type", "text/plain; charset=utf-8")],
            format!("{REPLY}\n"),
        )
            .into_response();
    }
    let (input, output, total) = TRANSCRIPTION_USAGE;
    json_response(json!({
        "text": REPLY,
        "usage": {"type": "tokens", "input_tokens": input, "output_tokens": output,
                  "total_tokens": total},
    }))
}

/// One part of a multipart/form-data body.
pub(super) struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub data: Vec<u8>,
}

/// A multipart/form-data body, read strictly (RFC 7578 as the SDKs write it): the content type
/// names a boundary, the body opens with `--boundary` and closes with `--boundary--\r\n`.
pub(super) struct Form(Vec<Part>);

impl Form {
    /// The parts, or the check that failed.
    pub fn parse(request: &Received) -> Result<Self, String> {
        let content_type = request
            .headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !content_type.starts_with("multipart/form-data") {
            return Err(format!(
                "content-type {content_type:?} is not multipart/form-data"
            ));
        }
        let boundary = content_type
            .split(';')
            .filter_map(|param| param.trim().split_once('='))
            .find_map(|(key, value)| key.eq_ignore_ascii_case("boundary").then_some(value))
            .map(|value| value.trim_matches('"'))
            .filter(|value| !value.is_empty())
            .ok_or_else(|| format!("content-type {content_type:?} carries no boundary"))?;
        let body = &request.body[..];
        let open = format!("--{boundary}\r\n");
        let close = format!("\r\n--{boundary}--\r\n");
        if !body.starts_with(open.as_bytes()) {
            return Err("the body's first line is not --<boundary>".to_owned());
        }
        if !body.ends_with(close.as_bytes()) || body.len() < open.len() + close.len() {
            return Err("the body does not end with --<boundary>--\\r\\n".to_owned());
        }
        let inner = &body[open.len()..body.len() - close.len()];
        let parts = split(inner, format!("\r\n--{boundary}\r\n").as_bytes())
            .into_iter()
            .map(Part::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self(parts))
    }

    pub fn part(&self, name: &str) -> Option<&Part> {
        self.0.iter().find(|part| part.name == name)
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.part(name)
            .map(|part| String::from_utf8_lossy(&part.data).into_owned())
    }
}

impl Part {
    fn parse(raw: &[u8]) -> Result<Self, String> {
        let at = find(raw, b"\r\n\r\n").ok_or("a part has no blank line after its headers")?;
        let headers = String::from_utf8_lossy(&raw[..at]);
        let disposition = headers
            .split("\r\n")
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-disposition")
                    .then_some(value)
            })
            .ok_or("a part has no Content-Disposition")?;
        let param = |wanted: &str| {
            disposition
                .split(';')
                .filter_map(|param| param.trim().split_once('='))
                .find_map(|(key, value)| {
                    (key == wanted).then(|| value.trim_matches('"').to_owned())
                })
        };
        Ok(Self {
            name: param("name").ok_or("a part's Content-Disposition has no name")?,
            filename: param("filename"),
            data: raw[at + 4..].to_vec(),
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn split<'a>(mut haystack: &'a [u8], separator: &[u8]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    while let Some(at) = find(haystack, separator) {
        pieces.push(&haystack[..at]);
        haystack = &haystack[at + separator.len()..];
    }
    pieces.push(haystack);
    pieces
}
