//! The WebSocket workflow's messages, exactly as `spec/websocket-liveness.txt` names them, and the parsing of what
//! a client sends.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::domain::{Challenge, Feedback};

/// The two phases of the workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Anti-spoofing evaluation.
    Passive,
    /// Challenge-based verification.
    Active,
}

/// A frame's or the session's classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Label {
    Real,
    Fake,
}

/// A challenge's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
}

impl ServerMessage {
    /// `challenge_start` for `challenge`.
    pub fn challenge_start(challenge: &Challenge) -> ServerMessage {
        let kind = challenge.kind;
        ServerMessage::ChallengeStart {
            action: kind.action().to_owned(),
            instruction: kind.instruction().to_owned(),
            cue: kind.cue().to_owned(),
            timeout_seconds: challenge.timeout_seconds,
        }
    }
}

/// Everything the server sends, as JSON text messages. The first five are the spec's; `error` is the design's
/// answer to a bad message; `feedback` is sent only to connections that ask for it (`?feedback=true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Phase {
        value: Phase,
    },
    /// `confidence` and `label` are `null` when the tenant's policy hides scores from end users.
    FrameResult {
        confidence: Option<f64>,
        label: Option<Label>,
    },
    /// `instruction`, `cue` and `timeout_seconds` are additions to the spec's message, so a client needs no
    /// table of its own.
    ChallengeStart {
        action: String,
        instruction: String,
        cue: String,
        timeout_seconds: f64,
    },
    ChallengeResult {
        action: String,
        status: Status,
    },
    /// `session_id` is an addition: the relying party's backend reads or redeems the verdict with it over REST;
    /// so is `advice`, what to tell the user about a check that did not pass (absent for `REAL`).
    FinalResult {
        label: Label,
        passed: Vec<String>,
        session_id: uuid::Uuid,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        confidence: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        advice: Option<String>,
    },
    Error {
        code: String,
        message: String,
    },
    Feedback {
        code: Feedback,
        message: String,
    },
}

impl ServerMessage {
    /// The message as the JSON text sent on the wire.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialise")
    }

    /// An `error` message.
    pub fn error(code: &str, message: impl Into<String>) -> ServerMessage {
        ServerMessage::Error { code: code.to_owned(), message: message.into() }
    }
}

/// Why a client's message was not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("a text message must be JSON like {{\"type\":\"frame\",\"image\":\"<base64>\"}}: {0}")]
    InvalidJson(String),
    #[error("unknown message type {0:?}; the only one is \"frame\"")]
    UnknownType(String),
    #[error("a frame message needs \"image\", the frame as base64")]
    MissingImage,
    #[error("\"image\" is not valid base64")]
    InvalidBase64,
    #[error("the frame is {size} bytes; at most {limit} are accepted")]
    TooLarge { size: usize, limit: usize },
}

impl MessageError {
    /// The stable `code` of the `error` message.
    pub fn code(&self) -> &'static str {
        match self {
            MessageError::InvalidJson(_) => "invalid_message",
            MessageError::UnknownType(_) => "unknown_message_type",
            MessageError::MissingImage => "missing_image",
            MessageError::InvalidBase64 => "invalid_base64",
            MessageError::TooLarge { .. } => "image_too_large",
        }
    }
}

#[derive(Deserialize)]
struct TextMessage {
    #[serde(rename = "type")]
    kind: String,
    image: Option<String>,
    seq: Option<u64>,
}

/// A frame as a client sent it: its bytes and, in a text message, its `seq`, which names it for retries (a
/// frame re-sent with the same `seq` gets its first answer again and is not counted twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    pub bytes: Vec<u8>,
    pub seq: Option<u64>,
}

/// Room in a message for what surrounds a frame: the JSON envelope, or a `data:` URL prefix.
const MESSAGE_ENVELOPE_BYTES: usize = 64 * 1024;

/// The largest message that may still carry a frame of `max_frame_bytes`: the frame as base64 (4/3 of its size)
/// plus its envelope. Transports refuse longer messages outright; shorter ones get an `error` message when the
/// frame inside is too large.
pub fn max_message_bytes(max_frame_bytes: usize) -> usize {
    max_frame_bytes.div_ceil(3) * 4 + MESSAGE_ENVELOPE_BYTES
}

/// The frame in a text message `{"type":"frame","image":"<base64>","seq":7}` (a `data:` URL prefix is accepted
/// too; `seq` is optional).
pub fn frame_from_text(text: &str, max_bytes: usize) -> Result<ClientFrame, MessageError> {
    // Refuse what cannot fit before decoding anything.
    if text.len() > max_message_bytes(max_bytes) {
        return Err(MessageError::TooLarge { size: text.len() / 4 * 3, limit: max_bytes });
    }
    let message: TextMessage = serde_json::from_str(text).map_err(|e| MessageError::InvalidJson(e.to_string()))?;
    if message.kind != "frame" {
        return Err(MessageError::UnknownType(message.kind));
    }
    let image = message.image.ok_or(MessageError::MissingImage)?;
    let encoded = match image.split_once(";base64,") {
        Some((prefix, data)) if prefix.starts_with("data:") => data,
        _ => image.as_str(),
    };
    let bytes = STANDARD.decode(encoded.trim()).map_err(|_| MessageError::InvalidBase64)?;
    Ok(ClientFrame { seq: message.seq, ..frame_from_binary(bytes, max_bytes)? })
}

