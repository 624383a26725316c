//! The embedded durable store, the local default: one SQLite database file in `LIVENESS_DATA_DIR`, in WAL mode so
//! other processes (the CLI) can read and write it while the server runs. Same contracts as DynamoDB: creates
//! fail on a taken id, updates are conditional on the version read, expired rows are swept.
//!
//! Durability: each write is one transaction, committed before the call returns. With `synchronous=NORMAL` in WAL
//! mode a committed write survives the process being killed; a power cut may lose the last commits (SQLite's
//! documented trade-off), never corrupt the file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::{
    ApiKeyRecord, ConnectionBinding, ConnectionStore, ImageStore, MeteringStore, SessionStore, StoreError, StoreFuture,
    SubjectRecord, Tenant, TenantStore, UsageDay, UsageDelta,
};
use crate::domain::Session;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "liveness.sqlite3";

/// How long a write waits for another process's write to finish before reporting the store unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at_ms);
    CREATE TABLE IF NOT EXISTS connections (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        feedback INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS tenants (
        id TEXT PRIMARY KEY,
        created_at_ms INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS api_keys (
        key_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants (id),
        created_at_ms INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys (tenant_id);
    CREATE TABLE IF NOT EXISTS usage (
        tenant_id TEXT NOT NULL,
        date TEXT NOT NULL,
        sessions_created INTEGER NOT NULL DEFAULT 0,
        sessions_live INTEGER NOT NULL DEFAULT 0,
        sessions_not_live INTEGER NOT NULL DEFAULT 0,
        frames_analysed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant_id, date)
    );
    CREATE TABLE IF NOT EXISTS counters (
        bucket TEXT PRIMARY KEY,
        value INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS images (
        session_id TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        jpeg BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS subjects (
        tenant_id TEXT NOT NULL,
        reference TEXT NOT NULL,
        version INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (tenant_id, reference)
    );
";

/// Sessions and connection bindings in a SQLite database. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir`, which is created too.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| unavailable(format!("cannot create {}: {e}", data_dir.display())))?;
        let path = data_dir.join(DATABASE_FILE);
        let connection = Connection::open(&path).map_err(unavailable)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(unavailable)?;
        connection.pragma_update(None, "journal_mode", "WAL").map_err(unavailable)?;
        connection.pragma_update(None, "synchronous", "NORMAL").map_err(unavailable)?;
        connection.execute_batch(SCHEMA).map_err(unavailable)?;
        Ok(Self { connection: Arc::new(Mutex::new(connection)), path })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the connection off the async threads.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a half-done write: each write is one transaction.
            let mut connection = connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut connection)
        })
        .await
        .map_err(unavailable)?
    }

    /// Removes sessions and bindings whose TTL ended before `cutoff_ms`; returns how many sessions.
    pub async fn sweep_expired(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        self.with(move |connection| {
            let transaction = connection.transaction().map_err(unavailable)?;
            let swept = transaction
                .execute("DELETE FROM sessions WHERE expires_at_ms < ?1", params![cutoff_ms])
                .map_err(unavailable)?;
            transaction
                .execute("DELETE FROM connections WHERE expires_at_ms < ?1", params![cutoff_ms])
                .map_err(unavailable)?;
            transaction
                .execute("DELETE FROM counters WHERE expires_at_ms < ?1", params![cutoff_ms])
                .map_err(unavailable)?;
            transaction
                .execute("DELETE FROM images WHERE expires_at_ms < ?1", params![cutoff_ms])
                .map_err(unavailable)?;
            transaction.commit().map_err(unavailable)?;
            Ok(swept)
        })
        .await
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Unavailable(format!("cannot encode a record: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Unavailable(format!("unreadable record: {e}")))
}

/// Runs `sql` through the connection's statement cache: a frame's statements are parsed once, not at every call.
fn execute(connection: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
    connection.prepare_cached(sql).and_then(|mut statement| statement.execute(params)).map_err(unavailable)
}

/// Every row's JSON body that `sql` selects with `key`, decoded.
fn bodies<T: serde::de::DeserializeOwned>(
    connection: &Connection,
    sql: &str,
    key: impl rusqlite::ToSql,
) -> Result<Vec<T>, StoreError> {
    let mut statement = connection.prepare_cached(sql).map_err(unavailable)?;
    let rows = statement.query_map(params![key], |row| row.get::<_, String>(0)).map_err(unavailable)?;
    rows.map(|row| from_json(&row.map_err(unavailable)?)).collect()
}

/// The one row's JSON body that `sql` selects with `key`, decoded; [`StoreError::NotFound`] if none.
fn body<T: serde::de::DeserializeOwned>(connection: &Connection, sql: &str, key: &str) -> Result<T, StoreError> {
    let mut statement = connection.prepare_cached(sql).map_err(unavailable)?;
    let body: Option<String> = statement.query_row(params![key], |row| row.get(0)).optional().map_err(unavailable)?;
    from_json(&body.ok_or(StoreError::NotFound)?)
}

impl SessionStore for SqliteStore {
    fn create<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        let (id, version, expires_at_ms) = (session.id.to_string(), session.version as i64, session.expires_at_ms);
        let body = to_json(session);
        Box::pin(self.with(move |connection| {
            let inserted = execute(
                connection,
                "INSERT INTO sessions (id, version, expires_at_ms, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO NOTHING",
                params![id, version, expires_at_ms, body?],
            )?;
            if inserted == 0 {
                Err(StoreError::AlreadyExists)
            } else {
                Ok(())
            }
        }))
    }

    fn get(&self, id: Uuid) -> StoreFuture<'_, Session> {
        Box::pin(
            self.with(move |connection| body(connection, "SELECT body FROM sessions WHERE id = ?1", &id.to_string())),
        )
    }

    fn update<'a>(&'a self, session: &'a Session, expected_version: u64) -> StoreFuture<'a, ()> {
        let (id, version, expires_at_ms) = (session.id.to_string(), session.version as i64, session.expires_at_ms);
        let body = to_json(session);
        Box::pin(self.with(move |connection| {
            let transaction = connection.transaction().map_err(unavailable)?;
            let updated = execute(
                &transaction,
                "UPDATE sessions SET version = ?2, expires_at_ms = ?3, body = ?4 WHERE id = ?1 AND version = ?5",
                params![id, version, expires_at_ms, body?, expected_version as i64],
            )?;
            if updated == 0 {
                let exists = transaction
                    .query_row("SELECT 1 FROM sessions WHERE id = ?1", params![id], |_| Ok(()))
                    .optional()
                    .map_err(unavailable)?;
                return Err(if exists.is_some() { StoreError::Conflict } else { StoreError::NotFound });
            }
            transaction.commit().map_err(unavailable)
        }))
    }

    fn delete(&self, id: Uuid) -> StoreFuture<'_, ()> {
        Box::pin(self.with(move |connection| {
            let deleted = connection
                .execute("DELETE FROM sessions WHERE id = ?1", params![id.to_string()])
                .map_err(unavailable)?;
            if deleted == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        }))
    }
}

