//! Where `openai-proxy keys` reads and writes the key map: the source the server reads
//! (`KEY_MAP_SECRET_ID` or `KEY_MAP_FILE`, with the same AWS settings). A write never overwrites
//! an edit it did not read:
//! - a secret gets the new document as a new version, and `AWSCURRENT` is moved to it only from
//!   the version that was read (`UpdateSecretVersionStage` with `RemoveFromVersionId`), which
//!   fails if someone else made another version current in between;
//! - a file is locked (an exclusive `flock` on it) from the read to the rename of a temporary
//!   file, written beside it with the same permissions, over it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;

/// A document as read, and the version it was read at (a secret's `VersionId`), or, for a file,
/// the lock held on it until the write.
pub struct Snapshot {
    pub bytes: Vec<u8>,
    version: Option<String>,
    _lock: Option<std::fs::File>,
}

pub enum Source {
    File(PathBuf),
    Secret {
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
    },
}

#[derive(Debug)]
pub enum WriteError {
    /// Another edit was written after this one's read.
    Conflict,
    Failed(String),
}

/// The stage a new version is put under until it is made current, so putting it moves nothing.
const PENDING_STAGE: &str = "OPENAI_PROXY_PENDING";

impl Source {
    /// The source the environment names, exactly one of them, as the server requires.
    pub async fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        match (get("KEY_MAP_FILE"), get("KEY_MAP_SECRET_ID")) {
            // The file a symbolic link names is the one edited; the link stays a link.
            (Some(path), None) => Ok(Self::File(
                std::fs::canonicalize(&path).unwrap_or_else(|_| PathBuf::from(path)),
            )),
            (None, Some(secret_id)) => {
                let timeouts = aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(10))
                    .build();
                let config = aws_sdk_secretsmanager::config::Builder::from(
                    &crate::aws::shared_config().await,
                )
                .timeout_config(timeouts)
                .build();
                Ok(Self::Secret {
                    client: aws_sdk_secretsmanager::Client::from_conf(config),
                    secret_id: secret_id.trim().to_owned(),
                })
            }
            (Some(_), Some(_)) => Err("KEY_MAP_FILE and KEY_MAP_SECRET_ID are both set: set exactly one, as for the server".to_owned()),
            (None, None) => Err("no key map: set KEY_MAP_SECRET_ID (a Secrets Manager secret) or KEY_MAP_FILE (a JSON file), as for the server".to_owned()),
        }
    }

    /// Whether the document is written for people (a file) or compactly (a secret's 64 KiB).
    pub fn pretty(&self) -> bool {
        matches!(self, Self::File(_))
    }

    /// How messages name the source (never its contents).
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => format!("key map file {}", path.display()),
            Self::Secret { secret_id, .. } => format!("secret {secret_id}"),
        }
    }

    pub async fn read(&self) -> Result<Snapshot, String> {
        match self {
            Self::File(path) => {
                let cannot =
                    |err: std::io::Error| format!("{}: cannot be read: {err}", self.describe());
                let lock = lock(path).await.map_err(cannot)?;
                let bytes = tokio::fs::read(path).await.map_err(cannot)?;
                Ok(Snapshot {
                    bytes,
                    version: None,
                    _lock: Some(lock),
                })
            }
            Self::Secret { client, secret_id } => {
                let read = client
                    .get_secret_value()
                    .secret_id(secret_id)
                    .send()
                    .await
                    .map_err(|err| format!("{}: {}", self.describe(), aws_error(&err)))?;
                let bytes = read
                    .secret_string()
                    .ok_or_else(|| format!("{}: has no SecretString", self.describe()))?
                    .as_bytes()
                    .to_vec();
                Ok(Snapshot {
                    bytes,
                    version: read.version_id().map(str::to_owned),
                    _lock: None,
                })
            }
        }
    }

    /// Writes `bytes` if the source still holds the snapshot `read`; the new version's id.
    pub async fn write(&self, bytes: &[u8], read: &Snapshot) -> Result<Option<String>, WriteError> {
        match self {
            // The read's lock is held until `read` is dropped, after this; an editor that takes no
            // lock may still have written in between, which the comparison catches.
            Self::File(path) => {
                if std::fs::read(path).ok().as_deref() != Some(&read.bytes[..]) {
                    return Err(WriteError::Conflict);
                }
                write_file(path, bytes).map(|()| None)
            }
            Self::Secret { client, secret_id } => {
                let failed =
                    |err: String| WriteError::Failed(format!("{}: {err}", self.describe()));
                let text = String::from_utf8(bytes.to_vec())
                    .map_err(|_| failed("the new document is not UTF-8".to_owned()))?;
                let put = client
                    .put_secret_value()
                    .secret_id(secret_id)
                    .secret_string(text)
                    .client_request_token(super::random::random_token())
                    .version_stages(PENDING_STAGE)
                    .send()
                    .await
                    .map_err(|err| failed(aws_error(&err)))?;
                let new_version = put
                    .version_id()
                    .ok_or_else(|| failed("PutSecretValue returned no VersionId".to_owned()))?
                    .to_owned();
                let moved = client
                    .update_secret_version_stage()
                    .secret_id(secret_id)
                    .version_stage("AWSCURRENT")
                    .move_to_version_id(&new_version)
                    .set_remove_from_version_id(read.version.clone())
                    .send()
                    .await;
                match moved {
                    Ok(_) => Ok(Some(new_version)),
                    // The move may have landed and only its answer been lost (a retry is then
                    // refused): the new version current is success. Another version current is
                    // a conflict. Anything else (access denied, throttling) is a failure.
                    Err(err) => match self.read().await {
                        Ok(now) if now.version.as_deref() == Some(new_version.as_str()) => {
                            Ok(Some(new_version))
                        }
                        Ok(now) if now.version != read.version => Err(WriteError::Conflict),
                        _ => Err(failed(aws_error(&err))),
                    },
                }
            }
        }
    }
}

