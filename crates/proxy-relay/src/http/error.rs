//! What a refused or failed request answers. Each kind decides its status, its body, its
//! metric and its log line in one place; the metric travels to the `observe` middleware as a
//! response extension, since a response cannot reach the server's state itself.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use proxy_optout_twilio::{FormError, SignatureError, WebhookError};

use crate::backend::DbError;
use crate::journal::JournalError;
use crate::metrics::Metrics;
use crate::pipeline::Never;

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

/// Why a Twilio webhook was not answered with TwiML.
#[derive(Debug)]
pub(crate) enum WebhookRefusal {
    /// Not `application/x-www-form-urlencoded`.
    ContentType,
    /// Over the size limit.
    TooLarge { limit: usize },
    /// The body could not be read.
    Body(String),
    /// Not a well-formed form.
    Form(FormError),
    /// The signature is missing (400) or wrong (403).
    Signature { url: String, error: SignatureError },
    /// A field Twilio always sends is missing or malformed.
    Fields(WebhookError),
    /// The message can never be handled (a bad stored session, a message the relay refuses).
    Never { message_sid: String, error: Never },
    /// The message could not be handled now and the journal could not keep it: the only 5xx
    /// after authentication, so the platform (with connection overrides) retries it.
    Journal {
        message_sid: String,
        error: JournalError,
    },
    /// The handler's task panicked.
    Panicked,
}

impl IntoResponse for WebhookRefusal {
    fn into_response(self) -> Response {
        use StatusCode as S;
        match self {
            WebhookRefusal::ContentType => plain(
                S::UNSUPPORTED_MEDIA_TYPE,
                "a Twilio webhook is application/x-www-form-urlencoded",
                Some(Counted::Rejected("content_type")),
            ),
            WebhookRefusal::TooLarge { limit } => plain(
                S::PAYLOAD_TOO_LARGE,
                format!("the body is over the {limit}-byte limit of a Twilio webhook"),
                Some(Counted::Rejected("too_large")),
            ),
            WebhookRefusal::Body(e) => plain(
                S::BAD_REQUEST,
                format!("the body could not be read: {e}"),
                Some(Counted::Rejected("form")),
            ),
            WebhookRefusal::Form(e) => plain(
                S::BAD_REQUEST,
                e.to_string(),
                Some(Counted::Rejected("form")),
            ),
            WebhookRefusal::Signature { url, error } => {
                tracing::warn!(url = %url, error = %error, "webhook refused");
                plain(
                    S::from_u16(error.status()).unwrap_or(S::FORBIDDEN),
                    error.to_string(),
                    Some(Counted::Rejected("signature")),
                )
            }
            WebhookRefusal::Fields(e) => plain(
                S::BAD_REQUEST,
                e.to_string(),
                Some(Counted::Rejected("fields")),
            ),
            WebhookRefusal::Never { message_sid, error } => never(&message_sid, error),
            WebhookRefusal::Journal { message_sid, error } => {
                tracing::error!(error = %error, message_sid, "could not journal a message that cannot be handled now; answering 503");
                plain(
                    S::SERVICE_UNAVAILABLE,
                    "the message could not be kept; retry",
                    Some(Counted::Store("journal")),
                )
            }
            WebhookRefusal::Panicked => {
                tracing::error!("a webhook handler panicked");
                plain(S::INTERNAL_SERVER_ERROR, "internal error", None)
            }
        }
    }
}

fn never(sid: &str, error: Never) -> Response {
    use StatusCode as S;
    match error {
        Never::BadSession(e) => {
            tracing::error!(error = %e, message_sid = sid, "a stored session is not valid");
            plain(
                S::INTERNAL_SERVER_ERROR,
                "a stored session is not valid",
                Some(Counted::Store("session")),
            )
        }
        Never::Input(e) if e.is_host_bug() => {
            // The server's own routing handed the relay another pair's route: a bug here, not
            // a bad webhook, so not a 400 that Twilio would never retry.
            tracing::error!(error = %e, message_sid = sid, "routing bug");
            plain(
                S::INTERNAL_SERVER_ERROR,
                "internal routing error",
                Some(Counted::Store("session")),
            )
        }
        Never::Input(e) => plain(
            S::BAD_REQUEST,
            e.to_string(),
            Some(Counted::Rejected("fields")),
        ),
    }
}

/// Why a status callback was not taken.
#[derive(Debug)]
pub(crate) enum CallbackRefusal {
    /// The 21610 it reported could not be recorded.
    Ledger(proxy_optout::FeedbackError<DbError>),
}

impl IntoResponse for CallbackRefusal {
    fn into_response(self) -> Response {
        match self {
            CallbackRefusal::Ledger(e) => {
                tracing::error!(error = %e, "could not record the 21610 opt-out from a status callback");
                plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the opt-out ledger is unavailable; retry",
                    Some(Counted::Store("ledger")),
                )
            }
        }
    }
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
