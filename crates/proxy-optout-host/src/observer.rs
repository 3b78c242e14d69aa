//! What the pipeline tells the host after the fact: each handled message with its forwarded
//! leg (a record such as Proxy's Interaction), and each status a status callback reports.
//! The host keeps the log; the pipeline only reports.

use crate::routing::BoxFuture;

/// The forwarded leg of a handled message, or the leg that was not sent.
///
/// ```
/// let leg = proxy_optout_host::Leg { from: "+1P".into(), to: "+1B".into(), body: "hi".into(),
///     sid: Some("SM1".into()), status: proxy_optout_host::LegStatus::Accepted };
/// assert_eq!(leg.status.as_str(), "queued");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leg {
    /// The proxy number it is (or would have been) sent from.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// The text.
    pub body: String,
    /// The provider's message id, when the provider accepted it.
    pub sid: Option<String>,
    /// What became of it.
    pub status: LegStatus,
}

/// What became of a leg.
///
/// ```
/// use proxy_optout_host::LegStatus;
/// assert_eq!(LegStatus::Refused { code: 21610 }.as_str(), "failed");
/// assert_eq!(LegStatus::Refused { code: 21610 }.code(), Some(21610));
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegStatus {
    /// The provider accepted it; status callbacks report how it went on.
    Accepted,
    /// Not sent, or refused by the provider, with this error code (21610: the recipient
    /// opted out of this number).
    Refused {
        /// Twilio's error code.
        code: u32,
    },
    /// The provider rejected the request itself with this HTTP status (a client error that
    /// retrying cannot fix).
    Rejected {
        /// The HTTP status.
        status: u16,
    },
}

impl LegStatus {
    /// The message status Twilio would show for it: `queued` for an accepted send, `failed`
    /// for a refused one.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::LegStatus::Accepted.as_str(), "queued");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            LegStatus::Accepted => "queued",
            LegStatus::Refused { .. } | LegStatus::Rejected { .. } => "failed",
        }
    }

    /// The error code of a refused leg.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::LegStatus::Accepted.code(), None);
    /// ```
    #[must_use]
    pub const fn code(self) -> Option<u32> {
        match self {
            LegStatus::Accepted | LegStatus::Rejected { .. } => None,
            LegStatus::Refused { code } => Some(code),
        }
    }
}

/// One message the pipeline handled, reported once its effects were performed (never for a
/// redelivery answered from the stored answer).
///
/// ```
/// let mut r = proxy_optout_host::Report::new("+1A", "+1P", "STOP", "keyword_dropped");
/// r.notices.push(80901);
/// assert!(r.is_dropped());
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The inbound message's id.
    pub message_sid: Option<String>,
    /// Its sender.
    pub from: String,
    /// The proxy number it reached.
    pub to: String,
    /// Its text.
    pub body: String,
    /// The session the routing found.
    pub session: Option<String>,
    /// What happened, as the metrics name it: `forwarded`, `refused` (21610),
    /// `send_refused`, `keyword_dropped`, `hook_blocked`, `out_of_session`,
    /// `no_counterpart`, `recipient_status_unknown`.
    pub outcome: &'static str,
    /// The codes of the notices the relay raised (80901, 80909, 21610, …).
    pub notices: Vec<u32>,
    /// The forwarded leg (sent or refused); `None` when nothing was to be forwarded.
    pub forward: Option<Leg>,
    /// The phrase that made a relayed message read like a revocation of consent, when the
    /// classifier looks for them (an FCC 2025 hint for an operator to review; never a drop).
    pub revocation_hint: Option<&'static str>,
}

impl Report {
    /// A report of a message `from` → `to` with `outcome`, no session, notice or leg: for
    /// testing an observer (the pipeline builds the real ones).
    ///
    /// ```
    /// let r = proxy_optout_host::Report::new("+1A", "+1P", "hi", "out_of_session");
    /// assert_eq!(r.session, None);
    /// ```
    #[must_use]
    pub fn new(from: &str, to: &str, body: &str, outcome: &'static str) -> Self {
        Report {
            message_sid: None,
            from: from.to_owned(),
            to: to.to_owned(),
            body: body.to_owned(),
            session: None,
            outcome,
            notices: Vec::new(),
            forward: None,
            revocation_hint: None,
        }
    }

