//! Concurrent edits of one secret: two creates that read the same version, many at once, and
//! another writer's edit forced between a create's read and its stage move. None is ever lost.

use axum::http::StatusCode;
use serde_json::json;

use super::{
    PICKED_UP, SECRET, chats_with, moto_with, proxy_over_secret, rows_with, seed,
    version_said_current,
};
use crate::support::keys_cli::{
    KeysCli, assert_none_in, current, labelled, member_name, until_status, versions,
};
use crate::support::secret_relay::SecretRelay;
use crate::support::upstream::FakeUpstream;
use crate::support::{WRAPPER_KEY, openai};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_creates_started_at_the_same_moment_both_land() {
    let moto = moto_with(&seed().to_string()).await;
    let relay = SecretRelay::start(&moto.endpoint, SECRET).await;
    let cli = KeysCli::over_secret(&relay.endpoint, SECRET);
    // Both commands read the same version before either writes: one of them must lose the
    // stage move, see it, and re-apply.
    relay.gather_reads(2);
    let (one, two) = tokio::join!(
        cli.create(&["--tenant", "one", "--id", "first"], "sk-first-real"),
        cli.create(&["--tenant", "two", "--id", "second"], "sk-second-real"),
    );
    assert_ne!(one, two);
    let reapplied = cli
        .runs()
        .iter()
        .filter(|run| {
            run.stderr
                .contains("re-applying the change (attempt 2 of 5)")
        })
        .count();
    assert_eq!(reapplied, 1, "{:?}", cli.runs());
    assert_eq!(relay.calls("UpdateSecretVersionStage"), 3);

    let (_, document) = current(&moto.client(), SECRET).await;
    for (key, id) in [(&one, "first"), (&two, "second")] {
        assert_eq!(document["keys"][member_name(key)]["id"], id, "{document}");
    }
    assert!(document["keys"].get(member_name(WRAPPER_KEY)).is_some());
    let rows = cli.list_json().await;
    assert_eq!(rows_with(&rows, "first").len(), 1);
    assert_eq!(rows_with(&rows, "second").len(), 1);

    // Both keys work through a proxy on the secret.
    let upstream = FakeUpstream::start(openai::respond).await;
    let proxy = proxy_over_secret(&moto, &upstream);
    for (key, real) in [(&one, "sk-first-real"), (&two, "sk-second-real")] {
        until_status(&proxy.base_url(), key, StatusCode::OK, PICKED_UP).await;
        assert_eq!(chats_with(&upstream, real), 1);
    }
    cli.assert_no_key_shown();
    let log = proxy.stop();
    assert_none_in(&log, &cli.secrets(), "the proxy's log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_creates_on_a_secret_never_lose_a_reported_edit() {
    const RUNS: usize = 6;
    let moto = moto_with(&seed().to_string()).await;
    let cli = KeysCli::over_secret(&moto.endpoint, SECRET);
    let ids: Vec<String> = (0..RUNS).map(|run| format!("concurrent-{run}")).collect();
    let runs = ids.iter().map(|id| async {
        cli.run(
            &["create", "--tenant", "many", "--id", id, "--real-key-stdin"],
            Some("sk-many-real\n"),
        )
        .await
    });
    let finished = futures_util::future::join_all(runs).await;
    cli.secret("sk-many-real");
    let (_, document) = current(&moto.client(), SECRET).await;
    let mut landed = 0;
    for run in &finished {
        match run.code {
            // Reported done: its key is in the secret.
            0 => {
                let key = run.printed_key();
                cli.secret(&key);
                assert_eq!(
                    document["keys"][member_name(&key)]["id"],
                    run.args[4],
                    "a create reported done but its key is not in the secret: {document}"
                );
                landed += 1;
            }
            // Raced out: said so, printed no key, and its id is not in the secret.
            4 => {
                assert!(run.stdout.is_empty());
                assert!(
                    !document
                        .to_string()
                        .contains(&format!("\"{}\"", run.args[4])),
                    "{document}"
                );
            }
            code => panic!("unexpected exit {code}: {}", run.stderr),
        }
    }
    assert!(landed >= 1);
    assert_eq!(
        document["keys"].as_object().unwrap().len(),
        landed + 1,
        "the seed and exactly the landed keys: {document}"
    );
    cli.assert_no_key_shown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_edit_between_the_read_and_the_stage_move_is_detected_and_kept() {
    const CAROL: &str = "wrapper-key-carol";
    let moto = moto_with(&seed().to_string()).await;
    let client = moto.client();
    let relay = SecretRelay::start(&moto.endpoint, SECRET).await;
    let cli = KeysCli::over_secret(&relay.endpoint, SECRET);
    cli.secret(CAROL);
    cli.secret("sk-carol-real");
    relay.other_edit_before_the_stage_move(
        &member_name(CAROL),
        json!({"api_key": "sk-carol-real", "tenant": "carol"}),
    );
    let (before, _) = current(&client, SECRET).await;

    let key = cli
        .create(&["--tenant", "acme", "--id", "acme-app"], "sk-acme-real")
        .await;
    let run = cli.last();
    assert!(
        run.stderr.contains(
            "another edit of secret openai-proxy/keys was written after this one read it; \
             reading it again and re-applying the change (attempt 2 of 5)"
        ),
        "{}",
        run.stderr
    );
    // The first stage move was refused; the second, from the other edit's version, was not.
    assert_eq!(relay.calls("UpdateSecretVersionStage"), 2);
    assert_eq!(relay.calls("PutSecretValue"), 2);

    let (now_current, document) = current(&client, SECRET).await;
    assert_eq!(now_current, version_said_current(&run.stderr));
    assert_eq!(
        document["keys"][member_name(CAROL)]["tenant"],
        "carol",
        "the other edit was kept: {document}"
    );
    assert_eq!(document["keys"][member_name(&key)]["id"], "acme-app");
    assert_eq!(document["keys"][member_name(WRAPPER_KEY)]["tenant"], "seed");
    let stages = versions(&client, SECRET).await;
    let previous = labelled(&stages, "AWSPREVIOUS");
    assert_ne!(previous, before, "AWSPREVIOUS is the other edit's version");
    assert_ne!(previous, now_current);
    assert!(stages[&before].is_empty(), "{stages:?}");
    cli.assert_no_key_shown();
}
