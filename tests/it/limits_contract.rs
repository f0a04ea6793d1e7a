//! One contract, every limits store: the in-process store (the embedded default) and DynamoDB
//! (moto's server, serialised as DynamoDB applies updates to one item, through the real
//! `aws-sdk-dynamodb`). The limiter's exactness rests on these properties alone, so the two
//! stores cannot drift apart.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use futures_util::future::join_all;
use openai_proxy::error::ProxyError;
use openai_proxy::limits::{
    Admission, Clock, Counted, Counts, DynamoStore, Fit, LimitStore, Limiter, Limits, MemoryStore,
    OnStoreError, Period, Subject, Update,
};

use crate::support::moto::Moto;

/// Bounds every store call: a hung store fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(60);

async fn update(store: &dyn LimitStore, update: Update<'_>) -> Counted {
    tokio::time::timeout(WAIT, store.update(update))
        .await
        .expect("the store did not answer in time")
        .expect("the store failed")
}

fn add<'a>(item: &'a str, requests: i64, tokens: i64, fit: Fit) -> Update<'a> {
    Update {
        item,
        expires_at: 4_102_444_800,
        requests,
        tokens,
        fit,
    }
}

fn made(counts: (i64, i64)) -> Counted {
    Counted::Made(Counts {
        requests: counts.0,
        tokens: counts.1,
    })
}

fn refused(counts: (i64, i64)) -> Counted {
    Counted::Refused(Counts {
        requests: counts.0,
        tokens: counts.1,
    })
}

/// N concurrent conditional adds against a limit of K: exactly K count, each seeing a distinct
/// count, and every refusal sees the count at the limit.
async fn concurrent_adds_admit_exactly_the_limit(store: &dyn LimitStore, item: &str) {
    let fit = Fit {
        requests: Some(20),
        tokens: None,
    };
    let results = join_all((0..50).map(|_| update(store, add(item, 1, 0, fit)))).await;
    let mut counts: Vec<i64> = results
        .iter()
        .filter_map(|counted| match counted {
            Counted::Made(counts) => Some(counts.requests),
            Counted::Refused(_) => None,
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=20).collect::<Vec<_>>(), "{}", store.kind());
    for counted in &results {
        if let Counted::Refused(counts) = counted {
            assert_eq!(counts.requests, 20, "{}", store.kind());
        }
    }
}

/// The fit includes what is added; a refusal reports the counts as they stand and changes
/// nothing; unconditional adds (settling) always apply, negative ones included.
async fn tokens_fit_with_the_add(store: &dyn LimitStore, item: &str) {
    let fit = Fit {
        requests: None,
        tokens: Some(100),
    };
    assert_eq!(update(store, add(item, 1, 60, fit)).await, made((1, 60)));
    assert_eq!(update(store, add(item, 1, 41, fit)).await, refused((1, 60)));
    assert_eq!(update(store, add(item, 1, 40, fit)).await, made((2, 100)));
    assert_eq!(update(store, add(item, 1, 1, fit)).await, refused((2, 100)));
    // Zero more fits a full window (a request that reserves nothing).
    assert_eq!(update(store, add(item, 1, 0, fit)).await, made((3, 100)));
    let settle = add(item, 0, -30, Fit::default());
    assert_eq!(update(store, settle).await, made((3, 70)));
    let over = add(item, 0, 500, Fit::default());
    assert_eq!(update(store, over).await, made((3, 570)));
    assert_eq!(update(store, add(item, 1, 0, fit)).await, refused((3, 570)));
}

/// Both limits of one item in one condition: either refusing is a refusal.
async fn both_limits_hold_together(store: &dyn LimitStore, item: &str) {
    let fit = Fit {
        requests: Some(2),
        tokens: Some(100),
    };
    assert_eq!(update(store, add(item, 1, 90, fit)).await, made((1, 90)));
    assert_eq!(update(store, add(item, 1, 20, fit)).await, refused((1, 90)));
    assert_eq!(update(store, add(item, 1, 10, fit)).await, made((2, 100)));
    assert_eq!(update(store, add(item, 1, 0, fit)).await, refused((2, 100)));
    // Another item is another counter.
    let other = format!("{item}-other");
    assert_eq!(update(store, add(&other, 1, 0, fit)).await, made((1, 0)));
}

