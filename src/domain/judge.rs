//! Judging challenges from a sequence of face samples measured against the user's own baseline.
//!
//! Pure functions: the session keeps the samples, this module reads them. A sample counts only if the frame has
//! exactly one usable face; the rest get a [`Feedback`] code.

use serde::{Deserialize, Serialize};

use super::challenge::ChallengeType;
use super::observation::{BoundingBox, FrameObservation, Gaze};

/// Every threshold the judge uses, in one place. Angles in degrees, scores 0..1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JudgeConfig {
    /// Yaw change from the baseline that counts as a head turn.
    pub turn_degrees: f32,
    /// Pitch change from the baseline that counts as looking up or down.
    pub look_degrees: f32,
    /// Pitch change that counts as looking up or down when the eyes look that way too, their gaze score risen
    /// over the baseline's by at least `gaze_rise`: people asked to look down lower their eyes with their head,
    /// some more than their head (a woman in the genuine clips pitches 9.6 degrees, her gaze rising 0.5).
    pub look_with_eyes_degrees: f32,
    pub gaze_rise: f32,
    /// Consecutive counted frames an action must be held.
    pub hold_frames: usize,
    /// Motion continuity of head movements: the counted frame just before a turn or look first reaches its
    /// threshold must show the head on its way, at least this fraction of the threshold. A real head ramps over
    /// several frames (the video's look down crosses 0.39 and 0.74 at 8 fps); a swapped photo jumps from rest.
    pub min_ramp_progress: f32,
    /// Eye closure (both eyes' mean) that counts as closed, and its least rise over the baseline.
    pub eyes_closed: f32,
    pub eyes_closed_rise: f32,
    /// Eye closure's most rise over the baseline at which eyes count as open.
    pub eyes_open_rise: f32,
    /// After a closure, eyes count as open again once they have come back this fraction of the way from the deepest
    /// closure to the baseline, even if not yet within `eyes_open_rise` of it: a full blink can leave the eyes
    /// narrower than before (man C smiles as he reopens, 0.19-0.22 over his rest for the rest of the clip).
    pub eyes_reopened_fraction: f32,
    /// Smile score that counts, and its least rise over the baseline.
    pub smile: f32,
    pub smile_rise: f32,
    /// Mouth opening that counts, and its least rise over the baseline.
    pub mouth_open: f32,
    pub mouth_open_rise: f32,
    /// Mouth opening that is a deliberate wrong action during any other challenge.
    pub mouth_wrong: f32,
    /// Baseline: frames averaged, and how frontal they must be.
    pub baseline_frames: usize,
    pub baseline_max_yaw: f32,
    pub baseline_pitch_range: (f32, f32),
    /// Frame quality: face width as a fraction of the image width, centre margins, luma and sharpness. Sharpness
    /// barely separates a heavily blurred photo (3.2) from soft but genuine video frames (2.8 and up), so BLURRY
    /// is kept for frames that are blurred beyond use.
    pub min_face_fraction: f32,
    pub center_margin: f32,
    pub min_brightness: f32,
    pub max_brightness: f32,
    pub min_sharpness: f32,
    /// Continuity: largest jump of the face centre between counted frames (fraction of face width) and largest
    /// change of face width (ratio).
    pub max_center_jump: f32,
    pub max_size_ratio: f32,
}

impl JudgeConfig {
    /// Whether a head pose is frontal enough to serve as (part of) the baseline. The expression is not asked to be at
    /// rest: real faces do not all read as rest (glasses make some open eyes read as half closed, people smile while
    /// they wait); the baseline's expression levels are the lowest seen instead ([`Baseline::rest`]).
    pub fn is_frontal(&self, yaw: f32, pitch: f32) -> bool {
        let (low, high) = self.baseline_pitch_range;
        yaw.abs() <= self.baseline_max_yaw && (low..=high).contains(&pitch)
    }
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self {
            turn_degrees: 20.0,
            look_degrees: 15.0,
            look_with_eyes_degrees: 8.0,
            gaze_rise: 0.3,
            hold_frames: 2,
            min_ramp_progress: 0.2,
            eyes_closed: 0.6,
            eyes_closed_rise: 0.35,
            eyes_open_rise: 0.15,
            eyes_reopened_fraction: 0.75,
            smile: 0.5,
            smile_rise: 0.35,
            mouth_open: 0.35,
            mouth_open_rise: 0.25,
            mouth_wrong: 0.5,
            baseline_frames: 2,
            baseline_max_yaw: 15.0,
            baseline_pitch_range: (-30.0, 12.0),
            min_face_fraction: 0.12,
            center_margin: 0.1,
            min_brightness: 40.0,
            max_brightness: 220.0,
            min_sharpness: 2.0,
            max_center_jump: 0.6,
            max_size_ratio: 1.5,
        }
    }
}

