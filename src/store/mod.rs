//! The session store port: versioned, conditional writes so concurrent frames never overwrite each other.
//! Adapters: SQLite (the embedded durable default), DynamoDB (AWS), and in memory (tests).

pub mod dynamodb;
pub mod memory;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Policy, Session};

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// A boxed future, so the store can be used as `dyn SessionStore`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What can go wrong in a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No session with that id (never created, cancelled, or swept after expiry).
    #[error("no such session")]
    NotFound,
    /// A create found the id taken.
    #[error("a session with this id already exists")]
    AlreadyExists,
    /// An update found a different version than the one it read: someone else wrote first.
    #[error("the session was changed by another request")]
    Conflict,
    /// The store cannot be reached or is throttling; nothing was written.
    #[error("the session store is unavailable: {0}")]
    Unavailable(String),
}

/// Where sessions live. Every write is conditional, so a lost race is reported, never silently applied.
pub trait SessionStore: Send + Sync {
    /// Stores a new session; fails with [`StoreError::AlreadyExists`] if its id is taken.
    fn create<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()>;
    /// Reads a session (strongly consistent).
    fn get(&self, id: Uuid) -> StoreFuture<'_, Session>;
    /// Replaces a session if the stored version is still `expected_version`; `session.version` must be the next
    /// one. Fails with [`StoreError::Conflict`] otherwise, and [`StoreError::NotFound`] if it is gone.
    fn update<'a>(&'a self, session: &'a Session, expected_version: u64) -> StoreFuture<'a, ()>;
    /// Removes a session; [`StoreError::NotFound`] if there was none.
    fn delete(&self, id: Uuid) -> StoreFuture<'_, ()>;
}

/// A WebSocket connection's link to its session, kept for transports whose invocations share nothing (API
/// Gateway's WebSocket APIs call a fresh handler per message, knowing only the connection id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionBinding {
    pub session_id: Uuid,
    /// Whether the connection asked for `feedback` messages.
    pub feedback: bool,
    /// When the binding may be forgotten (the session's own expiry), epoch milliseconds.
    pub expires_at_ms: i64,
}

/// Where connection bindings live.
pub trait ConnectionStore: Send + Sync {
    /// Binds a connection (replacing any earlier binding of the same id).
    fn bind<'a>(&'a self, connection_id: &'a str, binding: &'a ConnectionBinding) -> StoreFuture<'a, ()>;
    /// The connection's binding; [`StoreError::NotFound`] if there is none. An expired binding may still be
    /// returned until it is swept; its session then reads as expired.
    fn binding<'a>(&'a self, connection_id: &'a str) -> StoreFuture<'a, ConnectionBinding>;
    /// Forgets a connection; forgetting an unknown one is not an error.
    fn unbind<'a>(&'a self, connection_id: &'a str) -> StoreFuture<'a, ()>;
}

/// A relying party: its policy and whether it may still use the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub policy: Policy,
    pub disabled: bool,
    pub created_at_ms: i64,
}

/// One API key of a tenant, as stored: only the digest of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub tenant_id: String,
    /// SHA-256 of the key's secret, lowercase hex.
    pub digest: String,
    pub revoked: bool,
    pub created_at_ms: i64,
}

