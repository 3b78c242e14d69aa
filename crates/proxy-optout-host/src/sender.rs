//! Sending the forwarded leg: the [`Sender`] trait, Twilio's REST API, and a `log` sender for
//! running without an account.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use proxy_optout_twilio::{RestError, UNSUBSCRIBED_RECIPIENT};

/// A boxed, `Send` future (the trait is used as `Arc<dyn Sender>`).
///
/// ```
/// use proxy_optout_host::{Outgoing, SendFuture, Sent};
/// fn accept(_: &Outgoing) -> SendFuture<'_, Sent> { Box::pin(async { Ok(Sent::Accepted { sid: None }) }) }
/// # let _ = accept;
/// ```
pub type SendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SendError>> + Send + 'a>>;

/// One message to send.
///
/// ```
/// let m = proxy_optout_host::Outgoing {
///     from: "+15550000100".into(), to: "+15552220002".into(), body: "on my way".into(),
///     attempt: "SM123-forward".into(),
/// };
/// assert_eq!(m.to, "+15552220002");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The proxy number it is sent from.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// The text.
    pub body: String,
    /// What this send is: the inbound message id and `-forward` or `-reply`, or the host's
    /// own name for a send it starts. Logged, and named in the send's `StatusCallback` URL
    /// by a [`TwilioSender`] (see [`ATTEMPT_PARAMETER`]).
    pub attempt: String,
}

/// What the provider said about a send.
///
/// ```
/// assert!(proxy_optout_host::Sent::Refused { code: 21610 }.is_unsubscribed());
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Accepted for delivery (`sid` when the provider gave one).
    Accepted {
        /// The provider's message id.
        sid: Option<String>,
    },
    /// Refused with an error code (21610: the recipient opted out of this number).
    Refused {
        /// The provider's error code.
        code: u32,
    },
}

impl Sent {
    /// Whether this is a 21610 refusal, which the ledger must learn.
    ///
    /// ```
    /// assert!(!proxy_optout_host::Sent::Accepted { sid: None }.is_unsubscribed());
    /// ```
    #[must_use]
    pub fn is_unsubscribed(&self) -> bool {
        matches!(self, Sent::Refused { code } if *code == UNSUBSCRIBED_RECIPIENT)
    }
}

/// A send that reached no verdict, sorted by what is known about it: whether sending again
/// could text the person twice.
///
/// ```
/// let e = proxy_optout_host::SendError::Unknown { reason: "timed out after 5s".into() };
/// assert!(e.may_have_been_sent());
/// assert_eq!(e.to_string(), "the provider may have accepted the message: timed out after 5s");
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The request provably never reached the provider (connection refused, DNS, a TLS
    /// handshake that failed): sending again cannot text the person twice.
    #[error("the message was not sent: {reason}")]
    NotSent {
        /// What failed.
        reason: String,
    },
    /// The provider may have accepted it: a timeout after the request was written, a
    /// connection reset before the answer, a 5xx. Ask the provider
    /// ([`Sender::lookup`]) before sending again.
    #[error("the provider may have accepted the message: {reason}")]
    Unknown {
        /// What happened.
        reason: String,
    },
    /// The provider answered with a client error that sending again cannot fix (401, a 4xx
    /// without a Twilio error body).
    #[error("the provider refused the request with {status}")]
    Rejected {
        /// The HTTP status.
        status: u16,
    },
}

impl SendError {
    /// Whether the provider may have accepted the message.
    ///
    /// ```
    /// assert!(!proxy_optout_host::SendError::NotSent { reason: "connection refused".into() }.may_have_been_sent());
    /// ```
    #[must_use]
    pub fn may_have_been_sent(&self) -> bool {
        matches!(self, SendError::Unknown { .. })
    }
}

/// Sends the messages a relay decides on (forwards, and auto-replies that cannot ride in the
/// webhook's answer). One call is one attempt: the server decides what to retry, and asks
/// [`lookup`](Sender::lookup) before sending again a message whose fate is unknown.
///
/// ```
/// use proxy_optout_host::{LogSender, Outgoing, Sender, Sent};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), proxy_optout_host::SendError> {
/// let m = Outgoing { from: "+1P".into(), to: "+1B".into(), body: "hi".into(), attempt: "k".into() };
/// assert_eq!(LogSender.send(&m).await?, Sent::Accepted { sid: None });
/// # Ok(()) }
/// ```
pub trait Sender: Send + Sync + 'static {
    /// Sends `message` once, returning the provider's verdict.
    fn send<'a>(&'a self, message: &'a Outgoing) -> SendFuture<'a, Sent>;

    /// Whether the provider already has `message` (same sender, recipient and text, created
    /// at or after `since`): its id if so. The server asks before sending again a message
    /// whose first attempt reached no verdict. The default knows nothing and says so with an
    /// error, so such a message is not sent again until a sender that can tell is in place.
    fn lookup<'a>(
        &'a self,
        message: &'a Outgoing,
        since: SystemTime,
    ) -> SendFuture<'a, Option<String>> {
        let _ = (message, since);
        Box::pin(async {
            Err(SendError::Unknown {
                reason: "this sender cannot look messages up".into(),
            })
        })
    }

    /// A short name for logs and metrics.
    fn name(&self) -> &'static str;
}

