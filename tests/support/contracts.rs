//! The contracts every store adapter keeps for tenants and metering, run against each adapter's own test binary.

use std::sync::Arc;

use liveness::domain::{Challenge, ChallengeType, Policy, Session};
use liveness::store::{
    ApiKeyRecord, MeteringStore, SessionStore, StoreError, SubjectRecord, Tenant, TenantStore, UsageDelta,
};
use uuid::Uuid;

/// A one-challenge session created at `now_ms`, with the default TTL.
pub fn session(now_ms: i64) -> Session {
    Session::new(Uuid::new_v4(), vec![Challenge { kind: ChallengeType::Smile, timeout_seconds: 5.0 }], now_ms, 180_000)
}

/// Sessions: create once, read back exactly, update only on the version read, delete once.
pub async fn session_store_contract(store: &dyn SessionStore) {
    let mut s = session(1_000);
    store.create(&s).await.unwrap();
    assert_eq!(store.create(&s).await, Err(StoreError::AlreadyExists));
    assert_eq!(store.get(s.id).await.unwrap(), s);

    s.version = 1;
    s.frames_received = 1;
    store.update(&s, 0).await.unwrap();
    assert_eq!(store.get(s.id).await.unwrap().frames_received, 1);
    let stale = Session { version: 1, frames_received: 7, ..s.clone() };
    assert_eq!(store.update(&stale, 0).await, Err(StoreError::Conflict));
    assert_eq!(store.get(s.id).await.unwrap(), s, "a conflicting write changes nothing");

    store.delete(s.id).await.unwrap();
    assert_eq!(store.get(s.id).await, Err(StoreError::NotFound));
    assert_eq!(store.delete(s.id).await, Err(StoreError::NotFound));
    assert_eq!(store.update(&Session { version: 2, ..s.clone() }, 1).await, Err(StoreError::NotFound));
}

fn tenant(id: &str, created_at_ms: i64) -> Tenant {
    Tenant {
        id: id.to_owned(),
        name: format!("name of {id}"),
        policy: Policy::default(),
        disabled: false,
        created_at_ms,
    }
}

fn key(key_id: &str, tenant_id: &str, created_at_ms: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id: key_id.to_owned(),
        tenant_id: tenant_id.to_owned(),
        digest: format!("digest-{key_id}"),
        revoked: false,
        created_at_ms,
    }
}

/// Tenants and keys: create once, read, list in order, update, add and revoke keys only of existing tenants.
pub async fn tenant_store_contract(store: &dyn TenantStore) {
    let (a, b) = (tenant("t_a", 1), tenant("t_b", 2));
    store.create_tenant(&a, &key("k1", "t_a", 1)).await.unwrap();
    store.create_tenant(&b, &key("k2", "t_b", 2)).await.unwrap();
    assert_eq!(store.create_tenant(&a, &key("k3", "t_a", 3)).await, Err(StoreError::AlreadyExists));
    assert_eq!(store.tenant("t_a").await.unwrap(), a);
    assert_eq!(store.tenant("t_zz").await, Err(StoreError::NotFound));
    let ids: Vec<String> = store.tenants().await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["t_a", "t_b"]);

    let disabled = Tenant { disabled: true, ..a.clone() };
    store.update_tenant(&disabled).await.unwrap();
    assert!(store.tenant("t_a").await.unwrap().disabled);
    assert_eq!(store.update_tenant(&tenant("t_zz", 9)).await, Err(StoreError::NotFound));

    store.add_key(&key("k4", "t_a", 4)).await.unwrap();
    assert_eq!(store.add_key(&key("k5", "t_zz", 5)).await, Err(StoreError::NotFound), "no such tenant");
    let keys: Vec<String> = store.keys("t_a").await.unwrap().into_iter().map(|k| k.key_id).collect();
    assert_eq!(keys, ["k1", "k4"]);
    assert_eq!(store.revoke_key("t_b", "k1").await, Err(StoreError::NotFound), "another tenant's key");
    store.revoke_key("t_a", "k1").await.unwrap();
    assert!(store.key("k1").await.unwrap().revoked);
    assert!(!store.key("k4").await.unwrap().revoked);
    assert_eq!(store.key("nope").await, Err(StoreError::NotFound));
}

/// Usage adds up exactly under concurrent increments; counters count; subject records are written conditionally.
pub async fn metering_store_contract(store: Arc<dyn MeteringStore>) {
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let delta =
                    UsageDelta { frames_analysed: 1, sessions_created: u64::from(i == 0), ..Default::default() };
                store.add_usage("t_a", "2026-11-30", delta).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    store.add_usage("t_a", "2026-12-01", UsageDelta { sessions_live: 2, ..Default::default() }).await.unwrap();
    store.add_usage("t_b", "2026-11-30", UsageDelta { sessions_not_live: 5, ..Default::default() }).await.unwrap();
    let days = store.usage("t_a", "2026-11-01", "2026-11-30").await.unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!((days[0].date.as_str(), days[0].frames_analysed, days[0].sessions_created), ("2026-11-30", 24, 1));
    assert_eq!(days[0].sessions_not_live, 0, "another tenant's counts stay apart");
    let both = store.usage("t_a", "2026-11-30", "2026-12-01").await.unwrap();
    assert_eq!(both.iter().map(|d| d.sessions_live).collect::<Vec<_>>(), [0, 2]);

    for expected in 1..=3 {
        assert_eq!(store.count("t_a#29933334", i64::MAX / 2).await.unwrap(), expected);
    }
    assert_eq!(store.count("t_b#29933334", i64::MAX / 2).await.unwrap(), 1);

    assert_eq!(store.subject("t_a", "user-1").await.unwrap(), None);
    let first = SubjectRecord { failures_ms: vec![5], locked_until_ms: 0, version: 1 };
    store.put_subject("t_a", "user-1", &first).await.unwrap();
    assert_eq!(store.put_subject("t_a", "user-1", &first).await, Err(StoreError::Conflict), "a second first write");
    let second = SubjectRecord { failures_ms: vec![5, 9], locked_until_ms: 99, version: 2 };
    store.put_subject("t_a", "user-1", &second).await.unwrap();
    let stale = SubjectRecord { version: 2, ..first.clone() };
    assert_eq!(store.put_subject("t_a", "user-1", &stale).await, Err(StoreError::Conflict));
    assert_eq!(store.subject("t_a", "user-1").await.unwrap(), Some(second));
    assert_eq!(store.subject("t_b", "user-1").await.unwrap(), None);
}
