//! Edges a first version of `src/cli` got wrong (found while these tests were written): concurrent
//! edits of a file, its permissions, which key a rotation copies, a stage move whose answer was
//! lost, and what migrate reports; and, after a second read, one leaked key revoked alone and an
//! unlisted tenant refused.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use super::{SECRET, flat_example, moto_with, read_document, row_of, seed};
use crate::support::TempFile;
use crate::support::keys_cli::{KeysCli, current, key_id, member_name};
use crate::support::secret_relay::SecretRelay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_on_a_file_never_lose_a_reported_edit() {
    const RUNS: usize = 16;
    let keys = TempFile::with_contents("keys.json", &seed().to_string());
    let cli = KeysCli::over_file(keys.path_str());
    let ids: Vec<String> = (0..RUNS).map(|run| format!("concurrent-{run}")).collect();
    let runs = ids.iter().map(|id| async {
        cli.run(
            &["create", "--tenant", "many", "--id", id, "--real-key-stdin"],
            Some("sk-many-real\n"),
        )
        .await
    });
    let finished = futures_util::future::join_all(runs).await;
    let document = read_document(&keys.path);
    let lost: Vec<&String> = finished
        .iter()
        .filter(|run| run.code == 0)
        .map(|run| &run.args[4])
        .filter(|id| !document.to_string().contains(&format!("\"{id}\"")))
        .collect();
    assert!(
        lost.is_empty(),
        "reported created (exit 0, key printed) but not in the file: {lost:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_keeps_the_key_map_files_permissions() {
    let keys = TempFile::with_contents("keys.json", &seed().to_string());
    std::fs::set_permissions(&keys.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cli = KeysCli::over_file(keys.path_str());
    cli.create(&["--tenant", "acme"], "sk-private-real").await;
    let mode = std::fs::metadata(&keys.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the real keys' file is now {mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_does_not_inherit_an_old_keys_grace() {
    let keys = TempFile::with_contents("keys.json", &seed().to_string());
    let cli = KeysCli::over_file(keys.path_str());
    cli.create(&["--tenant", "acme", "--id", "other"], "sk-other-real")
        .await;
    cli.create(&["--tenant", "acme", "--id", "app"], "sk-app-real")
        .await;
    let kept = cli.rotate("app", &["--grace", "1h"]).await;
    // Removing a member that is not last moves the last one (the key just made) into its place.
    cli.ok(&["revoke", "other"], None).await;
    let newest = cli.rotate("app", &[]).await;
    let rows = cli.list_json().await;
    assert!(rows.iter().all(|row| row["key_id"] != key_id(&kept)));
    assert_eq!(
        row_of(&rows, &newest)["expires_at"],
        Value::Null,
        "a key rotated without a grace got the old key's expiry: {rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_move_whose_answer_was_lost_is_not_applied_twice() {
    let moto = moto_with(&seed().to_string()).await;
    let relay = SecretRelay::start(&moto.endpoint, SECRET).await;
    let cli = KeysCli::over_secret(&relay.endpoint, SECRET);
    relay.lose_the_stage_moves_answer();
    let run = cli
        .run(
            &[
                "create",
                "--tenant",
                "acme",
                "--id",
                "acme-app",
                "--real-key-stdin",
            ],
            Some("sk-acme-real\n"),
        )
        .await;
    let (_, document) = current(&moto.client(), SECRET).await;
    assert!(
        document.to_string().contains("\"acme-app\""),
        "the edit landed: {document}"
    );
    // The edit is in the secret, so the command must say so and hand over its key.
    run.printed_key();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_says_how_many_plain_keys_it_hashed() {
    let keys = TempFile::with_contents("keys.json", &flat_example());
    let cli = KeysCli::over_file(keys.path_str());
    let run = cli.ok(&["migrate"], None).await;
    assert!(
        run.stderr.contains("2 plain wrapper key(s) hashed"),
        "{}",
        run.stderr
    );
}

/// After a rotation with grace, the leaked old key alone is revoked by its key id; the new key
/// keeps working. A tenant the document does not list is refused, not silently added. Nothing
/// any of it printed holds a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leaked_key_is_revoked_alone_and_an_unlisted_tenant_is_refused() {
    let keys = TempFile::with_contents(
        "keys.json",
        r#"{"version": 2, "tenants": {"acme": {}}, "keys": {}}"#,
    );
    let cli = KeysCli::over_file(keys.path_str());
    let old = cli
        .create(&["--tenant", "acme", "--id", "app"], "sk-app-real")
        .await;
    let new = cli.rotate("app", &["--grace", "1h"]).await;
    cli.ok(&["revoke", "app", "--key", &key_id(&old)], None)
        .await;
    let document = read_document(&keys.path).to_string();
    assert!(!document.contains(&member_name(&old)), "{document}");
    assert!(document.contains(&member_name(&new)), "{document}");
    cli.run(&["revoke", "app", "--key", &key_id(&old)], None)
        .await
        .expect_code(3);

    let before = read_document(&keys.path);
    cli.run(
        &["create", "--tenant", "acmee", "--real-key-stdin"],
        Some("sk-typo-real\n"),
    )
    .await
    .expect_code(5);
    assert_eq!(read_document(&keys.path), before, "nothing written");
    assert!(cli.assert_no_key_shown() > 0);
}
