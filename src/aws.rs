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

/// The AWS SDK's HTTPS client on rustls with ring, the one crypto library in the binary,
/// trusting the roots the upstreams' client trusts (`tls.rs`) instead of reading them again.
pub fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls;
    let roots = tls::TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(crate::tls::roots().pem());
    let context = tls::TlsContext::builder().with_trust_store(roots).build();
    let builder = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::Ring,
    ));
    match context {
        Ok(context) => builder.tls_context(context).build_https(),
        // Building a context cannot fail today (the PEM is checked when a connection is made);
        // should it ever, the SDK reads the system's roots itself, as it did before `tls.rs`.
        Err(error) => {
            tracing::warn!(%error, "the AWS SDK's client reads the trusted roots itself");
            builder.build_https()
        }
    }
}
