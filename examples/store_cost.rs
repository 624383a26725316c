//! What the durable embedded store costs a frame: the store work of one analysed frame (read the session, write it
//! conditionally, add to the tenant's usage) on SQLite against the in-memory store, interleaved in one run.
//!
//!     cargo run --release --example store_cost -- [ROUNDS]
//!
//! Prints the median and 90th percentile per frame for each store, and their ratio.

use std::sync::Arc;
use std::time::Instant;

use liveness::domain::{Challenge, ChallengeType, Session};
use liveness::store::{MemoryStore, MeteringStore, SessionStore, SqliteStore, UsageDelta};

/// One frame's store work on `store`: read, conditional write of the next version, one usage increment.
async fn frame<S: SessionStore + MeteringStore>(store: &S, id: uuid::Uuid) -> f64 {
    let started = Instant::now();
    let mut session = store.get(id).await.unwrap();
    let expected = session.version;
    session.version += 1;
    session.frames_received += 1;
    store.update(&session, expected).await.unwrap();
    let delta = UsageDelta { frames_analysed: 1, ..UsageDelta::default() };
    store.add_usage("t_bench", "2026-11-30", delta).await.unwrap();
    started.elapsed().as_secs_f64() * 1e6
}

fn summary(mut micros: Vec<f64>) -> (f64, f64) {
    micros.sort_by(f64::total_cmp);
    (micros[micros.len() / 2], micros[micros.len() * 9 / 10])
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let dir = std::env::temp_dir().join(format!("liveness-store-cost-{}", std::process::id()));
    let sqlite = Arc::new(SqliteStore::open(&dir).unwrap());
    let memory = Arc::new(MemoryStore::new());
    let challenges = vec![Challenge { kind: ChallengeType::TurnLeft, timeout_seconds: 5.0 }; 3];
    let session = Session::new(uuid::Uuid::new_v4(), challenges, 0, 180_000);
    sqlite.create(&session).await.unwrap();
    memory.create(&session).await.unwrap();

    let (mut on_sqlite, mut in_memory) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        on_sqlite.push(frame(sqlite.as_ref(), session.id).await);
        in_memory.push(frame(memory.as_ref(), session.id).await);
    }
    let (sqlite_p50, sqlite_p90) = summary(on_sqlite);
    let (memory_p50, memory_p90) = summary(in_memory);
    println!("store work per frame, {rounds} frames each, interleaved:");
    println!("  SQLite (WAL, synchronous=NORMAL): p50 {sqlite_p50:.1} us, p90 {sqlite_p90:.1} us");
    println!("  in memory:                        p50 {memory_p50:.1} us, p90 {memory_p90:.1} us");
    println!("  SQLite / memory at p50: {:.1}x", sqlite_p50 / memory_p50);
    let _ = std::fs::remove_dir_all(&dir);
}
