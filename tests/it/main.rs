//! One integration-test binary (one link instead of one per file), its modules by subject.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test loudly at the first surprise"
)]

mod api_fake_selfcheck;
mod api_sdks;
mod api_surface;
mod bench_runtime_api;
mod binary;
mod connect_faults;
mod dashboard;
mod deploy;
mod errors;
mod faults;
mod hostile;
mod keys_cli;
mod lambda_event_parse;
mod lambda_events;
mod lambda_runtime;
mod lambda_watch;
mod limits;
mod limits_contract;
mod limits_sdk;
mod limits_table;
mod metering;
mod properties;
mod proxy;
mod secrets_manager;
mod sigv4_fake;
mod support;
mod tls_roots;
mod upstreams;
