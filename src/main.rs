//! The `liveness` command: run the local server (the default), analyse images, install models.

use std::path::PathBuf;
use std::process::ExitCode;

use liveness::app::{load_analyzer, App};
use liveness::config::Config;
use liveness::domain::reported;
use liveness::domain::Policy;
use liveness::service::{ServiceError, SystemClock};
use liveness::vision::model_files::{default_models_dir, install_antispoof};
use liveness::vision::{AnalysisError, AnalyzerOptions, FaceSearch, FrameAnalyzer};
use serde_json::{json, Value};

const USAGE: &str = "usage:
  liveness [serve]                            run the local server (REST API, embedded store); settings from
                                              LIVENESS_* environment variables (see the README)
  liveness analyze [--landmarks] FILE...      one JSON line per file: faces, box, pose, eyes, smile, mouth, anti-spoofing
  liveness models install [--from DIR]        install the anti-spoofing models into <models>/antispoof
                                              (copied from DIR, or downloaded from their pinned URLs), sha256-checked
  liveness tenants create NAME [--policy FILE.json]   a relying party and its first API key, as one JSON line
                                              (the key is shown this once; only its digest is stored)
  liveness tenants list                       one JSON line per tenant: policy, keys (ids only), disabled
  liveness tenants rotate-key TENANT_ID       a new API key; the old ones work until revoked
  liveness tenants revoke-key TENANT_ID KEY_ID
  liveness tenants disable TENANT_ID          every key of the tenant stops working
  liveness signing-keys rotate                add a verdict signing key in LIVENESS_DATA_DIR (it signs from the server's
                                              next start; the previous one stays published)
  liveness signing-keys secret [FILE]         the text for a Secrets Manager secret (LIVENESS_SIGNING_KEY_SECRET):
                                              FILE's keys (the secret's current text) and one new key after them
  liveness usage TENANT_ID [FROM [TO]]        the tenant's usage per UTC day (YYYY-MM-DD; default today)
environment: LIVENESS_MODELS_DIR (default: ./models, else the source tree's models/); tenants live in the embedded
store in LIVENESS_DATA_DIR (default ./data), or in DynamoDB when LIVENESS_TABLE_NAME is set";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let serving = matches!(args.first().map(String::as_str), None | Some("serve"));
    liveness::logging::init_local(if serving { "info" } else { "warn" });
    let result = match args.first().map(String::as_str) {
        None | Some("serve") => serve(),
        Some("analyze") => analyze(&args[1..]),
        Some("models") if args.get(1).map(String::as_str) == Some("install") => install(&args[2..]),
        Some("tenants") => tenants(&args[1..]),
        Some("usage") => usage(&args[1..]),
        Some("signing-keys") if args.get(1).map(String::as_str) == Some("rotate") => rotate_signing_key(),
        Some("signing-keys") if args.get(1).map(String::as_str) == Some("secret") => signing_key_secret(&args[2..]),
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
    let config = Config::from_env().map_err(|e| e.to_string())?;
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
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let options = AnalyzerOptions { keep_landmarks, ..config.analyzer_options() };
    let analyzer = load_analyzer(&config, options).map_err(|e| e.to_string())?;
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
            "box": [reported(face.bbox.x), reported(face.bbox.y), reported(face.bbox.width), reported(face.bbox.height)],
            "presence": reported(face.presence),
            "yaw": reported(face.pose.yaw),
            "pitch": reported(face.pose.pitch),
            "roll": reported(face.pose.roll),
            "eye_closure": face.eye_closure.map(reported),
            "smile": reported(face.smile),
            "mouth_open": reported(face.mouth_open),
            "brightness": reported(face.quality.brightness),
            "sharpness": reported(face.quality.sharpness),
            "antispoof_real": face.antispoof_real.map(reported),
        });
        value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        if !face.landmarks.is_empty() {
            value["landmarks"] = json!(face.landmarks);
        }
    }
    value
}

