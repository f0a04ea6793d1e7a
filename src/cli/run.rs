//! Running a `keys` command: read the key map, change it, check it, write it without losing a
//! concurrent edit; print the new wrapper key (create, rotate) or the list on stdout, and
//! nothing else there; messages on stderr; an exit code a script can rely on.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::document::{self, Document, EditError};
use super::list::{self, Listed};
use super::random::{generate_wrapper_key, random_byte};
use super::source::{Source, WriteError};
use super::{CreateArgs, KeysCommand, RealKeyArgs};

/// Why a command failed, and its exit code.
enum Failure {
    Source(String),
    Edit(EditError),
    Input(String),
    Raced(usize),
}

/// How many times an edit is re-read and re-applied when other edits win the race.
const ATTEMPTS: usize = 5;

/// Runs a `keys` command; what it prints on stdout is the wrapper key (create, rotate) or the
/// list, and nothing else.
pub fn run_keys(command: KeysCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&Failure::Source(format!("cannot start: {err}"))),
    };
    match runtime.block_on(keys(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(&failure),
    }
}

async fn keys(command: KeysCommand) -> Result<(), Failure> {
    let source = Source::from_lookup(|name| std::env::var(name).ok())
        .await
        .map_err(Failure::Source)?;
    match command {
        KeysCommand::Create(args) => {
            let (wrapper, digest) = generate_wrapper_key();
            let mut entry = new_entry(&args)?;
            // The id is written out, so the key's counters stay with it through rotations.
            let id = entry
                .entry("id")
                .or_insert_with(|| json!(digest.key_id()))
                .as_str()
                .unwrap_or_default()
                .to_owned();
            edit(&source, |document| document.add(&digest, entry.clone())).await?;
            say(&format!(
                "created the key {id} (tenant {}) in {}",
                args.tenant,
                source.describe()
            ));
            print_key(&wrapper)
        }
        KeysCommand::List { json } => {
            // Read, and the file's lock let go, before printing (stdout may be a slow pager).
            let bytes = source.read().await.map_err(Failure::Source)?.bytes;
            let document = Document::parse(&bytes).map_err(Failure::Edit)?;
            print_list(&list::rows(&document, SystemTime::now()), json)
        }
        KeysCommand::Rotate { id, grace } => {
            let (wrapper, digest) = generate_wrapper_key();
            let until = grace.and_then(|grace| SystemTime::now().checked_add(grace));
            edit(&source, |document| document.rotate(&id, &digest, until)).await?;
            match until {
                Some(until) => say(&format!(
                    "rotated the key {id}; its old key works until {}",
                    document::rfc3339(until)
                )),
                None => say(&format!(
                    "rotated the key {id}; its old key no longer works"
                )),
            }
            print_key(&wrapper)
        }
        KeysCommand::Revoke { id, key } => {
            let removed = edit(&source, |document| document.revoke(&id, key.as_deref())).await?;
            say(&format!(
                "revoked the key {id} ({removed} wrapper key(s) removed)"
            ));
            Ok(())
        }
        KeysCommand::SetRealKey { id, real_key } => {
            let real_key = read_real_key(&real_key)?.ok_or_else(|| {
                Failure::Input(
                    "give the real key with --real-key-stdin or --real-key-file".to_owned(),
                )
            })?;
            let changed = edit(&source, |document| document.set_real_key(&id, &real_key)).await?;
            say(&format!(
                "set the real key of {id} ({changed} wrapper key(s))"
            ));
            Ok(())
        }
        KeysCommand::Migrate => {
            let hashed = edit(&source, |document| {
                document.hash_plain_names();
                Ok(document.hashed)
            })
            .await?;
            say(&format!(
                "{} is a version-2 document; {hashed} plain wrapper key(s) hashed",
                source.describe()
            ));
            Ok(())
        }
    }
}

