//! The AWS configuration every AWS client of the proxy shares (Secrets Manager for the key map,
//! DynamoDB for limits): the standard chain for region and credentials (the Lambda environment,
//! or a profile locally), `AWS_ENDPOINT_URL_<SERVICE>` overrides, one HTTPS client, and few
//! retries. Each client sets its own timeouts on top.

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::config::SharedHttpClient;

pub async fn shared_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
        .load()
        .await
}

/// The AWS SDK's HTTPS client on rustls with ring, the one crypto library in the binary.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}
