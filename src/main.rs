//! Wiring only: the `hash-key` command, or configuration, logging, state, and the front door
//! the environment asks for.

use std::io::Write;
use std::process::ExitCode;

use openai_proxy::config::{Config, FrontDoor};
use openai_proxy::{app, keys, local};

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => serve(),
        Some("hash-key") => match keys::hashed_member_name(std::io::stdin().lock()) {
            Ok(name) => match writeln!(std::io::stdout(), "{name}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(&err),
            },
            Err(problem) => fail(&problem),
        },
        Some(_) => fail(
            &"usage: openai-proxy            serve (settings from the environment)\n       openai-proxy hash-key   print the sha256: name for a wrapper key read from stdin",
        ),
    }
}

#[tokio::main]
async fn serve() -> ExitCode {
    let config = match Config::from_lookup(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(errors) => return fail(&errors),
    };
    init_logging(&config);
    let state = match app::AppState::start(&config).await {
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
        (FrontDoor::Local { .. }, _) => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn fail(err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("openai-proxy: {err}");
    ExitCode::FAILURE
}