/// Why a frame did not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Feedback {
    NoFace,
    MultipleFaces,
    FaceTooSmall,
    FaceNotCentered,
    TooDark,
    TooBright,
    Blurry,
    FaceChanged,
}

impl Feedback {
    /// What the user should do about it, in words.
    pub fn message(self) -> &'static str {
        match self {
            Feedback::NoFace => "No face found: look into the camera",
            Feedback::MultipleFaces => "More than one face: only one person may be in view",
            Feedback::FaceTooSmall => "Too far away: move closer to the camera",
            Feedback::FaceNotCentered => "Move your face to the middle of the picture",
            Feedback::TooDark => "Too dark: find more light",
            Feedback::TooBright => "Too bright: avoid light shining into the camera",
            Feedback::Blurry => "The picture is blurred: hold still",
            Feedback::FaceChanged => "The face in view changed",
        }
    }

    /// What the end user is told when a challenge ran out of time while most of its frames got this feedback:
    /// what stopped the movement being seen, and how to retry.
    pub fn timeout_advice(self) -> &'static str {
        match self {
            Feedback::TooDark => {
                "Not in time: the picture was too dark to see the movement. Find more light, facing you, and start \
                 again."
            }
            Feedback::TooBright => {
                "Not in time: too much light shone into the camera. Move away from bright light behind you and start \
                 again."
            }
            Feedback::Blurry => "Not in time: the picture was blurred. Hold still, wipe the lens, and start again.",
            Feedback::NoFace => "Not in time: no face was seen. Start again, looking into the camera.",
            Feedback::FaceTooSmall => "Not in time: your face was too far away. Start again closer to the camera.",
            Feedback::FaceNotCentered => {
                "Not in time: your face was not in the middle of the picture. Start again with it centred."
            }
            Feedback::MultipleFaces => "Not in time: more than one face was in view. Start again, alone.",
            Feedback::FaceChanged => "The face in view changed. Start again, alone, with your whole face in the frame.",
        }
    }
}

/// What the judge keeps of one counted frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaceSample {
    pub yaw: f32,
    pub pitch: f32,
    pub eye_closure: f32,
    pub smile: f32,
    pub mouth_open: f32,
    #[serde(default)]
    pub gaze: Gaze,
    pub bbox: BoundingBox,
    pub antispoof_real: Option<f32>,
}

/// Turns an observation into a sample, or says why the frame does not count. Continuity with the previous
/// counted face is checked separately ([`continuity`]).
pub fn sample_frame(observation: &FrameObservation, config: &JudgeConfig) -> Result<FaceSample, Feedback> {
    let face = match (&observation.face, observation.faces) {
        (_, n) if n > 1 => return Err(Feedback::MultipleFaces),
        (None, _) | (_, 0) => return Err(Feedback::NoFace),
        (Some(face), _) => face,
    };
    let (width, height) = (observation.width as f32, observation.height as f32);
    if face.bbox.width < config.min_face_fraction * width {
        return Err(Feedback::FaceTooSmall);
    }
    let (cx, cy) = face.bbox.center();
    let inside = |v: f32, side: f32| v >= config.center_margin * side && v <= (1.0 - config.center_margin) * side;
    if !inside(cx, width) || !inside(cy, height) {
        return Err(Feedback::FaceNotCentered);
    }
    if face.quality.brightness < config.min_brightness {
        return Err(Feedback::TooDark);
    }
    if face.quality.brightness > config.max_brightness {
        return Err(Feedback::TooBright);
    }
    if face.quality.sharpness < config.min_sharpness {
        return Err(Feedback::Blurry);
    }
    Ok(FaceSample {
        yaw: face.pose.yaw,
        pitch: face.pose.pitch,
        eye_closure: (face.eye_closure[0] + face.eye_closure[1]) / 2.0,
        smile: face.smile,
        mouth_open: face.mouth_open,
        gaze: face.gaze,
        bbox: face.bbox,
        antispoof_real: face.antispoof_real,
    })
}

