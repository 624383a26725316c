//! A real server on a free loopback port and a real WebSocket client (tokio-tungstenite) for the workflow tests.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use liveness::service::{LivenessService, ServiceSettings, SystemClock};
use liveness::store::MemoryStore;
use liveness::vision::FrameAnalyzer;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any one server message may take (real-model analysis in a debug build included).
const MESSAGE_WAIT: Duration = Duration::from_secs(30);

/// The local server's router served on `127.0.0.1:0`.
pub struct Server {
    pub addr: std::net::SocketAddr,
    /// The router being served, for plain requests.
    pub router: axum::Router,
}

impl Server {
    pub async fn start(analyzer: Arc<dyn FrameAnalyzer>) -> Server {
        let service = LivenessService::new(
            Arc::new(MemoryStore::new()),
            analyzer,
            Arc::new(SystemClock),
            ServiceSettings::default(),
        );
        Server::serving(service).await
    }

    /// Serves `service` as the local server does.
    pub async fn serving(service: LivenessService) -> Server {
        let router = liveness::http::router(service, 256 * 1024);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = router.clone();
        tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
        Server { addr, router }
    }

    /// Opens the workflow with `query` (e.g. `passive_frames=3&num_challenges=1`).
    pub async fn connect(&self, query: &str) -> Client {
        let url = format!("ws://{}/api/v1/liveness/ws?{query}", self.addr);
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("the upgrade succeeds");
        Client { socket }
    }
}

/// One client connection.
pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server did next.
#[derive(Debug)]
pub enum Event {
    Message(Value),
    Closed(Option<CloseCode>),
}

impl Client {
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.socket.send(Message::Binary(bytes.into())).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::Text(text.into())).await.unwrap();
    }

    /// The next message or the close, panicking if nothing comes in time.
    pub async fn next(&mut self) -> Event {
        loop {
            let item =
                tokio::time::timeout(MESSAGE_WAIT, self.socket.next()).await.expect("the server answers in time");
            match item {
                Some(Ok(Message::Text(text))) => return Event::Message(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(frame))) => return Event::Closed(frame.map(|f| f.code)),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => panic!("the server sends text messages only"),
                Some(Err(error)) => panic!("socket error: {error}"),
                None => return Event::Closed(None),
            }
        }
    }

    /// The next event, which must be a message.
    pub async fn message(&mut self) -> Value {
        match self.next().await {
            Event::Message(message) => message,
            Event::Closed(code) => panic!("closed ({code:?}) while a message was expected"),
        }
    }

    /// Messages up to and including the first that `stop` accepts.
    pub async fn until(&mut self, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut messages = Vec::new();
        loop {
            let message = self.message().await;
            let done = stop(&message);
            messages.push(message);
            if done {
                return messages;
            }
        }
    }

    /// Asserts the server closes normally next.
    pub async fn expect_normal_close(&mut self) {
        match self.next().await {
            Event::Closed(code) => assert_eq!(code, Some(CloseCode::Normal)),
            Event::Message(message) => panic!("expected the close, got {message}"),
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// Checks a server message against the spec field by field: its type's exact set of keys and their types.
pub fn assert_spec_message(message: &Value) {
    let object = message.as_object().unwrap_or_else(|| panic!("not an object: {message}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let actions = ["BLINK", "LOOK LEFT", "LOOK RIGHT", "LOOK UP", "LOOK DOWN", "SMILE"];
    let labels = ["REAL", "FAKE"];
    let unit = |v: &Value| v.as_f64().is_some_and(|c| (0.0..=1.0).contains(&c));
    match message["type"].as_str().unwrap() {
        "phase" => {
            assert_eq!(keys, ["type", "value"]);
            assert!(["passive", "active"].contains(&message["value"].as_str().unwrap()));
        }
        "frame_result" => {
            assert_eq!(keys, ["confidence", "label", "type"]);
            assert!(unit(&message["confidence"]), "{message}");
            let real = message["confidence"].as_f64().unwrap() >= 0.5;
            assert_eq!(message["label"], if real { "REAL" } else { "FAKE" });
        }
        "challenge_start" => {
            // The spec's two fields plus what a client needs to show the challenge without a table of its own.
            assert_eq!(keys, ["action", "cue", "instruction", "timeout_seconds", "type"]);
            assert!(actions.contains(&message["action"].as_str().unwrap()), "{message}");
            assert!(
                !message["instruction"].as_str().unwrap().is_empty() && !message["cue"].as_str().unwrap().is_empty()
            );
            assert!(message["timeout_seconds"].as_f64().is_some_and(|t| t > 0.0), "{message}");
        }
        "challenge_result" => {
            assert_eq!(keys, ["action", "status", "type"]);
            assert!(actions.contains(&message["action"].as_str().unwrap()), "{message}");
            assert!(["passed", "failed"].contains(&message["status"].as_str().unwrap()));
        }
        "final_result" => {
            // The spec's fields plus `session_id`, which the relying party redeems the verdict with, and for a
            // FAKE verdict `advice`, the words the user is told.
            let fake = message["label"] == "FAKE";
            let mut expected = vec!["label", "passed", "session_id", "type"];
            if fake {
                expected.insert(0, "advice");
            }
            let mut scored = expected.clone();
            scored.push("confidence");
            scored.sort_unstable();
            assert!(keys == expected || keys == scored, "{keys:?}");
            if fake {
                assert!(message["advice"].as_str().is_some_and(|a| !a.to_lowercase().contains("spoof")), "{message}");
            }
            assert!(message["session_id"].as_str().is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()));
            assert!(labels.contains(&message["label"].as_str().unwrap()));
            for action in message["passed"].as_array().unwrap() {
                assert!(actions.contains(&action.as_str().unwrap()));
            }
            if let Some(confidence) = message.get("confidence") {
                assert!(unit(confidence), "{message}");
            }
        }
        "error" | "feedback" => {
            assert_eq!(keys, ["code", "message", "type"]);
            assert!(!message["message"].as_str().unwrap().is_empty());
        }
        other => panic!("not a message type of the workflow: {other}"),
    }
}

/// The messages without the per-frame `frame_result`s.
pub fn without_frame_results(messages: &[Value]) -> Vec<Value> {
    messages.iter().filter(|m| m["type"] != "frame_result").cloned().collect()
}
