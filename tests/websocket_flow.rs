//! The WebSocket workflow on a real local server (port 0) with a real client, driven by scripted faces: the whole
//! message sequence of a genuine run, spoofs, wrong actions, timeouts and garbage, each message checked field by
//! field against the spec.

mod support;

use std::sync::Arc;

use liveness::vision::fake::{empty_frame, FakeFace, ScriptedAnalyzer};
use serde_json::{json, Value};
use support::performances::{genuine, kind_of_action, wrong};
use support::ws_client::{assert_spec_message, without_frame_results, Client, Server};

/// A service over the scripted analyser and an in-memory store, for servers with limits of their own.
fn scripted_service() -> liveness::service::LivenessService {
    liveness::service::LivenessService::new(
        Arc::new(liveness::store::MemoryStore::new()),
        Arc::new(ScriptedAnalyzer { antispoof: true }),
        Arc::new(liveness::service::SystemClock),
        Default::default(),
    )
}

async fn server() -> Server {
    Server::start(Arc::new(ScriptedAnalyzer { antispoof: true })).await
}

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |message| message["type"] == kind
}

/// Sends `frames` and returns every message up to and including the one `stop` accepts.
async fn perform(client: &mut Client, frames: &[FakeFace], stop: impl Fn(&Value) -> bool) -> Vec<Value> {
    for face in frames {
        client.send_binary(face.frame()).await;
    }
    let messages = client.until(stop).await;
    messages.iter().for_each(assert_spec_message);
    messages
}

