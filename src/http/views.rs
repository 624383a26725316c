//! The JSON bodies of the REST API: the spec's fields, exactly named, plus a few documented additions.

use serde::Serialize;
use uuid::Uuid;

use crate::domain::{reported, Challenge, ChallengeType, EndReason, Feedback, Session};
use crate::service::{Created, FrameResult, Redeemed};
use crate::verdicts::{challenge_claims, ChallengeClaim};

/// A challenge as the spec shows it.
#[derive(Debug, Serialize)]
pub struct ChallengeView {
    #[serde(rename = "type")]
    pub kind: ChallengeType,
    pub instruction: &'static str,
    /// Added: a short visual cue for the instruction (an arrow, say).
    pub cue: &'static str,
    pub timeout_seconds: f64,
}

impl From<&Challenge> for ChallengeView {
    fn from(c: &Challenge) -> Self {
        Self { kind: c.kind, instruction: c.kind.instruction(), cue: c.kind.cue(), timeout_seconds: c.timeout_seconds }
    }
}

/// A session's `end_reason` as reported: exactly, or, to an end user whose tenant's policy hides scores, a failed
/// anti-spoofing verdict as a plain `NOT_VERIFIED` (telling an attacker which rule stopped it helps the attack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ReportedEndReason {
    Exact(EndReason),
    Plain(PlainEndReason),
}

/// The plain end reason an end user gets for a failed anti-spoofing verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PlainEndReason {
    NotVerified,
}

/// Who reads an answer: the relying party (its API key, or the operator), or the end user (a client token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    RelyingParty,
    EndUser,
}

impl Reader {
    /// `session`'s end reason as this reader may see it.
    fn end_reason(self, session: &Session) -> Option<ReportedEndReason> {
        let reason = session.end_reason?;
        let hidden = matches!(reason, EndReason::SpoofDetected | EndReason::AntispoofUnavailable);
        Some(match (self, hidden && !session.owner.client_scores) {
            (Reader::EndUser, true) => ReportedEndReason::Plain(PlainEndReason::NotVerified),
            _ => ReportedEndReason::Exact(reason),
        })
    }
}

/// `POST /sessions` and `GET /sessions/{id}`: spec fields `session_id, state, challenges`; added: `is_live`,
/// `current_challenge`, `challenges_remaining`, `expires_at` (epoch seconds), `end_reason`, and `advice` (what to
/// tell the end user about a check that did not pass).
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub session_id: Uuid,
    pub state: &'static str,
    pub challenges: Vec<ChallengeView>,
    pub is_live: Option<bool>,
    pub current_challenge: Option<ChallengeType>,
    pub challenges_remaining: usize,
    pub expires_at: i64,
    pub end_reason: Option<ReportedEndReason>,
    pub advice: Option<&'static str>,
}

impl From<&Session> for SessionView {
    fn from(s: &Session) -> Self {
        SessionView::for_reader(s, Reader::RelyingParty)
    }
}

impl SessionView {
    /// The session as `reader` may see it.
    pub fn for_reader(s: &Session, reader: Reader) -> Self {
        Self {
            session_id: s.id,
            state: s.state.as_str(),
            challenges: s.challenges.iter().map(ChallengeView::from).collect(),
            is_live: s.is_live,
            current_challenge: s.current_challenge().map(|c| c.kind),
            challenges_remaining: s.challenges_remaining(),
            expires_at: s.expires_at_ms / 1000,
            end_reason: reader.end_reason(s),
            advice: s.advice(),
        }
    }
}

/// `GET /sessions/{id}` for the relying party (its API key, or the operator): the session, plus `verdict_token`,
/// the signed verdict once the session has ended (`null` while it runs). An end user's client token reads the
/// plain [`SessionView`].
#[derive(Debug, Serialize)]
pub struct FullSessionView {
    #[serde(flatten)]
    pub session: SessionView,
    pub verdict_token: Option<String>,
}

/// `POST /sessions/{id}/redeem`: the verdict, once.
#[derive(Debug, Serialize)]
pub struct RedeemedView {
    pub session_id: Uuid,
    pub is_live: bool,
    pub end_reason: Option<EndReason>,
    pub challenges: Vec<ChallengeClaim>,
    pub reference: Option<String>,
    pub nonce: Option<String>,
    pub verdict_token: String,
}

impl From<&Redeemed> for RedeemedView {
    fn from(r: &Redeemed) -> Self {
        let s = &r.session;
        Self {
            session_id: s.id,
            is_live: s.is_live == Some(true),
            end_reason: s.end_reason,
            challenges: challenge_claims(s),
            reference: s.owner.reference.clone(),
            nonce: s.owner.nonce.clone(),
            verdict_token: r.verdict_token.clone(),
        }
    }
}

/// `POST /sessions`: the session, plus `client_token`, the end user's credential for this one session (shown
/// once; hand it to the browser with the session id, never the API key).
#[derive(Debug, Serialize)]
pub struct CreatedView {
    #[serde(flatten)]
    pub session: SessionView,
    pub client_token: String,
}

impl From<&Created> for CreatedView {
    fn from(created: &Created) -> Self {
        Self { session: SessionView::from(&created.session), client_token: created.client_token.clone() }
    }
}

/// `POST /sessions/{id}/frame`: the spec's eight fields; added: `feedback` (why the frame did not count),
/// `guidance` (what to do about it, in words), `end_reason` and `advice` (what to tell the end user about a check
/// that did not pass). `session_complete` is true once the session has
/// ended, whatever the outcome.
#[derive(Debug, Serialize)]
pub struct FrameView {
    pub session_id: Uuid,
    pub challenge_type: Option<ChallengeType>,
    pub passed: bool,
    pub confidence: f64,
    pub challenges_remaining: usize,
    pub session_complete: bool,
    pub is_live: Option<bool>,
    pub state: &'static str,
    pub feedback: Option<Feedback>,
    /// Added: what the user should do about `feedback`, in words.
    pub guidance: Option<&'static str>,
    pub end_reason: Option<ReportedEndReason>,
    pub advice: Option<&'static str>,
}

impl From<&FrameResult> for FrameView {
    fn from(r: &FrameResult) -> Self {
        FrameView::for_reader(r, Reader::RelyingParty)
    }
}

impl FrameView {
    /// The body as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a frame view always serialises")
    }

    /// The frame's answer as `reader` may see it.
    pub fn for_reader(r: &FrameResult, reader: Reader) -> Self {
        let s = &r.session;
        Self {
            session_id: s.id,
            challenge_type: r.outcome.challenge,
            passed: r.outcome.passed,
            confidence: reported(r.outcome.confidence),
            challenges_remaining: s.challenges_remaining(),
            session_complete: s.state.is_terminal(),
            is_live: s.is_live,
            state: s.state.as_str(),
            feedback: r.outcome.feedback,
            guidance: r.outcome.feedback.map(Feedback::message),
            end_reason: reader.end_reason(s),
            advice: s.advice(),
        }
    }
}
