//! The WebSocket workflow on an API Gateway WebSocket API: one Lambda function serves `$connect`, `$default` and
//! `$disconnect`. Each invocation is stateless: the connection id finds the session through its binding in the
//! store, the shared [`Workflow`] decides what to say, and replies are pushed with the API Gateway Management API
//! (`PostToConnection`, then `DeleteConnection` once the verdict is sent).
//!
//! Differences from the local socket, both forced by API Gateway: nothing can be sent during `$connect`, so the
//! opening messages go out just before the first frame's results; and no timer runs between invocations, so a
//! challenge that times out is announced with the client's next message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_apigatewaymanagement::primitives::Blob;
use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lambda_http::LambdaEvent;
use serde_json::{json, Value};

use crate::aws::aws_environment;
use crate::http::problem::Problem;
use crate::lambda::{function_app, Models};
use crate::service::{Caller, LivenessService, ServiceError};
use crate::store::{ConnectionBinding, ConnectionStore, StoreError};
use crate::websocket::{ConnectionOptions, Incoming, Reply, ServerMessage, Workflow};

/// Environment variable replacing `https://{domainName}` as the Management API's base (the stage is appended):
/// for local stand-ins of API Gateway.
pub const MANAGEMENT_ENDPOINT_VAR: &str = "LIVENESS_WS_MANAGEMENT_ENDPOINT";

/// Why a push to a client failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The client has gone (`GoneException`, HTTP 410).
    #[error("the connection is gone")]
    Gone,
    #[error("the Management API failed: {0}")]
    Failed(String),
}

/// The API Gateway Management API, one client per endpoint (one per deployment in practice).
pub struct ManagementApi {
    shared: aws_config::SdkConfig,
    base_override: Option<String>,
    clients: Mutex<HashMap<String, aws_sdk_apigatewaymanagement::Client>>,
}

impl ManagementApi {
    /// Clients from the standard AWS environment; [`MANAGEMENT_ENDPOINT_VAR`] overrides the endpoint's base.
    pub async fn from_env() -> Self {
        let shared = aws_environment().await;
        let base_override = std::env::var(MANAGEMENT_ENDPOINT_VAR).ok().filter(|v| !v.trim().is_empty());
        Self { shared, base_override, clients: Mutex::new(HashMap::new()) }
    }

    fn client(&self, domain_name: &str, stage: &str) -> aws_sdk_apigatewaymanagement::Client {
        let base = match &self.base_override {
            Some(base) => base.trim_end_matches('/').to_owned(),
            None => format!("https://{domain_name}"),
        };
        let endpoint = format!("{base}/{stage}");
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let client = clients.entry(endpoint.clone()).or_insert_with(|| {
            let config =
                aws_sdk_apigatewaymanagement::config::Builder::from(&self.shared).endpoint_url(endpoint).build();
            aws_sdk_apigatewaymanagement::Client::from_conf(config)
        });
        client.clone()
    }

    async fn post(&self, target: &Target, message: &ServerMessage) -> Result<(), PushError> {
        let client = self.client(&target.domain_name, &target.stage);
        let sent = client
            .post_to_connection()
            .connection_id(&target.connection_id)
            .data(Blob::new(message.to_json()))
            .send()
            .await;
        sent.map(|_| ()).map_err(|e| match e.as_service_error() {
            Some(error) if error.is_gone_exception() => PushError::Gone,
            _ => PushError::Failed(format!("{e:?}").chars().take(200).collect()),
        })
    }

    async fn close(&self, target: &Target) {
        let client = self.client(&target.domain_name, &target.stage);
        if let Err(error) = client.delete_connection().connection_id(&target.connection_id).send().await {
            if !error.as_service_error().is_some_and(|e| e.is_gone_exception()) {
                tracing::warn!(connection = %target.connection_id, ?error, "could not close the connection");
            }
        }
    }
}

/// Where replies for one event go.
struct Target {
    connection_id: String,
    domain_name: String,
    stage: String,
}

/// The function: the workflow, the connection bindings and the Management API.
pub struct WebSocketFunction {
    workflow: Workflow,
    connections: Arc<dyn ConnectionStore>,
    management: ManagementApi,
}

impl WebSocketFunction {
    /// The function over `service`; connections bound in `connections`.
    pub fn new(
        service: LivenessService,
        connections: Arc<dyn ConnectionStore>,
        max_frame_bytes: usize,
        management: ManagementApi,
    ) -> Self {
        Self { workflow: Workflow::new(service, max_frame_bytes).deferring_opening(), connections, management }
    }

    /// Built from the environment as the deployed function is: models, DynamoDB table, Management API.
    pub async fn from_env() -> Result<Self, crate::app::StartError> {
        let app = function_app(Models::Load).await?;
        Ok(Self::new(app.service, app.store, app.config.max_frame_bytes, ManagementApi::from_env().await))
    }

