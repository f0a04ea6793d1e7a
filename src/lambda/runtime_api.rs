//! The Lambda Runtime API, as a function uses it (docs.aws.amazon.com/lambda/latest/dg/
//! runtimes-api.html, and runtimes-custom.html for response streaming): `GET …/invocation/next`
//! for an event, `POST …/invocation/{id}/response` streamed (a JSON prelude with the status and
//! headers, eight NUL bytes, then the body as it comes; a failure mid-body in the trailers:
//! `runtime_api/streamed.rs`), and `POST …/invocation/{id}/error`.

use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use futures_util::FutureExt as _;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use lambda_http::Error as BoxError;
use lambda_http::lambda_runtime::MetadataPrelude;

mod streamed;

use streamed::Streamed;

const REQUEST_ID: &str = "lambda-runtime-aws-request-id";
const INVOCATION_ID: &str = "lambda-runtime-invocation-id";
const ERROR_TYPE: &str = "lambda-runtime-function-error-type";
const ERROR_BODY: &str = "lambda-runtime-function-error-body";
/// The response's media type for a function URL (or API Gateway) in streaming mode.
const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";

type PostBody = UnsyncBoxBody<Bytes, BoxError>;

/// One worker's client. A worker asks for an event, answers it, and only then asks for the
/// next: one connection, kept open, carries all of it (no pool to check out of), and a clone is
/// another worker with a connection of its own. When that connection is still busy (an answer's
/// body still going out), the next request opens another.
pub struct RuntimeApi {
    /// `host:port`, where the API listens.
    address: String,
    /// The `Host` header's value.
    host: HeaderValue,
    /// `/2018-06-01/runtime` (or under the path `cargo lambda watch` gives).
    base: String,
    /// `{base}/invocation/next`, asked for every invocation: made once.
    next: Uri,
    /// The connection, between requests (`None`: not made yet, or lost).
    idle: std::sync::Mutex<Option<SendRequest<PostBody>>>,
}

impl Clone for RuntimeApi {
    fn clone(&self) -> Self {
        Self {
            address: self.address.clone(),
            host: self.host.clone(),
            base: self.base.clone(),
            next: self.next.clone(),
            idle: std::sync::Mutex::default(),
        }
    }
}

/// One invocation, as `/next` gave it.
pub struct Next {
    pub request_id: String,
    /// Under Lambda Managed Instances, echoed on the response.
    invocation_id: Option<HeaderValue>,
    pub headers: HeaderMap,
    pub event: Bytes,
}

impl RuntimeApi {
    /// The Runtime API at `AWS_LAMBDA_RUNTIME_API`.
    pub fn from_env() -> Result<Self, BoxError> {
        let address = std::env::var("AWS_LAMBDA_RUNTIME_API")?;
        // Lambda gives `host:port`; `cargo lambda watch` a whole URL with a path.
        let address = address.trim().trim_end_matches('/');
        let (address, path) = match address.split_once("://") {
            Some((_, rest)) => rest
                .split_once('/')
                .map_or((rest, ""), |(address, path)| (address, path)),
            None => (address, ""),
        };
        let base = match path {
            "" => "/2018-06-01/runtime".to_owned(),
            path => format!("/{path}/2018-06-01/runtime"),
        };
        Ok(Self {
            address: address.to_owned(),
            host: HeaderValue::from_str(address)?,
            next: Uri::try_from(format!("{base}/invocation/next"))?,
            base,
            idle: std::sync::Mutex::default(),
        })
    }

