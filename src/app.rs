//! The composition root: the one place that turns a [`Config`] into a running service (store, analyser, clock,
//! settings) for every binary: the local server, each Lambda function and the CLI. A new store or a new setting is
//! wired here and nowhere else.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::service::{AuthMode, Clock, LivenessService, Metering, SystemClock, Tenants};
use crate::store::dynamodb::DynamoStore;
use crate::store::{ConnectionStore, ImageStore, MeteringStore, SessionStore, SqliteStore, StoreError, TenantStore};
use crate::verdicts::{KeyError, SigningKeys};
use crate::vision::model_files::{antispoof_installed, install_antispoof, shared_antispoof_dir, ANTISPOOF_MISSING};
use crate::vision::{
    AnalysisError, Analyzer, AnalyzerOptions, FaceSearch, FrameAnalyzer, FrameObservation, ModelError,
};

/// How often expired sessions are swept from the embedded store, and how long after expiry they are kept (so a
/// late client reads `expired` rather than "not found").
const SWEEP_EVERY: Duration = Duration::from_secs(30);
const KEEP_EXPIRED_MS: i64 = 5 * 60 * 1000;

/// What the operator's CLI works with: tenants and their usage, on one store.
pub struct Operator {
    pub tenants: Tenants,
    pub metering: Metering,
}

/// Where the service runs, which decides its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// The local server: the embedded store, or DynamoDB (its table created if missing) when
    /// `LIVENESS_TABLE_NAME` is set.
    Local,
    /// An AWS Lambda function: always the DynamoDB table the template created.
    Lambda,
}

/// Whether a binary analyses frames, and so needs the models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Models {
    /// Load every model once, before the first request.
    Load,
    /// Load nothing: the binary creates, reads or cancels sessions but never analyses a frame.
    Skip,
}

/// A store that keeps sessions, WebSocket connection bindings, tenants and their usage.
pub trait Store: SessionStore + ConnectionStore + TenantStore + MeteringStore + ImageStore {}

impl<T: SessionStore + ConnectionStore + TenantStore + MeteringStore + ImageStore> Store for T {}

/// Why the service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("LIVENESS_TABLE_NAME must name the sessions table")]
    NoTable,
    #[error(transparent)]
    Models(#[from] ModelError),
    #[error("cannot open the embedded store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// Everything a binary runs on, built once per process (once per Lambda container).
pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub service: LivenessService,
}

impl App {
    /// Builds the store, the analyser (if `models` says so) and the service that `config` describes.
    pub async fn build(config: Config, deployment: Deployment, models: Models) -> Result<App, StartError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let analyzer: Arc<dyn FrameAnalyzer> = match models {
            Models::Load => {
                crate::vision::memory::return_large_buffers_to_the_system();
                let config = config.clone();
                let load = move || {
                    if deployment == Deployment::Local {
                        install_shared_antispoof(&config);
                    }
                    load_analyzer(&config, config.analyzer_options())
                };
                Arc::new(tokio::task::spawn_blocking(load).await.expect("model loading does not panic")?)
            }
            Models::Skip => Arc::new(NoAnalysis),
        };
        let store = open_store(&config, deployment, Some(clock.clone())).await?;
        let auth = match deployment {
            Deployment::Local => config.local_auth()?,
            // `off` only when said explicitly: local runs of the functions and their tests.
            Deployment::Lambda => config.auth.unwrap_or(AuthMode::ApiKeys),
        };
        if auth == AuthMode::Off {
            tracing::warn!("AUTHENTICATION IS OFF: anyone who can reach this service can use it");
        }
        let tenants = Tenants::new(store.clone(), auth, clock.clone());
        let metering = Metering::new(store.clone(), clock.clone());
        let keys = match &config.signing_key_secret {
            // Read once per process (per Lambda container); never from the template or a plain variable.
            Some(secret) => {
                SigningKeys::from_secret_text(&crate::aws::secret_string(secret).await.map_err(KeyError::Malformed)?)?
            }
            None => SigningKeys::load_or_create(&config.data_dir, clock.now_ms())?,
        };
        tracing::info!(kid = keys.current_kid(), issuer = %config.issuer, "verdicts signed");
        let service = LivenessService::new(store.clone(), analyzer, clock, config.service_settings())
            .with_tenants(tenants)
            .with_metering(metering)
            .with_images(store.clone())
            .with_verdicts(keys, config.issuer.clone());
        Ok(App { config, store, service })
    }

    /// The operator's tools over the store `config` names, for the CLI (the local server may be running on the
    /// same store: the embedded one allows a second process).
    pub async fn operator(config: &Config) -> Result<Operator, StartError> {
        let store = open_store(config, Deployment::Local, None).await?;
        let clock = Arc::new(SystemClock);
        Ok(Operator {
            tenants: Tenants::new(store.clone(), AuthMode::ApiKeys, clock.clone()),
            metering: Metering::new(store, clock),
        })
    }

    /// The REST API and WebSocket router over this app's service.
    pub fn router(&self) -> axum::Router {
        let limits = crate::http::HttpLimits { body_read: self.config.body_read, socket: self.config.socket_limits };
        crate::http::router_with(self.service.clone(), self.config.max_frame_bytes, limits)
    }
}

