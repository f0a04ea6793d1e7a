//! Secrets Manager and DynamoDB for the tests: moto's server on a free loopback port, handling one
//! request at a time (tests/e2e/moto_serial.py), reached through the real `aws-sdk-secretsmanager`
//! and `aws-sdk-dynamodb`, plus a relay in front of it that counts `GetSecretValue` calls, can
//! hold them until the test releases them, and can answer with an injected fault instead of
//! forwarding.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ChildGuard, manifest_dir, python};

pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";

pub struct Moto {
    pub endpoint: String,
    process: Option<ChildGuard>,
}

impl Moto {
    /// Starts moto's server from the test virtualenv and waits (bounded) until it answers. It is
    /// `moto_server` with request handling serialised: moto's DynamoDB takes no lock, so two
    /// concurrent conditional updates of one item could both pass, where DynamoDB lets one.
    pub async fn start() -> Self {
        // moto_server is installed with moto[server], which the launcher imports.
        let server = python().with_file_name("moto_server");
        assert!(
            server.exists(),
            "{} not found: run `make test` (it installs moto[server] into .venv)",
            server.display()
        );
        // moto takes a port number, so pick a free one and hand it over.
        let port = super::upstream::closed_port().port();
        let child = Command::new(python())
            .arg(manifest_dir().join("tests/e2e/moto_serial.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // The README's role steps attach AWS's managed logging policy.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut moto = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            process: Some(ChildGuard(child)),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = super::http_client();
        loop {
            let probe = http
                .get(format!("{}/moto-api/", moto.endpoint))
                .send()
                .await;
            if probe.is_ok() {
                return moto;
            }
            // A launcher that cannot start (an import error, the port taken) fails now, not
            // after the whole deadline.
            if let Some(process) = moto.process.as_mut() {
                let exited = process.0.try_wait().unwrap();
                assert!(
                    exited.is_none(),
                    "moto_serial.py exited at start ({exited:?}): run `make test` (it installs \
                     moto[server] into .venv)"
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server mid-test, as an outage would.
    pub fn stop(&mut self) {
        self.process.take();
    }

    pub fn client(&self) -> Client {
        client_for(&self.endpoint)
    }

    pub async fn create_secret(&self, name: &str, value: &str) {
        self.client()
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }

    pub async fn put_secret(&self, name: &str, value: &str) {
        self.client()
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }

    /// The shared AWS configuration the proxy builds its clients from, pointed at this moto
    /// with its dummy credentials.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        let credentials = Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "moto");
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
            )
            .endpoint_url(&self.endpoint)
            .http_client(openai_proxy::aws::https_client())
            .build()
    }

    /// The environment that points the proxy binary's AWS clients (Secrets Manager, DynamoDB)
    /// at this moto, with its dummy credentials.
    pub fn aws_env(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", self.endpoint.as_str()),
            ("AWS_ENDPOINT_URL_DYNAMODB", self.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
    }

    /// A DynamoDB client for this moto.
    pub fn dynamodb_client(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config())
    }

    /// Creates the limits table `name` from template.yaml's `LimitsTable` resource
    /// (tests/e2e/limits_table.py), so the tests' table has the deployed schema.
    pub async fn create_limits_table(&self, name: &str) {
        let mut script = tokio::process::Command::new(python());
        script
            .arg(manifest_dir().join("tests/e2e/limits_table.py"))
            .args(["--endpoint", &self.endpoint, "--name", name, "--template"])
            .arg(manifest_dir().join("template.yaml"))
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(60), script.output())
            .await
            .expect("limits_table.py did not finish in time")
            .unwrap();
        assert!(
            output.status.success(),
            "limits_table.py could not create {name}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A Secrets Manager client for a local endpoint with moto's dummy credentials.
pub fn client_for(endpoint: &str) -> Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "moto",
        ))
        .endpoint_url(endpoint)
        .http_client(openai_proxy::aws::https_client())
        .build();
    Client::from_conf(config)
}

/// What the relay answers instead of forwarding, while set.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    Throttling,
    AccessDenied,
}

/// Forwards everything to moto, counting `GetSecretValue` calls. While held, a call is counted
/// when it arrives and forwarded (or faulted) only once released, so a test can gather callers
/// behind one refresh that is still in flight.
pub struct Relay {
    pub endpoint: String,
    calls: Arc<watch::Sender<usize>>,
    held: Arc<watch::Sender<bool>>,
    fault: Arc<Mutex<Option<Fault>>>,
    task: JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: &str) -> Self {
        let calls = Arc::new(watch::Sender::new(0));
        let held = Arc::new(watch::Sender::new(false));
        let fault = Arc::new(Mutex::new(None));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (target, counted, gate, injected) = (
            target.to_owned(),
            calls.clone(),
            held.clone(),
            fault.clone(),
        );
        let http = super::http_client();
        let app = axum::Router::new().fallback(move |request: Request| {
            let (target, counted, gate, injected, http) = (
                target.clone(),
                counted.clone(),
                gate.clone(),
                injected.clone(),
                http.clone(),
            );
            async move {
                let (parts, body) = request.into_parts();
                let is_get = parts
                    .headers
                    .get("x-amz-target")
                    .is_some_and(|target| target == "secretsmanager.GetSecretValue");
                if is_get {
                    counted.send_modify(|calls| *calls += 1);
                    // Ends on release; the sender lives as long as this handler.
                    let _ = gate.subscribe().wait_for(|held| !*held).await;
                    let fault = *injected.lock().unwrap();
                    if let Some(fault) = fault {
                        return fault_response(fault);
                    }
                }
                let body = body.collect().await.unwrap().to_bytes();
                let uri = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let forwarded = http
                    .request(parts.method, format!("{target}{uri}"))
                    .headers(parts.headers)
                    .body(body)
                    .send()
                    .await;
                match forwarded {
                    Ok(answer) => {
                        let mut response = Response::builder().status(answer.status());
                        for (name, value) in answer.headers() {
                            if name != "transfer-encoding" && name != "connection" {
                                response = response.header(name, value);
                            }
                        }
                        let bytes = answer.bytes().await.unwrap_or_default();
                        response.body(Body::from(bytes)).unwrap()
                    }
                    Err(_) => StatusCode::BAD_GATEWAY.into_response(),
                }
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            endpoint: format!("http://{addr}"),
            calls,
            held,
            fault,
            task,
        }
    }

    /// Calls that have arrived, held ones included.
    pub fn get_secret_value_calls(&self) -> usize {
        *self.calls.borrow()
    }

    /// Waits until `calls` calls have arrived; the caller bounds the wait.
    pub async fn until_calls(&self, calls: usize) {
        let mut arrived = self.calls.subscribe();
        let _ = arrived.wait_for(|arrived| *arrived >= calls).await;
    }

    /// Holds every `GetSecretValue` call from now until [`Relay::release`].
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    pub fn release(&self) {
        self.held.send_replace(false);
    }

    pub fn inject(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap() = fault;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.release();
        self.task.abort();
    }
}

/// Secrets Manager's JSON error shape, as the SDK parses it.
fn fault_response(fault: Fault) -> Response {
    let (status, code, message) = match fault {
        Fault::Throttling => (
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Rate exceeded",
        ),
        Fault::AccessDenied => (
            StatusCode::BAD_REQUEST,
            "AccessDeniedException",
            "User is not authorized to perform: secretsmanager:GetSecretValue",
        ),
    };
    let body = format!(r#"{{"__type":"{code}","message":"{message}"}}"#);
    (
        status,
        [("content-type", "application/x-amz-json-1.1")],
        body,
    )
        .into_response()
}
