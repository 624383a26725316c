//! An in-memory store with the same guarantees as the others, for tests (it keeps nothing across restarts).

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use super::{
    ApiKeyRecord, ConnectionBinding, ConnectionStore, ImageStore, MeteringStore, SessionStore, StoreError, StoreFuture,
    SubjectRecord, Tenant, TenantStore, UsageDay, UsageDelta,
};
use crate::domain::Session;

/// Sessions in a map behind a mutex. Expired sessions are removed by [`MemoryStore::sweep_expired`].
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<Uuid, Session>>,
    connections: Mutex<HashMap<String, ConnectionBinding>>,
    tenants: Mutex<TenantTables>,
    metering: Mutex<MeteringTables>,
    images: Mutex<HashMap<Uuid, (String, Vec<u8>)>>,
}

/// Usage by tenant and day, counters by bucket, subjects by tenant and reference.
#[derive(Debug, Default)]
struct MeteringTables {
    usage: HashMap<(String, String), UsageDay>,
    counters: HashMap<String, u64>,
    subjects: HashMap<(String, String), SubjectRecord>,
}

/// Tenants and keys, in creation order.
#[derive(Debug, Default)]
struct TenantTables {
    tenants: Vec<Tenant>,
    keys: Vec<ApiKeyRecord>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes sessions whose TTL ended before `cutoff_ms`; returns how many.
    pub fn sweep_expired(&self, cutoff_ms: i64) -> usize {
        let mut sessions = self.lock();
        let before = sessions.len();
        sessions.retain(|_, s| s.expires_at_ms >= cutoff_ms);
        self.connections().retain(|_, b| b.expires_at_ms >= cutoff_ms);
        before - sessions.len()
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Session>> {
        // A panic elsewhere while holding the lock leaves the map consistent (every write is one insert).
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<String, ConnectionBinding>> {
        // As for sessions: every write is one insert or removal.
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn metering(&self) -> std::sync::MutexGuard<'_, MeteringTables> {
        // As for sessions: every write is one insert or one field set.
        self.metering.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn tenant_tables(&self) -> std::sync::MutexGuard<'_, TenantTables> {
        // As for sessions: every write is one push or one field set.
        self.tenants.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SessionStore for MemoryStore {
    fn create<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut sessions = self.lock();
            if sessions.contains_key(&session.id) {
                return Err(StoreError::AlreadyExists);
            }
            sessions.insert(session.id, session.clone());
            Ok(())
        })
    }

    fn get(&self, id: Uuid) -> StoreFuture<'_, Session> {
        Box::pin(async move { self.lock().get(&id).cloned().ok_or(StoreError::NotFound) })
    }

    fn update<'a>(&'a self, session: &'a Session, expected_version: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut sessions = self.lock();
            let stored = sessions.get_mut(&session.id).ok_or(StoreError::NotFound)?;
            if stored.version != expected_version {
                return Err(StoreError::Conflict);
            }
            *stored = session.clone();
            Ok(())
        })
    }

    fn delete(&self, id: Uuid) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.lock().remove(&id).map(|_| ()).ok_or(StoreError::NotFound) })
    }
}

impl ConnectionStore for MemoryStore {
    fn bind<'a>(&'a self, connection_id: &'a str, binding: &'a ConnectionBinding) -> StoreFuture<'a, ()> {
        self.connections().insert(connection_id.to_owned(), binding.clone());
        Box::pin(async { Ok(()) })
    }

    fn binding<'a>(&'a self, connection_id: &'a str) -> StoreFuture<'a, ConnectionBinding> {
        let found = self.connections().get(connection_id).cloned().ok_or(StoreError::NotFound);
        Box::pin(async { found })
    }

    fn unbind<'a>(&'a self, connection_id: &'a str) -> StoreFuture<'a, ()> {
        self.connections().remove(connection_id);
        Box::pin(async { Ok(()) })
    }
}