/// Logs what it would send (recipient and length at info, the body only at debug) and
/// reports it accepted: the default, so the server runs with no account.
///
/// ```
/// use proxy_optout_host::Sender;
/// assert_eq!(proxy_optout_host::LogSender.name(), "log");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct LogSender;

impl Sender for LogSender {
    fn send<'a>(&'a self, message: &'a Outgoing) -> SendFuture<'a, Sent> {
        Box::pin(async move {
            tracing::info!(from = %message.from, to = %message.to, chars = message.body.chars().count(), "would send");
            tracing::debug!(body = %message.body, "would send body");
            Ok(Sent::Accepted { sid: None })
        })
    }

    /// Nothing was really sent, so nothing is there: a retried message is logged again.
    fn lookup<'a>(&'a self, _: &'a Outgoing, _: SystemTime) -> SendFuture<'a, Option<String>> {
        Box::pin(async { Ok(None) })
    }

    fn name(&self) -> &'static str {
        "log"
    }
}

/// Keeps what it is asked to send, and refuses with 21610 the recipients it is told to (the
/// demo uses it; tests of a host's own wiring can too).
///
/// ```
/// use proxy_optout_host::{MemorySender, Outgoing, Sender, Sent};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), proxy_optout_host::SendError> {
/// let s = MemorySender::new();
/// s.refuse("+1B");
/// let m = Outgoing { from: "+1P".into(), to: "+1B".into(), body: "hi".into(), attempt: "k".into() };
/// assert!(s.send(&m).await?.is_unsubscribed());
/// assert_eq!(s.sent().len(), 0);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemorySender {
    // Shared: a clone handed to a pipeline records into the same list the test reads.
    sent: std::sync::Arc<Mutex<Vec<Outgoing>>>,
    refused: std::sync::Arc<Mutex<Vec<String>>>,
}

