//! Wiring only: the command line (`cli.rs`), then, to serve, configuration, logging, state, and
//! the front door the environment asks for.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use openai_proxy::cli::{Cli, Command};
use openai_proxy::config::{Config, FrontDoor};
use openai_proxy::{app, cli, keys, lambda, local, logging, state};

fn main() -> ExitCode {
    match Cli::parse().command {
        None => serve(),
        Some(Command::HashKey) => match keys::hashed_member_name(std::io::stdin().lock()) {
            Ok(name) => match writeln!(std::io::stdout(), "{name}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(&err),
            },
            Err(problem) => fail(&problem),
        },
        Some(Command::Keys(command)) => cli::run_keys(command),
    }
}

fn serve() -> ExitCode {
    let config = match Config::from_lookup(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(errors) => return fail(&errors),
    };
    // One thread: everything on it, as a current-thread runtime. More: tokio's multi-thread
    // runtime, with that many workers, or one per CPU.
    let mut runtime = match config.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = threads {
                builder.worker_threads(threads);
            }
            builder
        }
    };
    match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(serve_with(config)),
        Err(err) => fail(&err),
    }
}

async fn serve_with(config: Config) -> ExitCode {
    logging::init(&config);
    let state = match state::AppState::start(&config).await {
        Ok(state) => state,
        Err(err) => return fail(&err),
    };
    let router = app::router(state);
    let served = match config.front_door {
        FrontDoor::Lambda => lambda::serve(router).await,
        FrontDoor::Local { listen_addr } => {
            local::serve(listen_addr, router).await.map_err(Into::into)
        }
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&*err),
    }
}

fn fail(err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("openai-proxy: {err}");
    ExitCode::FAILURE
}