/// Reads the document, applies `change`, checks the result with the proxy's parser and writes
/// it without overwriting another edit: on a conflict, reads again and applies again.
async fn edit<T>(
    source: &Source,
    change: impl Fn(&mut Document) -> Result<T, EditError>,
) -> Result<T, Failure> {
    for attempt in 1..=ATTEMPTS {
        let snapshot = source.read().await.map_err(Failure::Source)?;
        let mut document = Document::parse(&snapshot.bytes).map_err(Failure::Edit)?;
        let outcome = change(&mut document).map_err(Failure::Edit)?;
        let bytes = document.to_bytes(source.pretty()).map_err(Failure::Edit)?;
        if bytes == snapshot.bytes {
            say(&format!(
                "{} already says so; nothing written",
                source.describe()
            ));
            return Ok(outcome);
        }
        match source.write(&bytes, &snapshot).await {
            Ok(version) => {
                if document.migrated {
                    say(&format!(
                        "{} was a flat key map; it is now written as a version-2 document (plain wrapper keys hashed)",
                        source.describe()
                    ));
                }
                if let Some(version) = version {
                    say(&format!(
                        "{} version {version} is now AWSCURRENT (the one before is AWSPREVIOUS)",
                        source.describe()
                    ));
                }
                return Ok(outcome);
            }
            Err(WriteError::Conflict) if attempt < ATTEMPTS => {
                say(&format!(
                    "another edit of {} was written after this one read it; reading it again and re-applying the change (attempt {} of {ATTEMPTS})",
                    source.describe(),
                    attempt + 1
                ));
                // A random pause, so edits racing each other do not keep colliding.
                let pause = 50 + u64::from(random_byte()) * 2;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            Err(WriteError::Conflict) => {}
            Err(WriteError::Failed(err)) => return Err(Failure::Source(err)),
        }
    }
    Err(Failure::Raced(ATTEMPTS))
}

/// The entry `keys create` adds, from its arguments.
fn new_entry(args: &CreateArgs) -> Result<Map<String, Value>, Failure> {
    let mut entry = Map::new();
    if let Some(real_key) = read_real_key(&args.real_key)? {
        entry.insert("api_key".to_owned(), json!(real_key));
    }
    entry.insert("tenant".to_owned(), json!(args.tenant));
    if let Some(id) = &args.id {
        entry.insert("id".to_owned(), json!(id));
    }
    if let Some(models) = &args.models {
        entry.insert("models".to_owned(), json!(models));
    }
    if let Some(routes) = &args.routes {
        entry.insert("routes".to_owned(), json!(routes));
    }
    if let Some(upstream) = &args.upstream {
        entry.insert("upstream".to_owned(), json!(upstream));
    }
    if let Some(expires) = &args.expires {
        entry.insert("expires_at".to_owned(), json!(expires));
    }
    let limits: Map<String, Value> = [
        ("requests_per_minute", args.rpm),
        ("tokens_per_minute", args.tpm),
        ("tokens_per_day", args.tokens_per_day),
        ("tokens_per_month", args.tokens_per_month),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|value| (name.to_owned(), json!(value))))
    .collect();
    if !limits.is_empty() {
        entry.insert("limits".to_owned(), Value::Object(limits));
    }
    Ok(entry)
}

/// The real key, from the first line of stdin or of a file; `None` when neither was asked for.
fn read_real_key(args: &RealKeyArgs) -> Result<Option<String>, Failure> {
    let mut text = String::new();
    if args.real_key_stdin {
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            return Err(Failure::Input(
                "--real-key-stdin reads the real key from a pipe (printf '%s' \"$KEY\" | openai-proxy keys …); typed at a terminal it would be shown".to_owned(),
            ));
        }
        std::io::stdin().read_to_string(&mut text).map_err(|err| {
            Failure::Input(format!(
                "cannot read the real key from standard input: {err}"
            ))
        })?;
    } else if let Some(path) = &args.real_key_file {
        text = std::fs::read_to_string(path).map_err(|err| {
            Failure::Input(format!(
                "cannot read the real key from {}: {err}",
                path.display()
            ))
        })?;
    } else {
        return Ok(None);
    }
    let key = text.lines().next().unwrap_or_default().trim();
    if key.is_empty() {
        return Err(Failure::Input("the real key is empty".to_owned()));
    }
    Ok(Some(key.to_owned()))
}

fn print_key(wrapper: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{wrapper}")
        .and_then(|()| stdout.flush())
        .map_err(|err| {
            Failure::Source(format!(
                "cannot write the new key to standard output: {err}"
            ))
        })
}

fn print_list(rows: &[Listed], as_json: bool) -> Result<(), Failure> {
    let text = if as_json {
        let mut text = serde_json::to_string_pretty(rows).unwrap_or_default();
        text.push('\n');
        text
    } else {
        list::table(rows)
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|err| Failure::Source(format!("cannot write to standard output: {err}")))
}

fn say(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "openai-proxy keys: {message}");
}

fn fail(failure: &Failure) -> ExitCode {
    let (code, message) = match failure {
        Failure::Source(message) => (1, message.clone()),
        Failure::Edit(err @ (EditError::NoSuchId(_) | EditError::NoSuchKey(..))) => {
            (3, err.to_string())
        }
        Failure::Edit(err) => (5, err.to_string()),
        Failure::Input(message) => (5, message.clone()),
        Failure::Raced(attempts) => (
            4,
            format!(
                "other edits were written between this command's read and write {attempts} times in a row; nothing was written, try again"
            ),
        ),
    };
    say(&message);
    ExitCode::from(code)
}
