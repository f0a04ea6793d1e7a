//! `multipart/form-data` request bodies (audio, image edits, files, upload parts…), which pass
//! upstream byte for byte. The proxy only walks the parts once: to refuse a body the upstream
//! would read differently (broken framing, no closing delimiter), and to find the one `model`
//! field its key policy needs. Nothing here copies a part or keeps a byte of a file.

use memchr::memmem;

/// Why a multipart body was refused; each a fixed sentence (no input is ever echoed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the Content-Type has no valid boundary parameter")]
    NoBoundary,
    #[error("the body does not begin with the boundary")]
    NoFirstBoundary,
    #[error("a boundary line is not followed by a line end")]
    BadBoundaryLine,
    #[error("a part's headers do not end with an empty line")]
    UnterminatedHeaders,
    #[error("a part has no Content-Disposition: form-data header with a name")]
    UnnamedPart,
    #[error("the body ends before its closing boundary")]
    Unterminated,
    #[error("more than one \"model\" field")]
    DuplicateModel,
    #[error("the \"model\" field is not UTF-8 text")]
    ModelNotText,
}

/// The boundary parameter of a `multipart/form-data` content type (quoted or not), 1 to 70
/// characters as RFC 2046 allows.
pub fn boundary(content_type: &str) -> Result<&str, Malformed> {
    let (_, params) = content_type.split_once(';').ok_or(Malformed::NoBoundary)?;
    let boundary = params_of(params)
        .find(|(name, _)| name.eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value)
        .ok_or(Malformed::NoBoundary)?;
    let valid = (1..=70).contains(&boundary.len())
        && !boundary.ends_with(' ')
        && boundary.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    valid.then_some(boundary).ok_or(Malformed::NoBoundary)
}

/// Walks every part of `body`; returns the text of its `model` field, if it has one.
pub fn model_field(body: &[u8], boundary: &str) -> Result<Option<String>, Malformed> {
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(next_delimiter.as_bytes());
    // A preamble before the first boundary is allowed (and ignored, as by every server).
    let mut at = if body.starts_with(delimiter.as_bytes()) {
        delimiter.len()
    } else {
        finder.find(body).ok_or(Malformed::NoFirstBoundary)? + next_delimiter.len()
    };
    let mut model = None;
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            // The closing delimiter; whatever follows is the epilogue.
            return Ok(model);
        }
        // Transport padding, then the line end.
        let padding = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        if !rest[padding..].starts_with(b"\r\n") {
            return Err(Malformed::BadBoundaryLine);
        }
        let part_start = at + padding + 2;
        let part = &body[part_start..];
        let headers_len = if part.starts_with(b"\r\n") {
            0
        } else {
            memmem::find(part, b"\r\n\r\n").ok_or(Malformed::UnterminatedHeaders)? + 2
        };
        let name = part_name(&part[..headers_len]).ok_or(Malformed::UnnamedPart)?;
        let content_start = part_start + headers_len + 2;
        let content_len = finder
            .find(&body[content_start..])
            .ok_or(Malformed::Unterminated)?;
        if name == "model" {
            if model.is_some() {
                return Err(Malformed::DuplicateModel);
            }
            let content = &body[content_start..content_start + content_len];
            let text = std::str::from_utf8(content).map_err(|_| Malformed::ModelNotText)?;
            model = Some(text.to_owned());
        }
        at = content_start + content_len + next_delimiter.len();
    }
}

/// The `name` of a part's `Content-Disposition: form-data` header (its only one).
fn part_name(headers: &[u8]) -> Option<String> {
    let headers = std::str::from_utf8(headers).ok()?;
    let mut dispositions = headers.split("\r\n").filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value)
    });
    let disposition = dispositions.next()?;
    if dispositions.next().is_some() {
        return None;
    }
    let (kind, params) = disposition.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    let mut names = params_of(params).filter(|(name, _)| {
        // `name*` (RFC 2231) could spell a name differently from `name`: not accepted.
        name.eq_ignore_ascii_case("name") || name.eq_ignore_ascii_case("name*")
    });
    let (param, name) = names.next()?;
    // A backslash in a quoted name is an escape some servers undo (`mo\del` → `model`).
    let plain = param.len() == 4 && !name.contains('\\');
    (names.next().is_none() && plain).then(|| name.to_owned())
}

/// `; a=1; b="x; y"` → `(a, 1)`, `(b, x; y)`: semicolons inside quotes do not split, so a quoted
/// filename cannot smuggle in a second `name`.
fn params_of(params: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = params;
    std::iter::from_fn(move || {
        loop {
            rest = rest.trim_start_matches([';', ' ', '\t']);
            if rest.is_empty() {
                return None;
            }
            let (name, after) = rest.split_once('=')?;
            let after = after.trim_start();
            let (value, remainder) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let end = closing_quote(quoted)?;
                    (&quoted[..end], &quoted[end + 1..])
                }
                None => after.split_at(after.find(';').unwrap_or(after.len())),
            };
            rest = remainder;
            let name = name.trim();
            if !name.is_empty() {
                return Some((name, value.trim_end()));
            }
        }
    })
}

/// The index of the quote that closes a quoted string, skipping backslash escapes.
fn closing_quote(quoted: &str) -> Option<usize> {
    let mut escaped = false;
    for (index, c) in quoted.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(index),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests;
