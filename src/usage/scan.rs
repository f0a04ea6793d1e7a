//! Byte-level reading for `usage.rs`: SSE event framing, and just enough of JSON (strings,
//! nesting, top-level members) to find and cut members without parsing whole chunks.

use std::ops::Range;

use std::sync::LazyLock;

use memchr::memmem;

/// Cuts an SSE body into whole events, whatever reads it arrives in.
#[derive(Default)]
pub(super) struct Events {
    /// The start of an event not yet complete.
    held: Vec<u8>,
}

impl Events {
    /// Adds `chunk` and calls `complete` with each event that is now whole (its bytes including
    /// the blank line that ends it), in order, and whether its bytes are all from `chunk` (else
    /// they begin with bytes held from earlier chunks).
    pub(super) fn feed(&mut self, chunk: &[u8], mut complete: impl FnMut(&[u8], bool)) {
        let mut rest = chunk;
        while let Some(end) = event_end(&self.held, rest) {
            let (head, tail) = rest.split_at(end);
            if self.held.is_empty() {
                complete(head, true);
            } else {
                self.held.extend_from_slice(head);
                complete(&self.held, false);
                self.held.clear();
            }
            rest = tail;
        }
        self.held.extend_from_slice(rest);
    }

    /// Whether part of an event is held.
    pub(super) fn partial(&self) -> bool {
        !self.held.is_empty()
    }

    /// At the body's end: the bytes still held, and whether they are a whole event (one whose
    /// blank line ended in a CR that nothing followed, see `blank_line_end`).
    pub(super) fn finish(&mut self) -> (Vec<u8>, bool) {
        let held = std::mem::take(&mut self.held);
        let whole = blank_line_end(&held, true).is_some();
        (held, whole)
    }
}

/// Where in `next` the event begun in `held` ends (just after its blank line), if it does: 0
/// when the held bytes were a whole event waiting only to learn that no LF followed their CR.
fn event_end(held: &[u8], next: &[u8]) -> Option<usize> {
    // The blank line may straddle the two (it is at most four bytes, `\r\n\r\n`), so the last
    // three held bytes are looked at too.
    let carried = &held[held.len().saturating_sub(3)..];
    if carried.is_empty() {
        return blank_line_end(next, false);
    }
    let joined = [carried, next].concat();
    // (Held bytes end no event before their last byte, so this never goes below zero.)
    blank_line_end(&joined, false).and_then(|end| end.checked_sub(carried.len()))
}

/// Just past the first blank line in `bytes`. SSE ends a line with CRLF, LF or CR, and an event
/// with an empty line. A CR as the last byte may be the first half of a CRLF, so unless `bytes`
/// is all there will be (`at_end`), a blank line that ends with it is not known to be complete.
fn blank_line_end(bytes: &[u8], at_end: bool) -> Option<usize> {
    memchr::memchr2_iter(b'\n', b'\r', bytes).find_map(|at| {
        let next_line = line_end_after(bytes, at);
        match bytes.get(next_line)? {
            b'\n' => Some(next_line + 1),
            b'\r' => {
                let end = line_end_after(bytes, next_line);
                (end < bytes.len() || bytes[end - 1] == b'\n' || at_end).then_some(end)
            }
            _ => None,
        }
    })
}

/// Just past the line end that starts at `at` (a CR or an LF).
fn line_end_after(bytes: &[u8], at: usize) -> usize {
    if bytes[at] == b'\r' && bytes.get(at + 1) == Some(&b'\n') {
        at + 2
    } else {
        at + 1
    }
}

/// The byte range of the JSON object on an event's only `data:` line (`None` if it has no data
/// line, more than one, or one that does not hold an object).
pub(super) fn data_json(event: &[u8]) -> Option<Range<usize>> {
    let mut found = None;
    let mut line_start = 0;
    while line_start < event.len() {
        let line_end = memchr::memchr2(b'\n', b'\r', &event[line_start..])
            .map_or(event.len(), |at| line_start + at);
        let line = &event[line_start..line_end];
        // A line `data` alone is a data line too (with an empty value).
        if line.starts_with(b"data:") || line == b"data" {
            if found.is_some() {
                return None;
            }
            found = Some(line_start..line_end);
        }
        line_start = if line_end < event.len() {
            line_end_after(event, line_end)
        } else {
            line_end
        };
    }
    let line = found?;
    let mut from = line.start + b"data:".len();
    if event.get(from) == Some(&b' ') {
        from += 1;
    }
    (from < line.end && event[from] == b'{').then_some(from..line.end)
}

/// A member of a JSON object: the bytes to remove to delete it (with one comma, so what remains
/// is what a serialiser would have written without it), and its value.
pub(super) struct Member {
    pub member: Range<usize>,
    pub value: Range<usize>,
}

/// Finds the member `name` at the top level of the JSON object `json`.
pub(super) fn top_level_member(json: &[u8], name: &[u8]) -> Option<Member> {
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

pub(crate) fn skip_ws(json: &[u8], mut at: usize) -> usize {
    while json.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// Just past the string that starts at `at` (a `"`).
pub(crate) fn string_end(json: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        // memchr skips a string's plain bytes many at a time (chat chunks are mostly text).
        i += memchr::memchr2(b'"', b'\\', json.get(i..)?)?;
        match json[i] {
            b'\\' => i += 2,
            _ => return Some(i + 1),
        }
    }
}

/// Just past the JSON value that starts at `at`.
pub(crate) fn value_end(json: &[u8], at: usize) -> Option<usize> {
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

/// The `{…}` values of every `"name": {…}` member in `text` (at any depth), last first.
pub(super) fn objects_named_from_last<'a>(
    text: &'a [u8],
    name: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut end = text.len();
    std::iter::from_fn(move || {
        while end > 0 {
            let at = memmem::rfind(&text[..end], name)?;
            end = at;
            let quoted = at > 0 && text[at - 1] == b'"' && text.get(at + name.len()) == Some(&b'"');
            if !quoted {
                continue;
            }
            let colon = skip_ws(text, at + name.len() + 1);
            if text.get(colon) != Some(&b':') {
                continue;
            }
            let start = skip_ws(text, colon + 1);
            if text.get(start) == Some(&b'{')
                && let Some(stop) = value_end(text, start)
            {
                return Some(&text[start..stop]);
            }
        }
        None
    })
}

/// A needle searched for in every event, its searcher built once (building one costs more than
/// a search through a chat chunk).
pub(super) struct Needle(LazyLock<memmem::Finder<'static>>);

impl Needle {
    pub(super) const fn new(make: fn() -> memmem::Finder<'static>) -> Self {
        Self(LazyLock::new(make))
    }

    pub(super) fn find(&self, haystack: &[u8]) -> Option<usize> {
        self.0.find(haystack)
    }
}
