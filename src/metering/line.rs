//! The request's one line, written by hand into one buffer and written with one call.
//!
//! tracing-subscriber's formatter visits each field through `fmt::Debug`, which cost about 23,000
//! instructions per request under callgrind, a sixth of all the proxy did for a chat request; this
//! writer does the same line in a few thousand. The JSON line (`LOG_FORMAT=json`, Lambda's JSON
//! log format) has the same members in the same order; the `name=value` text line the same fields,
//! quoted as tracing quoted them (the request id, tenant, method and route bare, unless a value
//! could be taken for more fields or lines), and no colours.
//! `RUST_LOG` still decides whether it is written (target `openai_proxy::request`, level INFO).

use std::fmt::Write as _;
use std::time::SystemTime;

use time::OffsetDateTime;

/// How log lines look, from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// One JSON object per line (`timestamp`, `level`, `message`, the fields, `target`).
    Json,
    /// `name=value` text, with the time first unless Lambda stamps each line itself.
    Text { time: bool },
}

/// The target and message the line carries, as tracing's were.
pub const TARGET: &str = "openai_proxy::request";
const MESSAGE: &str = "request";

/// A line being written.
pub struct Line {
    out: String,
    json: bool,
}

impl Line {
    /// A line's start: its time, level and message. `prefix` (JSON only) goes first: the EMF
    /// record's `_aws` member, when the line is also the request's metrics.
    pub fn start(format: LineFormat, prefix: &str) -> Self {
        let mut out = String::with_capacity(640);
        match format {
            LineFormat::Json => {
                out.push('{');
                out.push_str(prefix);
                out.push_str("\"timestamp\":\"");
                push_time(&mut out, SystemTime::now());
                out.push_str("\",\"level\":\"INFO\",\"message\":\"");
                out.push_str(MESSAGE);
                out.push('"');
            }
            LineFormat::Text { time } => {
                if time {
                    push_time(&mut out, SystemTime::now());
                    out.push(' ');
                }
                out.push_str(" INFO ");
                out.push_str(TARGET);
                out.push_str(": ");
                out.push_str(MESSAGE);
            }
        }
        Self {
            out,
            json: format == LineFormat::Json,
        }
    }

    fn name(&mut self, name: &str) {
        if self.json {
            self.out.push_str(",\"");
            self.out.push_str(name);
            self.out.push_str("\":");
        } else {
            self.out.push(' ');
            self.out.push_str(name);
            self.out.push('=');
        }
    }

    /// A string field. Text lines quote (and escape) a value that could be mistaken for more
    /// fields or lines; JSON always does.
    pub fn str(&mut self, name: &str, value: &str) {
        let bare = !self.json
            && !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\');
        self.name(name);
        if bare {
            self.out.push_str(value);
        } else {
            push_json_string(&mut self.out, value);
        }
    }

    /// A string field quoted in text lines too, as tracing wrote its string values
    /// (`outcome="complete"`, `upstream="default"`): what people grep for stays the same.
    pub fn quoted(&mut self, name: &str, value: &str) {
        self.name(name);
        push_json_string(&mut self.out, value);
    }

