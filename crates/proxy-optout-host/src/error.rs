//! Why a webhook was not answered with TwiML. Each kind knows its HTTP status, its words,
//! whether the platform retrying can help, whether it is the host's bug rather than the
//! request's, and the label it is counted under.

use proxy_optout::{FeedbackError, InputError};
use proxy_optout_twilio::{FormError, SignatureError, WebhookError};

use crate::journal::JournalError;
use crate::ledger::LedgerError;
use crate::routing::RoutingError;

/// Why a Twilio webhook got an error status instead of TwiML.
///
/// | kind | status | retry helps | host bug |
/// |---|---|---|---|
/// | [`ContentType`](Refusal::ContentType) | 415 | no | no |
/// | [`TooLarge`](Refusal::TooLarge) | 413 | no | no |
/// | [`Body`](Refusal::Body), [`Form`](Refusal::Form), [`Fields`](Refusal::Fields) | 400 | no | no |
/// | [`Signature`](Refusal::Signature) | 400 missing, 403 wrong | no | no |
/// | [`Input`](Refusal::Input) | 400, or 500 for a route that is not the message's | no | for 500 |
/// | [`BadRoute`](Refusal::BadRoute) | 500 | no | yes |
/// | [`Unavailable`](Refusal::Unavailable) | 503 | yes | no |
/// | [`Ledger`](Refusal::Ledger) | 503 | yes | no |
/// | [`Panicked`](Refusal::Panicked) | 500 | yes | yes |
///
/// Twilio retries a 5xx only when the webhook URL asks it to (connection overrides, see
/// [`webhook_url`](crate::webhook_url)); with a journal configured nothing after
/// authentication answers 503 but a journal that cannot be written.
///
/// ```
/// use proxy_optout_host::Refusal;
/// let r = Refusal::TooLarge { limit: 65536 };
/// assert_eq!((r.status(), r.is_retryable(), r.is_host_bug()), (413, false, false));
/// assert_eq!(r.to_string(), "the body is over the 65536-byte limit of a Twilio webhook");
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Not `application/x-www-form-urlencoded`.
    #[error("a Twilio webhook is application/x-www-form-urlencoded, not {}", .content_type.as_deref().unwrap_or("a body without a content type"))]
    ContentType {
        /// The content type received.
        content_type: Option<String>,
    },
    /// Over the size limit.
    #[error("the body is over the {limit}-byte limit of a Twilio webhook")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body could not be read (the client went away mid-body, say).
    #[error("the body could not be read: {reason}")]
    Body {
        /// What failed.
        reason: String,
    },
    /// Not a well-formed form.
    #[error(transparent)]
    Form(FormError),
    /// The signature is missing (400) or does not match (403).
    #[error("{error} (checked against {url})")]
    Signature {
        /// The URL the signature was checked against: the public URL, then the path and
        /// query as received. A mismatch here is most often a wrong public URL.
        url: String,
        /// What was wrong.
        error: SignatureError,
    },
    /// A field Twilio always sends is missing or malformed.
    #[error(transparent)]
    Fields(WebhookError),
    /// The relay refused the message: an identifier not in canonical form (400), or a route
    /// the host's routing returned for another pair (500: a bug in the routing).
    #[error("message {message_sid}: {error}")]
    Input {
        /// The message.
        message_sid: String,
        /// What the relay refused.
        error: InputError,
    },
    /// The host's routing returned a session the relay cannot use.
    #[error("message {message_sid}: {error}")]
    BadRoute {
        /// The message.
        message_sid: String,
        /// What was wrong with the route.
        error: RoutingError,
    },
    /// The message could not be handled now (the database, the routing or a send failed)
    /// and there is no journal to keep it in, or the journal failed.
    #[error("message {message_sid} could not be handled now: {reason}")]
    Unavailable {
        /// The message.
        message_sid: String,
        /// Why.
        reason: String,
        /// The journal's failure, when there is a journal.
        journal: Option<JournalError>,
    },
    /// A status callback's 21610 could not be recorded.
    #[error("the 21610 a status callback reported could not be recorded: {0}")]
    Ledger(Box<FeedbackError<LedgerError>>),
    /// The handler's task panicked.
    #[error("the webhook handler panicked")]
    Panicked,
}

