//! The same commands on a `KEY_MAP_FILE`, with the proxy binary serving the file: each edit
//! replaces the file by a rename (a new inode) and leaves no temporary file beside it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{
    PICKED_UP, chats_with, flat_example, parse_rfc3339, proxy_over_file, read_document, row_of,
    rows_with, upstream_never_saw,
};
use crate::support::keys_cli::{KeysCli, assert_none_in, chat_status, member_name, until_status};
use crate::support::upstream::FakeUpstream;
use crate::support::{OTHER_REAL_KEY, OTHER_WRAPPER_KEY, REAL_KEY, TempFile, WRAPPER_KEY, openai};

/// The file's inode, and the names in its directory.
fn file_state(path: &Path) -> (u64, Vec<String>) {
    let inode = std::fs::metadata(path).unwrap().ino();
    let mut names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    (inode, names)
}

/// Runs `edit`, then checks the file was replaced by a rename (a new inode) and nothing but the
/// key map is left in its directory.
async fn replaced<F: std::future::Future<Output = T>, T>(path: &Path, edit: F) -> T {
    let (before, _) = file_state(path);
    let outcome = edit.await;
    let (after, names) = file_state(path);
    assert_ne!(before, after, "the file was replaced by a rename");
    assert_eq!(names, ["keys.json"], "no temporary file is left beside it");
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_commands_edit_a_key_map_file_atomically() {
    let keys = TempFile::with_contents("keys.json", &flat_example());
    let path = keys.path.as_path();
    let real_key_file = TempFile::with_contents("real-key", "sk-file-real-1\n");
    let upstream = FakeUpstream::start(openai::respond).await;
    let cli = KeysCli::over_file(keys.path_str());
    for key in [WRAPPER_KEY, REAL_KEY, OTHER_WRAPPER_KEY, OTHER_REAL_KEY] {
        cli.secret(key);
    }
    cli.secret("sk-file-real-1");

    // Migrate the flat example; a proxy started on the result serves its wrapper keys.
    let migrated = replaced(path, cli.ok(&["migrate"], None)).await;
    assert!(migrated.stderr.contains("was a flat key map"));
    let document = read_document(path);
    assert_eq!(document["version"], 2);
    assert_eq!(document["keys"][member_name(WRAPPER_KEY)], REAL_KEY);
    assert_eq!(
        document["keys"][member_name(OTHER_WRAPPER_KEY)],
        OTHER_REAL_KEY
    );
    assert!(!std::fs::read_to_string(path).unwrap().contains(WRAPPER_KEY));
    let proxy = proxy_over_file(keys.path_str(), &upstream);
    let base = proxy.base_url();
    assert_eq!(
        chat_status(&base, WRAPPER_KEY).await.status(),
        StatusCode::OK
    );
    assert_eq!(chats_with(&upstream, REAL_KEY), 1);

    // Create, the real key from a file.
    let run = replaced(
        path,
        cli.run(
            &[
                "create",
                "--tenant",
                "files",
                "--id",
                "file-app",
                "--models",
                "gpt-4o-mini,text-embedding-3-small",
                "--real-key-file",
                real_key_file.path_str(),
            ],
            None,
        ),
    )
    .await;
    let first = run.printed_key();
    cli.secret(&first);
    assert!(!std::fs::read_to_string(path).unwrap().contains(&first));
    assert_eq!(
        read_document(path)["keys"][member_name(&first)],
        json!({
            "api_key": "sk-file-real-1",
            "tenant": "files",
            "id": "file-app",
            "models": ["gpt-4o-mini", "text-embedding-3-small"],
        })
    );
    until_status(&base, &first, StatusCode::OK, PICKED_UP).await;
    assert_eq!(chats_with(&upstream, "sk-file-real-1"), 1);
    let rows = cli.list_json().await;
    assert_eq!(
        row_of(&rows, &first)["models"],
        json!(["gpt-4o-mini", "text-embedding-3-small"])
    );

    // Rotate with a grace of an hour: both keys work.
    let second = replaced(path, cli.rotate("file-app", &["--grace", "1h"])).await;
    let rows = cli.list_json().await;
    assert_eq!(rows_with(&rows, "file-app").len(), 2);
    let grace_ends = parse_rfc3339(row_of(&rows, &first)["expires_at"].as_str().unwrap());
    let hour = SystemTime::now() + Duration::from_secs(3600);
    assert!(grace_ends <= hour && grace_ends + Duration::from_secs(60) > hour);
    assert_eq!(row_of(&rows, &second)["expires_at"], Value::Null);
    until_status(&base, &second, StatusCode::OK, PICKED_UP).await;
    assert_eq!(chat_status(&base, &first).await.status(), StatusCode::OK);

    // Set the real key from stdin: both keys of the id carry it.
    cli.secret("sk-file-real-2");
    replaced(
        path,
        cli.ok(
            &["set-real-key", "file-app", "--real-key-stdin"],
            Some("sk-file-real-2"),
        ),
    )
    .await;
    let document = read_document(path);
    for key in [&first, &second] {
        assert_eq!(
            document["keys"][member_name(key)]["api_key"],
            "sk-file-real-2"
        );
    }
    let deadline = std::time::Instant::now() + PICKED_UP;
    while chats_with(&upstream, "sk-file-real-2") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new real key never reached the upstream"
        );
        assert_eq!(chat_status(&base, &second).await.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A refused edit leaves the very same file.
    let (inode, _) = file_state(path);
    let bytes = std::fs::read(path).unwrap();
    cli.run(
        &[
            "create",
            "--tenant",
            "files",
            "--upstream",
            "nope",
            "--real-key-stdin",
        ],
        Some("sk-file-real-2"),
    )
    .await
    .expect_code(5);
    assert_eq!(file_state(path), (inode, vec!["keys.json".to_owned()]));
    assert_eq!(std::fs::read(path).unwrap(), bytes);

    // Revoke: both keys stop; the example's keys still work.
    replaced(path, cli.ok(&["revoke", "file-app"], None)).await;
    until_status(&base, &second, StatusCode::UNAUTHORIZED, PICKED_UP).await;
    assert_eq!(
        chat_status(&base, &first).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        chat_status(&base, OTHER_WRAPPER_KEY).await.status(),
        StatusCode::OK
    );
    let rows = cli.list_json().await;
    assert!(rows_with(&rows, "file-app").is_empty());
    assert_eq!(rows.len(), 2);

    upstream_never_saw(
        &upstream,
        &[&first, &second, WRAPPER_KEY, OTHER_WRAPPER_KEY],
    );
    cli.assert_no_key_shown();
    let log = proxy.stop();
    assert_none_in(&log, &cli.secrets(), "the proxy's log");
}
