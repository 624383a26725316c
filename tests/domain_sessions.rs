//! Sessions driven by synthetic observations: for every challenge type a genuine sequence passes, and the
//! classic cheats fail.

mod support;

use liveness::domain::{
    Challenge, ChallengeType, EndReason, Feedback, FrameRejection, Session, SessionRules, SessionState,
};
use liveness::vision::fake::{crowd, empty_frame, FakeFace};
use liveness::vision::FrameObservation;
use support::performances::genuine;
use uuid::Uuid;

const FRAME_MS: i64 = 125; // 8 frames a second
const TTL_MS: i64 = 180_000;

fn session(kinds: &[ChallengeType]) -> Session {
    let challenges = kinds.iter().map(|&kind| Challenge { kind, timeout_seconds: 5.0 }).collect();
    Session::new(Uuid::new_v4(), challenges, 0, TTL_MS)
}

struct Run {
    session: Session,
    now: i64,
    rules: SessionRules,
}

impl Run {
    fn new(kinds: &[ChallengeType]) -> Run {
        Run { session: session(kinds), now: 1_000, rules: SessionRules::default() }
    }

    fn send(&mut self, observation: &FrameObservation) -> Result<liveness::domain::FrameOutcome, FrameRejection> {
        self.now += FRAME_MS;
        let (next, outcome) = self.session.apply_frame(observation, self.now, &self.rules)?;
        self.session = next;
        Ok(outcome)
    }

    fn send_all(&mut self, faces: &[FakeFace]) {
        for face in faces {
            if self.session.state.is_terminal() {
                return;
            }
            self.send(&face.observation()).unwrap();
        }
    }
}

fn neutral() -> FakeFace {
    FakeFace::default()
}

#[test]
fn every_challenge_type_passes_when_performed() {
    for kind in ChallengeType::ALL {
        let mut run = Run::new(&[kind]);
        run.send_all(&[neutral(), neutral()]);
        run.send_all(&genuine(kind));
        assert_eq!(run.session.state, SessionState::Completed, "{kind:?}: {:?}", run.session.end_reason);
        assert_eq!(run.session.is_live, Some(true), "{kind:?}");
        assert!(run.session.outcomes[0].passed && run.session.outcomes[0].confidence >= 0.5);
    }
}

#[test]
fn three_challenges_in_a_row() {
    let kinds = [ChallengeType::TurnLeft, ChallengeType::Blink, ChallengeType::Smile];
    let mut run = Run::new(&kinds);
    run.send_all(&[neutral(), neutral()]);
    for kind in kinds {
        assert_eq!(run.session.current_challenge().unwrap().kind, kind);
        run.send_all(&genuine(kind));
    }
    assert_eq!(run.session.state, SessionState::Completed);
    assert_eq!(run.session.challenges_remaining(), 0);
}

#[test]
fn the_same_frame_repeated_times_out() {
    for kind in ChallengeType::ALL {
        let mut run = Run::new(&[kind]);
        let still = neutral().observation();
        while run.send(&still).is_ok() {}
        assert_eq!(run.session.state_at(run.now), SessionState::Failed, "{kind:?}");
        assert_eq!(run.session.at(run.now).end_reason, Some(EndReason::ChallengeTimeout));
    }
}

#[test]
fn a_closed_eye_photo_alone_never_blinks() {
    let mut run = Run::new(&[ChallengeType::Blink]);
    let closed = FakeFace { eye_closure: 0.95, ..neutral() };
    run.send_all(&[neutral(), neutral()]);
    for _ in 0..20 {
        run.send(&closed.observation()).unwrap();
    }
    assert_eq!(run.session.state, SessionState::InProgress);
    assert!(run.session.outcomes.is_empty());
}

