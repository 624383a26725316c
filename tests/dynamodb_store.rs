//! The DynamoDB adapter and the service on it, against AWS's DynamoDB Local on loopback (no mocks).

mod support;

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use liveness::domain::FrameRejection;
use liveness::service::{
    Caller, Clock, CreateOptions, LivenessService, ManualClock, ServiceError, ServiceSettings, SystemClock,
};
use liveness::store::SessionStore;
use liveness::vision::fake::{FakeFace, ScriptedAnalyzer};
use support::dynamo_local::{DynamoLocal, TABLE};
use support::hooked_store::HookedStore;
use tower::ServiceExt;

#[tokio::test]
async fn create_read_update_delete_with_conditions() {
    let server = DynamoLocal::start(None);
    let store = server.store().await;
    store.ensure_table().await.expect("creating an existing table is fine");
    support::contracts::session_store_contract(&store).await;
}

#[tokio::test]
async fn ttl_is_set_and_honoured_on_read() {
    let server = DynamoLocal::start(None);
    let store = server.store().await;
    let client = server.client();
    let ttl = client.describe_time_to_live().table_name(TABLE).send().await.unwrap();
    let description = ttl.time_to_live_description().unwrap();
    assert_eq!(description.attribute_name(), Some("expires_at"));

    let now_ms = SystemClock.now_ms();
    let clock = Arc::new(ManualClock::new(now_ms));
    let service = LivenessService::new(
        Arc::new(store),
        Arc::new(ScriptedAnalyzer { antispoof: true }),
        clock.clone(),
        ServiceSettings::default(),
    );
    let created = service.create(CreateOptions::default()).await.unwrap();
    let item = client
        .get_item()
        .table_name(TABLE)
        .key("session_id", AttributeValue::S(created.id.to_string()))
        .send()
        .await
        .unwrap();
    let expires_at = item.item().unwrap()["expires_at"].as_n().unwrap().parse::<i64>().unwrap();
    assert_eq!(expires_at, now_ms / 1000 + 180, "epoch seconds, the table's TTL attribute");

    clock.advance_ms(180_000);
    // Past expires_at a read is refused (410 over HTTP) before DynamoDB's sweeper deletes the item, which is still
    // there.
    let read = service.get(&Caller::Operator, created.id).await;
    assert!(matches!(read, Err(ServiceError::Rejected(FrameRejection::Expired))), "{read:?}");
    let item = client.get_item().table_name(TABLE).key("session_id", AttributeValue::S(created.id.to_string()));
    assert!(item.send().await.unwrap().item().is_some(), "the item is still in the table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_frames_lose_nothing() {
    const FRAMES: usize = 12;
    let server = DynamoLocal::start(None);
    let mut settings = ServiceSettings::default();
    settings.max_write_attempts = FRAMES + 1;
    let service = LivenessService::new(
        Arc::new(server.store().await),
        Arc::new(ScriptedAnalyzer { antispoof: true }),
        Arc::new(SystemClock),
        settings,
    );
    let created = service
        .create(CreateOptions { num_challenges: Some(1), timeout_seconds: Some(60.0), ..Default::default() })
        .await
        .unwrap();
    let results = support::race_frames(&service, created.id, &FakeFace::default().frame(), FRAMES).await;
    let mut versions: Vec<u64> = results.into_iter().map(|r| r.expect("accepted").session.version).collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=FRAMES as u64).collect::<Vec<_>>());
    assert_eq!(service.get(&Caller::Operator, created.id).await.unwrap().frames_received as usize, FRAMES);
}

