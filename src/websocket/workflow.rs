//! The WebSocket workflow, independent of transport: what to say when a connection opens, and how each incoming
//! message turns the stored session into a new one plus the messages to send. The local server and the Lambda
//! function both call [`Workflow`]; neither holds a rule of its own.

use uuid::Uuid;

use super::protocol::{frame_from_binary, frame_from_text, Label, Phase, ServerMessage, Status};
use crate::domain::{reported, FrameOutcome, FrameRejection, Session, SessionRules, SessionState};
use crate::service::{
    query_value, AuthMode, Caller, CreateOptions, FrameAnswer, FrameResult, IdempotencyKey, Interface, LivenessService,
    ServiceError,
};

/// A message as a client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary(Vec<u8>),
}

/// Options of one connection, from its query string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionOptions {
    pub session: CreateOptions,
    /// Also send a `feedback` message for each frame that did not count (off by default: the spec's messages only).
    pub feedback: bool,
}

impl ConnectionOptions {
    /// Reads `num_challenges`, `timeout_seconds`, `passive_frames` and `feedback` from query pairs.
    pub fn from_query(pairs: &[(String, String)]) -> Result<ConnectionOptions, ServiceError> {
        let feedback = match pairs.iter().rev().find(|(key, _)| key == "feedback").map(|(_, v)| v.as_str()) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") | Some("") => true,
            Some(other) => {
                return Err(ServiceError::InvalidParameter {
                    name: "feedback",
                    message: format!("{other:?} is not true or false"),
                })
            }
        };
        Ok(ConnectionOptions { session: CreateOptions::from_query(pairs, Interface::WebSocket)?, feedback })
    }
}

/// What to send after one event, and whether the workflow is over (then the transport closes normally).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    pub messages: Vec<ServerMessage>,
    pub finished: bool,
    /// When time alone will next change the session (a challenge deadline or the session's expiry), epoch ms.
    pub wake_at_ms: Option<i64>,
}

impl Reply {
    fn after(session: &Session, messages: Vec<ServerMessage>) -> Reply {
        let finished = session.state.is_terminal();
        let wake_at_ms = (!finished).then(|| {
            let deadline =
                session.challenge_deadline_ms().map_or(session.expires_at_ms, |d| d.min(session.expires_at_ms));
            deadline + 1
        });
        Reply { messages, finished, wake_at_ms }
    }

    /// An `error` message; the workflow goes on.
    pub fn error(code: &str, message: impl Into<String>) -> Reply {
        Reply { messages: vec![ServerMessage::error(code, message)], finished: false, wake_at_ms: None }
    }

    /// A service failure as an `error` message with the REST API's code; the workflow is over when the session
    /// is gone or refuses frames for good.
    pub fn failure(error: ServiceError) -> Reply {
        let finished = matches!(error, ServiceError::NotFound(_) | ServiceError::Rejected(_));
        Reply { finished, ..Reply::error(error.code(), error.client_message()) }
    }
}

/// The workflow over a liveness service.
#[derive(Clone)]
pub struct Workflow {
    service: LivenessService,
    max_frame_bytes: usize,
    defer_opening: bool,
}

impl Workflow {
    /// A workflow over `service`, refusing frames over `max_frame_bytes`.
    pub fn new(service: LivenessService, max_frame_bytes: usize) -> Self {
        Self { service, max_frame_bytes, defer_opening: false }
    }

    /// For transports that cannot send while a connection opens: the opening messages go out just before the
    /// results of the session's first accepted frame (exactly once, as that frame's write is conditional).
    pub fn deferring_opening(mut self) -> Self {
        self.defer_opening = true;
        self
    }

    /// The service's time, epoch milliseconds (what [`Reply::wake_at_ms`] is measured in).
    pub fn now_ms(&self) -> i64 {
        self.service.now_ms()
    }

    fn rules(&self) -> &SessionRules {
        &self.service.settings().rules
    }

    /// Starts a session for a new connection; the reply holds the opening messages.
    pub async fn open(&self, options: &ConnectionOptions) -> Result<(Session, Reply), ServiceError> {
        let session = self.service.create(options.session.clone()).await?;
        let reply = Reply::after(&session, opening(&session));
        Ok((session, reply))
    }

    /// Accepts a connection with query `pairs`: with `session_id` (and `token`, the session's client token) it
    /// joins a session the relying party created; without, and only while authentication is off, it starts a
    /// session of its own. The caller is who the connection acts as from then on.
    pub async fn connect(
        &self,
        pairs: &[(String, String)],
        options: &ConnectionOptions,
    ) -> Result<(Caller, Session, Reply), ServiceError> {
        let tenants = self.service.tenants();
        match query_value(pairs, "session_id") {
            Some(raw) => {
                let caller = tenants.authenticate(query_value(pairs, "token")).await?;
                let id = Uuid::parse_str(raw).map_err(|_| ServiceError::InvalidParameter {
                    name: "session_id",
                    message: format!("{raw:?} is not a session id (a UUID)"),
                })?;
                let (session, reply) = self.join(&caller, id).await?;
                Ok((caller, session, reply))
            }
            None if tenants.mode() == AuthMode::ApiKeys => Err(ServiceError::Unauthorized(
                "connect to a session your relying party created: ?session_id=...&token=<client token>".into(),
            )),
            None => {
                let (session, reply) = self.open(options).await?;
                Ok((Caller::Operator, session, reply))
            }
        }
    }

