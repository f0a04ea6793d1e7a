//! Token usage, picked up from response bodies as they pass, never by holding a body back.
//!
//! - JSON bodies (chat, embeddings, responses): OpenAI puts `"usage":{…}` near the end, so the
//!   last few KiB are kept (as shared `Bytes`, no copy) and read when the body ends.
//! - SSE bodies: each event is looked at as it completes; the last usage object seen wins (the
//!   final chat chunk, or the Responses API's `response.completed`).
//! - SSE bodies for which the proxy itself asked for usage (`stream_options.include_usage`, see
//!   `proxy.rs`): OpenAI then adds `"usage":null` to every chunk and one usage-only chunk
//!   (`"choices":[]`) before `[DONE]`. Both are undone, so the client receives exactly the bytes
//!   it would have received without the flag. Every other event passes unchanged, in-band error
//!   events included.

use std::collections::VecDeque;
use std::ops::Range;

use axum::body::Bytes;
use memchr::memmem;
use serde::{Deserialize, Serialize};

/// Token counts in chat-completions terms (the Responses API's input/output map onto them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// Both spellings OpenAI uses; the `*_details` objects are ignored.
#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl Usage {
    fn parse(object: &[u8]) -> Option<Self> {
        let wire: WireUsage = serde_json::from_slice(object).ok()?;
        let prompt_tokens = wire.prompt_tokens.or(wire.input_tokens)?;
        let completion_tokens = wire.completion_tokens.or(wire.output_tokens).unwrap_or(0);
        Some(Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: wire
                .total_tokens
                .unwrap_or(prompt_tokens + completion_tokens),
        })
    }
}

/// How much of a JSON body's end is kept to find its usage object.
const JSON_TAIL_BYTES: usize = 16 * 1024;

/// Watches one response body for usage.
pub enum UsageWatch {
    /// A JSON body: its last chunks, at least `JSON_TAIL_BYTES` of them.
    Json { tail: VecDeque<Bytes>, kept: usize },
    /// An SSE body, event by event; `undo_include_usage` when the proxy added the flag.
    Sse {
        event: Vec<u8>,
        undo_include_usage: bool,
        usage: Option<Usage>,
        /// An in-band error event went by (it is passed on unchanged; this is for the record).
        error_event: bool,
    },
}

impl UsageWatch {
    pub fn json() -> Self {
        Self::Json {
            tail: VecDeque::new(),
            kept: 0,
        }
    }

    pub fn sse(undo_include_usage: bool) -> Self {
        Self::Sse {
            event: Vec::new(),
            undo_include_usage,
            usage: None,
            error_event: false,
        }
    }

    /// Takes one upstream chunk; returns what goes to the client now (`None`: nothing yet).
    /// Only a stream whose flag is being undone is ever changed or held back, and then only
    /// until its current event is complete.
    pub fn pass(&mut self, chunk: Bytes) -> Option<Bytes> {
        match self {
            Self::Json { tail, kept } => {
                *kept += chunk.len();
                tail.push_back(chunk.clone());
                while tail.len() > 1 && *kept - tail[0].len() >= JSON_TAIL_BYTES {
                    *kept -= tail[0].len();
                    tail.pop_front();
                }
                Some(chunk)
            }
            Self::Sse {
                event,
                undo_include_usage: false,
                usage,
                error_event,
            } => {
                for_each_event(event, &chunk, |complete| {
                    *error_event |= is_error_event(complete);
                    if let Some(found) = usage_in(complete) {
                        *usage = Some(found);
                    }
                });
                Some(chunk)
            }
            Self::Sse {
                event,
                undo_include_usage: true,
                usage,
                error_event,
            } => {
                let mut out = Vec::new();
                let mut changed = false;
                for_each_event(event, &chunk, |complete| {
                    *error_event |= is_error_event(complete);
                    let (kept, found) = undo_include_usage(complete);
                    if let Some(found) = found {
                        *usage = Some(found);
                    }
                    changed |= kept.len() != complete.len();
                    out.extend_from_slice(&kept);
                });
                // The usual case, whole unchanged events in one chunk: the chunk itself goes on.
                if !changed && out.len() == chunk.len() {
                    Some(chunk)
                } else if out.is_empty() {
                    None
                } else {
                    Some(Bytes::from(out))
                }
            }
        }
    }