#[test]
fn a_quick_blink_right_after_the_baseline_passes() {
    // One neutral frame, then a blink whose only open frame before it is the one that completes the baseline
    // (a WebSocket session with a one-frame passive phase meets exactly this).
    let closed = FakeFace { eye_closure: 0.95, ..neutral() };
    let mut run = Run::new(&[ChallengeType::Blink]);
    run.send_all(&[neutral(), neutral(), closed, closed, neutral()]);
    assert_eq!(run.session.state, SessionState::Completed, "{:?}", run.session.end_reason);
}

#[test]
fn a_closed_eye_photo_from_the_start_never_passes_blink() {
    // The baseline is the face's own rest, here eyes that read as closed: no blink can rise over it.
    let mut run = Run::new(&[ChallengeType::Blink]);
    let closed = FakeFace { eye_closure: 0.95, ..neutral() };
    for _ in 0..20 {
        run.send(&closed.observation()).unwrap();
    }
    assert!(run.session.baseline.is_some_and(|b| (b.eye_closure - 0.95).abs() < 1e-6));
    assert_eq!(run.session.state, SessionState::InProgress);
}

#[test]
fn eyes_that_read_half_closed_at_rest_still_blink() {
    // Glasses can make open eyes read 0.5: the baseline takes that as rest, and a blink is a rise over it.
    let mut run = Run::new(&[ChallengeType::Blink]);
    let rest = FakeFace { eye_closure: 0.5, ..neutral() };
    let closed = FakeFace { eye_closure: 0.95, ..neutral() };
    run.send_all(&[rest, rest, rest, closed, closed, rest]);
    assert_eq!(run.session.state, SessionState::Completed, "{:?}", run.session.end_reason);
}

#[test]
fn looping_through_every_action_fails() {
    // A looping video performs every action in turn; whatever was asked, some other action comes first.
    let loop_order = [
        ChallengeType::TurnRight,
        ChallengeType::LookUp,
        ChallengeType::TurnLeft,
        ChallengeType::LookDown,
        ChallengeType::OpenMouth,
        ChallengeType::Smile,
        ChallengeType::Blink,
    ];
    for asked in [ChallengeType::TurnLeft, ChallengeType::LookDown, ChallengeType::Smile, ChallengeType::Blink] {
        let mut run = Run::new(&[asked]);
        run.send_all(&[neutral(), neutral()]);
        for action in loop_order.iter().cycle().take(14) {
            run.send_all(&genuine(*action));
        }
        assert_eq!(run.session.state, SessionState::Failed, "asked {asked:?}");
        assert_eq!(run.session.end_reason, Some(EndReason::WrongAction), "asked {asked:?}");
    }
}

#[test]
fn the_wrong_direction_fails() {
    for (asked, done) in [
        (ChallengeType::TurnLeft, ChallengeType::TurnRight),
        (ChallengeType::TurnRight, ChallengeType::TurnLeft),
        (ChallengeType::LookUp, ChallengeType::LookDown),
        (ChallengeType::LookDown, ChallengeType::LookUp),
        (ChallengeType::TurnLeft, ChallengeType::LookUp),
        (ChallengeType::Blink, ChallengeType::TurnLeft),
        (ChallengeType::Smile, ChallengeType::LookDown),
        (ChallengeType::OpenMouth, ChallengeType::TurnRight),
        (ChallengeType::TurnRight, ChallengeType::OpenMouth),
    ] {
        let mut run = Run::new(&[asked]);
        run.send_all(&[neutral(), neutral()]);
        run.send_all(&genuine(done));
        assert_eq!(run.session.end_reason, Some(EndReason::WrongAction), "asked {asked:?}, did {done:?}");
        assert_eq!(run.session.is_live, Some(false));
    }
}

#[test]
fn a_face_that_changes_mid_session_fails() {
    let mut run = Run::new(&[ChallengeType::TurnLeft]);
    run.send_all(&[neutral(), neutral()]);
    let other = FakeFace { shift_x: 220.0, width: 120.0, ..neutral() };
    let outcome = run.send(&other.observation()).unwrap();
    assert_eq!(outcome.feedback, Some(Feedback::FaceChanged));
    assert_eq!(run.session.state, SessionState::Failed);
    assert_eq!(run.session.end_reason, Some(EndReason::FaceChanged));
}