impl ConnectionStore for SqliteStore {
    fn bind<'a>(&'a self, connection_id: &'a str, binding: &'a ConnectionBinding) -> StoreFuture<'a, ()> {
        let id = connection_id.to_owned();
        let binding = binding.clone();
        Box::pin(self.with(move |connection| {
            connection
                .execute(
                    "INSERT INTO connections (id, session_id, feedback, expires_at_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO UPDATE SET session_id = ?2, feedback = ?3, expires_at_ms = ?4",
                    params![id, binding.session_id.to_string(), binding.feedback, binding.expires_at_ms],
                )
                .map_err(unavailable)?;
            Ok(())
        }))
    }

    fn binding<'a>(&'a self, connection_id: &'a str) -> StoreFuture<'a, ConnectionBinding> {
        let id = connection_id.to_owned();
        Box::pin(self.with(move |connection| {
            let row: Option<(String, bool, i64)> = connection
                .query_row(
                    "SELECT session_id, feedback, expires_at_ms FROM connections WHERE id = ?1",
                    params![id],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(unavailable)?;
            let (session_id, feedback, expires_at_ms) = row.ok_or(StoreError::NotFound)?;
            let session_id = Uuid::parse_str(&session_id).map_err(unavailable)?;
            Ok(ConnectionBinding { session_id, feedback, expires_at_ms })
        }))
    }

    fn unbind<'a>(&'a self, connection_id: &'a str) -> StoreFuture<'a, ()> {
        let id = connection_id.to_owned();
        Box::pin(self.with(move |connection| {
            connection.execute("DELETE FROM connections WHERE id = ?1", params![id]).map_err(unavailable)?;
            Ok(())
        }))
    }
}

