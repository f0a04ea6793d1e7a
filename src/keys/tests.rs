use super::*;

#[test]
fn digest_member_names_round_trip() {
    let digest = WrapperKeyDigest::of("wrapper-key-alice");
    let name = digest.member_name();
    assert!(name.starts_with("sha256:"));
    assert_eq!(name.len(), 7 + 64);
    assert_eq!(WrapperKeyDigest::from_hex(&name[7..]), Some(digest));
    // Known vector: SHA-256("abc").
    assert_eq!(
        WrapperKeyDigest::of("abc").member_name(),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(WrapperKeyDigest::from_hex(&name[7..].to_uppercase()), None);
    assert_eq!(WrapperKeyDigest::from_hex("abc"), None);
}

#[test]
fn callers_are_named_by_tenant_or_short_digest() {
    let entry = KeyEntry::for_key(RealKey::new("sk-secret").unwrap());
    let digest = WrapperKeyDigest::of("abc");
    assert_eq!(entry.caller(&digest).to_string(), "key:ba7816bf");
    let named = entry.with_policy(KeyPolicy {
        tenant: Some("alice".into()),
        ..KeyPolicy::default()
    });
    assert_eq!(named.caller(&digest).to_string(), "alice");
}

#[test]
fn hash_key_reads_one_line() {
    let name = hashed_member_name("abc\n".as_bytes()).unwrap();
    assert_eq!(name, WrapperKeyDigest::of("abc").member_name());
    assert_eq!(hashed_member_name("  abc \r\n".as_bytes()).unwrap(), name);
    assert!(hashed_member_name("\n".as_bytes()).is_err());
}

#[test]
fn keys_do_not_print() {
    let real = RealKey::new("sk-secret").unwrap();
    assert_eq!(format!("{real:?}"), "RealKey(*****)");
    let raw = real.raw().unwrap();
    assert!(real.authorization().is_sensitive() && raw.is_sensitive());
    assert_eq!(raw, "sk-secret");
    let digest = WrapperKeyDigest::of("wrapper-secret");
    assert_eq!(format!("{digest:?}"), "WrapperKeyDigest(*****)");
}
