//! Reading one whole SSE event for `usage.rs`: the usage it reports, whether it is an in-band
//! error, and the edit that undoes the proxy's own `include_usage` in it. Never sees partial
//! events (`scan::Events` assembles them).

use std::ops::Range;

use memchr::memmem;

use super::scan::{Needle, data_json, top_level_member};
use super::{Usage, last_usage};

/// What one whole SSE event says: its usage, whether it is an in-band error, and (for a stream
/// whose `include_usage` the proxy added) what the client gets of it.
pub(super) struct Seen {
    pub usage: Option<Usage>,
    pub error_event: bool,
    pub edit: Edit,
}

pub(super) enum Edit {
    Keep,
    /// `"usage":null`, removed as if the flag had not been sent (the range of the event's bytes).
    Cut(Range<usize>),
    /// The extra usage-only chunk, which the client did not ask for.
    Drop,
}

impl Edit {
    pub(super) fn apply(&self, event: &[u8], out: &mut Vec<u8>) {
        match self {
            Self::Keep => out.extend_from_slice(event),
            Self::Cut(cut) => {
                out.extend_from_slice(&event[..cut.start]);
                out.extend_from_slice(&event[cut.end..]);
            }
            Self::Drop => {}
        }
    }
}

static USAGE: Needle = Needle::new(|| memmem::Finder::new(b"\"usage\""));
static ERROR: Needle = Needle::new(|| memmem::Finder::new(b"error"));

pub(super) fn inspect(event: &[u8], undo: bool) -> Seen {
    let error_event = is_error_event(event);
    if !undo {
        // Usage at any depth: the Responses API nests it in `response`.
        let usage = USAGE.find(event).and_then(|_| last_usage(event));
        return Seen {
            usage,
            error_event,
            edit: Edit::Keep,
        };
    }
    let (usage, edit) = undo_include_usage(event);
    Seen {
        usage,
        error_event,
        edit,
    }
}

/// An in-band error: chat's `data: {"error": {…}}`, or the Responses API's `error` and
/// `response.failed` events.
fn is_error_event(event: &[u8]) -> bool {
    // `response.failed` carries its `error` object inside `response`, so one search does.
    if ERROR.find(event).is_none() {
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

/// One event of a stream whose `include_usage` the proxy added: the usage it reported, and what
/// the client gets of it.
fn undo_include_usage(event: &[u8]) -> (Option<Usage>, Edit) {
    let Some(json) = data_json(event) else {
        return (None, Edit::Keep);
    };
    let body = &event[json.clone()];
    let Some(usage) = top_level_member(body, b"usage") else {
        return (None, Edit::Keep);
    };
    let value = &body[usage.value];
    if value == b"null" {
        let cut = json.start + usage.member.start..json.start + usage.member.end;
        return (None, Edit::Cut(cut));
    }
    let found = Usage::parse(value);
    let usage_only = found.is_some()
        && top_level_member(body, b"choices").is_some_and(|choices| &body[choices.value] == b"[]");
    (found, if usage_only { Edit::Drop } else { Edit::Keep })
}