impl TenantStore for SqliteStore {
    fn create_tenant<'a>(&'a self, tenant: &'a Tenant, key: &'a ApiKeyRecord) -> StoreFuture<'a, ()> {
        let (id, created) = (tenant.id.clone(), tenant.created_at_ms);
        let (tenant_body, key_id, key_body) = (to_json(tenant), key.key_id.clone(), to_json(key));
        Box::pin(self.with(move |connection| {
            let transaction = connection.transaction().map_err(unavailable)?;
            let inserted = transaction
                .execute(
                    "INSERT INTO tenants (id, created_at_ms, body) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
                    params![id, created, tenant_body?],
                )
                .map_err(unavailable)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists);
            }
            transaction
                .execute(
                    "INSERT INTO api_keys (key_id, tenant_id, created_at_ms, body) VALUES (?1, ?2, ?3, ?4)",
                    params![key_id, id, created, key_body?],
                )
                .map_err(unavailable)?;
            transaction.commit().map_err(unavailable)
        }))
    }

    fn tenant<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Tenant> {
        let id = id.to_owned();
        Box::pin(self.with(move |connection| body(connection, "SELECT body FROM tenants WHERE id = ?1", &id)))
    }

    fn tenants(&self) -> StoreFuture<'_, Vec<Tenant>> {
        Box::pin(self.with(|connection| {
            bodies(connection, "SELECT body FROM tenants WHERE ?1 ORDER BY created_at_ms, id", true)
        }))
    }

    fn update_tenant<'a>(&'a self, tenant: &'a Tenant) -> StoreFuture<'a, ()> {
        let (id, tenant_body) = (tenant.id.clone(), to_json(tenant));
        Box::pin(self.with(move |connection| {
            let updated = connection
                .execute("UPDATE tenants SET body = ?2 WHERE id = ?1", params![id, tenant_body?])
                .map_err(unavailable)?;
            if updated == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        }))
    }

    fn add_key<'a>(&'a self, key: &'a ApiKeyRecord) -> StoreFuture<'a, ()> {
        let (key_id, tenant_id, created, key_body) =
            (key.key_id.clone(), key.tenant_id.clone(), key.created_at_ms, to_json(key));
        Box::pin(self.with(move |connection| {
            let inserted = connection
                .execute(
                    "INSERT INTO api_keys (key_id, tenant_id, created_at_ms, body)
                     SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?2)
                     ON CONFLICT (key_id) DO NOTHING",
                    params![key_id, tenant_id, created, key_body?],
                )
                .map_err(unavailable)?;
            if inserted == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        }))
    }

    fn key<'a>(&'a self, key_id: &'a str) -> StoreFuture<'a, ApiKeyRecord> {
        let key_id = key_id.to_owned();
        Box::pin(self.with(move |connection| body(connection, "SELECT body FROM api_keys WHERE key_id = ?1", &key_id)))
    }

    fn keys<'a>(&'a self, tenant_id: &'a str) -> StoreFuture<'a, Vec<ApiKeyRecord>> {
        let tenant_id = tenant_id.to_owned();
        Box::pin(self.with(move |connection| {
            bodies(
                connection,
                "SELECT body FROM api_keys WHERE tenant_id = ?1 ORDER BY created_at_ms, key_id",
                tenant_id,
            )
        }))
    }

    fn revoke_key<'a>(&'a self, tenant_id: &'a str, key_id: &'a str) -> StoreFuture<'a, ()> {
        let (tenant_id, key_id) = (tenant_id.to_owned(), key_id.to_owned());
        Box::pin(self.with(move |connection| {
            let transaction = connection.transaction().map_err(unavailable)?;
            let mut key: ApiKeyRecord = body(&transaction, "SELECT body FROM api_keys WHERE key_id = ?1", &key_id)?;
            if key.tenant_id != tenant_id {
                return Err(StoreError::NotFound);
            }
            key.revoked = true;
            transaction
                .execute("UPDATE api_keys SET body = ?2 WHERE key_id = ?1", params![key_id, to_json(&key)?])
                .map_err(unavailable)?;
            transaction.commit().map_err(unavailable)
        }))
    }
}