impl MemorySender {
    /// An empty sender.
    ///
    /// ```
    /// assert!(proxy_optout_host::MemorySender::new().sent().is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        MemorySender::default()
    }

    /// Refuse sends to `recipient` with 21610 from now on.
    ///
    /// ```
    /// proxy_optout_host::MemorySender::new().refuse("+1B");
    /// ```
    pub fn refuse(&self, recipient: &str) {
        lock(&self.refused).push(recipient.to_owned());
    }

    /// What was accepted so far.
    ///
    /// ```
    /// assert!(proxy_optout_host::MemorySender::new().sent().is_empty());
    /// ```
    #[must_use]
    pub fn sent(&self) -> Vec<Outgoing> {
        lock(&self.sent).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sender for MemorySender {
    fn send<'a>(&'a self, message: &'a Outgoing) -> SendFuture<'a, Sent> {
        Box::pin(async move {
            if lock(&self.refused).contains(&message.to) {
                return Ok(Sent::Refused {
                    code: UNSUBSCRIBED_RECIPIENT,
                });
            }
            let mut sent = lock(&self.sent);
            sent.push(message.clone());
            Ok(Sent::Accepted {
                sid: Some(format!("SM{:032x}", sent.len())),
            })
        })
    }

    fn lookup<'a>(
        &'a self,
        message: &'a Outgoing,
        _: SystemTime,
    ) -> SendFuture<'a, Option<String>> {
        Box::pin(async move {
            let sent = lock(&self.sent);
            Ok(sent
                .iter()
                .position(|m| {
                    m.to == message.to && m.from == message.from && m.body == message.body
                })
                .map(|i| format!("SM{:032x}", i + 1)))
        })
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

/// Sends through Twilio's Programmable Messaging REST API, one attempt per call, and looks
/// messages up in its Messages list.
///
/// What each failure means, and so what the server does next:
///
/// | what happened | [`send`](Sender::send) returns | why |
/// |---|---|---|
/// | 201 | [`Sent::Accepted`] with the message's sid | |
/// | 400 with a Twilio error body | [`Sent::Refused`] with its code (21610: opted out) | a verdict |
/// | another 4xx (401 bad credentials, …) | [`SendError::Rejected`] | sending again cannot help |
/// | 5xx | [`SendError::Unknown`] | a proxy in front may answer 5xx after Twilio created the message |
/// | no connection (refused, DNS, TLS handshake) | [`SendError::NotSent`] | the request never left: sending again is safe |
/// | a timeout or a reset after the request was written | [`SendError::Unknown`] | Twilio may have accepted it |
///
/// Twilio's Messages API documents no idempotency key for creating a message, so a send
/// whose fate is unknown is only sent again once [`lookup`](Sender::lookup) found no such
/// message.
///
/// ```
/// let s = proxy_optout_host::TwilioSender::new("https://api.twilio.com", "AC123", "token")?
///     .status_callback("https://relay.example.com/twilio/status");
/// # let _ = s;
/// # Ok::<(), proxy_optout_host::ClientError>(())
/// ```
#[derive(Clone)]
pub struct TwilioSender {
    client: reqwest::Client,
    url: String,
    account_sid: String,
    /// Basic auth: the account SID and auth token, or an API key and its secret.
    user: String,
    auth_token: String,
    status_callback: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for TwilioSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioSender")
            .field("url", &self.url)
            .field("account_sid", &self.account_sid)
            .field("user", &self.user)
            .field("auth_token", &"***")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The HTTP client of a [`TwilioSender`] could not be built.
///
/// ```
/// let e = proxy_optout_host::ClientError { url: "https://api.twilio.com".into(), reason: "no TLS roots".into() };
/// assert_eq!(e.to_string(), "cannot build the HTTP client for https://api.twilio.com: no TLS roots");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot build the HTTP client for {url}: {reason}")]
pub struct ClientError {
    /// The base URL asked for.
    pub url: String,
    /// What failed.
    pub reason: String,
}

/// The per-attempt timeout for a send.
///
/// ```
/// assert_eq!(proxy_optout_host::SEND_TIMEOUT.as_secs(), 5);
/// ```
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Attempts per send (the first and two more). A message whose attempts all reach no verdict
/// is journaled and tried again later, never dropped.
///
/// ```
/// assert_eq!(proxy_optout_host::SEND_ATTEMPTS, 3);
/// ```
pub const SEND_ATTEMPTS: u32 = 3;

impl TwilioSender {
    /// A sender for `account_sid` at `base_url` (`https://api.twilio.com`, or a test server).
    ///
    /// # Errors
    ///
    /// [`ClientError`] when the HTTP client cannot be built (no TLS roots, say).
    ///
    /// ```
    /// let s = proxy_optout_host::TwilioSender::new("http://127.0.0.1:9", "AC1", "t")?;
    /// # let _ = s;
    /// # Ok::<(), proxy_optout_host::ClientError>(())
    /// ```
    pub fn new(base_url: &str, account_sid: &str, auth_token: &str) -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .connect_timeout(SEND_TIMEOUT)
            .build()
            .map_err(|e| ClientError {
                url: base_url.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(TwilioSender {
            client,
            url: format!(
                "{}{}",
                base_url.trim_end_matches('/'),
                proxy_optout_twilio::SendRequest::path(account_sid)
            ),
            account_sid: account_sid.to_owned(),
            user: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            status_callback: None,
            timeout: SEND_TIMEOUT,
        })
    }

    /// Authenticate with an API key and its secret instead of the account's auth token (the
    /// account SID stays in the URL).
    ///
    /// ```
    /// # let s = proxy_optout_host::TwilioSender::new("http://127.0.0.1:9", "AC1", "t")?;
    /// let s = s.api_key("SK0123", "secret");
    /// # let _ = s;
    /// # Ok::<(), proxy_optout_host::ClientError>(())
    /// ```
    #[must_use]
    pub fn api_key(mut self, key: &str, secret: &str) -> Self {
        self.user = key.to_owned();
        self.auth_token = secret.to_owned();
        self
    }

    /// Ask Twilio to post delivery updates to `url` (a later 21610 arrives there). Each send
    /// gives Twilio `url` with [`ATTEMPT_PARAMETER`] added to its query (the send's
    /// [`Outgoing::attempt`], form-encoded), so each callback says which send it reports on;
    /// Twilio signs the URL with its query, and the pipeline reads it back into
    /// [`StatusReport::attempt`](crate::StatusReport::attempt).
    ///
    /// ```
    /// # let s = proxy_optout_host::TwilioSender::new("http://127.0.0.1:9", "AC1", "t")?;
    /// let s = s.status_callback("https://relay.example.com/twilio/status");
    /// # let _ = s;
    /// # Ok::<(), proxy_optout_host::ClientError>(())
    /// ```
    #[must_use]
    pub fn status_callback(mut self, url: impl Into<String>) -> Self {
        self.status_callback = Some(url.into());
        self
    }

    /// The per-attempt timeout (default [`SEND_TIMEOUT`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let s = proxy_optout_host::TwilioSender::new("http://127.0.0.1:9", "AC1", "t")?;
    /// let s = s.timeout(Duration::from_secs(2));
    /// # let _ = s;
    /// # Ok::<(), proxy_optout_host::ClientError>(())
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// `url` with `attempt=` added to its query: the status callback names the send it reports
/// on, so a host finds its own record of the send by its own key rather than by the
/// provider's message SID (which would need an index of its own).
fn with_attempt(url: &str, attempt: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let query = proxy_optout_twilio::Form::from_pairs([(ATTEMPT_PARAMETER, attempt)]).encode();
    format!("{url}{sep}{query}")
}

/// The query parameter of the `StatusCallback` URL a [`TwilioSender`] gives each send: the
/// send's [`Outgoing::attempt`], which comes back as [`StatusReport::attempt`](crate::StatusReport::attempt).
///
/// ```
/// assert_eq!(proxy_optout_host::ATTEMPT_PARAMETER, "attempt");
/// ```
pub const ATTEMPT_PARAMETER: &str = "attempt";

/// What a failed request says about whether it reached the provider.
fn uncertainty(e: &reqwest::Error) -> SendError {
    if e.is_connect() {
        SendError::NotSent {
            reason: e.to_string(),
        }
    } else {
        // A timeout, a reset, a body cut short: all after the request may have been written.
        SendError::Unknown {
            reason: if e.is_timeout() {
                "no answer within the timeout".into()
            } else {
                e.to_string()
            },
        }
    }
}

#[derive(serde::Deserialize)]
struct Created {
    sid: Option<String>,
}

#[derive(serde::Deserialize)]
struct Page {
    #[serde(default)]
    messages: Vec<Listed>,
}

#[derive(serde::Deserialize)]
struct Listed {
    sid: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    date_created: Option<String>,
}

impl Sender for TwilioSender {
    fn send<'a>(&'a self, message: &'a Outgoing) -> SendFuture<'a, Sent> {
        Box::pin(async move {
            let mut form: Vec<(&str, &str)> = vec![
                ("To", &message.to),
                ("From", &message.from),
                ("Body", &message.body),
            ];
            let callback = self
                .status_callback
                .as_deref()
                .map(|cb| with_attempt(cb, &message.attempt));
            if let Some(cb) = &callback {
                form.push(("StatusCallback", cb));
            }
            let body = proxy_optout_twilio::Form::from_pairs(form).encode();
            let response = self
                .client
                .post(&self.url)
                .basic_auth(&self.user, Some(&self.auth_token))
                .header("content-type", "application/x-www-form-urlencoded")
                .timeout(self.timeout)
                .body(body)
                .send()
                .await
                .map_err(|e| uncertainty(&e))?;
            let status = response.status().as_u16();
            let bytes = response.bytes().await.map_err(|e| uncertainty(&e))?;
            match status {
                200..=299 => Ok(Sent::Accepted {
                    sid: serde_json::from_slice::<Created>(&bytes)
                        .ok()
                        .and_then(|c| c.sid),
                }),
                400 => match RestError::parse(&bytes) {
                    Some(e) => Ok(Sent::Refused { code: e.code }),
                    None => Err(SendError::Rejected { status }),
                },
                401..=499 => Err(SendError::Rejected { status }),
                _ => Err(SendError::Unknown {
                    reason: format!("the provider answered {status}"),
                }),
            }
        })
    }

    /// Lists the messages from `message.from` to `message.to` (newest first, one page of 50)
    /// and finds one with the same text created at or after `since`. Twilio's list is
    /// eventually consistent; the server waits a moment after an unknown outcome before it
    /// asks (see the crate README's "Sends").
    fn lookup<'a>(
        &'a self,
        message: &'a Outgoing,
        since: SystemTime,
    ) -> SendFuture<'a, Option<String>> {
        Box::pin(async move {
            let response = self
                .client
                .get(&self.url)
                .basic_auth(&self.user, Some(&self.auth_token))
                .query(&[
                    ("To", message.to.as_str()),
                    ("From", message.from.as_str()),
                    ("PageSize", "50"),
                ])
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| uncertainty(&e))?;
            let status = response.status().as_u16();
            let bytes = response.bytes().await.map_err(|e| uncertainty(&e))?;
            if !(200..300).contains(&status) {
                return Err(SendError::Unknown {
                    reason: format!("listing messages answered {status}"),
                });
            }
            let page: Page = serde_json::from_slice(&bytes).map_err(|e| SendError::Unknown {
                reason: format!("listing messages: {e}"),
            })?;
            Ok(page
                .messages
                .into_iter()
                .find(|m| {
                    m.body.as_deref() == Some(message.body.as_str())
                        && m.date_created
                            .as_deref()
                            .and_then(crate::rfc2822::parse)
                            .is_some_and(|t| t >= since)
                })
                .map(|m| m.sid))
        })
    }

    fn name(&self) -> &'static str {
        "twilio"
    }
}
