//! A liveness session and its state machine. Time comes in as epoch milliseconds; nothing here does I/O.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::challenge::{Challenge, ChallengeType};
use super::judge::{self, Baseline, FaceSample, Feedback, JudgeConfig, Verdict};
use super::observation::{FrameObservation, TrackingHint};
use super::policy::Lockout;
use super::receipt::Receipts;

/// The five states of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Pending,
    InProgress,
    Completed,
    Failed,
    Expired,
}

impl SessionState {
    /// Whether the session has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, SessionState::Completed | SessionState::Failed | SessionState::Expired)
    }

    /// The spec's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Pending => "pending",
            SessionState::InProgress => "in_progress",
            SessionState::Completed => "completed",
            SessionState::Failed => "failed",
            SessionState::Expired => "expired",
        }
    }
}

/// Why a session ended the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EndReason {
    /// Every challenge passed and the passive anti-spoofing verdict is live.
    Live,
    /// The current challenge's time ran out.
    ChallengeTimeout,
    /// The user did a different deliberate action.
    WrongAction,
    /// The face in front of the camera changed.
    FaceChanged,
    /// The passive anti-spoofing scores say spoof.
    SpoofDetected,
    /// Every challenge passed, but no passive anti-spoofing evidence was available: never called live.
    AntispoofUnavailable,
    /// The session outlived its TTL.
    Expired,
}

/// What an end user is told when a failed check ends the same way as a presentation attack: nothing that says
/// which rule stopped it, since telling an attacker why helps the attack.
pub const NOT_VERIFIED_ADVICE: &str = "The check did not pass. Start again, facing the camera in good, even light.";

impl EndReason {
    /// What the end user is told, in plain words, about a check that did not pass and how to retry; `None` for a
    /// live verdict. A failed anti-spoofing verdict stays a plain "did not pass" ([`NOT_VERIFIED_ADVICE`]).
    pub fn advice(self) -> Option<&'static str> {
        Some(match self {
            EndReason::Live => return None,
            EndReason::ChallengeTimeout => {
                "Not in time: the movement was not seen before the time ran out. Start again and do it as soon as \
                 the instruction shows, clearly, with your face in good light."
            }
            EndReason::WrongAction => {
                "A different movement was seen (the other direction, or another action). Start again and do only \
                 what the instruction asks."
            }
            EndReason::FaceChanged => {
                "Your face left the frame, or another face came in. Start again, alone, with your whole face in \
                 the frame."
            }
            EndReason::Expired => "The session ran out of time. Start a new check.",
            EndReason::SpoofDetected | EndReason::AntispoofUnavailable => NOT_VERIFIED_ADVICE,
        })
    }
}

/// Session-wide rules that are not about judging one challenge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionRules {
    pub judge: JudgeConfig,
    /// Passive anti-spoofing: a session is live only if the mean "real" score of its scored frames reaches this.
    pub passive_threshold: f32,
    /// Scored frames after which a clearly fake mean ends the session early.
    pub passive_min_frames: u32,
    /// A session whose mean score is under this after `passive_min_frames` fails at once.
    pub passive_early_fail: f32,
    /// Frames a session accepts in all.
    pub max_frames: u32,
    /// Counted samples kept for the current challenge (older ones are dropped).
    pub max_history: usize,
    /// Passive anti-spoofing of frames that decide nothing (see [`Session::wants_score`]): one in this many is
    /// scored, its score weighing as many frames. 1 scores every frame.
    pub rest_sampling: u32,
}

impl Default for SessionRules {
    fn default() -> Self {
        Self {
            judge: JudgeConfig::default(),
            passive_threshold: 0.5,
            passive_min_frames: 3,
            passive_early_fail: 0.2,
            max_frames: 300,
            max_history: 64,
            rest_sampling: 3,
        }
    }
}

impl SessionRules {
    /// Whether one passive anti-spoofing score reads as a live face (a session's verdict uses the mean of its
    /// scores against the same threshold).
    pub fn reads_live(&self, score: f32) -> bool {
        score >= self.passive_threshold
    }
}

