//! The seven challenge types, their instructions, and how a session's challenges are drawn.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// An action the user is asked to perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChallengeType {
    TurnLeft,
    TurnRight,
    LookUp,
    LookDown,
    Blink,
    Smile,
    OpenMouth,
}

impl ChallengeType {
    /// Every type, in the spec's order.
    pub const ALL: [ChallengeType; 7] = [
        ChallengeType::TurnLeft,
        ChallengeType::TurnRight,
        ChallengeType::LookUp,
        ChallengeType::LookDown,
        ChallengeType::Blink,
        ChallengeType::Smile,
        ChallengeType::OpenMouth,
    ];

    /// The six actions the WebSocket workflow's spec names (it has no OPEN_MOUTH).
    pub const WEBSOCKET: [ChallengeType; 6] = [
        ChallengeType::Blink,
        ChallengeType::TurnLeft,
        ChallengeType::TurnRight,
        ChallengeType::LookUp,
        ChallengeType::LookDown,
        ChallengeType::Smile,
    ];

    /// The instruction shown to the user, exactly as the spec words it.
    pub fn instruction(self) -> &'static str {
        match self {
            ChallengeType::TurnLeft => "Turn your head to the left",
            ChallengeType::TurnRight => "Turn your head to the right",
            ChallengeType::LookUp => "Look upward",
            ChallengeType::LookDown => "Look downward",
            ChallengeType::Blink => "Blink your eyes",
            ChallengeType::Smile => "Smile",
            ChallengeType::OpenMouth => "Open your mouth",
        }
    }

    /// The WebSocket spec's action string: `BLINK`, `LOOK LEFT`, `LOOK RIGHT`, `LOOK UP`, `LOOK DOWN`, `SMILE`.
    /// (`OPEN MOUTH` is never drawn for that workflow; it is named only so every type has a string.)
    pub fn action(self) -> &'static str {
        match self {
            ChallengeType::Blink => "BLINK",
            ChallengeType::TurnLeft => "LOOK LEFT",
            ChallengeType::TurnRight => "LOOK RIGHT",
            ChallengeType::LookUp => "LOOK UP",
            ChallengeType::LookDown => "LOOK DOWN",
            ChallengeType::Smile => "SMILE",
            ChallengeType::OpenMouth => "OPEN MOUTH",
        }
    }

    /// A short visual cue shown beside the instruction. Left and right are the user's own, which is also the
    /// screen's side in a mirrored preview. Characters common fonts have (no emoji: many machines lack an emoji
    /// font).
    pub fn cue(self) -> &'static str {
        match self {
            ChallengeType::TurnLeft => "←",
            ChallengeType::TurnRight => "→",
            ChallengeType::LookUp => "↑",
            ChallengeType::LookDown => "↓",
            ChallengeType::Blink => "◡ ◡",
            ChallengeType::Smile => "☺",
            ChallengeType::OpenMouth => "○",
        }
    }

    /// Whether the challenge moves the head (a turn or a look): judged with motion continuity, so two stills
    /// cannot pass it.
    pub fn is_head_movement(self) -> bool {
        matches!(
            self,
            ChallengeType::TurnLeft | ChallengeType::TurnRight | ChallengeType::LookUp | ChallengeType::LookDown
        )
    }

    /// The spec's wire name, e.g. `TURN_LEFT`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeType::TurnLeft => "TURN_LEFT",
            ChallengeType::TurnRight => "TURN_RIGHT",
            ChallengeType::LookUp => "LOOK_UP",
            ChallengeType::LookDown => "LOOK_DOWN",
            ChallengeType::Blink => "BLINK",
            ChallengeType::Smile => "SMILE",
            ChallengeType::OpenMouth => "OPEN_MOUTH",
        }
    }
}

/// One challenge of a session.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    #[serde(rename = "type")]
    pub kind: ChallengeType,
    pub timeout_seconds: f64,
}

/// Draws `count` distinct challenge types from `pool` in random order from a cryptographically secure generator
/// (the caller passes the OS generator in production, a seeded one in tests). Private: sessions are drawn through
/// [`draw_challenges_with_head_movement`] only, since stills pass a session of expressions alone.
fn draw_challenges(
    rng: &mut dyn RngCore,
    pool: &[ChallengeType],
    count: usize,
    timeout_seconds: f64,
) -> Vec<Challenge> {
    let mut kinds = pool.to_vec();
    kinds.shuffle(rng);
    kinds.iter().take(count).map(|&kind| Challenge { kind, timeout_seconds }).collect()
}

/// As [`draw_challenges`], but at least one drawn challenge is a head movement whenever the pool holds one: if
/// the draw has none, its last challenge is swapped for a head movement drawn from the pool.
pub fn draw_challenges_with_head_movement(
    rng: &mut dyn RngCore,
    pool: &[ChallengeType],
    count: usize,
    timeout_seconds: f64,
) -> Vec<Challenge> {
    let mut challenges = draw_challenges(rng, pool, count, timeout_seconds);
    if challenges.iter().any(|c| c.kind.is_head_movement()) {
        return challenges;
    }
    let movements: Vec<_> = pool.iter().copied().filter(|c| c.is_head_movement()).collect();
    if let (Some(&kind), Some(last)) = (movements.choose(rng), challenges.last_mut()) {
        last.kind = kind;
    }
    challenges
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn draws_distinct_types() {
        let mut rng = StdRng::seed_from_u64(7);
        for count in 1..=7 {
            let challenges = draw_challenges(&mut rng, &ChallengeType::ALL, count, 5.0);
            assert_eq!(challenges.len(), count);
            let mut kinds: Vec<_> = challenges.iter().map(|c| c.kind.as_str()).collect();
            kinds.dedup();
            kinds.sort();
            kinds.dedup();
            assert_eq!(kinds.len(), count);
        }
    }

    #[test]
    fn draws_vary() {
        let mut rng = StdRng::seed_from_u64(1);
        let first: Vec<_> = (0..20).map(|_| draw_challenges(&mut rng, &ChallengeType::ALL, 3, 5.0)[0].kind).collect();
        assert!(first.iter().any(|k| *k != first[0]));
    }

    #[test]
    fn a_head_movement_is_always_drawn_when_asked_for() {
        let mut rng = StdRng::seed_from_u64(3);
        for count in 1..=7 {
            for _ in 0..50 {
                let challenges = draw_challenges_with_head_movement(&mut rng, &ChallengeType::ALL, count, 5.0);
                assert_eq!(challenges.len(), count);
                assert!(challenges.iter().any(|c| c.kind.is_head_movement()), "{challenges:?}");
                let mut kinds: Vec<_> = challenges.iter().map(|c| c.kind.as_str()).collect();
                kinds.sort();
                kinds.dedup();
                assert_eq!(kinds.len(), count, "still distinct");
            }
        }
        let stills = [ChallengeType::Blink, ChallengeType::Smile];
        assert_eq!(draw_challenges_with_head_movement(&mut rng, &stills, 2, 5.0).len(), 2, "none to give: as drawn");
    }

    #[test]
    fn wire_names_match_serde() {
        for kind in ChallengeType::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
