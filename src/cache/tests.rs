//! The cache's rules against a scripted in-memory source, on tokio's paused clock so TTLs and
//! intervals are exact and the tests take no wall time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;

use super::*;

/// Serves whatever document (or failure) the test last set, and counts fetches.
#[derive(Default)]
struct ScriptedSource {
    next: Mutex<Option<Result<String, String>>>,
    calls: AtomicUsize,
}

struct Shared(Arc<ScriptedSource>);

impl KeySource for Shared {
    fn kind(&self) -> &'static str {
        "scripted"
    }
    fn fetch(&self) -> BoxFuture<'_, Result<Arc<KeyMap>, SourceError>> {
        Box::pin(async move {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            // A source call takes time, so concurrent callers really do overlap.
            tokio::time::sleep(Duration::from_millis(50)).await;
            match self.0.next.lock().unwrap().clone() {
                Some(Ok(document)) => {
                    KeyMap::parse(document.as_bytes())
                        .map(Arc::new)
                        .map_err(|reason| SourceError::Malformed {
                            location: "scripted".into(),
                            reason,
                        })
                }
                Some(Err(message)) if message == "denied" => Err(SourceError::Permanent(message)),
                Some(Err(message)) => Err(SourceError::Transient(message)),
                None => Err(SourceError::Permanent("nothing scripted".into())),
            }
        })
    }
}

const TTL: Duration = Duration::from_secs(300);
const INTERVAL: Duration = Duration::from_secs(10);

