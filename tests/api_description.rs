//! The API descriptions cannot drift from the code: every route of the router is in the OpenAPI document and every
//! documented operation is routed (probed method by method), every problem `code` the code can produce is
//! documented and none that it cannot, and every WebSocket message the server can send has the shape the AsyncAPI
//! document gives it. `tests/schemathesis.rs` then tests the running server against the OpenAPI document.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use liveness::domain::{Challenge, ChallengeType, EndReason, Feedback};
use liveness::http::{ASYNCAPI, OPENAPI};
use liveness::service::{LivenessService, ServiceSettings, SystemClock};
use liveness::store::MemoryStore;
use liveness::vision::fake::ScriptedAnalyzer;
use liveness::websocket::protocol::frame_from_text;
use liveness::websocket::{Label, Phase, ServerMessage, Status};
use serde_json::{json, Value};
use tower::ServiceExt;

/// The source that declares the API's routes; the demo page's own routes (`/`, `/app.js`, `/style.css`) are
/// declared elsewhere and are not part of the API.
const ROUTER_SOURCE: &str = include_str!("../src/http/mod.rs");

/// Sources whose problem codes reach clients.
const CODE_SOURCES: [&str; 6] = [
    include_str!("../src/http/mod.rs"),
    include_str!("../src/http/extract.rs"),
    include_str!("../src/http/problem.rs"),
    include_str!("../src/http/websocket.rs"),
    include_str!("../src/service/mod.rs"),
    include_str!("../src/vision/decode.rs"),
];

const METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

fn openapi() -> Value {
    serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON")
}

/// The string literal that opens each text following `marker` in `source` (after white space).
fn literals_after<'a>(source: &'a str, marker: &str) -> Vec<&'a str> {
    source
        .match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = source[at + marker.len()..].trim_start().strip_prefix('"')?;
            Some(&rest[..rest.find('"')?])
        })
        .collect()
}

/// The string literal arguments of each call of `function` (`Problem::new(status, "code", detail)`: the code).
fn literal_arguments<'a>(source: &'a str, function: &str) -> Vec<&'a str> {
    source
        .match_indices(function)
        .filter_map(|(at, _)| {
            let rest = &source[at + function.len()..];
            let quote = rest.find('"')?;
            // A call whose code is not a literal (`error.code()`) closes a parenthesis first.
            (rest.find(')')? > quote).then(|| &rest[quote + 1..quote + 1 + rest[quote + 1..].find('"').unwrap()])
        })
        .collect()
}

/// Codes only the operator's command line gives (never an HTTP answer).
const COMMAND_LINE_CODES: [&str; 1] = ["tenant_not_found"];

fn routed_paths() -> BTreeSet<String> {
    literals_after(ROUTER_SOURCE, ".route(").into_iter().map(str::to_owned).collect()
}

fn router() -> axum::Router {
    let service = LivenessService::new(
        Arc::new(MemoryStore::new()),
        Arc::new(ScriptedAnalyzer { antispoof: true }),
        Arc::new(SystemClock),
        ServiceSettings::default(),
    );
    liveness::http::router(service, 256 * 1024)
}

async fn probe(router: &axum::Router, method: Method, path: &str) -> (StatusCode, Value) {
    let uri = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
    let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_route_is_described_and_every_described_operation_routed() {
    let router = router();
    let request = Request::get("/openapi.json").body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let served: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let document = openapi();
    assert_eq!(served, document, "the served document is the one in the repository");
    assert_eq!(document["openapi"], "3.1.0");

    let documented: BTreeSet<String> = document["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(documented, routed_paths(), "documented paths (left) and routed paths (right) differ");

    for (path, item) in document["paths"].as_object().unwrap() {
        for method in METHODS {
            let operation = &item[method.as_str().to_lowercase()];
            let (status, body) = probe(&router, method.clone(), path).await;
            let routed = !(status == StatusCode::METHOD_NOT_ALLOWED && body["code"] == "method_not_allowed");
            assert_eq!(routed, operation.is_object(), "{method} {path}: routed {routed}, documented {}", !routed);
            if routed {
                let statuses = operation["responses"].as_object().unwrap();
                assert!(statuses.contains_key(status.as_str()), "{method} {path} answered {status}, undocumented");
            }
        }
    }
}

/// Every problem code in the document.
fn documented_codes(value: &Value, codes: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(values)) = map.get("code").and_then(|code| code.get("enum")) {
                codes.extend(values.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            map.values().for_each(|inner| documented_codes(inner, codes));
        }
        Value::Array(values) => values.iter().for_each(|inner| documented_codes(inner, codes)),
        _ => {}
    }
}

/// Every problem code the code gives: `Problem::new(status, "code", ...)` and the arms of the errors' `code()`.
fn produced_codes() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for source in CODE_SOURCES {
        codes.extend(literal_arguments(source, "Problem::new(").into_iter().map(str::to_owned));
        if let Some(start) = source.find("pub fn code(&self) -> &'static str {") {
            let body = &source[start..start + source[start..].find("\n    }\n").unwrap()];
            codes.extend(literals_after(body, "=> ").into_iter().map(str::to_owned));
        }
    }
    codes
}

