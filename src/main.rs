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
/// The filter takes `RUST_LOG`'s `level` and `target=level` directives (no regex engine needed).
fn init_logging(config: &Config) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let parsed = config.log_filter.parse::<Targets>().ok();
    let understood = parsed.is_some();
    let filter = parsed.unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match (&config.front_door, config.log_json) {
        (FrontDoor::Lambda, true) => registry.with(layer.json().without_time()).init(),
        (FrontDoor::Lambda, false) => registry.with(layer.without_time().with_ansi(false)).init(),
        (FrontDoor::Local { .. }, _) => registry
            .with(layer.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())))
            .init(),
    }
    if !understood {
        tracing::warn!(
            "RUST_LOG is not a list of level or target=level directives; logging at info"
        );
    }
}

fn fail(err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("openai-proxy: {err}");
    ExitCode::FAILURE
}
