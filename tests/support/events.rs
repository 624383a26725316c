//! The sample API Gateway events in `events/`.

use std::path::Path;

use serde_json::Value;

/// The sample event `events/{name}`.
pub fn event(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("events").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The event with its placeholder API key replaced by `credential`.
pub fn with_credential(mut event: Value, credential: &str) -> Value {
    event["headers"]["authorization"] = Value::String(format!("Bearer {credential}"));
    event
}

/// The event with its placeholder session id replaced.
pub fn for_session(mut event: Value, id: &str) -> Value {
    let placeholder = event["pathParameters"]["session_id"].as_str().unwrap().to_owned();
    let replace = |v: &mut Value| *v = Value::String(v.as_str().unwrap().replace(&placeholder, id));
    replace(&mut event["rawPath"]);
    replace(&mut event["requestContext"]["http"]["path"]);
    event["pathParameters"]["session_id"] = Value::String(id.to_owned());
    event
}
