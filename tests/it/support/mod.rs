//! Shared test fixtures: the fake upstream, the proxy in-process or as the built binary, and the
//! external tools the end-to-end tests drive. Every port is a free loopback port, every wait is
//! bounded, and every process started here is killed when its guard drops.

pub mod chat_stream;
pub mod clients;
pub mod emf;
pub mod keys_cli;
pub mod lambda;
pub mod limits;
pub mod limits_store;
pub mod moto;
pub mod openai;
pub mod openai_api;
pub mod openai_files;
pub mod openai_media;
pub mod openai_stream;
pub mod process;
pub mod runtime_api;
pub mod secret_relay;
pub mod sigv4_upstream;
pub mod tls;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use std::sync::Arc;

use futures_util::future::BoxFuture;
use openai_proxy::app::router;
use openai_proxy::cache::KeyCache;
use openai_proxy::config::Config;
use openai_proxy::keymap::KeyMap;
use openai_proxy::secrets::{KeySource, SourceError};
use openai_proxy::state::AppState;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use clients::{python, run_node_sdk, run_node_sdk_script, run_sdk_script};
pub use process::{BinaryProxy, ChildGuard, run_binary_to_exit};

pub const WRAPPER_KEY: &str = "wrapper-key-alice";
pub const REAL_KEY: &str = "sk-alice-real-openai-key";
pub const OTHER_WRAPPER_KEY: &str = "wrapper-key-bob";
pub const OTHER_REAL_KEY: &str = "sk-bob-real-openai-key";

/// Every wrapper and real key any test configures or presents: none may ever appear in a log.
pub const ALL_TEST_KEYS: [&str; 10] = [
    WRAPPER_KEY,
    REAL_KEY,
    OTHER_WRAPPER_KEY,
    OTHER_REAL_KEY,
    "wrapper-key-mallory",
    "wrapper-key-hidden",
    "wrapper-key-carol",
    "sk-carol-real",
    "wrapper-key-dave",
    "sk-dave-real",
];

pub fn key_map_json() -> String {
    format!(r#"{{"{WRAPPER_KEY}": "{REAL_KEY}", "{OTHER_WRAPPER_KEY}": "{OTHER_REAL_KEY}"}}"#)
}

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The configuration the proxy would read from this environment (plus the key-file variable,
/// which in-process tests satisfy with a map they pass directly).
pub fn config(upstream_base_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("UPSTREAM_BASE_URL".to_owned(), upstream_base_url.to_owned()),
        ("KEY_MAP_FILE".to_owned(), "in-memory".to_owned()),
    ]);
    for (name, value) in extra {
        vars.insert((*name).to_owned(), (*value).to_owned());
    }
    Config::from_lookup(|name| vars.get(name).cloned()).unwrap()
}

/// A key source that always serves the same document, for tests that are not about sources.
pub struct FixedSource(pub String);

impl KeySource for FixedSource {
    fn kind(&self) -> &'static str {
        "fixed"
    }
    fn fetch(&self) -> BoxFuture<'_, Result<Arc<KeyMap>, SourceError>> {
        Box::pin(async move {
            KeyMap::parse(self.0.as_bytes())
                .map(Arc::new)
                .map_err(|reason| SourceError::Malformed {
                    location: "fixed".into(),
                    reason,
                })
        })
    }
}

/// State over a loaded cache of `source`, configured as the environment `extra` would.
pub async fn state_with(
    upstream_base_url: &str,
    extra: &[(&str, &str)],
    source: Box<dyn KeySource>,
) -> AppState {
    let config = config(upstream_base_url, extra);
    let cache = Arc::new(KeyCache::new(
        source,
        config.key_map_ttl,
        config.key_map_min_refresh_interval,
    ));
    let _ = cache.load().await;
    AppState::new(&config, cache).unwrap()
}

pub async fn state(upstream_base_url: &str, extra: &[(&str, &str)]) -> AppState {
    state_with(
        upstream_base_url,
        extra,
        Box::new(FixedSource(key_map_json())),
    )
    .await
}

/// An HTTP client for the tests' own requests. reqwest's TLS has no built-in crypto provider in
/// this project (see Cargo.toml), so the proxy's one is installed first, as the binary does.
pub fn http_client() -> reqwest::Client {
    http_client_builder().build().unwrap()
}

pub fn http_client_builder() -> reqwest::ClientBuilder {
    openai_proxy::upstream::install_crypto_provider();
    reqwest::Client::builder()
}

/// Starts a streaming chat request at `url` with the test wrapper key, reads its first chunk and
/// leaves: the response and the client are dropped, as a departing caller's would be.
pub async fn leave_after_first_chunk(url: &str) {
    let client = http_client_builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let response = client
        .post(url)
        .bearer_auth(WRAPPER_KEY)
        .header("content-type", "application/json")
        .body(r#"{"stream":true}"#)
        .send()
        .await
        .unwrap();
    let mut chunks = response.bytes_stream();
    futures_util::StreamExt::next(&mut chunks)
        .await
        .unwrap()
        .unwrap();
}

/// The router served in-process on a free port, over real sockets.
pub struct InProcessProxy {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl InProcessProxy {
    pub async fn start(upstream_base_url: &str, extra: &[(&str, &str)]) -> Self {
        Self::serve(state(upstream_base_url, extra).await).await
    }

    pub async fn serve(state: AppState) -> Self {
        let app = router(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs `body` to `path` with the test wrapper key, bounded in time.
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        http_client()
            .post(self.url(path))
            .bearer_auth(WRAPPER_KEY)
            .body(body)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .unwrap()
    }
}

impl Drop for InProcessProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A file in a fresh temporary directory that is removed when the guard drops.
static TEMP_FILES: AtomicUsize = AtomicUsize::new(0);

pub struct TempFile {
    dir: PathBuf,
    pub path: PathBuf,
}

impl TempFile {
    pub fn with_contents(name: &str, contents: &str) -> Self {
        let unique = format!(
            "openai-proxy-test-{}-{}",
            std::process::id(),
            TEMP_FILES.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        Self { dir, path }
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