    /// Joins a session that a tenant created for the WebSocket workflow, as `caller` (its client token); the
    /// reply holds the opening messages, or nothing when the session already has frames.
    pub async fn join(&self, caller: &Caller, id: Uuid) -> Result<(Session, Reply), ServiceError> {
        let session = self.service.get(caller, id).await?;
        if session.state.is_terminal() {
            return Err(ServiceError::Rejected(match session.state {
                SessionState::Expired => FrameRejection::Expired,
                state => FrameRejection::Ended(state),
            }));
        }
        let messages = if session.frames_received == 0 { opening(&session) } else { Vec::new() };
        let reply = Reply::after(&session, messages);
        Ok((session, reply))
    }

    /// Handles one client message for session `id`, sent by `caller`.
    pub async fn on_message(&self, caller: &Caller, id: Uuid, message: Incoming, options: &ConnectionOptions) -> Reply {
        let frame = match message {
            Incoming::Binary(bytes) => frame_from_binary(bytes, self.max_frame_bytes),
            Incoming::Text(text) => frame_from_text(&text, self.max_frame_bytes),
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => return Reply::error(error.code(), error.to_string()),
        };
        let key = frame.seq.map(|seq| IdempotencyKey::parse("seq", &format!("seq:{seq}")));
        let key = match key.transpose() {
            Ok(key) => key,
            Err(error) => return Reply::failure(error),
        };
        // The answer recorded for a retry is the whole list of messages this frame caused.
        let render = |result: &FrameResult| {
            let mut messages = Vec::new();
            if self.defer_opening && result.before.frames_received == 0 {
                messages = opening(&result.before);
            }
            messages.extend(transition(
                &result.before,
                &result.session,
                Some(&result.outcome),
                options.feedback,
                self.rules(),
            ));
            serde_json::to_string(&messages).expect("server messages always serialise")
        };
        match self.service.submit_keyed_frame(caller, id, frame.bytes, key.as_ref(), &render).await {
            Ok(answer) => {
                let session = match &answer {
                    FrameAnswer::Applied { result, .. } => &result.session,
                    FrameAnswer::Replayed { session, .. } => session,
                };
                match serde_json::from_str::<Vec<ServerMessage>>(answer.answer()) {
                    Ok(messages) => Reply::after(session, messages),
                    Err(error) => {
                        Reply::failure(ServiceError::Internal(format!("a recorded answer is unreadable: {error}")))
                    }
                }
            }
            Err(ServiceError::Rejected(FrameRejection::Ended(_) | FrameRejection::Expired)) => self.on_tick(id).await,
            Err(error) => Reply::failure(error),
        }
    }

    /// Writes and announces what time alone did to session `id` (a challenge timed out, the session expired).
    pub async fn on_tick(&self, id: Uuid) -> Reply {
        match self.service.settle(id).await {
            Ok(Some(settled)) => {
                let messages = transition(&settled.before, &settled.session, None, false, self.rules());
                Reply::after(&settled.session, messages)
            }
            // Nothing changed, or another writer changed it and announced it.
            Ok(None) => match self.service.get(&Caller::Operator, id).await {
                Ok(session) => Reply::after(&session, Vec::new()),
                Err(error) => Reply::failure(error),
            },
            Err(error) => Reply::failure(error),
        }
    }
}

/// The messages that open a session: its phase, and the first challenge when there is no passive phase.
pub fn opening(session: &Session) -> Vec<ServerMessage> {
    if session.in_passive_phase() {
        vec![ServerMessage::Phase { value: Phase::Passive }]
    } else {
        let mut messages = vec![ServerMessage::Phase { value: Phase::Active }];
        messages.extend(challenge_start(session));
        messages
    }
}

/// The messages that announce the change from `before` to `after`, in order. Every stored change is written
/// conditionally on `before`'s version, so each is announced exactly once, by whoever wrote it.
pub fn transition(
    before: &Session,
    after: &Session,
    outcome: Option<&FrameOutcome>,
    feedback: bool,
    rules: &SessionRules,
) -> Vec<ServerMessage> {
    let mut messages = Vec::new();
    if let Some(outcome) = outcome {
        if let (true, Some(code)) = (feedback, outcome.feedback) {
            messages.push(ServerMessage::Feedback { code, message: code.message().to_owned() });
        }
        if let Some(score) = outcome.antispoof_real {
            messages.push(match after.owner.client_scores {
                true => ServerMessage::FrameResult {
                    confidence: Some(reported(score)),
                    label: Some(if rules.reads_live(score) { Label::Real } else { Label::Fake }),
                },
                false => ServerMessage::FrameResult { confidence: None, label: None },
            });
        }
    }
    if before.in_passive_phase() && !after.in_passive_phase() && !after.state.is_terminal() {
        messages.push(ServerMessage::Phase { value: Phase::Active });
        messages.extend(challenge_start(after));
    }
    for result in after.outcomes.iter().skip(before.outcomes.len()) {
        let status = if result.passed { Status::Passed } else { Status::Failed };
        messages.push(ServerMessage::ChallengeResult { action: result.kind.action().to_owned(), status });
        if result.passed {
            messages.extend(challenge_start(after));
        }
    }
    if after.state.is_terminal() && !before.state.is_terminal() {
        messages.push(final_result(after));
    }
    messages
}

fn challenge_start(session: &Session) -> Option<ServerMessage> {
    session.current_challenge().map(ServerMessage::challenge_start)
}

/// The verdict: `REAL` only for a live session; `passed` lists the actions passed, in order; `confidence` is the
/// session's mean passive anti-spoofing score (absent without the models, or when the policy hides scores).
fn final_result(session: &Session) -> ServerMessage {
    let label = if session.is_live == Some(true) { Label::Real } else { Label::Fake };
    let passed = session.outcomes.iter().filter(|o| o.passed).map(|o| o.kind.action().to_owned()).collect();
    let confidence = session.passive.mean().filter(|_| session.owner.client_scores).map(reported);
    let advice = session.advice().map(str::to_owned);
    ServerMessage::FinalResult { label, passed, session_id: session.id, confidence, advice }
}