/// Whether `next` can be the same face as `previous`, a frame or two later: no jump of position or size.
pub fn continuity(previous: &FaceSample, next: &FaceSample, config: &JudgeConfig) -> Result<(), Feedback> {
    let (px, py) = previous.bbox.center();
    let (nx, ny) = next.bbox.center();
    let jump = (nx - px).hypot(ny - py) / previous.bbox.width.max(1.0);
    let ratio = next.bbox.width / previous.bbox.width.max(1.0);
    if jump > config.max_center_jump || ratio > config.max_size_ratio || ratio < 1.0 / config.max_size_ratio {
        Err(Feedback::FaceChanged)
    } else {
        Ok(())
    }
}

/// The user's face at rest: head pose from the mean of the first frontal samples; eye closure, smile and mouth
/// opening and gaze the lowest any frontal sample showed so far (each action is a rise over the user's own rest).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub yaw: f32,
    pub pitch: f32,
    pub eye_closure: f32,
    pub smile: f32,
    pub mouth_open: f32,
    #[serde(default)]
    pub gaze: Gaze,
}

impl Baseline {
    /// The mean of `samples` (at least one).
    pub fn from_samples(samples: &[FaceSample]) -> Baseline {
        let n = samples.len().max(1) as f32;
        let mean = |f: fn(&FaceSample) -> f32| samples.iter().map(f).sum::<f32>() / n;
        Baseline {
            yaw: mean(|s| s.yaw),
            pitch: mean(|s| s.pitch),
            eye_closure: mean(|s| s.eye_closure),
            smile: mean(|s| s.smile),
            mouth_open: mean(|s| s.mouth_open),
            gaze: Gaze { down: mean(|s| s.gaze.down), up: mean(|s| s.gaze.up) },
        }
        .rest_all(samples)
    }

    /// Lowers the expression levels to those of `sample` where it is more at rest.
    pub fn rest(&mut self, sample: &FaceSample) {
        self.eye_closure = self.eye_closure.min(sample.eye_closure);
        self.smile = self.smile.min(sample.smile);
        self.mouth_open = self.mouth_open.min(sample.mouth_open);
        self.gaze.down = self.gaze.down.min(sample.gaze.down);
        self.gaze.up = self.gaze.up.min(sample.gaze.up);
    }

    fn rest_all(mut self, samples: &[FaceSample]) -> Baseline {
        samples.iter().for_each(|sample| self.rest(sample));
        self
    }
}

/// The judge's verdict on a challenge after the latest sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Not yet: `confidence` below 0.5 says how close the evidence came.
    Pending { confidence: f32 },
    /// Done: `confidence` 0.5 at the threshold, toward 1 as the evidence goes past it.
    Passed { confidence: f32 },
    /// A deliberate wrong action, held.
    WrongAction,
}

/// Maps evidence over a threshold into 0..1 with 0.5 at the threshold (1 at twice the threshold).
fn confidence(evidence: f32, threshold: f32) -> f32 {
    (0.5 * evidence / threshold).clamp(0.0, 1.0)
}

/// How far each deliberate action went in one sample, relative to the baseline, in units of its threshold
/// (1.0 = exactly at threshold). Positive only in the action's direction.
#[derive(Clone, Copy)]
struct Actions {
    left: f32,
    right: f32,
    /// A turn away from the camera as well as from the baseline: what a wrong turn must show. A user whose
    /// baseline formed while their head swayed to one side may sway as far to the other while doing something
    /// else, and still face the camera.
    left_away: f32,
    right_away: f32,
    /// The head's pitch alone (wrong actions are judged on the head).
    up: f32,
    down: f32,
    /// The look requested: the head's pitch, or a smaller pitch with the eyes looking the same way.
    look_up: f32,
    look_down: f32,
    smile: f32,
    mouth: f32,
    mouth_wrong: f32,
    eyes_closed: f32,
}

