//! The local server: REST API on the embedded store (or DynamoDB when `LIVENESS_TABLE_NAME` is set), models
//! loaded once, clean shutdown on Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::service::{Clock, LivenessService, SystemClock};
use crate::store::dynamodb::DynamoStore;
use crate::store::{MemoryStore, SessionStore};
use crate::vision::model_files::{antispoof_installed, install_antispoof, shared_antispoof_dir};
use crate::vision::Analyzer;

/// How often expired sessions are swept from the embedded store, and how long after expiry they are kept (so a
/// late client reads `expired` rather than "not found").
const SWEEP_EVERY: Duration = Duration::from_secs(30);
const KEEP_EXPIRED_MS: i64 = 5 * 60 * 1000;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Models(#[from] crate::vision::ModelError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the local server until Ctrl-C (or SIGTERM).
pub async fn serve(config: Config) -> Result<(), ServeError> {
    // First run from a checkout with the shared folder beside it: do the documented install step (copy and
    // sha256-check) so `cargo run` alone gives a server that can judge liveness.
    let shared = shared_antispoof_dir();
    if !antispoof_installed(&config.models_dir) && shared.is_dir() {
        match install_antispoof(&config.models_dir, Some(&shared)) {
            Ok(_) => tracing::info!(from = %shared.display(), "anti-spoofing models installed"),
            Err(error) => tracing::warn!(%error, "could not install the anti-spoofing models"),
        }
    }
    let models_dir = config.models_dir.clone();
    let options = config.analyzer_options();
    let analyzer = tokio::task::spawn_blocking(move || Analyzer::load(&models_dir, options))
        .await
        .expect("model loading does not panic")?;
    if crate::vision::FrameAnalyzer::has_antispoof(&analyzer) {
        tracing::info!(models = %config.models_dir.display(), "models loaded, passive anti-spoofing on");
    } else {
        tracing::warn!(
            models = %config.models_dir.display(),
            "PASSIVE ANTI-SPOOFING MODELS NOT INSTALLED: no session will be judged live. \
             Install them with `liveness models install --from DIR`"
        );
    }
    let clock = Arc::new(SystemClock);
    let store: Arc<dyn SessionStore> = match &config.table_name {
        Some(table) => {
            let store = DynamoStore::from_env(table.clone()).await;
            if let Err(error) = store.ensure_table().await {
                tracing::warn!(%table, %error, "could not create or check the DynamoDB table; using it as it is");
            }
            tracing::info!(%table, "sessions in DynamoDB");
            Arc::new(store)
        }
        None => {
            let store = Arc::new(MemoryStore::new());
            let sweeper = (store.clone(), clock.clone());
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(SWEEP_EVERY);
                loop {
                    ticker.tick().await;
                    let swept = sweeper.0.sweep_expired(sweeper.1.now_ms() - KEEP_EXPIRED_MS);
                    if swept > 0 {
                        tracing::debug!(swept, "expired sessions removed");
                    }
                }
            });
            store
        }
    };
    let service = LivenessService::new(store, Arc::new(analyzer), clock, config.service_settings());
    let app = crate::http::router(service, config.max_frame_bytes);
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServeError::Bind { addr: config.bind, source })?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