/// The running sum of passive anti-spoofing scores, each weighted by the frames it stands for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PassiveScores {
    pub sum: f64,
    /// Frames the scores stand for (a sampled resting frame's score stands for [`SessionRules::rest_sampling`]).
    pub count: u32,
    /// Counted frames so far whose face rested as in its baseline, scored or not: which of them to score.
    #[serde(default)]
    pub resting_frames: u32,
}

impl PassiveScores {
    /// Mean "real" score, if any frame was scored.
    pub fn mean(&self) -> Option<f32> {
        (self.count > 0).then(|| (self.sum / f64::from(self.count)) as f32)
    }
}

/// A challenge's recorded outcome.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChallengeOutcome {
    pub kind: ChallengeType,
    pub passed: bool,
    pub confidence: f32,
}

/// Who may use a session and what they may see, as the service recorded it at creation. The domain stores it and
/// never reads it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    /// The tenant that created the session; `None` for the operator's (authentication off).
    pub tenant_id: Option<String>,
    /// SHA-256 of the session's client token, lowercase hex.
    pub client_token_digest: Option<String>,
    /// The relying party's id of the end user, as given at creation.
    pub reference: Option<String>,
    /// The relying party's nonce, as given at creation.
    pub nonce: Option<String>,
    /// Whether the end user may see anti-spoofing scores (the tenant's policy at creation).
    pub client_scores: bool,
    /// The tenant's lockout rule at creation, applied when the session ends as a failed check of `reference`.
    #[serde(default)]
    pub lockout: Option<Lockout>,
    /// Whether the session keeps a reference image for the relying party (the tenant's policy at creation).
    #[serde(default)]
    pub keep_reference_image: bool,
}

/// The reference image a session keeps: which one (its SHA-256, lowercase hex) and how sharp it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceImage {
    pub sha256: String,
    pub sharpness: f32,
}

/// A liveness session: everything needed to judge its next frame, in one serialisable value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: Uuid,
    /// Incremented by every write; stores use it for optimistic concurrency.
    pub version: u64,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub challenges: Vec<Challenge>,
    /// Outcomes so far, in challenge order.
    pub outcomes: Vec<ChallengeOutcome>,
    /// The stored state; [`Session::state_at`] adds what time alone implies.
    pub state: SessionState,
    pub end_reason: Option<EndReason>,
    pub is_live: Option<bool>,
    /// When the current challenge's clock started.
    pub challenge_started_ms: Option<i64>,
    pub baseline: Option<Baseline>,
    /// Neutral samples gathered toward the baseline.
    pub baseline_samples: Vec<FaceSample>,
    /// Counted samples since the current challenge started.
    pub history: Vec<FaceSample>,
    /// The last counted face, for continuity.
    pub last_face: Option<FaceSample>,
    /// Where the analyser last found the face, handed back to it with the next frame (never read here).
    pub last_region: Option<TrackingHint>,
    pub passive: PassiveScores,
    pub frames_received: u32,
    /// Counted frames of a passive phase before the first challenge starts (the WebSocket workflow's; REST
    /// sessions have none). During it frames are scored and set the baseline; no challenge clock runs.
    #[serde(default)]
    pub passive_frames: u32,
    /// Counted frames of the passive phase so far.
    #[serde(default)]
    pub passive_counted: u32,
    #[serde(default)]
    pub owner: Owner,
    /// When the relying party redeemed the verdict (it may do so once).
    #[serde(default)]
    pub redeemed_at_ms: Option<i64>,
    /// When the write that ended the session was made (the service records it; the verdict is issued then).
    #[serde(default)]
    pub ended_at_ms: Option<i64>,
    /// The sharpest frontal live frame's face kept so far, when the owner asked for one.
    #[serde(default)]
    pub reference_image: Option<ReferenceImage>,
    /// The answers of the last frames sent with an idempotency key, for their retries.
    #[serde(default)]
    pub receipts: Receipts,
    /// Frames of the current challenge that did not count, by why: what the advice names when it runs out of time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncounted: Vec<(Feedback, u32)>,
}

