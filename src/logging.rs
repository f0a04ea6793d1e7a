//! Logging set-up: stderr, JSON lines under Lambda's JSON log format, and a filter from
//! `RUST_LOG` (`level` and `target=level` directives). One rule overrides the user's filter:
//! `lambda_runtime` logs every raw invocation event, Authorization header included, at TRACE, so
//! its TRACE output is never enabled.

use tracing::Level;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, FrontDoor};

/// The filter for a `RUST_LOG`-style string (`None` if it cannot be read), with the key-safety
/// cap applied.
pub fn filter(directives: &str) -> Option<Targets> {
    let targets = directives.parse::<Targets>().ok()?;
    Some(cap_event_dumps(targets))
}

/// The module that dumps events. Capping exactly it (the most specific target there can be)
/// overrides whatever the user's directives say about it or its parents.
const EVENT_DUMPER: &str = "lambda_runtime::layers::api_response";

fn cap_event_dumps(targets: Targets) -> Targets {
    if targets.would_enable(EVENT_DUMPER, &Level::TRACE) {
        targets.with_target(EVENT_DUMPER, LevelFilter::DEBUG)
    } else {
        targets
    }
}

pub fn init(config: &Config) {
    let parsed = filter(&config.log_filter);
    let understood = parsed.is_some();
    let filter =
        parsed.unwrap_or_else(|| cap_event_dumps(Targets::new().with_default(Level::INFO)));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match (&config.front_door, config.log_json) {
        // One JSON object per line with the event's fields at the top level (`timestamp`,
        // `level`, `message`, then the fields), as CloudWatch and Lambda's JSON format expect.
        (_, true) => registry
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .init(),
        // Lambda stamps each plain-text line itself.
        (FrontDoor::Lambda, false) => registry.with(layer.without_time().with_ansi(false)).init(),
        (FrontDoor::Local { .. }, false) => registry
            .with(layer.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())))
            .init(),
    }
    if !understood {
        tracing::warn!(
            "RUST_LOG is not a list of level or target=level directives; logging at info"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_never_dumps_raw_events_even_at_trace() {
        for directives in [
            "trace",
            "lambda_runtime=trace",
            "info,lambda_runtime::layers=trace",
        ] {
            let targets = filter(directives).unwrap();
            assert!(
                !targets.would_enable(EVENT_DUMPER, &Level::TRACE),
                "{directives}"
            );
        }
        let everything = filter("trace").unwrap();
        assert!(everything.would_enable("openai_proxy::proxy", &Level::TRACE));
        assert!(everything.would_enable("lambda_runtime::runtime", &Level::DEBUG));
        let quiet = filter("warn").unwrap();
        assert!(!quiet.would_enable("lambda_runtime::runtime", &Level::DEBUG));
    }
}