fn actions(sample: &FaceSample, base: &Baseline, config: &JudgeConfig) -> Actions {
    let dyaw = sample.yaw - base.yaw;
    let dpitch = sample.pitch - base.pitch;
    // An action must pass both its rise over the baseline and its absolute level: the weaker of the two counts.
    let both = |value: f32, base_value: f32, level: f32, rise: f32| ((value - base_value) / rise).min(value / level);
    let look = |pitch: f32, gaze: f32, base_gaze: f32| {
        let with_eyes = (pitch / config.look_with_eyes_degrees).min((gaze - base_gaze) / config.gaze_rise);
        (pitch / config.look_degrees).max(with_eyes)
    };
    Actions {
        left: dyaw / config.turn_degrees,
        right: -dyaw / config.turn_degrees,
        left_away: dyaw.min(sample.yaw) / config.turn_degrees,
        right_away: -dyaw.max(sample.yaw) / config.turn_degrees,
        up: dpitch / config.look_degrees,
        down: -dpitch / config.look_degrees,
        look_up: look(dpitch, sample.gaze.up, base.gaze.up),
        look_down: look(-dpitch, sample.gaze.down, base.gaze.down),
        smile: both(sample.smile, base.smile, config.smile, config.smile_rise),
        mouth: both(sample.mouth_open, base.mouth_open, config.mouth_open, config.mouth_open_rise),
        mouth_wrong: sample.mouth_open / config.mouth_wrong,
        eyes_closed: both(sample.eye_closure, base.eye_closure, config.eyes_closed, config.eyes_closed_rise),
    }
}

/// The strength (threshold units) of the requested action in one sample.
fn requested(kind: ChallengeType, a: &Actions) -> f32 {
    match kind {
        ChallengeType::TurnLeft => a.left,
        ChallengeType::TurnRight => a.right,
        ChallengeType::LookUp => a.look_up,
        ChallengeType::LookDown => a.look_down,
        ChallengeType::Smile => a.smile,
        ChallengeType::OpenMouth => a.mouth,
        ChallengeType::Blink => a.eyes_closed,
    }
}

/// Forgets the previous challenge's action in one sample: the user is still returning from it.
fn without(previous: ChallengeType, a: &Actions) -> Actions {
    let mut a = Actions { ..*a };
    match previous {
        ChallengeType::TurnLeft => (a.left, a.left_away) = (0.0, 0.0),
        ChallengeType::TurnRight => (a.right, a.right_away) = (0.0, 0.0),
        ChallengeType::LookUp => (a.up, a.look_up) = (0.0, 0.0),
        ChallengeType::LookDown => (a.down, a.look_down) = (0.0, 0.0),
        ChallengeType::OpenMouth => a.mouth_wrong = 0.0,
        ChallengeType::Blink | ChallengeType::Smile => {}
    }
    a
}

/// Whether a sample shows nothing that could pass a `kind` challenge or fail it: its own action below
/// `min_ramp_progress` of its threshold (the least a frame on the way to it shows) and no wrong action. A frame at
/// rest decides nothing, nor one that only smiles, blinks or sways during another challenge.
pub fn idle_for(kind: ChallengeType, sample: &FaceSample, base: &Baseline, config: &JudgeConfig) -> bool {
    let a = actions(sample, base, config);
    requested(kind, &a) < config.min_ramp_progress && !wrong_action(kind, &a)
}

/// Whether one sample shows a deliberate action other than the one requested. Blinks and smiles never count
/// as wrong (they are involuntary or natural during other actions); opening the mouth wide does, except when
/// asked to smile (a broad smile opens the jaw) or to open it.
fn wrong_action(kind: ChallengeType, a: &Actions) -> bool {
    let turned = a.left_away >= 1.0 || a.right_away >= 1.0;
    let looked = a.up >= 1.0 || a.down >= 1.0;
    match kind {
        ChallengeType::TurnLeft => a.right_away >= 1.0 || (looked && a.left < 0.5) || a.mouth_wrong >= 1.0,
        ChallengeType::TurnRight => a.left_away >= 1.0 || (looked && a.right < 0.5) || a.mouth_wrong >= 1.0,
        ChallengeType::LookUp => a.down >= 1.0 || (turned && a.up < 0.5) || a.mouth_wrong >= 1.0,
        ChallengeType::LookDown => a.up >= 1.0 || (turned && a.down < 0.5) || a.mouth_wrong >= 1.0,
        ChallengeType::Blink => turned || looked || a.mouth_wrong >= 1.0,
        ChallengeType::Smile => turned || looked,
        ChallengeType::OpenMouth => turned || looked,
    }
}

