//! The session store port: versioned, conditional writes so concurrent frames never overwrite each other.

pub mod dynamodb;
pub mod memory;

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use crate::domain::Session;

pub use memory::MemoryStore;

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
