//! Trustworthy verdicts through the REST router: signed tokens a relying party verifies offline with a common JWT
//! library against the JWKS, single-use redeem (also under 20 concurrent calls), nothing served after the TTL, and
//! the WebSocket's `final_result` naming the session the backend then redeems.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::BodyExt;
use jsonwebtoken::jwk::JwkSet;
use liveness::domain::Policy;
use liveness::service::{AuthMode, LivenessService, ManualClock, Metering, ServiceSettings, Tenants};
use liveness::store::{MemoryStore, SessionStore, SqliteStore};
use liveness::verdicts::SigningKeys;
use liveness::vision::fake::{FakeFace, ScriptedAnalyzer};
use serde_json::{json, Value};
use support::verifier::{verify, Expected};
use tower::ServiceExt;

const ISSUER: &str = "https://liveness.example.test";

struct World {
    router: Router,
    clock: Arc<ManualClock>,
    store: Arc<dyn SessionStore>,
    tenant_id: String,
    key: String,
    other_key: String,
}

impl World {
    async fn new() -> World {
        Self::on(Arc::new(MemoryStore::new()), &std::env::temp_dir().join(format!("keys-{}", uuid::Uuid::new_v4())))
            .await
    }

    async fn on<S: liveness::app::Store + 'static>(store: Arc<S>, key_dir: &std::path::Path) -> World {
        let clock = Arc::new(ManualClock::new(1_796_040_000_000));
        let tenants = Tenants::new(store.clone(), AuthMode::ApiKeys, clock.clone());
        let policy = Policy { challenges_min: 1, ..Policy::default() };
        let (tenant, key) = tenants.create("Acme", policy).await.unwrap();
        let (_, other_key) = tenants.create("Other", Policy::default()).await.unwrap();
        let keys = SigningKeys::load_or_create(key_dir, 0).unwrap();
        let service = LivenessService::new(
            store.clone(),
            Arc::new(ScriptedAnalyzer { antispoof: true }),
            clock.clone(),
            ServiceSettings::default(),
        )
        .with_tenants(tenants)
        .with_metering(Metering::new(store.clone(), clock.clone()))
        .with_verdicts(keys, ISSUER.to_owned());
        World {
            router: liveness::http::router(service, 1 << 20),
            clock,
            store,
            tenant_id: tenant.id,
            key: key.key,
            other_key: other_key.key,
        }
    }

    async fn call(&self, method: &str, path: &str, credential: Option<&str>, body: Body) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(credential) = credential {
            request = request.header(header::AUTHORIZATION, format!("Bearer {credential}"));
        }
        if method == "POST" && path.ends_with("/frame") {
            request = request.header(header::CONTENT_TYPE, "image/jpeg");
        }
        let response = self.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn jwks(&self) -> JwkSet {
        let (status, body) = self.call("GET", "/.well-known/jwks.json", None, Body::empty()).await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_value(body).unwrap()
    }

    /// A one-challenge SMILE-or-other session passed by scripted frames: (id, client token).
    async fn passed_session(&self, query: &str) -> (String, String) {
        let (status, created) = self
            .call("POST", &format!("/api/v1/liveness/sessions?num_challenges=1{query}"), Some(&self.key), Body::empty())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["session_id"].as_str().unwrap().to_owned();
        let token = created["client_token"].as_str().unwrap().to_owned();
        let kind = created["challenges"][0]["type"].as_str().unwrap().to_owned();
        let neutral = [FakeFace::default(), FakeFace::default()];
        let performed = support::performances::genuine(support::performances::kind_of_rest_type(&kind));
        for face in neutral.into_iter().chain(performed) {
            self.clock.advance_ms(125);
            let (status, body) = self
                .call("POST", &format!("/api/v1/liveness/sessions/{id}/frame"), Some(&token), Body::from(face.frame()))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if body["session_complete"] == true {
                assert_eq!(body["is_live"], true, "{body}");
                break;
            }
        }
        (id, token)
    }
}

fn expected<'a>(world: &'a World, id: &'a str, nonce: Option<&'a str>) -> Expected<'a> {
    Expected { issuer: ISSUER, audience: &world.tenant_id, session_id: id, nonce, at: Some(world.clock_seconds()) }
}

