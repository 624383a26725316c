//! Relying parties through the REST router (`oneshot`) and a real WebSocket server: every row of the access table
//! (tenant key, client token, another tenant's key, another session's token, no credential, a revoked key, a
//! disabled tenant) on every endpoint, and the tenant's policy enforced by the server.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use liveness::domain::policy::{Lockout, Quota};
use liveness::domain::Policy;
use liveness::service::{AuthMode, Caller, LivenessService, ManualClock, Metering, ServiceSettings, Tenants};
use liveness::store::MemoryStore;
use liveness::vision::fake::{FakeFace, ScriptedAnalyzer};
use serde_json::Value;
use tower::ServiceExt;

struct World {
    router: Router,
    service: LivenessService,
    clock: Arc<ManualClock>,
    tenants: Tenants,
    /// Tenant A's and tenant B's API keys.
    key_a: String,
    key_b: String,
}

impl World {
    async fn new() -> World {
        World::with_policy(Policy::default(), AuthMode::ApiKeys, ServiceSettings::default()).await
    }

    /// Tenant A has `policy`, tenant B the default one.
    async fn with_policy(policy: Policy, mode: AuthMode, settings: ServiceSettings) -> World {
        // 2026-11-30 12:00 UTC.
        let clock = Arc::new(ManualClock::new(1_796_040_000_000));
        let store = Arc::new(MemoryStore::new());
        let tenants = Tenants::new(store.clone(), mode, clock.clone());
        let (_, key_a) = tenants.create("Tenant A", policy).await.unwrap();
        let (_, key_b) = tenants.create("Tenant B", Policy::default()).await.unwrap();
        let service = LivenessService::new(
            store.clone(),
            Arc::new(ScriptedAnalyzer { antispoof: true }),
            clock.clone(),
            settings,
        )
        .with_tenants(tenants.clone())
        .with_metering(Metering::new(store, clock.clone()));
        let router = liveness::http::router(service.clone(), 1 << 20);
        World { router, service, clock, tenants, key_a: key_a.key, key_b: key_b.key }
    }

    /// The problem of a refused create: status, code and `Retry-After`.
    async fn refused_create(&self, key: &str, query: &str) -> (StatusCode, String, Option<u64>) {
        let request = Self::request("POST", &format!("/api/v1/liveness/sessions{query}"), Some(key));
        let response = self.router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().parse().unwrap());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        (status, body["code"].as_str().unwrap_or_default().to_owned(), retry)
    }

    async fn usage(&self, key: &str, query: &str) -> (StatusCode, Value) {
        let request = Self::request("GET", &format!("/api/v1/usage{query}"), Some(key));
        let (status, body, _) = self.send(request.body(Body::empty()).unwrap()).await;
        (status, body)
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value, Option<String>) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let challenge = response.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned());
        if status == StatusCode::UNAUTHORIZED {
            let content_type = response.headers().get(header::CONTENT_TYPE).unwrap();
            assert_eq!(content_type, "application/problem+json");
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, body, challenge)
    }

    fn request(method: &str, path: &str, credential: Option<&str>) -> axum::http::request::Builder {
        let builder = Request::builder().method(method).uri(path);
        match credential {
            Some(credential) => builder.header(header::AUTHORIZATION, format!("Bearer {credential}")),
            None => builder,
        }
    }

    async fn create(&self, credential: Option<&str>, query: &str) -> (StatusCode, Value) {
        let request = Self::request("POST", &format!("/api/v1/liveness/sessions{query}"), credential);
        let (status, body, _) = self.send(request.body(Body::empty()).unwrap()).await;
        (status, body)
    }

    /// A session of `key`'s tenant: its id and client token.
    async fn session(&self, key: &str) -> (String, String) {
        let (status, body) = self.create(Some(key), "").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (body["session_id"].as_str().unwrap().to_owned(), body["client_token"].as_str().unwrap().to_owned())
    }

    async fn get(&self, id: &str, credential: Option<&str>) -> StatusCode {
        let request = Self::request("GET", &format!("/api/v1/liveness/sessions/{id}"), credential);
        self.send(request.body(Body::empty()).unwrap()).await.0
    }

    async fn frame(&self, id: &str, credential: Option<&str>) -> StatusCode {
        let request = Self::request("POST", &format!("/api/v1/liveness/sessions/{id}/frame"), credential)
            .header(header::CONTENT_TYPE, "image/jpeg");
        self.send(request.body(Body::from(FakeFace::default().frame())).unwrap()).await.0
    }

    async fn cancel(&self, id: &str, credential: Option<&str>) -> StatusCode {
        let request = Self::request("DELETE", &format!("/api/v1/liveness/sessions/{id}"), credential);
        self.send(request.body(Body::empty()).unwrap()).await.0
    }
}

