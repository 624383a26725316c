//! The pure domain: challenges, sessions and their state machine, and the judge. No I/O, no clocks, no
//! randomness of its own: time and random generators come in as arguments.

pub mod challenge;
pub mod judge;
pub mod session;

pub use challenge::{draw_challenges, Challenge, ChallengeType};
pub use judge::{Feedback, JudgeConfig};
pub use session::{EndReason, FrameOutcome, FrameRejection, Session, SessionRules, SessionState};
