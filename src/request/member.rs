//! Finds one top-level member of a JSON object by byte position, so a single value can be
//! replaced while every other byte of the body stays as the client sent it (a key's `model_map`).
//! The body has already been parsed once by serde, so it is known to be one valid JSON object;
//! this only walks it, without recursion and without building a tree, with the same JSON
//! walking the usage scanner uses.

use std::borrow::Cow;
use std::ops::Range;

use crate::usage::scan::{skip_ws, string_end, value_end};

/// The byte range of the value of the top-level member `name`.
pub fn top_level_value(body: &[u8], name: &str) -> Option<Range<usize>> {
    let mut at = skip_ws(body, 0);
    if body.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    loop {
        at = skip_ws(body, at);
        match body.get(at)? {
            b',' => {
                at += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_end = string_end(body, at)?;
        let key = decoded(&body[at..key_end])?;
        at = skip_ws(body, key_end);
        if body.get(at) != Some(&b':') {
            return None;
        }
        at = skip_ws(body, at + 1);
        let value_end = value_end(body, at)?;
        if key == name {
            return Some(at..value_end);
        }
        at = value_end;
    }
}

/// A member name as serde reads it: escapes (`"mod\u0065l"`) are decoded.
fn decoded(quoted: &[u8]) -> Option<Cow<'_, str>> {
    let inner = &quoted[1..quoted.len() - 1];
    if inner.contains(&b'\\') {
        serde_json::from_slice::<String>(quoted)
            .ok()
            .map(Cow::Owned)
    } else {
        std::str::from_utf8(inner).ok().map(Cow::Borrowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_of(body: &str) -> Option<&str> {
        top_level_value(body.as_bytes(), "model").map(|range| &body[range])
    }

    #[test]
    fn finds_the_top_level_member_only() {
        assert_eq!(model_of(r#"{"model":"gpt-4o"}"#), Some(r#""gpt-4o""#));
        assert_eq!(
            model_of(
                r#" { "messages" : [{"model":"inner","x":"}\"]"}], "model" : "m\"x" , "n":1}"#
            ),
            Some(r#""m\"x""#)
        );
        assert_eq!(
            model_of(r#"{"meta":{"model":"inner"},"n":[1,{"a":[]}],"model":null}"#),
            Some("null")
        );
        assert_eq!(
            model_of(r#"{"mod\u0065l":"escaped"}"#),
            Some(r#""escaped""#)
        );
        assert_eq!(model_of(r#"{"models":["a"],"x":true}"#), None);
        assert_eq!(model_of(r#"{}"#), None);
        assert_eq!(
            model_of(r#"{"n":-1.5e3,"model":"last"}"#),
            Some(r#""last""#)
        );
    }
}