/// The store `config` names for `deployment`; with a `sweep_clock`, the embedded store's expired rows are swept.
async fn open_store(
    config: &Config,
    deployment: Deployment,
    sweep_clock: Option<Arc<dyn Clock>>,
) -> Result<Arc<dyn Store>, StartError> {
    match (&config.table_name, deployment) {
        (Some(table), Deployment::Lambda) => Ok(Arc::new(DynamoStore::from_env(table.clone()).await)),
        (None, Deployment::Lambda) => Err(StartError::NoTable),
        (Some(table), Deployment::Local) => {
            let store = DynamoStore::from_env(table.clone()).await;
            if let Err(error) = store.ensure_table().await {
                tracing::warn!(%table, %error, "could not create or check the DynamoDB table; using it as it is");
            }
            tracing::info!(%table, "sessions in DynamoDB");
            Ok(Arc::new(store))
        }
        (None, Deployment::Local) => {
            let store = SqliteStore::open(&config.data_dir)?;
            tracing::info!(database = %store.path().display(), "sessions in the embedded store");
            let (sweeper, Some(clock)) = (store.clone(), sweep_clock) else { return Ok(Arc::new(store)) };
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(SWEEP_EVERY);
                loop {
                    ticker.tick().await;
                    match sweeper.sweep_expired(clock.now_ms() - KEEP_EXPIRED_MS).await {
                        Ok(0) => {}
                        Ok(swept) => tracing::debug!(swept, "expired sessions removed"),
                        Err(error) => tracing::warn!(%error, "could not sweep expired sessions"),
                    }
                }
            });
            Ok(Arc::new(store))
        }
    }
}

/// First run from a checkout with the shared folder beside it: the documented install step (copy and
/// sha256-check), so `cargo run` alone gives a server that can judge liveness.
fn install_shared_antispoof(config: &Config) {
    let shared = shared_antispoof_dir();
    if !antispoof_installed(&config.models_dir) && shared.is_dir() {
        match install_antispoof(&config.models_dir, Some(&shared)) {
            Ok(_) => tracing::info!(from = %shared.display(), "anti-spoofing models installed"),
            Err(error) => tracing::warn!(%error, "could not install the anti-spoofing models"),
        }
    }
}

/// Loads the models from `config.models_dir` with `options`; missing anti-spoofing models are said loudly, once
/// (every session then ends `ANTISPOOF_UNAVAILABLE`, never live).
pub fn load_analyzer(config: &Config, options: AnalyzerOptions) -> Result<Analyzer, ModelError> {
    let analyzer = Analyzer::load(&config.models_dir, options)?;
    if analyzer.has_antispoof() {
        tracing::info!(models = %config.models_dir.display(), "models loaded, passive anti-spoofing on");
    } else {
        tracing::warn!(models = %config.models_dir.display(), "{ANTISPOOF_MISSING}");
    }
    Ok(analyzer)
}

/// The analyser of binaries that never analyse: a frame reaching one is a deployment error, not a client's.
struct NoAnalysis;

impl FrameAnalyzer for NoAnalysis {
    fn analyze(&self, _: &[u8], _: FaceSearch<'_>) -> Result<FrameObservation, AnalysisError> {
        Err(AnalysisError::Model(ModelError::Inference {
            model: "none".into(),
            message: "this function does not analyse frames; route frames to the frame function".into(),
        }))
    }

    fn has_antispoof(&self) -> bool {
        false
    }
}
