//! Exactly-once frames: a frame sent with an `Idempotency-Key` (REST) or a `seq` (WebSocket text message) is
//! counted once however often it is retried, and every retry gets the first answer, on the embedded store (SQLite)
//! and in memory. The same with DynamoDB Local frozen and thawed is in `dynamodb_store.rs`.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use liveness::service::{Caller, CreateOptions, Interface, LivenessService, ServiceSettings, SystemClock};
use liveness::store::{MemoryStore, SessionStore, SqliteStore, StoreError};
use liveness::vision::fake::{FakeFace, ScriptedAnalyzer};
use serde_json::{json, Value};
use support::hooked_store::HookedStore;
use support::ws_client::Server;
use tower::ServiceExt;
use uuid::Uuid;

/// `inner` with a switch: once it is set, the next update is written and then reported as failed, as when the
/// store's answer is lost on the way back (a timeout after the write landed).
fn losing_answers<S: SessionStore>(inner: S) -> (Arc<HookedStore<S>>, Arc<AtomicBool>) {
    let lose_next = Arc::new(AtomicBool::new(false));
    let switch = Arc::clone(&lose_next);
    let store = HookedStore::new(inner).after_each_update(move |result| match result {
        Ok(()) if switch.swap(false, Ordering::SeqCst) => Err(StoreError::Unavailable("the answer was lost".into())),
        other => other,
    });
    (Arc::new(store), lose_next)
}

fn service(store: Arc<dyn SessionStore>) -> LivenessService {
    let analyzer = Arc::new(ScriptedAnalyzer { antispoof: true });
    LivenessService::new(store, analyzer, Arc::new(SystemClock), ServiceSettings::default())
}

struct Answer {
    status: StatusCode,
    replayed: bool,
    body: Value,
}

async fn frame(router: &axum::Router, id: Uuid, key: Option<&str>, image: Vec<u8>) -> Answer {
    let mut request =
        Request::post(format!("/api/v1/liveness/sessions/{id}/frame")).header(header::CONTENT_TYPE, "image/jpeg");
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = router.clone().oneshot(request.body(Body::from(image)).unwrap()).await.unwrap();
    let status = response.status();
    let replayed = response.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer { status, replayed, body: serde_json::from_slice(&bytes).unwrap() }
}

async fn frames_received(service: &LivenessService, id: Uuid) -> u32 {
    service.get(&Caller::Operator, id).await.unwrap().frames_received
}

async fn new_session(service: &LivenessService) -> Uuid {
    service.create(Default::default()).await.unwrap().id
}

