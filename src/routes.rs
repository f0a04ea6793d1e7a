//! The route table: every path under `/v1/` the proxy forwards, by route group (named after the
//! SDK resources), with where a request names its model. Policy (`policy.rs`) and metering both
//! read it; nothing else looks at a request path. Paths that could mean something else once they
//! reach the upstream (`..`, encoded slashes, empty segments) are refused here, before anything.

use axum::http::Method;

use crate::error::ProxyError;

/// A route group: what a key's `routes` lists, and what the record names instead of the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteGroup {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Moderations,
    Images,
    Audio,
    Files,
    Uploads,
    Batches,
    VectorStores,
    Conversations,
    Containers,
    FineTuning,
    Realtime,
    Videos,
    Models,
    Assistants,
    Threads,
    Evals,
}

/// Every group: its name, the path segments it owns after `/v1/`, and whether the proxy sees
/// the model its requests use. A batch's model lives inside an uploaded file, a vector store's
/// or a thread run's inside objects made earlier: for those the proxy cannot apply `models`.
const GROUPS: [(RouteGroup, &str, &[&str], bool); 20] = {
    use RouteGroup::*;
    [
        (
            ChatCompletions,
            "chat.completions",
            &["chat", "completions"],
            true,
        ),
        (Completions, "completions", &["completions"], true),
        (Embeddings, "embeddings", &["embeddings"], true),
        (Responses, "responses", &["responses"], true),
        (Moderations, "moderations", &["moderations"], true),
        (Images, "images", &["images"], true),
        (Audio, "audio", &["audio"], true),
        (Files, "files", &["files"], false),
        (Uploads, "uploads", &["uploads"], false),
        (Batches, "batches", &["batches"], false),
        (VectorStores, "vector_stores", &["vector_stores"], false),
        (Conversations, "conversations", &["conversations"], false),
        (Containers, "containers", &["containers"], false),
        (FineTuning, "fine_tuning", &["fine_tuning"], false),
        (Realtime, "realtime", &["realtime"], true),
        (Videos, "videos", &["videos"], true),
        (Models, "models", &["models"], true),
        (Assistants, "assistants", &["assistants"], false),
        (Threads, "threads", &["threads"], false),
        (Evals, "evals", &["evals"], false),
    ]
};

impl RouteGroup {
    fn row(self) -> &'static (RouteGroup, &'static str, &'static [&'static str], bool) {
        // Every variant has its row: the table is written in variant order.
        &GROUPS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// Whether the proxy can see the model a request of this group uses.
    pub fn sees_model(self) -> bool {
        self.row().3
    }

    pub fn from_name(name: &str) -> Option<Self> {
        GROUPS
            .iter()
            .find(|(_, known, _, _)| *known == name)
            .map(|(group, ..)| *group)
    }

    /// All group names, for error messages and the README.
    pub fn names() -> impl Iterator<Item = &'static str> {
        GROUPS.iter().map(|(_, name, _, _)| *name)
    }
}

/// Where a request names the model it will use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelAt {
    /// The top-level `model` of a JSON body, or the `model` field of a multipart body.
    Body,
    /// `session.model` of a JSON body (realtime client secrets).
    Session,
    /// The last path segment (`/v1/models/{model}`).
    Path,
}

/// One routed request: its group, where its model is, and, for requests that create something
/// with a model, what the API uses when the request names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub group: RouteGroup,
    pub model_at: ModelAt,
    /// The request makes the model do work (a completion, an image, speech…): a key restricted
    /// by `models` may send it without a model only if `default_model` is on its list.
    pub uses_model: bool,
    pub default_model: Option<&'static str>,
    /// The model list of `GET /v1/models`, or one model of it, which a restricted key is answered
    /// from its own list.
    pub model_listing: Option<ModelListing>,
    /// The request may carry a `multipart/form-data` body (every POST may carry JSON).
    pub multipart: bool,
    /// A POST the table lists (every GET, HEAD and DELETE counts as listed). In a group whose
    /// model the proxy sees, a key restricted by `models` may send only listed POSTs: an
    /// endpoint the table does not know might use a model this walk cannot find.
    pub listed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelListing {
    All,
    One,
}

