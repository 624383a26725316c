//! The request parts the handlers take, each refusing a bad request as a problem (never axum's plain-text
//! rejections): the session id of the path and the query's pairs.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use uuid::Uuid;

use super::problem::Problem;

/// The `{id}` of the path, a session id (a UUID).
pub struct SessionId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for SessionId {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid_path", e.body_text()))?;
        Uuid::parse_str(&raw).map(SessionId).map_err(|_| {
            Problem::new(StatusCode::BAD_REQUEST, "invalid_session_id", format!("{raw:?} is not a session id (a UUID)"))
        })
    }
}

/// The query string's pairs, in order.
pub struct QueryPairs(pub Vec<(String, String)>);

impl QueryPairs {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        crate::service::query_value(&self.0, name)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
        Ok(QueryPairs(pairs))
    }
}
