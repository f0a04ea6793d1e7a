//! openai-proxy: an OpenAI-compatible proxy that swaps a wrapper key for a real upstream key.
//!
//! The request path: a front door ([`lambda`]: the Lambda runtime in response-streaming mode, or
//! [`local`]: a plain HTTP server) hands the request to [`app::router`]; [`proxy::forward`] authenticates the
//! wrapper key against the [`keymap::KeyMap`] held by the [`cache::KeyCache`] (loaded from a
//! [`secrets::KeySource`]: Secrets Manager or a file), sends the request upstream with the real key through
//! the shared client from [`upstream`], and relays status, allowed headers and body bytes as
//! they arrive. Everything that can go wrong before that is a [`error::ProxyError`]. Each
//! request ends in one [`metering::RequestRecord`] (a log line, and a CloudWatch EMF record),
//! with the token usage [`usage`] read from the body as it passed.

pub mod app;
pub mod cache;
pub mod config;
pub mod error;
pub mod headers;
pub mod keymap;
pub mod keys;
pub mod lambda;
pub mod local;
pub mod logging;
pub mod metering;
pub mod multipart;
pub mod policy;
pub mod proxy;
pub mod request;
pub mod routes;
pub mod secrets;
pub mod state;
pub mod stream;
pub mod upstream;
pub mod usage;
