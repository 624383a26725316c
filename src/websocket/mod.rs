//! The WebSocket liveness workflow (`spec/websocket-liveness.txt`): its messages and its transport-independent
//! handler. The local server's socket lives in `http::websocket`, the API Gateway one in `lambda_websocket`.

pub mod protocol;
pub mod workflow;

pub use protocol::{max_message_bytes, Label, Phase, ServerMessage, Status};
pub use workflow::{ConnectionOptions, Incoming, Reply, Workflow};