#[test]
fn every_problem_code_is_described_and_every_described_code_produced() {
    let mut documented = BTreeSet::new();
    documented_codes(&openapi(), &mut documented);
    let mut produced = produced_codes();
    for code in COMMAND_LINE_CODES {
        assert!(produced.remove(code), "{code} is still a code");
    }
    assert!(produced.len() > 30, "the scan found the codes: {produced:?}");
    let undocumented: Vec<_> = produced.difference(&documented).collect();
    let unproduced: Vec<_> = documented.difference(&produced).collect();
    assert!(undocumented.is_empty(), "codes the document lacks: {undocumented:?}");
    assert!(unproduced.is_empty(), "documented codes nothing produces: {unproduced:?}");
}

/// Whether `message` has the shape of the AsyncAPI payload `schema`: every required member, no other member,
/// constants and enumerations respected.
fn conforms(message: &Value, schema: &Value) -> Result<(), String> {
    let object = message.as_object().ok_or("not an object")?;
    let properties = schema["properties"].as_object().ok_or("the schema has no properties")?;
    for required in schema["required"].as_array().unwrap() {
        let name = required.as_str().unwrap();
        if !object.contains_key(name) {
            return Err(format!("missing {name}"));
        }
    }
    for (name, value) in object {
        let property = properties.get(name).ok_or(format!("undocumented member {name}"))?;
        if let Some(constant) = property.get("const") {
            if constant != value {
                return Err(format!("{name} is {value}, documented {constant}"));
            }
        }
        let allowed = property.get("enum").or_else(|| property.pointer("/items/enum"));
        if let Some(Value::Array(allowed)) = allowed {
            let values = value.as_array().cloned().unwrap_or_else(|| vec![value.clone()]);
            if let Some(bad) = values.iter().find(|v| !allowed.contains(v)) {
                return Err(format!("{name} is {bad}, not one of {allowed:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn every_websocket_message_has_its_described_shape() {
    let document: Value = serde_json::from_str(ASYNCAPI).expect("the AsyncAPI document is JSON");
    assert_eq!(document["asyncapi"], "3.0.0");
    let messages = document["components"]["messages"].as_object().unwrap();
    let schema_of = |kind: &str| {
        messages.values().map(|m| &m["payload"]).find(|p| p.pointer("/properties/type/const") == Some(&json!(kind)))
    };

    let challenge = Challenge { kind: ChallengeType::TurnLeft, timeout_seconds: 5.0 };
    let mut sent = vec![
        ServerMessage::Phase { value: Phase::Passive },
        ServerMessage::Phase { value: Phase::Active },
        ServerMessage::FrameResult { confidence: Some(0.874), label: Some(Label::Real) },
        ServerMessage::FrameResult { confidence: None, label: None },
        ServerMessage::challenge_start(&challenge),
        ServerMessage::ChallengeResult { action: "LOOK LEFT".into(), status: Status::Failed },
        ServerMessage::FinalResult {
            label: Label::Fake,
            passed: vec!["BLINK".into()],
            session_id: uuid::Uuid::new_v4(),
            confidence: Some(0.2),
            advice: EndReason::ChallengeTimeout.advice().map(str::to_owned),
        },
        ServerMessage::FinalResult {
            label: Label::Real,
            passed: vec![],
            session_id: uuid::Uuid::nil(),
            confidence: None,
            advice: None,
        },
        ServerMessage::error("invalid_base64", "\"image\" is not valid base64"),
    ];
    sent.extend(
        [Feedback::NoFace, Feedback::Blurry]
            .map(|code| ServerMessage::Feedback { code, message: code.message().to_owned() }),
    );
    sent.extend(
        ChallengeType::WEBSOCKET.map(|kind| ServerMessage::challenge_start(&Challenge { kind, timeout_seconds: 1.0 })),
    );
    let mut kinds = BTreeSet::new();
    for message in &sent {
        let wire: Value = serde_json::from_str(&message.to_json()).unwrap();
        let kind = wire["type"].as_str().unwrap().to_owned();
        let schema = schema_of(&kind).unwrap_or_else(|| panic!("no message {kind} in the AsyncAPI document"));
        conforms(&wire, schema).unwrap_or_else(|e| panic!("{wire}: {e}"));
        kinds.insert(kind);
    }
    let sendable: BTreeSet<String> = document["operations"]["sendEvents"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["$ref"].as_str().unwrap().rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, sendable, "every message the server sends, and only those, is described");

    // The documented client message is what the server parses.
    let frame = json!({"type": "frame", "image": "/9j/4AAQ", "seq": 3});
    conforms(&frame, &messages["frame"]["payload"]).unwrap();
    assert_eq!(frame_from_text(&frame.to_string(), 1024).unwrap().seq, Some(3));
}
