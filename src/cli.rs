//! `openai-proxy keys …`: manage wrapper keys in the key map the server reads, from the command
//! line. Wrapper keys are made here from the operating system's CSPRNG and printed once; only
//! their `sha256:` names are stored. Real keys come from stdin or a file, never from argv (which
//! shell history and `ps` keep). Every edit is validated by the proxy's own parser before it is
//! written, and written so that a concurrent edit is never lost (`cli/source.rs`).
//!
//! Nothing here runs when the binary serves: `main.rs` calls it only for these subcommands.

mod document;
mod list;
mod random;
mod run;
mod source;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use document::{Document, EditError};
pub use list::Listed;
pub use run::run_keys;

#[derive(Parser)]
#[command(
    name = "openai-proxy",
    version,
    about = "An OpenAI-compatible proxy that swaps wrapper keys for real upstream keys.\n\nWithout a command it serves: under AWS Lambda when AWS_LAMBDA_RUNTIME_API is set, else on LISTEN_ADDR. Settings come from the environment (see the README)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print the `sha256:` member name for a wrapper key read from standard input.
    HashKey,
    /// Manage wrapper keys in the key map the server reads (KEY_MAP_SECRET_ID or KEY_MAP_FILE).
    #[command(subcommand, after_help = EXIT_CODES)]
    Keys(KeysCommand),
}

const EXIT_CODES: &str = "Exit codes: 0 done; 1 the key map could not be read or written; 2 bad arguments; 3 no key has that id; 4 other edits kept winning the race (nothing written); 5 the key map, the change or the real key given is not valid (nothing written).";

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a new wrapper key and print it, once, on stdout.
    #[command(after_help = EXIT_CODES)]
    Create(Box<CreateArgs>),
    /// One row per key: ids, tenant, upstream, models, routes, limits, expiry. Never a key.
    #[command(after_help = EXIT_CODES)]
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A new wrapper key for the key ID (same id, so its limits and budgets carry over),
    /// printed once; the old key works until the grace ends.
    #[command(after_help = EXIT_CODES)]
    Rotate {
        id: String,
        /// How long the old key keeps working: 30s, 10m, 2h, 7d (default: it stops at once).
        #[arg(long, value_parser = parse_grace)]
        grace: Option<Duration>,
    },
    /// Remove every wrapper key of the key ID.
    #[command(after_help = EXIT_CODES)]
    Revoke {
        /// The key's id (the ID column of `keys list`).
        id: String,
        /// Only this one of its wrapper keys (the KEY ID column), e.g. a leaked one still in its
        /// grace after a rotation.
        #[arg(long, value_name = "KEY_ID")]
        key: Option<String>,
    },
    /// Set the real (upstream) key of the key ID.
    #[command(after_help = EXIT_CODES)]
    #[command(group(clap::ArgGroup::new("real-key").required(true).args(["real_key_stdin", "real_key_file"])))]
    SetRealKey {
        id: String,
        #[command(flatten)]
        real_key: RealKeyArgs,
    },
    /// Rewrite the key map as a version-2 document, plain wrapper keys hashed.
    #[command(after_help = EXIT_CODES)]
    Migrate,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The tenant the key belongs to (logs, metrics, tenant limits).
    #[arg(long)]
    tenant: String,
    /// Whose counters the key's limits count in (default: its key id, `key:` and 8 hex digits).
    #[arg(long)]
    id: Option<String>,
    /// The only models the key may use, comma-separated.
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// The only route groups the key may call, comma-separated (e.g. chat.completions,files).
    #[arg(long, value_delimiter = ',')]
    routes: Option<Vec<String>>,
    /// One of the key map's named upstreams.
    #[arg(long)]
    upstream: Option<String>,
    /// When the key stops working, RFC 3339 (e.g. 2027-03-31T23:59:59Z).
    #[arg(long)]
    expires: Option<String>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u64>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<u64>,
    #[arg(long)]
    tokens_per_day: Option<u64>,
    #[arg(long)]
    tokens_per_month: Option<u64>,
    #[command(flatten)]
    real_key: RealKeyArgs,
}

/// Where the real key comes from: never the command line.
#[derive(Args)]
#[group(multiple = false)]
pub struct RealKeyArgs {
    /// Read the real key from the first line of standard input.
    #[arg(long)]
    real_key_stdin: bool,
    /// Read the real key from the first line of this file.
    #[arg(long, value_name = "PATH")]
    real_key_file: Option<PathBuf>,
}

/// The longest grace: a year (a key's end belongs in `--expires`, not in a rotation).
const MAX_GRACE: Duration = Duration::from_secs(366 * 86_400);

/// `30s`, `10m`, `2h`, `7d`, up to a year.
fn parse_grace(text: &str) -> Result<Duration, String> {
    let wrong = || "a duration such as 30s, 10m, 2h or 7d, at most 366d".to_owned();
    let text = text.trim();
    let units = [("s", 1), ("m", 60), ("h", 3_600), ("d", 86_400)];
    let (number, unit) = units
        .iter()
        .find_map(|&(suffix, seconds)| text.strip_suffix(suffix).map(|number| (number, seconds)))
        .ok_or_else(wrong)?;
    number
        .parse::<u64>()
        .ok()
        .and_then(|count| count.checked_mul(unit))
        .map(Duration::from_secs)
        .filter(|grace| *grace <= MAX_GRACE)
        .ok_or_else(wrong)
}

#[cfg(test)]
mod tests;