    pub fn opt_quoted(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.quoted(name, value);
        }
    }

    pub fn u64(&mut self, name: &str, value: u64) {
        self.name(name);
        push_u64(&mut self.out, value);
    }

    pub fn opt_u64(&mut self, name: &str, value: Option<u64>) {
        if let Some(value) = value {
            self.u64(name, value);
        }
    }

    pub fn bool(&mut self, name: &str, value: bool) {
        self.name(name);
        self.out.push_str(if value { "true" } else { "false" });
    }

    /// Milliseconds with three decimals (microseconds), as the line always had them.
    pub fn millis(&mut self, name: &str, micros: u64) {
        self.name(name);
        push_millis(&mut self.out, micros);
    }

    /// Raw JSON members, already written (`"Name":value,…`, no leading comma). JSON lines only.
    pub fn members(&mut self, members: &str) {
        if self.json && !members.is_empty() {
            self.out.push(',');
            self.out.push_str(members);
        }
    }

    /// The finished line, with its newline.
    pub fn finish(mut self) -> String {
        if self.json {
            self.out.push_str(",\"target\":\"");
            self.out.push_str(TARGET);
            self.out.push_str("\"}\n");
        } else {
            self.out.push('\n');
        }
        self.out
    }
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber wrote it: `2026-11-24T18:53:53.378084Z`.
fn push_time(out: &mut String, now: SystemTime) {
    let at = OffsetDateTime::from(now);
    let year = u32::try_from(at.year()).unwrap_or(0);
    push_digits(out, year, 4);
    out.push('-');
    push_digits(out, u32::from(u8::from(at.month())), 2);
    out.push('-');
    push_digits(out, u32::from(at.day()), 2);
    out.push('T');
    push_digits(out, u32::from(at.hour()), 2);
    out.push(':');
    push_digits(out, u32::from(at.minute()), 2);
    out.push(':');
    push_digits(out, u32::from(at.second()), 2);
    out.push('.');
    push_digits(out, at.microsecond(), 6);
    out.push('Z');
}

/// `value`'s last `width` decimal digits, zero-padded.
fn push_digits(out: &mut String, value: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = value / 10u32.pow(place) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

pub fn push_u64(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for &digit in &digits[at..] {
        out.push(char::from(digit));
    }
}

/// `micros` as milliseconds: `2.178`, `2.17`, `43` (a JSON number, and readable text).
pub fn push_millis(out: &mut String, micros: u64) {
    push_u64(out, micros / 1_000);
    let mut fraction = micros % 1_000;
    if fraction != 0 {
        out.push('.');
        let mut divisor = 100;
        while fraction != 0 {
            out.push(char::from(b'0' + (fraction / divisor) as u8));
            fraction %= divisor;
            divisor /= 10;
        }
    }
}

/// `value` as a JSON string: quotes, backslashes and control characters escaped.
pub fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    let mut clean = 0;
    for (at, byte) in value.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(&value[clean..at]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escaped);
        }
        clean = at + 1;
    }
    out.push_str(&value[clean..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_valid_json_whatever_they_hold() {
        for value in [
            "plain",
            "",
            "quote \" back \\ nl \n tab \t",
            "\u{1}\u{7f}é😀",
        ] {
            let mut out = String::new();
            push_json_string(&mut out, value);
            let parsed: String = serde_json::from_str(&out).unwrap();
            assert_eq!(parsed, value);
        }
    }

    #[test]
    fn numbers_and_millis_read_back() {
        for value in [0, 7, 10, 999, 1_000, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, value);
            assert_eq!(out, value.to_string());
        }
        for (micros, shown) in [
            (0, "0"),
            (1, "0.001"),
            (10, "0.01"),
            (100, "0.1"),
            (2_178, "2.178"),
            (2_170, "2.17"),
            (43_000, "43"),
        ] {
            let mut line = Line::start(LineFormat::Json, "");
            line.millis("ms", micros);
            let parsed: serde_json::Value = serde_json::from_str(&line.finish()).unwrap();
            assert_eq!(parsed["ms"].to_string(), shown, "{micros}");
        }
    }

    #[test]
    fn text_values_that_could_fake_fields_are_quoted() {
        let mut line = Line::start(LineFormat::Text { time: false }, "");
        line.str("tenant", "team-a");
        line.str("model", "x status=200\nINFO forged");
        line.str("empty", "");
        line.quoted("outcome", "complete");
        let text = line.finish();
        assert_eq!(
            text,
            " INFO openai_proxy::request: request tenant=team-a model=\"x status=200\\nINFO forged\" empty=\"\" outcome=\"complete\"\n"
        );
    }

    #[test]
    fn the_time_is_rfc3339_utc_with_microseconds() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_795_546_433_378_084);
        let mut out = String::new();
        push_time(&mut out, at);
        assert_eq!(out, "2026-11-24T18:53:53.378084Z");
    }
}
