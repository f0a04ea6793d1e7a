//! B15: what AWS SigV4 signing adds per request to an `aws-sigv4` upstream (Amazon Bedrock),
//! measured in-process on the proxy's own signer: canonical request, body hash, HMAC chain,
//! header insertion. Credentials come from a static provider, cached as in production, so this
//! is the per-request CPU cost and never a credential fetch.

use std::time::Instant;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use openai_proxy::upstream::Signer;

use crate::Plan;
use crate::report::Report;
use crate::stats::round;

pub async fn signing_cells(plan: &Plan, report: &mut Report) {
    let credentials = Credentials::new(
        "AKIDEXAMPLEBENCH",
        "bench-secret-access-key",
        Some("bench-session-token".to_owned()),
        None,
        "bench",
    );
    let signer = Signer::new(Some(SharedCredentialsProvider::new(credentials)));
    // A typical chat request: a few hundred bytes of JSON and the SDK's usual headers.
    let body = format!(
        r#"{{"model":"openai.gpt-oss-20b-1:0","messages":[{{"role":"user","content":"{}"}}],"stream":true}}"#,
        "Tell me about the weather in Lisbon in spring. ".repeat(6)
    );
    let request = || {
        http::Request::post(
            "https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1/chat/completions",
        )
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("user-agent", "OpenAI/Python 3.57.0")
        .header("x-stainless-lang", "python")
        .body(bytes::Bytes::from(body.clone()))
    };
    let rounds = if plan.smoke { 500 } else { 50_000 };
    let mut total = std::time::Duration::ZERO;
    for _ in 0..rounds {
        let Ok(mut built) = request() else {
            report.row(
                "B15",
                "SigV4 signing per request",
                "could not build a request".to_owned(),
                "",
                None,
            );
            return;
        };
        let started = Instant::now();
        let signed = signer.sign(&mut built, "us-east-1", "bedrock").await;
        total += started.elapsed();
        if signed.is_err() {
            report.row(
                "B15",
                "SigV4 signing per request",
                "signing failed".to_owned(),
                "",
                None,
            );
            return;
        }
        std::hint::black_box(&built);
    }
    let micros = total.as_secs_f64() * 1e6 / f64::from(rounds);
    report.row(
        "B15",
        "SigV4 signing per request (aws-sigv4 upstream, in-process)",
        format!("{} µs", round(micros)),
        "",
        None,
    );
}
