//! The pure domain: challenges, sessions and their state machine, and the judge. No I/O, no clocks, no
//! randomness of its own: time and random generators come in as arguments.

pub mod challenge;
pub mod judge;
pub mod observation;
pub mod policy;
pub mod receipt;
pub mod session;

pub use challenge::{draw_challenges_with_head_movement, Challenge, ChallengeType};
pub use judge::{Feedback, JudgeConfig};
pub use observation::{
    BoundingBox, FaceObservation, FaceQuality, FrameObservation, Gaze, HeadPose, StageTimings, TrackingHint,
};
pub use policy::{Policy, PolicyViolation};
pub use receipt::{FrameReceipt, Receipts};
/// A measurement as reported to clients and people: three decimals (finer digits are noise), as `f64` so that
/// JSON prints exactly those digits.
pub fn reported(value: f32) -> f64 {
    (f64::from(value) * 1000.0).round() / 1000.0
}

pub use session::{
    EndReason, FrameOutcome, FrameRejection, Owner, ReferenceImage, Session, SessionRules, SessionState,
    NOT_VERIFIED_ADVICE,
};
