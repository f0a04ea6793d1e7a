//! The relay's first promise, fuzzed: a chat stream (decoded from the input, as the property
//! tests decode theirs) in any reads gives the client exactly the upstream's bytes, less what the
//! proxy's own `include_usage` flag added; a watch that only observes changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openai_proxy::usage::UsageWatch;

#[path = "../../tests/it/support/chat_stream.rs"]
mod chat_stream;

/// The input: one byte for how many read boundaries, two bytes for each, the rest the stream.
fn reads_and_spec(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let count = (usize::from(count) % 40).min(rest.len() / 2);
    let (cuts, spec) = rest.split_at(count * 2);
    let cuts = cuts
        .chunks_exact(2)
        .map(|pair| usize::from(u16::from_le_bytes([pair[0], pair[1]])))
        .collect();
    (cuts, spec)
}

fuzz_target!(|data: &[u8]| {
    let (cuts, spec) = reads_and_spec(data);
    let stream = chat_stream::decode(spec);
    let points = chat_stream::split_points(&cuts, stream.upstream.len());
    let mut restoring = UsageWatch::sse(true);
    assert_eq!(
        chat_stream::watched(&mut restoring, &stream.upstream, &points),
        stream.client
    );
    assert_eq!(
        restoring.usage().map(|usage| usage.total_tokens),
        stream.total_tokens
    );
    let mut observing = UsageWatch::sse(false);
    assert_eq!(
        chat_stream::watched(&mut observing, &stream.upstream, &points),
        stream.upstream
    );
});
