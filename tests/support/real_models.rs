//! The real models and the shared test images.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use liveness::vision::model_files::default_models_dir;
use liveness::vision::{Analyzer, AnalyzerOptions};

/// A file of `../shared/testdata`.
pub fn testdata(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata").join(relative)
}

/// The real analyser, loaded once per test binary.
pub fn analyzer() -> Arc<Analyzer> {
    static ANALYZER: OnceLock<Arc<Analyzer>> = OnceLock::new();
    ANALYZER
        .get_or_init(|| Arc::new(Analyzer::load(&default_models_dir(), AnalyzerOptions::default()).unwrap()))
        .clone()
}
