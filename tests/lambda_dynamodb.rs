//! The four Lambda functions end to end as deployed: each built from the environment exactly as its binary does
//! (`function_router`), over a real DynamoDB-compatible server on loopback, fed the raw sample events of `events/`
//! through the function handler. One test in this binary, because it sets process-wide environment variables.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use liveness::lambda::{function_router, handle_event, Models};
use serde_json::Value;
use support::dynamo_local::{DynamoLocal, TABLE};
use support::events::{event, for_session, with_credential};

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().expect("a text body")).expect("a JSON body")
}

async fn stored_item(server: &DynamoLocal, id: &str) -> HashMap<String, AttributeValue> {
    let read = server.client().get_item().table_name(TABLE).key("session_id", AttributeValue::S(id.to_owned()));
    read.consistent_read(true).send().await.unwrap().item.expect("the session is stored")
}

/// A stand-in for Secrets Manager's `GetSecretValue` on loopback (its JSON protocol), serving one secret; counts
/// the reads.
async fn secrets_manager(name: &'static str, text: String) -> (String, Arc<AtomicUsize>) {
    use axum::http::HeaderMap;
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (text, counted) = (text.clone(), counted.clone());
            async move {
                assert_eq!(headers["x-amz-target"], "secretsmanager.GetSecretValue");
                let request: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(request["SecretId"], name);
                counted.fetch_add(1, Ordering::SeqCst);
                let arn = format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}");
                let answer = serde_json::json!({"ARN": arn, "Name": name, "SecretString": text, "VersionId": "v1"});
                ([("content-type", "application/x-amz-json-1.1")], answer.to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, reads)
}

#[tokio::test]
async fn functions_serve_a_session_in_dynamodb() {
    let mut server = DynamoLocal::start(None);
    server.store().await; // the table, as SAM would have created it
                          // The signing keys come from Secrets Manager, as deployed (the operator made the text with the CLI's code).
    let secret = liveness::verdicts::SigningKeys::new_secret_text(None).unwrap();
    let kid = liveness::verdicts::SigningKeys::from_secret_text(&secret).unwrap().current_kid().to_owned();
    let (secrets_url, secret_reads) = secrets_manager("liveness-signing-keys", secret).await;
    server.become_the_environment(&[
        ("LIVENESS_SESSION_TTL_SECONDS", "120".to_owned()),
        ("LIVENESS_SIGNING_KEY_SECRET", "liveness-signing-keys".to_owned()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", secrets_url),
    ]);
    let create = function_router(Models::Skip).await.expect("the create function starts");
    let frame = function_router(Models::Load).await.expect("the frame function starts");
    let get = function_router(Models::Skip).await.expect("the get function starts");
    let get_for_keys = get.clone();
    let cancel = function_router(Models::Skip).await.expect("the cancel function starts");

    // The functions always authenticate: a tenant made as the operator would, with the CLI's code, in DynamoDB.
    let config = liveness::config::Config::from_env().unwrap();
    let tenants = liveness::app::App::operator(&config).await.unwrap().tenants;
    let (_, key) = tenants.create("Lambda tenant", liveness::domain::Policy::default()).await.unwrap();
    let event = |name: &str| with_credential(event(name), &key.key);
    let anonymous = handle_event(create.clone(), support::events::event("create.json")).await;
    assert_eq!(anonymous["statusCode"], 401, "the sample event's placeholder key is refused");
    assert_eq!(secret_reads.load(Ordering::SeqCst), 4, "each function read the keys once, at start");
    let mut jwks_event = support::events::event("get.json");
    jwks_event["rawPath"] = Value::String("/.well-known/jwks.json".into());
    jwks_event["requestContext"]["http"]["path"] = Value::String("/.well-known/jwks.json".into());
    let jwks = handle_event(get_for_keys.clone(), jwks_event).await;
    assert_eq!(jwks["statusCode"], 200, "{jwks}");
    assert_eq!(body(&jwks)["keys"][0]["kid"], kid.as_str(), "the published key is the secret's");

    let created = handle_event(create, event("create.json")).await;
    assert_eq!(created["statusCode"], 201, "{created}");
    let id = body(&created)["session_id"].as_str().unwrap().to_owned();

    // The item as DynamoDB holds it: versioned, with the TTL attribute the table expires it by.
    let item = stored_item(&server, &id).await;
    assert_eq!(item["version"], AttributeValue::N("0".into()));
    let expires_at: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now + 110..=now + 130).contains(&expires_at), "expires_at {expires_at} vs now {now}");

    let analysed = handle_event(frame.clone(), for_session(event("frame.json"), &id)).await;
    assert_eq!(analysed["statusCode"], 200, "{analysed}");
    assert_eq!(body(&analysed)["state"], "in_progress");
    assert_eq!(stored_item(&server, &id).await["version"], AttributeValue::N("1".into()));

    let mut bad_base64 = for_session(event("frame.json"), &id);
    bad_base64["body"] = Value::String("%%% not base64".into());
    let rejected = handle_event(frame.clone(), bad_base64).await;
    assert_eq!(rejected["statusCode"], 400);
    assert_eq!(body(&rejected)["code"], "invalid_base64");
    assert_eq!(stored_item(&server, &id).await["version"], AttributeValue::N("1".into()), "a rejected frame wrote");

    let read = handle_event(get.clone(), for_session(event("get.json"), &id)).await;
    assert_eq!(read["statusCode"], 200, "{read}");
    assert_eq!(body(&read)["session_id"], id.as_str());
    assert_eq!(body(&read)["expires_at"], expires_at);

    let cancelled = handle_event(cancel, for_session(event("delete.json"), &id)).await;
    assert_eq!(cancelled["statusCode"], 200, "{cancelled}");
    let gone = handle_event(get.clone(), for_session(event("get.json"), &id)).await;
    assert_eq!(gone["statusCode"], 404);
    let late_frame = handle_event(frame, for_session(event("frame.json"), &id)).await;
    assert_eq!(late_frame["statusCode"], 404);

    // The database going away is the service's problem, not the client's: 503 with a time to retry.
    server.stop();
    let down = handle_event(get, for_session(event("get.json"), &id)).await;
    assert_eq!(down["statusCode"], 503, "{down}");
    assert!(down["headers"]["retry-after"].is_string(), "{down}");
    assert_eq!(body(&down)["code"], "store_unavailable");
}