/// What a POST endpoint does with a model.
#[derive(Clone, Copy)]
enum Model {
    /// It makes the model work; where the request names it, and the API's default model where
    /// that does not depend on other parameters (images/generations picks dall-e-2 or
    /// gpt-image-1 by other fields, so it has none here).
    Uses(ModelAt, Option<&'static str>),
    /// It makes no model work (cancelling, updating metadata, uploading bytes).
    Free,
}

/// Every POST endpoint the proxy knows, by path after `/v1/` (`*`: one id segment): whether it
/// takes `multipart/form-data`, and what it does with a model.
const POSTS: [(&str, bool, Model); 22] = {
    use Model::{Free, Uses};
    use ModelAt::{Body, Session};
    [
        ("chat/completions", false, Uses(Body, None)),
        ("chat/completions/*", false, Free),
        ("completions", false, Uses(Body, None)),
        ("embeddings", false, Uses(Body, None)),
        ("responses", false, Uses(Body, None)),
        ("responses/input_tokens", false, Uses(Body, None)),
        ("responses/compact", false, Uses(Body, None)),
        ("responses/*/cancel", false, Free),
        (
            "moderations",
            false,
            Uses(Body, Some("omni-moderation-latest")),
        ),
        ("images/generations", false, Uses(Body, None)),
        ("images/edits", true, Uses(Body, None)),
        ("images/variations", true, Uses(Body, Some("dall-e-2"))),
        ("audio/speech", false, Uses(Body, None)),
        ("audio/transcriptions", true, Uses(Body, None)),
        ("audio/translations", true, Uses(Body, None)),
        ("realtime/client_secrets", false, Uses(Session, None)),
        ("realtime/sessions", false, Uses(Body, None)),
        ("videos", true, Uses(Body, Some("sora-2"))),
        ("files", true, Free),
        ("uploads/*/parts", true, Free),
        ("containers/*/files", true, Free),
        ("fine_tuning/jobs", false, Uses(Body, None)),
    ]
};

fn matches_pattern(pattern: &str, segments: &[&str]) -> bool {
    let mut parts = pattern.split('/');
    segments.iter().all(|segment| {
        parts
            .next()
            .is_some_and(|part| part == "*" || part == *segment)
    }) && parts.next().is_none()
}

/// Finds the route of `method path`, or the 404/405 for it.
pub fn route(method: &Method, path: &str) -> Result<Route, ProxyError> {
    let unknown = || ProxyError::UnknownRoute {
        method: method.to_string(),
        path: shown_path(path),
    };
    let rest = path.strip_prefix("/v1/").ok_or_else(unknown)?;
    let segments: Vec<&str> = rest.split('/').collect();
    if !segments.iter().all(|segment| is_plain_segment(segment)) {
        return Err(unknown());
    }
    let (group, owned) = GROUPS
        .iter()
        .find(|(_, _, prefix, _)| segments.starts_with(prefix))
        .map(|(group, _, prefix, _)| (*group, prefix.len()))
        .ok_or_else(unknown)?;
    // Percent-encoding has no place in the API's paths but a model name (`ft:…` may be encoded):
    // a server that decodes before routing could reach another endpoint than the table sees.
    let encoded = |segment: &&str| segment.contains('%');
    if group != RouteGroup::Models && segments.iter().any(encoded) {
        return Err(unknown());
    }
    if !matches!(
        *method,
        Method::GET | Method::HEAD | Method::POST | Method::DELETE
    ) {
        return Err(ProxyError::MethodNotAllowed {
            method: method.to_string(),
            path: shown_path(path),
        });
    }
    let mut route = Route {
        group,
        model_at: ModelAt::Body,
        uses_model: false,
        default_model: None,
        model_listing: None,
        multipart: false,
        listed: true,
    };
    if *method == Method::POST {
        let endpoint = POSTS
            .iter()
            .find(|(pattern, ..)| matches_pattern(pattern, &segments));
        route.listed = endpoint.is_some();
        if let Some((_, multipart, model)) = endpoint {
            route.multipart = *multipart;
            if let Model::Uses(at, default) = model {
                route.model_at = *at;
                route.uses_model = true;
                route.default_model = *default;
            }
        }
    } else if group == RouteGroup::Models {
        route.model_at = ModelAt::Path;
        let reads = matches!(*method, Method::GET | Method::HEAD);
        route.model_listing = match segments.len() - owned {
            0 if reads => Some(ModelListing::All),
            1 if reads => Some(ModelListing::One),
            _ => None,
        };
    }
    Ok(route)
}

/// A path segment that means the same to every server: not empty (`//`), not `.` or `..`, and
/// free of backslashes, of `;` (path parameters to some servers) and of encoded `/`, `\` or
/// `.`, which some servers decode before routing.
fn is_plain_segment(segment: &str) -> bool {
    if segment.is_empty() || segment == "." || segment == ".." || segment.contains(['\\', ';']) {
        return false;
    }
    let bytes = segment.as_bytes();
    !bytes.windows(3).any(|window| {
        window[0] == b'%'
            && matches!(
                (window[1], window[2].to_ascii_lowercase()),
                (b'2', b'f' | b'e') | (b'5', b'c') | (b'0', b'0')
            )
    })
}

/// The model a `/v1/models/{model}` path names: its last segment, percent-decoded (fine-tuned
/// model names hold colons, which clients may encode).
pub fn path_model(path: &str) -> Option<String> {
    let segment = path.rsplit('/').next()?;
    let decoded = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()?;
    Some(decoded.into_owned())
}

/// The request path as echoed in error messages: enough to spot a typo, never a whole
/// oversized URL.
pub fn shown_path(path: &str) -> String {
    const SHOWN: usize = 200;
    match path.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &path[..cut]),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests;