/// Judges `kind` over the counted samples since the challenge started (oldest first). `previous` is the challenge
/// passed just before: while the user is still returning from that action, it is not a wrong action.
pub fn judge(
    kind: ChallengeType,
    previous: Option<ChallengeType>,
    samples: &[FaceSample],
    base: &Baseline,
    config: &JudgeConfig,
) -> Verdict {
    let mut all: Vec<Actions> = samples.iter().map(|s| actions(s, base, config)).collect();
    if let Some(previous) = previous {
        let returning = all.iter().take_while(|a| requested(previous, a) >= 0.5).count();
        for a in &mut all[..returning] {
            *a = without(previous, a);
        }
    }
    let hold = config.hold_frames.max(1);
    if all.len() >= hold && all[all.len() - hold..].iter().all(|a| wrong_action(kind, a)) {
        return Verdict::WrongAction;
    }
    if kind == ChallengeType::Blink {
        return judge_blink(samples, base, &all, config);
    }
    let best_recent = all.iter().map(|a| requested(kind, a)).fold(0.0f32, f32::max);
    if all.len() >= hold {
        let held = all[all.len() - hold..].iter().map(|a| requested(kind, a)).fold(f32::INFINITY, f32::min);
        if held >= 1.0 && (!is_head_movement(kind) || ramped(kind, &all, config)) {
            return Verdict::Passed { confidence: confidence(held, 1.0) };
        }
    }
    if let Some(strength) = released(kind, samples, config) {
        return Verdict::Passed { confidence: confidence(strength, 1.0) };
    }
    if is_head_movement(kind) && approached(kind, &all, config) {
        let last = requested(kind, &all[all.len() - 1]);
        return Verdict::Passed { confidence: confidence(last, 1.0) };
    }
    Verdict::Pending { confidence: confidence(best_recent.min(0.99), 1.0) }
}

fn is_head_movement(kind: ChallengeType) -> bool {
    matches!(kind, ChallengeType::TurnLeft | ChallengeType::TurnRight | ChallengeType::LookUp | ChallengeType::LookDown)
}

/// Whether the trailing run of frames past the threshold was reached through a frame on the way there.
fn ramped(kind: ChallengeType, all: &[Actions], config: &JudgeConfig) -> bool {
    let run = all.iter().rev().take_while(|a| requested(kind, a) >= 1.0).count();
    let before = all.len() - run;
    before > 0 && requested(kind, &all[before - 1]) >= config.min_ramp_progress
}

/// Whether the last frame reached the threshold after two frames that rose toward it, the first already on its
/// way: a head seen moving that far stands in for the hold. A head that looks far down can leave the picture within
/// a second, and at 5 frames a second only one frame is past the threshold (the genuine clip of man A).
fn approached(kind: ChallengeType, all: &[Actions], config: &JudgeConfig) -> bool {
    let [first, second, last] = match all {
        [.., a, b, c] => [a, b, c].map(|a| requested(kind, a)),
        _ => return false,
    };
    last >= 1.0 && second < 1.0 && first >= config.min_ramp_progress && first < second && second < last
}

/// SMILE or OPEN_MOUTH shown, then let go: its level held for the hold frames, then a later frame that has fallen
/// by at least the rise from the weaker of them. The strength (threshold units) of the first such fall.
///
/// An expression is a change of the face, and a fall shows it as well as a rise: a user who already smiles when the
/// session starts makes their rest a smile, so a broader smile can never rise the full step over it, but letting
/// it go falls that far (woman I's clip opens on a closed-mouth smile of 0.75; her toothy smile reads 0.54). A photo
/// never falls; two stills swapped fall as they rise, which is why every session also holds a head movement.
fn released(kind: ChallengeType, samples: &[FaceSample], config: &JudgeConfig) -> Option<f32> {
    let (value, level, fall): (fn(&FaceSample) -> f32, f32, f32) = match kind {
        ChallengeType::Smile => (|s| s.smile, config.smile, config.smile_rise),
        ChallengeType::OpenMouth => (|s| s.mouth_open, config.mouth_open, config.mouth_open_rise),
        _ => return None,
    };
    let hold = config.hold_frames.max(1);
    // The highest level held so far, by the weaker frame of its hold.
    let mut held: Option<f32> = None;
    for (end, sample) in samples.iter().enumerate() {
        if let Some(top) = held {
            let strength = (top / level).min((top - value(sample)) / fall);
            if strength >= 1.0 {
                return Some(strength);
            }
        }
        if end + 1 >= hold {
            let weakest = samples[end + 1 - hold..=end].iter().map(value).fold(f32::INFINITY, f32::min);
            if weakest >= level {
                held = Some(held.map_or(weakest, |top| top.max(weakest)));
            }
        }
    }
    None
}