#[tokio::test]
async fn a_genuine_run_gets_the_full_sequence_and_a_real_verdict() {
    let server = server().await;
    let mut client = server.connect("passive_frames=3&num_challenges=2").await;
    assert_eq!(client.message().await, json!({"type": "phase", "value": "passive"}));

    let passive = perform(&mut client, &[FakeFace::default(); 3], is("challenge_start")).await;
    assert_eq!(passive.len(), 5, "{passive:?}");
    for frame_result in &passive[..3] {
        assert_eq!(frame_result["type"], "frame_result");
        assert_eq!(frame_result["label"], "REAL");
        assert!((frame_result["confidence"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    }
    assert_eq!(passive[3], json!({"type": "phase", "value": "active"}));
    let first = passive[4]["action"].as_str().unwrap().to_owned();

    let messages = perform(&mut client, &genuine(kind_of_action(&first)), is("challenge_start")).await;
    let events = without_frame_results(&messages);
    assert_eq!(events[0], json!({"type": "challenge_result", "action": first, "status": "passed"}));
    let second = events[1]["action"].as_str().unwrap().to_owned();
    assert_ne!(first, second);

    let messages = perform(&mut client, &genuine(kind_of_action(&second)), is("final_result")).await;
    let events = without_frame_results(&messages);
    assert_eq!(events[0], json!({"type": "challenge_result", "action": second, "status": "passed"}));
    let verdict = &events[1];
    assert_eq!(verdict["label"], "REAL");
    assert_eq!(verdict["passed"], json!([first, second]));
    assert!((verdict["confidence"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    client.expect_normal_close().await;
}

#[tokio::test]
async fn a_spoof_ends_in_the_passive_phase_with_a_fake_verdict() {
    let server = server().await;
    let mut client = server.connect("passive_frames=3").await;
    assert_eq!(client.message().await["value"], "passive");
    let print = FakeFace { antispoof_real: Some(0.3), ..FakeFace::default() };
    let messages = perform(&mut client, &[print; 3], is("final_result")).await;
    assert_eq!(messages.len(), 4, "no phase change, no challenge: {messages:?}");
    assert!(messages[..3].iter().all(|m| m["label"] == "FAKE"));
    assert_eq!(messages[3]["label"], "FAKE");
    assert_eq!(messages[3]["passed"], json!([]));
    client.expect_normal_close().await;
}

#[tokio::test]
async fn a_wrong_action_fails_the_challenge_and_the_session() {
    let server = server().await;
    let mut client = server.connect("passive_frames=2&num_challenges=3").await;
    client.message().await;
    let start = perform(&mut client, &[FakeFace::default(); 2], is("challenge_start")).await;
    let action = start.last().unwrap()["action"].as_str().unwrap().to_owned();
    let messages = perform(&mut client, &wrong(kind_of_action(&action)), is("final_result")).await;
    let events = without_frame_results(&messages);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], json!({"type": "challenge_result", "action": action, "status": "failed"}));
    assert_eq!(events[1]["label"], "FAKE");
    assert_eq!(events[1]["passed"], json!([]));
    client.expect_normal_close().await;
}

#[tokio::test]
async fn a_client_that_stops_sending_times_out_without_another_frame() {
    let server = server().await;
    let mut client = server.connect("passive_frames=1&num_challenges=2&timeout_seconds=1").await;
    client.message().await;
    let start = perform(&mut client, &[FakeFace::default()], is("challenge_start")).await;
    let action = start.last().unwrap()["action"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    // Nothing more is sent: the server's own timer ends the challenge.
    let messages = client.until(is("final_result")).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "not before the timeout");
    messages.iter().for_each(assert_spec_message);
    assert_eq!(messages[0], json!({"type": "challenge_result", "action": action, "status": "failed"}));
    assert_eq!(messages[1]["label"], "FAKE");
    client.expect_normal_close().await;
}

#[tokio::test]
async fn bad_messages_get_errors_and_change_nothing() {
    let server = server().await;
    let mut client = server.connect("passive_frames=2").await;
    client.message().await;
    let expect_error = async |client: &mut Client, code: &str| {
        let message = client.message().await;
        assert_spec_message(&message);
        assert_eq!((message["type"].as_str(), message["code"].as_str()), (Some("error"), Some(code)), "{message}");
    };
    client.send_text("hello").await;
    expect_error(&mut client, "invalid_message").await;
    client.send_text(r#"{"type":"ping"}"#).await;
    expect_error(&mut client, "unknown_message_type").await;
    client.send_text(r#"{"type":"frame"}"#).await;
    expect_error(&mut client, "missing_image").await;
    client.send_text(r#"{"type":"frame","image":"%%% not base64"}"#).await;
    expect_error(&mut client, "invalid_base64").await;
    client.send_binary(b"GIF89a not a frame we take".to_vec()).await;
    expect_error(&mut client, "unsupported_image_format").await;
    client.send_binary(vec![0xff; 300 * 1024]).await;
    expect_error(&mut client, "image_too_large").await;

    // The session is untouched: the passive phase still needs both its frames.
    use base64::Engine;
    let as_text = base64::engine::general_purpose::STANDARD.encode(FakeFace::default().frame());
    client.send_text(&json!({"type": "frame", "image": as_text}).to_string()).await;
    assert_eq!(client.message().await["type"], "frame_result");
    let messages = perform(&mut client, &[FakeFace::default()], is("challenge_start")).await;
    assert_eq!(messages[1], json!({"type": "phase", "value": "active"}));
    client.close().await;
}

#[tokio::test]
async fn feedback_is_sent_only_when_asked_for() {
    let server = server().await;
    let no_face = serde_json::to_vec(&empty_frame()).unwrap();

    let mut asked = server.connect("feedback=true").await;
    asked.message().await;
    asked.send_binary(no_face.clone()).await;
    let message = asked.message().await;
    assert_spec_message(&message);
    assert_eq!((message["type"].as_str(), message["code"].as_str()), (Some("feedback"), Some("NO_FACE")));

    // Without it, a frame that does not count is met with silence; the next good frame gets its frame_result.
    let mut plain = server.connect("").await;
    plain.message().await;
    plain.send_binary(no_face).await;
    plain.send_binary(FakeFace::default().frame()).await;
    assert_eq!(plain.message().await["type"], "frame_result");
}

#[tokio::test]
async fn without_a_passive_phase_the_first_challenge_opens_the_connection() {
    let server = server().await;
    let mut client = server.connect("passive_frames=0&num_challenges=1").await;
    assert_eq!(client.message().await, json!({"type": "phase", "value": "active"}));
    let start = client.message().await;
    assert_spec_message(&start);
    assert_eq!(start["type"], "challenge_start");
}

#[tokio::test]
async fn bad_options_and_plain_requests_are_refused_before_the_upgrade() {
    let server = server().await;
    let url = |query: &str| format!("ws://{}/api/v1/liveness/ws?{query}", server.addr);
    for (query, parameter) in [
        ("num_challenges=7", "num_challenges"),
        ("passive_frames=-1", "passive_frames"),
        ("timeout_seconds=abc", "timeout_seconds"),
        ("feedback=maybe", "feedback"),
    ] {
        let error = tokio_tungstenite::connect_async(url(query)).await.unwrap_err();
        let tokio_tungstenite::tungstenite::Error::Http(response) = error else { panic!("{query}: {error}") };
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
        assert_eq!(body["parameter"], parameter, "{body}");
    }
    // A plain GET, not an upgrade.
    let request = axum::http::Request::get("/api/v1/liveness/ws").body(axum::body::Body::empty()).unwrap();
    let response = tower::ServiceExt::oneshot(server.router.clone(), request).await.unwrap();
    assert_eq!(response.status(), 426);
}

#[tokio::test]
async fn a_client_stalled_mid_frame_does_not_hold_up_another() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = server().await;
    // A raw client upgrades, announces a 100 KB binary frame, sends 10 bytes of it and stalls.
    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let upgrade = format!(
        "GET /api/v1/liveness/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    stalled.write_all(upgrade.as_bytes()).await.unwrap();
    let mut response = [0u8; 512];
    let read = stalled.read(&mut response).await.unwrap();
    assert!(String::from_utf8_lossy(&response[..read]).starts_with("HTTP/1.1 101"));
    // FIN + binary, masked, 64-bit length 102400, mask key, then a few payload bytes.
    let mut partial = vec![0x82, 0xff, 0, 0, 0, 0, 0, 1, 0x90, 0, 1, 2, 3, 4];
    partial.extend([0u8; 10]);
    stalled.write_all(&partial).await.unwrap();

    // Meanwhile another user completes a whole check.
    let mut client = server.connect("passive_frames=1&num_challenges=1").await;
    client.message().await;
    let start = perform(&mut client, &[FakeFace::default()], is("challenge_start")).await;
    let action = start.last().unwrap()["action"].as_str().unwrap().to_owned();
    let messages = perform(&mut client, &genuine(kind_of_action(&action)), is("final_result")).await;
    assert_eq!(messages.last().unwrap()["label"], "REAL");
    client.expect_normal_close().await;
    drop(stalled);
}

#[tokio::test]
async fn a_connection_that_sends_no_frame_is_closed_in_time_while_others_are_served() {
    use liveness::http::websocket::SocketLimits;
    use std::time::{Duration, Instant};
    let service = scripted_service();
    let limits = SocketLimits {
        first_frame: Duration::from_millis(800),
        idle: Duration::from_millis(1500),
        ..Default::default()
    };
    let limits = liveness::http::HttpLimits { socket: limits, ..Default::default() };
    let router = liveness::http::router_with(service, 256 * 1024, limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let url = format!("ws://{addr}/api/v1/liveness/ws?passive_frames=3&num_challenges=1");

    let started = Instant::now();
    let idle: Vec<_> =
        futures_util::future::join_all((0..20).map(|_| tokio_tungstenite::connect_async(url.clone()))).await;
    let (mut busy, _) = tokio_tungstenite::connect_async(url.clone()).await.unwrap();
    // A normal client keeps sending and is served the whole time.
    use futures_util::{SinkExt, StreamExt};
    let mut answered = 0;
    for _ in 0..6 {
        busy.send(tokio_tungstenite::tungstenite::Message::Binary(FakeFace::default().frame().into())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_millis(200), busy.next()).await {
        if message.is_text() {
            answered += 1;
        }
    }
    assert!(answered >= 6, "the busy client got its answers ({answered})");
    for connection in idle {
        let (mut socket, _) = connection.unwrap();
        let closed = loop {
            match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("closed in time") {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                    break frame.map(|f| u16::from(f.code))
                }
                Some(Ok(_)) => continue,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(closed, Some(4408), "a clear close code for an idle connection");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_in_time_while_others_are_served() {
    use futures_util::{SinkExt, StreamExt};
    use liveness::http::websocket::SocketLimits;
    use std::time::{Duration, Instant};
    use tokio_tungstenite::tungstenite::Message;
    let service = scripted_service();
    let socket = SocketLimits { send: Duration::from_millis(500), ..Default::default() };
    let router =
        liveness::http::router_with(service, 256 * 1024, liveness::http::HttpLimits { socket, ..Default::default() });
    // Small kernel buffers on both ends (accepted sockets inherit the listener's), so that a client that does not
    // read blocks the server's sends after a few kilobytes rather than megabytes.
    let listening = tokio::net::TcpSocket::new_v4().unwrap();
    listening.set_send_buffer_size(4096).unwrap();
    listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = listening.listen(64).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let url = format!("ws://{addr}/api/v1/liveness/ws?passive_frames=3&num_challenges=1");

    let connecting = tokio::net::TcpSocket::new_v4().unwrap();
    connecting.set_recv_buffer_size(4096).unwrap();
    let stream = connecting.connect(addr).await.unwrap();
    let (stalled, _) = tokio_tungstenite::client_async(url.clone(), stream).await.unwrap();
    let (mut sending, mut receiving) = stalled.split();
    // Each message asks for an `error` answer of about 2 kB (it quotes the unknown type), none of them read.
    const MESSAGES: usize = 400;
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        let message = json!({"type": "x".repeat(2000)}).to_string();
        let mut sent = 0;
        for _ in 0..MESSAGES {
            match tokio::time::timeout(Duration::from_secs(5), sending.send(Message::Text(message.clone().into())))
                .await
            {
                Ok(Ok(())) => sent += 1,
                _ => break,
            }
        }
        sent
    });

    // Meanwhile a normal client is served.
    let (mut busy, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(
        busy.next().await.unwrap().unwrap().into_text().unwrap().as_str(),
        r#"{"type":"phase","value":"passive"}"#
    );
    busy.send(Message::Binary(FakeFace::default().frame().into())).await.unwrap();
    let answer: Value = serde_json::from_str(busy.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(answer["type"], "frame_result");

    tokio::time::sleep(Duration::from_secs(3)).await;
    // Now read what the stalled client was sent: the server gave up on it, so the stream ends early, without the
    // normal close, with far fewer answers than messages.
    let mut answers = 0;
    let ended_by = loop {
        match tokio::time::timeout(Duration::from_secs(5), receiving.next()).await.expect("the stream ends") {
            Some(Ok(Message::Text(_))) => answers += 1,
            Some(Ok(Message::Close(frame))) => break format!("close {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(error)) => break format!("error {error}"),
            None => break "end of stream".to_owned(),
        }
    };
    let sent = sender.await.unwrap();
    assert!(answers < MESSAGES / 2, "dropped early: {answers} answers to {sent} messages, then {ended_by}");
    assert!(!ended_by.starts_with("close Some"), "dropped, not closed normally: {ended_by}");
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
}
