//! The REST API through the axum `Router` (`oneshot`), with a scripted analyser and an injected clock.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use liveness::service::{LivenessService, ManualClock, ServiceSettings};
use liveness::store::MemoryStore;
use liveness::vision::fake::{FakeFace, ScriptedAnalyzer};
use serde_json::Value;
use tower::ServiceExt;

const MAX_BYTES: usize = 5 * 1024 * 1024;
const BOUNDARY: &str = "XyZ-boundary-42";

struct Api {
    router: Router,
    clock: Arc<ManualClock>,
}

impl Api {
    fn new() -> Api {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let service = LivenessService::new(
            Arc::new(MemoryStore::new()),
            Arc::new(ScriptedAnalyzer { antispoof: true }),
            clock.clone(),
            ServiceSettings::default(),
        );
        Api { router: liveness::http::router(service, MAX_BYTES), clock }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Option<String>, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, content_type, body)
    }

    async fn create(&self, query: &str) -> (StatusCode, Value) {
        let request = Request::post(format!("/api/v1/liveness/sessions{query}")).body(Body::empty()).unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    async fn session(&self) -> String {
        let (status, body) = self.create("").await;
        assert_eq!(status, StatusCode::CREATED);
        body["session_id"].as_str().unwrap().to_owned()
    }

    async fn raw_frame(&self, id: &str, content_type: &str, bytes: Vec<u8>) -> (StatusCode, Option<String>, Value) {
        let request = Request::post(format!("/api/v1/liveness/sessions/{id}/frame"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(bytes))
            .unwrap();
        self.send(request).await
    }

    async fn frame(&self, id: &str, face: &FakeFace) -> (StatusCode, Value) {
        let (status, _, body) = self.raw_frame(id, "image/jpeg", face.frame()).await;
        (status, body)
    }

    async fn multipart(&self, id: &str, parts: &[(&str, Option<&str>, &[u8])]) -> (StatusCode, Value) {
        let mut body = Vec::new();
        for (name, filename, bytes) in parts {
            body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            let filename = filename.map(|f| format!("; filename=\"{f}\"")).unwrap_or_default();
            body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"{filename}\r\n").as_bytes());
            body.extend_from_slice(b"Content-Type: image/jpeg\r\n\r\n");
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        let (status, _, body) = self.raw_frame(id, &format!("multipart/form-data; boundary={BOUNDARY}"), body).await;
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.send(Request::get(path).body(Body::empty()).unwrap()).await;
        (status, body)
    }
}

fn assert_problem(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], expected.as_u16());
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
}

#[tokio::test]
async fn create_returns_the_spec_shape() {
    let api = Api::new();
    let (status, body) = api.create("?num_challenges=3&timeout_seconds=5.0").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["state"], "pending");
    assert!(uuid::Uuid::parse_str(body["session_id"].as_str().unwrap()).is_ok());
    let challenges = body["challenges"].as_array().unwrap();
    assert_eq!(challenges.len(), 3);
    for challenge in challenges {
        let kind = challenge["type"].as_str().unwrap();
        let expected = match kind {
            "TURN_LEFT" => "Turn your head to the left",
            "TURN_RIGHT" => "Turn your head to the right",
            "LOOK_UP" => "Look upward",
            "LOOK_DOWN" => "Look downward",
            "BLINK" => "Blink your eyes",
            "SMILE" => "Smile",
            "OPEN_MOUTH" => "Open your mouth",
            other => panic!("unknown challenge type {other}"),
        };
        assert_eq!(challenge["instruction"], expected);
        assert_eq!(challenge["timeout_seconds"], 5.0);
    }
    assert!(body["is_live"].is_null());
}

