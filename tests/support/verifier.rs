//! How a relying party verifies a verdict token offline: with a common JWT library (`jsonwebtoken`), the
//! service's published JWKS, and the values it expects. Shared by `examples/relying_party.rs` and the tests.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The claims a relying party reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Verdict {
    pub iss: String,
    pub aud: String,
    pub sub: Option<String>,
    pub nonce: Option<String>,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    pub is_live: bool,
    pub end_reason: String,
    pub challenges: Vec<serde_json::Value>,
}

/// What the relying party expects of the token.
pub struct Expected<'a> {
    pub issuer: &'a str,
    /// Its own tenant id.
    pub audience: &'a str,
    /// The session it created, and the nonce it gave (if any).
    pub session_id: &'a str,
    pub nonce: Option<&'a str>,
    /// The time `exp` is judged at, Unix seconds: `None` for now (as a relying party does); a test whose service
    /// runs on a manual clock passes that clock's time, so its tokens do not expire with the real date.
    pub at: Option<i64>,
}

/// Verifies `token` against `jwks`: EdDSA only (no `none`, no HMAC), a published `kid`, the signature, `exp`,
/// `iss`, `aud`, and that it is the verdict of the expected session and nonce.
pub fn verify(token: &str, jwks: &JwkSet, expected: &Expected<'_>) -> Result<Verdict, String> {
    let header = decode_header(token).map_err(|e| format!("unreadable header: {e}"))?;
    if header.alg != Algorithm::EdDSA {
        return Err(format!("algorithm {:?} refused", header.alg));
    }
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or_else(|| format!("kid {kid} is not published"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_exp = expected.at.is_none();
    let verdict = decode::<Verdict>(token, &key, &validation).map_err(|e| format!("refused: {e}"))?.claims;
    if let Some(at) = expected.at {
        if verdict.exp + validation.leeway as i64 <= at {
            return Err("refused: ExpiredSignature".into());
        }
    }
    if verdict.jti != expected.session_id {
        return Err("the verdict of another session".into());
    }
    if verdict.nonce.as_deref() != expected.nonce {
        return Err("the verdict of another attempt (nonce)".into());
    }
    Ok(verdict)
}
