//! The liveness service: create, submit a frame, read, cancel. Both transports call it; it orchestrates the
//! store, the analyser and the domain and holds no rules of its own beyond parameter bounds.

#[cfg(any(test, feature = "test-support"))]
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use uuid::Uuid;

pub mod metering;
pub mod tenants;

pub use metering::Metering;
pub use tenants::{AuthMode, Caller, Tenants};

use crate::credentials;
use crate::domain::{
    draw_challenges_with_head_movement, ChallengeType, FrameOutcome, FrameReceipt, FrameRejection, Owner, Policy,
    PolicyViolation, ReferenceImage, Session, SessionRules, SessionState,
};
use crate::store::{ImageStore, MemoryStore, SessionStore, StoreError, UsageDay, UsageDelta};
use crate::verdicts::{self, SigningKeys};
use crate::vision::reference::reference_jpeg;
use crate::vision::{
    AnalysedFrame, AnalysisError, DecodeError, DecodeLimits, FaceSearch, FrameAnalyzer, FrameObservation,
};

/// The tenant id usage is metered under while authentication is off (the implicit local tenant).
pub const LOCAL_TENANT: &str = "local";

/// The largest reference image kept, bytes.
pub const MAX_REFERENCE_IMAGE_BYTES: usize = 100_000;

/// The first value of query parameter `name`.
pub fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

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
    /// Sessions the operator (authentication off) may have open at once (created within one TTL).
    pub max_open_sessions: usize,
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
            max_open_sessions: 10_000,
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
    /// No credential, or one that is not valid (or not enough) for the request.
    #[error("{0}")]
    Unauthorized(String),
    #[error("request outside the tenant's policy: {0}")]
    PolicyViolation(#[from] PolicyViolation),
    #[error("no tenant or key {0}")]
    TenantNotFound(String),
    #[error("the tenant's quota is used up: {detail}")]
    QuotaExceeded { detail: String, retry_after_seconds: u64 },
    #[error("too many failed checks for this reference; try again later")]
    TooManyAttempts { retry_after_seconds: u64 },
    #[error("too many open sessions on this server; try again later")]
    TooManySessions { retry_after_seconds: u64 },
    #[error("the session is still running: its verdict is not ready")]
    SessionInProgress,
    #[error("this session's verdict was already redeemed")]
    AlreadyRedeemed,
    #[error("session {0} has no reference image")]
    NoReferenceImage(Uuid),
    #[error("this idempotency key was already used for a different frame of this session")]
    IdempotencyKeyReused,
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
            ServiceError::Unauthorized(_) => "unauthorized",
            ServiceError::PolicyViolation(_) => "policy_violation",
            ServiceError::TenantNotFound(_) => "tenant_not_found",
            ServiceError::QuotaExceeded { .. } => "quota_exceeded",
            ServiceError::TooManyAttempts { .. } => "too_many_attempts",
            ServiceError::TooManySessions { .. } => "too_many_sessions",
            ServiceError::SessionInProgress => "session_in_progress",
            ServiceError::AlreadyRedeemed => "already_redeemed",
            ServiceError::NoReferenceImage(_) => "reference_image_not_found",
            ServiceError::IdempotencyKeyReused => "idempotency_key_reused",
        }
    }

    /// When a client may try again, seconds, for the errors that say so.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            ServiceError::QuotaExceeded { retry_after_seconds, .. }
            | ServiceError::TooManyAttempts { retry_after_seconds }
            | ServiceError::TooManySessions { retry_after_seconds } => Some(*retry_after_seconds),
            ServiceError::StoreUnavailable(_) => Some(1),
            _ => None,
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

/// Makes `after` the next version of the stored `before`, recording when the session ended if this write ends it
/// (the time its verdict is issued at).
fn prepare_write(before: &Session, after: &mut Session, now_ms: i64) {
    after.version = before.version + 1;
    if after.state.is_terminal() && !before.state.is_terminal() && after.ended_at_ms.is_none() {
        after.ended_at_ms = Some(now_ms);
    }
}

/// A store failure on session `id`.
/// A frame that could not be analysed: the client's image, or the server's fault.
fn analysis_error(error: AnalysisError) -> ServiceError {
    match error {
        AnalysisError::Decode(error) => ServiceError::Image(error),
        AnalysisError::Model(error) => ServiceError::Internal(error.to_string()),
    }
}

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

