//! Where the key map document comes from: one Secrets Manager secret in production, a local JSON
//! file otherwise. A source fetches and parses; the cache decides when. Errors are classified as
//! transient (worth retrying, keep the last good map) or permanent, and never quote the document.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use futures_util::future::BoxFuture;

use crate::keymap::{KeyMap, KeyMapError};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Throttling, timeouts, 5xx, network trouble: try again later.
    #[error("{0}")]
    Transient(String),
    /// Missing secret, access denied, unreadable file: an operator has to act.
    #[error("{0}")]
    Permanent(String),
    /// The document was fetched but is not a valid key map.
    #[error("{location}: {reason}")]
    Malformed {
        location: String,
        reason: KeyMapError,
    },
}

pub trait KeySource: Send + Sync {
    /// `"file"` or `"secretsmanager"`, for logs and `/health`.
    fn kind(&self) -> &'static str;
    fn fetch(&self) -> BoxFuture<'_, Result<Arc<KeyMap>, SourceError>>;
}

pub struct FileSource {
    pub path: PathBuf,
}

impl KeySource for FileSource {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Arc<KeyMap>, SourceError>> {
        Box::pin(async move {
            let location = format!("key map file {}", self.path.display());
            let document = tokio::fs::read(&self.path).await.map_err(|err| {
                SourceError::Permanent(format!("{location}: cannot be read: {err}"))
            })?;
            parse(location, &document)
        })
    }
}

pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

/// Secrets Manager answers in milliseconds; a request waiting on a refresh should not wait long.
const SECRETS_MANAGER_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
const SECRETS_MANAGER_OPERATION_TIMEOUT: Duration = Duration::from_secs(6);

impl SecretsManagerSource {
    /// A client from the shared AWS configuration (`aws.rs`; `AWS_ENDPOINT_URL_SECRETS_MANAGER`
    /// overrides the endpoint).
    pub fn from_config(config: &aws_config::SdkConfig, secret_id: String) -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_attempt_timeout(SECRETS_MANAGER_ATTEMPT_TIMEOUT)
            .operation_timeout(SECRETS_MANAGER_OPERATION_TIMEOUT)
            .build();
        let config = aws_sdk_secretsmanager::config::Builder::from(config)
            .timeout_config(timeouts)
            .build();
        Self::new(aws_sdk_secretsmanager::Client::from_conf(config), secret_id)
    }

    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: String) -> Self {
        Self { client, secret_id }
    }
}

impl KeySource for SecretsManagerSource {
    fn kind(&self) -> &'static str {
        "secretsmanager"
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Arc<KeyMap>, SourceError>> {
        Box::pin(async move {
            let location = format!("secret {}", self.secret_id);
            let output = self
                .client
                .get_secret_value()
                .secret_id(&self.secret_id)
                .send()
                .await
                .map_err(|err| classify(&location, &err))?;
            let document = match (output.secret_string(), output.secret_binary()) {
                (Some(text), _) => text.as_bytes(),
                (None, Some(blob)) => blob.as_ref(),
                (None, None) => {
                    return Err(SourceError::Permanent(format!("{location}: has no value")));
                }
            };
            parse(location, document)
        })
    }
}

fn parse(location: String, document: &[u8]) -> Result<Arc<KeyMap>, SourceError> {
    KeyMap::parse(document)
        .map(Arc::new)
        .map_err(|reason| SourceError::Malformed { location, reason })
}

/// Error codes that clear up by themselves.
const TRANSIENT_CODES: [&str; 5] = [
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalServiceError",
    "ServiceUnavailable",
];

/// Sorts an SDK failure into transient or permanent. The message carries the error code and the
/// service's own text (which names the secret, never its value).
pub fn classify(location: &str, err: &SdkError<GetSecretValueError>) -> SourceError {
    match err {
        SdkError::TimeoutError(_) => SourceError::Transient(format!("{location}: timed out")),
        SdkError::DispatchFailure(failure) => {
            let what = if failure.is_timeout() {
                "timed out"
            } else {
                "could not be reached"
            };
            SourceError::Transient(format!("{location}: Secrets Manager {what}"))
        }
        SdkError::ResponseError(_) => SourceError::Transient(format!(
            "{location}: unreadable response from Secrets Manager"
        )),
        SdkError::ServiceError(service) => {
            let err = service.err();
            let status = service.raw().status().as_u16();
            let code = match err {
                GetSecretValueError::ResourceNotFoundException(_) => "ResourceNotFoundException",
                GetSecretValueError::DecryptionFailure(_) => "DecryptionFailure",
                GetSecretValueError::InvalidParameterException(_) => "InvalidParameterException",
                GetSecretValueError::InvalidRequestException(_) => "InvalidRequestException",
                GetSecretValueError::InternalServiceError(_) => "InternalServiceError",
                _ => err.code().unwrap_or("UnknownError"),
            };
            let text = format!(
                "{location}: {code} (HTTP {status}) {}",
                err.message().unwrap_or("")
            );
            if status >= 500 || TRANSIENT_CODES.contains(&code) {
                SourceError::Transient(text)
            } else {
                SourceError::Permanent(text)
            }
        }
        _ => SourceError::Permanent(format!("{location}: the request could not be built")),
    }
}

#[cfg(test)]
mod tests;
