//! The `liveness` command: run the local server (the default), analyse images, install models.

use std::path::PathBuf;
use std::process::ExitCode;

use liveness::vision::model_files::{default_models_dir, install_antispoof};
use liveness::vision::{AnalysisError, Analyzer, AnalyzerOptions, FaceSearch, FrameAnalyzer};
use serde_json::{json, Value};

const USAGE: &str = "usage:
  liveness [serve]                            run the local server (REST API, embedded store); settings from
                                              LIVENESS_* environment variables (see the README)
  liveness analyze [--landmarks] FILE...      one JSON line per file: faces, box, pose, eyes, smile, mouth, anti-spoofing
  liveness models install [--from DIR]        install the anti-spoofing models into <models>/antispoof
                                              (copied from DIR, or downloaded from their pinned URLs), sha256-checked
environment: LIVENESS_MODELS_DIR (default: ./models, else the source tree's models/)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("serve") => serve(),
        Some("analyze") => analyze(&args[1..]),
        Some("models") if args.get(1).map(String::as_str) == Some("install") => install(&args[2..]),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}

fn serve() -> Result<ExitCode, String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,liveness=info".into()),
        )
        .init();
    let config = liveness::config::Config::from_env().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(liveness::server::serve(config)).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

fn install(args: &[String]) -> Result<ExitCode, String> {
    let from = match args {
        [] => None,
        [flag, dir] if flag == "--from" => Some(PathBuf::from(dir)),
        _ => return Err(USAGE.to_owned()),
    };
    let installed = install_antispoof(&default_models_dir(), from.as_deref()).map_err(|e| e.to_string())?;
    for path in installed {
        println!("installed {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn analyze(args: &[String]) -> Result<ExitCode, String> {
    let keep_landmarks = args.iter().any(|a| a == "--landmarks");
    let files: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if files.is_empty() {
        return Err(USAGE.to_owned());
    }
    let options = AnalyzerOptions { keep_landmarks, ..AnalyzerOptions::default() };
    let analyzer = Analyzer::load(&default_models_dir(), options).map_err(|e| e.to_string())?;
    if !analyzer.has_antispoof() {
        eprintln!(
            "warning: anti-spoofing models not installed; antispoof_real will be null (see `liveness models install`)"
        );
    }
    let mut all_ok = true;
    for file in files {
        let line = match std::fs::read(file) {
            Err(e) => Err(format!("cannot read file: {e}")),
            Ok(bytes) => analyzer.analyze(&bytes, FaceSearch::Detect).map_err(|e: AnalysisError| e.to_string()),
        };
        let value = match line {
            Ok(observation) => describe(file, &observation),
            Err(error) => {
                all_ok = false;
                json!({ "file": file, "error": error })
            }
        };
        println!("{value}");
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn describe(file: &str, observation: &liveness::vision::FrameObservation) -> Value {
    let round = |v: f32| (f64::from(v) * 1000.0).round() / 1000.0;
    let mut value = json!({
        "file": file,
        "width": observation.width,
        "height": observation.height,
        "faces": observation.faces,
        "box": null, "yaw": null, "pitch": null, "roll": null, "eye_closure": null, "smile": null,
        "mouth_open": null, "antispoof_real": null,
        "timings_ms": observation.timings_ms,
    });
    if let Some(face) = &observation.face {
        let extra = json!({
            "box": [round(face.bbox.x), round(face.bbox.y), round(face.bbox.width), round(face.bbox.height)],
            "presence": round(face.presence),
            "yaw": round(face.pose.yaw),
            "pitch": round(face.pose.pitch),
            "roll": round(face.pose.roll),
            "eye_closure": face.eye_closure.map(round),
            "smile": round(face.smile),
            "mouth_open": round(face.mouth_open),
            "brightness": round(face.quality.brightness),
            "sharpness": round(face.quality.sharpness),
            "antispoof_real": face.antispoof_real.map(round),
        });
        value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        if !face.landmarks.is_empty() {
            value["landmarks"] = json!(face.landmarks);
        }
    }
    value
}
