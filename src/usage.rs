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

mod event;
pub(crate) mod scan;

use std::collections::VecDeque;

use axum::body::Bytes;
use serde::{Deserialize, Serialize};

use event::{Edit, inspect};
use scan::{Events, objects_named_from_last};

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
pub struct UsageWatch(Watch);

enum Watch {
    /// A body the API never reports usage in (audio, file contents, plain text): passed unread.
    Opaque,
    /// A JSON body: its last chunks, at least `JSON_TAIL_BYTES` of them.
    Json { tail: VecDeque<Bytes>, kept: usize },
    /// An SSE body, event by event; `undo_include_usage` when the proxy added the flag.
    Sse {
        events: Events,
        undo_include_usage: bool,
        found: Found,
    },
}

/// What the events of an SSE body have said so far.
#[derive(Default)]
struct Found {
    usage: Option<Usage>,
    /// An in-band error event went by (it is passed on unchanged; this is for the record).
    error_event: bool,
}

impl Found {
    /// Reads one whole event; returns what the client gets of it.
    fn read(&mut self, event: &[u8], undo_include_usage: bool) -> Edit {
        let seen = inspect(event, undo_include_usage);
        self.error_event |= seen.error_event;
        if seen.usage.is_some() {
            self.usage = seen.usage;
        }
        seen.edit
    }
}

impl UsageWatch {
    pub fn json() -> Self {
        Self(Watch::Json {
            tail: VecDeque::new(),
            kept: 0,
        })
    }

    pub fn opaque() -> Self {
        Self(Watch::Opaque)
    }

    pub fn sse(undo_include_usage: bool) -> Self {
        Self(Watch::Sse {
            events: Events::default(),
            undo_include_usage,
            found: Found::default(),
        })
    }

    /// Takes one upstream chunk; returns what goes to the client now (`None`: nothing yet).
    /// Only a stream whose flag is being undone is ever changed or held back, and then only
    /// until its current event is complete.
    pub fn pass(&mut self, chunk: Bytes) -> Option<Bytes> {
        match &mut self.0 {
            Watch::Opaque => Some(chunk),
            Watch::Json { tail, kept } => {
                *kept += chunk.len();
                tail.push_back(chunk.clone());
                while tail.len() > 1 && *kept - tail[0].len() >= JSON_TAIL_BYTES {
                    *kept -= tail[0].len();
                    tail.pop_front();
                }
                Some(chunk)
            }
            Watch::Sse {
                events,
                undo_include_usage: false,
                found,
            } => {
                events.feed(&chunk, |event, _| {
                    found.read(event, false);
                });
                Some(chunk)
            }
            Watch::Sse {
                events,
                undo_include_usage: true,
                found,
            } => {
                // The chunk itself goes on (the same `Bytes`, no copy) for as long as it is made
                // of whole, unchanged events that begin within it; from the first event that
                // does not (one joined with bytes held from earlier reads, or one that is
                // edited), what goes on is built in `rewritten`.
                let mut passed = 0;
                let mut rewritten: Option<Vec<u8>> = None;
                events.feed(&chunk, |event, within_chunk| {
                    let edit = found.read(event, true);
                    match &mut rewritten {
                        None if within_chunk && matches!(edit, Edit::Keep) => {
                            passed += event.len();
                        }
                        None => {
                            // At most what was held and this chunk: one allocation.
                            let mut out = Vec::with_capacity(event.len() + chunk.len());
                            out.extend_from_slice(&chunk[..passed]);
                            edit.apply(event, &mut out);
                            rewritten = Some(out);
                        }
                        Some(out) => edit.apply(event, out),
                    }
                });
                match rewritten {
                    Some(out) if out.is_empty() => None,
                    Some(out) => Some(Bytes::from(out)),
                    None if passed == chunk.len() => Some(chunk),
                    None if passed == 0 => None,
                    // Whole events, then the start of one held back: the events, still no copy.
                    None => Some(chunk.slice(..passed)),
                }
            }
        }
    }

    /// At the upstream body's end: what is still held goes on, as a whole event (one that ended
    /// with a CR) or as the unterminated rest of one, unchanged.
    pub fn rest(&mut self) -> Option<Bytes> {
        let Watch::Sse {
            events,
            undo_include_usage,
            found,
        } = &mut self.0
        else {
            return None;
        };
        let (held, whole) = events.finish();
        let mut out = Vec::new();
        if whole {
            found
                .read(&held, *undo_include_usage)
                .apply(&held, &mut out);
        } else {
            out = held;
        }
        // An observed stream has sent every byte already.
        (*undo_include_usage && !out.is_empty()).then(|| Bytes::from(out))
    }

    /// Whether this is an SSE body (which can end with an error event of its own).
    pub fn is_sse(&self) -> bool {
        matches!(self.0, Watch::Sse { .. })
    }

    /// Whether the client has been sent part of an event: an observed stream whose current event
    /// is incomplete. (A stream being restored only ever sends whole events.)
    pub fn sent_partial_event(&self) -> bool {
        matches!(
            &self.0,
            Watch::Sse {
                events,
                undo_include_usage: false,
                ..
            } if events.partial()
        )
    }

    /// Whether the upstream reported an error inside the stream.
    pub fn saw_error_event(&self) -> bool {
        matches!(&self.0, Watch::Sse { found, .. } if found.error_event)
    }

    /// The usage the body reported, read at its end.
    pub fn usage(&self) -> Option<Usage> {
        match &self.0 {
            // Most answers arrive in one chunk: read in place, with no copy.
            Watch::Json { tail, .. } => match (tail.front(), tail.len()) {
                (Some(only), 1) => last_usage(only),
                _ => {
                    let mut text = Vec::with_capacity(tail.iter().map(Bytes::len).sum());
                    for chunk in tail {
                        text.extend_from_slice(chunk);
                    }
                    last_usage(&text)
                }
            },
            Watch::Sse { found, .. } => found.usage,
            Watch::Opaque => None,
        }
    }
}

/// The last `"usage": {…}` object in `text` that reads as usage.
fn last_usage(text: &[u8]) -> Option<Usage> {
    objects_named_from_last(text, b"usage").find_map(Usage::parse)
}

#[cfg(test)]
mod tests;
