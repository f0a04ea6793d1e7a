//! The limiter's decisions, on the in-memory store and tokio's paused clock. The store contract
//! itself (the same suite for memory and DynamoDB) is in `tests/it/limits_contract.rs`.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::*;

/// 2026-11-30T13:18:39Z: 21 s before the minute ends.
const NOW: u64 = 1_796_044_719;

fn limiter() -> Arc<Limiter> {
    let clock = Clock::starting_at(UNIX_EPOCH + Duration::from_secs(NOW));
    Arc::new(Limiter::new(
        Box::new(MemoryStore::new(clock)),
        clock,
        OnStoreError::Allow,
        1_000,
    ))
}

fn key(limits: &Limits) -> Subject<'_> {
    Subject {
        key: Some(("ci", limits)),
        tenant: None,
    }
}

fn refusal(result: Result<Admission, ProxyError>) -> Box<Refusal> {
    match result {
        Err(ProxyError::RateLimited(refusal)) => refusal,
        Err(other) => panic!("expected a 429, got {other:?}"),
        Ok(_) => panic!("expected a 429, got an admission"),
    }
}

fn admitted(result: Result<Admission, ProxyError>) -> Admitted {
    match result {
        Ok(Admission::Admitted(admitted)) => admitted,
        Ok(Admission::Unchecked) => panic!("expected an admission, got an unchecked request"),
        Err(err) => panic!("expected an admission, got {err:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn requests_per_minute_roll_over_with_the_minute() {
    let limiter = limiter();
    let limits = Limits {
        requests_per_minute: Some(3),
        ..Limits::default()
    };
    for remaining in [2, 1, 0] {
        let admitted = admitted(limiter.admit(key(&limits), 0).await);
        let requests = admitted.headers.requests.unwrap();
        assert_eq!((requests.limit, requests.remaining), (3, remaining));
        assert_eq!(requests.reset, Duration::from_secs(21));
        assert!(admitted.headers.tokens.is_none() && admitted.reservation.is_none());
    }
    let refused = refusal(limiter.admit(key(&limits), 0).await);
    assert_eq!(refused.limit.as_str(), "key.requests_per_minute");
    assert!(!refused.is_budget());
    let mut headers = axum::http::HeaderMap::new();
    refused.add_headers(&mut headers);
    assert_eq!(headers["retry-after"], "21");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    // Refused again from memory, then the next minute starts afresh.
    refusal(limiter.admit(key(&limits), 0).await);
    tokio::time::advance(Duration::from_secs(21)).await;
    let admitted = admitted(limiter.admit(key(&limits), 0).await);
    assert_eq!(admitted.headers.requests.unwrap().remaining, 2);
}

#[tokio::test(start_paused = true)]
async fn tokens_are_reserved_then_settled() {
    let limiter = limiter();
    let limits = Limits {
        tokens_per_minute: Some(100),
        ..Limits::default()
    };
    let first = admitted(limiter.admit(key(&limits), 60).await);
    assert_eq!(first.headers.tokens.unwrap().remaining, 40);
    assert!(first.headers.requests.is_none());
    // 60 reserved: another 60 does not fit until the first settles at its real usage.
    let refused = refusal(limiter.admit(key(&limits), 60).await);
    assert_eq!(refused.limit.as_str(), "key.tokens_per_minute");
    // Remembered: refused again without the store, until tokens come back to the item.
    refusal(limiter.admit(key(&limits), 60).await);
    assert!(first.reservation.unwrap().settle(15).await);
    let second = admitted(limiter.admit(key(&limits), 60).await);
    assert_eq!(second.headers.tokens.unwrap().remaining, 25);
    // A request that could never fit is refused as too large.
    let too_large = refusal(limiter.admit(key(&limits), 101).await);
    assert!(too_large.to_string().contains("Request too large"));
}

#[tokio::test(start_paused = true)]
async fn a_budget_refusal_is_insufficient_quota_and_not_retried() {
    let limiter = limiter();
    let limits = Limits {
        tokens_per_day: Some(1_000),
        tokens_per_minute: Some(10_000),
        ..Limits::default()
    };
    let spent = admitted(limiter.admit(key(&limits), 900).await);
    assert!(spent.reservation.unwrap().settle(950).await);
    let refused = refusal(limiter.admit(key(&limits), 100).await);
    assert_eq!(refused.limit.as_str(), "key.tokens_per_day");
    assert!(refused.is_budget());
    assert_eq!(
        ProxyError::RateLimited(refused).classify().2,
        "insufficient_quota"
    );
    let refused = refusal(limiter.admit(key(&limits), 100).await);
    let mut headers = axum::http::HeaderMap::new();
    refused.add_headers(&mut headers);
    assert_eq!(headers["x-should-retry"], "false");
    assert!(headers.get("retry-after").is_none());
    assert_eq!(headers["x-ratelimit-remaining-tokens"], "50");
    assert_eq!(headers["x-ratelimit-limit-tokens"], "1000");
}

#[tokio::test(start_paused = true)]
async fn a_refusal_takes_back_what_other_windows_counted() {
    let limiter = limiter();
    let (own, shared) = (
        Limits {
            requests_per_minute: Some(2),
            ..Limits::default()
        },
        Limits {
            requests_per_minute: Some(1),
            ..Limits::default()
        },
    );
    let both = |id| Subject {
        key: Some((id, &own)),
        tenant: Some(("team", &shared)),
    };
    admitted(limiter.admit(both("alice"), 0).await);
    let refused = refusal(limiter.admit(both("bob"), 0).await);
    assert_eq!(refused.limit.as_str(), "tenant.requests_per_minute");
    // bob's own counter was taken back: alone, bob still has both of his requests.
    let alone = |id| Subject {
        key: Some((id, &own)),
        tenant: None,
    };
    assert_eq!(
        admitted(limiter.admit(alone("bob"), 0).await)
            .headers
            .requests
            .unwrap()
            .remaining,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn estimates_count_input_and_output() {
    let limiter = limiter();
    assert_eq!(limiter.estimate(400, Some(50), true), 150);
    assert_eq!(limiter.estimate(401, None, true), 1_101);
    assert_eq!(limiter.estimate(400, None, false), 100);
    assert_eq!(limiter.estimate(0, None, false), 0);
}

#[tokio::test(start_paused = true)]
async fn a_budget_refusal_from_reservations_in_flight_is_not_remembered_for_the_day() {
    let limiter = limiter();
    let limits = Limits {
        tokens_per_day: Some(300),
        ..Limits::default()
    };
    // Another instance's request holds a large reservation: this one is refused.
    let elsewhere = admitted(limiter.admit(key(&limits), 228).await);
    refusal(limiter.admit(key(&limits), 228).await);
    // That reservation settles low in the shared store, written by the other instance (here,
    // straight into the store): this process still remembers its refusal, but only for a
    // minute, after which it asks the store again and the budget has room.
    drop(elsewhere);
    let item = Period::Day
        .window_at(UNIX_EPOCH + Duration::from_secs(NOW))
        .item("key", "ci");
    let settled = limiter
        .store()
        .update(Update {
            item: &item,
            expires_at: 0,
            requests: 0,
            tokens: 14 - 228,
            fit: Fit::default(),
        })
        .await
        .unwrap();
    assert!(matches!(settled, Counted::Made(counts) if counts.tokens == 14));
    refusal(limiter.admit(key(&limits), 228).await);
    tokio::time::advance(Duration::from_secs(60)).await;
    admitted(limiter.admit(key(&limits), 228).await);
}

#[tokio::test(start_paused = true)]
async fn remembered_windows_are_judged_by_todays_limits_and_keep_every_trio() {
    let limiter = limiter();
    let tight = Limits {
        requests_per_minute: Some(1),
        tokens_per_minute: Some(1_000),
        ..Limits::default()
    };
    admitted(limiter.admit(key(&tight), 10).await);
    refusal(limiter.admit(key(&tight), 10).await);
    // Refused again from memory, with both trios as the store's refusal had them.
    let remembered = refusal(limiter.admit(key(&tight), 10).await);
    let mut headers = axum::http::HeaderMap::new();
    remembered.add_headers(&mut headers);
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    assert_eq!(headers["x-ratelimit-remaining-tokens"], "990");
    // The key map raises the limit: the remembered counts fit it, so the store is asked at once.
    let raised = Limits {
        requests_per_minute: Some(5),
        ..tight
    };
    let admitted = admitted(limiter.admit(key(&raised), 10).await);
    assert_eq!(admitted.headers.requests.unwrap().remaining, 3);
}

#[tokio::test(start_paused = true)]
async fn a_request_larger_than_a_limit_is_not_worth_retrying() {
    let limiter = limiter();
    let limits = Limits {
        tokens_per_minute: Some(100),
        ..Limits::default()
    };
    let too_large = refusal(limiter.admit(key(&limits), 101).await);
    let mut headers = axum::http::HeaderMap::new();
    too_large.add_headers(&mut headers);
    assert_eq!(headers["x-should-retry"], "false");
    assert!(headers.get("retry-after").is_none());
    assert_eq!(too_large.limit.as_str(), "key.tokens_per_minute");
}
