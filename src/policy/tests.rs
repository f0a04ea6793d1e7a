use axum::http::Method;

use super::*;
use crate::error::ProxyError;
use crate::keys::{KeyPolicy, RealKey};
use crate::routes::{RouteGroup, route};

fn entry(models: Option<&[&str]>, routes: Option<&[RouteGroup]>) -> KeyEntry {
    KeyEntry::for_key(RealKey::new("sk-test").unwrap()).with_policy(KeyPolicy {
        models: models.map(|list| list.iter().map(|m| (*m).to_owned()).collect()),
        routes: routes.map(<[RouteGroup]>::to_vec),
        ..KeyPolicy::default()
    })
}

fn post(path: &str) -> Route {
    route(&Method::POST, path).unwrap()
}

#[test]
fn an_unrestricted_key_calls_every_route() {
    let key = entry(None, None);
    for path in ["/v1/files", "/v1/batches", "/v1/chat/completions"] {
        assert!(check_route(&key, &post(path)).is_ok(), "{path}");
        assert!(check_model(&key, &post(path), None).is_ok(), "{path}");
    }
}

#[test]
fn a_model_restricted_key_needs_routes_for_groups_whose_model_is_unseen() {
    let key = entry(Some(&["gpt-4o-mini"]), None);
    for path in [
        "/v1/files",
        "/v1/batches",
        "/v1/vector_stores",
        "/v1/fine_tuning/jobs",
    ] {
        assert!(
            matches!(
                check_route(&key, &post(path)),
                Err(ProxyError::RouteNotAllowed { .. })
            ),
            "{path}"
        );
    }
    assert!(check_route(&key, &post("/v1/chat/completions")).is_ok());
    let with_files = entry(
        Some(&["gpt-4o-mini"]),
        Some(&[RouteGroup::Files, RouteGroup::ChatCompletions]),
    );
    assert!(check_route(&with_files, &post("/v1/files")).is_ok());
    assert!(check_route(&with_files, &post("/v1/chat/completions")).is_ok());
    assert!(check_route(&with_files, &post("/v1/embeddings")).is_err());
}

#[test]
fn routes_alone_limit_an_unrestricted_key() {
    let key = entry(None, Some(&[RouteGroup::Embeddings]));
    assert!(check_route(&key, &post("/v1/embeddings")).is_ok());
    assert!(matches!(
        check_route(&key, &post("/v1/chat/completions")),
        Err(ProxyError::RouteNotAllowed {
            route: "chat.completions"
        })
    ));
}

#[test]
fn models_are_checked_and_a_missing_one_only_passes_on_a_listed_default() {
    let key = entry(Some(&["gpt-4o-mini", "omni-moderation-latest"]), None);
    let chat = post("/v1/chat/completions");
    assert!(check_model(&key, &chat, Some("gpt-4o-mini")).is_ok());
    assert!(matches!(
        check_model(&key, &chat, Some("gpt-4o")),
        Err(ProxyError::ModelNotAllowed { .. })
    ));
    assert!(matches!(
        check_model(&key, &chat, None),
        Err(ProxyError::ModelRequired)
    ));
    // The moderation default is on this key's list; the images default is not known.
    assert!(check_model(&key, &post("/v1/moderations"), None).is_ok());
    assert!(check_model(&key, &post("/v1/images/generations"), None).is_err());
    let other = entry(Some(&["gpt-4o-mini"]), None);
    assert!(check_model(&other, &post("/v1/moderations"), None).is_err());
    // A request that makes no model work names none and needs none.
    assert!(check_model(&key, &post("/v1/responses/resp_1/cancel"), None).is_ok());
    // …but a model it does name is still checked.
    assert!(check_model(&key, &post("/v1/responses/resp_1/cancel"), Some("gpt-4o")).is_err());
}

#[test]
fn a_restricted_key_may_send_only_the_posts_the_table_knows_in_groups_it_sees() {
    let key = entry(Some(&["gpt-realtime"]), Some(&[RouteGroup::Realtime]));
    let unknown = post("/v1/realtime/transcription_sessions");
    assert!(matches!(
        check_model(&key, &unknown, None),
        Err(ProxyError::RouteNotAllowed { route: "realtime" })
    ));
    assert!(
        check_model(
            &key,
            &post("/v1/realtime/client_secrets"),
            Some("gpt-realtime")
        )
        .is_ok()
    );
    // An unrestricted key may.
    assert!(check_model(&entry(None, None), &unknown, None).is_ok());
}

#[test]
fn long_model_names_are_checked_whole() {
    let listed = "m".repeat(100);
    let key = entry(Some(&[listed.as_str()]), None);
    let chat = post("/v1/chat/completions");
    assert!(check_model(&key, &chat, Some(&listed)).is_ok());
    let longer = format!("{listed}-and-more");
    assert!(check_model(&key, &chat, Some(&longer)).is_err());
}

#[test]
fn a_path_model_that_cannot_be_read_is_refused_to_a_restricted_key() {
    let key = entry(Some(&["gpt-4o-mini"]), None);
    let delete = route(&Method::DELETE, "/v1/models/x").unwrap();
    assert!(matches!(
        check_path_model(&key, &delete, None),
        Err(ProxyError::ModelRequired)
    ));
    assert!(check_path_model(&entry(None, None), &delete, None).is_ok());
}