/// Two stills of one person pass a session of expressions alone, so even the local server without a policy never
/// draws one: every session, of any length, holds a turn or a look.
#[tokio::test]
async fn every_session_drawn_holds_a_head_movement() {
    let api = Api::new();
    let head_movements = ["TURN_LEFT", "TURN_RIGHT", "LOOK_UP", "LOOK_DOWN"];
    let mut first_kinds = std::collections::BTreeSet::new();
    for count in [1, 2, 3] {
        for _ in 0..60 {
            let (status, body) = api.create(&format!("?num_challenges={count}")).await;
            assert_eq!(status, StatusCode::CREATED);
            let kinds: Vec<&str> =
                body["challenges"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
            assert!(kinds.iter().any(|k| head_movements.contains(k)), "{kinds:?}");
            first_kinds.insert(kinds[0].to_owned());
        }
    }
    assert!(
        first_kinds.contains("BLINK") || first_kinds.contains("SMILE"),
        "expressions are still asked: {first_kinds:?}"
    );
}

#[tokio::test]
async fn create_defaults_and_bounds() {
    let api = Api::new();
    let (_, body) = api.create("").await;
    assert_eq!(body["challenges"].as_array().unwrap().len(), 3);
    assert_eq!(body["challenges"][0]["timeout_seconds"], 5.0);
    for ok in ["?num_challenges=1", "?num_challenges=7", "?timeout_seconds=1", "?timeout_seconds=60"] {
        assert_eq!(api.create(ok).await.0, StatusCode::CREATED, "{ok}");
    }
    for bad in [
        "?num_challenges=0",
        "?num_challenges=8",
        "?num_challenges=-1",
        "?num_challenges=abc",
        "?num_challenges=2.5",
        "?timeout_seconds=0.5",
        "?timeout_seconds=61",
        "?timeout_seconds=NaN",
        "?timeout_seconds=inf",
        "?timeout_seconds=",
    ] {
        let (status, body) = api.create(bad).await;
        assert_problem(status, &body, StatusCode::BAD_REQUEST, "invalid_parameter");
        assert!(body["parameter"].is_string(), "{bad}: {body}");
    }
}

#[tokio::test]
async fn a_frame_returns_every_spec_field() {
    let api = Api::new();
    let id = api.session().await;
    let (status, body) = api.frame(&id, &FakeFace::default()).await;
    assert_eq!(status, StatusCode::OK);
    for field in [
        "session_id",
        "challenge_type",
        "passed",
        "confidence",
        "challenges_remaining",
        "session_complete",
        "is_live",
        "state",
    ] {
        assert!(body.get(field).is_some(), "missing {field}: {body}");
    }
    assert_eq!(body["session_id"], id);
    assert_eq!(body["state"], "in_progress");
    assert_eq!(body["passed"], false);
    assert_eq!(body["challenges_remaining"], 3);
    assert_eq!(body["session_complete"], false);
    assert!(body["is_live"].is_null());
}

#[tokio::test]
async fn a_whole_session_completes_live() {
    let api = Api::new();
    let (_, created) = api.create("?num_challenges=2").await;
    let id = created["session_id"].as_str().unwrap().to_owned();
    let neutral = FakeFace::default();
    api.frame(&id, &neutral).await;
    api.frame(&id, &neutral).await;
    let mut last = Value::Null;
    for challenge in created["challenges"].as_array().unwrap() {
        let acted = |t: f32| {
            let mut f = FakeFace::default();
            match challenge["type"].as_str().unwrap() {
                "TURN_LEFT" => f.yaw += 35.0 * t,
                "TURN_RIGHT" => f.yaw -= 35.0 * t,
                "LOOK_UP" => f.pitch += 25.0 * t,
                "LOOK_DOWN" => f.pitch -= 25.0 * t,
                "SMILE" => f.smile = 0.9 * t,
                "OPEN_MOUTH" => f.mouth_open = 0.6 * t,
                _ => f.eye_closure = 0.1 + 0.85 * t,
            }
            f
        };
        for t in [0.0, 0.5, 1.0, 1.0, 0.0] {
            let (status, body) = api.frame(&id, &acted(t)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            api.clock.advance_ms(125);
            let done = body["passed"] == true;
            last = body;
            if done {
                assert_eq!(last["challenge_type"], challenge["type"]);
                assert!(last["confidence"].as_f64().unwrap() >= 0.5);
                break;
            }
        }
    }
    assert_eq!(last["state"], "completed", "{last}");
    assert_eq!(last["session_complete"], true);
    assert_eq!(last["is_live"], true);
    assert_eq!(last["challenges_remaining"], 0);
    let (_, read) = api.get(&format!("/api/v1/liveness/sessions/{id}")).await;
    assert_eq!(read["state"], "completed");
    assert_eq!(read["is_live"], true);
    let (status, body) = api.frame(&id, &neutral).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "session_ended");
    assert_eq!(body["state"], "completed");
}

#[tokio::test]
async fn feedback_explains_frames_that_do_not_count() {
    let api = Api::new();
    let id = api.session().await;
    let (_, body) = api.frame(&id, &FakeFace { width: 30.0, ..FakeFace::default() }).await;
    assert_eq!(body["feedback"], "FACE_TOO_SMALL");
    let (_, body) = api.frame(&id, &FakeFace { brightness: 5.0, ..FakeFace::default() }).await;
    assert_eq!(body["feedback"], "TOO_DARK");
}

#[tokio::test]
async fn get_and_delete() {
    let api = Api::new();
    let id = api.session().await;
    let (status, body) = api.get(&format!("/api/v1/liveness/sessions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["session_id"], id);
    assert_eq!(body["state"], "pending");
    assert_eq!(body["challenges"].as_array().unwrap().len(), 3);
    let delete = Request::delete(format!("/api/v1/liveness/sessions/{id}")).body(Body::empty()).unwrap();
    let (status, _, body) = api.send(delete).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({ "cancelled": id }));
    let (status, body) = api.get(&format!("/api/v1/liveness/sessions/{id}")).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "session_not_found");
    let delete = Request::delete(format!("/api/v1/liveness/sessions/{id}")).body(Body::empty()).unwrap();
    let (status, _, body) = api.send(delete).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "session_not_found");
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let api = Api::new();
    let unknown = uuid::Uuid::new_v4();
    let (status, body) = api.get(&format!("/api/v1/liveness/sessions/{unknown}")).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "session_not_found");
    let (status, _, body) = api.raw_frame(&unknown.to_string(), "image/jpeg", FakeFace::default().frame()).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "session_not_found");
    for bad in ["not-a-uuid", "1234", "845096f1-404f-4fb8-856d-24efce3a8e9"] {
        let (status, body) = api.get(&format!("/api/v1/liveness/sessions/{bad}")).await;
        assert_problem(status, &body, StatusCode::BAD_REQUEST, "invalid_session_id");
    }
    let (status, body) = api.get("/api/v1/nothing").await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let put = Request::put("/api/v1/liveness/sessions").body(Body::empty()).unwrap();
    let (status, _, body) = api.send(put).await;
    assert_problem(status, &body, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn errors_are_problem_json() {
    let api = Api::new();
    let (_, content_type, _) = api.send(Request::get("/api/v1/liveness/sessions/x").body(Body::empty()).unwrap()).await;
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
}

#[tokio::test]
async fn content_types() {
    let api = Api::new();
    let id = api.session().await;
    let frame = FakeFace::default().frame();
    assert_eq!(api.raw_frame(&id, "image/png", frame.clone()).await.0, StatusCode::OK);
    assert_eq!(api.raw_frame(&id, "IMAGE/JPEG; charset=binary", frame.clone()).await.0, StatusCode::OK);
    for bad in ["text/plain", "application/json", "image/gif", ""] {
        let (status, _, body) = api.raw_frame(&id, bad, frame.clone()).await;
        assert_problem(status, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    }
}

#[tokio::test]
async fn bad_images_are_refused_and_change_nothing() {
    let api = Api::new();
    let id = api.session().await;
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec();
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (Vec::new(), StatusCode::UNPROCESSABLE_ENTITY, "empty_image"),
        (
            b"random bytes that are no image at all".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_image_format",
        ),
        (gif, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_image_format"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "undecodable_image"),
        (vec![0xFF; MAX_BYTES + 1], StatusCode::PAYLOAD_TOO_LARGE, "image_too_large"),
    ];
    for (bytes, expected, code) in cases {
        let (status, _, body) = api.raw_frame(&id, "image/jpeg", bytes).await;
        assert_problem(status, &body, expected, code);
    }
    let (_, body) = api.get(&format!("/api/v1/liveness/sessions/{id}")).await;
    assert_eq!(body["state"], "pending", "rejected frames must not start the session");
}

#[tokio::test]
async fn multipart_edge_cases() {
    let api = Api::new();
    let id = api.session().await;
    let frame = FakeFace::default().frame();
    let (status, body) = api.multipart(&id, &[("image", Some("frame.jpg"), &frame)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Exactly one part: anything else is refused, as the OpenAPI document says, rather than silently ignored.
    let (status, body) = api.multipart(&id, &[("note", None, b"hello"), ("image", Some("f.jpg"), &frame)]).await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "invalid_multipart");
    let (status, body) = api.multipart(&id, &[("picture", Some("frame.jpg"), &frame)]).await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "invalid_multipart");
    assert!(body["detail"].as_str().unwrap().contains("\"picture\""), "the detail names the part: {body}");
    let (status, body) = api.multipart(&id, &[]).await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "missing_image");
    let (status, body) =
        api.multipart(&id, &[("image", Some("a.jpg"), &frame), ("image", Some("b.jpg"), &frame)]).await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "multiple_images");
    let (status, body) = api.multipart(&id, &[("image", Some("empty.jpg"), b"")]).await;
    assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "empty_image");
    let (status, _, body) = api.raw_frame(&id, "multipart/form-data", frame.clone()).await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "invalid_multipart");
    let (status, _, body) =
        api.raw_frame(&id, &format!("multipart/form-data; boundary={BOUNDARY}"), b"--garbage".to_vec()).await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "invalid_multipart");
    let huge = vec![0xFFu8; MAX_BYTES + 100 * 1024];
    let (status, body) = api.multipart(&id, &[("image", Some("huge.jpg"), &huge)]).await;
    assert_problem(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "image_too_large");
}