/// BLINK: eyes open, then closed, then open again, in that order within the challenge.
fn judge_blink(samples: &[FaceSample], base: &Baseline, all: &[Actions], config: &JudgeConfig) -> Verdict {
    // Open is relative to the user's own rest: some open eyes (behind glasses, say) never read as open.
    let rise = |s: &FaceSample| s.eye_closure - base.eye_closure;
    let open = |s: &FaceSample| rise(s) <= config.eyes_open_rise;
    let reopened = |s: &FaceSample, deepest: &FaceSample| {
        open(s) || rise(s) <= (1.0 - config.eyes_reopened_fraction) * rise(deepest)
    };
    let mut seen_open = false;
    // The deepest closed sample so far, and its strength in threshold units.
    let mut deepest: Option<(&FaceSample, f32)> = None;
    let mut best = 0.0f32;
    for (sample, action) in samples.iter().zip(all) {
        best = best.max(action.eyes_closed);
        let closed = action.eyes_closed >= 1.0;
        match deepest {
            Some((deep, depth)) if reopened(sample, deep) => {
                return Verdict::Passed { confidence: confidence(depth, 1.0) }
            }
            Some((_, depth)) if closed && action.eyes_closed > depth => deepest = Some((sample, action.eyes_closed)),
            None if seen_open && closed => deepest = Some((sample, action.eyes_closed)),
            None if open(sample) => seen_open = true,
            _ => {}
        }
    }
    Verdict::Pending { confidence: confidence(best.min(0.99), 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn neutral() -> FaceSample {
        FaceSample {
            yaw: 2.0,
            pitch: -8.0,
            eye_closure: 0.1,
            smile: 0.02,
            mouth_open: 0.02,
            gaze: Gaze { down: 0.1, up: 0.05 },
            bbox: BoundingBox { x: 220.0, y: 140.0, width: 200.0, height: 240.0 },
            antispoof_real: Some(0.9),
        }
    }

    fn base() -> Baseline {
        Baseline::from_samples(&[neutral()])
    }

    fn with(f: impl Fn(&mut FaceSample)) -> FaceSample {
        let mut s = neutral();
        f(&mut s);
        s
    }

    fn run(kind: ChallengeType, samples: &[FaceSample]) -> Verdict {
        judge(kind, None, samples, &base(), &JudgeConfig::default())
    }

    #[test]
    fn a_turn_must_be_held_for_two_frames() {
        let turning = with(|s| s.yaw = 12.0);
        let turned = with(|s| s.yaw = 30.0);
        assert!(matches!(run(ChallengeType::TurnLeft, &[neutral(), turning, turned]), Verdict::Pending { .. }));
        let Verdict::Passed { confidence } = run(ChallengeType::TurnLeft, &[neutral(), turning, turned, turned]) else {
            panic!("held turn should pass")
        };
        assert!((confidence - 0.5 * 28.0 / 20.0).abs() < 1e-5);
    }

    #[test]
    fn a_head_movement_that_jumps_from_rest_never_passes() {
        // A swapped photo: rest, then already turned, held as long as the attacker likes.
        let turned = with(|s| s.yaw = 35.0);
        let mut samples = vec![neutral(), neutral()];
        samples.extend([turned; 10]);
        assert!(matches!(run(ChallengeType::TurnLeft, &samples), Verdict::Pending { .. }));
        // One frame on the way (0.2 of the threshold and more) is what a real head shows.
        let on_the_way = with(|s| s.yaw = 2.0 + 0.25 * 20.0);
        let ramp = [neutral(), on_the_way, turned, turned];
        assert!(matches!(run(ChallengeType::TurnLeft, &ramp), Verdict::Passed { .. }));
        let barely = with(|s| s.yaw = 2.0 + 0.1 * 20.0);
        assert!(matches!(run(ChallengeType::TurnLeft, &[neutral(), barely, turned, turned]), Verdict::Pending { .. }));
        // Smiles are not head movements: no ramp needed.
        let smiling = with(|s| s.smile = 0.9);
        assert!(matches!(run(ChallengeType::Smile, &[neutral(), smiling, smiling]), Verdict::Passed { .. }));
    }

    #[test]
    fn a_movement_seen_on_its_way_needs_no_hold() {
        let down = |degrees: f32| with(|s| s.pitch = -8.0 - degrees);
        let steady = [neutral(), down(4.0), down(12.0), down(24.0)];
        assert!(matches!(run(ChallengeType::LookDown, &steady), Verdict::Passed { .. }));
        // One step from rest, or a ramp that does not rise all the way, still needs the hold.
        assert!(matches!(run(ChallengeType::LookDown, &[neutral(), neutral(), down(24.0)]), Verdict::Pending { .. }));
        let wavering = [neutral(), down(12.0), down(4.0), down(24.0)];
        assert!(matches!(run(ChallengeType::LookDown, &wavering), Verdict::Pending { .. }));
        let barely = [neutral(), down(1.0), down(12.0), down(24.0)];
        assert!(matches!(run(ChallengeType::LookDown, &barely), Verdict::Pending { .. }));
    }

    #[test]
    fn the_wrong_direction_fails() {
        let right = with(|s| s.yaw = -30.0);
        assert_eq!(run(ChallengeType::TurnLeft, &[right, right]), Verdict::WrongAction);
        let up = with(|s| s.pitch = 15.0);
        assert_eq!(run(ChallengeType::TurnLeft, &[up, up]), Verdict::WrongAction);
        let down = with(|s| s.pitch = -30.0);
        assert_eq!(run(ChallengeType::LookUp, &[down, down]), Verdict::WrongAction);
    }

    #[test]
    fn a_smaller_look_counts_when_the_eyes_look_that_way_too() {
        // Pitch 9 degrees down from the baseline's -8: past the look-with-eyes threshold, under the head's own.
        let pitch = |degrees: f32, gaze_down: f32| with(|s| (s.pitch, s.gaze.down) = (-8.0 - degrees, gaze_down));
        let head_only = [neutral(), pitch(4.0, 0.1), pitch(9.0, 0.1), pitch(9.0, 0.1)];
        assert!(matches!(run(ChallengeType::LookDown, &head_only), Verdict::Pending { .. }));
        let with_eyes = [neutral(), pitch(4.0, 0.4), pitch(9.0, 0.7), pitch(9.0, 0.7)];
        assert!(matches!(run(ChallengeType::LookDown, &with_eyes), Verdict::Passed { .. }));
        // Eyes lowered (or closed: the model's gaze rises in a blink too) without the head: no look.
        let eyes_only = [neutral(), pitch(1.0, 0.7), pitch(1.0, 0.7)];
        assert!(matches!(run(ChallengeType::LookDown, &eyes_only), Verdict::Pending { .. }));
        // The eyes looking up do not make a look down.
        let up = |degrees: f32| with(|s| (s.pitch, s.gaze.up) = (-8.0 - degrees, 0.8));
        assert!(matches!(
            run(ChallengeType::LookDown, &[neutral(), up(4.0), up(9.0), up(9.0)]),
            Verdict::Pending { .. }
        ));
    }

    #[test]
    fn a_wrong_turn_must_turn_away_from_the_camera() {
        // A baseline formed while the head swayed 9 degrees to the user's left; a sway to 13 degrees right is 22
        // from the baseline but still faces the camera: no wrong action during a look.
        let swayed_left = Baseline { yaw: 9.0, ..base() };
        let config = JudgeConfig::default();
        let swayed_right = with(|s| s.yaw = -13.0);
        let verdict = judge(ChallengeType::LookDown, None, &[swayed_right, swayed_right], &swayed_left, &config);
        assert!(matches!(verdict, Verdict::Pending { .. }));
        let turned_right = with(|s| s.yaw = -25.0);
        let verdict = judge(ChallengeType::LookDown, None, &[turned_right, turned_right], &swayed_left, &config);
        assert_eq!(verdict, Verdict::WrongAction);
    }

    #[test]
    fn blink_needs_open_closed_open() {
        let closed = with(|s| s.eye_closure = 0.9);
        let open = neutral();
        assert!(matches!(run(ChallengeType::Blink, &[closed, open]), Verdict::Pending { .. }));
        assert!(matches!(run(ChallengeType::Blink, &[closed, closed, closed]), Verdict::Pending { .. }));
        assert!(matches!(run(ChallengeType::Blink, &[open, closed, open]), Verdict::Passed { .. }));
    }

    #[test]
    fn eyes_reopen_most_of_the_way_from_their_deepest_closure() {
        let (open, closed) = (neutral(), with(|s| s.eye_closure = 1.0));
        // 0.2 over rest (0.1): not open by the rest rule (0.15), but 78 % of the way back from a full closure.
        let narrowed = with(|s| s.eye_closure = 0.3);
        assert!(matches!(run(ChallengeType::Blink, &[open, closed, narrowed]), Verdict::Passed { .. }));
        // Half way back is still closing or reopening.
        let half = with(|s| s.eye_closure = 0.55);
        assert!(matches!(run(ChallengeType::Blink, &[open, closed, half]), Verdict::Pending { .. }));
        // From a shallower closure (0.75) the way back must go further: 0.3 is only 69 % of it.
        let shallow = with(|s| s.eye_closure = 0.75);
        assert!(matches!(run(ChallengeType::Blink, &[open, shallow, narrowed]), Verdict::Pending { .. }));
    }

    #[test]
    fn blinking_is_never_a_wrong_action() {
        let closed = with(|s| s.eye_closure = 0.9);
        for kind in ChallengeType::ALL {
            assert_ne!(run(kind, &[closed, closed, closed]), Verdict::WrongAction, "{kind:?}");
        }
    }

    #[test]
    fn smile_needs_a_rise_and_a_level() {
        let smiling = with(|s| s.smile = 0.9);
        assert!(matches!(run(ChallengeType::Smile, &[smiling, smiling]), Verdict::Passed { .. }));
        let already = Baseline { smile: 0.5, ..base() };
        let config = JudgeConfig::default();
        let slight = with(|s| s.smile = 0.7);
        assert!(matches!(
            judge(ChallengeType::Smile, None, &[slight, slight], &already, &config),
            Verdict::Pending { .. }
        ));
    }

    #[test]
    fn an_expression_let_go_passes_and_a_held_one_does_not() {
        // A user who smiles from the start: the rest is a smile, so no rise; letting it go is the change.
        let already = Baseline { smile: 0.4, ..base() };
        let config = JudgeConfig::default();
        let smiling = with(|s| s.smile = 0.6);
        let relaxed = with(|s| s.smile = 0.2);
        let judged = |samples: &[FaceSample]| judge(ChallengeType::Smile, None, samples, &already, &config);
        assert!(matches!(judged(&[smiling, smiling, relaxed]), Verdict::Passed { .. }));
        // A photo's smile never falls; one smiling frame is no hold; a fall short of the rise is no release.
        assert!(matches!(judged(&[smiling, smiling, smiling, smiling]), Verdict::Pending { .. }));
        assert!(matches!(judged(&[smiling, relaxed, smiling, relaxed]), Verdict::Pending { .. }));
        let eased = with(|s| s.smile = 0.3);
        assert!(matches!(judged(&[smiling, smiling, eased]), Verdict::Pending { .. }));
        // The same for an open mouth, and never for a head movement.
        let open = with(|s| s.mouth_open = 0.6);
        let closed = with(|s| s.mouth_open = 0.1);
        let wide = Baseline { mouth_open: 0.5, ..base() };
        let mouth = judge(ChallengeType::OpenMouth, None, &[open, open, closed], &wide, &config);
        assert!(matches!(mouth, Verdict::Passed { .. }));
        assert_eq!(released(ChallengeType::TurnLeft, &[smiling, smiling, relaxed], &config), None);
    }

    #[test]
    fn open_mouth_passes_and_is_wrong_during_a_turn() {
        let open = with(|s| s.mouth_open = 0.7);
        assert!(matches!(run(ChallengeType::OpenMouth, &[open, open]), Verdict::Passed { .. }));
        assert_eq!(run(ChallengeType::TurnRight, &[open, open]), Verdict::WrongAction);
    }

    #[test]
    fn returning_from_the_previous_action_is_not_wrong() {
        let turned = with(|s| s.yaw = 35.0);
        let config = JudgeConfig::default();
        let after_turn =
            judge(ChallengeType::Blink, Some(ChallengeType::TurnLeft), &[turned, turned], &base(), &config);
        assert!(matches!(after_turn, Verdict::Pending { .. }));
        // Turning back to it after having returned is wrong again.
        let again = [turned, neutral(), turned, turned];
        let verdict = judge(ChallengeType::Blink, Some(ChallengeType::TurnLeft), &again, &base(), &config);
        assert_eq!(verdict, Verdict::WrongAction);
    }

    #[test]
    fn continuity_rejects_a_jump() {
        let config = JudgeConfig::default();
        let moved = with(|s| s.bbox.x += 300.0);
        assert_eq!(continuity(&neutral(), &moved, &config), Err(Feedback::FaceChanged));
        let shrunk = with(|s| s.bbox.width = 100.0);
        assert_eq!(continuity(&neutral(), &shrunk, &config), Err(Feedback::FaceChanged));
        let nudged = with(|s| s.bbox.x += 20.0);
        assert_eq!(continuity(&neutral(), &nudged, &config), Ok(()));
    }
}
