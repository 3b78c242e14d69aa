//! What a refused or failed request answers. Each kind decides its status, its body, its
//! metric and its log line in one place; the metric travels to the `observe` middleware as a
//! response extension, since a response cannot reach the server's state itself.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use proxy_optout_host::Metrics;

/// The counter a response asks the middleware to bump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counted {
    /// A request refused before it was believed (`proxy_relay_rejected_requests_total`).
    Rejected(&'static str),
    /// A database operation that failed (`proxy_relay_store_errors_total`).
    Store(&'static str),
}

impl Counted {
    pub(crate) fn count(self, metrics: &Metrics) {
        match self {
            Counted::Rejected(reason) => metrics.rejected(reason),
            Counted::Store(operation) => metrics.store_error(operation),
        }
    }
}

/// A plain-text answer in the server's own words, with the counter to bump.
pub(crate) fn plain(
    status: StatusCode,
    message: impl Into<String>,
    counted: Option<Counted>,
) -> Response {
    let mut text = message.into();
    text.push('\n');
    let mut response = (status, text).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let Some(c) = counted {
        response.extensions_mut().insert(c);
    }
    response
}

/// An unknown path or method, in the server's words.
pub(crate) fn not_found(method: &str, path: &str) -> Response {
    plain(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {method} {path}"),
        Some(Counted::Rejected("not_found")),
    )
}

/// A known path with the wrong method.
pub(crate) fn method_not_allowed(method: &str, path: &str) -> Response {
    plain(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{path} does not take {method}"),
        Some(Counted::Rejected("method")),
    )
}
