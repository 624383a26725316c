//! The genuine suite's material: real people performing each challenge, cut out of the clips in
//! `../shared/testdata/genuine/` (their MANIFEST.tsv gives each action's time span) at a chosen frame rate and run
//! through the service with the real models as sessions of the matching challenge.

use std::collections::BTreeMap;
use std::process::Command;

use liveness::domain::ChallengeType;

use super::attacks::{run_every, Outcome, Sequence};
use super::real_models::testdata;

/// One action in one clip: the span (seconds) starts with the person at rest, so the session has a baseline,
/// and ends after the action.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub clip: &'static str,
    pub person: &'static str,
    pub challenge: ChallengeType,
    pub from_s: f32,
    pub to_s: f32,
    /// Kept out of every choice of rule or threshold: reported apart.
    pub held_out: bool,
}

const fn span(
    clip: &'static str,
    person: &'static str,
    challenge: ChallengeType,
    from_s: f32,
    to_s: f32,
    held_out: bool,
) -> Span {
    Span { clip, person, challenge, from_s, to_s, held_out }
}

use ChallengeType::{Blink, LookDown, LookUp, OpenMouth, Smile, TurnLeft, TurnRight};

/// Every span, from the MANIFEST's timestamps. A head turn toward the image's right is the user's left in an
/// unmirrored camera image; selfie clips may be mirrored, so each turn also runs mirrored as the other direction.
pub const SPANS: &[Span] = &[
    span("Onyameakasa_left.mp4", "A (young man)", TurnLeft, 0.0, 1.92, false),
    span("Onyameakasa_right.mp4", "A (young man)", TurnRight, 0.0, 1.99, false),
    span("Onyameakasa_up.mp4", "A (young man)", LookUp, 0.0, 1.86, false),
    span("Onyameakasa_down.mp4", "A (young man)", LookDown, 0.0, 1.44, false),
    // The MANIFEST has her look down ~2.0-5.0 s; the span once ended at 3.6 s, before her head was down.
    span("KwaiVGI_d3.mp4", "B (woman)", LookDown, 1.2, 5.0, false),
    span("KwaiVGI_d3.mp4", "B (woman)", LookDown, 6.0, 8.5, false),
    span("KwaiVGI_d3.mp4", "B (woman)", OpenMouth, 9.0, 11.6, false),
    span("KwaiVGI_d9.mp4", "C (man, glasses)", Blink, 11.0, 12.6, false),
    span("KwaiVGI_d9.mp4", "C (man, glasses)", Smile, 9.6, 11.9, false),
    span("KwaiVGI_d13.mp4", "D (man, glasses, phone)", OpenMouth, 3.3, 4.8, false),
    span("KwaiVGI_d13.mp4", "D (man, glasses, phone)", Smile, 5.2, 8.0, false),
    span("KwaiVGI_d18.mp4", "E (man)", OpenMouth, 1.2, 3.2, false),
    span("KwaiVGI_d18.mp4", "E (man)", OpenMouth, 3.3, 5.2, false),
    span("Fellway_me.mp4", "F (man, phone)", Blink, 14.5, 17.6, false),
    span("Fellway_face_smile.mp4", "G (man, beard)", Smile, 0.3, 3.5, false),
    span("KwaiVGI_d19.mp4", "H (man, round glasses)", Smile, 6.9, 8.36, true),
    span("KwaiVGI_d14.mp4", "I (woman, filter)", Blink, 1.1, 2.0, true),
    span("tanshuai0219_expression_source.mp4", "J (woman)", Smile, 2.6, 4.6, true),
    // The MANIFEST says her eyes close 6.0-6.25 s; the model reads them closed until 6.9 s, open at 7.0 s.
    span("tanshuai0219_expression_source.mp4", "J (woman)", Blink, 5.4, 7.3, true),
    // Every other both-eye blink or eye closure the MANIFEST lists, by one rule: from 0.8 s before it (or 0.4 s
    // after the eye action before it, if later) to 1.3 s after it (or 0.1 s before the next one or the clip's end,
    // if sooner). The first try ended spans 0.8 s after: man C's eyes were still reopening from his blink at 18.5 s
    // (0.18 over his rest) when it ended.
    // Left out: man C's blink at 0.25 s (less than 0.4 s of clip before it), man E's ("possibly"), man F's five
    // seconds with his eyes closed (no blink: a 5 s challenge never sees them reopen).
    span("KwaiVGI_d9.mp4", "C (man, glasses)", Blink, 0.65, 2.55, false),
    span("KwaiVGI_d9.mp4", "C (man, glasses)", Blink, 8.95, 11.05, false),
    span("KwaiVGI_d9.mp4", "C (man, glasses)", Blink, 13.2, 14.9, false),
    span("KwaiVGI_d9.mp4", "C (man, glasses)", Blink, 14.4, 16.3, false),
    span("KwaiVGI_d9.mp4", "C (man, glasses)", Blink, 15.7, 17.4, false),
    span("KwaiVGI_d9.mp4", "C (man, glasses)", Blink, 16.9, 18.4, false),
    span("KwaiVGI_d9.mp4", "C (man, glasses)", Blink, 17.9, 19.55, false),
    span("KwaiVGI_d14.mp4", "I (woman, filter)", Blink, 0.0, 1.4, true),
    span("tanshuai0219_expression_source.mp4", "J (woman)", Blink, 2.95, 5.3, true),
    span("tanshuai0219_expression_source.mp4", "J (woman)", Blink, 10.2, 12.8, true),
    // Every other smile the MANIFEST lists, by the same rule with smiles for eye actions (0.8 s before the smile or
    // 0.4 s after the smile before it, to 1.3 s after it or 0.1 s before the next one or the clip's end). Left out:
    // man H's "slight" smile (not what SMILE asks), woman J's first (the clip opens on it) and smiles already run
    // above.
    span("KwaiVGI_d13.mp4", "D (man, glasses, phone)", Smile, 0.0, 2.05, false),
    span("KwaiVGI_d13.mp4", "D (man, glasses, phone)", Smile, 2.2, 4.55, false),
    span("KwaiVGI_d13.mp4", "D (man, glasses, phone)", Smile, 9.7, 11.63, false),
    span("KwaiVGI_d19.mp4", "H (man, round glasses)", Smile, 1.95, 4.3, true),
    span("KwaiVGI_d19.mp4", "H (man, round glasses)", Smile, 4.45, 6.4, true),
    span("KwaiVGI_d19.mp4", "H (man, round glasses)", Smile, 6.15, 7.65, true),
    span("KwaiVGI_d14.mp4", "I (woman, filter)", Smile, 0.0, 2.3, true),
    span("tanshuai0219_expression_source.mp4", "J (woman)", Smile, 6.7, 9.8, true),
    span("tanshuai0219_expression_source.mp4", "J (woman)", Smile, 9.2, 12.3, true),
];