impl Interface {
    /// The `interface` query parameter of a REST create: `rest` (the default) or `websocket`, for a session the
    /// end user then runs over the WebSocket workflow.
    pub fn from_query(pairs: &[(String, String)]) -> Result<Interface, ServiceError> {
        match query_value(pairs, "interface") {
            None | Some("rest") => Ok(Interface::Rest),
            Some("websocket") => Ok(Interface::WebSocket),
            Some(other) => Err(ServiceError::InvalidParameter {
                name: "interface",
                message: format!("{other:?} is neither rest nor websocket"),
            }),
        }
    }
}

/// Longest `reference` or `nonce`.
const MAX_LABEL_CHARS: usize = 128;

/// Options of a new session, as the caller gave them (unvalidated).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateOptions {
    pub num_challenges: Option<i64>,
    pub timeout_seconds: Option<f64>,
    /// Counted frames of the passive phase (WebSocket sessions only).
    pub passive_frames: Option<i64>,
    pub interface: Interface,
    /// The relying party's opaque id of the end user (for lockouts and the verdict's `sub`).
    pub reference: Option<String>,
    /// The relying party's value to bind the verdict to one onboarding attempt.
    pub nonce: Option<String>,
}

impl CreateOptions {
    /// Reads a session's options from query pairs: `num_challenges`, `timeout_seconds`, and for WebSocket sessions
    /// `passive_frames`. Bounds are checked by [`LivenessService::create`]; here only that each is a number.
    pub fn from_query(pairs: &[(String, String)], interface: Interface) -> Result<CreateOptions, ServiceError> {
        fn number<T: std::str::FromStr>(
            pairs: &[(String, String)],
            name: &'static str,
        ) -> Result<Option<T>, ServiceError> {
            let Some(raw) = query_value(pairs, name) else { return Ok(None) };
            raw.trim()
                .parse()
                .map(Some)
                .map_err(|_| ServiceError::InvalidParameter { name, message: format!("{raw:?} is not a valid number") })
        }
        fn label(pairs: &[(String, String)], name: &'static str) -> Result<Option<String>, ServiceError> {
            let Some(raw) = query_value(pairs, name) else { return Ok(None) };
            let printable = raw.chars().all(|c| c.is_ascii_graphic() || c == ' ');
            if raw.is_empty() || raw.chars().count() > MAX_LABEL_CHARS || !printable {
                return Err(ServiceError::InvalidParameter {
                    name,
                    message: format!("must be 1 to {MAX_LABEL_CHARS} printable ASCII characters"),
                });
            }
            Ok(Some(raw.to_owned()))
        }
        Ok(CreateOptions {
            num_challenges: number(pairs, "num_challenges")?,
            timeout_seconds: number(pairs, "timeout_seconds")?,
            passive_frames: number(pairs, "passive_frames")?,
            interface,
            reference: label(pairs, "reference")?,
            nonce: label(pairs, "nonce")?,
        })
    }
}

/// How verdicts are signed, and as whom.
struct Verdicts {
    keys: SigningKeys,
    issuer: String,
}

impl Verdicts {
    /// A key of this process alone, for services built without a key store (tests, tools).
    fn ephemeral() -> Self {
        Verdicts { keys: SigningKeys::generate(), issuer: DEFAULT_ISSUER.to_owned() }
    }
}

/// The issuer verdicts name unless configured (`LIVENESS_ISSUER`).
pub const DEFAULT_ISSUER: &str = "urn:liveness:local";

/// A redeemed verdict: the session as redeemed and its signed token.
#[derive(Debug, Clone)]
pub struct Redeemed {
    pub session: Session,
    pub verdict_token: String,
}

/// A tenant's usage per UTC day.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub tenant_id: String,
    pub days: Vec<UsageDay>,
    /// When the range asked for goes on beyond the days answered: the date to ask from next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_from: Option<String>,
}

/// The operator's open sessions, as creation times within one TTL: with authentication off, a cap on them is what
/// stops one client from growing the store without bound.
struct OpenSessions {
    cap: usize,
    created_ms: std::sync::Mutex<std::collections::VecDeque<i64>>,
}