#[tokio::test]
async fn a_tenant_key_creates_and_the_client_token_drives_only_its_own_session() {
    let world = World::new().await;
    let (id, token) = world.session(&world.key_a).await;
    let (other_id, other_token) = world.session(&world.key_a).await;
    assert!(token.starts_with("ct_") && token != other_token);

    // The tenant: everything on its own sessions.
    assert_eq!(world.get(&id, Some(&world.key_a)).await, StatusCode::OK);
    assert_eq!(world.frame(&id, Some(&world.key_a)).await, StatusCode::OK);
    // The client token: frames and reads on its session, nothing on another.
    assert_eq!(world.frame(&id, Some(&token)).await, StatusCode::OK);
    assert_eq!(world.get(&id, Some(&token)).await, StatusCode::OK);
    assert_eq!(world.get(&other_id, Some(&token)).await, StatusCode::NOT_FOUND);
    assert_eq!(world.frame(&other_id, Some(&token)).await, StatusCode::NOT_FOUND);
    assert_eq!(world.cancel(&other_id, Some(&token)).await, StatusCode::NOT_FOUND);
    // A client token cannot create sessions.
    assert_eq!(world.create(Some(&token), "").await.0, StatusCode::UNAUTHORIZED);
    // Another tenant sees none of it: not found, as for an id that does not exist.
    for status in [
        world.get(&id, Some(&world.key_b)).await,
        world.frame(&id, Some(&world.key_b)).await,
        world.cancel(&id, Some(&world.key_b)).await,
    ] {
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // The client token cancels its own session; after that it is gone for everyone.
    assert_eq!(world.cancel(&id, Some(&token)).await, StatusCode::OK);
    assert_eq!(world.get(&id, Some(&world.key_a)).await, StatusCode::NOT_FOUND);
    assert_eq!(world.cancel(&other_id, Some(&world.key_a)).await, StatusCode::OK);
}

#[tokio::test]
async fn missing_unknown_revoked_and_disabled_credentials_are_401_on_every_endpoint() {
    let world = World::new().await;
    let (id, _) = world.session(&world.key_a).await;
    let listed = world.tenants.list().await.unwrap();
    let (tenant_b, keys_b) = listed.iter().find(|(t, _)| t.name == "Tenant B").unwrap();
    world.tenants.revoke_key(&tenant_b.id, &keys_b[0].key_id).await.unwrap();
    let (tenant_a, _) = listed.iter().find(|(t, _)| t.name == "Tenant A").unwrap();
    let disabled_key = world.key_a.clone();
    let tampered = format!("{}x", &world.key_a[..world.key_a.len() - 1]);

    for credential in [None, Some("garbage"), Some(tampered.as_str()), Some(world.key_b.as_str())] {
        let (status, body) = world.create(credential, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{credential:?}");
        assert_eq!(body["code"], "unauthorized");
        assert_eq!(world.get(&id, credential).await, StatusCode::UNAUTHORIZED);
        assert_eq!(world.frame(&id, credential).await, StatusCode::UNAUTHORIZED);
        assert_eq!(world.cancel(&id, credential).await, StatusCode::UNAUTHORIZED);
    }
    let request = World::request("POST", "/api/v1/liveness/sessions", None).body(Body::empty()).unwrap();
    let (_, _, challenge) = world.send(request).await;
    assert_eq!(challenge.as_deref(), Some("Bearer"));

    // Rotating keeps the old key working until it is revoked; disabling stops them all.
    let rotated = world.tenants.rotate_key(&tenant_a.id).await.unwrap();
    assert_eq!(world.get(&id, Some(&rotated.key)).await, StatusCode::OK);
    assert_eq!(world.get(&id, Some(&disabled_key)).await, StatusCode::OK);
    world.tenants.disable(&tenant_a.id).await.unwrap();
    assert_eq!(world.get(&id, Some(&disabled_key)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(world.get(&id, Some(&rotated.key)).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_api_key_header_works_as_well_as_bearer() {
    let world = World::new().await;
    let request = Request::post("/api/v1/liveness/sessions").header("X-API-Key", &world.key_a).body(Body::empty());
    let (status, body, _) = world.send(request.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let request = Request::get("/health").body(Body::empty()).unwrap();
    let (status, health, _) = world.send(request).await;
    assert_eq!((status, health["auth"].as_str()), (StatusCode::OK, Some("api_keys")), "health needs no credential");
}

#[tokio::test]
async fn the_default_policy_is_enforced_by_the_server_never_clamped() {
    let world = World::new().await;
    for (query, parameter) in [
        ("?num_challenges=1", "num_challenges"),
        ("?num_challenges=5", "num_challenges"),
        ("?timeout_seconds=60", "timeout_seconds"),
        ("?timeout_seconds=1", "timeout_seconds"),
        ("?interface=websocket&passive_frames=0", "passive_frames"),
    ] {
        let (status, body) = world.create(Some(&world.key_a), query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["code"], "policy_violation", "{query}");
        assert_eq!(body["parameter"], parameter, "{query}");
    }
    let head_movements = ["TURN_LEFT", "TURN_RIGHT", "LOOK_UP", "LOOK_DOWN"];
    for _ in 0..40 {
        let (status, body) = world.create(Some(&world.key_a), "").await;
        assert_eq!(status, StatusCode::CREATED);
        let challenges = body["challenges"].as_array().unwrap();
        assert_eq!(challenges.len(), 3, "the spec's default number, inside the policy");
        let types: Vec<&str> = challenges.iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert!(types.iter().any(|t| head_movements.contains(t)), "{types:?} has no head movement");
    }
    for query in ["?num_challenges=4&timeout_seconds=10", "?reference=user-42&nonce=n-1"] {
        assert_eq!(world.create(Some(&world.key_a), query).await.0, StatusCode::CREATED, "{query}");
    }
    let (status, body) = world.create(Some(&world.key_a), &format!("?reference={}", "r".repeat(129))).await;
    assert_eq!((status, body["parameter"].as_str()), (StatusCode::BAD_REQUEST, Some("reference")));
}

/// The router served on a free loopback port, for WebSocket clients.
async fn serve(router: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

#[tokio::test]
async fn a_websocket_joins_only_a_session_its_relying_party_created_with_its_token() {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let world = World::new().await;
    let (status, created) = world.create(Some(&world.key_a), "?interface=websocket&passive_frames=3").await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["session_id"].as_str().unwrap();
    let token = created["client_token"].as_str().unwrap();
    let (_, other_token) = world.session(&world.key_a).await;
    let addr = serve(world.router.clone()).await;
    let url = |query: &str| format!("ws://{addr}/api/v1/liveness/ws?{query}");

    // Refused before the upgrade: no session, no token, another session's token, another tenant's key.
    for (query, expected) in [
        (String::new(), 401),
        (format!("session_id={id}"), 401),
        (format!("session_id={id}&token={other_token}"), 404),
        (format!("session_id={id}&token={}", world.key_b), 404),
    ] {
        match tokio_tungstenite::connect_async(url(&query)).await {
            Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), expected, "{query}"),
            other => panic!("{query}: expected a refusal, got {:?}", other.map(|_| ())),
        }
    }

    let (mut socket, _) =
        tokio_tungstenite::connect_async(url(&format!("session_id={id}&token={token}"))).await.unwrap();
    let first = socket.next().await.unwrap().unwrap();
    let message: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(message, serde_json::json!({"type": "phase", "value": "passive"}));
    use futures_util::SinkExt;
    socket.send(tokio_tungstenite::tungstenite::Message::Binary(FakeFace::default().frame().into())).await.unwrap();
    let answer = socket.next().await.unwrap().unwrap();
    let result: Value = serde_json::from_str(answer.to_text().unwrap()).unwrap();
    assert_eq!(result["type"], "frame_result");
    assert!(result["confidence"].is_null() && result["label"].is_null(), "scores hidden by the default policy");
    assert_eq!(world.get(id, Some(&world.key_a)).await, StatusCode::OK);
}

/// A policy quick to fail: one challenge, one second.
fn quick(lockout: Lockout, quota: Quota) -> Policy {
    Policy { challenges_min: 1, timeout_seconds_min: 1.0, lockout, quota, ..Policy::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_is_exact_after_concurrent_frames_and_reads_per_day() {
    let world =
        World::with_policy(quick(Lockout::default(), Quota::default()), AuthMode::ApiKeys, ServiceSettings::default())
            .await;
    let (id, token) = world.session(&world.key_a).await;
    world.session(&world.key_a).await;
    world.session(&world.key_b).await;
    let id = id.parse().unwrap();
    let results = support::race_frames(&world.service, id, &FakeFace::default().frame(), 24).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(world.frame(&id.to_string(), Some(&token)).await, StatusCode::OK);

    let (status, usage) = world.usage(&world.key_a, "?from=2026-11-29&to=2026-11-30").await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert!(usage["tenant_id"].as_str().unwrap().starts_with("t_"));
    let days = usage["days"].as_array().unwrap();
    assert_eq!(days.len(), 2, "every day of the range, zeros included");
    assert_eq!(
        days[0],
        serde_json::json!({"date": "2026-11-29", "sessions_created": 0, "sessions_live": 0,
        "sessions_not_live": 0, "frames_analysed": 0})
    );
    assert_eq!(days[1]["sessions_created"], 2, "tenant B's session is not A's");
    assert_eq!(days[1]["frames_analysed"], 25, "every frame once, none lost or doubled by the races");
    let (_, other) = world.usage(&world.key_b, "").await;
    assert_eq!(other["days"][0]["sessions_created"], 1, "today by default");

    // The session's end is counted once, by whoever wrote it (here a read that finds the deadline passed).
    world.clock.advance_ms(120_000);
    for _ in 0..3 {
        assert_eq!(world.get(&id.to_string(), Some(&world.key_a)).await, StatusCode::OK);
    }
    let (_, usage) = world.usage(&world.key_a, "").await;
    assert_eq!(usage["days"][0]["sessions_not_live"], 1, "{usage}");

    assert_eq!(world.usage(&token, "").await.0, StatusCode::UNAUTHORIZED, "a client token reads no usage");
    for bad in ["?from=2026-11-31", "?to=2026-1-30", "?from=yesterday"] {
        assert_eq!(world.usage(&world.key_a, bad).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, empty) = world.usage(&world.key_a, "?from=2026-12-01&to=2026-11-30").await;
    assert_eq!((status, empty["days"].as_array().unwrap().len()), (StatusCode::OK, 0), "from after to: no days");
    let (status, long) = world.usage(&world.key_a, "?from=2024-01-01&to=2026-01-01").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(long["days"].as_array().unwrap().len(), 366, "one answer holds at most 366 days");
    assert_eq!(long["days"][365]["date"], "2024-12-31");
    assert_eq!(long["next_from"], "2025-01-01", "and says where the rest begins");
}

#[tokio::test]
async fn repeated_failures_lock_a_reference_out_and_deleting_erases_nothing() {
    let lockout = Lockout { max_failures: 3, window_seconds: 180, lock_seconds: 1800 };
    let world =
        World::with_policy(quick(lockout, Quota::default()), AuthMode::ApiKeys, ServiceSettings::default()).await;
    let query = "?num_challenges=1&timeout_seconds=1&reference=user-7";
    // Two checks time out; a third is abandoned after a frame, then deleted: three failures.
    for _ in 0..2 {
        let (status, body) = world.create(Some(&world.key_a), query).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["session_id"].as_str().unwrap();
        assert_eq!(world.frame(id, Some(&world.key_a)).await, StatusCode::OK);
        world.clock.advance_ms(2_000);
        assert_eq!(world.get(id, Some(&world.key_a)).await, StatusCode::OK);
        assert_eq!(world.cancel(id, Some(&world.key_a)).await, StatusCode::OK);
    }
    let (_, body) = world.create(Some(&world.key_a), query).await;
    let id = body["session_id"].as_str().unwrap();
    assert_eq!(world.frame(id, Some(&world.key_a)).await, StatusCode::OK);
    assert_eq!(world.cancel(id, Some(&world.key_a)).await, StatusCode::OK);

    let (status, code, retry) = world.refused_create(&world.key_a, query).await;
    assert_eq!((status, code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"));
    assert_eq!(retry, Some(1800));
    // Another reference, another tenant's same reference, and no reference at all are not locked.
    for (key, query) in [(&world.key_a, "?reference=user-8"), (&world.key_b, "?reference=user-7"), (&world.key_a, "")] {
        assert_eq!(world.create(Some(key), query).await.0, StatusCode::CREATED, "{query}");
    }
    world.clock.advance_ms(1_799_000);
    assert_eq!(world.refused_create(&world.key_a, query).await.2, Some(1));
    world.clock.advance_ms(1_000);
    assert_eq!(world.create(Some(&world.key_a), query).await.0, StatusCode::CREATED, "the lock ends");

    // A passed check is no failure.
    let passed = world.service.create_for(&Caller::Operator, Default::default()).await.unwrap();
    assert!(passed.session.owner.tenant_id.is_none());
}

#[tokio::test]
async fn quotas_answer_429_with_retry_after_and_reset() {
    let quota = Quota { sessions_per_minute: 2, sessions_per_day: 3 };
    let world =
        World::with_policy(quick(Lockout::default(), quota), AuthMode::ApiKeys, ServiceSettings::default()).await;
    world.clock.advance_ms(30_000); // 12:00:30
    for _ in 0..2 {
        assert_eq!(world.create(Some(&world.key_a), "").await.0, StatusCode::CREATED);
    }
    let (status, code, retry) = world.refused_create(&world.key_a, "").await;
    assert_eq!((status, code.as_str(), retry), (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", Some(30)));
    assert_eq!(world.create(Some(&world.key_b), "").await.0, StatusCode::CREATED, "quotas are per tenant");
    world.clock.advance_ms(30_000);
    assert_eq!(world.create(Some(&world.key_a), "").await.0, StatusCode::CREATED, "a new minute");
    let (_, code, retry) = world.refused_create(&world.key_a, "").await;
    assert_eq!(
        (code.as_str(), retry),
        ("quota_exceeded", Some(12 * 3600 - 60)),
        "the day's three are used: until midnight UTC (it is 12:01)"
    );
}

#[tokio::test]
async fn with_authentication_off_open_sessions_are_capped() {
    let settings = ServiceSettings { max_open_sessions: 3, ..ServiceSettings::default() };
    let world = World::with_policy(Policy::default(), AuthMode::Off, settings).await;
    for _ in 0..3 {
        assert_eq!(world.create(None, "").await.0, StatusCode::CREATED);
    }
    let (status, code, retry) = world.refused_create("", "").await;
    assert_eq!((status, code.as_str(), retry), (StatusCode::SERVICE_UNAVAILABLE, "too_many_sessions", Some(180)));
    world.clock.advance_ms(180_000);
    assert_eq!(world.create(None, "").await.0, StatusCode::CREATED, "expired sessions are no longer open");
    let (status, usage) = world.usage("", "").await;
    assert_eq!((status, usage["tenant_id"].as_str()), (StatusCode::OK, Some("local")));
    assert_eq!(usage["days"][0]["sessions_created"], 4);
}

#[tokio::test]
async fn an_end_user_reads_a_failed_anti_spoofing_verdict_as_plain_not_verified() {
    let world = World::new().await;
    let (id, token) = world.session(&world.key_a).await;
    // Frames that read as spoof end the session after the early-fail frames.
    let spoof = FakeFace { antispoof_real: Some(0.05), ..FakeFace::default() };
    let mut last = Value::Null;
    for _ in 0..6 {
        let request = World::request("POST", &format!("/api/v1/liveness/sessions/{id}/frame"), Some(&token))
            .header(header::CONTENT_TYPE, "image/jpeg");
        let (status, body, _) = world.send(request.body(Body::from(spoof.frame())).unwrap()).await;
        if status != StatusCode::OK {
            break;
        }
        last = body;
    }
    assert_eq!(last["session_complete"], true, "{last}");
    assert_eq!(last["end_reason"], "NOT_VERIFIED", "the end user's frame answer: {last}");
    let read = |credential: String| {
        let world = &world;
        let id = id.clone();
        async move {
            let request = World::request("GET", &format!("/api/v1/liveness/sessions/{id}"), Some(&credential));
            world.send(request.body(Body::empty()).unwrap()).await.1
        }
    };
    let end_user = read(token.clone()).await;
    assert_eq!(end_user["end_reason"], "NOT_VERIFIED", "{end_user}");
    assert!(!end_user["advice"].as_str().unwrap().to_lowercase().contains("spoof"));
    let relying_party = read(world.key_a.clone()).await;
    assert_eq!(relying_party["end_reason"], "SPOOF_DETECTED", "the relying party reads the exact reason");
}