/// What one frame did to the session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameOutcome {
    /// The challenge this frame was judged against.
    pub challenge: Option<ChallengeType>,
    /// Whether that challenge passed with this frame.
    pub passed: bool,
    pub confidence: f32,
    /// Why the frame did not count, if it did not.
    pub feedback: Option<Feedback>,
    /// The frame's passive anti-spoofing score, if it was scored.
    pub antispoof_real: Option<f32>,
}

/// Why a frame was refused without changing the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameRejection {
    #[error("the session has already ended ({})", .0.as_str())]
    Ended(SessionState),
    #[error("the session has expired")]
    Expired,
    #[error("the session has received its maximum of {0} frames")]
    TooManyFrames(u32),
}

impl Session {
    /// A new pending session.
    pub fn new(id: Uuid, challenges: Vec<Challenge>, now_ms: i64, ttl_ms: i64) -> Session {
        Session {
            id,
            version: 0,
            created_at_ms: now_ms,
            expires_at_ms: now_ms + ttl_ms,
            challenges,
            outcomes: Vec::new(),
            state: SessionState::Pending,
            end_reason: None,
            is_live: None,
            challenge_started_ms: None,
            baseline: None,
            baseline_samples: Vec::new(),
            history: Vec::new(),
            last_face: None,
            last_region: None,
            passive: PassiveScores::default(),
            frames_received: 0,
            passive_frames: 0,
            passive_counted: 0,
            owner: Owner::default(),
            redeemed_at_ms: None,
            ended_at_ms: None,
            reference_image: None,
            receipts: Receipts::default(),
            uncounted: Vec::new(),
        }
    }

    /// The same session with a passive phase of `frames` counted frames before its first challenge.
    pub fn with_passive_phase(mut self, frames: u32) -> Session {
        self.passive_frames = frames;
        self
    }

    /// Whether the session is open and still in its passive phase.
    pub fn in_passive_phase(&self) -> bool {
        !self.state.is_terminal() && self.passive_counted < self.passive_frames
    }

    /// The challenge being worked on, if the session is still open.
    pub fn current_challenge(&self) -> Option<&Challenge> {
        if self.state.is_terminal() {
            None
        } else {
            self.challenges.get(self.outcomes.len())
        }
    }

    /// Challenges not yet passed.
    pub fn challenges_remaining(&self) -> usize {
        self.challenges.len() - self.outcomes.iter().filter(|o| o.passed).count()
    }