impl OpenSessions {
    fn new(cap: usize) -> Self {
        Self { cap, created_ms: std::sync::Mutex::new(std::collections::VecDeque::new()) }
    }

    /// Counts one more session created at `now_ms`, or refuses it while `cap` are open.
    fn admit(&self, now_ms: i64, ttl_ms: i64) -> Result<(), ServiceError> {
        // Each change is one push or pop, so a poisoned lock still holds a consistent queue.
        let mut created = self.created_ms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while created.front().is_some_and(|&at| at + ttl_ms <= now_ms) {
            created.pop_front();
        }
        if created.len() >= self.cap {
            let oldest_ends = created.front().map_or(now_ms, |&at| at + ttl_ms);
            return Err(ServiceError::TooManySessions {
                retry_after_seconds: metering::seconds_until(now_ms, oldest_ends),
            });
        }
        created.push_back(now_ms);
        Ok(())
    }
}

/// A new session and its client token (shown once: only its digest is stored).
#[derive(Debug, Clone)]
pub struct Created {
    pub session: Session,
    pub client_token: String,
}

/// A frame's result: the session before and after it, and what the frame did.
#[derive(Debug, Clone)]
pub struct FrameResult {
    /// The stored session the frame was applied to.
    pub before: Session,
    pub session: Session,
    pub outcome: FrameOutcome,
}

/// What a frame got from [`LivenessService::submit_keyed_frame`].
#[derive(Debug, Clone)]
pub enum FrameAnswer {
    /// Applied now: its result and the answer rendered from it (recorded for retries when the frame had a key).
    Applied { result: Box<FrameResult>, answer: String },
    /// A retry of a frame already applied: the answer it got then, and the session as stored now.
    Replayed { answer: String, session: Box<Session> },
}

impl FrameAnswer {
    /// The answer to send.
    pub fn answer(&self) -> &str {
        match self {
            FrameAnswer::Applied { answer, .. } | FrameAnswer::Replayed { answer, .. } => answer,
        }
    }
}

/// A client's idempotency key for one frame: 1 to 64 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest key accepted.
    pub const MAX_LEN: usize = 64;

    /// Checks `raw`, sent as parameter `name`.
    pub fn parse(name: &'static str, raw: &str) -> Result<IdempotencyKey, ServiceError> {
        let valid = (1..=Self::MAX_LEN).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
        if valid {
            Ok(IdempotencyKey(raw.to_owned()))
        } else {
            Err(ServiceError::InvalidParameter {
                name,
                message: format!("must be 1 to {} visible ASCII characters", Self::MAX_LEN),
            })
        }
    }
}

