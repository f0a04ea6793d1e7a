//! Counters in one DynamoDB table, shared by every instance of the proxy. Each change is one
//! `UpdateItem` whose condition is the fit: DynamoDB applies it only if the counts, as they stand
//! when it is applied, stay within the limits, so concurrent requests from any number of
//! processes are admitted exactly up to the limit (never a read, then a write). The table's
//! schema is template.yaml's `LimitsTable`: a string hash key `pk`, TTL on `expires_at`; the
//! proxy never creates it, and needs only `dynamodb:UpdateItem` on it.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use futures_util::future::BoxFuture;

use super::store::{Counted, Counts, LimitStore, StoreError, Update};

pub struct DynamoStore {
    client: Client,
    table: String,
}

/// A counter update is one small write: a request should not wait long on a slow table before
/// `LIMITS_ON_STORE_ERROR` decides.
const TIMEOUT: Duration = Duration::from_secs(1);

impl DynamoStore {
    /// A client from the shared AWS configuration (`AWS_ENDPOINT_URL_DYNAMODB` overrides the
    /// endpoint, as the SDK defines), which never retries: an `ADD` that timed out or failed
    /// with a 5xx may still have been applied, and applying it again would count twice.
    pub fn new(config: &aws_config::SdkConfig, table: String) -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(TIMEOUT)
            .operation_attempt_timeout(TIMEOUT)
            .operation_timeout(TIMEOUT)
            .build();
        let config = aws_sdk_dynamodb::config::Builder::from(config)
            .timeout_config(timeouts)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        Self {
            client: Client::from_conf(config),
            table,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn apply(&self, update: Update<'_>) -> Result<Counted, StoreError> {
        let number = |value: i64| AttributeValue::N(value.to_string());
        let mut condition = Vec::new();
        let mut values = HashMap::from([
            (":requests".to_owned(), number(update.requests)),
            (":tokens".to_owned(), number(update.tokens)),
            (":expires".to_owned(), number(update.expires_at)),
        ]);
        // "The count after adding fits" is "the count now is at most the limit less the add". An
        // item not written yet always passes, which is right because the limiter never asks to
        // add more than a limit (a request larger than one is refused before any write).
        for (limit, add, name, bound) in [
            (
                update.fit.requests,
                update.requests,
                "#requests",
                ":most_requests",
            ),
            (update.fit.tokens, update.tokens, "#tokens", ":most_tokens"),
        ] {
            if let Some(limit) = limit {
                let most = i64::try_from(limit).unwrap_or(i64::MAX).saturating_sub(add);
                condition.push(format!(
                    "(attribute_not_exists({name}) OR {name} <= {bound})"
                ));
                values.insert(bound.to_owned(), number(most));
            }
        }
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(update.item.to_owned()))
            .update_expression("SET #expires = :expires ADD #requests :requests, #tokens :tokens")
            .set_condition_expression((!condition.is_empty()).then(|| condition.join(" AND ")))
            .expression_attribute_names("#requests", "requests")
            .expression_attribute_names("#tokens", "tokens")
            .expression_attribute_names("#expires", "expires_at")
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match request.send().await {
            Ok(output) => Ok(Counted::Made(counts(output.attributes())?)),
            Err(SdkError::ServiceError(failure))
                if matches!(
                    failure.err(),
                    UpdateItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                let item = match failure.err() {
                    UpdateItemError::ConditionalCheckFailedException(refused) => refused.item(),
                    _ => None,
                };
                Ok(Counted::Refused(counts(item)?))
            }
            Err(err) => Err(StoreError(describe(&err))),
        }
    }
}

impl LimitStore for DynamoStore {
    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    fn shared(&self) -> bool {
        true
    }

    fn update<'a>(&'a self, update: Update<'a>) -> BoxFuture<'a, Result<Counted, StoreError>> {
        Box::pin(self.apply(update))
    }
}

/// The counts in an item's attributes (missing: zero, as for an item not yet written).
fn counts(item: Option<&HashMap<String, AttributeValue>>) -> Result<Counts, StoreError> {
    let count = |name: &str| -> Result<i64, StoreError> {
        match item.and_then(|item| item.get(name)) {
            None => Ok(0),
            Some(AttributeValue::N(number)) => number
                .parse()
                .map_err(|_| StoreError(format!("the limits table holds a non-integer {name}"))),
            Some(_) => Err(StoreError(format!(
                "the limits table holds a non-number {name}"
            ))),
        }
    };
    Ok(Counts {
        requests: count("requests")?,
        tokens: count("tokens")?,
    })
}

/// What went wrong, for the log: the service's error code and message, or the kind of failure
/// (timeout, network). DynamoDB's messages name tables and attributes, never our keys.
fn describe(err: &SdkError<UpdateItemError>) -> String {
    match err {
        SdkError::ServiceError(failure) => {
            let err = failure.err();
            format!(
                "DynamoDB UpdateItem failed: {}: {}",
                err.code().unwrap_or("unknown error"),
                err.message().unwrap_or("no message")
            )
        }
        SdkError::TimeoutError(_) => "DynamoDB UpdateItem timed out".to_owned(),
        SdkError::DispatchFailure(_) => "DynamoDB could not be reached".to_owned(),
        SdkError::ResponseError(_) => "DynamoDB's answer could not be read".to_owned(),
        _ => "DynamoDB UpdateItem failed".to_owned(),
    }
}
