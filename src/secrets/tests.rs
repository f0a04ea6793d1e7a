//! Error classification against the real SDK client with mocked responses (aws-smithy-mocks):
//! the SDK parses each response into its own error type, which `classify` must sort correctly.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::get_secret_value::{
    GetSecretValueError, GetSecretValueOutput,
};
use aws_sdk_secretsmanager::types::error::ResourceNotFoundException;
use aws_smithy_mocks::{mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

use super::*;

fn error_response(status: u16, code: &str) -> HttpResponse {
    let body = format!(r#"{{"__type":"{code}","message":"mocked {code}"}}"#);
    HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body))
}

async fn fetch_with(rule: aws_smithy_mocks::Rule) -> Result<Arc<KeyMap>, SourceError> {
    // No retries: each case is about how one response is classified.
    let client = mock_client!(
        aws_sdk_secretsmanager,
        aws_smithy_mocks::RuleMode::MatchAny,
        [&rule],
        |conf| conf.retry_config(aws_sdk_secretsmanager::config::retry::RetryConfig::disabled())
    );
    SecretsManagerSource::new(client, "openai-proxy/keys".to_owned())
        .fetch()
        .await
}

#[tokio::test]
async fn a_secret_string_is_parsed_into_the_map() {
    let rule = mock!(Client::get_secret_value)
        .match_requests(|input| input.secret_id() == Some("openai-proxy/keys"))
        .then_output(|| {
            GetSecretValueOutput::builder()
                .secret_string(r#"{"wrapper-key-alice": "sk-alice"}"#)
                .build()
        });
    let map = fetch_with(rule).await.unwrap();
    assert_eq!(map.len(), 1);
}

#[tokio::test]
async fn a_malformed_secret_is_reported_without_its_contents() {
    let rule = mock!(Client::get_secret_value).then_output(|| {
        GetSecretValueOutput::builder()
            .secret_string(r#"{"wrapper-secret": 12}"#)
            .build()
    });
    let err = fetch_with(rule).await.unwrap_err();
    assert!(matches!(err, SourceError::Malformed { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("secret openai-proxy/keys: member #1"),
        "{message}"
    );
    assert!(!message.contains("wrapper-secret"), "{message}");
}

#[tokio::test]
async fn missing_secrets_and_denied_access_are_permanent() {
    let not_found = mock!(Client::get_secret_value).then_error(|| {
        GetSecretValueError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("Secrets Manager can't find the specified secret.")
                .build(),
        )
    });
    let err = fetch_with(not_found).await.unwrap_err();
    assert!(matches!(err, SourceError::Permanent(_)), "{err:?}");
    assert!(
        err.to_string().contains("ResourceNotFoundException"),
        "{err}"
    );

    for code in [
        "AccessDeniedException",
        "DecryptionFailure",
        "InvalidRequestException",
    ] {
        let rule =
            mock!(Client::get_secret_value).then_http_response(move || error_response(400, code));
        let err = fetch_with(rule).await.unwrap_err();
        assert!(matches!(err, SourceError::Permanent(_)), "{code}: {err:?}");
        assert!(err.to_string().contains(code), "{err}");
    }
}

#[tokio::test]
async fn throttling_and_server_errors_are_transient() {
    let cases = [
        (400, "ThrottlingException"),
        (400, "TooManyRequestsException"),
        (500, "InternalServiceError"),
        (503, "ServiceUnavailable"),
        (502, "SomethingNew"),
    ];
    for (status, code) in cases {
        let rule = mock!(Client::get_secret_value)
            .then_http_response(move || error_response(status, code));
        let err = fetch_with(rule).await.unwrap_err();
        assert!(
            matches!(err, SourceError::Transient(_)),
            "{status} {code}: {err:?}"
        );
    }
}

#[test]
fn timeouts_are_transient() {
    let err: SdkError<GetSecretValueError> = SdkError::timeout_error("operation timed out");
    assert!(matches!(
        classify("secret s", &err),
        SourceError::Transient(_)
    ));
}
