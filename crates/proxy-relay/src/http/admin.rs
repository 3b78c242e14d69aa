//! The session admin API (`/v1/sessions`), behind a bearer token. Errors are JSON naming the
//! field: `{"error": {"status", "field", "message"}}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use proxy_optout_twilio::MAX_FORM_BYTES;
use subtle::ConstantTimeEq;

use crate::app::{digest, App};
use crate::backend::{AdminError, DbError};
use crate::http::error::Counted;
use crate::sessions::{FieldError, NewSession, SessionStatus};

/// The most sessions one list call returns.
///
/// ```
/// assert_eq!(proxy_relay::MAX_LIST, 1000);
/// ```
pub const MAX_LIST: u32 = 1000;

pub(crate) fn routes(app: Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/v1/sessions", post(create).get(list))
        .route("/v1/sessions/{sid}", get(fetch).delete(close))
        .route("/v1/sessions/{sid}/close", post(close))
        .route_layer(middleware::from_fn_with_state(app, require_admin))
}

/// An admin request that failed, as JSON.
#[derive(Debug)]
enum ApiError {
    /// No or a wrong bearer token.
    Unauthorized,
    /// Not `application/json`.
    ContentType,
    /// The body is over the limit, or could not be read.
    Body(BytesRejection),
    /// The call failed.
    Admin(AdminError),
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        ApiError::Admin(e)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::Admin(AdminError::Store(e))
    }
}

fn json_error(status: StatusCode, field: Option<&str>, message: &str) -> Response {
    let body = serde_json::json!({
        "error": { "status": status.as_u16(), "field": field, "message": message }
    });
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Unauthorized => {
                let mut r = json_error(
                    StatusCode::UNAUTHORIZED,
                    None,
                    "a valid bearer token is required (Authorization: Bearer <token>)",
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r.extensions_mut().insert(Counted::Rejected("admin_token"));
                r
            }
            ApiError::ContentType => json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                "send application/json",
            ),
            ApiError::Body(BytesRejection::FailedToBufferBody(
                FailedToBufferBody::LengthLimitError(_),
            )) => json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("body"),
                &format!("the body is over the {MAX_FORM_BYTES}-byte limit"),
            ),
            ApiError::Body(e) => json_error(
                StatusCode::BAD_REQUEST,
                Some("body"),
                &format!("the body could not be read: {}", e.body_text()),
            ),
            ApiError::Admin(e) => {
                let status =
                    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                match &e {
                    AdminError::Invalid(f) | AdminError::Conflict(f) => {
                        json_error(status, Some(&f.field), &e.to_string())
                    }
                    AdminError::Store(inner) => {
                        tracing::error!(error = %inner, "admin call failed on the database");
                        let mut r = json_error(status, None, "the database is unavailable; retry");
                        r.extensions_mut().insert(Counted::Store("admin"));
                        r
                    }
                    _ => json_error(status, None, &e.to_string()),
                }
            }
        }
    }
}

async fn require_admin(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = presented.is_some_and(|t| bool::from(digest(t).ct_eq(app.admin_digest())));
    if !ok {
        return ApiError::Unauthorized.into_response();
    }
    next.run(request).await
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The JSON path serde stopped at, for an error naming the field.
fn serde_field(e: &serde_json::Error) -> String {
    let text = e.to_string();
    for marker in ["unknown field `", "missing field `"] {
        if let Some(rest) = text.split(marker).nth(1) {
            if let Some(name) = rest.split('`').next() {
                return name.to_owned();
            }
        }
    }
    "body".to_owned()
}

async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !is_json(&headers) {
        return Err(ApiError::ContentType);
    }
    let body = body.map_err(ApiError::Body)?;
    let request: NewSession = serde_json::from_slice(&body).map_err(|e| {
        let field = serde_field(&e);
        let message = format!("{field}: {e}");
        AdminError::Invalid(FieldError::new(field, message))
    })?;
    let s = app.db().create_session(&request, app.pool()).await?;
    tracing::info!(session = %s.sid, "session created");
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

async fn fetch(State(app): State<Arc<App>>, Path(sid): Path<String>) -> Result<Response, ApiError> {
    match app.db().session(&sid).await? {
        Some(s) => Ok(Json(s).into_response()),
        None => Err(AdminError::NotFound { sid }.into()),
    }
}

/// The query of `GET /v1/sessions`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
}

async fn list(
    State(app): State<Arc<App>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| AdminError::Invalid(FieldError::new("query", e.body_text())))?;
    let status = match query.status.as_deref() {
        None => None,
        Some("open") => Some(SessionStatus::Open),
        Some("closed") => Some(SessionStatus::Closed),
        Some(other) => {
            let e = FieldError::new("status", format!("{other:?} is not open or closed"));
            return Err(AdminError::Invalid(e).into());
        }
    };
    let limit = match query.limit.as_deref().map(str::parse::<u32>) {
        None => 50,
        Some(Ok(n)) if (1..=MAX_LIST).contains(&n) => n,
        Some(_) => {
            let e = FieldError::new(
                "limit",
                format!(
                    "{:?} is not a number from 1 to {MAX_LIST}",
                    query.limit.unwrap_or_default()
                ),
            );
            return Err(AdminError::Invalid(e).into());
        }
    };
    let list = app.db().sessions(status, limit).await?;
    Ok(Json(serde_json::json!({ "sessions": list })).into_response())
}

async fn close(State(app): State<Arc<App>>, Path(sid): Path<String>) -> Result<Response, ApiError> {
    match app.db().close_session(&sid).await? {
        Some(s) => {
            tracing::info!(session = %s.sid, "session closed");
            Ok(Json(s).into_response())
        }
        None => Err(AdminError::NotFound { sid }.into()),
    }
}
