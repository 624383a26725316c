//! A relying party's backend, end to end: create a session with the API key, hand the end user only the session id
//! and its client token (as a link to the demo page), wait for the check, redeem the verdict once, and verify the
//! signed token offline against the service's JWKS. The verifier is a common JWT library (`jsonwebtoken`).
//!
//!     LIVENESS_URL=http://127.0.0.1:8000 LIVENESS_API_KEY=lk_... LIVENESS_TENANT_ID=t_... \
//!         cargo run --example relying_party -- user-42
//!
//! With authentication off (the local default) the API key may be left out and the tenant id is `local`.

#[path = "../tests/support/verifier.rs"]
mod verifier;

use std::time::Duration;

use serde_json::Value;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

struct Backend {
    base: String,
    key: Option<String>,
}

impl Backend {
    fn call(&self, method: &str, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
        let mut response = match (method, &self.key) {
            ("POST", Some(key)) => agent.post(&url).header("Authorization", &format!("Bearer {key}")).send_empty(),
            ("POST", None) => agent.post(&url).send_empty(),
            (_, Some(key)) => agent.get(&url).header("Authorization", &format!("Bearer {key}")).call(),
            (_, None) => agent.get(&url).call(),
        }
        .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = response.status();
        let body: Value = response.body_mut().read_json().map_err(|e| format!("{method} {url}: {e}"))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{method} {url}: {status} {body}"))
        }
    }
}

fn main() -> Result<(), String> {
    let backend =
        Backend { base: env("LIVENESS_URL", "http://127.0.0.1:8000"), key: std::env::var("LIVENESS_API_KEY").ok() };
    let tenant_id = env("LIVENESS_TENANT_ID", "local");
    let issuer = env("LIVENESS_ISSUER", "urn:liveness:local");
    let reference = std::env::args().nth(1).unwrap_or_else(|| "user-1".to_owned());
    // A fresh nonce per onboarding attempt binds the verdict to this attempt alone.
    let nonce = uuid::Uuid::new_v4().to_string();

    let created = backend
        .call("POST", &format!("/api/v1/liveness/sessions?interface=websocket&reference={reference}&nonce={nonce}"))?;
    let id = created["session_id"].as_str().ok_or("no session id")?.to_owned();
    let token = created["client_token"].as_str().ok_or("no client token")?;
    println!("Give the end user this link (the session id and its client token, never the API key):");
    println!("  {}/?session_id={id}&token={token}", backend.base);

    let ended = loop {
        std::thread::sleep(Duration::from_secs(1));
        let session = backend.call("GET", &format!("/api/v1/liveness/sessions/{id}"))?;
        if !matches!(session["state"].as_str(), Some("pending" | "in_progress")) {
            break session;
        }
    };
    println!("the check ended: {}", ended["state"]);

    let redeemed = backend.call("POST", &format!("/api/v1/liveness/sessions/{id}/redeem"))?;
    let jwks = serde_json::from_value(backend.call("GET", "/.well-known/jwks.json")?).map_err(|e| e.to_string())?;
    let expected =
        verifier::Expected { issuer: &issuer, audience: &tenant_id, session_id: &id, nonce: Some(&nonce), at: None };
    let verdict = verifier::verify(redeemed["verdict_token"].as_str().ok_or("no token")?, &jwks, &expected)?;
    println!("verified offline: {verdict:#?}");
    println!("{}", if verdict.is_live { "a live person, once: proceed" } else { "not verified: do not proceed" });
    Ok(())
}
