//! `GET /api/v1/liveness/ws`: the WebSocket workflow on the local server. Each connection is its own task;
//! analysis runs on the service's blocking pool, so a slow client stalls only itself.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use uuid::Uuid;

use super::extract::QueryPairs;
use super::problem::Problem;
use super::AppState;
use crate::service::Caller;
use crate::websocket::{max_message_bytes, ConnectionOptions, Incoming, Reply, Workflow};

/// Normal closure, sent after `final_result`.
const CLOSE_NORMAL: u16 = 1000;

/// How long a finished connection waits for the client's close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Closure for a connection that sent no frame in time (an application code: the session itself goes on until
/// its deadline, and the client may reconnect to it).
const CLOSE_IDLE: u16 = 4408;

/// How long a connection may be held without doing its work, so idle or stalled clients cannot pile up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketLimits {
    /// From the upgrade to the first frame.
    pub first_frame: Duration,
    /// Between two frames.
    pub idle: Duration,
    /// For one message to be taken by a client that stopped reading; then the connection is dropped.
    pub send: Duration,
}

impl Default for SocketLimits {
    fn default() -> Self {
        Self { first_frame: Duration::from_secs(20), idle: Duration::from_secs(30), send: Duration::from_secs(5) }
    }
}

/// Upgrades to the workflow. Bad options or an unavailable store are answered before the upgrade, as plain HTTP
/// problems; after it, everything is a message.
pub(super) async fn connect(
    State(state): State<AppState>,
    QueryPairs(pairs): QueryPairs,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
    let upgrade = upgrade.map_err(|e| {
        Problem::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            format!("open this as a WebSocket: {}", e.body_text()),
        )
    })?;
    let options = ConnectionOptions::from_query(&pairs)?;
    let workflow = Workflow::new(state.service.clone(), state.max_frame_bytes);
    let (caller, session, opening) = workflow.connect(&pairs, &options).await?;
    let limits = state.limits.socket;
    tracing::info!(session = %session.id, "websocket session opened");
    // Beyond this the socket itself refuses the message (close code 1009).
    let max_message = max_message_bytes(state.max_frame_bytes);
    Ok(upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| serve(socket, workflow, caller, session.id, options, opening, limits)))
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
    limits: SocketLimits,
) {
    let mut wake_at_ms = None;
    let mut idle_until = tokio::time::Instant::now() + limits.first_frame;
    loop {
        for message in reply.messages.drain(..) {
            let sent = tokio::time::timeout(limits.send, socket.send(Message::Text(message.to_json().into()))).await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::info!(session = %id, "websocket client left or stopped reading");
                return;
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
            () = tokio::time::sleep_until(idle_until) => {
                tracing::info!(session = %id, "websocket closed: no frame in time");
                let close = CloseFrame { code: CLOSE_IDLE, reason: "no frame in time".into() };
                let _ = tokio::time::timeout(limits.send, socket.send(Message::Close(Some(close)))).await;
                return;
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    idle_until = tokio::time::Instant::now() + limits.idle;
                    workflow.on_message(&caller, id, Incoming::Text(text.to_string()), &options).await
                }
                Some(Ok(Message::Binary(bytes))) => {
                    idle_until = tokio::time::Instant::now() + limits.idle;
                    workflow.on_message(&caller, id, Incoming::Binary(bytes.to_vec()), &options).await
                }
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
