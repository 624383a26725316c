//! The liveness service: create, submit a frame, read, cancel. Both transports call it; it orchestrates the
//! store, the analyser and the domain and holds no rules of its own beyond parameter bounds.

use std::sync::Arc;
#[cfg(any(test, feature = "test-support"))]
use std::sync::atomic::{AtomicI64, Ordering};

use uuid::Uuid;

use crate::domain::{draw_challenges, ChallengeType, FrameOutcome, FrameRejection, Session, SessionRules};
use crate::store::{SessionStore, StoreError};
use crate::vision::{AnalysisError, DecodeError, FaceSearch, FrameAnalyzer};

/// Server time in epoch milliseconds; injected so tests can move it.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        now.as_millis() as i64
    }
}

/// A clock that moves only when told to: a test double, never in a release binary.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

#[cfg(any(test, feature = "test-support"))]
impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }

    /// Moves the clock forward.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Service settings with the spec's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceSettings {
    pub default_challenges: usize,
    pub max_challenges: usize,
    pub default_timeout_seconds: f64,
    pub timeout_range_seconds: (f64, f64),
    /// Counted frames of the WebSocket workflow's passive phase, unless the client asks otherwise.
    pub default_passive_frames: u32,
    /// The most passive frames a client may ask for.
    pub max_passive_frames: u32,
    /// How long a session lives, milliseconds.
    pub session_ttl_ms: i64,
    /// Run the face detector on every n-th frame of a session; in between, the last face region is reused.
    pub detect_every: u32,
    /// Attempts at a conditional write before giving up on a hot session.
    pub max_write_attempts: usize,
    pub rules: SessionRules,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            default_challenges: 3,
            max_challenges: 7,
            default_timeout_seconds: 5.0,
            timeout_range_seconds: (1.0, 60.0),
            default_passive_frames: 5,
            max_passive_frames: 30,
            session_ttl_ms: 180_000,
            detect_every: 3,
            max_write_attempts: 16,
            rules: SessionRules::default(),
        }
    }
}

/// Everything a caller can get wrong or run into, mapped to HTTP in one place (`http::problem`).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{name}: {message}")]
    InvalidParameter { name: &'static str, message: String },
    #[error("no session with id {0}")]
    NotFound(Uuid),
    /// The session refused the frame (ended, expired, or full).
    #[error(transparent)]
    Rejected(#[from] FrameRejection),
    #[error(transparent)]
    Image(#[from] DecodeError),
    #[error("the session store is unavailable: {0}")]
    StoreUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// The stable, machine-readable code of this error, the same on every transport (REST problem `code`,
    /// WebSocket `error` message `code`).
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::InvalidParameter { .. } => "invalid_parameter",
            ServiceError::NotFound(_) => "session_not_found",
            ServiceError::Rejected(FrameRejection::Ended(_)) => "session_ended",
            ServiceError::Rejected(FrameRejection::Expired) => "session_expired",
            ServiceError::Rejected(FrameRejection::TooManyFrames(_)) => "too_many_frames",
            ServiceError::Image(error) => error.code(),
            ServiceError::StoreUnavailable(_) => "store_unavailable",
            ServiceError::Internal(_) => "internal_error",
        }
    }

    /// What a client is told: the error's own words, except for internal errors, which are logged here and
    /// reported without their detail.
    pub fn client_message(&self) -> String {
        match self {
            ServiceError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "an internal error occurred".to_owned()
            }
            other => other.to_string(),
        }
    }
}

/// A store failure on session `id`.
fn store_error(id: Uuid) -> impl Fn(StoreError) -> ServiceError {
    move |error| match error {
        StoreError::NotFound => ServiceError::NotFound(id),
        other => ServiceError::from(other),
    }
}

impl From<StoreError> for ServiceError {
    /// A store failure as the service reports it (a missing item is reported by [`store_error`], which knows
    /// which session was missing).
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(message) => ServiceError::StoreUnavailable(message),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

/// Which interface a session serves: it decides the challenge types drawn and whether a passive phase comes first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Interface {
    /// The REST API: any of the seven challenge types, judged from the first frame.
    #[default]
    Rest,
    /// The WebSocket workflow: the six actions its spec names, after a passive phase.
    WebSocket,
}

