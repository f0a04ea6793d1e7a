//! What a key may do, decided from its entry and the request's route and model: the `routes` a
//! key may call and the `models` it may use. Decisions only; the route table (`routes.rs`) says
//! where a request's model is, and `request.rs` reads it.

use crate::error::ProxyError;
use crate::keys::KeyEntry;
use crate::routes::Route;

/// Whether `entry` may call `route` at all. A key restricted by `models` but not by `routes`
/// may not call a group whose model the proxy cannot see (a batch names its model inside an
/// uploaded file): that would bypass its model list.
pub fn check_route(entry: &KeyEntry, route: &Route) -> Result<(), ProxyError> {
    let allowed = match &entry.routes {
        Some(routes) => routes.contains(&route.group),
        None => entry.models.is_none() || route.group.sees_model(),
    };
    if allowed {
        Ok(())
    } else {
        Err(ProxyError::RouteNotAllowed {
            route: route.group.name(),
        })
    }
}

/// Whether `entry` may send this request, which names `model` (or none). `model` is the name as
/// the record has it.
pub fn check_model(entry: &KeyEntry, route: &Route, model: Option<&str>) -> Result<(), ProxyError> {
    let Some(models) = &entry.models else {
        return Ok(());
    };
    let listed = |model: &str| models.iter().any(|allowed| allowed == model);
    match model {
        Some(model) if listed(model) => Ok(()),
        Some(model) => Err(ProxyError::ModelNotAllowed {
            model: model.to_owned(),
        }),
        // A request that names no model gets the API's default, if it has one.
        None if !route.uses_model || route.default_model.is_some_and(listed) => Ok(()),
        None => Err(ProxyError::ModelRequired),
    }
}

#[cfg(test)]
mod tests;
