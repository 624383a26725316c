//! Signed verdicts: a compact JWS (EdDSA over Ed25519, `kid` in the header) that a relying party's backend verifies
//! offline against the published keys (`/.well-known/jwks.json`), so it never has to trust the end user's browser.
//!
//! The signature comes from `ed25519-dalek`; this module only lays out the JWS (base64url of the header, the
//! claims and the signature, joined by dots). Keys live in `signing-keys.json` in the data directory (mode 0600),
//! newest last: the newest signs, the newest two are published, so a rotation breaks no token in flight.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::domain::{ChallengeType, EndReason, Session, SessionState};

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "signing-keys.json";

/// Keys published in the JWKS: the current one and the one before it.
const PUBLISHED_KEYS: usize = 2;

/// Why the signing keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing keys at {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("a signing key is malformed: {0}")]
    Malformed(String),
}

/// One key as the file keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    created_at_ms: i64,
    /// The 32-byte Ed25519 secret, base64url.
    secret: String,
}

/// The deployment's signing keys, newest last.
#[derive(Clone)]
pub struct SigningKeys {
    keys: Vec<(String, SigningKey)>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        f.debug_struct("SigningKeys").field("kids", &kids).finish()
    }
}

/// The key id of a public key: the first 16 bytes of its SHA-256, base64url.
fn kid_of(key: &SigningKey) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(key.verifying_key().as_bytes())[..16])
}

fn random_secret() -> [u8; 32] {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut secret).expect("the OS's secure generator works");
    secret
}

fn new_stored_key(now_ms: i64) -> StoredKey {
    let secret = random_secret();
    let key = SigningKey::from_bytes(&secret);
    StoredKey { kid: kid_of(&key), created_at_ms: now_ms, secret: URL_SAFE_NO_PAD.encode(secret) }
}

/// A 32-byte Ed25519 secret from its base64url text.
fn decode_secret(text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|e| KeyError::Malformed(e.to_string()))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Malformed("not 32 bytes".into()))
}

impl SigningKeys {
    /// Keys from their 32-byte secrets, oldest first (for a secret store).
    pub fn from_secrets(secrets: &[[u8; 32]]) -> Result<SigningKeys, KeyError> {
        if secrets.is_empty() {
            return Err(KeyError::Malformed("no key".into()));
        }
        let keys = secrets.iter().map(SigningKey::from_bytes).map(|key| (kid_of(&key), key)).collect();
        Ok(SigningKeys { keys })
    }

    /// One new key of this process alone, kept nowhere (for services built without a key store: tests, tools).
    pub fn generate() -> SigningKeys {
        Self::from_secrets(&[random_secret()]).expect("one key")
    }

    /// Keys from a secret store's text: `{"keys": ["<base64url 32-byte secret>", ...]}`, oldest first.
    pub fn from_secret_text(text: &str) -> Result<SigningKeys, KeyError> {
        #[derive(Deserialize)]
        struct Secret {
            keys: Vec<String>,
        }
        let secret: Secret = serde_json::from_str(text).map_err(|e| KeyError::Malformed(e.to_string()))?;
        let secrets = secret.keys.iter().map(|key| decode_secret(key)).collect::<Result<Vec<_>, _>>()?;
        Self::from_secrets(&secrets)
    }

    /// A secret store's text with one new key after those of `existing` (the operator's rotation on AWS).
    pub fn new_secret_text(existing: Option<&str>) -> Result<String, KeyError> {
        let mut keys: Vec<String> = match existing {
            None => Vec::new(),
            Some(text) => {
                let value: serde_json::Value =
                    serde_json::from_str(text).map_err(|e| KeyError::Malformed(e.to_string()))?;
                serde_json::from_value(value["keys"].clone()).map_err(|e| KeyError::Malformed(e.to_string()))?
            }
        };
        keys.push(new_stored_key(0).secret);
        Self::from_secret_text(&json!({ "keys": keys }).to_string())?;
        Ok(json!({ "keys": keys }).to_string())
    }

    /// The keys in `data_dir`, creating the file with a first key if there is none.
    pub fn load_or_create(data_dir: &Path, now_ms: i64) -> Result<SigningKeys, KeyError> {
        let path = data_dir.join(KEY_FILE);
        if !path.exists() {
            write_keys(&path, &[new_stored_key(now_ms)])?;
            tracing::info!(path = %path.display(), "signing key created");
        }
        Self::from_stored(&read_keys(&path)?)
    }

    /// Adds a new key to the file in `data_dir` (created if missing); returns its key id. A running server signs
    /// with it from its next start; until then the previous key signs and both are published.
    pub fn rotate(data_dir: &Path, now_ms: i64) -> Result<String, KeyError> {
        let path = data_dir.join(KEY_FILE);
        let mut stored = if path.exists() { read_keys(&path)? } else { Vec::new() };
        let key = new_stored_key(now_ms);
        let kid = key.kid.clone();
        stored.push(key);
        write_keys(&path, &stored)?;
        Ok(kid)
    }

    fn from_stored(stored: &[StoredKey]) -> Result<SigningKeys, KeyError> {
        let secrets = stored.iter().map(|key| decode_secret(&key.secret)).collect::<Result<Vec<_>, _>>()?;
        Self::from_secrets(&secrets)
    }

