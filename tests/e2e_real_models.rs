//! End to end with the real models: sessions driven through the HTTP `Router` by sequences of real frames.
//!
//! The genuine sequence is the adult in `../shared/testdata/video/` looking down at a tablet, cut out of the
//! video with `ffmpeg` (installed by `scripts/test.sh`). Time is an injected clock stepping 120 ms a frame
//! (every third frame of the 25 fps video).

mod support;

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use liveness::domain::{ChallengeType, SessionState};
use liveness::service::{Caller, CreateOptions, LivenessService, ManualClock, ServiceSettings};
use liveness::store::MemoryStore;
use liveness::vision::{AnalysedFrame, AnalysisError, FaceSearch, FrameAnalyzer, FrameObservation, UnscoredFace};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::real_models::{analyzer, testdata, video_jpegs};
use support::ws_client::{assert_spec_message, without_frame_results, Client, Server};
use tower::ServiceExt;

const FRAME_MS: i64 = 120;

/// Every third frame of video frames 200-328, cropped to the teacher, as JPEG bytes.
fn teacher_frames() -> &'static [Vec<u8>] {
    static FRAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FRAMES
        .get_or_init(|| video_jpegs("teacher", "select=between(n\\,200\\,328)*not(mod(n\\,3)),crop=400:400:550:0", &[]))
}

struct Api {
    router: axum::Router,
    clock: Arc<ManualClock>,
}

impl Api {
    fn new() -> Api {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let service =
            LivenessService::new(Arc::new(MemoryStore::new()), analyzer(), clock.clone(), ServiceSettings::default());
        Api { router: liveness::http::router(service, 5 * 1024 * 1024), clock }
    }

