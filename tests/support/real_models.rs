//! The real models and the shared test images.

use std::path::{Path, PathBuf};
use std::process::Command;
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

/// JPEG frames of the shared video (the adult who looks down), cut by ffmpeg with the filter `filter` and the
/// output options `options`, in order. `name` keeps concurrent extractions apart.
pub fn video_jpegs(name: &str, filter: &str, options: &[&str]) -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("liveness-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(testdata("video/pexels8617126_classroom_headpose.mp4"))
        .args(["-vf", filter, "-vsync", "vfr"])
        .args(options)
        .arg(dir.join("f%03d.jpg"))
        .status()
        .expect("ffmpeg is installed (scripts/test.sh installs it)");
    assert!(status.success());
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let frames = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    std::fs::remove_dir_all(&dir).unwrap();
    frames
}