impl ScriptedSource {
    fn serve(&self, document: &str) {
        *self.next.lock().unwrap() = Some(Ok(document.to_owned()));
    }
    fn fail(&self, message: &str) {
        *self.next.lock().unwrap() = Some(Err(message.to_owned()));
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn cache_with(document: Option<&str>) -> (Arc<ScriptedSource>, Arc<KeyCache>) {
    let source = Arc::new(ScriptedSource::default());
    if let Some(document) = document {
        source.serve(document);
    }
    let cache = Arc::new(KeyCache::new(
        Box::new(Shared(source.clone())),
        TTL,
        INTERVAL,
    ));
    (source, cache)
}

fn real_key(authorized: &Authorized) -> String {
    authorized
        .entry
        .real_key
        .as_ref()
        .unwrap()
        .authorization()
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(start_paused = true)]
async fn loads_once_and_serves_from_memory_until_the_ttl() {
    let (source, cache) = cache_with(Some(r#"{"w1": "sk-1"}"#));
    cache.load().await.unwrap();
    for _ in 0..100 {
        assert_eq!(
            real_key(&cache.authorize("w1").await.unwrap()),
            "Bearer sk-1"
        );
    }
    assert_eq!(source.calls(), 1);

    source.serve(r#"{"w1": "sk-1-rotated"}"#);
    tokio::time::advance(TTL - Duration::from_secs(1)).await;
    assert_eq!(
        real_key(&cache.authorize("w1").await.unwrap()),
        "Bearer sk-1"
    );
    assert_eq!(source.calls(), 1);

    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        real_key(&cache.authorize("w1").await.unwrap()),
        "Bearer sk-1-rotated"
    );
    assert_eq!(source.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_burst_after_the_ttl_makes_one_source_call() {
    let (source, cache) = cache_with(Some(r#"{"w1": "sk-1"}"#));
    cache.load().await.unwrap();
    tokio::time::advance(TTL).await;
    let burst: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.authorize("w1").await.is_ok() })
        })
        .collect();
    for task in burst {
        assert!(task.await.unwrap());
    }
    assert_eq!(source.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_the_last_good_map_and_backs_off() {
    let (source, cache) = cache_with(Some(r#"{"w1": "sk-1"}"#));
    cache.load().await.unwrap();
    source.fail("ThrottlingException");
    tokio::time::advance(TTL).await;
    for _ in 0..20 {
        assert_eq!(
            real_key(&cache.authorize("w1").await.unwrap()),
            "Bearer sk-1"
        );
    }
    assert_eq!(source.calls(), 2, "one failed refresh, then back-off");
    assert!(
        cache
            .status()
            .last_error
            .unwrap()
            .contains("ThrottlingException")
    );

    source.serve(r#"{"w1": "sk-2"}"#);
    tokio::time::advance(INTERVAL).await;
    assert_eq!(
        real_key(&cache.authorize("w1").await.unwrap()),
        "Bearer sk-2"
    );
    assert_eq!(source.calls(), 3);
    assert_eq!(cache.status().last_error, None);
}

#[tokio::test(start_paused = true)]
async fn a_malformed_update_is_rejected_and_the_last_good_map_stays() {
    let (source, cache) = cache_with(Some(r#"{"w1": "sk-1"}"#));
    cache.load().await.unwrap();
    source.serve(r#"{"w1": "sk-1", "w2": 42}"#);
    tokio::time::advance(TTL).await;
    assert_eq!(
        real_key(&cache.authorize("w1").await.unwrap()),
        "Bearer sk-1"
    );
    assert!(matches!(
        cache.authorize("w2").await,
        Err(ProxyError::UnknownKey)
    ));
    assert!(cache.status().last_error.unwrap().contains("member #2"));
}

#[tokio::test(start_paused = true)]
async fn an_unknown_key_refreshes_at_once_but_at_most_once_per_interval() {
    let (source, cache) = cache_with(Some(r#"{"w1": "sk-1"}"#));
    cache.load().await.unwrap();
    source.serve(r#"{"w1": "sk-1", "w2": "sk-2"}"#);
    // A newly issued key works on its first use.
    assert_eq!(
        real_key(&cache.authorize("w2").await.unwrap()),
        "Bearer sk-2"
    );
    assert_eq!(source.calls(), 2);
    // A flood of bad keys within the interval costs nothing more.
    for n in 0..100 {
        let presented = format!("bad-{n}");
        assert!(matches!(
            cache.authorize(&presented).await,
            Err(ProxyError::UnknownKey)
        ));
    }
    assert_eq!(source.calls(), 2);
    tokio::time::advance(INTERVAL).await;
    assert!(cache.authorize("still-bad").await.is_err());
    assert_eq!(source.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn with_no_map_ever_loaded_requests_get_503_and_retries_are_spaced() {
    let (source, cache) = cache_with(None);
    source.fail("denied");
    assert!(cache.load().await.is_err());
    for _ in 0..10 {
        assert!(matches!(
            cache.authorize("w1").await,
            Err(ProxyError::KeyMapUnavailable)
        ));
    }
    assert_eq!(source.calls(), 1);
    let status = cache.status();
    assert!(!status.loaded);
    assert_eq!(status.last_error.as_deref(), Some("denied"));

    source.serve(r#"{"w1": "sk-1"}"#);
    tokio::time::advance(INTERVAL).await;
    assert!(cache.authorize("w1").await.is_ok());
    assert!(cache.status().loaded);
}

#[tokio::test(start_paused = true)]
async fn expired_keys_are_refused_like_unknown_ones() {
    let (_source, cache) = cache_with(Some(
        r#"{"old": {"api_key": "sk-1", "expires_at": "2001-01-01T00:00:00Z"},
            "new": {"api_key": "sk-1", "expires_at": "2999-01-01T00:00:00Z"}}"#,
    ));
    cache.load().await.unwrap();
    assert!(matches!(
        cache.authorize("old").await,
        Err(ProxyError::UnknownKey)
    ));
    assert!(cache.authorize("new").await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_upstream_401_re_reads_an_old_map_and_offers_a_changed_key() {
    let (source, cache) = cache_with(Some(r#"{"w1": "sk-old"}"#));
    cache.load().await.unwrap();
    let first = cache.authorize("w1").await.unwrap();

    // A young map is believed: no source call.
    assert!(cache.refresh_after_upstream_401(&first).await.is_none());
    assert_eq!(source.calls(), 1);

    tokio::time::advance(UPSTREAM_401_REFRESH_AGE).await;
    // Old map, but the key did not change: nothing to retry with.
    assert!(cache.refresh_after_upstream_401(&first).await.is_none());
    assert_eq!(source.calls(), 2);

    source.serve(r#"{"w1": "sk-new"}"#);
    let second = cache.authorize("w1").await.unwrap();
    tokio::time::advance(UPSTREAM_401_REFRESH_AGE).await;
    let retry = cache.refresh_after_upstream_401(&second).await.unwrap();
    assert_eq!(real_key(&retry), "Bearer sk-new");
    assert_eq!(source.calls(), 3);
}

/// A key moved to another upstream (or otherwise changed) is not retried with the request built
/// for the old one: its new key must not go to the old upstream.
#[tokio::test(start_paused = true)]
async fn an_upstream_401_retries_only_a_pure_key_rotation() {
    let (source, cache) = cache_with(Some(r#"{"w1": "sk-old"}"#));
    cache.load().await.unwrap();
    let first = cache.authorize("w1").await.unwrap();
    source.serve(
        r#"{"version": 2,
            "upstreams": {"azure": {"base_url": "https://azure.example/v1", "auth": "api-key"}},
            "keys": {"w1": {"api_key": "sk-azure", "upstream": "azure"}}}"#,
    );
    tokio::time::advance(UPSTREAM_401_REFRESH_AGE).await;
    assert!(cache.refresh_after_upstream_401(&first).await.is_none());
    // The next request is built for the new upstream.
    let moved = cache.authorize("w1").await.unwrap();
    assert_eq!(&*moved.entry.upstream.as_ref().unwrap().name, "azure");
    source.serve(r#"{"w1": {"api_key": "sk-old", "models": ["gpt-4o-mini"]}}"#);
    tokio::time::advance(UPSTREAM_401_REFRESH_AGE).await;
    let restricted = cache.authorize("w1").await.unwrap();
    source.serve(r#"{"w1": {"api_key": "sk-new", "models": ["gpt-4o"]}}"#);
    tokio::time::advance(UPSTREAM_401_REFRESH_AGE).await;
    assert!(
        cache
            .refresh_after_upstream_401(&restricted)
            .await
            .is_none()
    );
}
