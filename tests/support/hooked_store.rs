//! A session store for tests of failure and concurrency: every call goes to the real store inside, with hooks
//! around updates (one run once just before the next update is sent; one that sees every update's result and may
//! replace it).

use std::sync::Mutex;

use liveness::domain::Session;
use liveness::store::{SessionStore, StoreError, StoreFuture};
use uuid::Uuid;

type AfterUpdate = Box<dyn Fn(Result<(), StoreError>) -> Result<(), StoreError> + Send + Sync>;

/// `inner` with hooks around its updates.
pub struct HookedStore<S> {
    pub inner: S,
    before_next_update: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    after_update: AfterUpdate,
}

impl<S> HookedStore<S> {
    /// `inner` without hooks.
    pub fn new(inner: S) -> Self {
        Self { inner, before_next_update: Mutex::new(None), after_update: Box::new(|result| result) }
    }

    /// Passes every update's result (after the update ran) through `hook`.
    pub fn after_each_update(
        mut self,
        hook: impl Fn(Result<(), StoreError>) -> Result<(), StoreError> + Send + Sync + 'static,
    ) -> Self {
        self.after_update = Box::new(hook);
        self
    }

    /// Runs `hook` once, just before the next update is sent.
    pub fn before_next_update(&self, hook: impl FnOnce() + Send + 'static) {
        *self.before_next_update.lock().unwrap() = Some(Box::new(hook));
    }
}

impl<S: SessionStore> SessionStore for HookedStore<S> {
    fn create<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        self.inner.create(session)
    }

    fn get(&self, id: Uuid) -> StoreFuture<'_, Session> {
        self.inner.get(id)
    }

    fn update<'a>(&'a self, session: &'a Session, expected_version: u64) -> StoreFuture<'a, ()> {
        if let Some(hook) = self.before_next_update.lock().unwrap().take() {
            hook();
        }
        Box::pin(async move { (self.after_update)(self.inner.update(session, expected_version).await) })
    }

    fn delete(&self, id: Uuid) -> StoreFuture<'_, ()> {
        self.inner.delete(id)
    }
}