#[test]
fn frames_that_do_not_count_say_why() {
    let mut run = Run::new(&[ChallengeType::Smile]);
    let cases = [
        (crowd(&neutral(), 2), Feedback::MultipleFaces),
        (empty_frame(), Feedback::NoFace),
        (FakeFace { width: 40.0, ..neutral() }.observation(), Feedback::FaceTooSmall),
        (FakeFace { shift_x: 280.0, ..neutral() }.observation(), Feedback::FaceNotCentered),
        (FakeFace { brightness: 10.0, ..neutral() }.observation(), Feedback::TooDark),
        (FakeFace { brightness: 250.0, ..neutral() }.observation(), Feedback::TooBright),
    ];
    for (observation, expected) in cases {
        let outcome = run.send(&observation).unwrap();
        assert_eq!(outcome.feedback, Some(expected));
        assert!(!outcome.passed);
    }
    assert_eq!(run.session.state, SessionState::InProgress);
    assert!(run.session.baseline_samples.is_empty());
}

#[test]
fn two_faces_never_pass_a_challenge() {
    let mut run = Run::new(&[ChallengeType::Smile]);
    for face in [neutral(), neutral()].into_iter().chain(genuine(ChallengeType::Smile)) {
        let outcome = run.send(&crowd(&face, 2)).unwrap();
        assert!(!outcome.passed);
    }
    assert_eq!(run.session.state, SessionState::InProgress);
}

#[test]
fn a_late_frame_after_the_deadline_fails() {
    let mut run = Run::new(&[ChallengeType::TurnLeft]);
    run.send_all(&[neutral(), neutral()]);
    run.now += 5_100;
    assert_eq!(run.session.state_at(run.now), SessionState::Failed);
    let rejection = run.send(&genuine(ChallengeType::TurnLeft)[3].observation()).unwrap_err();
    assert_eq!(rejection, FrameRejection::Ended(SessionState::Failed));
}

#[test]
fn frames_after_the_session_ended_are_refused() {
    let mut run = Run::new(&[ChallengeType::Smile]);
    run.send_all(&[neutral(), neutral()]);
    run.send_all(&genuine(ChallengeType::Smile));
    assert_eq!(run.session.state, SessionState::Completed);
    let before = run.session.clone();
    assert_eq!(run.send(&neutral().observation()).unwrap_err(), FrameRejection::Ended(SessionState::Completed));
    assert_eq!(run.session, before);
}

#[test]
fn the_ttl_expires_a_session() {
    let mut run = Run::new(&[ChallengeType::Smile]);
    assert_eq!(run.session.state_at(TTL_MS + 1), SessionState::Expired);
    run.now = TTL_MS;
    assert_eq!(run.send(&neutral().observation()).unwrap_err(), FrameRejection::Expired);
}

#[test]
fn too_many_frames_are_refused() {
    let mut run = Run::new(&[ChallengeType::Smile]);
    run.rules.max_frames = 5;
    for _ in 0..5 {
        run.send(&empty_frame()).unwrap();
    }
    assert_eq!(run.send(&empty_frame()).unwrap_err(), FrameRejection::TooManyFrames(5));
}

#[test]
fn a_spoof_fails_even_when_every_challenge_passes() {
    let mut run = Run::new(&[ChallengeType::Smile]);
    let spoof = |f: FakeFace| FakeFace { antispoof_real: Some(0.3), ..f };
    run.send_all(&[spoof(neutral()), spoof(neutral())]);
    run.send_all(&genuine(ChallengeType::Smile).into_iter().map(spoof).collect::<Vec<_>>());
    assert_eq!(run.session.state, SessionState::Failed);
    assert_eq!(run.session.end_reason, Some(EndReason::SpoofDetected));
}

