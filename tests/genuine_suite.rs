//! The genuine suite: real people performing every challenge the shared clips show, at 8, 5 and 12 frames a
//! second, run with the real models. Prints the table of every run and the ISO/IEC 30107-3 BPCER per challenge
//! type, for the tuned and the held-out clips apart:
//! `cargo test --release --features test-support --test genuine_suite -- --nocapture`.
//!
//! The genuine people the service still rejects are listed below, each with what the measurements show; the
//! test fails when one more is rejected, and also when a listed one passes (then take it off the list), so the
//! list is always the truth.

mod support;

use std::collections::BTreeSet;

use liveness::domain::ChallengeType::{self, Blink, OpenMouth, Smile};
use support::genuine::{bpcer_table, run_suite, table};

/// Rejected genuine runs: (clip, challenge, span start, fps, mirrored).
const STILL_REJECTED: [(&str, ChallengeType, f32, u32, bool); 5] = [
    // The 'O' is brief: at 5 fps its one open frame (0.53) is the baseline's second, the mouth 0.16-0.39 after it.
    ("KwaiVGI_d13.mp4", OpenMouth, 3.3, 5, false),
    // Held out. A beauty filter; the blink falls between frames at 5 and 8 fps (eye closure and the blendshapes'
    // eyeBlink 0.00-0.02 on every frame): no rule can see it, only a faster camera (12 fps catches it).
    ("KwaiVGI_d14.mp4", Blink, 1.1, 8, false),
    ("KwaiVGI_d14.mp4", Blink, 1.1, 5, false),
    // Held out: her first blink, added by rule (tests/support/genuine.rs), falls between frames at 5 fps but for one
    // frame caught half-closed (0.52, the rule asks 0.6).
    ("KwaiVGI_d14.mp4", Blink, 0.0, 5, false),
    // Man D's first smile is brief: at 5 fps one frame reads it (0.74), the next 0.00.
    ("KwaiVGI_d13.mp4", Smile, 0.0, 5, false),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genuine_people_pass() {
    let runs = run_suite(&[8, 5, 12]).await;
    let (held_out, tuned): (Vec<_>, Vec<_>) = runs.iter().cloned().partition(|run| run.span.held_out);
    println!("{}", table(&runs));
    println!(
        "Tuned clips:\n{}\nHeld-out clips:\n{}\nAll:\n{}",
        bpcer_table(&tuned),
        bpcer_table(&held_out),
        bpcer_table(&runs)
    );
    let key = |clip: &str, kind: ChallengeType, from_s: f32, fps: u32, mirrored: bool| {
        format!("{clip} {kind:?} {from_s:.2} s {fps} fps mirrored {mirrored}")
    };
    let rejected: BTreeSet<String> = runs
        .iter()
        .filter(|run| !run.outcome.live)
        .map(|run| key(run.span.clip, run.challenge, run.span.from_s, run.fps, run.mirrored))
        .collect();
    let listed: BTreeSet<String> =
        STILL_REJECTED.iter().map(|&(clip, kind, from, fps, m)| key(clip, kind, from, fps, m)).collect();
    let newly_rejected: Vec<_> = rejected.difference(&listed).collect();
    let now_passing: Vec<_> = listed.difference(&rejected).collect();
    assert!(newly_rejected.is_empty(), "genuine people newly rejected: {newly_rejected:?}");
    assert!(now_passing.is_empty(), "listed as rejected but passing now (take them off the list): {now_passing:?}");
}