/// A service failure as the CLI reports it.
fn failed(error: ServiceError) -> String {
    format!("{}: {}", error.code(), error.client_message())
}

fn tenants(args: &[String]) -> Result<ExitCode, String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    runtime.block_on(async {
        let tenants = App::operator(&config).await.map_err(|e| e.to_string())?.tenants;
        match args.as_slice() {
            ["create", name, rest @ ..] => {
                let policy = match rest {
                    [] => Policy::default(),
                    ["--policy", file] => {
                        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
                        serde_json::from_str(&text).map_err(|e| format!("{file} is not a valid policy: {e}"))?
                    }
                    _ => return Err(USAGE.to_owned()),
                };
                let (tenant, key) = tenants.create(name, policy).await.map_err(failed)?;
                println!("{}", json!({ "tenant_id": tenant.id, "name": tenant.name, "api_key": key.key }));
            }
            ["list"] => {
                for (tenant, keys) in tenants.list().await.map_err(failed)? {
                    let keys: Vec<Value> =
                        keys.iter().map(|k| json!({ "key_id": k.key_id, "revoked": k.revoked })).collect();
                    let line = json!({ "tenant_id": tenant.id, "name": tenant.name, "disabled": tenant.disabled,
                        "created_at": tenant.created_at_ms / 1000, "keys": keys, "policy": tenant.policy });
                    println!("{line}");
                }
            }
            ["rotate-key", tenant_id] => {
                let key = tenants.rotate_key(tenant_id).await.map_err(failed)?;
                println!("{}", json!({ "tenant_id": tenant_id, "key_id": key.key_id, "api_key": key.key }));
            }
            ["revoke-key", tenant_id, key_id] => {
                tenants.revoke_key(tenant_id, key_id).await.map_err(failed)?;
                println!("{}", json!({ "tenant_id": tenant_id, "key_id": key_id, "revoked": true }));
            }
            ["disable", tenant_id] => {
                tenants.disable(tenant_id).await.map_err(failed)?;
                println!("{}", json!({ "tenant_id": tenant_id, "disabled": true }));
            }
            _ => return Err(USAGE.to_owned()),
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn usage(args: &[String]) -> Result<ExitCode, String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let today = liveness::service::metering::utc_date(liveness::service::Clock::now_ms(&SystemClock));
    let (tenant_id, from, to) = match args {
        [tenant] => (tenant, today.clone(), today),
        [tenant, from] => (tenant, from.clone(), today),
        [tenant, from, to] => (tenant, from.clone(), to.clone()),
        _ => return Err(USAGE.to_owned()),
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let operator = App::operator(&config).await.map_err(|e| e.to_string())?;
        operator.tenants.find(tenant_id).await.map_err(failed)?;
        let (days, next_from) = operator.metering.usage(tenant_id, &from, &to).await.map_err(failed)?;
        for day in days {
            println!(
                "{}",
                json!({ "tenant_id": tenant_id, "date": day.date, "sessions_created": day.sessions_created,
                "sessions_live": day.sessions_live, "sessions_not_live": day.sessions_not_live,
                "frames_analysed": day.frames_analysed })
            );
        }
        if let Some(next_from) = next_from {
            eprintln!("more days follow: ask again from {next_from}");
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn rotate_signing_key() -> Result<ExitCode, String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let now = liveness::service::Clock::now_ms(&SystemClock);
    let kid = liveness::verdicts::SigningKeys::rotate(&config.data_dir, now).map_err(|e| e.to_string())?;
    println!("{}", json!({ "kid": kid }));
    Ok(ExitCode::SUCCESS)
}

fn signing_key_secret(args: &[String]) -> Result<ExitCode, String> {
    let existing = match args {
        [] => None,
        [file] => Some(std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?),
        _ => return Err(USAGE.to_owned()),
    };
    let text = liveness::verdicts::SigningKeys::new_secret_text(existing.as_deref()).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}