#[test]
fn a_clear_spoof_ends_the_session_early() {
    let mut run = Run::new(&[ChallengeType::Smile, ChallengeType::Blink]);
    let screen = FakeFace { antispoof_real: Some(0.01), ..neutral() };
    run.send_all(&[screen, screen, screen]);
    assert_eq!(run.session.end_reason, Some(EndReason::SpoofDetected));
}

#[test]
fn without_passive_evidence_a_session_is_never_live() {
    let mut run = Run::new(&[ChallengeType::Smile]);
    let unscored = |f: FakeFace| FakeFace { antispoof_real: None, ..f };
    run.send_all(&[unscored(neutral()), unscored(neutral())]);
    run.send_all(&genuine(ChallengeType::Smile).into_iter().map(unscored).collect::<Vec<_>>());
    assert_eq!(run.session.state, SessionState::Completed);
    assert_eq!(run.session.is_live, Some(false));
    assert_eq!(run.session.end_reason, Some(EndReason::AntispoofUnavailable));
}

fn with_passive_phase(kinds: &[ChallengeType], frames: u32) -> Run {
    let mut run = Run::new(kinds);
    run.session = run.session.clone().with_passive_phase(frames);
    run
}

#[test]
fn a_passive_phase_scores_frames_and_sets_the_baseline_before_the_first_challenge_starts() {
    let mut run = with_passive_phase(&[ChallengeType::Smile], 4);
    // Frames that do not count do not shorten the passive phase.
    run.send(&empty_frame()).unwrap();
    for n in 1..=4 {
        assert!(run.session.in_passive_phase());
        let outcome = run.send(&neutral().observation()).unwrap();
        assert_eq!(outcome.challenge, None, "frame {n} is judged against no challenge");
        assert!(outcome.antispoof_real.is_some());
    }
    assert!(!run.session.in_passive_phase());
    assert_eq!(run.session.passive_counted, 4);
    assert!(run.session.baseline.is_some(), "the passive frames set the baseline");
    assert_eq!(run.session.challenge_started_ms, Some(run.now), "the clock starts when the phase ends");
    // The smile counts at once: no more neutral frames are needed for a baseline.
    run.send_all(&genuine(ChallengeType::Smile));
    assert_eq!(run.session.state, SessionState::Completed, "{:?}", run.session.end_reason);
}

#[test]
fn no_challenge_times_out_during_the_passive_phase() {
    let mut run = with_passive_phase(&[ChallengeType::Blink], 3);
    run.send(&neutral().observation()).unwrap();
    run.now += 20_000; // far beyond the 5 s challenge timeout
    run.send(&neutral().observation()).unwrap();
    assert_eq!(run.session.state, SessionState::InProgress);
    assert!(run.session.in_passive_phase());
}

#[test]
fn a_spoof_ends_the_session_at_the_end_of_the_passive_phase_without_a_challenge_result() {
    let mut run = with_passive_phase(&[ChallengeType::Blink], 3);
    let mut doubtful = neutral();
    doubtful.antispoof_real = Some(0.35); // above the early-fail line, below the verdict's
    for _ in 0..3 {
        run.send(&doubtful.observation()).unwrap();
    }
    assert_eq!(run.session.state, SessionState::Failed);
    assert_eq!(run.session.end_reason, Some(EndReason::SpoofDetected));
    assert!(run.session.outcomes.is_empty(), "no challenge was ever started, so none failed");
}

#[test]
fn a_clear_spoof_ends_the_passive_phase_early() {
    let mut run = with_passive_phase(&[ChallengeType::Blink], 10);
    let mut print = neutral();
    print.antispoof_real = Some(0.02);
    for _ in 0..3 {
        run.send(&print.observation()).unwrap();
    }
    assert_eq!(run.session.end_reason, Some(EndReason::SpoofDetected));
    assert!(run.session.outcomes.is_empty());
}

