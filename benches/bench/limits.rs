//! B14: what limits cost. In-process, the limiter on its in-memory store: one admission (a key
//! with a per-minute request and token limit: one window item) and one settlement. Over HTTP,
//! the latency a limited key adds when its counters are in DynamoDB, here moto on loopback: a
//! stand-in with its own speed, not in-region DynamoDB's, so the figure is the shape of the
//! cost (two writes per request, one before the upstream call and one before the end), not its
//! size in production.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openai_proxy::limits::{Admission, Clock, Limiter, Limits, MemoryStore, OnStoreError, Subject};
use serde_json::json;

use crate::cells::{Target, client, round_trip};
use crate::process::{Moto, Proxy};
use crate::report::Report;
use crate::stats::{Sample, round};
use crate::{Plan, REAL_KEY, WRAPPER_KEY};

const LIMITED_KEY: &str = "bench-limited-key";

pub async fn limits_cells(plan: &Plan, upstream: &str, report: &mut Report) -> Result<(), String> {
    in_memory(plan, report).await;
    against_moto(plan, upstream, report).await
}

async fn in_memory(plan: &Plan, report: &mut Report) {
    let clock = Clock::new();
    let limiter = Arc::new(Limiter::new(
        Box::new(MemoryStore::new(clock)),
        clock,
        OnStoreError::Deny,
        1_000,
    ));
    let limits = Limits {
        requests_per_minute: Some(u64::MAX >> 2),
        tokens_per_minute: Some(u64::MAX >> 2),
        ..Limits::default()
    };
    let subject = Subject {
        key: Some(("bench", &limits)),
        tenant: None,
    };
    let rounds = if plan.smoke { 10_000 } else { 1_000_000 };
    let (mut admitting, mut settling) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let started = Instant::now();
        let admitted = limiter.admit(std::hint::black_box(subject), 1_100).await;
        admitting += started.elapsed();
        let Ok(Admission::Admitted(admitted)) = admitted else {
            report.row(
                "B14",
                "limiter admission (in memory)",
                "refused".to_owned(),
                "",
                None,
            );
            return;
        };
        let started = Instant::now();
        if let Some(reservation) = admitted.reservation {
            std::hint::black_box(reservation.settle(18).await);
        }
        settling += started.elapsed();
    }
    let per = |total: Duration| total.as_nanos() as f64 / f64::from(rounds);
    let (admit_ns, settle_ns) = (per(admitting), per(settling));
    report.row(
        "B14",
        "limiter per request, in memory: admission / settlement",
        format!("{} ns / {} ns", round(admit_ns), round(settle_ns)),
        "",
        None,
    );
    report.figure(
        "b14_memory",
        json!({"admit_ns": admit_ns, "settle_ns": settle_ns}),
    );
}

/// One proxy with its counters in a moto table; the same chat request with a key without limits
/// and with a limited one, alternating, so both see the same machine.
async fn against_moto(plan: &Plan, upstream: &str, report: &mut Report) -> Result<(), String> {
    let moto = Moto::start().await?;
    moto.create_limits_table("bench-limits").await?;
    let dir =
        std::env::temp_dir().join(format!("openai-proxy-bench-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|err| err.to_string())?;
    let key_file = dir.join("keys.json");
    let key_map = format!(
        r#"{{"version": 2, "keys": {{
            "{WRAPPER_KEY}": "{REAL_KEY}",
            "{LIMITED_KEY}": {{"api_key": "{REAL_KEY}",
                "limits": {{"requests_per_minute": 100000000, "tokens_per_minute": 100000000000}}}}}}}}"#
    );
    std::fs::write(&key_file, key_map).map_err(|err| err.to_string())?;
    let key_file = key_file.display().to_string();
    let proxy = Proxy::start(&[
        ("KEY_MAP_FILE", key_file.as_str()),
        ("UPSTREAM_BASE_URL", upstream),
        ("LIMITS_TABLE", "bench-limits"),
        ("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ])?;
    let target = |key: &str| Target {
        base: format!("http://{}/v1", proxy.addr),
        authorization: format!("Bearer {key}"),
    };
    let (plain, limited) = (target(WRAPPER_KEY), target(LIMITED_KEY));
    let http = client();
    let request =
        r#"{"model":"chat","messages":[{"role":"user","content":"Hello"}],"max_tokens":100}"#;
    let (mut without, mut with) = (Sample::default(), Sample::default());
    let rounds = if plan.smoke { 20 } else { 1_000 };
    for n in 0..rounds + 10 {
        let a = round_trip(&http, &plain, "/chat/completions", request).await;
        let b = round_trip(&http, &limited, "/chat/completions", request).await;
        let (Some(a), Some(b)) = (a, b) else {
            let _ = std::fs::remove_dir_all(&dir);
            return Err("B14: a request through the limited proxy failed".to_owned());
        };
        // The first few warm the connections (to the fake, and to moto).
        if n >= 10 {
            without.push(a);
            with.push(b);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let added = with.p50() - without.p50();
    report.row(
        "B14",
        "chat round trip, key without limits / limited key (loopback moto, not in-region DynamoDB)",
        format!(
            "p50 {} µs / {} µs (+{} µs), p99 {} µs / {} µs",
            round(without.p50()),
            round(with.p50()),
            round(added),
            round(without.p99()),
            round(with.p99())
        ),
        "",
        None,
    );
    report.figure(
        "b14_moto",
        json!({"without_p50_us": without.p50(), "limited_p50_us": with.p50(), "without_p99_us": without.p99(), "limited_p99_us": with.p99()}),
    );
    Ok(())
}