#[tokio::test]
async fn deadlines_and_expiry_follow_the_injected_clock() {
    let api = Api::new();
    let id = api.session().await;
    api.frame(&id, &FakeFace::default()).await;
    api.clock.advance_ms(5_001);
    let (_, body) = api.get(&format!("/api/v1/liveness/sessions/{id}")).await;
    assert_eq!(body["state"], "failed");
    assert_eq!(body["end_reason"], "CHALLENGE_TIMEOUT");
    assert_eq!(body["is_live"], false);
    let (status, body) = api.frame(&id, &FakeFace::default()).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "session_ended");
    assert_eq!(body["state"], "failed");

    let id = api.session().await;
    api.clock.advance_ms(180_000);
    let (_, body) = api.get(&format!("/api/v1/liveness/sessions/{id}")).await;
    assert_eq!(body["state"], "expired");
    let (status, body) = api.frame(&id, &FakeFace::default()).await;
    assert_problem(status, &body, StatusCode::GONE, "session_expired");
}

#[tokio::test]
async fn too_many_frames() {
    let clock = Arc::new(ManualClock::new(0));
    let mut settings = ServiceSettings::default();
    settings.rules.max_frames = 3;
    let service =
        LivenessService::new(Arc::new(MemoryStore::new()), Arc::new(ScriptedAnalyzer::default()), clock, settings);
    let api = Api { router: liveness::http::router(service, MAX_BYTES), clock: Arc::new(ManualClock::new(0)) };
    let id = api.session().await;
    for _ in 0..3 {
        assert_eq!(api.frame(&id, &FakeFace::default()).await.0, StatusCode::OK);
    }
    let (status, body) = api.frame(&id, &FakeFace::default()).await;
    assert_problem(status, &body, StatusCode::TOO_MANY_REQUESTS, "too_many_frames");
}