/// How long an edit waits for another edit of the same file to finish.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// An exclusive lock on the key map file, held from the read to the rename (another
/// `openai-proxy keys` waits for it). The lock is on the file the path names when it is taken: a
/// rename by the edit before puts a new file there, so that is checked, and the lock taken again.
async fn lock(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::MetadataExt;
    let waiting_since = tokio::time::Instant::now();
    loop {
        let file = std::fs::File::open(path)?;
        match file.try_lock() {
            Ok(()) => {
                let (locked, named) = (file.metadata()?, std::fs::metadata(path)?);
                if (locked.dev(), locked.ino()) == (named.dev(), named.ino()) {
                    return Ok(file);
                }
            }
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(err)) => return Err(err),
        }
        if waiting_since.elapsed() > LOCK_WAIT {
            return Err(std::io::Error::other(
                "another edit has held it locked for 30 s; try again",
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A temporary file beside `path`, with its permissions (a key map holds real keys: a 0600 file
/// stays 0600), flushed to disk, then renamed over it, while the read's lock is held: readers see
/// the old document or the new one, never a part, and no edit is lost.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let failed = |what: &str, err: std::io::Error| {
        WriteError::Failed(format!("key map file {}: {what}: {err}", path.display()))
    };
    let name = path
        .file_name()
        .map_or_else(Default::default, |name| name.to_string_lossy().into_owned());
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", super::random::random_token()));
    let original =
        std::fs::metadata(path).map_err(|err| failed("cannot read its permissions", err))?;
    let permissions = original.permissions();
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            // The owner too, where this user may set it (an edit run with sudo must not leave
            // the server a file it cannot read).
            let _ = std::os::unix::fs::fchown(&file, Some(original.uid()), Some(original.gid()));
            file.set_permissions(permissions)?;
            file.sync_all()
        });
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(failed("cannot write a temporary file beside it", err));
    }
    std::fs::rename(&temporary, path).map_err(|err| {
        let _ = std::fs::remove_file(&temporary);
        failed("cannot rename the temporary file over it", err)
    })
}

/// An AWS error as the service named it: code and message, which name the secret, never its
/// value.
fn aws_error<E, R>(err: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match err.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("no message")
        ),
        None => format!("the AWS call failed: {}", crate::upstream::ErrorChain(err)),
    }
}
