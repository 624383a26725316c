//! A relying party's policy: the security settings the server enforces on every session a tenant creates, so
//! that an end user's browser never chooses them. Every key of the policy file is optional; the defaults are the
//! ones a deployment with authentication runs with.

use serde::{Deserialize, Serialize};

use super::challenge::ChallengeType;

/// Failed checks after which a subject (`reference`) is locked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lockout {
    pub max_failures: u32,
    pub window_seconds: u64,
    pub lock_seconds: u64,
}

impl Default for Lockout {
    fn default() -> Self {
        Self { max_failures: 5, window_seconds: 180, lock_seconds: 1800 }
    }
}

/// How many sessions a tenant may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quota {
    pub sessions_per_minute: u32,
    pub sessions_per_day: u32,
}

impl Default for Quota {
    fn default() -> Self {
        Self { sessions_per_minute: 60, sessions_per_day: 10_000 }
    }
}

/// The rules a tenant's sessions are created under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub challenges_min: u32,
    pub challenges_max: u32,
    pub allowed_challenges: Vec<ChallengeType>,
    /// At least one challenge is a head movement (a turn or a look): those need gradual motion, which stills
    /// cannot give. Always true: a policy file may state it, but not turn it off, since two stills of one person
    /// (eyes open then closed, neutral then smiling) pass a session of expressions alone (docs/accuracy.md).
    pub require_head_movement: bool,
    pub timeout_seconds_min: f64,
    pub timeout_seconds_max: f64,
    /// The least passive-phase frames a WebSocket session may ask for.
    pub passive_frames_min: u32,
    /// Whether end users (client tokens, WebSocket messages) see anti-spoofing scores.
    pub client_scores: bool,
    /// Keep the session's sharpest frontal frame for the relying party.
    pub keep_reference_image: bool,
    pub lockout: Lockout,
    pub quota: Quota,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            challenges_min: 3,
            challenges_max: 4,
            allowed_challenges: ChallengeType::ALL.to_vec(),
            require_head_movement: true,
            timeout_seconds_min: 3.0,
            timeout_seconds_max: 10.0,
            passive_frames_min: 3,
            client_scores: false,
            keep_reference_image: false,
            lockout: Lockout::default(),
            quota: Quota::default(),
        }
    }
}

/// A request outside the policy: which parameter, and what the policy allows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{parameter} {message}")]
pub struct PolicyViolation {
    pub parameter: &'static str,
    pub message: String,
}

impl Policy {
    /// The spec's own bounds and nothing more: what a local server without authentication runs with.
    pub fn permissive() -> Policy {
        Policy {
            challenges_min: 1,
            challenges_max: ChallengeType::ALL.len() as u32,
            timeout_seconds_min: 1.0,
            timeout_seconds_max: 60.0,
            passive_frames_min: 0,
            client_scores: true,
            lockout: Lockout { max_failures: u32::MAX, ..Lockout::default() },
            quota: Quota { sessions_per_minute: u32::MAX, sessions_per_day: u32::MAX },
            ..Policy::default()
        }
    }

    /// Whether the policy is consistent: ranges not inverted, something to draw from. For policy files.
    pub fn validate(&self) -> Result<(), PolicyViolation> {
        let bad = |parameter, message: &str| Err(PolicyViolation { parameter, message: message.to_owned() });
        if self.challenges_min == 0 || self.challenges_min > self.challenges_max {
            return bad("challenges_min", "must be at least 1 and at most challenges_max");
        }
        if self.allowed_challenges.is_empty() {
            return bad("allowed_challenges", "must name at least one challenge type");
        }
        if !self.require_head_movement {
            return bad(
                "require_head_movement",
                "cannot be turned off: stills of one person pass sessions of expressions alone",
            );
        }
        if !self.allowed_challenges.iter().any(|c| c.is_head_movement()) {
            return bad("require_head_movement", "needs a head movement among allowed_challenges");
        }
        let timeouts_ok = self.timeout_seconds_min.is_finite()
            && self.timeout_seconds_max.is_finite()
            && self.timeout_seconds_min > 0.0
            && self.timeout_seconds_min <= self.timeout_seconds_max;
        if !timeouts_ok {
            return bad("timeout_seconds_min", "must be positive and at most timeout_seconds_max");
        }
        Ok(())
    }