    /// Serves one raw API Gateway WebSocket event and returns the integration's response.
    pub async fn handle(&self, event: Value) -> Value {
        let context = &event["requestContext"];
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        let target = Target {
            connection_id: text(&context["connectionId"]),
            domain_name: text(&context["domainName"]),
            stage: text(&context["stage"]),
        };
        if target.connection_id.is_empty() {
            return status_only(StatusCode::BAD_REQUEST);
        }
        match context["routeKey"].as_str().unwrap_or_default() {
            "$connect" => self.connect(&target, &event).await,
            "$disconnect" => {
                if let Err(error) = self.connections.unbind(&target.connection_id).await {
                    tracing::warn!(connection = %target.connection_id, %error, "could not forget the connection");
                }
                status_only(StatusCode::OK)
            }
            _ => {
                self.message(&target, &event).await;
                status_only(StatusCode::OK)
            }
        }
    }

    /// Opens the session and binds the connection to it. A refusal here is the upgrade's HTTP answer.
    async fn connect(&self, target: &Target, event: &Value) -> Value {
        let pairs: Vec<(String, String)> = event["queryStringParameters"]
            .as_object()
            .map(|query| query.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
            .unwrap_or_default();
        let opened = async {
            let options = ConnectionOptions::from_query(&pairs)?;
            let (_caller, session, _deferred) = self.workflow.connect(&pairs, &options).await?;
            let binding = ConnectionBinding {
                session_id: session.id,
                feedback: options.feedback,
                expires_at_ms: session.expires_at_ms,
            };
            self.connections.bind(&target.connection_id, &binding).await?;
            tracing::info!(session = %session.id, connection = %target.connection_id, "websocket session opened");
            Ok::<(), ServiceError>(())
        };
        match opened.await {
            Ok(()) => status_only(StatusCode::OK),
            Err(error) => {
                let problem = Problem::from(error);
                json!({ "statusCode": problem.status.as_u16(), "body": problem.body().to_string() })
            }
        }
    }

    async fn message(&self, target: &Target, event: &Value) {
        let binding = match self.connections.binding(&target.connection_id).await {
            Ok(binding) => binding,
            Err(StoreError::NotFound) => {
                let reply = Reply {
                    messages: vec![ServerMessage::error("session_not_found", "this connection has no session")],
                    finished: true,
                    wake_at_ms: None,
                };
                return self.push(target, reply).await;
            }
            Err(error) => return self.push(target, Reply::failure(ServiceError::from(error))).await,
        };
        let body = event["body"].as_str().unwrap_or_default();
        let incoming = if event["isBase64Encoded"] == Value::Bool(true) {
            match STANDARD.decode(body) {
                Ok(bytes) => Incoming::Binary(bytes),
                Err(_) => {
                    let reply = Reply::error("invalid_base64", "the binary message arrived as invalid base64");
                    return self.push(target, reply).await;
                }
            }
        } else {
            Incoming::Text(body.to_owned())
        };
        let options = ConnectionOptions { feedback: binding.feedback, ..ConnectionOptions::default() };
        // The binding was made when the connection was accepted, so it is the caller's proof.
        let reply = self.workflow.on_message(&Caller::Operator, binding.session_id, incoming, &options).await;
        self.push(target, reply).await;
    }

    /// Posts the reply's messages in order; closes the connection when the workflow is over or the client left.
    async fn push(&self, target: &Target, reply: Reply) {
        for message in &reply.messages {
            match self.management.post(target, message).await {
                Ok(()) => {}
                Err(PushError::Gone) => {
                    tracing::info!(connection = %target.connection_id, "websocket client left");
                    let _ = self.connections.unbind(&target.connection_id).await;
                    return;
                }
                Err(error) => {
                    tracing::warn!(connection = %target.connection_id, %error, "could not post a message");
                    return;
                }
            }
        }
        if reply.finished {
            self.management.close(target).await;
            let _ = self.connections.unbind(&target.connection_id).await;
        }
    }
}

fn status_only(status: StatusCode) -> Value {
    json!({ "statusCode": status.as_u16() })
}

/// Runs the WebSocket function until the runtime stops it.
pub async fn run() -> Result<(), lambda_http::Error> {
    crate::logging::init_lambda();
    let function = Arc::new(WebSocketFunction::from_env().await?);
    lambda_http::lambda_runtime::run(lambda_http::service_fn(move |event: LambdaEvent<Value>| {
        let function = Arc::clone(&function);
        async move { Ok::<Value, lambda_http::Error>(function.handle(event.payload).await) }
    }))
    .await
}
