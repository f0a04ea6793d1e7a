//! `keys list`: one row per key, as a table or JSON, showing ids and policy and never a key, real
//! or wrapper, nor any other secret value (a member stored under a plain wrapper key is shown by
//! its key id only).

use std::time::SystemTime;

use serde_json::Value;

use super::document::{Document, key_id};

/// One member as `keys list` shows it: no key, real or wrapper, and no other secret value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    pub id: String,
    pub key_id: String,
    pub tenant: Option<String>,
    pub upstream: Option<String>,
    pub models: Option<Vec<String>>,
    pub routes: Option<Vec<String>>,
    pub limits: Option<Value>,
    pub expires_at: Option<String>,
    pub expired: bool,
}

/// Every member, as `keys list` shows it.
pub fn rows(document: &Document, now: SystemTime) -> Vec<Listed> {
    document
        .keys()
        .iter()
        .map(|(name, value)| {
            let key_id = key_id(name);
            let entry = value.as_object();
            let text = |field: &str| {
                entry
                    .and_then(|entry| entry.get(field))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let names = |field: &str| {
                entry
                    .and_then(|entry| entry.get(field))
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
            };
            let expires_at = text("expires_at");
            let expired = expires_at
                .as_deref()
                .and_then(crate::keymap::parse_rfc3339)
                .is_some_and(|at| at <= now);
            Listed {
                id: text("id").unwrap_or_else(|| key_id.clone()),
                key_id,
                tenant: text("tenant"),
                upstream: text("upstream"),
                models: names("models"),
                routes: names("routes"),
                limits: entry.and_then(|entry| entry.get("limits")).cloned(),
                expires_at,
                expired,
            }
        })
        .collect()
}

/// `keys list` as a table: one row per key, a header, columns padded to fit.
pub fn table(rows: &[Listed]) -> String {
    let list = |items: &Option<Vec<String>>| {
        items
            .as_ref()
            .map_or_else(|| "*".to_owned(), |items| items.join(","))
    };
    let limits = |limits: &Option<Value>| {
        let Some(Value::Object(limits)) = limits else {
            return "-".to_owned();
        };
        limits
            .iter()
            .map(|(name, value)| {
                let short = match name.as_str() {
                    "requests_per_minute" => "rpm",
                    "tokens_per_minute" => "tpm",
                    "tokens_per_day" => "tokens/day",
                    "tokens_per_month" => "tokens/month",
                    other => other,
                };
                format!("{short}={value}")
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let header = [
        "ID", "KEY ID", "TENANT", "UPSTREAM", "MODELS", "ROUTES", "LIMITS", "EXPIRES",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|cell| (*cell).to_owned()).collect()];
    for row in rows {
        let expires = match (&row.expires_at, row.expired) {
            (Some(at), true) => format!("{at} (expired)"),
            (Some(at), false) => at.clone(),
            (None, _) => "-".to_owned(),
        };
        cells.push(vec![
            row.id.clone(),
            row.key_id.clone(),
            row.tenant.clone().unwrap_or_else(|| "-".to_owned()),
            row.upstream.clone().unwrap_or_else(|| "default".to_owned()),
            list(&row.models),
            list(&row.routes),
            limits(&row.limits),
            expires,
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            cells
                .iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}