    /// What the end user is told about a check that did not pass, in plain words, and how to retry; `None` while
    /// open or when live. A challenge that ran out of time while most of its frames could not be read (too dark,
    /// no face...) says so; otherwise the end reason's own words ([`EndReason::advice`]).
    pub fn advice(&self) -> Option<&'static str> {
        let reason = self.end_reason?;
        if reason == EndReason::ChallengeTimeout {
            // The commonest reason frames did not count, if at least 3 did not and no fewer than counted.
            let commonest = self.uncounted.iter().max_by_key(|(_, frames)| *frames);
            let telling = commonest.filter(|(_, frames)| *frames >= 3 && *frames as usize >= self.history.len());
            if let Some((feedback, _)) = telling {
                return Some(feedback.timeout_advice());
            }
        }
        reason.advice()
    }

    /// Counts a frame of the current challenge that did not count, and why.
    fn note_uncounted(&mut self, feedback: Feedback) {
        match self.uncounted.iter_mut().find(|(kind, _)| *kind == feedback) {
            Some((_, frames)) => *frames += 1,
            None => self.uncounted.push((feedback, 1)),
        }
    }

    /// Deadline of the current challenge, once its clock has started.
    pub fn challenge_deadline_ms(&self) -> Option<i64> {
        let challenge = self.current_challenge()?;
        Some(self.challenge_started_ms? + (challenge.timeout_seconds * 1000.0).round() as i64)
    }

    /// The session as it stands at `now_ms`: past its TTL it is expired, past a challenge deadline it has failed,
    /// whether or not anything was written since.
    pub fn at(&self, now_ms: i64) -> Session {
        let mut session = self.clone();
        if session.state.is_terminal() {
            return session;
        }
        if now_ms >= session.expires_at_ms {
            session.end(SessionState::Expired, EndReason::Expired);
        } else if session.challenge_deadline_ms().is_some_and(|deadline| now_ms > deadline) {
            session.fail_current(0.0, EndReason::ChallengeTimeout);
        }
        session
    }

    /// Shorthand for `self.at(now_ms).state`.
    pub fn state_at(&self, now_ms: i64) -> SessionState {
        self.at(now_ms).state
    }

    /// Whether a frame arriving at `now_ms` would be accepted: the session is open and under its frame limit.
    pub fn accepts_frame_at(&self, now_ms: i64, rules: &SessionRules) -> Result<(), FrameRejection> {
        self.at(now_ms).check_accepts_frame(rules)
    }

    fn check_accepts_frame(&self, rules: &SessionRules) -> Result<(), FrameRejection> {
        match self.state {
            SessionState::Expired => Err(FrameRejection::Expired),
            state if state.is_terminal() => Err(FrameRejection::Ended(state)),
            _ if self.frames_received >= rules.max_frames => Err(FrameRejection::TooManyFrames(rules.max_frames)),
            _ => Ok(()),
        }
    }

    /// Applies one analysed frame received at `now_ms`. A rejected frame changes nothing. The frame goes through
    /// four phases: it is received, its face is counted (or the frame gets feedback), its passive anti-spoofing
    /// score is added if [`Session::wants_score`] asks for it (a score it does not ask for is ignored), and then it
    /// either counts toward the passive phase or is judged against the challenge.
    pub fn apply_frame(
        &self,
        observation: &FrameObservation,
        now_ms: i64,
        rules: &SessionRules,
    ) -> Result<(Session, FrameOutcome), FrameRejection> {
        let (weight, rests) = self.score_weight(observation, now_ms, rules);
        let (mut session, outcome) = self.apply_weighted(observation, now_ms, rules, weight)?;
        if rests {
            session.passive.resting_frames += 1;
        }
        Ok((session, outcome))
    }

    /// Whether this frame's passive anti-spoofing score is needed, asked before the score is computed (it is the
    /// costliest model but one): every frame that counts is scored while the first `passive_min_frames` scores
    /// gather, during a passive phase, before the baseline is set, whenever it shows the challenge's own action (from
    /// a fifth of it) or a wrong action, and when it ends a challenge or the session. Any other frame (at rest, or
    /// only smiling, blinking or swaying during another challenge, [`judge::idle_for`]) decides nothing, so one such
    /// frame in [`SessionRules::rest_sampling`] is scored, in turn, and weighs as many in the mean: the mean a
    /// session is judged by stays an estimate of the mean over all its frames, not one tilted toward its moving
    /// frames.
    pub fn wants_score(&self, observation: &FrameObservation, now_ms: i64, rules: &SessionRules) -> bool {
        self.score_weight(observation, now_ms, rules).0.is_some()
    }

    /// How many frames this frame's score stands for, if it is wanted ([`Session::wants_score`]), and whether the
    /// frame rests.
    fn score_weight(&self, observation: &FrameObservation, now_ms: i64, rules: &SessionRules) -> (Option<u32>, bool) {
        let mut unscored = observation.clone();
        if let Some(face) = &mut unscored.face {
            face.antispoof_real = None;
        }
        let Ok((next, outcome)) = self.apply_weighted(&unscored, now_ms, rules, None) else { return (None, false) };
        if outcome.feedback.is_some() {
            return (None, false);
        }
        let rests = rests(&next, &outcome, &rules.judge);
        if !rests || self.passive.count < rules.passive_min_frames {
            return (Some(1), rests);
        }
        let every = rules.rest_sampling.max(1);
        (self.passive.resting_frames.is_multiple_of(every).then_some(every), rests)
    }

    /// [`Session::apply_frame`] with the frame's score, if any, standing for `weight` frames (`None`: not added).
    fn apply_weighted(
        &self,
        observation: &FrameObservation,
        now_ms: i64,
        rules: &SessionRules,
        weight: Option<u32>,
    ) -> Result<(Session, FrameOutcome), FrameRejection> {
        let mut session = self.at(now_ms);
        session.check_accepts_frame(rules)?;
        session.receive_frame(observation, now_ms);
        let challenge = session.current_challenge().map(|c| c.kind).expect("an open session has a challenge");
        let passive_phase = session.in_passive_phase();
        let mut outcome = FrameOutcome {
            challenge: (!passive_phase).then_some(challenge),
            passed: false,
            confidence: 0.0,
            feedback: None,
            antispoof_real: None,
        };
        let sample = match session.count_face(observation, &rules.judge) {
            Ok(sample) => sample,
            Err(feedback) => {
                outcome.feedback = Some(feedback);
                session.note_uncounted(feedback);
                return Ok((session, outcome));
            }
        };
        let weighted = weight.and_then(|weight| Some((sample.antispoof_real?, weight)));
        outcome.antispoof_real = weighted.map(|(score, _)| score);
        if !session.add_passive_score(weighted, rules) {
            return Ok((session, outcome));
        }
        if passive_phase {
            session.count_passive_frame(sample, now_ms, rules);
        } else {
            session.judge_sample(challenge, sample, now_ms, rules, &mut outcome);
        }
        Ok((session, outcome))
    }

    /// Receiving: one more frame; the first one starts the session (and the first challenge's clock unless a
    /// passive phase comes first); the analyser's tracking hint is kept for the next frame.
    fn receive_frame(&mut self, observation: &FrameObservation, now_ms: i64) {
        self.frames_received += 1;
        if self.state == SessionState::Pending {
            self.state = SessionState::InProgress;
            if !self.in_passive_phase() {
                self.challenge_started_ms = Some(now_ms);
            }
        }
        if let Some(face) = &observation.face {
            self.last_region = Some(face.next_region);
        }
    }

    /// Counting: the frame's face as a sample, or why the frame does not count. A face that is not the one seen
    /// before fails the session.
    fn count_face(&mut self, observation: &FrameObservation, config: &JudgeConfig) -> Result<FaceSample, Feedback> {
        let sample = judge::sample_frame(observation, config)?;
        if let Some(previous) = &self.last_face {
            if let Err(feedback) = judge::continuity(previous, &sample, config) {
                self.fail_current(0.0, EndReason::FaceChanged);
                return Err(feedback);
            }
        }
        self.last_face = Some(sample);
        Ok(sample)
    }

    /// Passive scoring: adds a wanted anti-spoofing score standing for `weight` frames; once enough frames are
    /// scored, a clearly fake mean ends the session. Returns whether the session goes on.
    fn add_passive_score(&mut self, weighted: Option<(f32, u32)>, rules: &SessionRules) -> bool {
        let Some((score, weight)) = weighted else { return true };
        self.passive.sum += f64::from(score) * f64::from(weight);
        self.passive.count += weight;
        if self.passive.count >= rules.passive_min_frames
            && self.passive.mean().is_some_and(|mean| mean < rules.passive_early_fail)
        {
            self.fail_current(0.0, EndReason::SpoofDetected);
            return false;
        }
        true
    }

    /// Judging: the sample joins the baseline until it is set, then the challenge's history, and the judge
    /// reads the history against the baseline.
    fn judge_sample(
        &mut self,
        challenge: ChallengeType,
        sample: FaceSample,
        now_ms: i64,
        rules: &SessionRules,
        outcome: &mut FrameOutcome,
    ) {
        self.gather_baseline(sample, &rules.judge);
        let Some(baseline) = self.baseline else { return };
        self.history.push(sample);
        if self.history.len() > rules.max_history {
            self.history.remove(0);
        }
        let previous = self.outcomes.last().map(|o| o.kind);
        match judge::judge(challenge, previous, &self.history, &baseline, &rules.judge) {
            Verdict::Pending { confidence } => outcome.confidence = confidence,
            Verdict::WrongAction => self.fail_current(0.0, EndReason::WrongAction),
            Verdict::Passed { confidence } => {
                outcome.passed = true;
                outcome.confidence = confidence;
                self.pass_current(confidence, now_ms, rules);
            }
        }
    }

    /// Until the baseline is set: adds a frontal sample toward it, and sets it once enough are gathered; after,
    /// a frontal sample may lower its rest levels. The frame that completes it during a challenge is also that
    /// challenge's first sample: a BLINK needs open eyes before the closed ones, and a quick blinker may give only
    /// that one open frame after the instruction.
    fn gather_baseline(&mut self, sample: FaceSample, config: &JudgeConfig) {
        let frontal = config.is_frontal(sample.yaw, sample.pitch);
        if let Some(baseline) = &mut self.baseline {
            if frontal {
                baseline.rest(&sample);
            }
            return;
        }
        if frontal {
            self.baseline_samples.push(sample);
        }
        if self.baseline_samples.len() >= config.baseline_frames {
            self.baseline = Some(Baseline::from_samples(&self.baseline_samples));
        }
    }

    /// A counted frame of the passive phase: it may set the baseline; the last one either starts the first
    /// challenge's clock or, when the scores so far say spoof, ends the session (no challenge could save it).
    fn count_passive_frame(&mut self, sample: FaceSample, now_ms: i64, rules: &SessionRules) {
        self.gather_baseline(sample, &rules.judge);
        self.passive_counted += 1;
        if self.passive_counted < self.passive_frames {
            return;
        }
        if self.passive.mean().is_some_and(|mean| !rules.reads_live(mean)) {
            self.end(SessionState::Failed, EndReason::SpoofDetected);
        } else {
            self.challenge_started_ms = Some(now_ms);
        }
    }

    fn pass_current(&mut self, confidence: f32, now_ms: i64, rules: &SessionRules) {
        let kind = self.current_challenge().expect("open").kind;
        self.outcomes.push(ChallengeOutcome { kind, passed: true, confidence });
        self.history.clear();
        self.uncounted.clear();
        self.challenge_started_ms = Some(now_ms);
        if self.outcomes.len() < self.challenges.len() {
            return;
        }
        // The first counted frames and every frame that passes a challenge are scored: a finished session has several.
        match self.passive.mean() {
            Some(mean) if rules.reads_live(mean) => self.end(SessionState::Completed, EndReason::Live),
            Some(_) => self.end(SessionState::Failed, EndReason::SpoofDetected),
            None => self.end(SessionState::Completed, EndReason::AntispoofUnavailable),
        }
    }

    /// Fails the challenge being worked on (none is, during the passive phase) and so the session.
    fn fail_current(&mut self, confidence: f32, reason: EndReason) {
        if let Some(challenge) = self.current_challenge().filter(|_| !self.in_passive_phase()) {
            let kind = challenge.kind;
            self.outcomes.push(ChallengeOutcome { kind, passed: false, confidence });
        }
        self.end(SessionState::Failed, reason);
    }

    fn end(&mut self, state: SessionState, reason: EndReason) {
        self.state = state;
        self.end_reason = Some(reason);
        self.is_live = Some(reason == EndReason::Live);
    }
}

/// Whether a frame applied unscored (giving `next` and `outcome`) rests: counted, in a challenge, the baseline set,
/// the face showing nothing that could pass or fail that challenge ([`judge::idle_for`]), and nothing passed or
/// ended.
fn rests(next: &Session, outcome: &FrameOutcome, config: &JudgeConfig) -> bool {
    let (Some(baseline), Some(face)) = (&next.baseline, &next.last_face) else { return false };
    outcome.feedback.is_none()
        && !outcome.passed
        && !next.state.is_terminal()
        && outcome.challenge.is_some_and(|kind| judge::idle_for(kind, face, baseline, config))
}