impl TenantStore for MemoryStore {
    fn create_tenant<'a>(&'a self, tenant: &'a Tenant, key: &'a ApiKeyRecord) -> StoreFuture<'a, ()> {
        let mut tables = self.tenant_tables();
        let result = if tables.tenants.iter().any(|t| t.id == tenant.id) {
            Err(StoreError::AlreadyExists)
        } else {
            tables.tenants.push(tenant.clone());
            tables.keys.push(key.clone());
            Ok(())
        };
        Box::pin(async { result })
    }

    fn tenant<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Tenant> {
        let found = self.tenant_tables().tenants.iter().find(|t| t.id == id).cloned().ok_or(StoreError::NotFound);
        Box::pin(async { found })
    }

    fn tenants(&self) -> StoreFuture<'_, Vec<Tenant>> {
        let all = self.tenant_tables().tenants.clone();
        Box::pin(async { Ok(all) })
    }

    fn update_tenant<'a>(&'a self, tenant: &'a Tenant) -> StoreFuture<'a, ()> {
        let mut tables = self.tenant_tables();
        let result = match tables.tenants.iter_mut().find(|t| t.id == tenant.id) {
            Some(stored) => {
                *stored = tenant.clone();
                Ok(())
            }
            None => Err(StoreError::NotFound),
        };
        Box::pin(async { result })
    }

    fn add_key<'a>(&'a self, key: &'a ApiKeyRecord) -> StoreFuture<'a, ()> {
        let mut tables = self.tenant_tables();
        let result = if tables.tenants.iter().any(|t| t.id == key.tenant_id) {
            tables.keys.push(key.clone());
            Ok(())
        } else {
            Err(StoreError::NotFound)
        };
        Box::pin(async { result })
    }

    fn key<'a>(&'a self, key_id: &'a str) -> StoreFuture<'a, ApiKeyRecord> {
        let found = self.tenant_tables().keys.iter().find(|k| k.key_id == key_id).cloned().ok_or(StoreError::NotFound);
        Box::pin(async { found })
    }

    fn keys<'a>(&'a self, tenant_id: &'a str) -> StoreFuture<'a, Vec<ApiKeyRecord>> {
        let keys = self.tenant_tables().keys.iter().filter(|k| k.tenant_id == tenant_id).cloned().collect();
        Box::pin(async { Ok(keys) })
    }

    fn revoke_key<'a>(&'a self, tenant_id: &'a str, key_id: &'a str) -> StoreFuture<'a, ()> {
        let mut tables = self.tenant_tables();
        let result = match tables.keys.iter_mut().find(|k| k.key_id == key_id && k.tenant_id == tenant_id) {
            Some(key) => {
                key.revoked = true;
                Ok(())
            }
            None => Err(StoreError::NotFound),
        };
        Box::pin(async { result })
    }
}

impl MeteringStore for MemoryStore {
    fn add_usage<'a>(&'a self, tenant_id: &'a str, date: &'a str, delta: UsageDelta) -> StoreFuture<'a, ()> {
        let mut tables = self.metering();
        let day = tables
            .usage
            .entry((tenant_id.to_owned(), date.to_owned()))
            .or_insert_with(|| UsageDay { date: date.to_owned(), ..UsageDay::default() });
        day.sessions_created += delta.sessions_created;
        day.sessions_live += delta.sessions_live;
        day.sessions_not_live += delta.sessions_not_live;
        day.frames_analysed += delta.frames_analysed;
        Box::pin(async { Ok(()) })
    }

    fn usage<'a>(&'a self, tenant_id: &'a str, from: &'a str, to: &'a str) -> StoreFuture<'a, Vec<UsageDay>> {
        let tables = self.metering();
        let mut days: Vec<UsageDay> = tables
            .usage
            .iter()
            .filter(|((tenant, date), _)| tenant == tenant_id && date.as_str() >= from && date.as_str() <= to)
            .map(|(_, day)| day.clone())
            .collect();
        days.sort_by(|a, b| a.date.cmp(&b.date));
        Box::pin(async { Ok(days) })
    }

    fn count<'a>(&'a self, bucket: &'a str, _expires_at_ms: i64) -> StoreFuture<'a, u64> {
        let mut tables = self.metering();
        let value = tables.counters.entry(bucket.to_owned()).or_insert(0);
        *value += 1;
        let value = *value;
        Box::pin(async move { Ok(value) })
    }

    fn subject<'a>(&'a self, tenant_id: &'a str, reference: &'a str) -> StoreFuture<'a, Option<SubjectRecord>> {
        let found = self.metering().subjects.get(&(tenant_id.to_owned(), reference.to_owned())).cloned();
        Box::pin(async { Ok(found) })
    }

    fn put_subject<'a>(
        &'a self,
        tenant_id: &'a str,
        reference: &'a str,
        record: &'a SubjectRecord,
    ) -> StoreFuture<'a, ()> {
        let mut tables = self.metering();
        let key = (tenant_id.to_owned(), reference.to_owned());
        let stored_version = tables.subjects.get(&key).map_or(0, |r| r.version);
        let result = if stored_version + 1 == record.version {
            tables.subjects.insert(key, record.clone());
            Ok(())
        } else {
            Err(StoreError::Conflict)
        };
        Box::pin(async { result })
    }
}

impl ImageStore for MemoryStore {
    fn put_image<'a>(
        &'a self,
        session_id: Uuid,
        sha256: &'a str,
        jpeg: &'a [u8],
        _expires_at_ms: i64,
    ) -> StoreFuture<'a, ()> {
        // Each change is one insert or removal, so a poisoned lock still holds a consistent map.
        let mut images = self.images.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        images.insert(session_id, (sha256.to_owned(), jpeg.to_vec()));
        Box::pin(async { Ok(()) })
    }

    fn image<'a>(&'a self, session_id: Uuid, sha256: &'a str) -> StoreFuture<'a, Vec<u8>> {
        let images = self.images.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let found = images.get(&session_id).filter(|(sha, _)| sha == sha256).map(|(_, jpeg)| jpeg.clone());
        Box::pin(async { found.ok_or(StoreError::NotFound) })
    }

    fn delete_images(&self, session_id: Uuid) -> StoreFuture<'_, ()> {
        self.images.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&session_id);
        Box::pin(async { Ok(()) })
    }
}
