//! Proxy's error body, `{"code", "message", "more_info", "status"}`, and the codes this
//! server answers with.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::backend::DbError;

/// An error as Proxy answers it: the HTTP status, Twilio's error code, and a message naming
/// the offending value.
///
/// ```
/// let e = proxy_relay::ApiError::new(400, 80609, "a session has at most 2 participants");
/// assert_eq!(e.code, 80609);
/// assert_eq!(e.to_string(), "80609: a session has at most 2 participants");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// Twilio's error code (`https://www.twilio.com/docs/errors/<code>`).
    pub code: u32,
    /// What is wrong, naming the value.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    ///
    /// ```
    /// assert_eq!(proxy_relay::ApiError::new(404, 20404, "no such service").status, 404);
    /// ```
    #[must_use]
    pub fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// A bad parameter: 400, code 21211's general sibling 20001 ("invalid parameter").
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(400, 20001, message)
    }

    /// No such resource: 404, code 20404.
    pub(crate) fn not_found(path: &str) -> Self {
        ApiError::new(
            404,
            20404,
            format!("The requested resource {path} was not found"),
        )
    }

    /// The body Twilio's clients read: never `type` and `title` beside `code` and `status`,
    /// or they switch to another exception type.
    pub(crate) fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status,
        })
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        tracing::error!(error = %e, "the Proxy API's database call failed");
        ApiError::new(503, 20503, "the database is unavailable; try again")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.body())).into_response();
        if self.status == 401 {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"Twilio API\""),
            );
        }
        response
    }
}
