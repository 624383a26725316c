//! The WebSocket Lambda function invoked in-process with API Gateway WebSocket events, against DynamoDB Local, with
//! a small HTTP server standing in for the API Gateway Management API (`POST /{stage}/@connections/{id}`, `DELETE`
//! to close, 410 for connections it does not know) that records what was pushed to each connection. One test in
//! this binary, because it sets process-wide environment variables.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use liveness::lambda_websocket::{ManagementApi, WebSocketFunction, MANAGEMENT_ENDPOINT_VAR};
use liveness::service::{LivenessService, ServiceSettings, SystemClock};
use liveness::store::dynamodb::DynamoStore;
use liveness::store::{ConnectionStore, StoreError};
use liveness::vision::fake::{FakeFace, ScriptedAnalyzer};
use serde_json::{json, Value};
use support::dynamo_local::DynamoLocal;
use support::events::event;
use support::performances::{genuine, kind_of_action};
use support::ws_client::{assert_spec_message, without_frame_results};

/// What the stand-in Management API saw.
#[derive(Default)]
struct Recorded {
    /// Connections API Gateway would know: those whose `$connect` succeeded.
    open: HashSet<String>,
    posted: HashMap<String, Vec<Value>>,
    closed: Vec<String>,
}

type Shared = Arc<Mutex<Recorded>>;

