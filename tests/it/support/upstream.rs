//! A fake upstream on a free loopback port. It records every request it receives (tests assert on
//! what actually arrived) and answers through a responder the test chooses.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::serve::ListenerExt;
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub type Responder = Arc<dyn Fn(&Received) -> Response + Send + Sync>;

/// Put on a response (as an extension) to hold its status line back this long: an upstream
/// that thinks before it answers.
#[derive(Debug, Clone, Copy)]
pub struct HeadDelay(pub std::time::Duration);

pub struct FakeUpstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl FakeUpstream {
    pub async fn start(responder: impl Fn(&Received) -> Response + Send + Sync + 'static) -> Self {
        let responder: Responder = Arc::new(responder);
        let received = Arc::new(Mutex::new(Vec::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = received.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let responder = responder.clone();
            let log = log.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                let seen = Received {
                    method: parts.method,
                    path_and_query: parts.uri.path_and_query().unwrap().to_string(),
                    headers: parts.headers,
                    body,
                };
                log.lock().unwrap().push(seen.clone());
                let response = responder(&seen);
                if let Some(HeadDelay(delay)) = response.extensions().get::<HeadDelay>() {
                    tokio::time::sleep(*delay).await;
                }
                response
            }
        });
        let listener = listener.tap_io(|stream| stream.set_nodelay(true).unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            received,
            task,
        }
    }

    /// The value for `UPSTREAM_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A response whose body the test writes chunk by chunk, so it controls exactly when the
/// upstream sends each piece.
pub fn scripted_stream(content_type: &'static str) -> (mpsc::Sender<Bytes>, Response) {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    let response = Response::builder()
        .header("content-type", content_type)
        .body(Body::from_stream(stream))
        .unwrap();
    (tx, response)
}

/// `frames` SSE frames 50 ms apart. `produced` counts the frames generated so far, and `guard` is
/// dropped with the stream: both show when the stream to a departed client stops.
fn counted_frames<G: Send + 'static>(
    frames: usize,
    produced: Arc<std::sync::atomic::AtomicUsize>,
    guard: G,
) -> Response {
    let stream = futures_util::stream::unfold((0, guard), move |(n, guard)| {
        let produced = produced.clone();
        async move {
            if n == frames {
                return None;
            }
            if n > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            produced.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let frame = Bytes::from(format!("data: {{\"n\":{n}}}\n\n"));
            Some((Ok::<_, std::convert::Infallible>(frame), (n + 1, guard)))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Signals when dropped: the fake upstream's response body is dropped when its connection closes.
struct DropSignal(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(signal) = self.0.take() {
            let _ = signal.send(());
        }
    }
}

/// An upstream whose one streaming answer runs long (`frames` frames 50 ms apart) unless the
/// proxy drops it: how many frames it has produced, and a signal when its stream was dropped.
pub struct LongStream {
    pub upstream: FakeUpstream,
    pub produced: Arc<std::sync::atomic::AtomicUsize>,
    pub dropped: tokio::sync::oneshot::Receiver<()>,
}

pub async fn long_stream(frames: usize) -> LongStream {
    let (dropped_tx, dropped) = tokio::sync::oneshot::channel();
    let slot = Mutex::new(Some(dropped_tx));
    let produced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = produced.clone();
    let upstream = FakeUpstream::start(move |_| {
        counted_frames(
            frames,
            counter.clone(),
            DropSignal(slot.lock().unwrap().take()),
        )
    })
    .await;
    LongStream {
        upstream,
        produced,
        dropped,
    }
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}