/// The recorded answer when `session` already applied the frame with `key`; an error when the key was used for
/// another frame.
fn replay(
    session: &Session,
    key: Option<&IdempotencyKey>,
    digest: Option<&str>,
    now_ms: i64,
) -> Result<Option<FrameAnswer>, ServiceError> {
    let Some(receipt) = key.and_then(|key| session.receipts.find(&key.0)) else {
        return Ok(None);
    };
    if Some(receipt.frame_digest.as_str()) != digest {
        return Err(ServiceError::IdempotencyKeyReused);
    }
    Ok(Some(FrameAnswer::Replayed { answer: receipt.answer.clone(), session: Box::new(session.at(now_ms)) }))
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
    tenants: Tenants,
    metering: Metering,
    images: Arc<dyn ImageStore>,
    verdicts: Arc<Verdicts>,
    open_sessions: Arc<OpenSessions>,
    /// The operator's policy: the spec's bounds, nothing stricter.
    permissive: Policy,
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
        Self {
            store,
            analyzer,
            tenants: Tenants::off(clock.clone()),
            metering: Metering::new(Arc::new(MemoryStore::new()), clock.clone()),
            images: Arc::new(MemoryStore::new()),
            verdicts: Arc::new(Verdicts::ephemeral()),
            open_sessions: Arc::new(OpenSessions::new(settings.max_open_sessions)),
            clock,
            settings,
            permissive: Policy::permissive(),
            analysis_slots: Arc::new(tokio::sync::Semaphore::new(cores)),
        }
    }

    /// The same service with callers authenticated by `tenants`.
    pub fn with_tenants(mut self, tenants: Tenants) -> Self {
        self.tenants = tenants;
        self
    }

    /// The same service keeping reference images in `images`.
    pub fn with_images(mut self, images: Arc<dyn ImageStore>) -> Self {
        self.images = images;
        self
    }

    /// Whether this frame's face could become the session's reference image: the owner asked for one, and it is
    /// one frontal face, sharper than the one kept. It must also read live ([`Self::keep_reference_image`]).
    fn reference_candidate(&self, session: &Session, observation: &FrameObservation) -> bool {
        let Some(face) = observation.face.as_ref().filter(|_| observation.faces == 1) else { return false };
        let frontal = self.settings.rules.judge.is_frontal(face.pose.yaw, face.pose.pitch);
        let sharper = session.reference_image.as_ref().is_none_or(|kept| face.quality.sharpness > kept.sharpness);
        session.owner.keep_reference_image && frontal && sharper
    }

    /// Stores this frame's face as the session's reference image when it is a candidate
    /// ([`Self::reference_candidate`]) and reads live. Returns what was stored.
    async fn keep_reference_image(
        &self,
        session: &Session,
        observation: &FrameObservation,
        bytes: Vec<u8>,
    ) -> Option<ReferenceImage> {
        let face = observation.face.as_ref().filter(|_| self.reference_candidate(session, observation))?;
        if !face.antispoof_real.is_some_and(|score| self.settings.rules.reads_live(score)) {
            return None;
        }
        let bbox = face.bbox;
        let encoded = tokio::task::spawn_blocking(move || {
            reference_jpeg(&bytes, &bbox, &DecodeLimits::default(), MAX_REFERENCE_IMAGE_BYTES)
        })
        .await;
        let jpeg = match encoded.map_err(|e| e.to_string()).and_then(|jpeg| jpeg.map_err(|e| e.to_string())) {
            Ok(jpeg) => jpeg,
            Err(error) => {
                tracing::warn!(session = %session.id, %error, "no reference image");
                return None;
            }
        };
        let sha256 = credentials::sha256_hex(&jpeg);
        match self.images.put_image(session.id, &sha256, &jpeg, session.expires_at_ms).await {
            Ok(()) => Some(ReferenceImage { sha256, sharpness: face.quality.sharpness }),
            Err(error) => {
                tracing::warn!(session = %session.id, %error, "the reference image could not be stored");
                None
            }
        }
    }

    /// The session's reference image (JPEG) for its relying party: only when its policy keeps one, only until the
    /// session's TTL.
    pub async fn reference_image(&self, caller: &Caller, id: Uuid) -> Result<Vec<u8>, ServiceError> {
        caller.backend("the reference image")?;
        let session = self.get(caller, id).await?;
        let none = || ServiceError::NoReferenceImage(id);
        let kept = session.reference_image.as_ref().filter(|_| session.owner.keep_reference_image).ok_or_else(none)?;
        match self.images.image(id, &kept.sha256).await {
            Ok(jpeg) => Ok(jpeg),
            Err(StoreError::NotFound) => Err(none()),
            Err(other) => Err(other.into()),
        }
    }

    /// The same service metering usage, quotas and lockouts with `metering`.
    pub fn with_metering(mut self, metering: Metering) -> Self {
        self.metering = metering;
        self
    }

    /// The same service signing verdicts with `keys` as `issuer`.
    pub fn with_verdicts(mut self, keys: SigningKeys, issuer: String) -> Self {
        self.verdicts = Arc::new(Verdicts { keys, issuer });
        self
    }

    /// The published verdict keys (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        self.verdicts.keys.jwks()
    }

    /// The signed verdict of an ended session, for its relying party (never for its end user); `None` while the
    /// session runs.
    pub fn verdict_token(&self, session: &Session) -> Option<String> {
        let audience = session.owner.tenant_id.as_deref().unwrap_or(LOCAL_TENANT);
        let claims = verdicts::claims(session, &self.verdicts.issuer, audience, self.clock.now_ms())?;
        Some(self.verdicts.keys.sign(&claims))
    }

    /// Redeems an ended session's verdict, once: the first call wins (a conditional write), every later one is
    /// `already_redeemed`; a running session is `session_in_progress`; past its TTL, `session_expired`.
    pub async fn redeem(&self, caller: &Caller, id: Uuid) -> Result<Redeemed, ServiceError> {
        caller.backend("redeeming a verdict")?;
        for _ in 0..self.settings.max_write_attempts {
            let stored = self.session_for(caller, id).await?;
            let now = self.clock.now_ms();
            let mut session = stored.at(now);
            if session.state == SessionState::Expired || now >= session.expires_at_ms {
                return Err(ServiceError::Rejected(FrameRejection::Expired));
            }
            if !session.state.is_terminal() {
                return Err(ServiceError::SessionInProgress);
            }
            if session.redeemed_at_ms.is_some() {
                return Err(ServiceError::AlreadyRedeemed);
            }
            session.redeemed_at_ms = Some(now);
            prepare_write(&stored, &mut session, now);
            match self.store.update(&session, stored.version).await {
                Ok(()) => {
                    if !stored.state.is_terminal() {
                        self.account(&stored, &session).await;
                    }
                    let verdict_token = self
                        .verdict_token(&session)
                        .ok_or_else(|| ServiceError::Internal("an ended session has no verdict".into()))?;
                    tracing::info!(session = %id, "verdict redeemed");
                    return Ok(Redeemed { session, verdict_token });
                }
                Err(StoreError::Conflict) => continue,
                Err(other) => return Err(store_error(id)(other)),
            }
        }
        Err(ServiceError::StoreUnavailable("too many concurrent writes to one session".into()))
    }

    /// Tenants and authentication.
    pub fn tenants(&self) -> &Tenants {
        &self.tenants
    }

    /// Whether the session store answers (a read of an id that cannot exist).
    pub async fn store_reachable(&self) -> Result<(), String> {
        match self.store.get(Uuid::nil()).await {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(error) => Err(error.to_string()),
        }
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

    /// Creates a session as the operator (no tenant, the permissive policy).
    pub async fn create(&self, options: CreateOptions) -> Result<Session, ServiceError> {
        Ok(self.create_for(&Caller::Operator, options).await?.session)
    }

    /// Creates a session for `caller` under its policy, with challenges drawn from the OS's secure generator. Only
    /// the operator and tenants create sessions; the new session's client token is returned once.
    pub async fn create_for(&self, caller: &Caller, options: CreateOptions) -> Result<Created, ServiceError> {
        let tenant = caller.backend("creating a session")?;
        let (policy, tenant_id) = match tenant {
            None => (self.permissive.clone(), None),
            Some(tenant) => (tenant.policy.clone(), Some(tenant.id.clone())),
        };
        let settings = &self.settings;
        let offered: &[ChallengeType] = match options.interface {
            Interface::Rest => &ChallengeType::ALL,
            Interface::WebSocket => &ChallengeType::WEBSOCKET,
        };
        let pool = policy.pool(offered);
        let max_challenges = settings.max_challenges.min(pool.len()) as i64;
        let default_count = policy.default_challenges(settings.default_challenges as u32);
        let count = options.num_challenges.unwrap_or(i64::from(default_count));
        if !(1..=max_challenges).contains(&count) {
            return Err(ServiceError::InvalidParameter {
                name: "num_challenges",
                message: format!("must be between 1 and {max_challenges}, got {count}"),
            });
        }
        policy.check_challenges(count as u32)?;
        // Checked whatever the interface, so a bad value is never silently ignored; REST sessions have no passive
        // phase.
        let asked_passive_frames = options.passive_frames.unwrap_or(i64::from(settings.default_passive_frames));
        if !(0..=i64::from(settings.max_passive_frames)).contains(&asked_passive_frames) {
            return Err(ServiceError::InvalidParameter {
                name: "passive_frames",
                message: format!("must be between 0 and {}, got {asked_passive_frames}", settings.max_passive_frames),
            });
        }
        let passive_frames = match options.interface {
            Interface::Rest => 0,
            Interface::WebSocket => asked_passive_frames,
        };
        if options.interface == Interface::WebSocket {
            policy.check_passive_frames(passive_frames as u32)?;
        }
        let timeout = options.timeout_seconds.unwrap_or(policy.default_timeout(settings.default_timeout_seconds));
        let (low, high) = settings.timeout_range_seconds;
        if !timeout.is_finite() || !(low..=high).contains(&timeout) {
            return Err(ServiceError::InvalidParameter {
                name: "timeout_seconds",
                message: format!("must be between {low} and {high}, got {timeout}"),
            });
        }
        policy.check_timeout(timeout)?;
        let mut secure = rand::TryRngCore::unwrap_err(rand::rngs::OsRng);
        // Always a head movement, whatever a stored policy says: expression stills pass expressions alone.
        let challenges = draw_challenges_with_head_movement(&mut secure, &pool, count as usize, timeout);
        match tenant {
            Some(tenant) => {
                if let Some(reference) = &options.reference {
                    self.metering.check_lockout(&tenant.id, reference).await?;
                }
                self.metering.check_quota(&tenant.id, &policy.quota).await?;
            }
            None => self.open_sessions.admit(self.clock.now_ms(), settings.session_ttl_ms)?,
        }
        let (client_token, token_digest) = credentials::new_client_token();
        let mut session = Session::new(Uuid::new_v4(), challenges, self.clock.now_ms(), settings.session_ttl_ms)
            .with_passive_phase(passive_frames as u32);
        session.owner = Owner {
            tenant_id,
            client_token_digest: Some(token_digest),
            reference: options.reference,
            nonce: options.nonce,
            client_scores: policy.client_scores,
            lockout: Some(policy.lockout),
            keep_reference_image: policy.keep_reference_image,
        };
        self.store.create(&session).await.map_err(store_error(session.id))?;
        let tenant = session.owner.tenant_id.as_deref().unwrap_or(LOCAL_TENANT);
        self.metering.record(tenant, UsageDelta { sessions_created: 1, ..UsageDelta::default() }).await;
        tracing::info!(session = %session.id, tenant = ?session.owner.tenant_id, challenges = count, "session created");
        Ok(Created { session, client_token })
    }

    /// The stored session `id` if `caller` may use it: the operator any, a tenant its own, a client token only its
    /// own session. Any other is reported as not found, so ids cannot be probed.
    async fn session_for(&self, caller: &Caller, id: Uuid) -> Result<Session, ServiceError> {
        let session = self.store.get(id).await.map_err(store_error(id))?;
        let owner = &session.owner;
        let allowed = match caller {
            Caller::Operator => true,
            Caller::Tenant(tenant) => owner.tenant_id.as_deref() == Some(tenant.id.as_str()),
            Caller::Client(token) => {
                owner.client_token_digest.as_deref().is_some_and(|digest| credentials::verify(token, digest))
            }
        };
        if allowed {
            Ok(session)
        } else {
            Err(ServiceError::NotFound(id))
        }
    }

    /// The session as it stands now (timeouts and expiry applied).
    pub async fn get(&self, caller: &Caller, id: Uuid) -> Result<Session, ServiceError> {
        let stored = self.session_for(caller, id).await?;
        let now = self.clock.now_ms();
        // Past its TTL nothing of a session is served, whatever the store's own expiry has done yet.
        if now >= stored.expires_at_ms {
            return Err(ServiceError::Rejected(FrameRejection::Expired));
        }
        // A read that finds the session ended by time writes that end, so it is metered (and judged) once.
        match self.write_time_change(&stored, now).await {
            Ok(Some(written)) => Ok(written),
            Ok(None) => Ok(stored.at(now)),
            Err(error) => {
                tracing::warn!(session = %id, %error, "an ended session could not be written");
                Ok(stored.at(now))
            }
        }
    }

    /// Writes what time alone did to the stored session `before` (a challenge timed out, the session expired) and
    /// meters it: the session as written, or `None` when time changed nothing or another writer got there first.
    async fn write_time_change(&self, before: &Session, now_ms: i64) -> Result<Option<Session>, StoreError> {
        let mut session = before.at(now_ms);
        if session == *before {
            return Ok(None);
        }
        prepare_write(before, &mut session, now_ms);
        match self.store.update(&session, before.version).await {
            Ok(()) => {
                self.account(before, &session).await;
                Ok(Some(session))
            }
            Err(StoreError::Conflict) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Writes what time alone did to a session (a challenge timed out, the session expired), so that it is
    /// announced once: `None` when there was nothing to write or another writer got there first.
    pub async fn settle(&self, id: Uuid) -> Result<Option<Settled>, ServiceError> {
        let before = self.store.get(id).await.map_err(store_error(id))?;
        let written = self.write_time_change(&before, self.clock.now_ms()).await.map_err(store_error(id))?;
        Ok(written.map(|session| Settled { before, session }))
    }

    /// Meters a change this service wrote, once: frames, the end, and a failed check against the subject.
    async fn account(&self, before: &Session, after: &Session) {
        let tenant = after.owner.tenant_id.as_deref().unwrap_or(LOCAL_TENANT);
        self.metering.record(tenant, metering::usage_of_change(before, after)).await;
        if !metering::is_failed_attempt(before, after) {
            return;
        }
        if let (Some(tenant), Some(reference), Some(lockout)) =
            (&after.owner.tenant_id, &after.owner.reference, &after.owner.lockout)
        {
            self.metering.record_failure(tenant, reference, lockout).await;
        }
    }

    /// The caller's usage per UTC day (see [`Metering::usage`]). The operator (authentication off) reads the
    /// implicit local tenant's.
    pub async fn usage(&self, caller: &Caller, from: &str, to: &str) -> Result<Usage, ServiceError> {
        let tenant_id = caller.backend("usage")?.map_or_else(|| LOCAL_TENANT.to_owned(), |tenant| tenant.id.clone());
        let (days, next_from) = self.metering.usage(&tenant_id, from, to).await?;
        Ok(Usage { tenant_id, days, next_from })
    }

    /// Cancels (deletes) a session.
    pub async fn cancel(&self, caller: &Caller, id: Uuid) -> Result<(), ServiceError> {
        let session = self.session_for(caller, id).await?.at(self.clock.now_ms());
        self.store.delete(id).await.map_err(store_error(id))?;
        if session.reference_image.is_some() {
            if let Err(error) = self.images.delete_images(id).await {
                tracing::warn!(session = %id, %error, "a cancelled session's image is left to expire");
            }
        }
        // A running check given up after frames is a failed attempt: deleting it never erases that.
        if !session.state.is_terminal() && session.frames_received > 0 {
            let mut abandoned = session.clone();
            abandoned.state = SessionState::Failed;
            abandoned.is_live = Some(false);
            self.account(&session, &abandoned).await;
        }
        tracing::info!(session = %id, "session cancelled");
        Ok(())
    }

    /// Adds the passive anti-spoofing score to a frame analysed without it, on an analysis slot.
    async fn score(&self, mut analysed: AnalysedFrame) -> Result<AnalysedFrame, ServiceError> {
        let analyzer = Arc::clone(&self.analyzer);
        let _slot = self.analysis_slots.acquire().await.map_err(|e| ServiceError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || analysed.score(analyzer.as_ref()).map(|()| analysed))
            .await
            .map_err(|e| ServiceError::Internal(format!("scoring task failed: {e}")))?
            .map_err(analysis_error)
    }

    /// Analyses one frame and applies it to the session (see [`LivenessService::submit_keyed_frame`]).
    pub async fn submit_frame(&self, caller: &Caller, id: Uuid, bytes: Vec<u8>) -> Result<FrameResult, ServiceError> {
        match self.submit_keyed_frame(caller, id, bytes, None, &|_| String::new()).await? {
            FrameAnswer::Applied { result, .. } => Ok(*result),
            FrameAnswer::Replayed { .. } => Err(ServiceError::Internal("a frame without a key was replayed".into())),
        }
    }

    /// Analyses one frame and applies it to the session; `render` turns the result into the transport's answer.
    /// The frame's time is its arrival. A conflicting write re-reads the session and re-applies the same
    /// observation (never re-analysed), so concurrent frames all count. A rejected frame changes nothing.
    ///
    /// With a `key`, the answer is recorded in the same write that applies the frame; a retry with that key gets
    /// the recorded answer back and is never counted again, whether the first attempt's answer was lost or it
    /// timed out after its write reached the store.
    pub async fn submit_keyed_frame(
        &self,
        caller: &Caller,
        id: Uuid,
        bytes: Vec<u8>,
        key: Option<&IdempotencyKey>,
        render: &(dyn Fn(&FrameResult) -> String + Sync),
    ) -> Result<FrameAnswer, ServiceError> {
        let now = self.clock.now_ms();
        let digest = key.map(|_| credentials::sha256_hex(&bytes)[..32].to_owned());
        // Checked before the costly analysis, so a stranger's frames cost nothing.
        let mut current = self.session_for(caller, id).await?;
        if let Some(answer) = replay(&current, key, digest.as_deref(), now)? {
            return Ok(answer);
        }
        // Refuse before the costly analysis what would be refused after it.
        current.accepts_frame_at(now, &self.settings.rules)?;

        // Every few frames the detector runs as well, so a second face coming into view is seen.
        let count_faces = current.frames_received % self.settings.detect_every.max(1) == 0;
        let region = current.last_region;
        let analyzer = Arc::clone(&self.analyzer);
        let slot = self.analysis_slots.acquire().await.map_err(|e| ServiceError::Internal(e.to_string()))?;
        let (analysed, bytes) = tokio::task::spawn_blocking(move || {
            let search = match &region {
                None => FaceSearch::Detect,
                Some(region) if count_faces => FaceSearch::TrackAndCount(region),
                Some(region) => FaceSearch::Track(region),
            };
            (analyzer.analyze_unscored(&bytes, search), bytes)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("analysis task failed: {e}")))?;
        drop(slot);
        let mut analysed = analysed.map_err(analysis_error)?;
        if self.reference_candidate(&current, &analysed.observation) {
            analysed = self.score(analysed).await?;
        }
        let reference = self.keep_reference_image(&current, &analysed.observation, bytes).await;

        for _ in 0..self.settings.max_write_attempts {
            // Asked again after a conflict: the session another frame left may want this one scored.
            if analysed.unscored.is_some() && current.wants_score(&analysed.observation, now, &self.settings.rules) {
                analysed = self.score(analysed).await?;
            }
            let observation = &analysed.observation;
            if let Some(face) = &observation.face {
                let t = &observation.timings_ms;
                tracing::debug!(session = %id, yaw = face.pose.yaw, pitch = face.pose.pitch,
                    antispoof = ?face.antispoof_real, ms = t.total, decode_ms = t.decode, detect_ms = t.detect,
                    mesh_ms = t.mesh, expressions_ms = t.expressions, antispoof_ms = t.antispoof, "frame analysed");
            }
            let (mut next, outcome) = current.apply_frame(observation, now, &self.settings.rules)?;
            prepare_write(&current, &mut next, now);
            if let Some(kept) = &reference {
                if next.reference_image.as_ref().is_none_or(|old| kept.sharpness > old.sharpness) {
                    next.reference_image = Some(kept.clone());
                }
            }
            let mut result = FrameResult { before: current, session: next, outcome };
            let answer = render(&result);
            if let (Some(key), Some(digest)) = (key, &digest) {
                let receipt = FrameReceipt { key: key.0.clone(), frame_digest: digest.clone(), answer: answer.clone() };
                result.session.receipts.record(receipt);
            }
            match self.store.update(&result.session, result.before.version).await {
                Ok(()) => {
                    let next = &result.session;
                    if next.state.is_terminal() {
                        tracing::info!(session = %id, state = next.state.as_str(), reason = ?next.end_reason,
                            passive_mean = ?next.passive.mean(), "session ended");
                    }
                    self.account(&result.before, next).await;
                    return Ok(FrameAnswer::Applied { result: Box::new(result), answer });
                }
                Err(StoreError::Conflict) => {
                    current = self.store.get(id).await.map_err(store_error(id))?;
                    // The other writer may have been this frame's own earlier attempt.
                    if let Some(answer) = replay(&current, key, digest.as_deref(), now)? {
                        return Ok(answer);
                    }
                }
                Err(other) => return Err(store_error(id)(other)),
            }
        }
        Err(ServiceError::StoreUnavailable("too many concurrent writes to one session".into()))
    }
}