#[tokio::test]
async fn health_reports_antispoof() {
    let api = Api::new();
    let (status, body) = api.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["antispoof"], true);
    assert!(body["warning"].is_null());
}

#[tokio::test]
async fn readiness_names_what_is_missing_and_health_stays_ok() {
    let api = Api::new();
    let (status, _, body) = api.send(Request::get("/ready").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")), "{body}");
    let clock = Arc::new(ManualClock::new(0));
    let without_models = LivenessService::new(
        Arc::new(MemoryStore::new()),
        Arc::new(ScriptedAnalyzer { antispoof: false }),
        clock,
        ServiceSettings::default(),
    );
    let router = liveness::http::router(without_models, MAX_BYTES);
    let response = router.clone().oneshot(Request::get("/ready").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
    let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["checks"]["store"], "ok");
    assert!(body["checks"]["models"].as_str().unwrap().contains("not installed"), "{body}");
    let health = router.oneshot(Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn undecodable_paths_and_queries_get_problems_too() {
    let api = Api::new();
    for uri in ["/api/v1/liveness/sessions/%FF%FE", "/api/v1/liveness/sessions/%FF%FE/frame"] {
        let method = if uri.ends_with("frame") { "POST" } else { "GET" };
        let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        let (status, content_type, body) = api.send(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{uri}");
        assert_eq!(body["code"], "invalid_path", "{uri}");
    }
    let request = Request::post("/api/v1/liveness/sessions?num_challenges=%FF").body(Body::empty()).unwrap();
    let (status, content_type, _) = api.send(request).await;
    assert_eq!((status, content_type.as_deref()), (StatusCode::BAD_REQUEST, Some("application/problem+json")));
}
