//! Realistic chat-completion SSE streams, decoded from arbitrary bytes, as an upstream sends them
//! when the proxy asked for `include_usage` and as the client must receive them, and a usage
//! watch fed such a stream in given reads. Shared by the property tests (proptest hands the
//! decoder random bytes) and the fuzz target (`fuzz/`, which includes this file by path), so both
//! check the same property on the same kind of stream.
//!
//! What varies: LF, CRLF and CR line ends (per event), `data:` with and without its space,
//! compact or spaced JSON, where `"usage":null` stands in the object, comments (alone or inside an
//! event), multi-byte text, text that looks like SSE or like the flag, in-band error events,
//! `[DONE]` or not, and an upstream that adds the flag's `"usage":null`, its usage-only chunk,
//! both or neither (many OpenAI-compatible servers ignore `stream_options`).

use bytes::Bytes;
use openai_proxy::usage::UsageWatch;

/// One stream: what the upstream sends, and what the client must get of it.
pub struct ChatStream {
    pub upstream: Vec<u8>,
    pub client: Vec<u8>,
    /// The total tokens in the usage-only chunk, if the upstream sent one.
    pub total_tokens: Option<u64>,
}

/// Reads choices from bytes; once they run out, every choice is the first option.
struct Choices<'a>(std::slice::Iter<'a, u8>);

impl Choices<'_> {
    fn pick(&mut self, options: u8) -> u8 {
        self.0.next().map_or(0, |byte| byte % options)
    }

    fn flag(&mut self) -> bool {
        self.pick(2) == 1
    }
}

/// Text pieces chosen for how they stress the relay: multi-byte characters (split by reads),
/// JSON escapes, and text that looks like SSE framing or like the flag's additions.
const TEXT: [&str; 14] = [
    "Hello",
    " world",
    "é",
    "日本語",
    "🙂",
    "\"usage\":null",
    "},\"usage\":null}",
    "data: [DONE]\n\n",
    "\r\n\r\n",
    "\\",
    "{\"choices\":[]}",
    ": not a comment",
    "\u{7f}\u{1}",
    "",
];

const LINE_ENDS: [&str; 3] = ["\n", "\r\n", "\r"];

pub fn decode(bytes: &[u8]) -> ChatStream {
    let mut choose = Choices(bytes.iter());
    let adds_null = choose.flag();
    let adds_usage_chunk = choose.flag();
    let spaced = choose.flag();
    let (comma, colon) = if spaced { (", ", ": ") } else { (",", ":") };
    let mut stream = ChatStream {
        upstream: Vec::new(),
        client: Vec::new(),
        total_tokens: None,
    };
    let mut push = |upstream: &str, client: &str| {
        stream.upstream.extend_from_slice(upstream.as_bytes());
        stream.client.extend_from_slice(client.as_bytes());
    };
    let events = choose.pick(12);
    for n in 0..events {
        let eol = LINE_ENDS[usize::from(choose.pick(3))];
        let data = if choose.flag() { "data: " } else { "data:" };
        match choose.pick(8) {
            0 => push(
                &format!(": keep-alive{eol}{eol}"),
                &format!(": keep-alive{eol}{eol}"),
            ),
            1 => {
                let event = format!(
                    "{data}{{\"error\"{colon}{{\"message\"{colon}\"overloaded\"{comma}\"type\"{colon}\"server_error\"}}}}{eol}{eol}"
                );
                push(&event, &event);
            }
            _ => {
                let mut text = String::new();
                for _ in 0..choose.pick(4) {
                    text.push_str(TEXT[usize::from(choose.pick(TEXT.len() as u8))]);
                }
                let members = [
                    format!("\"id\"{colon}\"chatcmpl-{n}\""),
                    format!("\"object\"{colon}\"chat.completion.chunk\""),
                    format!(
                        "\"choices\"{colon}[{{\"index\"{colon}0{comma}\"delta\"{colon}{{\"content\"{colon}{}}}}}]",
                        json_string(&text)
                    ),
                ];
                let client = format!("{{{}}}", members.join(comma));
                let upstream = if adds_null {
                    let mut with_null = members.to_vec();
                    let at = usize::from(choose.pick(4));
                    with_null.insert(at, format!("\"usage\"{colon}null"));
                    format!("{{{}}}", with_null.join(comma))
                } else {
                    client.clone()
                };
                // A comment line inside the event, before its data line.
                let comment = if choose.pick(4) == 0 {
                    format!(": {n}{eol}")
                } else {
                    String::new()
                };
                push(
                    &format!("{comment}{data}{upstream}{eol}{eol}"),
                    &format!("{comment}{data}{client}{eol}{eol}"),
                );
            }
        }
    }
    let eol = LINE_ENDS[usize::from(choose.pick(3))];
    if adds_usage_chunk {
        let total = 9 + u64::from(events);
        push(
            &format!(
                "data: {{\"id\"{colon}\"chatcmpl-u\"{comma}\"choices\"{colon}[]{comma}\"usage\"{colon}{{\"prompt_tokens\"{colon}9{comma}\"completion_tokens\"{colon}{events}{comma}\"total_tokens\"{colon}{total}}}}}{eol}{eol}"
            ),
            "",
        );
        stream.total_tokens = Some(total);
    }
    if choose.pick(4) != 0 {
        push(
            &format!("data: [DONE]{eol}{eol}"),
            &format!("data: [DONE]{eol}{eol}"),
        );
    }
    stream
}

/// `text` as a JSON string, as a serialiser writes it (non-ASCII left as UTF-8).
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The read boundaries for `len` bytes from arbitrary numbers: sorted, distinct, inside the
/// stream; with the end, 1 to `cuts.len() + 1` reads.
pub fn split_points(cuts: &[usize], len: usize) -> Vec<usize> {
    let mut points: Vec<usize> = cuts.iter().map(|&cut| cut % (len + 1)).collect();
    points.push(len);
    points.sort_unstable();
    points.dedup();
    points
}

/// Feeds `bytes` to `watch` in reads ending at `points`; returns what the client got.
pub fn watched(watch: &mut UsageWatch, bytes: &[u8], points: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut from = 0;
    for &to in points {
        if let Some(chunk) = watch.pass(Bytes::copy_from_slice(&bytes[from..to])) {
            out.extend_from_slice(&chunk);
        }
        from = to;
    }
    if let Some(rest) = watch.rest() {
        out.extend_from_slice(&rest);
    }
    out
}
