//! The REST API as one axum [`Router`]: the spec's four endpoints under `/api/v1/liveness`, the verdict and usage
//! endpoints, the probes, and the API's own descriptions (`/openapi.json`, `/asyncapi.json`).

mod extract;
mod page;
pub mod problem;
pub mod serve;
pub mod views;
pub mod websocket;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::service::metering::utc_date;
use crate::service::{
    AuthMode, Caller, CreateOptions, FrameAnswer, FrameResult, IdempotencyKey, Interface, LivenessService,
};
use crate::vision::model_files::ANTISPOOF_MISSING;
use extract::{QueryPairs, SessionId};
use problem::Problem;
use views::{CreatedView, FrameView, FullSessionView, Reader, RedeemedView, SessionView};

/// What `/health` says while authentication is off.
const AUTH_OFF_WARNING: &str = "authentication is off: anyone who reaches this server can use it (loopback only)";

/// The OpenAPI 3.1 description of this router's REST API (checked against the routes by `tests/api_description.rs`).
pub const OPENAPI: &str = include_str!("openapi.json");

/// The AsyncAPI 3.0 description of the WebSocket workflow's messages (checked against them by the same test).
pub const ASYNCAPI: &str = include_str!("../websocket/asyncapi.json");

/// Room for multipart framing around the largest accepted image.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

#[derive(Clone)]
struct AppState {
    service: LivenessService,
    max_frame_bytes: usize,
    limits: HttpLimits,
}

/// Time limits of requests and WebSocket connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// For a frame's whole body to arrive once its headers have: a client that trickles it gets `408`.
    pub body_read: std::time::Duration,
    pub socket: websocket::SocketLimits,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { body_read: std::time::Duration::from_secs(30), socket: websocket::SocketLimits::default() }
    }
}

/// The REST API over `service`; frames larger than `max_frame_bytes` are refused with 413.
pub fn router(service: LivenessService, max_frame_bytes: usize) -> Router {
    router_with(service, max_frame_bytes, HttpLimits::default())
}

/// [`router`] with the WebSocket connections' time limits.
pub fn router_with(service: LivenessService, max_frame_bytes: usize, limits: HttpLimits) -> Router {
    let state = AppState { service, max_frame_bytes, limits };
    Router::new()
        .route("/api/v1/liveness/sessions", post(create_session))
        .route("/api/v1/liveness/sessions/{id}", get(get_session).delete(cancel_session))
        .route("/api/v1/liveness/sessions/{id}/frame", post(submit_frame))
        .route("/api/v1/liveness/sessions/{id}/redeem", post(redeem_session))
        .route("/api/v1/liveness/sessions/{id}/reference-image", get(reference_image))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/v1/liveness/ws", get(websocket::connect))
        .route("/api/v1/usage", get(usage))
        .route("/openapi.json", get(|| async { described(OPENAPI) }))
        .route("/asyncapi.json", get(|| async { described(ASYNCAPI) }))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(page::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_frame_bytes + MULTIPART_OVERHEAD))
        .with_state(state)
}

/// A description document, as JSON.
fn described(document: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document).into_response()
}

async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not accept that method")
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    let antispoof = state.service.has_antispoof();
    let auth = state.service.tenants().mode();
    Json(json!({
        "status": "ok",
        "models_loaded": true,
        "antispoof": antispoof,
        "warning": (!antispoof).then_some(ANTISPOOF_MISSING),
        "auth": auth.as_str(),
        "auth_warning": (auth == AuthMode::Off).then_some(AUTH_OFF_WARNING),
    }))
}

/// Readiness for a load balancer: `200` when the store answers and the models are all there, else `503` naming
/// the failing part (`/health` stays the liveness probe: the process runs).
async fn ready(State(state): State<AppState>) -> Response {
    let store = state.service.store_reachable().await;
    let antispoof = state.service.has_antispoof();
    let checks = json!({
        "store": match &store { Ok(()) => "ok".to_owned(), Err(error) => format!("unreachable: {error}") },
        "models": if antispoof { "ok" } else { ANTISPOOF_MISSING },
    });
    if store.is_ok() && antispoof {
        Json(json!({ "status": "ready", "checks": checks })).into_response()
    } else {
        let problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "a part the service needs is failing");
        problem.with("checks", checks).into_response()
    }
}

/// The credential a request presents: `Authorization: Bearer <credential>`, else `X-API-Key: <credential>`.
fn presented_credential(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|value| {
        let (scheme, credential) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| credential.trim())
    });
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim))
}

/// Who is calling, from the request's headers; checked before any other work.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, Problem> {
    Ok(state.service.tenants().authenticate(presented_credential(headers)).await?)
}

async fn create_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    QueryPairs(pairs): QueryPairs,
) -> Result<Response, Problem> {
    let caller = caller(&state, &headers).await?;
    let options = CreateOptions::from_query(&pairs, Interface::from_query(&pairs)?)?;
    let created = state.service.create_for(&caller, options).await?;
    Ok((StatusCode::CREATED, Json(CreatedView::from(&created))).into_response())
}

