//! openai-proxy: an OpenAI-compatible proxy that swaps a wrapper key for a real upstream key.
//!
//! The request path: a front door ([`lambda`]: the Lambda runtime in response-streaming mode, or
//! [`local`]: a plain HTTP server) hands the request to [`app::router`], which sends everything
//! but `/health` to [`proxy::forward`]. Its phases, each a call into the module that owns it:
//! [`routes`] finds the route group (or the 404); the wrapper key is authenticated against the
//! [`keymap::KeyMap`] held by the [`cache::KeyCache`] (loaded from a [`secrets::KeySource`]:
//! Secrets Manager or a file); [`policy`] applies the key's `routes` and `models` to the model
//! [`request`] reads from the body (JSON, or [`multipart`]); [`limits`] counts a limited key's
//! request and reserves its tokens (in memory, or in DynamoDB across instances); [`upstream`]
//! builds the request for the key's upstream (its auth, extras, SigV4 signing) and sends it with
//! the shared client in [`state::AppState`]; status, allowed headers ([`relay`]) and body bytes
//! ([`stream`]) are relayed as they arrive, and the tokens settled before the body's end.
//! Everything that can go wrong before that is a [`error::ProxyError`]. Each request ends in one
//! [`metering::RequestRecord`] (a log line, and a CloudWatch EMF record), with the token usage
//! [`usage`] read from the body as it passed.

pub mod app;
pub mod aws;
pub mod cache;
pub mod cli;
pub mod config;
pub mod deadline;
pub mod error;
pub mod headers;
mod json_text;
pub mod keymap;
pub mod keys;
pub mod lambda;
pub mod limits;
pub mod local;
pub mod logging;
pub mod metering;
pub mod multipart;
pub mod policy;
pub mod proxy;
pub mod relay;
pub mod request;
pub mod routes;
pub mod secrets;
pub mod state;
pub mod stream;
pub mod tls;
pub mod upstream;
pub mod usage;
