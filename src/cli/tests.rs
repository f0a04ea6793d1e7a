//! The command line's parsing and the keys it makes.

use super::*;

#[test]
fn grace_periods_read_as_people_write_them() {
    assert_eq!(parse_grace("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_grace("10m"), Ok(Duration::from_secs(600)));
    assert_eq!(parse_grace("2h"), Ok(Duration::from_secs(7_200)));
    assert_eq!(parse_grace("7d"), Ok(Duration::from_secs(604_800)));
    for bad in [
        "",
        "5",
        "s",
        "1w",
        "-1s",
        "1.5h",
        "5秒",
        "5µ",
        "367d",
        "200000000000000d",
    ] {
        assert!(parse_grace(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_command_line_is_well_formed() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
    // Real keys never come from argv: there is no option that takes one.
    let create = Cli::try_parse_from([
        "openai-proxy",
        "keys",
        "create",
        "--tenant",
        "t",
        "--real-key",
        "sk-x",
    ]);
    assert!(create.is_err());
    let both = Cli::try_parse_from([
        "openai-proxy",
        "keys",
        "create",
        "--tenant",
        "t",
        "--real-key-stdin",
        "--real-key-file",
        "k",
    ]);
    assert!(both.is_err());
    // set-real-key needs its key's source: a usage error (exit 2) before anything is read.
    let none = Cli::try_parse_from(["openai-proxy", "keys", "set-real-key", "app"]);
    assert!(none.is_err());
    let given = Cli::try_parse_from([
        "openai-proxy",
        "keys",
        "set-real-key",
        "app",
        "--real-key-stdin",
    ]);
    assert!(given.is_ok());
}

#[test]
fn new_wrapper_keys_are_long_random_and_url_safe() {
    let (first, digest) = random::generate_wrapper_key();
    let (second, _) = random::generate_wrapper_key();
    assert_ne!(first, second);
    let random = first.strip_prefix("sk-proxy-").unwrap();
    assert_eq!(random.len(), 43, "256 bits in unpadded base64");
    assert!(
        random
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(digest, crate::keys::WrapperKeyDigest::of(&first));
}
