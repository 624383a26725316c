//! The operator's CLI end to end (the real `liveness` binary on an embedded store), and a whole check by a tenant
//! it created: the service built by the composition root exactly as the local server builds it (real models,
//! SQLite, authentication on), the end user holding only the session id and the client token. Then a restart of the
//! service on the same data directory loses nothing. One test in this binary: it sets environment variables.

mod support;

use std::path::Path;
use std::process::Command;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use liveness::app::{App, Deployment, Models};
use liveness::config::Config;
use serde_json::Value;
use support::real_models::video_jpegs;
use tower::ServiceExt;

/// Runs `liveness ARGS` on the data directory; its stdout lines as JSON, or the failure's stderr.
fn cli(data_dir: &Path, args: &[&str]) -> Result<Vec<Value>, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_liveness"))
        .args(args)
        .env("LIVENESS_DATA_DIR", data_dir)
        .env_remove("LIVENESS_TABLE_NAME")
        .output()
        .expect("the CLI runs");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let stdout = String::from_utf8(output.stdout).unwrap();
    Ok(stdout.lines().map(|line| serde_json::from_str(line).expect("one JSON object a line")).collect())
}

async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn bearer(method: &str, path: &str, credential: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(path).header(header::AUTHORIZATION, format!("Bearer {credential}"))
}

