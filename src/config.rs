//! Settings from environment variables, each with a working default (so `cargo run` needs none).

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use crate::http::serve::ConnectionLimits;
use crate::http::websocket::SocketLimits;
use crate::service::{AuthMode, ServiceSettings};
use crate::vision::model_files::default_models_dir;
use crate::vision::{AnalyzerOptions, DecodeLimits};

/// Everything the local server and the Lambda functions read from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LIVENESS_BIND`, default `127.0.0.1:8000`.
    pub bind: SocketAddr,
    /// `LIVENESS_MODELS_DIR`, default `./models` (else the source tree's `models/`).
    pub models_dir: PathBuf,
    /// `LIVENESS_MAX_FRAME_BYTES`, default 5 MiB.
    pub max_frame_bytes: usize,
    /// `LIVENESS_SESSION_TTL_SECONDS`, default 180.
    pub session_ttl_seconds: u64,
    /// `LIVENESS_MAX_FRAMES`, default 300 per session.
    pub max_frames: u32,
    /// `LIVENESS_DETECT_EVERY`, default 3: run the face detector on every n-th frame, track the face between.
    pub detect_every: u32,
    /// `LIVENESS_TABLE_NAME`: keep sessions in this DynamoDB table instead of the embedded store.
    pub table_name: Option<String>,
    /// `LIVENESS_DATA_DIR`, default `./data`: the embedded store's database.
    pub data_dir: PathBuf,
    /// `LIVENESS_WS_FIRST_FRAME_SECONDS` (20), `LIVENESS_WS_IDLE_SECONDS` (30), `LIVENESS_WS_SEND_SECONDS` (5): how
    /// long a WebSocket may wait for its first frame, between frames, and for a client to take a message.
    pub socket_limits: SocketLimits,
    /// `LIVENESS_BODY_READ_SECONDS` (30): for a frame's body to arrive, then `408`.
    pub body_read: Duration,
    /// `LIVENESS_HEADER_READ_SECONDS` (10) and `LIVENESS_MAX_CONNECTIONS` (1024): the local server's limits on
    /// connections.
    pub connection_limits: ConnectionLimits,
    /// `LIVENESS_MAX_OPEN_SESSIONS`, default 10000: sessions open at once while authentication is off.
    pub max_open_sessions: usize,
    /// `LIVENESS_SIGNING_KEY_SECRET`: the Secrets Manager secret (name or ARN) holding the verdict signing keys;
    /// unset, they live in `LIVENESS_DATA_DIR`.
    pub signing_key_secret: Option<String>,
    /// `LIVENESS_ISSUER`, default `urn:liveness:local`: the `iss` of verdict tokens.
    pub issuer: String,
    /// `LIVENESS_AUTH`, `api_keys` or `off`; unset, the local server decides from its bind address.
    pub auth: Option<AuthMode>,
}

/// A variable that is set but unusable.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

