//! The proxy's router behind `lambda_runtime`'s own Runtime API client (lambda_http's streaming
//! runner), as the proxy ran before it had a client of its own. Not a way to run the proxy: the
//! binary's front door is `src/lambda.rs`. It exists so that a test can hold the benchmark's fake
//! Runtime API to the reference client too (`tests/it/bench_runtime_api.rs`): the fake must
//! speak the protocol Lambda's own runtime speaks, or what B11 and B12 measure means little.

use std::process::ExitCode;

use openai_proxy::config::Config;
use openai_proxy::{app, logging, state};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match Config::from_lookup(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(errors) => return fail(&errors),
    };
    logging::init(&config);
    let state = match state::AppState::start(&config).await {
        Ok(state) => state,
        Err(err) => return fail(&err),
    };
    match lambda_http::run_with_streaming_response(app::router(state)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&*err),
    }
}

fn fail(err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("lambda_runtime_reference: {err}");
    ExitCode::FAILURE
}
