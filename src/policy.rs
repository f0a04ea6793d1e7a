//! What a key may do, decided from its entry and the request's route and model: the `routes` a
//! key may call and the `models` it may use, and what a restricted key's `/v1/models` says.
//! Decisions only; the route table (`routes.rs`) says where a request's model is, and
//! `request.rs` reads it.

use serde_json::json;

use crate::error::ProxyError;
use crate::keys::KeyEntry;
use crate::routes::{self, ModelListing, Route};

/// Whether `entry` may call `route` at all. A key restricted by `models` but not by `routes`
/// may not call a group whose model the proxy cannot see (a batch names its model inside an
/// uploaded file): that would bypass its model list.
pub fn check_route(entry: &KeyEntry, route: &Route) -> Result<(), ProxyError> {
    let allowed = match &entry.policy().routes {
        Some(routes) => routes.contains(&route.group),
        None => entry.policy().models.is_none() || route.group.sees_model(),
    };
    if allowed {
        Ok(())
    } else {
        Err(ProxyError::RouteNotAllowed {
            route: route.group.name(),
        })
    }
}

/// Whether `entry` may send this request, which names `model` (or none).
pub fn check_model(entry: &KeyEntry, route: &Route, model: Option<&str>) -> Result<(), ProxyError> {
    if entry.policy().models.is_none() {
        return Ok(());
    }
    // An endpoint the table does not know, in a group whose model the proxy sees, might use a
    // model this proxy cannot find: closed to a key with a model list.
    if !route.listed && route.group.sees_model() {
        return Err(ProxyError::RouteNotAllowed {
            route: route.group.name(),
        });
    }
    let listed = |model: &str| entry.allows_model(model);
    match model {
        Some(model) if listed(model) => Ok(()),
        Some(model) => Err(ProxyError::ModelNotAllowed {
            model: shown_model(model),
        }),
        // A request that names no model gets the API's default, if it has one.
        None if !route.uses_model || route.default_model.is_some_and(listed) => Ok(()),
        None => Err(ProxyError::ModelRequired),
    }
}

/// A model name as the record, the metric dimension and error messages show it: client input,
/// so at most 100 characters of it.
pub fn shown_model(model: &str) -> String {
    model.chars().take(100).collect()
}

/// The model named in a `/v1/models/{model}` path (`None`: not readable as text), checked like a
/// body's: a restricted key may not act on a model it cannot name.
pub fn check_path_model(
    entry: &KeyEntry,
    route: &Route,
    model: Option<&str>,
) -> Result<(), ProxyError> {
    match model {
        None if entry.policy().models.is_some() => Err(ProxyError::ModelRequired),
        model => check_model(entry, route, model),
    }
}

/// `GET /v1/models[/{model}]` for a key limited to `models`: exactly those, without asking the
/// upstream (which would list, or describe, every model of the real key).
pub fn listed_models(
    listing: ModelListing,
    models: &[String],
    path: &str,
) -> Result<serde_json::Value, ProxyError> {
    let described =
        |id: &str| json!({"id": id, "object": "model", "created": 0, "owned_by": "openai-proxy"});
    match listing {
        ModelListing::All => {
            let data: Vec<_> = models.iter().map(|id| described(id)).collect();
            Ok(json!({"object": "list", "data": data}))
        }
        ModelListing::One => match routes::path_model(path) {
            Some(model) if models.contains(&model) => Ok(described(&model)),
            model => Err(ProxyError::ModelNotFound {
                model: shown_model(&model.unwrap_or_default()),
            }),
        },
    }
}

#[cfg(test)]
mod tests;