    /// Whether the message was a keyword the relay drops (Proxy: "dropped messages do not
    /// trigger callbacks").
    ///
    /// ```
    /// let r = proxy_optout_host::Report::new("+1A", "+1P", "hi", "forwarded");
    /// assert!(!r.is_dropped());
    /// ```
    #[must_use]
    pub fn is_dropped(&self) -> bool {
        self.outcome == "keyword_dropped"
    }
}

/// A status a status callback reported for a sent message.
///
/// ```
/// let s = proxy_optout_host::StatusReport::new("SM1", "delivered", None);
/// assert_eq!(s.status, "delivered");
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusReport {
    /// The sent message's id.
    pub message_sid: String,
    /// Twilio's `MessageStatus` (`sent`, `delivered`, `undelivered`, `failed`, …).
    pub status: String,
    /// Twilio's `ErrorCode`, if any.
    pub error_code: Option<u32>,
    /// The send it reports on ([`Outgoing::attempt`](crate::Outgoing::attempt)), when the
    /// callback's URL carried it ([`ATTEMPT_PARAMETER`](crate::ATTEMPT_PARAMETER), which a
    /// [`TwilioSender`](crate::TwilioSender) adds); `None` for a callback without it (a send
    /// made by an older build, or by a sender that does not add it).
    pub attempt: Option<String>,
}

impl StatusReport {
    /// A report of `status` for `message_sid`.
    ///
    /// ```
    /// let s = proxy_optout_host::StatusReport::new("SM1", "failed", Some(30007));
    /// assert_eq!(s.error_code, Some(30007));
    /// ```
    #[must_use]
    pub fn new(message_sid: &str, status: &str, error_code: Option<u32>) -> Self {
        StatusReport {
            message_sid: message_sid.to_owned(),
            status: status.to_owned(),
            error_code,
            attempt: None,
        }
    }

    /// The same report, naming the send it reports on.
    ///
    /// ```
    /// let s = proxy_optout_host::StatusReport::new("SM1", "sent", None).with_attempt("SM0-forward");
    /// assert_eq!(s.attempt.as_deref(), Some("SM0-forward"));
    /// ```
    #[must_use]
    pub fn with_attempt(mut self, attempt: impl Into<String>) -> Self {
        self.attempt = Some(attempt.into());
        self
    }
}

/// Receives the pipeline's reports. The pipeline awaits each call before it answers the
/// webhook, so what the observer writes is readable once the answer is out; an observer
/// that fails logs and counts its failure itself (the message was handled either way).
///
/// ```
/// use proxy_optout_host::{BoxFuture, Observer, Report};
/// use std::sync::Mutex;
/// #[derive(Default)]
/// struct Log(Mutex<Vec<&'static str>>);
/// impl Observer for Log {
///     fn handled(&self, report: Report) -> BoxFuture<'_, ()> {
///         self.0.lock().unwrap().push(report.outcome);
///         Box::pin(async {})
///     }
/// }
/// let log = Log::default();
/// let _ = log.handled(proxy_optout_host::Report::new("+1A", "+1P", "hi", "out_of_session"));
/// assert_eq!(log.0.lock().unwrap()[0], "out_of_session");
/// ```
pub trait Observer: Send + Sync + 'static {
    /// One message was handled and its effects performed.
    fn handled(&self, report: Report) -> BoxFuture<'_, ()>;

    /// A status callback reported `status`. The default ignores it.
    ///
    /// ```
    /// # use proxy_optout_host::{BoxFuture, Observer, Report, StatusReport};
    /// struct Quiet;
    /// impl Observer for Quiet { fn handled(&self, _: Report) -> BoxFuture<'_, ()> { Box::pin(async {}) } }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(
    /// Quiet.status(StatusReport::new("SM1", "sent", None))
    /// # );
    /// ```
    fn status(&self, status: StatusReport) -> BoxFuture<'_, ()> {
        let _ = status;
        Box::pin(async {})
    }
}
