//! AWS Lambda functions: each REST endpoint's function runs the same axum router as the local server (so routing,
//! validation and errors exist once), over the DynamoDB store. Clients, store and (for the frame function only)
//! models are built once per container, before the first invocation.

use std::sync::Arc;

use crate::config::Config;
use crate::service::{LivenessService, SystemClock};
use crate::store::dynamodb::DynamoStore;
use crate::vision::{AnalysisError, Analyzer, CropRegion, FrameAnalyzer, FrameObservation, ModelError};

/// Which models a function needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Models {
    /// The frame function: every model, loaded once per container.
    Load,
    /// Create, get and cancel never analyse a frame and load nothing.
    None,
}

/// The analyser of functions that never analyse: a frame reaching one is a deployment error, not a client's.
struct NoAnalysis;

impl FrameAnalyzer for NoAnalysis {
    fn analyze(&self, _: &[u8], _: Option<&CropRegion>) -> Result<FrameObservation, AnalysisError> {
        Err(AnalysisError::Model(ModelError::Inference {
            model: "none".into(),
            message: "this function does not analyse frames; route frames to the frame function".into(),
        }))
    }

    fn has_antispoof(&self) -> bool {
        false
    }
}

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("LIVENESS_TABLE_NAME must name the sessions table")]
    NoTable,
    #[error(transparent)]
    Models(#[from] ModelError),
}

/// The router a function serves, built from the environment.
pub async fn function_router(models: Models) -> Result<axum::Router, StartError> {
    let config = Config::from_env()?;
    let table = config.table_name.clone().ok_or(StartError::NoTable)?;
    let analyzer: Arc<dyn FrameAnalyzer> = match models {
        Models::Load => {
            let analyzer = Analyzer::load(&config.models_dir, config.analyzer_options())?;
            if !analyzer.has_antispoof() {
                tracing::warn!("PASSIVE ANTI-SPOOFING MODELS NOT INSTALLED: no session will be judged live");
            }
            Arc::new(analyzer)
        }
        Models::None => Arc::new(NoAnalysis),
    };
    let store = Arc::new(DynamoStore::from_env(table).await);
    let service = LivenessService::new(store, analyzer, Arc::new(SystemClock), config.service_settings());
    Ok(crate::http::router(service, config.max_frame_bytes))
}

/// Runs one Lambda function until the runtime stops it. Logs go to CloudWatch through `tracing` (JSON when the
/// function's log format is JSON).
pub async fn run_function(models: Models) -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let router = function_router(models).await?;
    lambda_http::run(router).await
}