async fn local_app() -> axum::Router {
    let config = Config::from_env().unwrap();
    App::build(config, Deployment::Local, Models::Load).await.expect("the service starts").router()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_made_with_the_cli_runs_a_whole_check_and_a_restart_loses_nothing() {
    let data_dir = std::env::temp_dir().join(format!("liveness-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir).unwrap();
    let policy = data_dir.join("policy.json");
    std::fs::write(&policy, r#"{"challenges_min": 1, "allowed_challenges": ["LOOK_DOWN"], "timeout_seconds_max": 10, "keep_reference_image": true}"#)
        .unwrap();

    // The operator creates two tenants; the key is shown once and never again.
    let created = cli(&data_dir, &["tenants", "create", "Acme onboarding", "--policy", policy.to_str().unwrap()]);
    let created = &created.unwrap()[0];
    let (tenant, key) = (created["tenant_id"].as_str().unwrap(), created["api_key"].as_str().unwrap().to_owned());
    assert_eq!(created["name"], "Acme onboarding");
    let other = cli(&data_dir, &["tenants", "create", "Other"]).unwrap()[0]["api_key"].as_str().unwrap().to_owned();
    let listed = cli(&data_dir, &["tenants", "list"]).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["tenant_id"], tenant);
    assert_eq!(listed[0]["policy"]["allowed_challenges"], serde_json::json!(["LOOK_DOWN"]));
    // `lk_<key id>_<secret>`: the secret is base64url and may itself hold '_', so it is all after the second one.
    let secret = key.splitn(3, '_').nth(2).unwrap();
    assert!(secret.len() >= 43, "{key}");
    assert!(!listed.iter().any(|line| line.to_string().contains(secret)), "list never shows a secret");
    assert!(cli(&data_dir, &["tenants", "create", "Bad", "--policy", "/nonexistent.json"]).is_err());
    assert!(cli(&data_dir, &["tenants", "disable", "t_0000000000000000"]).unwrap_err().contains("tenant_not_found"));

    std::env::set_var("LIVENESS_DATA_DIR", &data_dir);
    std::env::set_var("LIVENESS_AUTH", "api_keys");
    std::env::remove_var("LIVENESS_TABLE_NAME");
    let router = local_app().await;

    // The relying party's backend creates the session; the end user gets the id and the client token only.
    let request = bearer("POST", "/api/v1/liveness/sessions?num_challenges=1&timeout_seconds=10", &key);
    let (status, session) = call(&router, request.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let (id, token) = (session["session_id"].as_str().unwrap(), session["client_token"].as_str().unwrap());
    assert_eq!(session["challenges"][0]["type"], "LOOK_DOWN");

    let frames = video_jpegs("cli-teacher", "select=between(n\\,200\\,328)*not(mod(n\\,3)),crop=400:400:550:0", &[]);
    let mut last = Value::Null;
    for frame in &frames[..25] {
        let request = bearer("POST", &format!("/api/v1/liveness/sessions/{id}/frame"), token)
            .header(header::CONTENT_TYPE, "image/jpeg")
            .body(Body::from(frame.clone()))
            .unwrap();
        let (status, body) = call(&router, request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        last = body;
        if last["session_complete"] == true {
            break;
        }
    }
    assert_eq!((last["state"].as_str(), last["is_live"].as_bool()), (Some("completed"), Some(true)), "{last}");

    // The backend reads the verdict with its key; the other tenant cannot see the session at all.
    let read = |credential: &str| bearer("GET", &format!("/api/v1/liveness/sessions/{id}"), credential);
    let (status, full) = call(&router, read(&key).body(Body::empty()).unwrap()).await;
    assert_eq!((status, full["is_live"].as_bool()), (StatusCode::OK, Some(true)));

    // The policy keeps a reference image: the sharpest frontal live face, for the tenant only, bound to the token.
    let image_path = format!("/api/v1/liveness/sessions/{id}/reference-image");
    let response = router.clone().oneshot(bearer("GET", &image_path, &key).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "image/jpeg");
    let jpeg = response.into_body().collect().await.unwrap().to_bytes();
    assert!(jpeg.len() <= 100_000 && jpeg.starts_with(&[0xff, 0xd8]), "{} bytes", jpeg.len());
    let face = image::load_from_memory(&jpeg).expect("a real JPEG");
    assert!(face.width() >= 64 && face.height() >= 64, "{}x{}", face.width(), face.height());
    let token = full["verdict_token"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["reference_image_sha256"].as_str(), Some(liveness::credentials::sha256_hex(&jpeg).as_str()));
    assert_eq!(
        call(&router, bearer("GET", &image_path, token_of_session(&session)).body(Body::empty()).unwrap()).await.0,
        StatusCode::UNAUTHORIZED,
        "not for the end user"
    );
    assert_eq!(
        call(&router, bearer("GET", &image_path, &other).body(Body::empty()).unwrap()).await.0,
        StatusCode::NOT_FOUND
    );
    // A tenant whose policy keeps none gets none, however good its frames.
    let (_, other_session) =
        call(&router, bearer("POST", "/api/v1/liveness/sessions", &other).body(Body::empty()).unwrap()).await;
    let other_id = other_session["session_id"].as_str().unwrap();
    for frame in &frames[..4] {
        let request = bearer("POST", &format!("/api/v1/liveness/sessions/{other_id}/frame"), &other)
            .header(header::CONTENT_TYPE, "image/jpeg")
            .body(Body::from(frame.clone()))
            .unwrap();
        assert_eq!(call(&router, request).await.0, StatusCode::OK);
    }
    let other_image = bearer("GET", &format!("/api/v1/liveness/sessions/{other_id}/reference-image"), &other);
    let (status, problem) = call(&router, other_image.body(Body::empty()).unwrap()).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("reference_image_not_found")));
    assert_eq!(call(&router, read(&other).body(Body::empty()).unwrap()).await.0, StatusCode::NOT_FOUND);

    // The same over the WebSocket: the backend creates the session, the browser joins it with the token, the
    // final result names the session, and the backend redeems the verdict and verifies it offline.
    let request =
        bearer("POST", "/api/v1/liveness/sessions?interface=websocket&passive_frames=3&num_challenges=1", &key);
    let (status, ws_session) = call(&router, request.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{ws_session}");
    let ws_id = ws_session["session_id"].as_str().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = router.clone();
    tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
    let url = format!(
        "ws://{addr}/api/v1/liveness/ws?session_id={ws_id}&token={}",
        ws_session["client_token"].as_str().unwrap()
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("the browser joins its session");
    for frame in &frames[..25] {
        socket.send(tokio_tungstenite::tungstenite::Message::Binary(frame.clone().into())).await.unwrap();
    }
    let final_result = loop {
        let message =
            tokio::time::timeout(std::time::Duration::from_secs(60), socket.next()).await.unwrap().unwrap().unwrap();
        let Ok(text) = message.to_text() else { continue };
        let message: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        assert!(message["type"] != "frame_result" || message["confidence"].is_null(), "scores stay hidden: {message}");
        if message["type"] == "final_result" {
            break message;
        }
    };
    assert_eq!((final_result["label"].as_str(), final_result["session_id"].as_str()), (Some("REAL"), Some(ws_id)));
    let (status, redeemed) = call(
        &router,
        bearer("POST", &format!("/api/v1/liveness/sessions/{ws_id}/redeem"), &key).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{redeemed}");
    let (_, jwks) = call(&router, Request::get("/.well-known/jwks.json").body(Body::empty()).unwrap()).await;
    let jwks = serde_json::from_value(jwks).unwrap();
    let expected = support::verifier::Expected {
        issuer: liveness::service::DEFAULT_ISSUER,
        audience: tenant,
        session_id: ws_id,
        nonce: None,
        at: None,
    };
    let verdict = support::verifier::verify(redeemed["verdict_token"].as_str().unwrap(), &jwks, &expected).unwrap();
    assert!(verdict.is_live, "{verdict:?}");

    // A restart on the same data directory: the session and the tenants are still there.
    drop(router);
    let router = local_app().await;
    let (status, after) = call(&router, read(&key).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after, full, "the session reads back exactly as before the restart");

    // Rotation, revocation and disabling through the CLI take effect on the running service.
    let rotated =
        cli(&data_dir, &["tenants", "rotate-key", tenant]).unwrap()[0]["api_key"].as_str().unwrap().to_owned();
    let old_key_id = listed[0]["keys"][0]["key_id"].as_str().unwrap();
    cli(&data_dir, &["tenants", "revoke-key", tenant, old_key_id]).unwrap();
    assert_eq!(call(&router, read(&key).body(Body::empty()).unwrap()).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&router, read(&rotated).body(Body::empty()).unwrap()).await.0, StatusCode::OK);
    let cancel = bearer("DELETE", &format!("/api/v1/liveness/sessions/{id}"), &rotated).body(Body::empty()).unwrap();
    assert_eq!(call(&router, cancel).await.0, StatusCode::OK);
    let gone = bearer("GET", &format!("/api/v1/liveness/sessions/{id}/reference-image"), &rotated);
    assert_eq!(call(&router, gone.body(Body::empty()).unwrap()).await.0, StatusCode::NOT_FOUND, "deleted with it");
    cli(&data_dir, &["tenants", "disable", tenant]).unwrap();
    assert_eq!(call(&router, read(&rotated).body(Body::empty()).unwrap()).await.0, StatusCode::UNAUTHORIZED);
    let _ = std::fs::remove_dir_all(&data_dir);
}

fn token_of_session(created: &Value) -> &str {
    created["client_token"].as_str().unwrap()
}
