//! The embedded durable store (SQLite in a data directory) and the service on it: the same contracts as the
//! DynamoDB adapter, and nothing lost when the process reopens the database.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use liveness::domain::SessionState;
use liveness::service::{Caller, CreateOptions, LivenessService, ManualClock, ServiceSettings};
use liveness::store::sqlite::SqliteStore;
use liveness::store::{ConnectionBinding, ConnectionStore, SessionStore, StoreError};
use liveness::vision::fake::{FakeFace, ScriptedAnalyzer};
use support::contracts::session;
use uuid::Uuid;

/// A fresh data directory under the system's temporary folder.
fn data_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("liveness-test-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn service(store: SqliteStore, clock: Arc<ManualClock>) -> LivenessService {
    LivenessService::new(
        Arc::new(store),
        Arc::new(ScriptedAnalyzer { antispoof: true }),
        clock,
        ServiceSettings::default(),
    )
}

#[tokio::test]
async fn create_read_update_delete_with_conditions() {
    let store = SqliteStore::open(&data_dir()).unwrap();
    support::contracts::session_store_contract(&store).await;
}

#[tokio::test]
async fn a_reopened_database_has_every_session_and_binding_as_written() {
    let dir = data_dir();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let first = SqliteStore::open(&dir).unwrap();
    let service_before = service(first.clone(), clock.clone());
    let created = service_before
        .create(CreateOptions { num_challenges: Some(2), timeout_seconds: Some(30.0), ..Default::default() })
        .await
        .unwrap();
    for _ in 0..3 {
        clock.advance_ms(125);
        service_before.submit_frame(&Caller::Operator, created.id, FakeFace::default().frame()).await.unwrap();
    }
    let binding = ConnectionBinding { session_id: created.id, feedback: true, expires_at_ms: created.expires_at_ms };
    first.bind("abc=", &binding).await.unwrap();
    let before = service_before.get(&Caller::Operator, created.id).await.unwrap();
    drop(service_before);
    drop(first);

    let reopened = SqliteStore::open(&dir).unwrap();
    let service_after = service(reopened.clone(), clock.clone());
    let after = service_after.get(&Caller::Operator, created.id).await.unwrap();
    assert_eq!(after, before, "the session reads back exactly as it was");
    assert_eq!(after.frames_received, 3);
    assert_eq!(after.state, SessionState::InProgress);
    assert_eq!(reopened.binding("abc=").await.unwrap(), binding);

    // And it goes on where it left off.
    clock.advance_ms(125);
    let result = service_after.submit_frame(&Caller::Operator, created.id, FakeFace::default().frame()).await.unwrap();
    assert_eq!(result.session.frames_received, 4);
}

#[tokio::test]
async fn bindings_replace_and_forget() {
    let store = SqliteStore::open(&data_dir()).unwrap();
    let one = ConnectionBinding { session_id: Uuid::new_v4(), feedback: false, expires_at_ms: 5 };
    let two = ConnectionBinding { session_id: Uuid::new_v4(), feedback: true, expires_at_ms: 9 };
    assert_eq!(store.binding("c").await, Err(StoreError::NotFound));
    store.bind("c", &one).await.unwrap();
    store.bind("c", &two).await.unwrap();
    assert_eq!(store.binding("c").await.unwrap(), two);
    store.unbind("c").await.unwrap();
    store.unbind("c").await.unwrap();
    assert_eq!(store.binding("c").await, Err(StoreError::NotFound));
}

#[tokio::test]
async fn expired_rows_are_swept_and_live_ones_kept() {
    let store = SqliteStore::open(&data_dir()).unwrap();
    let old = session(0);
    let young = session(500_000);
    store.create(&old).await.unwrap();
    store.create(&young).await.unwrap();
    let binding = ConnectionBinding { session_id: old.id, feedback: false, expires_at_ms: old.expires_at_ms };
    store.bind("old", &binding).await.unwrap();

    let swept = store.sweep_expired(old.expires_at_ms + 1).await.unwrap();
    assert_eq!(swept, 1);
    assert_eq!(store.get(old.id).await, Err(StoreError::NotFound));
    assert_eq!(store.binding("old").await, Err(StoreError::NotFound));
    assert_eq!(store.get(young.id).await.unwrap(), young);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_frames_on_one_session_are_all_counted() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let service = service(SqliteStore::open(&data_dir()).unwrap(), clock);
    let created = service
        .create(CreateOptions { num_challenges: Some(1), timeout_seconds: Some(30.0), ..Default::default() })
        .await
        .unwrap();
    let results = support::race_frames(&service, created.id, &FakeFace::default().frame(), 24).await;
    assert!(results.iter().all(Result::is_ok), "{:?}", results.iter().find(|r| r.is_err()));
    assert_eq!(service.get(&Caller::Operator, created.id).await.unwrap().frames_received, 24);
}

#[tokio::test]
async fn a_second_process_sees_the_first_ones_writes() {
    // Two handles on one file, as the server and the CLI have: WAL lets both read and write.
    let dir = data_dir();
    let server = SqliteStore::open(&dir).unwrap();
    let cli = SqliteStore::open(&dir).unwrap();
    let s = session(1_000);
    server.create(&s).await.unwrap();
    assert_eq!(cli.get(s.id).await.unwrap(), s);
    cli.delete(s.id).await.unwrap();
    assert_eq!(server.get(s.id).await, Err(StoreError::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_and_metering_keep_the_store_contracts_and_survive_reopening() {
    let dir = data_dir();
    let store = SqliteStore::open(&dir).unwrap();
    support::contracts::tenant_store_contract(&store).await;
    support::contracts::metering_store_contract(Arc::new(store.clone())).await;
    drop(store);
    let reopened = SqliteStore::open(&dir).unwrap();
    use liveness::store::{MeteringStore, TenantStore};
    assert_eq!(reopened.tenants().await.unwrap().len(), 2);
    assert_eq!(reopened.usage("t_a", "2026-11-30", "2026-11-30").await.unwrap()[0].frames_analysed, 24);
    assert!(reopened.subject("t_a", "user-1").await.unwrap().is_some());
}
