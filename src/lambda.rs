//! AWS Lambda functions: each REST endpoint's function runs the same axum router as the local server (so routing,
//! validation and errors exist once), over the DynamoDB store. Clients, store and (for the frame function only)
//! models are built once per container, before the first invocation.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lambda_http::LambdaEvent;
use serde_json::{json, Value};
use tower::ServiceExt;

pub use crate::app::Models;
use crate::app::{App, Deployment, StartError};
use crate::config::Config;
use crate::http::problem::Problem;

/// Everything a function runs on, built from the environment once per container, before its first invocation.
pub async fn function_app(models: Models) -> Result<App, StartError> {
    App::build(Config::from_env()?, Deployment::Lambda, models).await
}

/// The router a function serves, built from the environment.
pub async fn function_router(models: Models) -> Result<axum::Router, StartError> {
    Ok(function_app(models).await?.router())
}

/// Runs one Lambda function until the runtime stops it. Logs go to CloudWatch through `tracing` (JSON when the
/// function's log format is JSON).
pub async fn run_function(models: Models) -> Result<(), lambda_http::Error> {
    crate::logging::init_lambda();
    let router = function_router(models).await?;
    lambda_http::lambda_runtime::run(lambda_http::service_fn(move |event: LambdaEvent<Value>| {
        let router = router.clone();
        async move { Ok::<Value, lambda_http::Error>(handle_event(router, event.payload).await) }
    }))
    .await
}

/// Serves one raw API Gateway HTTP API event (payload 2.0) and returns the payload-2.0 response. The event is
/// checked before `lambda_http` converts it: that conversion panics on a body that claims base64 but is not, and
/// a client's bad bytes must get a 400, not a crashed invocation.
pub async fn handle_event(router: axum::Router, event: Value) -> Value {
    if event["isBase64Encoded"] == Value::Bool(true) {
        let body = event["body"].as_str().unwrap_or("");
        if STANDARD.decode(body).is_err() {
            let problem =
                Problem::new(StatusCode::BAD_REQUEST, "invalid_base64", "the request body is not valid base64");
            return response_event(problem.into_response()).await;
        }
    }
    // Straight from the parsed event: printing it back to text for `request::from_str` would copy the frame twice.
    let request: lambda_http::Request = match serde_json::from_value::<lambda_http::request::LambdaRequest>(event) {
        Ok(request) => request.into(),
        Err(error) => {
            let problem = Problem::new(StatusCode::BAD_REQUEST, "invalid_event", format!("unreadable event: {error}"));
            return response_event(problem.into_response()).await;
        }
    };
    let (parts, body) = request.into_parts();
    let request = axum::http::Request::from_parts(parts, axum::body::Body::from(body.to_vec()));
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    response_event(response).await
}

/// An HTTP response as an API Gateway payload-2.0 response; bodies that are not UTF-8 go base64-encoded.
async fn response_event(response: Response) -> Value {
    let status = response.status().as_u16();
    let headers: serde_json::Map<String, Value> = response
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), Value::String(value.to_str().unwrap_or_default().to_owned())))
        .collect();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap_or_default();
    let (body, encoded) = match String::from_utf8(bytes.to_vec()) {
        Ok(text) => (text, false),
        Err(raw) => (STANDARD.encode(raw.into_bytes()), true),
    };
    json!({ "statusCode": status, "headers": headers, "body": body, "isBase64Encoded": encoded })
}