async fn get_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    SessionId(id): SessionId,
) -> Result<Response, Problem> {
    let caller = caller(&state, &headers).await?;
    let session = state.service.get(&caller, id).await?;
    Ok(match caller {
        // The end user sees its session, never the verdict it could replay.
        Caller::Client(_) => Json(SessionView::for_reader(&session, Reader::EndUser)).into_response(),
        _ => Json(FullSessionView {
            session: SessionView::from(&session),
            verdict_token: state.service.verdict_token(&session),
        })
        .into_response(),
    })
}

async fn redeem_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    SessionId(id): SessionId,
) -> Result<Json<RedeemedView>, Problem> {
    let caller = caller(&state, &headers).await?;
    let redeemed = state.service.redeem(&caller, id).await?;
    Ok(Json(RedeemedView::from(&redeemed)))
}

async fn reference_image(
    State(state): State<AppState>,
    headers: HeaderMap,
    SessionId(id): SessionId,
) -> Result<Response, Problem> {
    let caller = caller(&state, &headers).await?;
    let jpeg = state.service.reference_image(&caller, id).await?;
    let headers = [(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, no-store")];
    Ok((headers, jpeg).into_response())
}

/// The public keys verdict tokens are signed with (no credential needed).
async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.service.jwks()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("public, max-age=300"));
    response
}

async fn cancel_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    SessionId(id): SessionId,
) -> Result<Response, Problem> {
    let caller = caller(&state, &headers).await?;
    state.service.cancel(&caller, id).await?;
    Ok(Json(json!({ "cancelled": id })).into_response())
}

/// The header a client names a frame with, so that retrying it never counts it twice.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

async fn submit_frame(
    State(state): State<AppState>,
    SessionId(id): SessionId,
    request: Request,
) -> Result<Response, Problem> {
    let caller = caller(&state, request.headers()).await?;
    let key = request.headers().get(IDEMPOTENCY_KEY);
    // A value that is not ASCII text reads as empty, which the key's check refuses.
    let key =
        key.map(|value| IdempotencyKey::parse("Idempotency-Key", value.to_str().unwrap_or_default())).transpose()?;
    let bytes =
        tokio::time::timeout(state.limits.body_read, frame_bytes(request, state.max_frame_bytes)).await.map_err(
            |_| Problem::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", "the frame did not arrive in time"),
        )??;
    let reader = if matches!(caller, Caller::Client(_)) { Reader::EndUser } else { Reader::RelyingParty };
    let render = |result: &FrameResult| FrameView::for_reader(result, reader).to_json();
    let answer = state.service.submit_keyed_frame(&caller, id, bytes, key.as_ref(), &render).await?;
    let replayed = matches!(answer, FrameAnswer::Replayed { .. });
    let mut response = ([(header::CONTENT_TYPE, "application/json")], answer.answer().to_owned()).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", header::HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /api/v1/usage?from=YYYY-MM-DD&to=YYYY-MM-DD` (the tenant's key): usage per UTC day; both default to today.
async fn usage(State(state): State<AppState>, headers: HeaderMap, query: QueryPairs) -> Result<Response, Problem> {
    let caller = caller(&state, &headers).await?;
    let today = utc_date(state.service.now_ms());
    let from = query.get("from").map_or_else(|| today.clone(), str::to_owned);
    let to = query.get("to").map_or(today, str::to_owned);
    Ok(Json(state.service.usage(&caller, &from, &to).await?).into_response())
}

fn too_large(limit: usize) -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "image_too_large", format!("the image is over {limit} bytes"))
}

/// The frame's bytes: a raw `image/jpeg` or `image/png` body, or the one file in multipart field `image`.
async fn frame_bytes(request: Request, limit: usize) -> Result<Vec<u8>, Problem> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    match content_type.as_str() {
        "image/jpeg" | "image/png" => {
            let body: Body = request.into_body();
            let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| too_large(limit))?;
            Ok(bytes.to_vec())
        }
        "multipart/form-data" => {
            let multipart = Multipart::from_request(request, &())
                .await
                .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid_multipart", e.body_text()))?;
            image_field(multipart, limit).await
        }
        "" => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the frame as multipart/form-data (field \"image\") or as an image/jpeg or image/png body",
        )),
        other => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("{other} is not accepted: send multipart/form-data (field \"image\"), image/jpeg or image/png"),
        )),
    }
}

async fn image_field(mut multipart: Multipart, limit: usize) -> Result<Vec<u8>, Problem> {
    let malformed = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(limit)
        } else {
            Problem::new(StatusCode::BAD_REQUEST, "invalid_multipart", e.body_text())
        }
    };
    let mut image = None;
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        if field.name() != Some("image") {
            let name = field.name().unwrap_or_default().to_owned();
            let detail = format!("unexpected part {name:?}: send exactly one part, \"image\"");
            return Err(Problem::new(StatusCode::BAD_REQUEST, "invalid_multipart", detail));
        }
        if image.is_some() {
            return Err(Problem::new(StatusCode::BAD_REQUEST, "multiple_images", "send exactly one \"image\" field"));
        }
        image = Some(field.bytes().await.map_err(malformed)?.to_vec());
    }
    image.ok_or_else(|| {
        Problem::new(StatusCode::BAD_REQUEST, "missing_image", "the multipart body has no \"image\" field")
    })
}
