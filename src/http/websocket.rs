//! `GET /api/v1/liveness/ws`: the WebSocket workflow on the local server. Each connection is its own task;
//! analysis runs on the service's blocking pool, so a slow client stalls only itself.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use uuid::Uuid;

use super::problem::Problem;
use super::AppState;
use crate::service::Caller;
use crate::websocket::{max_message_bytes, ConnectionOptions, Incoming, Reply, Workflow};

/// Normal closure, sent after `final_result`.
const CLOSE_NORMAL: u16 = 1000;

/// How long a finished connection waits for the client's close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Upgrades to the workflow. Bad options or an unavailable store are answered before the upgrade, as plain HTTP
/// problems; after it, everything is a message.
pub(super) async fn connect(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
    let upgrade = upgrade.map_err(|e| {
        Problem::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            format!("open this as a WebSocket: {}", e.body_text()),
        )
    })?;
    let Query(pairs) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let options = ConnectionOptions::from_query(&pairs)?;
    let workflow = Workflow::new(state.service.clone(), state.max_frame_bytes);
    let (caller, session, opening) = workflow.connect(&pairs, &options).await?;
    tracing::info!(session = %session.id, "websocket session opened");
    // Beyond this the socket itself refuses the message (close code 1009).
    let max_message = max_message_bytes(state.max_frame_bytes);
    Ok(upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| serve(socket, workflow, caller, session.id, options, opening)))
}

/// Sends the close and waits for the client's, discarding frames still in flight: dropping the connection with
/// unread frames would reset it, and the client could lose the final result it has not read yet.
async fn close_normally(mut socket: WebSocket) {
    let close = CloseFrame { code: CLOSE_NORMAL, reason: "liveness check finished".into() };
    if socket.send(Message::Close(Some(close))).await.is_err() {
        return;
    }
    let drain = async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
}

async fn serve(
    mut socket: WebSocket,
    workflow: Workflow,
    caller: Caller,
    id: Uuid,
    options: ConnectionOptions,
    mut reply: Reply,
) {
    let mut wake_at_ms = None;
    loop {
        for message in reply.messages.drain(..) {
            if socket.send(Message::Text(message.to_json().into())).await.is_err() {
                return; // the client left
            }
        }
        if reply.finished {
            close_normally(socket).await;
            return;
        }
        wake_at_ms = reply.wake_at_ms.or(wake_at_ms);
        let wait = wake_at_ms.map(|at| Duration::from_millis((at - workflow.now_ms()).max(0) as u64));
        let timer = async {
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        reply = tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => workflow.on_message(&caller, id, Incoming::Text(text.to_string()), &options).await,
                Some(Ok(Message::Binary(bytes))) => workflow.on_message(&caller, id, Incoming::Binary(bytes.to_vec()), &options).await,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => Reply::default(),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    tracing::info!(session = %id, "websocket client left");
                    return;
                }
            },
            () = timer => workflow.on_tick(id).await,
        };
    }
}
