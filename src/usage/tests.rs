use super::*;

const CHUNK: &str = r#"data: {"choices":[{"delta":{"content":"Hi"},"index":0}],"created":1,"id":"c","model":"m","object":"chat.completion.chunk"}"#;

fn with_usage_null(chunk: &str) -> String {
    format!("{},\"usage\":null}}", chunk.strip_suffix('}').unwrap())
}

const USAGE_ONLY: &str = r#"data: {"choices":[],"created":1,"id":"c","model":"m","object":"chat.completion.chunk","usage":{"completion_tokens":5,"prompt_tokens":9,"total_tokens":14}}"#;
const ERROR_EVENT: &str = r#"data: {"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#;

/// Feeds `stream` to a watch in pieces cut at `cuts`; returns what the client got and the usage.
fn run(watch: &mut UsageWatch, stream: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<Usage>) {
    let mut out = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        if let Some(bytes) = watch.pass(Bytes::copy_from_slice(&stream[from..cut])) {
            out.extend_from_slice(&bytes);
        }
        from = cut;
    }
    if let Some(rest) = watch.rest() {
        out.extend_from_slice(&rest);
    }
    (out, watch.usage())
}

const EXPECTED: Usage = Usage {
    prompt_tokens: 9,
    completion_tokens: 5,
    total_tokens: 14,
};

#[test]
fn undoing_include_usage_restores_the_stream_the_client_asked_for_wherever_chunks_split() {
    let with_flag = format!(
        "{}\n\n{}\n\n{ERROR_EVENT}\n\n{USAGE_ONLY}\n\ndata: [DONE]\n\n",
        with_usage_null(CHUNK),
        with_usage_null(CHUNK)
    );
    let without_flag = format!("{CHUNK}\n\n{CHUNK}\n\n{ERROR_EVENT}\n\ndata: [DONE]\n\n");
    let bytes = with_flag.as_bytes();
    for cut in 0..bytes.len() {
        let mut watch = UsageWatch::sse(true);
        let (out, usage) = run(&mut watch, bytes, &[cut]);
        assert!(watch.saw_error_event(), "cut at {cut}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            without_flag,
            "cut at {cut}"
        );
        assert_eq!(usage, Some(EXPECTED), "cut at {cut}");
    }
}

