//! Wiring only: configuration, logging, state, and the front door the environment asks for.

use std::process::ExitCode;

use openai_proxy::config::{Config, FrontDoor, KeySourceConfig};
use openai_proxy::{app, local, secrets};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_lookup(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(errors) => return fail(&errors),
    };
    init_logging(&config);

    let KeySourceConfig::File(path) = &config.key_source;
    let keys = match secrets::load_file(path).await {
        Ok(keys) => keys,
        Err(err) => return fail(&err),
    };
    if keys.is_empty() {
        tracing::warn!("the key map is empty: every request will get 401");
    }
    let state = match app::AppState::new(&config, keys) {
        Ok(state) => state,
        Err(err) => return fail(&err),
    };
    let router = app::router(state);

    let served = match config.front_door {
        FrontDoor::Lambda => lambda_http::run_with_streaming_response_concurrent(router).await,
        FrontDoor::Local { listen_addr } => {
            local::serve(listen_addr, router).await.map_err(Into::into)
        }
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&*err),
    }
}

/// Logs to stderr; JSON when Lambda's JSON log format is selected, so CloudWatch can index it.
fn init_logging(config: &Config) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log_filter))
        .with_writer(std::io::stderr);
    match (&config.front_door, config.log_json) {
        (FrontDoor::Lambda, true) => builder.json().without_time().init(),
        (FrontDoor::Lambda, false) => builder.without_time().with_ansi(false).init(),
        (FrontDoor::Local { .. }, _) => builder.init(),
    }
}

fn fail(err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("openai-proxy: {err}");
    ExitCode::FAILURE
}
