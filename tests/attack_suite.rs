//! The attack suite: real presentation attacks built from `../shared/testdata`, each session driven through the
//! service with the real models, every attack expected to end not live and every genuine sequence live.
//! `cargo test --release --test attack_suite -- --nocapture` prints the table.

mod support;

use image::RgbImage;
use liveness::domain::ChallengeType;
use support::attacks::{as_camera, framed, held, run_all, table, tilted, video_frames, Case, Sequence};
use support::genuine::frame_at;

const FRONTAL: &str = "expression/pexels4195444_neutral_frontal.jpg";
const SMILING: [&str; 3] = [
    "expression/pexels3780866_smile_frontal.jpg",
    "expression/mediapipe_business_person_smile.png",
    "expression/skimage_astronaut_smile_frontal.png",
];
const WINK_OPEN_MOUTH: &str = "expression/pexels7142955_wink_mouth_open.jpg";
/// Turned heads: -32 degrees of yaw (the user's right) and +33 (the user's left).
const TURNED_RIGHT: &str = "pose/pexels6140931_yaw_looking_aside.jpg";
const TURNED_LEFT: &str = "pose/pexels6567248_yaw_looking_aside.jpg";
/// Frames of a five-second challenge at 8 a second, and a few more.
const PATIENT: usize = 44;

fn one(challenge: ChallengeType, images: &[RgbImage]) -> Sequence {
    Sequence { challenges: vec![challenge], frames: as_camera(images) }
}

fn concat(parts: &[Vec<RgbImage>]) -> Vec<RgbImage> {
    parts.concat()
}

fn case(name: &str, genuine: bool, sequences: Vec<Sequence>) -> Case {
    Case { name: name.to_owned(), genuine, sequences }
}

/// Stills of one real person (frames of the genuine clips at the times given), before and during an expression:
/// rest held 4 frames, the expression 3, rest again 6, then rest held while any further challenge runs.
fn expression_stills(clip: &str, rest_s: f32, expression_s: f32) -> Vec<RgbImage> {
    let (rest, expression) = (frame_at(clip, rest_s), frame_at(clip, expression_s));
    concat(&[held(&rest, 4), held(&expression, 3), held(&rest, 6 + PATIENT)])
}

/// The same stills the other way round, for SMILE judged on a smile let go: the expression held 4 frames, then rest
/// held while any further challenge runs.
fn released_stills(clip: &str, expression_s: f32, rest_s: f32) -> Vec<RgbImage> {
    let (expression, rest) = (frame_at(clip, expression_s), frame_at(clip, rest_s));
    concat(&[held(&expression, 4), held(&rest, 6 + PATIENT)])
}

/// The expression-still attacks of issue #16: eyes open then closed for BLINK (men C and F), a neutral then a
/// smiling still for SMILE (men G and D), and a smiling then a neutral still (the same men; SMILE also passes on a
/// smile let go). Every session the service draws holds a head movement (a policy cannot turn that off), because no
/// measurement of the clips told such stills from a person holding still (docs/accuracy.md); so each runs as the
/// attacker would want it, the expression first, then one of the head movements, which the stills cannot ramp
/// through.
fn expression_still_cases() -> Vec<Case> {
    let stills = [
        (ChallengeType::Blink, ChallengeType::TurnLeft, expression_stills("KwaiVGI_d9.mp4", 12.0, 12.125)),
        (ChallengeType::Blink, ChallengeType::LookUp, expression_stills("Fellway_me.mp4", 14.5, 15.75)),
        (ChallengeType::Smile, ChallengeType::TurnRight, expression_stills("Fellway_face_smile.mp4", 0.3, 3.05)),
        (ChallengeType::Smile, ChallengeType::LookDown, expression_stills("KwaiVGI_d13.mp4", 5.575, 7.2)),
        (ChallengeType::Smile, ChallengeType::LookUp, released_stills("Fellway_face_smile.mp4", 3.05, 0.3)),
        (ChallengeType::Smile, ChallengeType::TurnLeft, released_stills("KwaiVGI_d13.mp4", 7.2, 5.575)),
    ];
    let sequences = stills
        .iter()
        .map(|(kind, movement, images)| Sequence { challenges: vec![*kind, *movement], frames: as_camera(images) })
        .collect();
    vec![case("expression stills of one person, then a head movement", false, sequences)]
}

/// A print tilted from flat to 35 degrees and back, one way or the other.
fn tilting(photo: &RgbImage, about_vertical: bool, sign: f32) -> Vec<RgbImage> {
    let angles = [0.0, 0.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 35.0, 35.0, 35.0, 35.0, 25.0, 15.0, 5.0, 0.0];
    angles.iter().map(|&a| tilted(photo, sign * a, about_vertical)).collect()
}