/// A binary message: the frame's bytes themselves (no `seq`).
pub fn frame_from_binary(bytes: Vec<u8>, max_bytes: usize) -> Result<ClientFrame, MessageError> {
    if bytes.len() > max_bytes {
        return Err(MessageError::TooLarge { size: bytes.len(), limit: max_bytes });
    }
    Ok(ClientFrame { bytes, seq: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChallengeType;
    use serde_json::json;

    #[test]
    fn messages_serialise_exactly_as_the_spec_shows() {
        let cases = [
            (ServerMessage::Phase { value: Phase::Passive }, json!({"type": "phase", "value": "passive"})),
            (
                ServerMessage::FrameResult { confidence: Some(0.874), label: Some(Label::Real) },
                json!({"type": "frame_result", "confidence": 0.874, "label": "REAL"}),
            ),
            (
                ServerMessage::FrameResult { confidence: None, label: None },
                json!({"type": "frame_result", "confidence": null, "label": null}),
            ),
            (
                ServerMessage::challenge_start(&Challenge { kind: ChallengeType::Blink, timeout_seconds: 5.0 }),
                json!({"type": "challenge_start", "action": "BLINK", "instruction": "Blink your eyes", "cue": "◡ ◡",
                       "timeout_seconds": 5.0}),
            ),
            (
                ServerMessage::ChallengeResult {
                    action: ChallengeType::TurnRight.action().into(),
                    status: Status::Passed,
                },
                json!({"type": "challenge_result", "action": "LOOK RIGHT", "status": "passed"}),
            ),
            (
                ServerMessage::FinalResult {
                    label: Label::Fake,
                    passed: vec![],
                    session_id: uuid::Uuid::nil(),
                    confidence: Some(0.34),
                    advice: Some("Start again.".into()),
                },
                json!({"type": "final_result", "label": "FAKE", "passed": [], "confidence": 0.34,
                       "session_id": "00000000-0000-0000-0000-000000000000", "advice": "Start again."}),
            ),
            (
                ServerMessage::FinalResult {
                    label: Label::Fake,
                    passed: vec![],
                    session_id: uuid::Uuid::nil(),
                    confidence: None,
                    advice: None,
                },
                json!({"type": "final_result", "label": "FAKE", "passed": [],
                       "session_id": "00000000-0000-0000-0000-000000000000"}),
            ),
        ];
        for (message, expected) in cases {
            let wire: serde_json::Value = serde_json::from_str(&message.to_json()).unwrap();
            assert_eq!(wire.as_object().unwrap().keys().collect::<Vec<_>>(), {
                let mut keys: Vec<_> = expected.as_object().unwrap().keys().collect();
                keys.sort();
                keys
            });
            for (key, value) in expected.as_object().unwrap() {
                match value.as_f64() {
                    Some(number) => assert!((wire[key].as_f64().unwrap() - number).abs() < 1e-6),
                    None => assert_eq!(&wire[key], value),
                }
            }
            assert_eq!(serde_json::from_value::<ServerMessage>(wire).unwrap(), message);
        }
    }

    #[test]
    fn actions_are_the_spec_enum() {
        let actions: Vec<_> = ChallengeType::WEBSOCKET.iter().map(|k| k.action()).collect();
        assert_eq!(actions, ["BLINK", "LOOK LEFT", "LOOK RIGHT", "LOOK UP", "LOOK DOWN", "SMILE"]);
    }

    #[test]
    fn text_frames_are_parsed_and_bad_ones_named() {
        let frame = STANDARD.encode(b"\xff\xd8jpeg");
        let plain = frame_from_text(&format!(r#"{{"type":"frame","image":"{frame}"}}"#), 100).unwrap();
        assert_eq!(plain, ClientFrame { bytes: b"\xff\xd8jpeg".to_vec(), seq: None });
        let data_url = format!(r#"{{"type":"frame","image":"data:image/jpeg;base64,{frame}","seq":7}}"#);
        assert_eq!(
            frame_from_text(&data_url, 100).unwrap(),
            ClientFrame { bytes: b"\xff\xd8jpeg".to_vec(), seq: Some(7) }
        );

        let code = |text: &str| frame_from_text(text, 100).unwrap_err().code();
        assert_eq!(code("hello"), "invalid_message");
        assert_eq!(code(r#"{"image":"AAAA"}"#), "invalid_message");
        assert_eq!(code(r#"{"type":"ping"}"#), "unknown_message_type");
        assert_eq!(code(r#"{"type":"frame"}"#), "missing_image");
        assert_eq!(code(r#"{"type":"frame","image":"%%%"}"#), "invalid_base64");
        assert_eq!(code(r#"{"type":"frame","image":"AAAA","seq":-1}"#), "invalid_message");
        assert_eq!(code(r#"{"type":"frame","image":"AAAA","seq":"one"}"#), "invalid_message");
        let big = STANDARD.encode([0u8; 120]);
        assert_eq!(code(&format!(r#"{{"type":"frame","image":"{big}"}}"#)), "image_too_large");
        assert_eq!(frame_from_binary(vec![0; 101], 100).unwrap_err().code(), "image_too_large");
    }
}
