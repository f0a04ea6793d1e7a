use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_credential_types::provider::future;
use sha2::{Digest, Sha256};

use super::*;

/// A credential source that counts how often it is asked, handing out credentials that expire
/// `lifetime` from now.
#[derive(Debug)]
struct Counted {
    calls: Arc<AtomicUsize>,
    lifetime: Duration,
}

impl ProvideCredentials for Counted {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        self.calls.fetch_add(1, Ordering::SeqCst);
        future::ProvideCredentials::ready(Ok(Credentials::new(
            "AKIDTESTTEST",
            "secret-test-key",
            Some("session-token-test".to_owned()),
            Some(SystemTime::now() + self.lifetime),
            "test",
        )))
    }
}

fn signer(lifetime: Duration) -> (Signer, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = SharedCredentialsProvider::new(Counted {
        calls: calls.clone(),
        lifetime,
    });
    (Signer::new(Some(provider)), calls)
}

fn request(body: &'static [u8]) -> http::Request<Bytes> {
    http::Request::post(
        "https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1/chat/completions",
    )
    .header("content-type", "application/json")
    .body(Bytes::from_static(body))
    .unwrap()
}

#[tokio::test]
async fn requests_are_signed_for_the_service_and_region_over_their_body() {
    let (signer, _) = signer(Duration::from_secs(3600));
    let mut signed = request(br#"{"model":"m"}"#);
    signer
        .sign(&mut signed, "us-east-1", "bedrock")
        .await
        .unwrap();
    let headers = signed.headers();
    let authorization = headers["authorization"].to_str().unwrap();
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTESTTEST/"),
        "{authorization}"
    );
    assert!(authorization.contains("/us-east-1/bedrock/aws4_request"));
    assert!(authorization.contains(
        "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
    ));
    let digest: String = Sha256::digest(br#"{"model":"m"}"#)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(headers["x-amz-content-sha256"], digest.as_str());
    assert_eq!(headers["x-amz-security-token"], "session-token-test");
    assert!(headers["authorization"].is_sensitive());
    assert!(headers.contains_key("x-amz-date"));
    assert!(!format!("{signer:?}").contains("secret"));
}

#[tokio::test]
async fn credentials_are_fetched_once_while_fresh() {
    let (signer, calls) = signer(Duration::from_secs(3600));
    for _ in 0..5 {
        signer
            .sign(&mut request(b"{}"), "us-east-1", "bedrock")
            .await
            .unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn credentials_about_to_expire_are_refreshed_first() {
    let (signer, calls) = signer(REFRESH_BEFORE / 2);
    for _ in 0..3 {
        signer
            .sign(&mut request(b"{}"), "us-east-1", "bedrock")
            .await
            .unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A credential source that always fails, counting how often it is asked.
#[derive(Debug)]
struct Failing(Arc<AtomicUsize>);

impl ProvideCredentials for Failing {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        self.0.fetch_add(1, Ordering::SeqCst);
        future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded("none here"),
        ))
    }
}

#[tokio::test]
async fn a_failing_credential_chain_is_not_asked_again_at_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let signer = Signer::new(Some(SharedCredentialsProvider::new(Failing(calls.clone()))));
    for _ in 0..3 {
        let err = signer
            .sign(&mut request(b"{}"), "us-east-1", "bedrock")
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyError::UpstreamCredentials));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_credentials_the_request_is_not_sent() {
    let signer = Signer::new(None);
    let err = signer
        .sign(&mut request(b"{}"), "us-east-1", "bedrock")
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::UpstreamCredentials));
}