/// Through the limiter: 50 concurrent requests against 20 per minute admit exactly 20; 20
/// concurrent requests reserving 30 tokens each against a 150-token day admit exactly 5.
async fn the_limiter_is_exact(store: Box<dyn LimitStore>, id: &str) {
    let limiter = Arc::new(Limiter::new(store, Clock::new(), OnStoreError::Deny, 1_000));
    let limits = Limits {
        requests_per_minute: Some(20),
        ..Limits::default()
    };
    let subject = Subject {
        key: Some((id, &limits)),
        tenant: None,
    };
    let answers = join_all((0..50).map(|_| limiter.admit(subject, 0))).await;
    assert_eq!(tally(&answers), (20, 30), "{}", limiter.store().kind());

    let budget = Limits {
        tokens_per_day: Some(150),
        ..Limits::default()
    };
    let tenant = format!("{id}-team");
    let subject = Subject {
        key: None,
        tenant: Some((&tenant, &budget)),
    };
    let answers = join_all((0..20).map(|_| limiter.admit(subject, 30))).await;
    assert_eq!(tally(&answers), (5, 15), "{}", limiter.store().kind());
}

/// A request counting in two windows (its key's and its tenant's minute) is written to each
/// separately, and given back where it counted when the other refuses: never more than either
/// limit is admitted, and once every give-back is done both windows hold exactly the admitted.
async fn several_windows_never_admit_more_than_either_limit(store: Box<dyn LimitStore>, id: &str) {
    // Ten seconds into a minute: the burst stays in one window whatever the machine's speed.
    let clock = Clock::starting_at(UNIX_EPOCH + Duration::from_secs(1_796_044_690));
    let limiter = Arc::new(Limiter::new(store, clock, OnStoreError::Deny, 0));
    let (own, shared) = (
        Limits {
            requests_per_minute: Some(20),
            ..Limits::default()
        },
        Limits {
            requests_per_minute: Some(30),
            ..Limits::default()
        },
    );
    let tenant = format!("{id}-team");
    let subject = Subject {
        key: Some((id, &own)),
        tenant: Some((&tenant, &shared)),
    };
    let answers = join_all((0..50).map(|_| limiter.admit(subject, 0))).await;
    let (admitted, refused) = tally(&answers);
    assert!(
        (1..=20).contains(&admitted) && admitted + refused == 50,
        "{admitted}"
    );
    let window = Period::Minute.window_at(clock.now());
    for (scope, counter) in [("key", id), ("tenant", tenant.as_str())] {
        let item = window.item(scope, counter);
        let counted = update(limiter.store(), add(&item, 0, 0, Fit::default())).await;
        assert_eq!(
            counted,
            made((admitted as i64, 0)),
            "{scope}: {}",
            limiter.store().kind()
        );
    }
}

/// (admitted, refused with a 429); anything else fails the test.
fn tally(answers: &[Result<Admission, ProxyError>]) -> (usize, usize) {
    let mut tally = (0, 0);
    for answer in answers {
        match answer {
            Ok(Admission::Admitted(_)) => tally.0 += 1,
            Err(ProxyError::RateLimited(_)) => tally.1 += 1,
            Ok(Admission::Unchecked) => panic!("the store failed"),
            Err(other) => panic!("unexpected answer: {other:?}"),
        }
    }
    tally
}

async fn contract(store: &dyn LimitStore) {
    concurrent_adds_admit_exactly_the_limit(store, "contract#concurrent").await;
    tokens_fit_with_the_add(store, "contract#tokens").await;
    both_limits_hold_together(store, "contract#both").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_memory_store_keeps_the_contract() {
    let store = MemoryStore::new(Clock::new());
    contract(&store).await;
    the_limiter_is_exact(Box::new(MemoryStore::new(Clock::new())), "exact").await;
    let store = Box::new(MemoryStore::new(Clock::new()));
    several_windows_never_admit_more_than_either_limit(store, "several").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dynamodb_store_keeps_the_contract() {
    let moto = Moto::start().await;
    moto.create_limits_table("limits-contract").await;
    let store = dynamo_store(&moto, "limits-contract");
    assert!(store.shared());
    contract(&store).await;
    the_limiter_is_exact(Box::new(dynamo_store(&moto, "limits-contract")), "exact").await;
    let store = Box::new(dynamo_store(&moto, "limits-contract"));
    several_windows_never_admit_more_than_either_limit(store, "several").await;
}

/// The proxy's own DynamoDB store, built as the proxy builds it from the shared AWS
/// configuration, pointed at moto.
pub fn dynamo_store(moto: &Moto, table: &str) -> DynamoStore {
    DynamoStore::new(&moto.sdk_config(), table.to_owned())
}