    /// Bytes still held when the upstream body ends (an unterminated last event), unchanged.
    pub fn rest(&mut self) -> Option<Bytes> {
        match self {
            Self::Sse {
                event,
                undo_include_usage: true,
                ..
            } if !event.is_empty() => Some(Bytes::from(std::mem::take(event))),
            _ => None,
        }
    }

    /// Whether the upstream reported an error inside the stream.
    pub fn saw_error_event(&self) -> bool {
        matches!(
            self,
            Self::Sse {
                error_event: true,
                ..
            }
        )
    }

    /// The usage the body reported, read at its end.
    pub fn usage(&self) -> Option<Usage> {
        match self {
            Self::Json { tail, .. } => {
                let text: Vec<u8> = tail
                    .iter()
                    .flat_map(|chunk| chunk.iter().copied())
                    .collect();
                last_usage(&text)
            }
            Self::Sse { usage, .. } => *usage,
        }
    }
}

/// Appends `chunk` to the event being assembled in `event` and calls `complete` with each event
/// that is now whole (its bytes including the blank line that ends it).
fn for_each_event(event: &mut Vec<u8>, chunk: &[u8], mut complete: impl FnMut(&[u8])) {
    let mut rest = chunk;
    while let Some(end) = event_end(event, rest) {
        let (head, tail) = rest.split_at(end);
        if event.is_empty() {
            complete(head);
        } else {
            event.extend_from_slice(head);
            complete(event);
            event.clear();
        }
        rest = tail;
    }
    event.extend_from_slice(rest);
}

/// Where in `next` the event begun in `held` ends (just after its blank line), if it does.
fn event_end(held: &[u8], next: &[u8]) -> Option<usize> {
    // The blank line may straddle the two, so the last three held bytes are looked at too.
    let carried = &held[held.len().saturating_sub(3)..];
    if carried.is_empty() {
        return blank_line_end(next);
    }
    let joined = [carried, next].concat();
    blank_line_end(&joined).map(|end| end - carried.len())
}

/// Just past the first `\n\n` or `\r\n\r\n` in `bytes`.
fn blank_line_end(bytes: &[u8]) -> Option<usize> {
    let lf = memmem::find(bytes, b"\n\n").map(|at| at + 2);
    let crlf = memmem::find(bytes, b"\r\n\r\n").map(|at| at + 4);
    match (lf, crlf) {
        (Some(lf), Some(crlf)) => Some(lf.min(crlf)),
        (lf, crlf) => lf.or(crlf),
    }
}

/// The usage object in one SSE event, if it carries one (at any depth: the Responses API nests
/// it in `response`).
fn usage_in(event: &[u8]) -> Option<Usage> {
    find(event, b"\"usage\"")?;
    last_usage(event)
}

/// An in-band error: chat's `data: {"error": {…}}`, or the Responses API's `error` and
/// `response.failed` events.
fn is_error_event(event: &[u8]) -> bool {
    // `response.failed` carries its `error` object inside `response`, so one search does.
    if find(event, b"error").is_none() {
        return false;
    }
    let Some(json) = data_json(event) else {
        return false;
    };
    let json = &event[json];
    if top_level_member(json, b"error").is_some_and(|error| json[error.value.start] == b'{') {
        return true;
    }
    top_level_member(json, b"type")
        .is_some_and(|kind| matches!(&json[kind.value], b"\"error\"" | b"\"response.failed\""))
}

