//! Requests to an `aws-sigv4` upstream (Amazon Bedrock's OpenAI-compatible API) are signed with
//! the process's own AWS credentials, from the standard chain (the Lambda role, the environment,
//! a profile): no key is stored anywhere. Signing is the AWS SDK's own (`aws-sigv4`), over the
//! exact request sent, body included (`x-amz-content-sha256`). Credentials are cached and
//! refreshed before they expire, one refresh at a time; never read per request.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue};

use crate::error::ProxyError;

/// Credentials that expire sooner than this are refreshed first (Lambda's role credentials are
/// renewed well before their end; this only matters for a process that outlives them).
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// After the credential chain fails, requests are refused this long without asking it again,
/// so a burst does not queue behind one timeout after another.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

pub struct Signer {
    provider: Option<SharedCredentialsProvider>,
    cached: std::sync::RwLock<Option<Credentials>>,
    /// One refresh at a time; holds when the last one failed.
    refresh: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(*****)")
    }
}

impl Signer {
    /// The standard credential chain, as every AWS SDK reads it.
    pub async fn from_environment() -> Self {
        // The SDK's own HTTPS client on ring (as for Secrets Manager): providers that fetch
        // credentials over the network (SSO, IMDS, containers) need one.
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(crate::aws::https_client())
            .load()
            .await;
        Self::new(config.credentials_provider())
    }

    pub fn new(provider: Option<SharedCredentialsProvider>) -> Self {
        Self {
            provider,
            cached: std::sync::RwLock::new(None),
            refresh: tokio::sync::Mutex::new(None),
        }
    }

    /// Signs `request` (its method, URL, headers and whole body) for `service` in `region`.
    pub async fn sign(
        &self,
        request: &mut http::Request<Bytes>,
        region: &str,
        service: &str,
    ) -> Result<(), ProxyError> {
        let identity: Identity = self.credentials().await?.into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|_| ProxyError::UpstreamCredentials)?
            .into();
        let uri = request.uri().to_string();
        // A header value that is not visible ASCII cannot be signed; it still goes, unsigned.
        let headers = request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        let signable = SignableRequest::new(
            request.method().as_str(),
            &uri,
            headers,
            SignableBody::Bytes(request.body()),
        )
        .map_err(|_| ProxyError::UpstreamCredentials)?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|_| ProxyError::UpstreamCredentials)?
            .into_parts();
        let mut signed = Vec::new();
        for (name, value) in instructions.headers() {
            let name = HeaderName::from_bytes(name.as_bytes());
            let value = HeaderValue::from_str(value);
            let (Ok(name), Ok(mut value)) = (name, value) else {
                return Err(ProxyError::UpstreamCredentials);
            };
            value.set_sensitive(true);
            signed.push((name, value));
        }
        for (name, value) in signed {
            request.headers_mut().insert(name, value);
        }
        Ok(())
    }

    /// The cached credentials while they are fresh; else one caller refreshes them for all.
    async fn credentials(&self) -> Result<Credentials, ProxyError> {
        if let Some(fresh) = self.fresh() {
            return Ok(fresh);
        }
        let mut failed_at = self.refresh.lock().await;
        if let Some(fresh) = self.fresh() {
            return Ok(fresh);
        }
        if failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILURE) {
            return Err(ProxyError::UpstreamCredentials);
        }
        let provider = self
            .provider
            .as_ref()
            .ok_or(ProxyError::UpstreamCredentials)?;
        let credentials = provider.provide_credentials().await.map_err(|err| {
            *failed_at = Some(std::time::Instant::now());
            tracing::warn!(
                error = %aws_sdk_secretsmanager::error::DisplayErrorContext(&err),
                "no AWS credentials to sign upstream requests with"
            );
            ProxyError::UpstreamCredentials
        })?;
        *failed_at = None;
        match self.cached.write() {
            Ok(mut cached) => *cached = Some(credentials.clone()),
            Err(poisoned) => *poisoned.into_inner() = Some(credentials.clone()),
        }
        Ok(credentials)
    }

    fn fresh(&self) -> Option<Credentials> {
        let cached = match self.cached.read() {
            Ok(cached) => cached.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }?;
        let deadline = SystemTime::now() + REFRESH_BEFORE;
        cached
            .expiry()
            .is_none_or(|expiry| expiry > deadline)
            .then_some(cached)
    }
}

#[cfg(test)]
mod tests;
