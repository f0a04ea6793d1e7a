//! Per-key and per-tenant limits end to end: the built proxy, its counters in moto's DynamoDB
//! (serialised as DynamoDB applies updates to one item) or in its own memory, and a fake upstream
//! that counts what reaches it. Exactness is counted at the fake and in the table, never timed;
//! windows are real UTC minutes, so tests that count in one start early enough in it.
//!
//! `requests`: requests per minute across processes, tenants, rotation, what refusals say;
//! `tokens`: reservations, settling to usage, budgets; `store`: the table's writes, and what
//! happens without it.

mod requests;
mod store;
mod tokens;

use serde_json::Value;

use crate::support::TempFile;
use crate::support::limits::Answer;
use crate::support::openai::CHAT_USAGE;

const TABLE: &str = "openai-proxy-limits";
/// What every complete chat request settles to: the fake's `total_tokens`.
const USED: i64 = CHAT_USAGE.2 as i64;

fn key_file(document: &Value) -> TempFile {
    TempFile::with_contents("keys.json", &document.to_string())
}

/// `name`'s value, which must be there.
fn header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer
        .header(name)
        .unwrap_or_else(|| panic!("no {name}: {answer:?}"))
}

/// A per-minute refusal: 429 `rate_limit_exceeded` of `kind`, `retry-after` within the minute,
/// a message naming `whose` limit.
fn assert_rate_limited(answer: &Answer, kind: &str, whose: &str) {
    assert_eq!(answer.status, 429, "{answer:?}");
    let (code, error_type, message) = answer.error();
    assert_eq!(code, "rate_limit_exceeded", "{answer:?}");
    assert_eq!(error_type, kind, "{answer:?}");
    assert!(
        message.contains(&format!("{kind} per minute of {whose}")),
        "{message}"
    );
    let retry_after: u64 = header(answer, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{answer:?}");
    assert!(answer.header("x-should-retry").is_none(), "{answer:?}");
}

/// The minute item name of `counter` (`key#svc`, `tenant#team-a`) in the minute starting `start`.
fn minute_item(counter: &str, start: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(start as i64).unwrap();
    let (date, (hour, minute, _)) = (at.date(), at.time().as_hms());
    format!(
        "{counter}#minute#{:04}-{:02}-{:02}T{hour:02}:{minute:02}Z",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}
