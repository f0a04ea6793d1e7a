//! Edits that cannot be made (a change the proxy's parser would refuse, a taken or unknown id,
//! usage errors, a broken document, no source) exit with their documented code, print no key,
//! and write nothing: the secret's versions and labels are exactly as before.

use super::{SECRET, moto_with, seed};
use crate::support::keys_cli::{KeysCli, key_id, versions};
use crate::support::{REAL_KEY, WRAPPER_KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_that_cannot_be_made_are_refused_and_nothing_is_written() {
    let moto = moto_with(&seed().to_string()).await;
    let client = moto.client();
    let cli = KeysCli::over_secret(&moto.endpoint, SECRET);
    cli.secret(WRAPPER_KEY);
    cli.secret(REAL_KEY);
    cli.secret("sk-refused-real");
    let before = versions(&client, SECRET).await;
    let real = Some("sk-refused-real\n");

    // A change the proxy's parser would refuse: exit 5, no key printed.
    let run = cli
        .run(
            &[
                "create",
                "--tenant",
                "acme",
                "--upstream",
                "nope",
                "--real-key-stdin",
            ],
            real,
        )
        .await;
    run.expect_code(5);
    assert!(run.stdout.is_empty(), "no key is printed: {}", run.stdout);
    assert!(
        run.stderr
            .contains("the change would make the key map invalid, so nothing was written")
            && run.stderr.contains("upstream"),
        "{}",
        run.stderr
    );
    let seed_id = key_id(WRAPPER_KEY);
    let refusals: [(&[&str], Option<&str>, i32); 9] = [
        // An id that is taken already.
        (
            &[
                "create",
                "--tenant",
                "acme",
                "--id",
                &seed_id,
                "--real-key-stdin",
            ],
            real,
            5,
        ),
        // An empty real key.
        (
            &["create", "--tenant", "acme", "--real-key-stdin"],
            Some("\n"),
            5,
        ),
        // No such id.
        (&["rotate", "nope"], None, 3),
        (&["revoke", "nope"], None, 3),
        (&["set-real-key", "nope", "--real-key-stdin"], real, 3),
        // Usage: no tenant; a real key on the command line; two real-key sources; a bad grace.
        (&["create", "--real-key-stdin"], real, 2),
        (
            &[
                "create",
                "--tenant",
                "acme",
                "--real-key",
                "sk-refused-real",
            ],
            None,
            2,
        ),
        (
            &[
                "create",
                "--tenant",
                "acme",
                "--real-key-stdin",
                "--real-key-file",
                "/nonexistent",
            ],
            real,
            2,
        ),
        (&["rotate", &seed_id, "--grace", "5 parsecs"], None, 2),
    ];
    for (args, stdin, code) in refusals {
        let run = cli.run(args, stdin).await;
        run.expect_code(code);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
    assert_eq!(
        versions(&client, SECRET).await,
        before,
        "no version was put and no label moved"
    );

    // A document the proxy would refuse is not edited either (and not listed).
    moto.put_secret(SECRET, r#"{"version": 2, "keys": {"k": 42}}"#)
        .await;
    let broken = versions(&client, SECRET).await;
    cli.run(&["list"], None).await.expect_code(5);
    cli.run(&["create", "--tenant", "acme", "--real-key-stdin"], real)
        .await
        .expect_code(5);
    cli.run(&["migrate"], None).await.expect_code(5);
    assert_eq!(versions(&client, SECRET).await, broken);

    // No source: exit 1.
    let nowhere = KeysCli::over_file("");
    nowhere.run(&["list"], None).await.expect_code(1);
    cli.assert_no_key_shown();
}