/// Where tenants and their API keys live.
pub trait TenantStore: Send + Sync {
    /// Stores a new tenant with its first key.
    fn create_tenant<'a>(&'a self, tenant: &'a Tenant, key: &'a ApiKeyRecord) -> StoreFuture<'a, ()>;
    /// A tenant; [`StoreError::NotFound`] if there is none.
    fn tenant<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Tenant>;
    /// Every tenant, oldest first.
    fn tenants(&self) -> StoreFuture<'_, Vec<Tenant>>;
    /// Replaces a tenant's name, policy and disabled flag; [`StoreError::NotFound`] if there is none.
    fn update_tenant<'a>(&'a self, tenant: &'a Tenant) -> StoreFuture<'a, ()>;
    /// Adds a key to an existing tenant.
    fn add_key<'a>(&'a self, key: &'a ApiKeyRecord) -> StoreFuture<'a, ()>;
    /// A key by its id; [`StoreError::NotFound`] if there is none.
    fn key<'a>(&'a self, key_id: &'a str) -> StoreFuture<'a, ApiKeyRecord>;
    /// A tenant's keys, oldest first.
    fn keys<'a>(&'a self, tenant_id: &'a str) -> StoreFuture<'a, Vec<ApiKeyRecord>>;
    /// Revokes one of a tenant's keys; [`StoreError::NotFound`] if the tenant has no such key.
    fn revoke_key<'a>(&'a self, tenant_id: &'a str, key_id: &'a str) -> StoreFuture<'a, ()>;
}

/// Usage counters of one tenant on one UTC day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDay {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub sessions_created: u64,
    pub sessions_live: u64,
    pub sessions_not_live: u64,
    pub frames_analysed: u64,
}

/// Increments of the usage counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageDelta {
    pub sessions_created: u64,
    pub sessions_live: u64,
    pub sessions_not_live: u64,
    pub frames_analysed: u64,
}

impl UsageDelta {
    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        *self == UsageDelta::default()
    }
}

/// Recent failed checks of one subject (a tenant's `reference`), and the lock they caused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRecord {
    /// When failed checks ended, epoch milliseconds, oldest first (only those still inside the window).
    pub failures_ms: Vec<i64>,
    /// Creation is refused until then, epoch milliseconds.
    pub locked_until_ms: i64,
    /// Incremented by every write, for conditional writes.
    pub version: u64,
}

/// Where usage, rate counters and subject lockouts live. Every counter update is atomic in the store.
pub trait MeteringStore: Send + Sync {
    /// Adds `delta` to the tenant's counters of `date` (`YYYY-MM-DD`).
    fn add_usage<'a>(&'a self, tenant_id: &'a str, date: &'a str, delta: UsageDelta) -> StoreFuture<'a, ()>;
    /// The tenant's days from `from` to `to` (inclusive) that have counters, in date order.
    fn usage<'a>(&'a self, tenant_id: &'a str, from: &'a str, to: &'a str) -> StoreFuture<'a, Vec<UsageDay>>;
    /// Adds one to the counter `bucket` (kept until `expires_at_ms`) and returns its new value.
    fn count<'a>(&'a self, bucket: &'a str, expires_at_ms: i64) -> StoreFuture<'a, u64>;
    /// The subject's record; `None` if it has none.
    fn subject<'a>(&'a self, tenant_id: &'a str, reference: &'a str) -> StoreFuture<'a, Option<SubjectRecord>>;
    /// Writes the subject's record if the stored one still has `record.version - 1` (or none when that is 0);
    /// [`StoreError::Conflict`] otherwise.
    fn put_subject<'a>(
        &'a self,
        tenant_id: &'a str,
        reference: &'a str,
        record: &'a SubjectRecord,
    ) -> StoreFuture<'a, ()>;
}

/// Where sessions' reference images live (only for tenants whose policy keeps them): one image a session, the
/// latest kept, tagged with its SHA-256, until the session's expiry.
pub trait ImageStore: Send + Sync {
    /// Keeps `jpeg` (digest `sha256`) as session `session_id`'s image until `expires_at_ms`, replacing any.
    fn put_image<'a>(
        &'a self,
        session_id: Uuid,
        sha256: &'a str,
        jpeg: &'a [u8],
        expires_at_ms: i64,
    ) -> StoreFuture<'a, ()>;
    /// The image of session `session_id` if its digest is `sha256`; [`StoreError::NotFound`] otherwise.
    fn image<'a>(&'a self, session_id: Uuid, sha256: &'a str) -> StoreFuture<'a, Vec<u8>>;
    /// Forgets every image of session `session_id`.
    fn delete_images(&self, session_id: Uuid) -> StoreFuture<'_, ()>;
}