#[test]
fn a_challenge_that_times_out_in_the_dark_says_so() {
    let dark = FakeFace { brightness: 10.0, ..neutral() };
    let mut run = Run::new(&[ChallengeType::TurnLeft]);
    run.send_all(&[neutral(), neutral(), dark, dark, dark, dark, neutral()]);
    run.now += 6_000;
    let ended = run.session.at(run.now);
    assert_eq!(ended.end_reason, Some(EndReason::ChallengeTimeout));
    assert!(ended.advice().unwrap().contains("too dark"), "{:?}", ended.advice());
    // A few dark frames among many that counted do not take the blame.
    let mut run = Run::new(&[ChallengeType::TurnLeft]);
    run.send_all(&[neutral(), neutral(), dark, dark, dark, neutral(), neutral(), neutral(), neutral(), neutral()]);
    run.now += 6_000;
    let ended = run.session.at(run.now);
    assert_eq!(ended.advice(), EndReason::ChallengeTimeout.advice());
    // The tally starts again with each challenge.
    let mut run = Run::new(&[ChallengeType::TurnLeft, ChallengeType::Smile]);
    run.send_all(&[dark, dark, dark]);
    run.send_all(&genuine(ChallengeType::TurnLeft));
    assert_eq!(run.session.outcomes.len(), 1, "the turn passed");
    run.now += 6_000;
    assert_eq!(run.session.at(run.now).advice(), EndReason::ChallengeTimeout.advice());
}

#[test]
fn a_check_that_did_not_pass_says_why_in_plain_words_except_for_attacks() {
    use liveness::domain::{EndReason, NOT_VERIFIED_ADVICE};
    assert_eq!(EndReason::Live.advice(), None);
    assert_eq!(EndReason::SpoofDetected.advice(), Some(NOT_VERIFIED_ADVICE));
    assert_eq!(EndReason::AntispoofUnavailable.advice(), Some(NOT_VERIFIED_ADVICE), "indistinguishable from a spoof");
    let others = [EndReason::ChallengeTimeout, EndReason::WrongAction, EndReason::FaceChanged, EndReason::Expired];
    let advice: Vec<&str> = others.iter().map(|reason| reason.advice().unwrap()).collect();
    assert!(advice.iter().all(|a| *a != NOT_VERIFIED_ADVICE && a.contains("Start")), "{advice:?}");
    assert!(advice.windows(2).all(|pair| pair[0] != pair[1]), "each reason has its own words");
    for words in advice.iter().chain([&NOT_VERIFIED_ADVICE]) {
        let lower = words.to_lowercase();
        assert!(!lower.contains("spoof") && !lower.contains("attack") && !lower.contains("score"), "{words}");
    }
}

#[test]
fn resting_frames_are_scored_one_in_three_each_weighing_three_and_moving_frames_always() {
    let mut run = Run::new(&[ChallengeType::TurnLeft]);
    let resting: Vec<bool> = (0..12)
        .map(|_| {
            let wanted = run.session.wants_score(&neutral().observation(), run.now + FRAME_MS, &run.rules);
            let scored = run.send(&neutral().observation()).unwrap().antispoof_real.is_some();
            assert_eq!(wanted, scored, "a score is added exactly when it was asked for");
            scored
        })
        .collect();
    // The first three scores always; then the baseline is set and the face rests: every third frame is scored.
    assert_eq!(resting[..3], [true; 3]);
    assert_eq!(resting[3..].iter().filter(|&&scored| scored).count(), 3, "{resting:?}");
    assert_eq!(run.session.passive.count, 12, "the sampled scores stand for every frame");
    assert_eq!(run.session.passive.resting_frames, 11, "every frame from the one that set the baseline rests");

    // A face moving toward the turn shows an action from a fifth of it on: every such frame is scored.
    let turning: Vec<bool> = [5.0, 9.0, 13.0, 17.0, 22.0]
        .iter()
        .map(|&yaw| run.send(&FakeFace { yaw, ..neutral() }.observation()).unwrap().antispoof_real.is_some())
        .collect();
    assert_eq!(turning, [true; 5]);
    assert_eq!(run.session.state, SessionState::Completed);
    assert_eq!(run.session.end_reason, Some(EndReason::Live));
}

