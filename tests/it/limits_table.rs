//! The limits table the limits tests run on: created in moto from template.yaml's `LimitsTable`
//! (so it has the deployed schema), and moto answering concurrent conditional updates of one item
//! as DynamoDB does, one after another, so the exactness tests fail only for the proxy's sake.

use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, BillingMode, KeyType, ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
    TimeToLiveStatus,
};

use crate::support::moto::Moto;

const TABLE: &str = "openai-proxy-limits";

/// Bounds every call on moto, so a hung server fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(60);

/// One conditional increment: counted only if the count is still below `limit`, the shape of an
/// admission.
fn admit(
    client: &aws_sdk_dynamodb::Client,
    pk: &str,
    limit: u32,
) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
    client
        .update_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(pk.to_owned()))
        .update_expression("ADD n :one")
        .condition_expression("attribute_not_exists(n) OR n < :limit")
        .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
        .expression_attribute_values(":limit", AttributeValue::N(limit.to_string()))
}

fn is_condition_failed(error: &SdkError<UpdateItemError>) -> bool {
    error
        .as_service_error()
        .is_some_and(UpdateItemError::is_conditional_check_failed_exception)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limits_table_has_the_templates_schema() {
    let moto = Moto::start().await;
    moto.create_limits_table(TABLE).await;
    let client = moto.dynamodb_client();

    let table = tokio::time::timeout(WAIT, client.describe_table().table_name(TABLE).send())
        .await
        .unwrap()
        .unwrap()
        .table
        .unwrap();
    let keys: Vec<_> = table
        .key_schema()
        .iter()
        .map(|key| (key.attribute_name(), key.key_type().clone()))
        .collect();
    assert_eq!(keys, [("pk", KeyType::Hash)], "{table:?}");
    let attributes: Vec<_> = table
        .attribute_definitions()
        .iter()
        .map(|attribute| {
            (
                attribute.attribute_name(),
                attribute.attribute_type().clone(),
            )
        })
        .collect();
    assert_eq!(attributes, [("pk", ScalarAttributeType::S)], "{table:?}");
    let billing = table
        .billing_mode_summary()
        .and_then(|summary| summary.billing_mode());
    assert_eq!(billing, Some(&BillingMode::PayPerRequest), "{table:?}");

    let ttl = tokio::time::timeout(
        WAIT,
        client.describe_time_to_live().table_name(TABLE).send(),
    )
    .await
    .unwrap()
    .unwrap()
    .time_to_live_description
    .unwrap();
    assert_eq!(ttl.attribute_name(), Some("expires_at"), "{ttl:?}");
    assert_eq!(
        ttl.time_to_live_status(),
        Some(&TimeToLiveStatus::Enabled),
        "{ttl:?}"
    );
}

/// 40 concurrent admissions against a limit of 10 on one item: exactly 10 pass, as in DynamoDB.
/// Plain `moto_server` handles requests on several threads with no lock in its DynamoDB backend,
/// so it could let more through; `Moto::start` serialises it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conditional_updates_admit_exactly_the_limit() {
    let moto = Moto::start().await;
    moto.create_limits_table(TABLE).await;
    let client = moto.dynamodb_client();

    let calls: Vec<_> = (0..40)
        .map(|_| tokio::spawn(admit(&client, "key:burst", 10).send()))
        .collect();
    let (mut admitted, mut refused) = (0, 0);
    for call in calls {
        match tokio::time::timeout(WAIT, call).await.unwrap().unwrap() {
            Ok(_) => admitted += 1,
            Err(error) if is_condition_failed(&error) => refused += 1,
            Err(error) => panic!("unexpected error: {error:?}"),
        }
    }
    assert_eq!((admitted, refused), (10, 30));

    let item = tokio::time::timeout(
        WAIT,
        client
            .get_item()
            .table_name(TABLE)
            .key("pk", AttributeValue::S("key:burst".to_owned()))
            .consistent_read(true)
            .send(),
    )
    .await
    .unwrap()
    .unwrap()
    .item
    .unwrap();
    assert_eq!(item.get("n"), Some(&AttributeValue::N("10".to_owned())));
}

/// A refused admission can return the item as it was (`ALL_OLD`) in the error, so the proxy can
/// tell how full the window is without a read; moto honours it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_condition_returns_the_old_item_when_asked() {
    let moto = Moto::start().await;
    moto.create_limits_table(TABLE).await;
    let client = moto.dynamodb_client();

    tokio::time::timeout(WAIT, admit(&client, "key:full", 1).send())
        .await
        .unwrap()
        .unwrap();
    let refused = tokio::time::timeout(
        WAIT,
        admit(&client, "key:full", 1)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send(),
    )
    .await
    .unwrap()
    .unwrap_err();
    let UpdateItemError::ConditionalCheckFailedException(failed) = refused.into_service_error()
    else {
        panic!("not a failed condition");
    };
    let item = failed.item().expect("ALL_OLD returns the item");
    assert_eq!(item.get("n"), Some(&AttributeValue::N("1".to_owned())));
    assert_eq!(
        item.get("pk"),
        Some(&AttributeValue::S("key:full".to_owned()))
    );

    // Without ALL_OLD the error carries no item.
    let refused = tokio::time::timeout(WAIT, admit(&client, "key:full", 1).send())
        .await
        .unwrap()
        .unwrap_err();
    let UpdateItemError::ConditionalCheckFailedException(failed) = refused.into_service_error()
    else {
        panic!("not a failed condition");
    };
    assert_eq!(failed.item(), None);
}