    /// Checks a session's number of challenges against the policy.
    pub fn check_challenges(&self, count: u32) -> Result<(), PolicyViolation> {
        within("num_challenges", count, self.challenges_min, self.challenges_max)
    }

    /// Checks a challenge's time limit against the policy.
    pub fn check_timeout(&self, seconds: f64) -> Result<(), PolicyViolation> {
        within("timeout_seconds", seconds, self.timeout_seconds_min, self.timeout_seconds_max)
    }

    /// Checks a WebSocket session's passive frames against the policy.
    pub fn check_passive_frames(&self, frames: u32) -> Result<(), PolicyViolation> {
        if frames >= self.passive_frames_min {
            Ok(())
        } else {
            Err(PolicyViolation {
                parameter: "passive_frames",
                message: format!(
                    "must be at least {} under this tenant's policy, got {frames}",
                    self.passive_frames_min
                ),
            })
        }
    }

    /// The number of challenges when the request names none: the spec's 3, within the policy's range.
    pub fn default_challenges(&self, spec_default: u32) -> u32 {
        spec_default.clamp(self.challenges_min, self.challenges_max)
    }

    /// The challenge time when the request names none: the spec's default, within the policy's range.
    pub fn default_timeout(&self, spec_default: f64) -> f64 {
        spec_default.clamp(self.timeout_seconds_min, self.timeout_seconds_max)
    }

    /// The challenge types to draw from, of those an interface offers.
    pub fn pool(&self, offered: &[ChallengeType]) -> Vec<ChallengeType> {
        offered.iter().copied().filter(|c| self.allowed_challenges.contains(c)).collect()
    }
}

/// `value` of `parameter` inside the policy's range `min..=max`, or the violation naming the range.
fn within<T: PartialOrd + std::fmt::Display>(
    parameter: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), PolicyViolation> {
    if min <= value && value <= max {
        Ok(())
    } else {
        let message = format!("must be between {min} and {max} under this tenant's policy, got {value}");
        Err(PolicyViolation { parameter, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_file_may_name_any_subset_of_keys() {
        let policy: Policy = serde_json::from_str(r#"{"challenges_min": 2, "lockout": {"max_failures": 3}}"#).unwrap();
        assert_eq!(policy.challenges_min, 2);
        assert_eq!(policy.challenges_max, 4);
        assert_eq!(policy.lockout, Lockout { max_failures: 3, ..Lockout::default() });
        assert!(serde_json::from_str::<Policy>(r#"{"challenge_min": 2}"#).is_err(), "a misspelt key is an error");
    }

    #[test]
    fn the_default_policy_refuses_what_the_permissive_one_allows() {
        let (strict, open) = (Policy::default(), Policy::permissive());
        assert_eq!(strict.check_challenges(1).unwrap_err().parameter, "num_challenges");
        assert!(open.check_challenges(1).is_ok());
        assert_eq!(strict.check_timeout(60.0).unwrap_err().parameter, "timeout_seconds");
        assert!(open.check_timeout(60.0).is_ok());
        assert_eq!(strict.check_passive_frames(0).unwrap_err().parameter, "passive_frames");
        assert!(open.check_passive_frames(0).is_ok());
        assert!(strict.validate().is_ok() && open.validate().is_ok());
        assert_eq!(strict.default_challenges(3), 3);
        assert_eq!(strict.default_timeout(5.0), 5.0);
    }

    #[test]
    fn inconsistent_policies_are_named() {
        let inverted = Policy { challenges_min: 5, challenges_max: 4, ..Policy::default() };
        assert_eq!(inverted.validate().unwrap_err().parameter, "challenges_min");
        let no_movement = Policy { allowed_challenges: vec![ChallengeType::Blink], ..Policy::default() };
        assert_eq!(no_movement.validate().unwrap_err().parameter, "require_head_movement");
        let turned_off: Policy = serde_json::from_str(r#"{"require_head_movement": false}"#).unwrap();
        assert_eq!(turned_off.validate().unwrap_err().parameter, "require_head_movement");
        assert!(Policy::permissive().require_head_movement, "even the local server's sessions have a head movement");
    }
}
