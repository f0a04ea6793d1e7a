//! Byte-level reading for `usage.rs`: SSE event framing, and just enough of JSON (strings,
//! nesting, top-level members) to find and cut members without parsing whole chunks.

use std::ops::Range;

use memchr::memmem;

/// Appends `chunk` to the event being assembled in `event` and calls `complete` with each event
/// that is now whole (its bytes including the blank line that ends it).
pub(super) fn for_each_event(event: &mut Vec<u8>, chunk: &[u8], mut complete: impl FnMut(&[u8])) {
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

/// The byte range of the JSON object on an event's only `data:` line.
pub(super) fn data_json(event: &[u8]) -> Option<Range<usize>> {
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

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memmem::find(haystack, needle)
}