#[test]
fn a_smile_a_blink_or_a_sway_during_another_challenge_is_sampled_its_own_action_and_wrong_ones_always_scored() {
    let smiling = FakeFace { smile: 0.9, mouth_open: 0.2, ..neutral() };
    let closed = FakeFace { eye_closure: 1.0, ..neutral() };
    let swaying = FakeFace { yaw: 9.0, ..neutral() };
    for (kind, face, sampled) in [
        (ChallengeType::TurnLeft, smiling, true),
        (ChallengeType::LookDown, smiling, true),
        (ChallengeType::OpenMouth, closed, true),
        (ChallengeType::Smile, swaying, true),
        (ChallengeType::Smile, smiling, false),
        (ChallengeType::Blink, closed, false),
        (ChallengeType::TurnLeft, swaying, false),
    ] {
        let mut run = Run::new(&[kind]);
        run.send_all(&[neutral(); 3]);
        let mut scored = Vec::new();
        while scored.len() < 6 && !run.session.state.is_terminal() {
            scored.push(run.send(&face.observation()).unwrap().antispoof_real.is_some());
        }
        let count = scored.iter().filter(|&&scored| scored).count();
        if sampled {
            assert_eq!((scored.len(), count), (6, 2), "{kind:?}: one in three of {scored:?}");
        } else {
            assert_eq!(count, scored.len(), "{kind:?}: every frame of its own action, {scored:?}");
        }
    }
    // A wrong action (a turn far from the camera while asked to smile) is scored, and fails the challenge.
    let mut run = Run::new(&[ChallengeType::Smile]);
    run.send_all(&[neutral(); 3]);
    let turned = FakeFace { yaw: 30.0, ..neutral() }.observation();
    assert!((0..2).all(|_| run.send(&turned).unwrap().antispoof_real.is_some()));
    assert_eq!(run.session.end_reason, Some(EndReason::WrongAction));
}

#[test]
fn frames_that_do_not_count_are_never_scored() {
    let run = Run::new(&[ChallengeType::Smile]);
    assert!(!run.session.wants_score(&empty_frame(), run.now + FRAME_MS, &run.rules));
    assert!(!run.session.wants_score(&crowd(&neutral(), 2), run.now + FRAME_MS, &run.rules));
    assert!(run.session.wants_score(&neutral().observation(), run.now + FRAME_MS, &run.rules));
}

#[test]
fn a_resting_spoof_is_still_detected_when_only_some_frames_are_scored() {
    // A spoof that sways and blinks enough to score as live on its moving frames and reads fake while it rests:
    // the sampled resting frames weigh what they stand for, so the mean stays the mean over all frames.
    let mut run = Run::new(&[ChallengeType::Smile]);
    let resting = FakeFace { antispoof_real: Some(0.2), ..neutral() };
    let moving = FakeFace { antispoof_real: Some(0.9), yaw: 6.0, ..neutral() };
    let mut frames = vec![resting; 3];
    for _ in 0..6 {
        frames.extend([resting, resting, resting, moving]);
    }
    run.send_all(&frames);
    let mean = run.session.passive.mean().unwrap();
    // Every frame scored: (3 + 18) resting at 0.2, 6 moving at 0.9 → 0.356.
    assert!((mean - 0.356).abs() < 0.02, "mean {mean}");
    run.send_all(
        &genuine(ChallengeType::Smile)
            .into_iter()
            .map(|f| FakeFace { antispoof_real: Some(0.9), ..f })
            .collect::<Vec<_>>(),
    );
    assert_eq!(run.session.end_reason, Some(EndReason::SpoofDetected));
}