/// The retry rule on one store: a lost answer is recovered by retrying with the same key, and never counted twice.
async fn a_retried_frame_counts_once(store: Arc<dyn SessionStore>, loses: &dyn Fn()) {
    let service = service(store);
    let router = liveness::http::router(service.clone(), 256 * 1024);
    let id = new_session(&service).await;
    let image = FakeFace::default().frame();

    loses();
    let lost = frame(&router, id, Some("frame-1"), image.clone()).await;
    assert_eq!(lost.status, StatusCode::SERVICE_UNAVAILABLE, "{}", lost.body);
    assert_eq!(lost.body["code"], "store_unavailable");
    assert_eq!(frames_received(&service, id).await, 1, "the write landed although its answer was lost");

    let retried = frame(&router, id, Some("frame-1"), image.clone()).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    assert!(retried.replayed, "the retry is answered from the receipt");
    assert_eq!(retried.body["session_id"], id.to_string());
    let again = frame(&router, id, Some("frame-1"), image.clone()).await;
    assert_eq!((again.status, again.replayed, &again.body), (StatusCode::OK, true, &retried.body));
    assert_eq!(frames_received(&service, id).await, 1, "retries are never counted");

    let other_frame = frame(&router, id, Some("frame-1"), FakeFace { yaw: 30.0, ..Default::default() }.frame()).await;
    assert_eq!(other_frame.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other_frame.body["code"], "idempotency_key_reused");

    let next = frame(&router, id, Some("frame-2"), image.clone()).await;
    assert_eq!((next.status, next.replayed), (StatusCode::OK, false));
    assert_eq!(frames_received(&service, id).await, 2);

    // Without a key a retry is a new frame: what the key is for.
    loses();
    assert_eq!(frame(&router, id, None, image.clone()).await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(frame(&router, id, None, image).await.status, StatusCode::OK);
    assert_eq!(frames_received(&service, id).await, 4, "a frame without a key, retried, counts twice");
}

#[tokio::test]
async fn a_retried_frame_counts_once_on_the_embedded_store() {
    let dir = std::env::temp_dir().join(format!("liveness-test-{}", Uuid::new_v4()));
    let (store, lose_next) = losing_answers(SqliteStore::open(&dir).unwrap());
    a_retried_frame_counts_once(store, &|| lose_next.store(true, Ordering::SeqCst)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_retried_frame_counts_once_in_memory() {
    let (store, lose_next) = losing_answers(MemoryStore::new());
    a_retried_frame_counts_once(store, &|| lose_next.store(true, Ordering::SeqCst)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_key_sent_concurrently_is_applied_once() {
    const COPIES: usize = 8;
    let service = service(Arc::new(MemoryStore::new()));
    let router = liveness::http::router(service.clone(), 256 * 1024);
    let id = new_session(&service).await;
    let tasks: Vec<_> = (0..COPIES)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move { frame(&router, id, Some("same"), FakeFace::default().frame()).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert!(answers.iter().all(|a| a.status == StatusCode::OK && a.body == answers[0].body), "one answer for all");
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1, "exactly one copy was applied");
    assert_eq!(frames_received(&service, id).await, 1);
    let today = liveness::service::metering::utc_date(service.now_ms());
    let usage = service.usage(&Caller::Operator, &today, &today).await.unwrap();
    assert_eq!(usage.days[0].frames_analysed, 1, "metered once");
}

#[tokio::test]
async fn a_malformed_key_is_refused_before_any_work() {
    let service = service(Arc::new(MemoryStore::new()));
    let router = liveness::http::router(service.clone(), 256 * 1024);
    let id = new_session(&service).await;
    for key in ["", "has space", &"k".repeat(65), "naïve"] {
        let answer = frame(&router, id, Some(key), FakeFace::default().frame()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{key:?}: {}", answer.body);
        assert_eq!(
            (&answer.body["code"], &answer.body["parameter"]),
            (&json!("invalid_parameter"), &json!("Idempotency-Key"))
        );
    }
    assert_eq!(frames_received(&service, id).await, 0);
}

#[tokio::test]
async fn a_websocket_frame_resent_with_its_seq_gets_its_first_messages() {
    let (store, lose_next) = losing_answers(MemoryStore::new());
    let service = service(store);
    let server = Server::serving(service.clone()).await;
    let options = CreateOptions {
        num_challenges: Some(1),
        passive_frames: Some(2),
        interface: Interface::WebSocket,
        ..Default::default()
    };
    let created = service.create_for(&Caller::Operator, options).await.unwrap();
    let id = created.session.id;
    let mut client = server.connect(&format!("session_id={id}&token={}", created.client_token)).await;
    assert_eq!(client.message().await["type"], "phase");
    let text = |seq: u64| {
        use base64::Engine;
        let image = base64::engine::general_purpose::STANDARD.encode(FakeFace::default().frame());
        json!({"type": "frame", "image": image, "seq": seq}).to_string()
    };

    client.send_text(&text(1)).await;
    let first = client.message().await;
    assert_eq!(first["type"], "frame_result");

    lose_next.store(true, Ordering::SeqCst);
    client.send_text(&text(2)).await;
    let lost = client.message().await;
    assert_eq!((&lost["type"], &lost["code"]), (&json!("error"), &json!("store_unavailable")));
    client.send_text(&text(2)).await;
    let recovered = client.until(|m| m["type"] == "challenge_start").await;
    let kinds: Vec<_> = recovered.iter().map(|m| m["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["frame_result", "phase", "challenge_start"], "the second frame's messages, once");
    assert_eq!(frames_received(&service, id).await, 2, "the resent frame was not counted again");

    client.send_text(&text(2)).await;
    let replayed = client.until(|m| m["type"] == "challenge_start").await;
    assert_eq!(replayed, recovered, "every resend gets the same messages");
    assert_eq!(frames_received(&service, id).await, 2);
}