#[tokio::test]
async fn an_ended_session_carries_a_token_the_relying_party_verifies_offline() {
    let world = World::new().await;
    let (id, token) = world.passed_session("&reference=user-42&nonce=attempt-9").await;
    let (_, full) =
        world.call("GET", &format!("/api/v1/liveness/sessions/{id}"), Some(&world.key), Body::empty()).await;
    let verdict_token = full["verdict_token"].as_str().expect("an ended session's full view has its verdict");
    world.clock.advance_ms(5_000);
    let (_, again) =
        world.call("GET", &format!("/api/v1/liveness/sessions/{id}"), Some(&world.key), Body::empty()).await;
    assert_eq!(again["verdict_token"], full["verdict_token"], "every read gets the same token: issued when it ended");
    let jwks = world.jwks().await;
    let verdict = verify(verdict_token, &jwks, &expected(&world, &id, Some("attempt-9"))).unwrap();
    assert_eq!(verdict.iss, ISSUER);
    assert_eq!(verdict.aud, world.tenant_id);
    assert_eq!(verdict.sub.as_deref(), Some("user-42"));
    assert_eq!(verdict.jti, id);
    assert!(verdict.is_live);
    assert_eq!(verdict.end_reason, "LIVE");
    assert_eq!(verdict.challenges.len(), 1);
    assert_eq!(verdict.challenges[0]["passed"], true);
    assert_eq!(verdict.iat, world.clock_seconds() - 5, "issued when the session ended");
    assert!(verdict.exp <= full["expires_at"].as_i64().unwrap(), "never valid past the session's TTL");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(verdict_token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(jwks.keys[0].common.key_id.as_deref(), header["kid"].as_str());

    // The end user reads its session but never the verdict it could replay.
    let (status, client_view) =
        world.call("GET", &format!("/api/v1/liveness/sessions/{id}"), Some(&token), Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(client_view.get("verdict_token").is_none(), "{client_view}");
    // Another attempt's nonce, another audience, another session: refused by the verifier.
    assert!(verify(verdict_token, &jwks, &expected(&world, &id, Some("attempt-10"))).is_err());
    assert!(verify(
        verdict_token,
        &jwks,
        &Expected { audience: "t_other", ..expected(&world, &id, Some("attempt-9")) }
    )
    .is_err());
    assert!(verify(verdict_token, &jwks, &expected(&world, "another-session", Some("attempt-9"))).is_err());
}

impl World {
    fn clock_seconds(&self) -> i64 {
        liveness::service::Clock::now_ms(self.clock.as_ref()) / 1000
    }
}

#[tokio::test]
async fn forged_tokens_are_refused_by_the_verifier() {
    let world = World::new().await;
    let (id, _) = world.passed_session("").await;
    let (_, full) =
        world.call("GET", &format!("/api/v1/liveness/sessions/{id}"), Some(&world.key), Body::empty()).await;
    let good = full["verdict_token"].as_str().unwrap().to_owned();
    let jwks = world.jwks().await;
    let want = expected(&world, &id, None);
    assert!(verify(&good, &jwks, &want).is_ok());
    let parts: Vec<&str> = good.split('.').collect();

    // A flipped byte in the claims (is_live true stays, but the signature no longer matches) or the signature.
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 3600);
    let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    assert!(verify(&tampered, &jwks, &want).is_err(), "changed claims");
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[10] ^= 0x01;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(signature));
    assert!(verify(&flipped, &jwks, &want).is_err(), "a flipped signature bit");
    // alg none, and HS256 keyed with the public key (the classic confusion).
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    assert!(verify(&format!("{none_header}.{}.", parts[1]), &jwks, &want).is_err(), "alg none");
    let hs_header = jsonwebtoken::Header {
        kid: jwks.keys[0].common.key_id.clone(),
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
    };
    let public = URL_SAFE_NO_PAD.encode(b"public key bytes");
    let hs =
        jsonwebtoken::encode(&hs_header, &claims, &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()).unwrap())
            .unwrap();
    assert!(verify(&hs, &jwks, &want).is_err(), "HS256");
    // Signed by another deployment's key with the same kid: the signature fails.
    let other = SigningKeys::from_secrets(&[[7u8; 32]]).unwrap();
    let forged = other.sign(&claims);
    let forged_parts: Vec<&str> = forged.split('.').collect();
    let relabelled = format!("{}.{}.{}", parts[0], forged_parts[1], forged_parts[2]);
    assert!(verify(&relabelled, &jwks, &want).is_err(), "another key");
}