    async fn call(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// A session asking first for `kind`, drawn at random until one does: alone if `kind` is a head movement, else
    /// followed by one.
    async fn session_asking(&self, kind: &str) -> String {
        // Every session holds a head movement, so an expression can only come first of two.
        let count = if kind.starts_with("TURN_") || kind.starts_with("LOOK_") { 1 } else { 2 };
        for _ in 0..200 {
            let path = format!("/api/v1/liveness/sessions?num_challenges={count}");
            let request = Request::post(path).body(Body::empty()).unwrap();
            let (status, body) = self.call(request).await;
            assert_eq!(status, StatusCode::CREATED);
            if body["challenges"][0]["type"] == kind {
                return body["session_id"].as_str().unwrap().to_owned();
            }
        }
        panic!("no {kind} challenge in 200 draws");
    }

    /// Posts frames until the session ends; returns the last frame response.
    async fn drive(&self, id: &str, frames: &[Vec<u8>]) -> Value {
        let mut last = Value::Null;
        for frame in frames {
            let request = Request::post(format!("/api/v1/liveness/sessions/{id}/frame"))
                .header(header::CONTENT_TYPE, "image/jpeg")
                .body(Body::from(frame.clone()))
                .unwrap();
            let (status, body) = self.call(request).await;
            self.clock.advance_ms(FRAME_MS);
            if status != StatusCode::OK {
                assert_eq!(status, StatusCode::CONFLICT, "{body}");
                break;
            }
            last = body;
            if last["session_complete"] == true {
                break;
            }
        }
        last
    }

    async fn state(&self, id: &str) -> Value {
        let request = Request::get(format!("/api/v1/liveness/sessions/{id}")).body(Body::empty()).unwrap();
        self.call(request).await.1
    }
}

/// The real analyser, counting the faces it scores for passive anti-spoofing after analysis.
struct CountingScores(AtomicUsize);

impl FrameAnalyzer for CountingScores {
    fn analyze(&self, bytes: &[u8], search: FaceSearch<'_>) -> Result<FrameObservation, AnalysisError> {
        analyzer().analyze(bytes, search)
    }
    fn analyze_unscored(&self, bytes: &[u8], search: FaceSearch<'_>) -> Result<AnalysedFrame, AnalysisError> {
        analyzer().analyze_unscored(bytes, search)
    }
    fn score(&self, face: &UnscoredFace) -> Result<f32, AnalysisError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        analyzer().score(face)
    }
    fn has_antispoof(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn only_the_frames_that_need_it_are_scored_and_the_real_person_still_passes() {
    let counting = Arc::new(CountingScores(AtomicUsize::new(0)));
    let clock = Arc::new(ManualClock::new(1_000_000));
    let service =
        LivenessService::new(Arc::new(MemoryStore::new()), counting.clone(), clock.clone(), ServiceSettings::default());
    let id = loop {
        let session = service.create(CreateOptions { num_challenges: Some(1), ..Default::default() }).await.unwrap();
        if session.challenges[0].kind == ChallengeType::LookDown {
            break session.id;
        }
    };
    // The teacher rests for a second, as a user reading the instruction would, then looks down.
    let frames: Vec<Vec<u8>> =
        std::iter::repeat_n(teacher_frames()[0].clone(), 12).chain(teacher_frames()[..25].to_vec()).collect();
    let (mut sent, mut shown) = (0, 0);
    for frame in frames {
        let result = service.submit_frame(&Caller::Operator, id, frame).await.unwrap();
        clock.advance_ms(FRAME_MS);
        sent += 1;
        shown += usize::from(result.outcome.antispoof_real.is_some());
        if result.outcome.passed {
            assert!(result.outcome.antispoof_real.is_some(), "the frame that passes is scored");
        }
        if result.session.state.is_terminal() {
            break;
        }
    }
    let session = service.get(&Caller::Operator, id).await.unwrap();
    assert_eq!(session.state, SessionState::Completed, "{:?}", session.end_reason);
    assert_eq!(session.is_live, Some(true));
    let scored = counting.0.load(Ordering::SeqCst);
    assert_eq!(scored, shown, "every score computed counts");
    assert!(scored + 5 <= sent, "resting frames skipped: {scored} scored of {sent}");
    // Each sampled resting score stands for three frames, so the count ends within two of the frames sent.
    let stood_for = session.passive.count as usize;
    assert!(stood_for.abs_diff(sent) <= 2, "the scores stand for every frame: {stood_for} of {sent}");
    println!("{scored} of {sent} frames scored");
}

fn repeated(file: &str, times: usize) -> Vec<Vec<u8>> {
    vec![std::fs::read(testdata(file)).unwrap(); times]
}

#[tokio::test]
async fn a_real_person_looking_down_passes() {
    let api = Api::new();
    let id = api.session_asking("LOOK_DOWN").await;
    let last = api.drive(&id, &teacher_frames()[..25]).await;
    assert_eq!(last["state"], "completed", "{last}");
    assert_eq!(last["passed"], true);
    assert_eq!(last["challenge_type"], "LOOK_DOWN");
    assert_eq!(last["is_live"], true);
    assert_eq!(api.state(&id).await["is_live"], true);
}

#[tokio::test]
async fn the_same_real_person_asked_to_look_up_fails() {
    let api = Api::new();
    let id = api.session_asking("LOOK_UP").await;
    let last = api.drive(&id, &teacher_frames()[..25]).await;
    assert_eq!(last["state"], "failed", "{last}");
    assert_eq!(last["is_live"], false);
    assert_eq!(last["end_reason"], "WRONG_ACTION");
}

#[tokio::test]
async fn spoof_samples_fail() {
    for file in ["spoof/minivision_F1_print_attack.jpg", "spoof/minivision_F2_screen_replay.jpg"] {
        let api = Api::new();
        let id = api.session_asking("SMILE").await;
        api.drive(&id, &repeated(file, 60)).await;
        let state = api.state(&id).await;
        assert_eq!(state["state"], "failed", "{file}: {state}");
        assert_eq!(state["is_live"], false, "{file}");
    }
}

#[tokio::test]
async fn a_static_live_photo_fails_every_challenge() {
    for kind in ["TURN_LEFT", "BLINK", "SMILE", "OPEN_MOUTH"] {
        let api = Api::new();
        let id = api.session_asking(kind).await;
        api.drive(&id, &repeated("spoof/minivision_T1_live.jpg", 50)).await;
        let state = api.state(&id).await;
        assert_eq!(state["state"], "failed", "{kind}: {state}");
        assert_eq!(state["end_reason"], "CHALLENGE_TIMEOUT", "{kind}");
        assert_eq!(state["is_live"], false);
    }
}

#[tokio::test]
async fn a_photo_of_someone_else_swapped_in_fails() {
    let api = Api::new();
    let id = api.session_asking("SMILE").await;
    let mut frames = repeated("expression/pexels4195444_neutral_frontal.jpg", 3);
    frames.extend(repeated("expression/pexels3780866_smile_frontal.jpg", 3));
    let last = api.drive(&id, &frames).await;
    assert_eq!(last["state"], "failed", "{last}");
    assert_eq!(last["is_live"], false);
}

#[tokio::test]
async fn frames_without_a_single_face_get_feedback() {
    let api = Api::new();
    let id = api.session_asking("BLINK").await;
    let last = api.drive(&id, &repeated("noface/skimage_coffee.png", 1)).await;
    assert_eq!(last["feedback"], "NO_FACE");
    let last = api.drive(&id, &repeated("multi/pexels5919213_three_faces.jpg", 1)).await;
    assert_eq!(last["feedback"], "MULTIPLE_FACES");
}

/// Opens WebSocket sessions until one asks for `action` after its passive phase of `passive` teacher frames.
async fn websocket_asking(server: &Server, action: &str, passive: usize) -> Client {
    for _ in 0..80 {
        let query = format!("passive_frames={passive}&num_challenges=1&timeout_seconds=30");
        let mut client = server.connect(&query).await;
        assert_eq!(client.message().await["value"], "passive");
        for frame in &teacher_frames()[..passive] {
            client.send_binary(frame.clone()).await;
        }
        let messages = client.until(|m| m["type"] == "challenge_start").await;
        messages.iter().for_each(assert_spec_message);
        assert_eq!(messages.iter().filter(|m| m["type"] == "frame_result").count(), passive, "{messages:?}");
        assert!(messages.iter().all(|m| m["type"] != "frame_result" || m["label"] == "REAL"), "{messages:?}");
        if messages.last().unwrap()["action"] == action {
            return client;
        }
        client.close().await;
    }
    panic!("no {action} challenge in 80 sessions");
}

#[tokio::test]
async fn over_websocket_a_real_person_looking_down_is_real() {
    let server = Server::start(analyzer()).await;
    let mut client = websocket_asking(&server, "LOOK DOWN", 3).await;
    for frame in &teacher_frames()[3..25] {
        client.send_binary(frame.clone()).await;
    }
    let messages = client.until(|m| m["type"] == "final_result").await;
    messages.iter().for_each(assert_spec_message);
    let events = without_frame_results(&messages);
    assert_eq!(events[0], serde_json::json!({"type": "challenge_result", "action": "LOOK DOWN", "status": "passed"}));
    assert_eq!(events[1]["label"], "REAL", "{events:?}");
    assert_eq!(events[1]["passed"], serde_json::json!(["LOOK DOWN"]));
    assert!(events[1]["confidence"].as_f64().unwrap() >= 0.5);
    client.expect_normal_close().await;
}

#[tokio::test]
async fn over_websocket_the_same_person_asked_to_look_up_is_fake() {
    let server = Server::start(analyzer()).await;
    let mut client = websocket_asking(&server, "LOOK UP", 3).await;
    for frame in &teacher_frames()[3..25] {
        client.send_binary(frame.clone()).await;
    }
    let events = without_frame_results(&client.until(|m| m["type"] == "final_result").await);
    assert_eq!(events[0], serde_json::json!({"type": "challenge_result", "action": "LOOK UP", "status": "failed"}));
    assert_eq!(events[1]["label"], "FAKE");
    client.expect_normal_close().await;
}

#[tokio::test]
async fn over_websocket_spoof_samples_are_fake_in_the_passive_phase() {
    let server = Server::start(analyzer()).await;
    for file in ["spoof/minivision_F1_print_attack.jpg", "spoof/minivision_F2_screen_replay.jpg"] {
        let mut client = server.connect("passive_frames=5").await;
        client.message().await;
        for frame in repeated(file, 5) {
            client.send_binary(frame).await;
        }
        let messages = client.until(|m| m["type"] == "final_result").await;
        messages.iter().for_each(assert_spec_message);
        assert!(
            messages.iter().all(|m| m["type"] != "phase" && m["type"] != "challenge_start"),
            "{file}: {messages:?}"
        );
        assert!(messages[..messages.len() - 1].iter().all(|m| m["label"] == "FAKE"), "{file}: {messages:?}");
        assert_eq!(messages.last().unwrap()["label"], "FAKE");
        assert_eq!(messages.last().unwrap()["passed"], serde_json::json!([]));
        client.expect_normal_close().await;
    }
}