/// Options of a new session, as the caller gave them (unvalidated).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CreateOptions {
    pub num_challenges: Option<i64>,
    pub timeout_seconds: Option<f64>,
    /// Counted frames of the passive phase (WebSocket sessions only).
    pub passive_frames: Option<i64>,
    pub interface: Interface,
}

impl CreateOptions {
    /// Reads a session's options from query pairs: `num_challenges`, `timeout_seconds`, and for WebSocket sessions
    /// `passive_frames`. Bounds are checked by [`LivenessService::create`]; here only that each is a number.
    pub fn from_query(pairs: &[(String, String)], interface: Interface) -> Result<CreateOptions, ServiceError> {
        fn number<T: std::str::FromStr>(
            pairs: &[(String, String)],
            name: &'static str,
        ) -> Result<Option<T>, ServiceError> {
            let Some((_, raw)) = pairs.iter().find(|(key, _)| key == name) else { return Ok(None) };
            raw.trim()
                .parse()
                .map(Some)
                .map_err(|_| ServiceError::InvalidParameter { name, message: format!("{raw:?} is not a valid number") })
        }
        Ok(CreateOptions {
            num_challenges: number(pairs, "num_challenges")?,
            timeout_seconds: number(pairs, "timeout_seconds")?,
            passive_frames: match interface {
                Interface::Rest => None,
                Interface::WebSocket => number(pairs, "passive_frames")?,
            },
            interface,
        })
    }
}

/// A frame's result: the session before and after it, and what the frame did.
#[derive(Debug, Clone)]
pub struct FrameResult {
    /// The stored session the frame was applied to.
    pub before: Session,
    pub session: Session,
    pub outcome: FrameOutcome,
}

/// A change of a session that time alone made (a challenge timed out, the session expired), once written.
#[derive(Debug, Clone)]
pub struct Settled {
    pub before: Session,
    pub session: Session,
}

/// The service. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct LivenessService {
    store: Arc<dyn SessionStore>,
    analyzer: Arc<dyn FrameAnalyzer>,
    clock: Arc<dyn Clock>,
    settings: ServiceSettings,
    /// Analyses run at once: one per core. More would only queue inside the CPU, and each holds a decoded
    /// frame (up to 64 MB at 4096x4096), so a flood of requests waits here instead of exhausting memory.
    analysis_slots: Arc<tokio::sync::Semaphore>,
}

impl LivenessService {
    pub fn new(
        store: Arc<dyn SessionStore>,
        analyzer: Arc<dyn FrameAnalyzer>,
        clock: Arc<dyn Clock>,
        settings: ServiceSettings,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { store, analyzer, clock, settings, analysis_slots: Arc::new(tokio::sync::Semaphore::new(cores)) }
    }

    /// Whether passive anti-spoofing is available.
    pub fn has_antispoof(&self) -> bool {
        self.analyzer.has_antispoof()
    }

    /// The service's time, epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The settings in force.
    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// Creates a session with challenges drawn from the OS's secure generator.
    pub async fn create(&self, options: CreateOptions) -> Result<Session, ServiceError> {
        let settings = &self.settings;
        let pool: &[ChallengeType] = match options.interface {
            Interface::Rest => &ChallengeType::ALL,
            Interface::WebSocket => &ChallengeType::WEBSOCKET,
        };
        let max_challenges = settings.max_challenges.min(pool.len()) as i64;
        let count = options.num_challenges.unwrap_or(settings.default_challenges as i64);
        if !(1..=max_challenges).contains(&count) {
            return Err(ServiceError::InvalidParameter {
                name: "num_challenges",
                message: format!("must be between 1 and {max_challenges}, got {count}"),
            });
        }
        let passive_frames = match options.interface {
            Interface::Rest => 0,
            Interface::WebSocket => options.passive_frames.unwrap_or(i64::from(settings.default_passive_frames)),
        };
        if !(0..=i64::from(settings.max_passive_frames)).contains(&passive_frames) {
            return Err(ServiceError::InvalidParameter {
                name: "passive_frames",
                message: format!("must be between 0 and {}, got {passive_frames}", settings.max_passive_frames),
            });
        }
        let timeout = options.timeout_seconds.unwrap_or(settings.default_timeout_seconds);
        let (low, high) = settings.timeout_range_seconds;
        if !timeout.is_finite() || !(low..=high).contains(&timeout) {
            return Err(ServiceError::InvalidParameter {
                name: "timeout_seconds",
                message: format!("must be between {low} and {high}, got {timeout}"),
            });
        }
        let mut secure = rand::TryRngCore::unwrap_err(rand::rngs::OsRng);
        let challenges = draw_challenges(&mut secure, pool, count as usize, timeout);
        let session = Session::new(Uuid::new_v4(), challenges, self.clock.now_ms(), settings.session_ttl_ms)
            .with_passive_phase(passive_frames as u32);
        self.store.create(&session).await.map_err(store_error(session.id))?;
        tracing::info!(session = %session.id, challenges = count, "session created");
        Ok(session)
    }