#[test]
fn a_usage_member_is_removed_wherever_it_stands_in_the_object() {
    for (with, without) in [
        (r#"{"usage":null,"a":1}"#, r#"{"a":1}"#),
        (r#"{"a":1,"usage":null}"#, r#"{"a":1}"#),
        (
            r#"{"a":1,"usage":null,"b":[1,{"c":"}"}]}"#,
            r#"{"a":1,"b":[1,{"c":"}"}]}"#,
        ),
        (
            r#"{"a":"\"usage\":null","usage":null}"#,
            r#"{"a":"\"usage\":null"}"#,
        ),
        (r#"{"usage":null}"#, r#"{}"#),
    ] {
        let event = format!("data: {with}\n\n");
        let (out, _) = run(&mut UsageWatch::sse(true), event.as_bytes(), &[]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("data: {without}\n\n")
        );
    }
}

#[test]
fn events_are_left_alone_unless_the_proxy_added_the_flag() {
    // The client asked for usage itself: it gets every byte, and the usage is still read.
    let stream = format!(
        "{}\n\n{USAGE_ONLY}\n\ndata: [DONE]\n\n",
        with_usage_null(CHUNK)
    );
    let (out, usage) = run(&mut UsageWatch::sse(false), stream.as_bytes(), &[7, 200]);
    assert_eq!(out, stream.as_bytes());
    assert_eq!(usage, Some(EXPECTED));
}

#[test]
fn nested_usage_in_the_responses_api_is_read_from_the_completed_event() {
    let stream = concat!(
        "event: response.created\ndata: {\"response\":{\"status\":\"in_progress\",\"usage\":null},\"type\":\"response.created\"}\n\n",
        "event: response.completed\r\ndata: {\"response\":{\"status\":\"completed\",\"usage\":{\"input_tokens\":9,\"output_tokens\":5,\"total_tokens\":14,\"output_tokens_details\":{\"reasoning_tokens\":0}}},\"type\":\"response.completed\"}\r\n\r\n",
    );
    let (out, usage) = run(&mut UsageWatch::sse(false), stream.as_bytes(), &[30, 31]);
    assert_eq!(out, stream.as_bytes());
    assert_eq!(usage, Some(EXPECTED));
}

#[test]
fn usage_at_the_end_of_a_large_json_body_is_found_from_its_tail() {
    let floats = vec!["0.0123456789"; 20_000].join(",");
    let body = format!(
        r#"{{"data":[{{"embedding":[{floats}],"index":0,"object":"embedding"}}],"usage":{{"prompt_tokens":9,"total_tokens":9}}}}"#
    );
    let cuts: Vec<usize> = (1..body.len()).step_by(4096).collect();
    let mut watch = UsageWatch::json();
    let (out, usage) = run(&mut watch, body.as_bytes(), &cuts);
    assert_eq!(out, body.as_bytes());
    let expected = Usage {
        prompt_tokens: 9,
        completion_tokens: 0,
        total_tokens: 9,
    };
    assert_eq!(usage, Some(expected));
    if let UsageWatch(Watch::Json { kept, .. }) = watch {
        assert!(kept < 2 * JSON_TAIL_BYTES, "kept {kept} bytes");
    }
}

#[test]
fn bodies_without_usage_report_none_and_pass_unchanged() {
    for stream in [
        "data: {\"choices\":[]}\n\ndata: [DONE]\n\n",
        ": keep-alive\n\ndata: not json\n\n",
        "data: {\"usage\":{\"unexpected\":true}}\n\n",
    ] {
        for undo in [false, true] {
            let mut watch = UsageWatch::sse(undo);
            let (out, usage) = run(&mut watch, stream.as_bytes(), &[3]);
            assert_eq!(out, stream.as_bytes());
            assert_eq!(usage, None);
            assert!(!watch.saw_error_event());
        }
    }
    let (out, usage) = run(&mut UsageWatch::json(), b"{\"usage\":", &[]);
    assert_eq!(out, b"{\"usage\":");
    assert_eq!(usage, None);
}

#[test]
fn a_partly_sent_event_is_recognised_across_chunks() {
    let mut watch = UsageWatch::sse(false);
    assert!(!watch.sent_partial_event());
    for (chunk, partial) in [
        (&b"data: {\"a\":1}\n"[..], true),
        (b"\n", false),
        (b"data: {\"b\"", true),
        (b"}\r\n", true),
        (b"\r\n", false),
    ] {
        watch.pass(Bytes::from_static(chunk));
        assert_eq!(watch.sent_partial_event(), partial);
    }
    // A stream being restored holds a partial event back instead of sending it.
    let mut restored = UsageWatch::sse(true);
    assert_eq!(restored.pass(Bytes::from_static(b"data: {\"a\"")), None);
    assert!(!restored.sent_partial_event());
}

#[test]
fn a_restored_chunk_of_whole_unchanged_events_goes_on_as_the_same_bytes() {
    let mut watch = UsageWatch::sse(true);
    let whole = Bytes::from(format!("{CHUNK}\n\n: keep-alive\n\n"));
    let out = watch.pass(whole.clone()).unwrap();
    assert_eq!(out.as_ptr(), whole.as_ptr());
    assert_eq!(out.len(), whole.len());
    // Whole events followed by the start of another: the events, still from the same buffer.
    let with_start = Bytes::from(format!("{CHUNK}\n\ndata: {{\"a\""));
    let out = watch.pass(with_start.clone()).unwrap();
    assert_eq!(out.as_ptr(), with_start.as_ptr());
    assert_eq!(&out[..], format!("{CHUNK}\n\n").as_bytes());
}

#[test]
fn bytes_held_from_the_last_read_are_never_swapped_for_as_many_bytes_of_this_one() {
    // The held start of an event and the held-back start of the next are both 6 bytes long:
    // the chunk between them must not go on in place of what was held.
    let stream = format!("{CHUNK}\n\n{CHUNK}\n\n");
    let second = CHUNK.len() + 2;
    let mut watch = UsageWatch::sse(true);
    let (out, _) = run(&mut watch, stream.as_bytes(), &[6, second + 6]);
    assert_eq!(String::from_utf8(out).unwrap(), stream);
}

#[test]
fn every_sse_line_end_ends_an_event() {
    for eol in ["\n", "\r\n", "\r"] {
        let with_flag = format!(
            ": hi{eol}{}{eol}{eol}{USAGE_ONLY}{eol}{eol}data: [DONE]{eol}{eol}",
            with_usage_null(CHUNK)
        );
        let without = format!(": hi{eol}{CHUNK}{eol}{eol}data: [DONE]{eol}{eol}");
        for cut in 0..with_flag.len() {
            let (out, usage) = run(&mut UsageWatch::sse(true), with_flag.as_bytes(), &[cut]);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                without,
                "{eol:?} cut at {cut}"
            );
            assert_eq!(usage, Some(EXPECTED), "{eol:?} cut at {cut}");
        }
    }
}