fn var<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(value) => value.trim().parse().map_err(|e: T::Err| ConfigError { name, value, reason: e.to_string() }),
    }
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let config = Config {
            bind: var("LIVENESS_BIND", SocketAddr::from(([127, 0, 0, 1], 8000)))?,
            models_dir: default_models_dir(),
            max_frame_bytes: var("LIVENESS_MAX_FRAME_BYTES", DecodeLimits::default().max_bytes)?,
            session_ttl_seconds: var("LIVENESS_SESSION_TTL_SECONDS", 180)?,
            max_frames: var("LIVENESS_MAX_FRAMES", 300)?,
            detect_every: var("LIVENESS_DETECT_EVERY", 3)?,
            table_name: std::env::var("LIVENESS_TABLE_NAME").ok().filter(|t| !t.trim().is_empty()),
            data_dir: var("LIVENESS_DATA_DIR", PathBuf::from("data"))?,
            signing_key_secret: std::env::var("LIVENESS_SIGNING_KEY_SECRET").ok().filter(|s| !s.trim().is_empty()),
            issuer: var("LIVENESS_ISSUER", crate::service::DEFAULT_ISSUER.to_owned())?,
            socket_limits: {
                let defaults = SocketLimits::default();
                let seconds = |name, default: Duration| var(name, default.as_secs()).map(Duration::from_secs);
                SocketLimits {
                    first_frame: seconds("LIVENESS_WS_FIRST_FRAME_SECONDS", defaults.first_frame)?,
                    idle: seconds("LIVENESS_WS_IDLE_SECONDS", defaults.idle)?,
                    send: seconds("LIVENESS_WS_SEND_SECONDS", defaults.send)?,
                }
            },
            body_read: Duration::from_secs(var("LIVENESS_BODY_READ_SECONDS", 30)?),
            connection_limits: {
                let defaults = ConnectionLimits::default();
                ConnectionLimits {
                    header_read: Duration::from_secs(var(
                        "LIVENESS_HEADER_READ_SECONDS",
                        defaults.header_read.as_secs(),
                    )?),
                    max_connections: var("LIVENESS_MAX_CONNECTIONS", defaults.max_connections)?,
                    ..defaults
                }
            },
            max_open_sessions: var("LIVENESS_MAX_OPEN_SESSIONS", ServiceSettings::default().max_open_sessions)?,
            auth: match std::env::var("LIVENESS_AUTH") {
                Err(_) => None,
                Ok(value) => Some(value.trim().parse().map_err(|reason| ConfigError {
                    name: "LIVENESS_AUTH",
                    value: value.clone(),
                    reason,
                })?),
            },
        };
        let positive = |name: &'static str, value: u64| {
            if value == 0 {
                Err(ConfigError { name, value: "0".into(), reason: "must be at least 1".into() })
            } else {
                Ok(())
            }
        };
        positive("LIVENESS_SESSION_TTL_SECONDS", config.session_ttl_seconds)?;
        positive("LIVENESS_MAX_FRAMES", u64::from(config.max_frames))?;
        positive("LIVENESS_DETECT_EVERY", u64::from(config.detect_every))?;
        positive("LIVENESS_MAX_OPEN_SESSIONS", config.max_open_sessions as u64)?;
        positive("LIVENESS_MAX_CONNECTIONS", config.connection_limits.max_connections as u64)?;
        positive("LIVENESS_HEADER_READ_SECONDS", config.connection_limits.header_read.as_secs())?;
        positive("LIVENESS_MAX_FRAME_BYTES", config.max_frame_bytes as u64)?;
        Ok(config)
    }

    /// The local server's authentication: as `LIVENESS_AUTH` says; unset, off only on a loopback address (a server
    /// reachable from elsewhere must not be open by accident).
    pub fn local_auth(&self) -> Result<AuthMode, ConfigError> {
        match self.auth {
            Some(mode) => Ok(mode),
            None if self.bind.ip().is_loopback() => Ok(AuthMode::Off),
            None => Err(ConfigError {
                name: "LIVENESS_AUTH",
                value: String::new(),
                reason: format!(
                    "must be set (api_keys or off) when the server listens on {}, which is not a loopback address",
                    self.bind
                ),
            }),
        }
    }

    /// The analyser options these settings imply.
    pub fn analyzer_options(&self) -> AnalyzerOptions {
        AnalyzerOptions {
            decode: DecodeLimits { max_bytes: self.max_frame_bytes, ..DecodeLimits::default() },
            ..AnalyzerOptions::default()
        }
    }

    /// The service settings these settings imply.
    pub fn service_settings(&self) -> ServiceSettings {
        let mut settings = ServiceSettings {
            session_ttl_ms: self.session_ttl_seconds as i64 * 1000,
            detect_every: self.detect_every,
            max_open_sessions: self.max_open_sessions,
            ..ServiceSettings::default()
        };
        settings.rules.max_frames = self.max_frames;
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(bind: &str, auth: Option<AuthMode>) -> Config {
        Config {
            bind: bind.parse().unwrap(),
            models_dir: PathBuf::new(),
            max_frame_bytes: 1,
            session_ttl_seconds: 1,
            max_frames: 1,
            detect_every: 1,
            table_name: None,
            data_dir: PathBuf::new(),
            max_open_sessions: 1,
            socket_limits: SocketLimits::default(),
            body_read: Duration::from_secs(30),
            connection_limits: ConnectionLimits::default(),
            signing_key_secret: None,
            issuer: String::new(),
            auth,
        }
    }

    #[test]
    fn authentication_is_off_by_default_only_on_loopback() {
        assert_eq!(config("127.0.0.1:8000", None).local_auth().unwrap(), AuthMode::Off);
        assert_eq!(config("[::1]:8000", None).local_auth().unwrap(), AuthMode::Off);
        let exposed = config("0.0.0.0:8000", None).local_auth().unwrap_err();
        assert_eq!(exposed.name, "LIVENESS_AUTH", "a server reachable from elsewhere refuses to start");
        assert_eq!(config("0.0.0.0:8000", Some(AuthMode::ApiKeys)).local_auth().unwrap(), AuthMode::ApiKeys);
        assert_eq!(config("0.0.0.0:8000", Some(AuthMode::Off)).local_auth().unwrap(), AuthMode::Off, "if said");
    }
}
