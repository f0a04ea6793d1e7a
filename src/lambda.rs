//! The Lambda front door: the router behind a Runtime API client of the proxy's own, in
//! response-streaming mode. Each function-URL event becomes a request in `event.rs`, with
//! lambda_http's `Context` (which holds the deadline) in its extensions; the loop around it is
//! here because `lambda_runtime`
//! 1.5 connects to the Runtime API without `TCP_NODELAY` and posts a streamed response in several
//! small writes: Nagle's algorithm held each write after the first until the Runtime API's delayed
//! ACK, about 40 ms per invocation on the benchmark's fake Runtime API (B11). This client sets
//! `TCP_NODELAY`, and hands the prelude and its delimiter over together, so they leave in one
//! write.
//!
//! One failed invocation costs that invocation, never the process: a response the Runtime API
//! cuts off (its function URL client left, under `cargo lambda watch`) is logged with the
//! invocation's id and the next event is taken. An event that is not a function-URL request is
//! reported on the invocation's `/error`. A Runtime API that is gone ends the process at its next
//! poll for an event, as Lambda expects of a runtime. Under Lambda Managed Instances
//! (`AWS_LAMBDA_MAX_CONCURRENCY`) as many workers poll at once.

pub mod event;
mod runtime_api;

use std::sync::Arc;

use axum::Router;
use lambda_http::tower::ServiceExt;
use lambda_http::{Context, Error as BoxError};

use runtime_api::{Next, RuntimeApi};

pub async fn serve(app: Router) -> Result<(), BoxError> {
    let api = RuntimeApi::from_env()?;
    let config = Arc::new(lambda_http::lambda_runtime::Config::from_env());
    let workers = std::env::var("AWS_LAMBDA_MAX_CONCURRENCY")
        .ok()
        .and_then(|value| value.trim().parse::<usize>().ok())
        .filter(|&workers| workers > 0)
        .unwrap_or(1);
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..workers {
        running.spawn(worker(api.clone(), config.clone(), app.clone()));
    }
    // The first worker to end (its Runtime API gone) ends the process.
    match running.join_next().await {
        Some(Ok(ended)) => ended,
        Some(Err(panicked)) => Err(panicked.into()),
        None => Ok(()),
    }
}

/// Takes events one after another until the Runtime API cannot be reached.
async fn worker(
    api: RuntimeApi,
    config: Arc<lambda_http::lambda_runtime::Config>,
    app: Router,
) -> Result<(), BoxError> {
    loop {
        let next = api.next().await?;
        if let Err(err) = invoke(&api, &config, &app, &next).await {
            tracing::error!(
                requestId = %next.request_id,
                error = %err,
                "the response to this invocation could not be delivered to the Lambda Runtime API (did its client leave?); taking the next event"
            );
        }
    }
}

/// One invocation: the event as a request to the router, its response streamed back.
async fn invoke(
    api: &RuntimeApi,
    config: &Arc<lambda_http::lambda_runtime::Config>,
    app: &Router,
    next: &Next,
) -> Result<(), BoxError> {
    let context = match Context::new(&next.request_id, config.clone(), &next.headers) {
        Ok(context) => context,
        Err(_) => {
            // The error could quote a header's value (a client context): not repeated.
            let message =
                "the invocation's headers are not Lambda's (deadline, client context or identity)";
            return api.error(next, "Runtime.InvalidContext", message).await;
        }
    };
    let mut request = match event::request(&next.event) {
        Ok(request) => request,
        Err(bad) => {
            return api
                .error(next, "Runtime.DeserializeError", &bad.to_string())
                .await;
        }
    };
    if let Some(trace) = context.xray_trace_id.as_deref()
        && let Ok(value) = trace.parse()
    {
        request.headers_mut().insert("x-amzn-trace-id", value);
    }
    request.extensions_mut().insert(context);
    let response = match app.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    api.respond(next, response).await
}