/// One event of a stream whose `include_usage` the proxy added: what the client gets of it,
/// and the usage it reported.
fn undo_include_usage(event: &[u8]) -> (Vec<u8>, Option<Usage>) {
    let Some(json) = data_json(event) else {
        return (event.to_vec(), None);
    };
    let Some(usage) = top_level_member(&event[json.clone()], b"usage") else {
        return (event.to_vec(), None);
    };
    let value = &event[json.start + usage.value.start..json.start + usage.value.end];
    if value == b"null" {
        // `"usage":null` on every chunk: removed, as if the flag had not been sent.
        let mut kept = event.to_vec();
        kept.drain(json.start + usage.member.start..json.start + usage.member.end);
        return (kept, None);
    }
    let found = Usage::parse(value);
    let choices = top_level_member(&event[json.clone()], b"choices")
        .map(|choices| &event[json.start + choices.value.start..json.start + choices.value.end]);
    match choices {
        // The extra usage-only chunk: not sent to the client, who did not ask for it.
        Some(b"[]") if found.is_some() => (Vec::new(), found),
        _ => (event.to_vec(), found),
    }
}

/// The byte range of the JSON object on an event's only `data:` line.
fn data_json(event: &[u8]) -> Option<Range<usize>> {
    let start = find(event, b"data:")?;
    if start > 0 && event[start - 1] != b'\n' {
        return None;
    }
    let mut from = start + b"data:".len();
    if event.get(from) == Some(&b' ') {
        from += 1;
    }
    let line_end = event[from..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map_or(event.len(), |end| from + end);
    if find(&event[line_end..], b"data:").is_some() || event.get(from) != Some(&b'{') {
        return None;
    }
    Some(from..line_end)
}

/// A member of a JSON object: the bytes to remove to delete it (with one comma, so what remains
/// is what a serialiser would have written without it), and its value.
struct Member {
    member: Range<usize>,
    value: Range<usize>,
}

/// Finds the member `name` at the top level of the JSON object `json`.
fn top_level_member(json: &[u8], name: &[u8]) -> Option<Member> {
    let mut at = skip_ws(json, 0);
    if json.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    let mut previous_value_end: Option<usize> = None;
    loop {
        at = skip_ws(json, at);
        if json.get(at) != Some(&b'"') {
            return None;
        }
        let key_start = at;
        let key_end = string_end(json, at)?;
        at = skip_ws(json, key_end);
        if json.get(at) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(json, at + 1);
        let value_end = value_end(json, value_start)?;
        let after = skip_ws(json, value_end);
        let is_last = json.get(after) == Some(&b'}');
        if &json[key_start + 1..key_end - 1] == name {
            let member = match (previous_value_end, is_last) {
                (Some(previous), _) => previous..value_end,
                (None, false) => key_start..skip_ws(json, after + 1),
                (None, true) => key_start..value_end,
            };
            return Some(Member {
                member,
                value: value_start..value_end,
            });
        }
        match json.get(after) {
            Some(b',') => {
                previous_value_end = Some(value_end);
                at = after + 1;
            }
            _ => return None,
        }
    }
}

fn skip_ws(json: &[u8], mut at: usize) -> usize {
    while json.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// Just past the string that starts at `at` (a `"`).
fn string_end(json: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    while i < json.len() {
        match json[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Just past the JSON value that starts at `at`.
fn value_end(json: &[u8], at: usize) -> Option<usize> {
    match json.get(at)? {
        b'"' => string_end(json, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            while i < json.len() {
                match json[i] {
                    b'"' => {
                        i = string_end(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let len = json[at..]
                .iter()
                .position(|&b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                .unwrap_or(json.len() - at);
            Some(at + len)
        }
    }
}

/// The last `"usage": {…}` object in `text`, at any depth, parsed.
fn last_usage(text: &[u8]) -> Option<Usage> {
    const KEY: &[u8] = b"\"usage\"";
    let mut end = text.len();
    while let Some(at) = rfind(&text[..end], KEY) {
        let colon = skip_ws(text, at + KEY.len());
        if text.get(colon) == Some(&b':') {
            let start = skip_ws(text, colon + 1);
            if text.get(start) == Some(&b'{')
                && let Some(usage) =
                    value_end(text, start).and_then(|e| Usage::parse(&text[start..e]))
            {
                return Some(usage);
            }
        }
        end = at;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memmem::find(haystack, needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memmem::rfind(haystack, needle)
}

#[cfg(test)]
mod tests;
