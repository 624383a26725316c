//! Many frames posted at once to one session: every frame counted exactly once, versions strictly increasing.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use liveness::service::{Caller, CreateOptions, LivenessService, ServiceSettings, SystemClock};
use liveness::store::{MemoryStore, StoreError};
use liveness::vision::fake::{FakeFace, ScriptedAnalyzer};
use liveness::vision::{AnalysisError, FaceSearch, FrameAnalyzer, FrameObservation};
use support::hooked_store::HookedStore;

/// The scripted analyser, made slow enough that concurrent frames all read the same version first.
struct SlowAnalyzer(ScriptedAnalyzer);

impl FrameAnalyzer for SlowAnalyzer {
    fn analyze(&self, bytes: &[u8], search: FaceSearch<'_>) -> Result<FrameObservation, AnalysisError> {
        std::thread::sleep(Duration::from_millis(20));
        self.0.analyze(bytes, search)
    }
    fn has_antispoof(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_frames_are_all_counted_once() {
    const FRAMES: usize = 24;
    // The store counts the conflicts it reports, to show the retry path really ran.
    let conflicts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&conflicts);
    let store = Arc::new(HookedStore::new(MemoryStore::new()).after_each_update(move |result| {
        if result == Err(StoreError::Conflict) {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        result
    }));
    let mut settings = ServiceSettings::default();
    settings.max_write_attempts = FRAMES + 1;
    let service = LivenessService::new(
        store.clone(),
        Arc::new(SlowAnalyzer(ScriptedAnalyzer::default())),
        Arc::new(SystemClock),
        settings,
    );
    let session = service
        .create(CreateOptions { num_challenges: Some(1), timeout_seconds: Some(30.0), ..Default::default() })
        .await
        .unwrap();
    let results = support::race_frames(&service, session.id, &FakeFace::default().frame(), FRAMES).await;
    let mut versions: Vec<u64> =
        results.into_iter().map(|r| r.expect("every concurrent frame is accepted").session.version).collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=FRAMES as u64).collect::<Vec<_>>(), "each frame wrote exactly one new version");
    let stored = service.get(&Caller::Operator, session.id).await.unwrap();
    assert_eq!(stored.frames_received as usize, FRAMES);
    assert_eq!(stored.version as usize, FRAMES);
    assert!(conflicts.load(Ordering::SeqCst) > 0, "the frames really did race");
}
