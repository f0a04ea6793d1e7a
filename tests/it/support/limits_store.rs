//! The limits table as the tests see it: its counter items (a consistent scan of moto), and a
//! relay in front of moto that records every `UpdateItem` the proxy makes and can hold its settle
//! writes back a while, so the order of a settle and an answer's end can be seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::Body;
use axum::response::Response;
use serde_json::Value;

use super::limits::WAIT;
use super::moto::Moto;

/// One counter item of the limits table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub pk: String,
    pub requests: i64,
    pub tokens: i64,
    pub expires_at: i64,
}

/// Every item in `table` (a consistent scan: the settle writes the tests wait for are visible).
pub async fn scan(moto: &Moto, table: &str) -> Vec<Item> {
    let client = moto.dynamodb_client();
    let scan = client.scan().table_name(table).consistent_read(true).send();
    let output = tokio::time::timeout(WAIT, scan).await.unwrap().unwrap();
    assert!(output.last_evaluated_key().is_none(), "the scan was paged");
    let number = |item: &HashMap<String, AttributeValue>, name: &str| match item.get(name) {
        Some(AttributeValue::N(number)) => number.parse().unwrap(),
        other => panic!("{name} is {other:?} in {item:?}"),
    };
    output
        .items()
        .iter()
        .map(|item| Item {
            pk: item["pk"].as_s().unwrap().clone(),
            requests: number(item, "requests"),
            tokens: number(item, "tokens"),
            expires_at: number(item, "expires_at"),
        })
        .collect()
}

/// The one item in `items` whose name starts with `prefix` (`key#<id>#minute#`); two mean the
/// requests were counted in two windows.
pub fn only_item(items: &[Item], prefix: &str) -> Item {
    let found: Vec<&Item> = items
        .iter()
        .filter(|item| item.pk.starts_with(prefix))
        .collect();
    match found.as_slice() {
        [item] => (*item).clone(),
        [] => panic!("no item {prefix}… in {items:?}"),
        _ => panic!(
            "the requests were counted in {} windows ({found:?}): they straddled a window's end",
            found.len()
        ),
    }
}

/// One `UpdateItem` the proxy made, as the relay saw it.
#[derive(Debug, Clone)]
pub struct Write {
    pub pk: String,
    /// An admission (with a fit condition) rather than a settle or a take-back.
    pub conditional: bool,
    pub requests: i64,
    pub tokens: i64,
    /// The relay has answered it (the proxy may have its answer).
    pub answered: bool,
}

impl Write {
    /// A settle: no condition, no request, only tokens.
    pub fn is_settle(&self) -> bool {
        !self.conditional && self.requests == 0
    }
}

/// Forwards DynamoDB calls to moto, recording each `UpdateItem`; settle writes are held back
/// `hold_settles` first (under the proxy's one-second attempt timeout), so a proxy that let a
/// response end before its settle was answered would be seen doing it.
pub struct DynamoRelay {
    pub endpoint: String,
    writes: Arc<Mutex<Vec<Write>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DynamoRelay {
    pub async fn start(moto: &Moto, hold_settles: Duration) -> Self {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (target, log, http) = (moto.endpoint.clone(), writes.clone(), super::http_client());
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (target, log, http) = (target.clone(), log.clone(), http.clone());
            async move {
                let (parts, body) = request.into_parts();
                let body = http_body_util::BodyExt::collect(body)
                    .await
                    .unwrap()
                    .to_bytes();
                let is_update = parts
                    .headers
                    .get("x-amz-target")
                    .is_some_and(|target| target == "DynamoDB_20120810.UpdateItem");
                let recorded = is_update.then(|| {
                    let write = write_of(&body);
                    let mut log = log.lock().unwrap();
                    log.push(write);
                    log.len() - 1
                });
                if let Some(at) = recorded
                    && log.lock().unwrap()[at].is_settle()
                {
                    tokio::time::sleep(hold_settles).await;
                }
                let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let answer = http
                    .request(parts.method, format!("{target}{uri}"))
                    .headers(parts.headers)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let mut response = Response::builder().status(answer.status());
                for (name, value) in answer.headers() {
                    if name != "transfer-encoding" && name != "connection" {
                        response = response.header(name, value);
                    }
                }
                let bytes = answer.bytes().await.unwrap();
                if let Some(at) = recorded {
                    log.lock().unwrap()[at].answered = true;
                }
                response.body(Body::from(bytes)).unwrap()
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            endpoint: format!("http://{addr}"),
            writes,
            task,
        }
    }

    pub fn writes(&self) -> Vec<Write> {
        self.writes.lock().unwrap().clone()
    }
}

impl Drop for DynamoRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn write_of(body: &[u8]) -> Write {
    let call: Value = serde_json::from_slice(body).unwrap();
    let number = |name: &str| {
        call["ExpressionAttributeValues"][name]["N"]
            .as_str()
            .map_or(0, |n| n.parse().unwrap())
    };
    Write {
        pk: call["Key"]["pk"]["S"].as_str().unwrap().to_owned(),
        conditional: call.get("ConditionExpression").is_some(),
        requests: number(":requests"),
        tokens: number(":tokens"),
        answered: false,
    }
}
