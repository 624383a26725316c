//! The Lambda functions' requests: each sample event in `events/` (API Gateway HTTP API, payload 2.0) turned into a
//! request by `lambda_http::request::from_str`, exactly as the runtime does, and served by the functions' router.

mod support;

use std::sync::Arc;

use axum::body::Body;
use http_body_util::BodyExt;
use liveness::service::{LivenessService, ServiceSettings, SystemClock};
use liveness::store::MemoryStore;
use liveness::vision::model_files::default_models_dir;
use liveness::vision::{Analyzer, AnalyzerOptions};
use serde_json::Value;
use support::events::{event, for_session};
use tower::ServiceExt;

fn router() -> axum::Router {
    let analyzer = Analyzer::load(&default_models_dir(), AnalyzerOptions::default()).unwrap();
    let service = LivenessService::new(
        Arc::new(MemoryStore::new()),
        Arc::new(analyzer),
        Arc::new(SystemClock),
        ServiceSettings::default(),
    );
    liveness::http::router(service, 5 * 1024 * 1024)
}

async fn invoke(router: &axum::Router, event: &Value) -> (u16, Value) {
    let request = lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event");
    let (parts, body) = request.into_parts();
    let request = axum::http::Request::from_parts(parts, Body::from(body.to_vec()));
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn every_sample_event_is_served() {
    let router = router();
    let (status, created) = invoke(&router, &event("create.json")).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["challenges"].as_array().unwrap().len(), 3);
    let id = created["session_id"].as_str().unwrap();

    let (status, frame) = invoke(&router, &for_session(event("frame.json"), id)).await;
    assert_eq!(status, 200, "{frame}");
    assert_eq!(frame["session_id"], id);
    assert_eq!(frame["state"], "in_progress");

    let (status, read) = invoke(&router, &for_session(event("get.json"), id)).await;
    assert_eq!(status, 200);
    assert_eq!(read["state"], "in_progress");

    let (status, cancelled) = invoke(&router, &for_session(event("delete.json"), id)).await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["cancelled"], id);
    let (status, gone) = invoke(&router, &for_session(event("get.json"), id)).await;
    assert_eq!(status, 404);
    assert_eq!(gone["code"], "session_not_found");
}

#[tokio::test]
async fn broken_variants_get_clear_errors() {
    let router = router();
    let (_, created) = invoke(&router, &event("create.json")).await;
    let id = created["session_id"].as_str().unwrap();
    let frame = for_session(event("frame.json"), id);

    let mut no_body = frame.clone();
    no_body.as_object_mut().unwrap().remove("body");
    let (status, body) = invoke(&router, &no_body).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_multipart")), "{body}");

    let mut wrong_type = frame.clone();
    wrong_type["headers"]["content-type"] = Value::String("text/plain".into());
    let (status, body) = invoke(&router, &wrong_type).await;
    assert_eq!((status, body["code"].as_str()), (415, Some("unsupported_media_type")));

    let unknown = for_session(event("frame.json"), "0b5ee2a4-1d8e-4c1e-9a55-4d2f5e6a7b8c");
    let (status, body) = invoke(&router, &unknown).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("session_not_found")));

    let malformed = for_session(event("get.json"), "not-a-session");
    let (status, body) = invoke(&router, &malformed).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_session_id")));

    let mut bad_query = event("create.json");
    bad_query["rawQueryString"] = Value::String("num_challenges=12".into());
    bad_query["queryStringParameters"]["num_challenges"] = Value::String("12".into());
    let (status, body) = invoke(&router, &bad_query).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_parameter")));
}

#[tokio::test]
async fn raw_events_through_the_function_handler() {
    let router = router();
    let response = liveness::lambda::handle_event(router.clone(), event("create.json")).await;
    assert_eq!(response["statusCode"], 201);
    assert_eq!(response["isBase64Encoded"], false);
    assert_eq!(response["headers"]["content-type"], "application/json");
    let created: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    let id = created["session_id"].as_str().unwrap();

    // aws_lambda_events panics on this body; the handler must answer 400 instead.
    let mut bad_base64 = for_session(event("frame.json"), id);
    bad_base64["body"] = Value::String("not base64 at all!".into());
    let response = liveness::lambda::handle_event(router.clone(), bad_base64).await;
    assert_eq!(response["statusCode"], 400);
    assert_eq!(response["headers"]["content-type"], "application/problem+json");
    let problem: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(problem["code"], "invalid_base64");

    let response = liveness::lambda::handle_event(router.clone(), serde_json::json!({"hello": "world"})).await;
    assert_eq!(response["statusCode"], 400);

    let response = liveness::lambda::handle_event(router, for_session(event("frame.json"), id)).await;
    assert_eq!(response["statusCode"], 200, "{response}");
}