    /// The session as it stands now (timeouts and expiry applied).
    pub async fn get(&self, id: Uuid) -> Result<Session, ServiceError> {
        let session = self.store.get(id).await.map_err(store_error(id))?;
        Ok(session.at(self.clock.now_ms()))
    }

    /// Writes what time alone did to a session (a challenge timed out, the session expired), so that it is
    /// announced once: `None` when there was nothing to write or another writer got there first.
    pub async fn settle(&self, id: Uuid) -> Result<Option<Settled>, ServiceError> {
        let before = self.store.get(id).await.map_err(store_error(id))?;
        let mut session = before.at(self.clock.now_ms());
        if session == before {
            return Ok(None);
        }
        session.version = before.version + 1;
        match self.store.update(&session, before.version).await {
            Ok(()) => Ok(Some(Settled { before, session })),
            Err(StoreError::Conflict) => Ok(None),
            Err(other) => Err(store_error(id)(other)),
        }
    }

    /// Cancels (deletes) a session.
    pub async fn cancel(&self, id: Uuid) -> Result<(), ServiceError> {
        self.store.delete(id).await.map_err(store_error(id))?;
        tracing::info!(session = %id, "session cancelled");
        Ok(())
    }

    /// Analyses one frame and applies it to the session. The frame's time is its arrival. A conflicting write
    /// re-reads the session and re-applies the same observation (never re-analysed), so concurrent frames all
    /// count. A rejected frame changes nothing.
    pub async fn submit_frame(&self, id: Uuid, bytes: Vec<u8>) -> Result<FrameResult, ServiceError> {
        let now = self.clock.now_ms();
        let mut current = self.store.get(id).await.map_err(store_error(id))?;
        // Refuse before the costly analysis what would be refused after it.
        current.accepts_frame_at(now, &self.settings.rules)?;

        // Every few frames the detector runs as well, so a second face coming into view is seen.
        let count_faces = current.frames_received % self.settings.detect_every.max(1) == 0;
        let region = current.last_region;
        let analyzer = Arc::clone(&self.analyzer);
        let slot = self.analysis_slots.acquire().await.map_err(|e| ServiceError::Internal(e.to_string()))?;
        let observation = tokio::task::spawn_blocking(move || {
            let search = match &region {
                None => FaceSearch::Detect,
                Some(region) if count_faces => FaceSearch::TrackAndCount(region),
                Some(region) => FaceSearch::Track(region),
            };
            analyzer.analyze(&bytes, search)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("analysis task failed: {e}")))?
        .map_err(|e| match e {
            AnalysisError::Decode(error) => ServiceError::Image(error),
            AnalysisError::Model(error) => ServiceError::Internal(error.to_string()),
        })?;
        drop(slot);
        if let Some(face) = &observation.face {
            tracing::debug!(session = %id, yaw = face.pose.yaw, pitch = face.pose.pitch,
                antispoof = ?face.antispoof_real, ms = observation.timings_ms.total, "frame analysed");
        }

        for _ in 0..self.settings.max_write_attempts {
            let (mut next, outcome) = current.apply_frame(&observation, now, &self.settings.rules)?;
            next.version = current.version + 1;
            match self.store.update(&next, current.version).await {
                Ok(()) => {
                    if next.state.is_terminal() {
                        tracing::info!(session = %id, state = next.state.as_str(), reason = ?next.end_reason,
                            passive_mean = ?next.passive.mean(), "session ended");
                    }
                    return Ok(FrameResult { before: current, session: next, outcome });
                }
                Err(StoreError::Conflict) => {
                    current = self.store.get(id).await.map_err(store_error(id))?;
                }
                Err(other) => return Err(store_error(id)(other)),
            }
        }
        Err(ServiceError::StoreUnavailable("too many concurrent writes to one session".into()))
    }
}