impl Refusal {
    /// The HTTP status to answer.
    ///
    /// ```
    /// use proxy_optout_host::Refusal;
    /// assert_eq!(Refusal::ContentType { content_type: None }.status(), 415);
    /// assert_eq!(Refusal::Panicked.status(), 500);
    /// ```
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Refusal::ContentType { .. } => 415,
            Refusal::TooLarge { .. } => 413,
            Refusal::Body { .. } | Refusal::Form(_) | Refusal::Fields(_) => 400,
            Refusal::Signature { error, .. } => error.status(),
            Refusal::Input { error, .. } if error.is_host_bug() => 500,
            Refusal::Input { .. } => 400,
            Refusal::BadRoute { .. } | Refusal::Panicked => 500,
            Refusal::Unavailable { .. } | Refusal::Ledger(_) => 503,
        }
    }

    /// Whether the same request can succeed later (the platform retrying, or the operator
    /// fixing an outage). A 4xx never can.
    ///
    /// ```
    /// use proxy_optout_host::Refusal;
    /// let r = Refusal::Unavailable { message_sid: "SM1".into(), reason: "database down".into(), journal: None };
    /// assert!(r.is_retryable());
    /// assert!(!Refusal::TooLarge { limit: 1 }.is_retryable());
    /// ```
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Refusal::Unavailable { .. } | Refusal::Ledger(_) | Refusal::Panicked
        )
    }

    /// Whether the fault is the host's (its routing or its data), not the request's: alert
    /// on these.
    ///
    /// ```
    /// use proxy_optout_host::{Refusal, RoutingError};
    /// let r = Refusal::BadRoute { message_sid: "SM1".into(), error: RoutingError::Invalid { session: "r1".into(), reason: "empty".into() } };
    /// assert!(r.is_host_bug());
    /// assert_eq!(r.status(), 500);
    /// ```
    #[must_use]
    pub fn is_host_bug(&self) -> bool {
        match self {
            Refusal::Input { error, .. } => error.is_host_bug(),
            Refusal::BadRoute { .. } | Refusal::Panicked => true,
            _ => false,
        }
    }

    /// The label it is counted under in the metrics.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::Refusal::TooLarge { limit: 1 }.label(), "too_large");
    /// ```
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::ContentType { .. } => "content_type",
            Refusal::TooLarge { .. } => "too_large",
            Refusal::Body { .. } | Refusal::Form(_) => "form",
            Refusal::Signature { .. } => "signature",
            Refusal::Fields(_) => "fields",
            Refusal::Input { error, .. } if error.is_host_bug() => "routing",
            Refusal::Input { .. } => "fields",
            Refusal::BadRoute { .. } => "routing",
            Refusal::Unavailable { .. } => "unavailable",
            Refusal::Ledger(_) => "ledger",
            Refusal::Panicked => "panicked",
        }
    }

    /// The plain-text body: the words, except for a host bug, whose details go to the log
    /// rather than to whoever sent the request.
    pub(crate) fn body(&self) -> String {
        let mut text = if self.is_host_bug() {
            "internal error".to_owned()
        } else {
            self.to_string()
        };
        text.push('\n');
        text
    }

    /// Logs it at the level it deserves.
    pub(crate) fn log(&self) {
        match self {
            Refusal::Signature { .. } => tracing::warn!(error = %self, "webhook refused"),
            r if r.is_host_bug() => tracing::error!(error = %self, "host bug"),
            r if r.status() >= 500 => tracing::error!(error = %self, "webhook not handled"),
            _ => tracing::debug!(error = %self, "webhook refused"),
        }
    }
}
