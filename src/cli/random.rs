//! Randomness for `openai-proxy keys`, from the operating system's CSPRNG: new wrapper keys,
//! and tokens that must not repeat.

use crate::keys::WrapperKeyDigest;

/// A new wrapper key from the operating system's CSPRNG: `sk-proxy-` and 256 random bits in
/// URL-safe base64 (43 characters); and its digest, the only form the key map keeps.
pub fn generate_wrapper_key() -> (String, WrapperKeyDigest) {
    use base64::Engine;
    let mut bits = [0u8; 32];
    fill_random(&mut bits);
    let key = format!(
        "sk-proxy-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bits)
    );
    let digest = WrapperKeyDigest::of(&key);
    (key, digest)
}

/// 128 random bits as 32 hex digits (an idempotency token, a temporary file's name).
pub fn random_token() -> String {
    let mut bits = [0u8; 16];
    fill_random(&mut bits);
    crate::keys::with_hex("", &bits)
}

/// The OS CSPRNG. It does not fail on the platforms the proxy runs on (Linux's `getrandom(2)`);
/// if it ever did, using the key would be worse than stopping.
#[expect(
    clippy::panic,
    reason = "a key that is not random must never be handed out"
)]
fn fill_random(bytes: &mut [u8]) {
    if let Err(err) = getrandom::fill(bytes) {
        panic!("the operating system's random number generator failed: {err}");
    }
}

/// One random byte (a pause's length).
pub fn random_byte() -> u8 {
    let mut byte = [0u8; 1];
    fill_random(&mut byte);
    byte[0]
}
