//! `multipart/form-data` request bodies (audio, image edits, files, upload parts…), which pass
//! upstream byte for byte. The proxy only walks the parts once: to find the one `model` field its
//! key policy needs, and to refuse every body that some server could read differently from this
//! walk (a preamble, a boundary with escapes, bare LFs or folded lines in part headers, a
//! `model` part that is a file, no closing delimiter): the official SDKs never send any of those,
//! and each one is a way to show the proxy one model and the upstream another. Nothing here
//! copies a part or keeps a byte of a file.

use memchr::memmem;

/// Why a multipart body was refused; each a fixed sentence (no input is ever echoed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the Content-Type has no valid boundary parameter")]
    NoBoundary,
    #[error("the body does not begin with the boundary")]
    NoFirstBoundary,
    #[error("a part's headers hold a bare CR or LF, a folded line or a malformed header")]
    BadPartHeader,
    #[error("the \"model\" field is a file, not a text field")]
    ModelIsAFile,
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

/// The one boundary parameter of a `multipart/form-data` content type (quoted or not): 1 to 70
/// of the characters RFC 2046 allows, so no quoting or escaping can make it mean two things.
pub fn boundary(content_type: &str) -> Result<&str, Malformed> {
    let (_, params) = content_type.split_once(';').ok_or(Malformed::NoBoundary)?;
    let mut boundaries = params_of(params).filter(|(name, _)| {
        name.eq_ignore_ascii_case("boundary") || name.eq_ignore_ascii_case("boundary*")
    });
    let (name, boundary) = boundaries.next().ok_or(Malformed::NoBoundary)?;
    let valid = boundaries.next().is_none()
        && name.len() == "boundary".len()
        && (1..=70).contains(&boundary.len())
        && !boundary.ends_with(' ')
        && boundary
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b));
    valid.then_some(boundary).ok_or(Malformed::NoBoundary)
}

/// Walks every part of `body`; returns the text of its `model` field, if it has one.
pub fn model_field(body: &[u8], boundary: &str) -> Result<Option<String>, Malformed> {
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(next_delimiter.as_bytes());
    // No preamble: servers disagree on where one ends (Go's reader also takes bare-LF lines).
    if !body.starts_with(delimiter.as_bytes()) {
        return Err(Malformed::NoFirstBoundary);
    }
    let mut at = delimiter.len();
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
        let headers = PartHeaders::read(&part[..headers_len])?;
        let name = headers.name.ok_or(Malformed::UnnamedPart)?;
        let content_start = part_start + headers_len + 2;
        let content_len = finder
            .find(&body[content_start..])
            .ok_or(Malformed::Unterminated)?;
        if name == "model" {
            if model.is_some() {
                return Err(Malformed::DuplicateModel);
            }
            // Servers take a part with a filename or its own type as a file, and the model as
            // missing: the API's default would then apply unchecked.
            if headers.file_like {
                return Err(Malformed::ModelIsAFile);
            }
            let content = &body[content_start..content_start + content_len];
            let text = std::str::from_utf8(content).map_err(|_| Malformed::ModelNotText)?;
            model = Some(text.to_owned());
        }
        at = content_start + content_len + next_delimiter.len();
    }
}

/// What the proxy reads from one part's header block.
struct PartHeaders {
    /// The `name` of its one `Content-Disposition: form-data` header.
    name: Option<String>,
    /// A `filename`, a `Content-Type` or a `Content-Transfer-Encoding`: a file, to a server.
    file_like: bool,
}

impl PartHeaders {
    /// Every line must end in CRLF, with no bare CR or LF, no folded continuation, and a field
    /// name of token characters right before its colon: anything else some server reads as a
    /// different header.
    fn read(block: &[u8]) -> Result<Self, Malformed> {
        let text = std::str::from_utf8(block).map_err(|_| Malformed::BadPartHeader)?;
        // A non-empty block ends with the CRLF of its last line.
        let lines = match text {
            "" => "".split_terminator("\r\n"),
            _ => text
                .strip_suffix("\r\n")
                .ok_or(Malformed::BadPartHeader)?
                .split_terminator("\r\n"),
        };
        let mut dispositions = Vec::new();
        let mut file_like = false;
        for line in lines {
            let (field, value) = line.split_once(':').ok_or(Malformed::BadPartHeader)?;
            let plain = !field.is_empty()
                && field
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !value.contains(['\r', '\n']);
            if !plain {
                return Err(Malformed::BadPartHeader);
            }
            if field.eq_ignore_ascii_case("content-disposition") {
                dispositions.push(value);
            } else if field.eq_ignore_ascii_case("content-type")
                || field.eq_ignore_ascii_case("content-transfer-encoding")
            {
                file_like = true;
            }
        }
        let name = match dispositions.as_slice() {
            [disposition] => {
                let (name, filename) = disposition_name(disposition);
                file_like |= filename;
                name
            }
            _ => None,
        };
        Ok(Self { name, file_like })
    }
}

/// The `name` of a `form-data` disposition, and whether it has a `filename`.
fn disposition_name(disposition: &str) -> (Option<String>, bool) {
    let Some((kind, params)) = disposition.split_once(';') else {
        return (None, false);
    };
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return (None, false);
    }
    let filename = params_of(params).any(|(name, _)| {
        name.eq_ignore_ascii_case("filename") || name.eq_ignore_ascii_case("filename*")
    });
    let mut names = params_of(params).filter(|(name, _)| {
        // `name*` (RFC 2231) could spell a name differently from `name`: not accepted.
        name.eq_ignore_ascii_case("name") || name.eq_ignore_ascii_case("name*")
    });
    let Some((param, name)) = names.next() else {
        return (None, filename);
    };
    // A backslash in a quoted name is an escape some servers undo (`mo\del` → `model`).
    let plain = param.len() == 4 && !name.contains('\\');
    let name = (names.next().is_none() && plain).then(|| name.to_owned());
    (name, filename)
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