/// One run of a span: at a frame rate, perhaps mirrored, as a challenge, and how it ended.
#[derive(Debug, Clone)]
pub struct GenuineRun {
    pub span: Span,
    pub fps: u32,
    pub mirrored: bool,
    pub challenge: ChallengeType,
    pub outcome: Outcome,
}

/// The span's frames at `fps`, as JPEGs no larger than 640x640 (a camera frame), mirrored if asked.
pub fn frames(span: &Span, fps: u32, mirrored: bool) -> Vec<Vec<u8>> {
    cut(span.clip, span.from_s, span.to_s, fps, mirrored)
}

/// The clip's frames from `from_s` to `to_s` at `fps`, as JPEGs no larger than 640x640, mirrored if asked.
fn cut(clip: &str, from_s: f32, to_s: f32, fps: u32, mirrored: bool) -> Vec<Vec<u8>> {
    let dir =
        std::env::temp_dir().join(format!("liveness-genuine-{clip}-{from_s}-{fps}-{mirrored}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut filter = format!("fps={fps},scale=w=640:h=640:force_original_aspect_ratio=decrease");
    if mirrored {
        filter += ",hflip";
    }
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-ss", &from_s.to_string(), "-to", &to_s.to_string(), "-i"])
        .arg(testdata(&format!("genuine/{clip}")))
        .args(["-vf", &filter, "-q:v", "3"])
        .arg(dir.join("f%03d.jpg"))
        .status()
        .expect("ffmpeg is installed (scripts/test.sh installs it)");
    assert!(status.success(), "ffmpeg cut {clip}");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let jpegs = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    std::fs::remove_dir_all(&dir).unwrap();
    jpegs
}

/// The clip's frame at `seconds`, no larger than 640x640.
pub fn frame_at(clip: &str, seconds: f32) -> image::RgbImage {
    let jpegs = cut(clip, seconds, seconds + 0.01, 100, false);
    image::load_from_memory(&jpegs[0]).expect("ffmpeg wrote a JPEG").to_rgb8()
}

fn other_direction(challenge: ChallengeType) -> Option<ChallengeType> {
    match challenge {
        TurnLeft => Some(TurnRight),
        TurnRight => Some(TurnLeft),
        _ => None,
    }
}

/// Runs every span at every rate in `rates` (and turns mirrored too).
pub async fn run_suite(rates: &[u32]) -> Vec<GenuineRun> {
    let mut plans = Vec::new();
    for span in SPANS {
        for &fps in rates {
            plans.push((*span, fps, false, span.challenge));
            if let Some(other) = other_direction(span.challenge) {
                plans.push((*span, fps, true, other));
            }
        }
    }
    let runs = plans.into_iter().map(|(span, fps, mirrored, challenge)| async move {
        let sequence = Sequence { challenges: vec![challenge], frames: frames(&span, fps, mirrored) };
        let outcome = run_every(&sequence, 1000 / i64::from(fps)).await;
        GenuineRun { span, fps, mirrored, challenge, outcome }
    });
    futures_util::future::join_all(runs).await
}

/// Every run: clip, challenge, fps, outcome, end reason, frames used.
pub fn table(runs: &[GenuineRun]) -> String {
    let mut out = String::from(
        "| clip | person | challenge | fps | mirrored | held out | outcome | end reason | frames used |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        out += &format!(
            "| {} {:.1}-{:.1} s | {} | {:?} | {} | {} | {} | {} | {} | {} |\n",
            run.span.clip,
            run.span.from_s,
            run.span.to_s,
            run.span.person,
            run.challenge,
            run.fps,
            if run.mirrored { "yes" } else { "no" },
            if run.span.held_out { "yes" } else { "no" },
            if run.outcome.live { "pass" } else { "REJECTED" },
            run.outcome.rule,
            run.outcome.frames_used,
        );
    }
    out
}

/// Genuine sessions rejected and run, per challenge type.
pub fn rejections_by_type(runs: &[GenuineRun]) -> BTreeMap<String, (usize, usize)> {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for run in runs {
        let entry = counts.entry(format!("{:?}", run.challenge)).or_default();
        entry.0 += usize::from(!run.outcome.live);
        entry.1 += 1;
    }
    counts
}

/// ISO/IEC 30107-3 BPCER (bona fide presentations classified as attacks) per challenge type and overall, with
/// the counts behind each, for the runs `runs`.
pub fn bpcer_table(runs: &[GenuineRun]) -> String {
    let mut out = String::from("| challenge | rejected / sessions | BPCER |\n|---|---|---|\n");
    let percent = |rejected: usize, total: usize| 100.0 * rejected as f64 / total.max(1) as f64;
    for (kind, (rejected, total)) in rejections_by_type(runs) {
        out += &format!("| {kind} | {rejected} / {total} | {:.1} % |\n", percent(rejected, total));
    }
    let rejected = runs.iter().filter(|r| !r.outcome.live).count();
    out += &format!("| all | {rejected} / {} | {:.1} % |\n", runs.len(), percent(rejected, runs.len()));
    out
}
