//! Synthetic performances of each challenge, as scripted faces.

use liveness::domain::ChallengeType;
use liveness::vision::fake::FakeFace;

/// A genuine performance of `kind`: a ramp over several frames, a hold, and a return to neutral.
pub fn genuine(kind: ChallengeType) -> Vec<FakeFace> {
    let step = |t: f32| {
        let mut f = FakeFace::default();
        match kind {
            ChallengeType::TurnLeft => f.yaw += 35.0 * t,
            ChallengeType::TurnRight => f.yaw -= 35.0 * t,
            ChallengeType::LookUp => f.pitch += 25.0 * t,
            ChallengeType::LookDown => f.pitch -= 25.0 * t,
            ChallengeType::Smile => f.smile = 0.02 + 0.9 * t,
            ChallengeType::OpenMouth => f.mouth_open = 0.02 + 0.6 * t,
            ChallengeType::Blink => f.eye_closure = 0.1 + 0.85 * t,
        }
        f
    };
    let ramp = [0.0, 0.3, 0.7, 1.0, 1.0, 1.0, 0.5, 0.0];
    ramp.iter().map(|&t| step(t)).collect()
}

/// A deliberate wrong action while `kind` is asked: the opposite turn or look, or a turn for the others.
pub fn wrong(kind: ChallengeType) -> Vec<FakeFace> {
    let opposite = match kind {
        ChallengeType::TurnLeft => ChallengeType::TurnRight,
        ChallengeType::LookUp => ChallengeType::LookDown,
        ChallengeType::LookDown => ChallengeType::LookUp,
        _ => ChallengeType::TurnLeft,
    };
    genuine(opposite)
}

/// The challenge type of a WebSocket action string.
pub fn kind_of_action(action: &str) -> ChallengeType {
    *ChallengeType::WEBSOCKET
        .iter()
        .find(|&&kind| kind.action() == action)
        .unwrap_or_else(|| panic!("not an action of the spec: {action}"))
}

/// The challenge type of a REST wire name (`TURN_LEFT`, ...).
pub fn kind_of_rest_type(name: &str) -> ChallengeType {
    *ChallengeType::ALL.iter().find(|kind| kind.as_str() == name).unwrap_or_else(|| panic!("not a type: {name}"))
}