async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, Option<String>, serde_json::Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let retry_after = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, retry_after, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn a_store_outage_is_503_and_corrupts_nothing() {
    let db_dir = std::env::temp_dir().join(format!("liveness-ddb-{}", std::process::id()));
    std::fs::create_dir_all(&db_dir).unwrap();
    let mut server = DynamoLocal::start(Some(&db_dir));
    let service = LivenessService::new(
        Arc::new(server.store().await),
        Arc::new(ScriptedAnalyzer { antispoof: true }),
        // Time frozen at now: the outage itself must not be what changes the session (DynamoDB Local hides items
        // whose TTL has passed, so the clock must not be in the past either).
        Arc::new(ManualClock::new(SystemClock.now_ms())),
        ServiceSettings::default(),
    );
    let router = liveness::http::router(service, 5 * 1024 * 1024);
    let create = || Request::post("/api/v1/liveness/sessions").body(Body::empty()).unwrap();
    let (status, _, created) = call(&router, create()).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["session_id"].as_str().unwrap().to_owned();
    let frame = || {
        Request::post(format!("/api/v1/liveness/sessions/{id}/frame"))
            .header(header::CONTENT_TYPE, "image/jpeg")
            .body(Body::from(FakeFace::default().frame()))
            .unwrap()
    };
    let read = || Request::get(format!("/api/v1/liveness/sessions/{id}")).body(Body::empty()).unwrap();
    assert_eq!(call(&router, frame()).await.0, StatusCode::OK);
    let (_, _, before) = call(&router, read()).await;

    let ready = || Request::get("/ready").body(Body::empty()).unwrap();
    assert_eq!(call(&router, ready()).await.0, StatusCode::OK);
    server.stop();
    let (status, _, not_ready) = call(&router, ready()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "readiness follows the store: {not_ready}");
    assert!(not_ready["checks"]["store"].as_str().unwrap().starts_with("unreachable"), "{not_ready}");
    for request in [read(), frame(), create()] {
        let (status, retry_after, body) = call(&router, request).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "store_unavailable");
        assert!(retry_after.is_some());
    }

    server.launch();
    assert_eq!(call(&router, ready()).await.0, StatusCode::OK, "ready again");
    let (status, _, after) = call(&router, read()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after, before, "the session is exactly as it was before the outage");
    assert_eq!(call(&router, frame()).await.0, StatusCode::OK);
    drop(server);
    let _ = std::fs::remove_dir_all(&db_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_and_metering_keep_the_store_contracts() {
    let server = DynamoLocal::start(None);
    let store = server.store().await;
    support::contracts::tenant_store_contract(&store).await;
    support::contracts::metering_store_contract(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_redeems_have_one_winner() {
    let server = DynamoLocal::start(None);
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let service = LivenessService::new(
        Arc::new(server.store().await),
        Arc::new(ScriptedAnalyzer { antispoof: true }),
        clock.clone(),
        ServiceSettings::default(),
    );
    let created = service
        .create(CreateOptions { num_challenges: Some(1), timeout_seconds: Some(1.0), ..Default::default() })
        .await
        .unwrap();
    service.submit_frame(&Caller::Operator, created.id, FakeFace::default().frame()).await.unwrap();
    clock.advance_ms(2_000); // the challenge timed out: the session has ended, though nothing wrote it yet
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { service.redeem(&Caller::Operator, created.id).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Ok(_) | Err(ServiceError::AlreadyRedeemed))), "{results:?}");
    let winner = results.into_iter().find_map(Result::ok).unwrap();
    assert_eq!(winner.session.state.as_str(), "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_retried_across_a_frozen_store_counts_once() {
    let server = Arc::new(DynamoLocal::start(None));
    // The hook freezes the server just before the frame's update is sent: the server takes it but cannot answer.
    let store = Arc::new(HookedStore::new(server.store().await));
    let service = LivenessService::new(
        store.clone(),
        Arc::new(ScriptedAnalyzer { antispoof: true }),
        Arc::new(SystemClock),
        ServiceSettings::default(),
    );
    let router = liveness::http::router(service.clone(), 5 * 1024 * 1024);
    let created = service.create(CreateOptions::default()).await.unwrap();
    let frame = || {
        Request::post(format!("/api/v1/liveness/sessions/{}/frame", created.id))
            .header(header::CONTENT_TYPE, "image/jpeg")
            .header("Idempotency-Key", "4f1c2a")
            .body(Body::from(FakeFace::default().frame()))
            .unwrap()
    };
    let frames_received = || async { store.inner.get(created.id).await.map(|s| s.frames_received) };

    let frozen = Arc::clone(&server);
    store.before_next_update(move || frozen.freeze());
    let (status, retry_after, body) = call(&router, frame()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!((body["code"].as_str(), retry_after.as_deref()), (Some("store_unavailable"), Some("1")));

    server.thaw();
    // The update queued while frozen is handled now; give the server a moment to reach it.
    let mut landed = 0;
    for _ in 0..50 {
        landed = frames_received().await.unwrap();
        if landed == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(landed, 1, "the update sent while the store was frozen landed after the thaw");
    for _ in 0..2 {
        let response = router.clone().oneshot(frame()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("idempotent-replayed").is_some(), "answered from the receipt");
        assert_eq!(frames_received().await.unwrap(), 1, "the retried frame counts once");
    }
}