#[tokio::test]
async fn after_a_rotation_both_keys_are_published_and_verify() {
    let dir = std::env::temp_dir().join(format!("keys-{}", uuid::Uuid::new_v4()));
    let world = World::on(Arc::new(MemoryStore::new()), &dir).await;
    let (id, _) = world.passed_session("").await;
    let (_, full) =
        world.call("GET", &format!("/api/v1/liveness/sessions/{id}"), Some(&world.key), Body::empty()).await;
    let old_token = full["verdict_token"].as_str().unwrap().to_owned();

    SigningKeys::rotate(&dir, 1).unwrap();
    let restarted = World::on(Arc::new(MemoryStore::new()), &dir).await;
    let jwks = restarted.jwks().await;
    assert_eq!(jwks.keys.len(), 2, "current and previous");
    let (new_id, _) = restarted.passed_session("").await;
    let (_, full) = restarted
        .call("GET", &format!("/api/v1/liveness/sessions/{new_id}"), Some(&restarted.key), Body::empty())
        .await;
    let new_token = full["verdict_token"].as_str().unwrap();
    assert!(verify(new_token, &jwks, &expected(&restarted, &new_id, None)).is_ok(), "signed by the new key");
    let old = Expected { audience: &world.tenant_id, ..expected(&restarted, &id, None) };
    assert!(verify(&old_token, &jwks, &old).is_ok(), "a token in flight still verifies");
}

#[tokio::test]
async fn a_verdict_is_redeemed_once_and_only_when_ready() {
    let world = World::new().await;
    let (status, running) =
        world.call("POST", "/api/v1/liveness/sessions?num_challenges=1", Some(&world.key), Body::empty()).await;
    assert_eq!(status, StatusCode::CREATED);
    let running_id = running["session_id"].as_str().unwrap();
    let (status, body) = world
        .call("POST", &format!("/api/v1/liveness/sessions/{running_id}/redeem"), Some(&world.key), Body::empty())
        .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("session_in_progress")));
    let (_, full) =
        world.call("GET", &format!("/api/v1/liveness/sessions/{running_id}"), Some(&world.key), Body::empty()).await;
    assert!(full["verdict_token"].is_null(), "no verdict while it runs");

    let (id, token) = world.passed_session("&reference=r-1&nonce=n-1").await;
    let path = format!("/api/v1/liveness/sessions/{id}/redeem");
    let redeem = |credential: String| {
        let (world, path) = (&world, path.clone());
        async move { world.call("POST", &path, Some(&credential), Body::empty()).await }
    };
    assert_eq!(redeem(token.clone()).await.0, StatusCode::UNAUTHORIZED, "the end user cannot redeem");
    assert_eq!(redeem(world.other_key.clone()).await.0, StatusCode::NOT_FOUND, "another tenant cannot");
    let (status, redeemed) = redeem(world.key.clone()).await;
    assert_eq!(status, StatusCode::OK, "{redeemed}");
    assert_eq!(redeemed["is_live"], true);
    assert_eq!((redeemed["reference"].as_str(), redeemed["nonce"].as_str()), (Some("r-1"), Some("n-1")));
    assert_eq!(redeemed["end_reason"], "LIVE");
    let jwks = world.jwks().await;
    verify(redeemed["verdict_token"].as_str().unwrap(), &jwks, &expected(&world, &id, Some("n-1"))).unwrap();
    let (status, again) = redeem(world.key.clone()).await;
    assert_eq!((status, again["code"].as_str()), (StatusCode::CONFLICT, Some("already_redeemed")));
}

/// 20 redeems of one ended session at once on `world`: exactly one wins.
async fn race_redeems(world: Arc<World>) {
    let (id, _) = world.passed_session("").await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (world, path) = (world.clone(), format!("/api/v1/liveness/sessions/{id}/redeem"));
            tokio::spawn(async move { world.call("POST", &path, Some(&world.key), Body::empty()).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_redeems_have_one_winner_in_memory_and_in_sqlite() {
    race_redeems(Arc::new(World::new().await)).await;
    let dir = std::env::temp_dir().join(format!("liveness-redeem-{}", uuid::Uuid::new_v4()));
    race_redeems(Arc::new(World::on(Arc::new(SqliteStore::open(&dir).unwrap()), &dir).await)).await;
}

#[tokio::test]
async fn past_its_ttl_a_finished_session_is_gone_whatever_the_store_still_holds() {
    let world = World::new().await;
    let (id, _) = world.passed_session("").await;
    world.clock.advance_ms(180_000);
    assert!(world.store.get(id.parse().unwrap()).await.is_ok(), "the store still holds it (no sweep yet)");
    for (method, path) in
        [("GET", format!("/api/v1/liveness/sessions/{id}")), ("POST", format!("/api/v1/liveness/sessions/{id}/redeem"))]
    {
        let (status, body) = world.call(method, &path, Some(&world.key), Body::empty()).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::GONE, Some("session_expired")), "{method} {path}");
    }
}
