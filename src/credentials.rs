//! Secrets the service hands out: tenant API keys and per-session client tokens. Both are random (the OS's
//! secure generator), URL-safe, shown once, and stored only as SHA-256 digests compared in constant time.
//!
//! An API key reads `lk_<key id>_<secret>`: the key id (16 hex digits) finds the stored digest without a scan;
//! the secret (32 random bytes, base64url) is what is hashed. A client token reads `ct_<secret>` and is stored
//! with its one session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const API_KEY_PREFIX: &str = "lk_";
const CLIENT_TOKEN_PREFIX: &str = "ct_";
const KEY_ID_LEN: usize = 16;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).expect("the OS's secure generator works");
    bytes
}

/// SHA-256 of `secret`, as lowercase hex.
pub fn digest(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

/// SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `secret` hashes to `stored_digest`, compared in constant time.
pub fn verify(secret: &str, stored_digest: &str) -> bool {
    digest(secret).as_bytes().ct_eq(stored_digest.as_bytes()).into()
}

/// A new API key: the full key (to show once), its key id and the digest to store.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key: String,
    pub key_id: String,
    pub digest: String,
}

impl NewApiKey {
    /// Draws a new key.
    pub fn generate() -> NewApiKey {
        let key_id: String = random_bytes::<{ KEY_ID_LEN / 2 }>().iter().map(|b| format!("{b:02x}")).collect();
        let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        NewApiKey { key: format!("{API_KEY_PREFIX}{key_id}_{secret}"), key_id, digest: digest(&secret) }
    }
}

/// A presented credential, told apart by its form (nothing is looked up yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented<'a> {
    ApiKey { key_id: &'a str, secret: &'a str },
    ClientToken(&'a str),
}

impl<'a> Presented<'a> {
    /// Reads a credential; `None` when it has neither form.
    pub fn parse(credential: &'a str) -> Option<Presented<'a>> {
        if let Some(rest) = credential.strip_prefix(API_KEY_PREFIX) {
            let (key_id, secret) = rest.split_at_checked(KEY_ID_LEN)?;
            let secret = secret.strip_prefix('_')?;
            let hex = key_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            return (hex && !secret.is_empty()).then_some(Presented::ApiKey { key_id, secret });
        }
        credential.starts_with(CLIENT_TOKEN_PREFIX).then_some(Presented::ClientToken(credential))
    }
}

/// A new client token and the digest to store with its session.
pub fn new_client_token() -> (String, String) {
    let token = format!("{CLIENT_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
    let stored = digest(&token);
    (token, stored)
}

/// A new tenant id: `t_` and 16 hex digits.
pub fn new_tenant_id() -> String {
    let hex: String = random_bytes::<8>().iter().map(|b| format!("{b:02x}")).collect();
    format!("t_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_key_parses_back_and_verifies_only_against_its_own_digest() {
        let key = NewApiKey::generate();
        assert!(key.key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "URL-safe");
        let Some(Presented::ApiKey { key_id, secret }) = Presented::parse(&key.key) else { panic!("{}", key.key) };
        assert_eq!(key_id, key.key_id);
        assert!(verify(secret, &key.digest));
        assert!(!key.digest.contains(secret), "the digest does not hold the secret");
        let other = NewApiKey::generate();
        assert!(!verify(secret, &other.digest));
        let mut flipped = secret.to_owned();
        flipped.replace_range(0..1, if secret.starts_with('A') { "B" } else { "A" });
        assert!(!verify(&flipped, &key.digest));
        assert_ne!(key.key, other.key);
    }

    #[test]
    fn malformed_credentials_are_neither_form() {
        for bad in [
            "",
            "lk_",
            "lk_0123",
            "lk_0123456789abcdef",
            "lk_0123456789abcdef_",
            "lk_0123456789ABCDEF_x",
            "lk_0123456789abcdefx",
            "Bearer x",
            "hello",
        ] {
            assert_eq!(Presented::parse(bad), None, "{bad:?}");
        }
        let (token, stored) = new_client_token();
        assert_eq!(Presented::parse(&token), Some(Presented::ClientToken(&token)));
        assert!(verify(&token, &stored));
        assert!(!verify(&new_client_token().0, &stored));
    }
}