async fn post(
    State(recorded): State<Shared>,
    Path((_stage, id)): Path<(String, String)>,
    body: String,
) -> impl IntoResponse {
    let mut recorded = recorded.lock().unwrap();
    if !recorded.open.contains(&id) {
        return (StatusCode::GONE, [("x-amzn-errortype", "GoneException")], r#"{"message":"gone"}"#).into_response();
    }
    recorded.posted.entry(id).or_default().push(serde_json::from_str(&body).expect("pushed messages are JSON"));
    StatusCode::OK.into_response()
}

async fn delete(State(recorded): State<Shared>, Path((_stage, id)): Path<(String, String)>) -> impl IntoResponse {
    let mut recorded = recorded.lock().unwrap();
    if !recorded.open.remove(&id) {
        return (StatusCode::GONE, [("x-amzn-errortype", "GoneException")], r#"{"message":"gone"}"#).into_response();
    }
    recorded.closed.push(id);
    StatusCode::NO_CONTENT.into_response()
}

async fn start_management_api() -> (String, Shared) {
    let recorded = Shared::default();
    let router = axum::Router::new()
        .route("/{stage}/@connections/{id}", axum::routing::post(post).delete(delete))
        .with_state(recorded.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (base, recorded)
}

/// A copy of a sample event for another connection.
fn for_connection(mut event: Value, connection: &str) -> Value {
    event["requestContext"]["connectionId"] = Value::String(connection.to_owned());
    event
}

fn binary_message(connection: &str, bytes: &[u8]) -> Value {
    let mut message = for_connection(event("ws-frame-binary.json"), connection);
    message["body"] = Value::String(STANDARD.encode(bytes));
    message
}

struct Harness {
    function: WebSocketFunction,
    recorded: Shared,
    store: DynamoStore,
}

impl Harness {
    /// `$connect`, and what API Gateway does when it succeeds: the connection becomes known.
    async fn connect(&self, connection: &str, query: Value) -> Value {
        let mut connect = for_connection(event("ws-connect.json"), connection);
        connect["queryStringParameters"] = query;
        let response = self.function.handle(connect).await;
        if response["statusCode"] == 200 {
            self.recorded.lock().unwrap().open.insert(connection.to_owned());
        }
        response
    }

    /// Sends events and returns what was pushed to `connection` since the last call.
    async fn send(&self, connection: &str, events: Vec<Value>) -> Vec<Value> {
        for event in events {
            assert_eq!(self.function.handle(event).await, json!({"statusCode": 200}));
        }
        let pushed = self.recorded.lock().unwrap().posted.remove(connection).unwrap_or_default();
        pushed.iter().for_each(assert_spec_message);
        pushed
    }

    fn frames(connection: &str, faces: &[FakeFace]) -> Vec<Value> {
        faces.iter().map(|face| binary_message(connection, &face.frame())).collect()
    }

    fn closed(&self, connection: &str) -> bool {
        self.recorded.lock().unwrap().closed.iter().any(|c| c == connection)
    }
}

#[tokio::test]
async fn the_websocket_function_pushes_the_same_sequence_as_the_local_server() {
    let server = DynamoLocal::start(None);
    let store = server.store().await;
    let (base, recorded) = start_management_api().await;
    server.become_the_environment(&[(MANAGEMENT_ENDPOINT_VAR, base)]);

    // Scripted faces through the real store and Management API client.
    let service = LivenessService::new(
        Arc::new(store.clone()),
        Arc::new(ScriptedAnalyzer { antispoof: true }),
        Arc::new(SystemClock),
        ServiceSettings::default(),
    );
    let function = WebSocketFunction::new(service, Arc::new(store.clone()), 96 * 1024, ManagementApi::from_env().await);
    let h = Harness { function, recorded: recorded.clone(), store };

    // A genuine run: nothing can be pushed during $connect, so the opening comes with the first frame's results.
    let connect = h.connect("genuine", json!({"passive_frames": "3", "num_challenges": "2"})).await;
    assert_eq!(connect["statusCode"], 200, "{connect}");
    assert!(h.send("genuine", vec![]).await.is_empty(), "nothing is pushed during $connect");
    let passive = h.send("genuine", Harness::frames("genuine", &[FakeFace::default(); 3])).await;
    let types: Vec<_> = passive.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["phase", "frame_result", "frame_result", "frame_result", "phase", "challenge_start"]);
    assert_eq!(passive[0], json!({"type": "phase", "value": "passive"}));
    assert_eq!(passive[4], json!({"type": "phase", "value": "active"}));
    let first = passive[5]["action"].as_str().unwrap().to_owned();
    let events =
        without_frame_results(&h.send("genuine", Harness::frames("genuine", &genuine(kind_of_action(&first)))).await);
    assert_eq!(events[0], json!({"type": "challenge_result", "action": first, "status": "passed"}));
    assert_eq!(events[1]["type"], "challenge_start");
    let second = events[1]["action"].as_str().unwrap().to_owned();
    let events =
        without_frame_results(&h.send("genuine", Harness::frames("genuine", &genuine(kind_of_action(&second)))).await);
    assert_eq!(events[0], json!({"type": "challenge_result", "action": second, "status": "passed"}));
    assert_eq!(events[1]["type"], "final_result");
    assert_eq!(events[1]["label"], "REAL");
    assert_eq!(events[1]["passed"], json!([first, second]));
    assert!(h.closed("genuine"), "the function closes the connection after the verdict");
    assert_eq!(h.store.binding("genuine").await, Err(StoreError::NotFound), "and forgets it");

    // A spoof ends in the passive phase.
    h.connect("print", json!({"passive_frames": "3"})).await;
    let print = FakeFace { antispoof_real: Some(0.3), ..FakeFace::default() };
    let pushed = h.send("print", Harness::frames("print", &[print; 3])).await;
    assert_eq!(pushed.last().unwrap()["label"], "FAKE");
    assert!(pushed.iter().all(|m| m["type"] != "challenge_start"));
    assert!(h.closed("print"));

    // Garbage gets errors and changes nothing: the opening still comes with the first real frame.
    h.connect("garbage", json!({"passive_frames": "2", "feedback": "true"})).await;
    let mut bad_base64 = binary_message("garbage", b"x");
    bad_base64["body"] = Value::String("%%%".into());
    let mut text = for_connection(event("ws-frame-text.json"), "garbage");
    text["body"] = Value::String(r#"{"type":"hello"}"#.into());
    let pushed = h.send("garbage", vec![bad_base64, text, binary_message("garbage", b"not an image")]).await;
    let codes: Vec<_> = pushed.iter().map(|m| (m["type"].as_str().unwrap(), m["code"].as_str().unwrap())).collect();
    assert_eq!(
        codes,
        [("error", "invalid_base64"), ("error", "unknown_message_type"), ("error", "unsupported_image_format")]
    );
    let no_face = serde_json::to_vec(&liveness::vision::fake::empty_frame()).unwrap();
    let pushed = h.send("garbage", vec![binary_message("garbage", &no_face)]).await;
    assert_eq!(pushed[0], json!({"type": "phase", "value": "passive"}));
    assert_eq!(pushed[1]["code"], "NO_FACE", "feedback was asked for at $connect: {pushed:?}");

    // A client that left: the push meets 410 and the binding is dropped.
    h.connect("leaver", json!({})).await;
    h.recorded.lock().unwrap().open.remove("leaver");
    h.send("leaver", Harness::frames("leaver", &[FakeFace::default()])).await;
    assert_eq!(h.store.binding("leaver").await, Err(StoreError::NotFound));

    // A message on a connection with no session, and a $disconnect.
    h.recorded.lock().unwrap().open.insert("stranger".into());
    let pushed = h.send("stranger", Harness::frames("stranger", &[FakeFace::default()])).await;
    assert_eq!(
        pushed,
        [json!({"type": "error", "code": "session_not_found", "message": "this connection has no session"})]
    );
    assert!(h.closed("stranger"));
    h.connect("quitter", json!({})).await;
    assert!(h.store.binding("quitter").await.is_ok());
    h.send("quitter", vec![for_connection(event("ws-disconnect.json"), "quitter")]).await;
    assert_eq!(h.store.binding("quitter").await, Err(StoreError::NotFound));

    // Bad options refuse the connection itself.
    let refused = h.connect("refused", json!({"num_challenges": "12"})).await;
    assert_eq!(refused["statusCode"], 400);
    let problem: Value = serde_json::from_str(refused["body"].as_str().unwrap()).unwrap();
    assert_eq!(problem["parameter"], "num_challenges");

    // The deployed function, built from the environment with the real models, on the sample events. It always
    // authenticates: the relying party creates the session over REST with its key (a policy that shows scores),
    // and the connection joins it with the client token.
    let deployed = WebSocketFunction::from_env().await.expect("the function starts");
    let h = Harness { function: deployed, recorded, store: h.store };
    let connection = event("ws-connect.json")["requestContext"]["connectionId"].as_str().unwrap().to_owned();
    let refused = h.connect(&connection, json!({"passive_frames": "3"})).await;
    assert_eq!(refused["statusCode"], 401, "no session of a relying party: {refused}");
    let config = liveness::config::Config::from_env().unwrap();
    let policy = liveness::domain::Policy { client_scores: true, ..Default::default() };
    let (_, key) =
        liveness::app::App::operator(&config).await.unwrap().tenants.create("WS tenant", policy).await.unwrap();
    let create = liveness::lambda::function_router(liveness::lambda::Models::Skip).await.unwrap();
    let mut create_event = support::events::with_credential(event("create.json"), &key.key);
    create_event["rawQueryString"] = json!("interface=websocket&passive_frames=3");
    create_event["queryStringParameters"] = json!({"interface": "websocket", "passive_frames": "3"});
    let created = liveness::lambda::handle_event(create, create_event).await;
    assert_eq!(created["statusCode"], 201, "{created}");
    let created: Value = serde_json::from_str(created["body"].as_str().unwrap()).unwrap();
    let mut query = event("ws-connect.json")["queryStringParameters"].clone();
    query["session_id"] = created["session_id"].clone();
    query["token"] = created["client_token"].clone();
    assert_eq!(h.connect(&connection, query).await["statusCode"], 200);
    let pushed = h.send(&connection, vec![event("ws-frame-text.json"), event("ws-frame-binary.json")]).await;
    assert_eq!(pushed[0], json!({"type": "phase", "value": "passive"}));
    let results: Vec<_> =
        pushed[1..].iter().map(|m| (m["type"].as_str().unwrap(), m["label"].as_str().unwrap())).collect();
    assert_eq!(results, [("frame_result", "REAL"), ("frame_result", "REAL")], "{pushed:?}");
    h.send(&connection, vec![event("ws-disconnect.json")]).await;
    assert_eq!(h.store.binding(&connection).await, Err(StoreError::NotFound));
}
