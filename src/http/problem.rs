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
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), extra: serde_json::Map::new() }
    }

    /// Adds a member to the body.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

impl From<ServiceError> for Problem {
    fn from(error: ServiceError) -> Self {
        let detail = error.to_string();
        match error {
            ServiceError::InvalidParameter { name, .. } => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_parameter", detail).with("parameter", name)
            }
            ServiceError::NotFound(_) => Problem::new(StatusCode::NOT_FOUND, "session_not_found", detail),
            ServiceError::Rejected(FrameRejection::Ended(state)) => {
                Problem::new(StatusCode::CONFLICT, "session_ended", detail).with("state", state.as_str())
            }
            ServiceError::Rejected(FrameRejection::Expired) => {
                Problem::new(StatusCode::GONE, "session_expired", detail).with("state", "expired")
            }
            ServiceError::Rejected(FrameRejection::TooManyFrames(_)) => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "too_many_frames", detail)
            }
            ServiceError::Image(error) => Problem::from(error),
            ServiceError::StoreUnavailable(_) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", detail)
            }
            ServiceError::Internal(_) => {
                tracing::error!(%detail, "internal error");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "an internal error occurred")
            }
        }
    }
}

impl From<DecodeError> for Problem {
    fn from(error: DecodeError) -> Self {
        let detail = error.to_string();
        let (status, code) = match error {
            DecodeError::Empty => (StatusCode::UNPROCESSABLE_ENTITY, "empty_image"),
            DecodeError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "image_too_large"),
            DecodeError::UnrecognisedFormat | DecodeError::UnsupportedFormat(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_image_format")
            }
            DecodeError::DimensionsOutOfBounds { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "image_dimensions"),
            DecodeError::MemoryLimit => (StatusCode::UNPROCESSABLE_ENTITY, "image_too_complex"),
            DecodeError::Corrupt(_) => (StatusCode::UNPROCESSABLE_ENTITY, "undecodable_image"),
        };
        Problem::new(status, code, detail)
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
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        response
    }
}
