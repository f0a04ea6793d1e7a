use proptest::prelude::*;

use super::*;

/// A body as the SDKs write one: each part's headers, an empty line, its bytes.
fn body(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, filename, content) in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match filename {
            Some(file) => format!("form-data; name=\"{name}\"; filename=\"{file}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        out.extend_from_slice(format!("Content-Disposition: {disposition}\r\n").as_bytes());
        if filename.is_some() {
            out.extend_from_slice(b"Content-Type: application/octet-stream\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

#[test]
fn boundaries_are_read_quoted_or_not() {
    assert_eq!(boundary("multipart/form-data; boundary=abc"), Ok("abc"));
    assert_eq!(
        boundary("multipart/form-data;boundary=\"a b+c\""),
        Ok("a b+c")
    );
    assert_eq!(
        boundary("multipart/form-data; charset=utf-8; BOUNDARY=x1"),
        Ok("x1")
    );
    for bad in [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=\"\"",
        "multipart/form-data; boundary=\"unclosed",
        "multipart/form-data; charset=utf-8",
    ] {
        assert_eq!(boundary(bad), Err(Malformed::NoBoundary), "{bad}");
    }
    let long = format!("multipart/form-data; boundary={}", "x".repeat(71));
    assert_eq!(boundary(&long), Err(Malformed::NoBoundary));
    // Quoting, escapes and a second boundary could each mean another boundary to some server.
    for ambiguous in [
        r#"multipart/form-data; boundary="a\"b""#,
        "multipart/form-data; boundary=x; boundary=y",
        "multipart/form-data; boundary*=utf-8''x",
    ] {
        assert_eq!(
            boundary(ambiguous),
            Err(Malformed::NoBoundary),
            "{ambiguous}"
        );
    }
}

/// Bodies that some server would read with a different `model` than this walk finds.
#[test]
fn bodies_servers_could_read_differently_are_refused() {
    let hidden = "--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o-transcribe\r\n\
                  --B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--B--\r\n";
    // A preamble: Go's reader takes `x\n--B` as the first boundary line, this walk would not.
    let preamble = format!("x\n{hidden}");
    assert_eq!(
        model_field(preamble.as_bytes(), "B"),
        Err(Malformed::NoFirstBoundary)
    );
    let leading_newline = format!("\r\n{hidden}");
    assert_eq!(
        model_field(leading_newline.as_bytes(), "B"),
        Err(Malformed::NoFirstBoundary)
    );
    // A bare LF inside a part's headers: Go splits header lines on it.
    let bare_lf = "--B\r\nX-Pad: a\nContent-Disposition: form-data; name=\"model\"\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\ngpt-4o\r\n--B--\r\n";
    assert_eq!(
        model_field(bare_lf.as_bytes(), "B"),
        Err(Malformed::BadPartHeader)
    );
    // A folded continuation line, and whitespace before a colon.
    for header in [
        "Content-Disposition: form-data;\r\n name=\"model\"",
        "Content-Disposition : form-data; name=\"model\"",
    ] {
        let body = format!("--B\r\n{header}\r\n\r\ngpt-4o\r\n--B--\r\n");
        assert_eq!(
            model_field(body.as_bytes(), "B"),
            Err(Malformed::BadPartHeader),
            "{header}"
        );
    }
    // A model part that servers take as a file.
    for extra in ["; filename=\"m\"", "\r\nContent-Type: text/plain"] {
        let body = format!(
            "--B\r\nContent-Disposition: form-data; name=\"model\"{extra}\r\n\r\ndall-e-2\r\n--B--\r\n"
        );
        assert_eq!(
            model_field(body.as_bytes(), "B"),
            Err(Malformed::ModelIsAFile),
            "{extra}"
        );
    }
}

#[test]
fn the_model_field_is_found_among_files() {
    let all_bytes: Vec<u8> = (0..=255).collect();
    let sent = body(
        "b0und",
        &[
            ("file", Some("audio.mp3"), &all_bytes),
            ("model", None, b"whisper-1"),
            ("language", None, b"en"),
        ],
    );
    assert_eq!(
        model_field(&sent, "b0und"),
        Ok(Some("whisper-1".to_owned()))
    );
    let without = body("b0und", &[("file", Some("x.bin"), b"--b0und--")]);
    assert_eq!(model_field(&without, "b0und"), Ok(None));
}

#[test]
fn broken_bodies_are_named() {
    let good = body("b", &[("model", None, b"m")]);
    assert_eq!(
        model_field(&good[..good.len() - 7], "b"),
        Err(Malformed::Unterminated)
    );
    assert_eq!(
        model_field(b"no boundary here", "b"),
        Err(Malformed::NoFirstBoundary)
    );
    assert_eq!(
        model_field(b"--bX\r\n\r\nx\r\n--b--", "b"),
        Err(Malformed::BadBoundaryLine)
    );
    assert_eq!(
        model_field(b"--b\r\nContent-Disposition: form-data; name=\"a\"", "b"),
        Err(Malformed::UnterminatedHeaders)
    );
    assert_eq!(
        model_field(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", "b"),
        Err(Malformed::UnnamedPart)
    );
    let twice = body("b", &[("model", None, b"a"), ("model", None, b"b")]);
    assert_eq!(model_field(&twice, "b"), Err(Malformed::DuplicateModel));
    let binary = body("b", &[("model", None, &[0xff, 0xfe])]);
    assert_eq!(model_field(&binary, "b"), Err(Malformed::ModelNotText));
}

#[test]
fn a_name_cannot_hide_in_a_filename_or_an_escape() {
    // The quoted filename holds `; name="model"`: the part is still named "file".
    let sneaky = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x; name=\\\"model\\\"\"\r\n\r\ngpt-4o\r\n--b--\r\n";
    assert_eq!(model_field(sneaky, "b"), Ok(None));
    // Names some servers would unescape or decode to "model" are refused outright.
    for disposition in [
        "form-data; name=\"mo\\del\"",
        "form-data; name*=utf-8''model",
        "form-data; name=\"model\"; name=\"x\"",
    ] {
        let part = format!("--b\r\nContent-Disposition: {disposition}\r\n\r\ngpt-4o\r\n--b--\r\n");
        assert_eq!(
            model_field(part.as_bytes(), "b"),
            Err(Malformed::UnnamedPart),
            "{disposition}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the files hold (the boundary's own text, CRLFs, any byte), the one model field is
    /// found, and a body cut anywhere before its closing boundary is refused.
    #[test]
    fn model_fields_are_found_and_cut_bodies_refused(
        boundary in "[A-Za-z0-9'()+_,-./:=?]{1,70}",
        files in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..4),
        model in "[a-z0-9:.-]{1,40}",
        at in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let delimiter = format!("\r\n--{boundary}");
        // A file holding the delimiter itself would end its part early, as for every parser.
        prop_assume!(files.iter().all(|file| {
            memmem::find(&[b"\r\n", file.as_slice(), b"\r\n"].concat(), delimiter.as_bytes())
                .is_none()
        }));
        let mut parts: Vec<(&str, Option<&str>, &[u8])> =
            files.iter().map(|file| ("file", Some("f.bin"), file.as_slice())).collect();
        parts.insert(at.index(parts.len() + 1), ("model", None, model.as_bytes()));
        let sent = body(&boundary, &parts);
        prop_assert_eq!(model_field(&sent, &boundary), Ok(Some(model.clone())));
        let closing = sent.len() - boundary.len() - 6;
        let cut_at = cut.index(closing);
        prop_assert!(model_field(&sent[..cut_at], &boundary).is_err());
    }
}
