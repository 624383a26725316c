//! Every error the API returns, as RFC 9457 `application/problem+json` with a stable `code`: the one place where
//! errors become HTTP statuses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::FrameRejection;
use crate::service::ServiceError;
use crate::vision::DecodeError;

/// Seconds a client should wait before retrying when the store is unavailable.
const RETRY_AFTER_SECONDS: &str = "1";

/// An API error: status, stable code, human detail, and extra members.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Seconds for `Retry-After`; a `503` without one says 1.
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), extra: serde_json::Map::new(), retry_after: None }
    }

    /// Adds a member to the body.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

impl From<ServiceError> for Problem {
    fn from(error: ServiceError) -> Self {
        let status = match &error {
            ServiceError::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Rejected(FrameRejection::Ended(_)) => StatusCode::CONFLICT,
            ServiceError::Rejected(FrameRejection::Expired) => StatusCode::GONE,
            ServiceError::Rejected(FrameRejection::TooManyFrames(_)) => StatusCode::TOO_MANY_REQUESTS,
            ServiceError::Image(error) => return Problem::from(error.clone()),
            ServiceError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ServiceError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ServiceError::PolicyViolation(_) => StatusCode::BAD_REQUEST,
            ServiceError::TenantNotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::QuotaExceeded { .. } | ServiceError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            ServiceError::TooManySessions { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::SessionInProgress | ServiceError::AlreadyRedeemed => StatusCode::CONFLICT,
            ServiceError::NoReferenceImage(_) => StatusCode::NOT_FOUND,
            ServiceError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let retry_after = error.retry_after_seconds();
        let mut problem = Problem::new(status, error.code(), error.client_message());
        problem.retry_after = retry_after;
        match error {
            ServiceError::InvalidParameter { name, .. } => problem.with("parameter", name),
            ServiceError::Rejected(FrameRejection::Ended(state)) => problem.with("state", state.as_str()),
            ServiceError::Rejected(FrameRejection::Expired) => problem.with("state", "expired"),
            ServiceError::PolicyViolation(violation) => problem.with("parameter", violation.parameter),
            _ => problem,
        }
    }
}

impl From<DecodeError> for Problem {
    fn from(error: DecodeError) -> Self {
        let status = match error {
            DecodeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            DecodeError::UnrecognisedFormat | DecodeError::UnsupportedFormat(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            DecodeError::Empty
            | DecodeError::DimensionsOutOfBounds { .. }
            | DecodeError::MemoryLimit
            | DecodeError::Corrupt(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Problem::new(status, error.code(), error.to_string())
    }
}

impl Problem {
    /// The `application/problem+json` body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "type": format!("urn:liveness:problem:{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        body.as_object_mut().expect("object").extend(self.extra.clone());
        body
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        match self.retry_after {
            Some(seconds) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            None if self.status == StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
            }
            None => {}
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