    /// Sends `request` on this worker's connection (made first if there is none, or made again
    /// if the one there was closed before the request went out) and waits for the answer's head.
    async fn send(&self, mut request: Request<PostBody>) -> Result<Response<Incoming>, BoxError> {
        request
            .headers_mut()
            .insert(axum::http::header::HOST, self.host.clone());
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        // Only a connection that is free now: one still sending an answer's body (a Runtime API
        // may acknowledge a streamed response before reading all of it) is left to finish on
        // its own, as a pool would, and the request goes on a new one.
        let ready = match idle {
            Some(mut sender) => {
                matches!(sender.ready().now_or_never(), Some(Ok(()))).then_some(sender)
            }
            None => None,
        };
        let mut sender = match ready {
            Some(sender) => sender,
            None => self.connect().await?,
        };
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut failed) => match failed.take_message() {
                // Closed before the request was written (the API ended an idle connection).
                Some(request) => {
                    sender = self.connect().await?;
                    sender.send_request(request).await?
                }
                None => return Err(failed.into_error().into()),
            },
        };
        *self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sender);
        Ok(response)
    }

    async fn connect(&self) -> Result<SendRequest<PostBody>, BoxError> {
        let stream = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|err| {
                format!(
                    "the Lambda Runtime API at {} cannot be reached: {err}",
                    self.address
                )
            })?;
        // Small writes (the prelude, each streamed chunk) must not wait for the last one's ACK.
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "the Lambda Runtime API connection ended");
            }
        });
        Ok(sender)
    }

    /// Waits for the next event (a long poll).
    pub async fn next(&self) -> Result<Next, BoxError> {
        let request = Request::get(self.next.clone()).body(empty())?;
        let response = self.send(request).await.map_err(|err| {
            format!(
                "the Lambda Runtime API at {} cannot be reached: {err}",
                self.address,
            )
        })?;
        let (parts, body) = response.into_parts();
        if !parts.status.is_success() {
            return Err(format!("the Runtime API answered {} to /next", parts.status).into());
        }
        let event = body.collect().await?.to_bytes();
        let request_id = parts
            .headers
            .get(REQUEST_ID)
            .and_then(|id| id.to_str().ok())
            .ok_or("an event without a request id")?
            .to_owned();
        Ok(Next {
            request_id,
            invocation_id: parts.headers.get(INVOCATION_ID).cloned(),
            headers: parts.headers,
            event,
        })
    }

    /// Streams `response` back as the invocation's answer; the `Ok` is the Runtime API's
    /// acknowledgement once the whole body went out.
    pub async fn respond(&self, next: &Next, response: Response<Body>) -> Result<(), BoxError> {
        let (parts, body) = response.into_parts();
        let mut headers = parts.headers;
        let cookies = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|cookie| String::from_utf8_lossy(cookie.as_bytes()).into_owned())
            .collect();
        headers.remove(SET_COOKIE);
        headers
            .entry(CONTENT_TYPE)
            .or_insert(HeaderValue::from_static("application/octet-stream"));
        let prelude = MetadataPrelude {
            status_code: parts.status,
            headers,
            cookies,
        };
        let streamed = Streamed {
            head: vec![
                Bytes::from(serde_json::to_vec(&prelude)?),
                Bytes::from_static(&[0; 8]),
            ],
            body,
            over: false,
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!(
                "{}/invocation/{}/response",
                self.base, next.request_id
            ))
            .header("lambda-runtime-function-response-mode", "streaming")
            .header(CONTENT_TYPE, HTTP_INTEGRATION)
            .header("trailer", ERROR_TYPE)
            .header("trailer", ERROR_BODY)
            .body(UnsyncBoxBody::new(streamed))?;
        if let Some(id) = &next.invocation_id {
            request.headers_mut().insert(INVOCATION_ID, id.clone());
        }
        self.acknowledged(request).await
    }

    /// Reports that the invocation failed before it had an answer.
    pub async fn error(&self, next: &Next, kind: &str, message: &str) -> Result<(), BoxError> {
        let body = serde_json::json!({"errorType": kind, "errorMessage": message}).to_string();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!(
                "{}/invocation/{}/error",
                self.base, next.request_id
            ))
            .header(ERROR_TYPE, kind)
            .header(CONTENT_TYPE, "application/json")
            .body(full(body))?;
        if let Some(id) = &next.invocation_id {
            request.headers_mut().insert(INVOCATION_ID, id.clone());
        }
        tracing::error!(requestId = %next.request_id, error = message, "invocation failed");
        self.acknowledged(request).await
    }

    async fn acknowledged(&self, request: Request<PostBody>) -> Result<(), BoxError> {
        let response = self.send(request).await?;
        let status = response.status();
        // Read to the end, so the connection is ready for the next request.
        let _ = response.into_body().collect().await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the Runtime API answered {status}").into())
        }
    }
}

fn empty() -> PostBody {
    full(Bytes::new())
}

fn full(bytes: impl Into<Bytes>) -> PostBody {
    UnsyncBoxBody::new(http_body_util::Full::new(bytes.into()).map_err(|never| match never {}))
}
