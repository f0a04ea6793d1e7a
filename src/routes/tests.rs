use super::*;

fn routed(method: Method, path: &str) -> Route {
    route(&method, path).unwrap_or_else(|err| panic!("{method} {path}: {err}"))
}

#[test]
fn the_table_is_written_in_variant_order() {
    for (index, (group, name, _, _)) in GROUPS.iter().enumerate() {
        assert_eq!(*group as usize, index, "{name}");
        assert_eq!(RouteGroup::from_name(name), Some(*group));
        assert_eq!(group.name(), *name);
    }
}

#[test]
fn every_sdk_resource_has_its_group() {
    let cases = [
        (Method::POST, "/v1/chat/completions", "chat.completions"),
        (
            Method::GET,
            "/v1/chat/completions/chatcmpl-1/messages",
            "chat.completions",
        ),
        (Method::POST, "/v1/completions", "completions"),
        (Method::POST, "/v1/embeddings", "embeddings"),
        (Method::GET, "/v1/responses/resp_1/input_items", "responses"),
        (Method::POST, "/v1/moderations", "moderations"),
        (Method::POST, "/v1/images/generations", "images"),
        (Method::POST, "/v1/audio/speech", "audio"),
        (Method::GET, "/v1/files/file-abc123/content", "files"),
        (Method::POST, "/v1/uploads/upload_1/parts", "uploads"),
        (Method::GET, "/v1/batches/batch_1", "batches"),
        (Method::DELETE, "/v1/vector_stores/vs_1", "vector_stores"),
        (
            Method::POST,
            "/v1/conversations/conv_1/items",
            "conversations",
        ),
        (
            Method::GET,
            "/v1/containers/cntr_1/files/f_1/content",
            "containers",
        ),
        (Method::POST, "/v1/fine_tuning/jobs", "fine_tuning"),
        (Method::POST, "/v1/realtime/client_secrets", "realtime"),
        (Method::GET, "/v1/videos/video_1/content", "videos"),
        (Method::GET, "/v1/models/ft:gpt-4o-mini:org::abc", "models"),
        (Method::POST, "/v1/threads/thread_1/runs", "threads"),
    ];
    for (method, path, group) in cases {
        assert_eq!(
            routed(method.clone(), path).group.name(),
            group,
            "{method} {path}"
        );
    }
}

#[test]
fn model_carrying_requests_say_where_the_model_is() {
    let chat = routed(Method::POST, "/v1/chat/completions");
    assert!(chat.uses_model && !chat.multipart && chat.model_at == ModelAt::Body);
    let moderation = routed(Method::POST, "/v1/moderations");
    assert_eq!(moderation.default_model, Some("omni-moderation-latest"));
    let secret = routed(Method::POST, "/v1/realtime/client_secrets");
    assert_eq!(secret.model_at, ModelAt::Session);
    let transcription = routed(Method::POST, "/v1/audio/transcriptions");
    assert!(transcription.uses_model && transcription.multipart);
    // Retrieving, cancelling, listing: no model does work.
    for (method, path) in [
        (Method::GET, "/v1/responses/resp_1"),
        (Method::POST, "/v1/responses/resp_1/cancel"),
        (Method::DELETE, "/v1/responses/resp_1"),
        (Method::GET, "/v1/chat/completions"),
    ] {
        assert!(!routed(method.clone(), path).uses_model, "{method} {path}");
    }
    assert!(routed(Method::POST, "/v1/uploads/upload_1/parts").multipart);
    assert!(routed(Method::POST, "/v1/containers/c_1/files").multipart);
    assert!(!routed(Method::POST, "/v1/uploads/upload_1/complete").multipart);
    // A POST the table does not know is marked so (policy closes it to restricted keys).
    assert!(!routed(Method::POST, "/v1/realtime/transcription_sessions").listed);
    assert!(!routed(Method::POST, "/v1/images/generate").listed);
    assert!(routed(Method::POST, "/v1/responses/resp_1/cancel").listed);
    assert!(routed(Method::GET, "/v1/files/file-1").listed);
}

#[test]
fn model_listings_are_recognised() {
    let list = routed(Method::GET, "/v1/models");
    assert_eq!(list.model_listing, Some(ModelListing::All));
    let one = routed(Method::GET, "/v1/models/gpt-4o");
    assert_eq!(one.model_listing, Some(ModelListing::One));
    let delete = routed(Method::DELETE, "/v1/models/ft:x");
    assert_eq!(delete.model_listing, None);
    assert_eq!(delete.model_at, ModelAt::Path);
    assert_eq!(
        path_model("/v1/models/ft%3Agpt-4o-mini%3Aorg").as_deref(),
        Some("ft:gpt-4o-mini:org")
    );
}

#[test]
fn paths_outside_the_table_or_with_tricks_are_404() {
    for path in [
        "/",
        "/v1",
        "/v1/",
        "/v2/chat/completions",
        "/v1/chat",
        "/v1/unknown",
        "/v1/organization/users",
        "/v1//chat/completions",
        "/v1/chat/completions/",
        "/v1/files/../admin",
        "/v1/files/./x",
        "/v1/files/a%2Fb",
        "/v1/files/a%2fb",
        "/v1/files/%2e%2e",
        "/v1/files/a%5Cb",
        "/v1/files/a\\b",
        "/v1/files/a%00",
        "/v1/realtime/client_secret%73",
        "/v1/images/generations;x=1",
        "/v1/files/file-1;a",
    ] {
        for method in [Method::GET, Method::POST] {
            match route(&method, path) {
                Err(ProxyError::UnknownRoute { .. }) => {}
                other => panic!("{method} {path}: {other:?}"),
            }
        }
    }
}

#[test]
fn methods_the_api_does_not_use_are_405() {
    for method in [Method::PUT, Method::PATCH, Method::OPTIONS] {
        match route(&method, "/v1/files") {
            Err(ProxyError::MethodNotAllowed { .. }) => {}
            other => panic!("{method}: {other:?}"),
        }
    }
}

#[test]
fn shown_paths_are_cut() {
    let long = format!("/v1/{}", "é".repeat(500));
    let shown = shown_path(&long);
    assert_eq!(shown.chars().count(), 201);
    assert!(shown.ends_with('…'));
}