impl MeteringStore for SqliteStore {
    fn add_usage<'a>(&'a self, tenant_id: &'a str, date: &'a str, delta: UsageDelta) -> StoreFuture<'a, ()> {
        let (tenant_id, date) = (tenant_id.to_owned(), date.to_owned());
        let counts = [delta.sessions_created, delta.sessions_live, delta.sessions_not_live, delta.frames_analysed]
            .map(|n| n as i64);
        Box::pin(self.with(move |connection| {
            execute(
                connection,
                "INSERT INTO usage (tenant_id, date, sessions_created, sessions_live, sessions_not_live,
                     frames_analysed) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant_id, date) DO UPDATE SET
                     sessions_created = sessions_created + ?3, sessions_live = sessions_live + ?4,
                     sessions_not_live = sessions_not_live + ?5, frames_analysed = frames_analysed + ?6",
                params![tenant_id, date, counts[0], counts[1], counts[2], counts[3]],
            )?;
            Ok(())
        }))
    }

    fn usage<'a>(&'a self, tenant_id: &'a str, from: &'a str, to: &'a str) -> StoreFuture<'a, Vec<UsageDay>> {
        let (tenant_id, from, to) = (tenant_id.to_owned(), from.to_owned(), to.to_owned());
        Box::pin(self.with(move |connection| {
            let mut statement = connection
                .prepare(
                    "SELECT date, sessions_created, sessions_live, sessions_not_live, frames_analysed FROM usage
                     WHERE tenant_id = ?1 AND date >= ?2 AND date <= ?3 ORDER BY date",
                )
                .map_err(unavailable)?;
            let rows = statement
                .query_map(params![tenant_id, from, to], |row| {
                    Ok(UsageDay {
                        date: row.get(0)?,
                        sessions_created: row.get::<_, i64>(1)? as u64,
                        sessions_live: row.get::<_, i64>(2)? as u64,
                        sessions_not_live: row.get::<_, i64>(3)? as u64,
                        frames_analysed: row.get::<_, i64>(4)? as u64,
                    })
                })
                .map_err(unavailable)?;
            rows.map(|row| row.map_err(unavailable)).collect()
        }))
    }

    fn count<'a>(&'a self, bucket: &'a str, expires_at_ms: i64) -> StoreFuture<'a, u64> {
        let bucket = bucket.to_owned();
        Box::pin(self.with(move |connection| {
            let value: i64 = connection
                .query_row(
                    "INSERT INTO counters (bucket, value, expires_at_ms) VALUES (?1, 1, ?2)
                     ON CONFLICT (bucket) DO UPDATE SET value = value + 1 RETURNING value",
                    params![bucket, expires_at_ms],
                    |row| row.get(0),
                )
                .map_err(unavailable)?;
            Ok(value as u64)
        }))
    }

    fn subject<'a>(&'a self, tenant_id: &'a str, reference: &'a str) -> StoreFuture<'a, Option<SubjectRecord>> {
        let (tenant_id, reference) = (tenant_id.to_owned(), reference.to_owned());
        Box::pin(self.with(move |connection| {
            let body: Option<String> = connection
                .query_row(
                    "SELECT body FROM subjects WHERE tenant_id = ?1 AND reference = ?2",
                    params![tenant_id, reference],
                    |row| row.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            body.map(|body| from_json(&body)).transpose()
        }))
    }

    fn put_subject<'a>(
        &'a self,
        tenant_id: &'a str,
        reference: &'a str,
        record: &'a SubjectRecord,
    ) -> StoreFuture<'a, ()> {
        let (tenant_id, reference, version, body) =
            (tenant_id.to_owned(), reference.to_owned(), record.version as i64, to_json(record));
        Box::pin(self.with(move |connection| {
            let body = body?;
            let written = if version == 1 {
                connection.execute(
                    "INSERT INTO subjects (tenant_id, reference, version, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tenant_id, reference) DO NOTHING",
                    params![tenant_id, reference, version, body],
                )
            } else {
                connection.execute(
                    "UPDATE subjects SET version = ?3, body = ?4 WHERE tenant_id = ?1 AND reference = ?2
                     AND version = ?3 - 1",
                    params![tenant_id, reference, version, body],
                )
            }
            .map_err(unavailable)?;
            if written == 0 {
                Err(StoreError::Conflict)
            } else {
                Ok(())
            }
        }))
    }
}

impl ImageStore for SqliteStore {
    fn put_image<'a>(
        &'a self,
        session_id: Uuid,
        sha256: &'a str,
        jpeg: &'a [u8],
        expires_at_ms: i64,
    ) -> StoreFuture<'a, ()> {
        let (id, sha256, jpeg) = (session_id.to_string(), sha256.to_owned(), jpeg.to_vec());
        Box::pin(self.with(move |connection| {
            connection
                .execute(
                    "INSERT INTO images (session_id, sha256, expires_at_ms, jpeg) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (session_id) DO UPDATE SET sha256 = ?2, expires_at_ms = ?3, jpeg = ?4",
                    params![id, sha256, expires_at_ms, jpeg],
                )
                .map_err(unavailable)?;
            Ok(())
        }))
    }

    fn image<'a>(&'a self, session_id: Uuid, sha256: &'a str) -> StoreFuture<'a, Vec<u8>> {
        let (id, sha256) = (session_id.to_string(), sha256.to_owned());
        Box::pin(self.with(move |connection| {
            connection
                .query_row(
                    "SELECT jpeg FROM images WHERE session_id = ?1 AND sha256 = ?2",
                    params![id, sha256],
                    |row| row.get(0),
                )
                .optional()
                .map_err(unavailable)?
                .ok_or(StoreError::NotFound)
        }))
    }

    fn delete_images(&self, session_id: Uuid) -> StoreFuture<'_, ()> {
        Box::pin(self.with(move |connection| {
            connection
                .execute("DELETE FROM images WHERE session_id = ?1", params![session_id.to_string()])
                .map_err(unavailable)?;
            Ok(())
        }))
    }
}