    /// The key id that signs now.
    pub fn current_kid(&self) -> &str {
        &self.keys.last().expect("at least one key").0
    }

    /// A compact JWS of `claims`, signed with the current key.
    pub fn sign(&self, claims: &impl Serialize) -> String {
        let (kid, key) = self.keys.last().expect("at least one key");
        let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid });
        let encode = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let claims = serde_json::to_value(claims).expect("claims serialise");
        let signing_input = format!("{}.{}", encode(&header), encode(&claims));
        let signature = key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// The JSON Web Key Set of the current and the previous key.
    pub fn jwks(&self) -> serde_json::Value {
        let published = self.keys.iter().rev().take(PUBLISHED_KEYS);
        let keys: Vec<_> = published
            .map(|(kid, key)| {
                json!({ "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
                    "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()) })
            })
            .collect();
        json!({ "keys": keys })
    }
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> KeyError {
    KeyError::File { path: path.to_owned(), message: message.to_string() }
}

fn read_keys(path: &Path) -> Result<Vec<StoredKey>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    serde_json::from_str(&text).map_err(|e| file_error(path, e))
}

/// Writes the key file readable by its owner only, replacing it whole (a new file renamed over the old one).
fn write_keys(path: &Path, keys: &[StoredKey]) -> Result<(), KeyError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| file_error(path, e))?;
    }
    let text = serde_json::to_string_pretty(keys).expect("keys serialise");
    let partial = path.with_extension("json.partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&partial).map_err(|e| file_error(path, e))?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| file_error(path, e))?;
    file.sync_all().map_err(|e| file_error(path, e))?;
    std::fs::rename(&partial, path).map_err(|e| file_error(path, e))
}

/// One challenge as the verdict states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeClaim {
    #[serde(rename = "type")]
    pub kind: ChallengeType,
    pub passed: bool,
}

/// The claims of a verdict token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictClaims {
    pub iss: String,
    /// The tenant the verdict is for (`local` with authentication off).
    pub aud: String,
    /// The relying party's `reference` of the end user, if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The session id.
    pub jti: String,
    /// When the session ended (so every read of it gets the same token).
    pub iat: i64,
    /// No later than the session's own expiry.
    pub exp: i64,
    pub is_live: bool,
    pub end_reason: EndReason,
    pub challenges: Vec<ChallengeClaim>,
    /// SHA-256 (lowercase hex) of the reference image kept for the relying party, so it cannot be swapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_image_sha256: Option<String>,
}

/// Every challenge of the session, and whether it passed.
pub fn challenge_claims(session: &Session) -> Vec<ChallengeClaim> {
    session
        .challenges
        .iter()
        .enumerate()
        .map(|(i, c)| ChallengeClaim { kind: c.kind, passed: session.outcomes.get(i).is_some_and(|o| o.passed) })
        .collect()
}

/// The verdict's claims for a session that ended (completed or failed); `None` while it runs or once it expired.
pub fn claims(session: &Session, issuer: &str, audience: &str, now_ms: i64) -> Option<VerdictClaims> {
    let ended = matches!(session.state, SessionState::Completed | SessionState::Failed);
    if !ended || now_ms >= session.expires_at_ms {
        return None;
    }
    Some(VerdictClaims {
        iss: issuer.to_owned(),
        aud: audience.to_owned(),
        sub: session.owner.reference.clone(),
        nonce: session.owner.nonce.clone(),
        jti: session.id.to_string(),
        iat: session.ended_at_ms.unwrap_or(now_ms).div_euclid(1000),
        exp: session.expires_at_ms.div_euclid(1000),
        is_live: session.is_live == Some(true),
        end_reason: session.end_reason?,
        challenges: challenge_claims(session),
        reference_image_sha256: session.reference_image.as_ref().map(|image| image.sha256.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_created_private_rotated_and_published_current_and_previous() {
        let dir = std::env::temp_dir().join(format!("liveness-keys-{}", uuid::Uuid::new_v4()));
        let first = SigningKeys::load_or_create(&dir, 1).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(SigningKeys::load_or_create(&dir, 2).unwrap().current_kid(), first.current_kid(), "kept");
        let second = SigningKeys::rotate(&dir, 3).unwrap();
        let third = SigningKeys::rotate(&dir, 4).unwrap();
        let keys = SigningKeys::load_or_create(&dir, 5).unwrap();
        assert_eq!(keys.current_kid(), third);
        let published: Vec<_> =
            keys.jwks()["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
        assert_eq!(published, [third, second]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn secret_store_text_rotates_by_appending() {
        let first = SigningKeys::new_secret_text(None).unwrap();
        let second = SigningKeys::new_secret_text(Some(&first)).unwrap();
        let (one, two) =
            (SigningKeys::from_secret_text(&first).unwrap(), SigningKeys::from_secret_text(&second).unwrap());
        assert_eq!(two.jwks()["keys"][1]["kid"].as_str(), Some(one.current_kid()), "the old key stays published");
        assert_ne!(two.current_kid(), one.current_kid());
        assert!(SigningKeys::from_secret_text(r#"{"keys": []}"#).is_err());
        assert!(SigningKeys::from_secret_text(r#"{"keys": ["c2hvcnQ"]}"#).is_err(), "not 32 bytes");
    }
}