fn cases() -> Vec<Case> {
    let frontal = framed(FRONTAL);
    let wink = framed(WINK_OPEN_MOUTH);
    let (turned_left, turned_right) = (framed(TURNED_LEFT), framed(TURNED_RIGHT));
    // The adult in the video looks down at a tablet: at 8 frames a second, and sampled faster and slower.
    let looking_down = video_frames(200, 3, 25);
    let mut cases = vec![
        case("video: looking down, 8 fps", true, vec![one(ChallengeType::LookDown, &looking_down)]),
        case("video: looking down, 12 fps", true, vec![one(ChallengeType::LookDown, &video_frames(200, 2, 38))]),
        case("video: looking down, 6 fps", true, vec![one(ChallengeType::LookDown, &video_frames(200, 4, 19))]),
    ];

    let every = |images: &[RgbImage]| ChallengeType::ALL.iter().map(|&kind| one(kind, images)).collect::<Vec<_>>();
    cases.push(case("static photo, re-encoded and jittered, every challenge", false, every(&held(&frontal, PATIENT))));
    let smiles = SMILING.iter().map(|p| one(ChallengeType::Smile, &held(&framed(p), PATIENT))).collect();
    cases.push(case("smiling photo for SMILE", false, smiles));
    cases.push(case("closed-eye photo for BLINK", false, vec![one(ChallengeType::Blink, &held(&wink, PATIENT))]));
    cases.push(case(
        "open-mouth photo for OPEN_MOUTH",
        false,
        vec![one(ChallengeType::OpenMouth, &held(&wink, PATIENT))],
    ));

    let mut tilts = Vec::new();
    for (kind, about_vertical) in [
        (ChallengeType::TurnLeft, true),
        (ChallengeType::TurnRight, true),
        (ChallengeType::LookUp, false),
        (ChallengeType::LookDown, false),
    ] {
        for sign in [1.0, -1.0] {
            tilts.push(one(kind, &tilting(&frontal, about_vertical, sign)));
        }
    }
    cases.push(case("print tilted as a plane, up to 35 degrees", false, tilts));

    // Stills of the same person: far apart (the face moves enough for continuity to notice), and close together
    // (pitch +9.5 then -7.0, the face centre moving 0.46 face widths: only motion continuity tells).
    let (straight, down) = (looking_down[3].clone(), looking_down[14].clone());
    let slightly_down = looking_down[9].clone();
    let swaps = vec![
        one(ChallengeType::LookDown, &concat(&[held(&straight, 4), held(&down, 8)])),
        one(ChallengeType::LookDown, &concat(&[held(&straight, 4), held(&slightly_down, 8)])),
        one(ChallengeType::Smile, &concat(&[held(&frontal, 4), held(&framed(SMILING[0]), 8)])),
    ];
    cases.push(case("photo swap: frontal, then already looking down / smiling", false, swaps));

    let lap = concat(&[
        held(&frontal, 3),
        held(&turned_left, 3),
        held(&frontal, 2),
        held(&turned_right, 3),
        held(&frontal, 2),
        held(&framed(SMILING[0]), 3),
        held(&wink, 3),
    ]);
    let looping = concat(&[lap.clone(), lap.clone(), lap]);
    let loops = [
        ChallengeType::TurnLeft,
        ChallengeType::TurnRight,
        ChallengeType::Smile,
        ChallengeType::Blink,
        ChallengeType::OpenMouth,
    ]
    .iter()
    .map(|&kind| one(kind, &looping))
    .collect();
    cases.push(case("looping video of every action", false, loops));

    cases.push(case(
        "wrong direction: looking down for LOOK_UP",
        false,
        vec![one(ChallengeType::LookUp, &looking_down)],
    ));

    let switched = vec![
        one(ChallengeType::TurnLeft, &concat(&[held(&frontal, 4), held(&turned_left, 8)])),
        one(ChallengeType::TurnRight, &concat(&[held(&frontal, 4), held(&turned_right, 8)])),
        one(ChallengeType::Smile, &concat(&[looking_down[..4].to_vec(), held(&framed(SMILING[1]), 8)])),
    ];
    cases.push(case("one person's baseline, another person's action", false, switched));

    for (name, file) in [
        ("print sample", "spoof/minivision_F1_print_attack.jpg"),
        ("screen replay sample", "spoof/minivision_F2_screen_replay.jpg"),
    ] {
        cases.push(case(name, false, every(&held(&framed(file), 20))));
    }
    cases.extend(expression_still_cases());
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_rejected_and_every_genuine_sequence_passes() {
    let cases = cases();
    let results = run_all(&cases).await;
    println!("{}", table(&cases, &results));
    let mut wrong = Vec::new();
    for (case, outcomes) in cases.iter().zip(&results) {
        for (n, outcome) in outcomes.iter().enumerate() {
            if outcome.live != case.genuine {
                wrong.push(format!("{} #{n}: live={} ({})", case.name, outcome.live, outcome.rule));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
