//! Where the key map document comes from. For now the one source is a local JSON file
//! (`KEY_MAP_FILE`), the embedded default for running without an AWS account.
//! Errors name the file and the problem, never a key.

use std::path::Path;

use crate::keys::KeyMap;

#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    #[error("key map file {path}: cannot be read: {reason}")]
    FileUnreadable {
        path: String,
        reason: std::io::Error,
    },
    #[error("key map file {path}: {reason}")]
    FileInvalid {
        path: String,
        reason: crate::keys::KeyMapError,
    },
}

pub async fn load_file(path: &Path) -> Result<KeyMap, KeySourceError> {
    let shown = path.display().to_string();
    let document =
        tokio::fs::read(path)
            .await
            .map_err(|reason| KeySourceError::FileUnreadable {
                path: shown.clone(),
                reason,
            })?;
    KeyMap::parse(&document).map_err(|reason| KeySourceError::FileInvalid {
        path: shown,
        reason,
    })
}
