//! Sending the forwarded leg: the [`Sender`] trait, Twilio's REST API, and a `log` sender for
//! running without an account.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use proxy_optout_twilio::{RestError, UNSUBSCRIBED_RECIPIENT};

/// A boxed, `Send` future (the trait is used as `Arc<dyn Sender>`).
///
/// ```
/// use proxy_relay::{Outgoing, SendFuture, Sent};
/// fn accept(_: &Outgoing) -> SendFuture<'_> { Box::pin(async { Ok(Sent::Accepted { sid: None }) }) }
/// # let _ = accept;
/// ```
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Sent, SendError>> + Send + 'a>>;

/// One message to send.
///
/// ```
/// let m = proxy_relay::Outgoing {
///     from: "+15550000100".into(), to: "+15552220002".into(), body: "on my way".into(),
///     idempotency_key: "SM123-forward".into(),
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
    /// Derived from the inbound message id: a retried send carries the same key, so the
    /// provider can drop the duplicate.
    pub idempotency_key: String,
}

/// What the provider said about a send.
///
/// ```
/// assert!(proxy_relay::Sent::Refused { code: 21610 }.is_unsubscribed());
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
    /// assert!(!proxy_relay::Sent::Accepted { sid: None }.is_unsubscribed());
    /// ```
    #[must_use]
    pub fn is_unsubscribed(&self) -> bool {
        matches!(self, Sent::Refused { code } if *code == UNSUBSCRIBED_RECIPIENT)
    }
}

/// A send that did not reach a verdict. The webhook answers 503 so the platform redelivers
/// the inbound message; the retry reuses the idempotency key.
///
/// ```
/// let e = proxy_relay::SendError::Status { status: 500, attempts: 3 };
/// assert_eq!(e.to_string(), "the provider answered 500 after 3 attempts");
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No answer within the timeout, on every attempt.
    #[error("no answer from the provider within {timeout:?} after {attempts} attempts")]
    Timeout {
        /// The per-attempt timeout.
        timeout: Duration,
        /// How many attempts were made.
        attempts: u32,
    },
    /// A server error on every attempt, or a client error that retrying cannot fix.
    #[error("the provider answered {status} after {attempts} attempts")]
    Status {
        /// The last HTTP status.
        status: u16,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The connection failed on every attempt.
    #[error("could not reach the provider after {attempts} attempts: {reason}")]
    Transport {
        /// The last error.
        reason: String,
        /// How many attempts were made.
        attempts: u32,
    },
}

/// Sends the forwarded leg of a relayed message.
///
/// ```
/// use proxy_relay::{LogSender, Outgoing, Sender, Sent};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), proxy_relay::SendError> {
/// let m = Outgoing { from: "+1P".into(), to: "+1B".into(), body: "hi".into(), idempotency_key: "k".into() };
/// assert_eq!(LogSender.send(&m).await?, Sent::Accepted { sid: None });
/// # Ok(()) }
/// ```
pub trait Sender: Send + Sync + 'static {
    /// Sends `message`, returning the provider's verdict.
    fn send<'a>(&'a self, message: &'a Outgoing) -> SendFuture<'a>;

    /// A short name for logs and metrics.
    fn name(&self) -> &'static str;
}

/// Logs what it would send (recipient and length at info, the body only at debug) and
/// reports it accepted: the default, so the server runs with no account.
///
/// ```
/// use proxy_relay::Sender;
/// assert_eq!(proxy_relay::LogSender.name(), "log");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct LogSender;

impl Sender for LogSender {
    fn send<'a>(&'a self, message: &'a Outgoing) -> SendFuture<'a> {
        Box::pin(async move {
            tracing::info!(from = %message.from, to = %message.to, chars = message.body.chars().count(), "would send");
            tracing::debug!(body = %message.body, "would send body");
            Ok(Sent::Accepted { sid: None })
        })
    }

    fn name(&self) -> &'static str {
        "log"
    }
}

/// Keeps what it is asked to send, and refuses with 21610 the recipients it is told to (the
/// demo uses it; tests of a host's own wiring can too).
///
/// ```
/// use proxy_relay::{MemorySender, Outgoing, Sender, Sent};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), proxy_relay::SendError> {
/// let s = MemorySender::new();
/// s.refuse("+1B");
/// let m = Outgoing { from: "+1P".into(), to: "+1B".into(), body: "hi".into(), idempotency_key: "k".into() };
/// assert!(s.send(&m).await?.is_unsubscribed());
/// assert_eq!(s.sent().len(), 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct MemorySender {
    sent: Mutex<Vec<Outgoing>>,
    refused: Mutex<Vec<String>>,
}

impl MemorySender {
    /// An empty sender.
    ///
    /// ```
    /// assert!(proxy_relay::MemorySender::new().sent().is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        MemorySender::default()
    }

    /// Refuse sends to `recipient` with 21610 from now on.
    ///
    /// ```
    /// proxy_relay::MemorySender::new().refuse("+1B");
    /// ```
    pub fn refuse(&self, recipient: &str) {
        lock(&self.refused).push(recipient.to_owned());
    }

    /// What was accepted so far.
    ///
    /// ```
    /// assert!(proxy_relay::MemorySender::new().sent().is_empty());
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
    fn send<'a>(&'a self, message: &'a Outgoing) -> SendFuture<'a> {
        Box::pin(async move {
            if lock(&self.refused).contains(&message.to) {
                return Ok(Sent::Refused {
                    code: UNSUBSCRIBED_RECIPIENT,
                });
            }
            lock(&self.sent).push(message.clone());
            Ok(Sent::Accepted { sid: None })
        })
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

/// Sends through Twilio's Programmable Messaging REST API.
///
/// ```
/// let s = proxy_relay::TwilioSender::new("https://api.twilio.com", "AC123", "token")?
///     .status_callback("https://relay.example.com/twilio/status");
/// # let _ = s;
/// # Ok::<(), proxy_relay::ConfigError>(())
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
    attempts: u32,
}

impl std::fmt::Debug for TwilioSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioSender")
            .field("url", &self.url)
            .field("account_sid", &self.account_sid)
            .field("user", &self.user)
            .field("auth_token", &"***")
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .finish()
    }
}

/// The per-attempt timeout for a send.
///
/// ```
/// assert_eq!(proxy_relay::SEND_TIMEOUT.as_secs(), 5);
/// ```
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Attempts per send (the first and two retries): three 5-second attempts stay within
/// Twilio's 15-second webhook timeout, so the webhook can still answer 503.
///
/// ```
/// assert!(proxy_relay::SEND_TIMEOUT * proxy_relay::SEND_ATTEMPTS < std::time::Duration::from_secs(16));
/// ```
pub const SEND_ATTEMPTS: u32 = 3;

impl TwilioSender {
    /// A sender for `account_sid` at `base_url` (`https://api.twilio.com`, or a test server).
    ///
    /// # Errors
    ///
    /// [`ConfigError`](crate::ConfigError) when the HTTP client cannot be built.
    ///
    /// ```
    /// let s = proxy_relay::TwilioSender::new("http://127.0.0.1:9", "AC1", "t")?;
    /// # let _ = s;
    /// # Ok::<(), proxy_relay::ConfigError>(())
    /// ```
    pub fn new(
        base_url: &str,
        account_sid: &str,
        auth_token: &str,
    ) -> Result<Self, crate::ConfigError> {
        let client = reqwest::Client::builder()
            .connect_timeout(SEND_TIMEOUT)
            .build()
            .map_err(|e| crate::ConfigError::new("twilio-api-url", e.to_string()))?;
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
            attempts: SEND_ATTEMPTS,
        })
    }

    /// Authenticate with an API key and its secret instead of the account's auth token (the
    /// account SID stays in the URL).
    ///
    /// ```
    /// # let s = proxy_relay::TwilioSender::new("http://127.0.0.1:9", "AC1", "t")?;
    /// let s = s.api_key("SK0123", "secret");
    /// # let _ = s;
    /// # Ok::<(), proxy_relay::ConfigError>(())
    /// ```
    #[must_use]
    pub fn api_key(mut self, key: &str, secret: &str) -> Self {
        self.user = key.to_owned();
        self.auth_token = secret.to_owned();
        self
    }

    /// Ask Twilio to post delivery updates to `url` (a later 21610 arrives there).
    ///
    /// ```
    /// # let s = proxy_relay::TwilioSender::new("http://127.0.0.1:9", "AC1", "t")?;
    /// let s = s.status_callback("https://relay.example.com/twilio/status");
    /// # let _ = s;
    /// # Ok::<(), proxy_relay::ConfigError>(())
    /// ```
    #[must_use]
    pub fn status_callback(mut self, url: impl Into<String>) -> Self {
        self.status_callback = Some(url.into());
        self
    }

    /// The per-attempt timeout and the number of attempts (at least one).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let s = proxy_relay::TwilioSender::new("http://127.0.0.1:9", "AC1", "t")?;
    /// let s = s.retries(Duration::from_secs(2), 2);
    /// # let _ = s;
    /// # Ok::<(), proxy_relay::ConfigError>(())
    /// ```
    #[must_use]
    pub fn retries(mut self, timeout: Duration, attempts: u32) -> Self {
        self.timeout = timeout;
        self.attempts = attempts.max(1);
        self
    }

    async fn attempt(&self, message: &Outgoing) -> Result<(u16, Vec<u8>), reqwest::Error> {
        let mut form: Vec<(&str, &str)> = vec![
            ("To", &message.to),
            ("From", &message.from),
            ("Body", &message.body),
        ];
        if let Some(cb) = &self.status_callback {
            form.push(("StatusCallback", cb));
        }
        let body = proxy_optout_twilio::Form::from_pairs(form).encode();
        let response = self
            .client
            .post(&self.url)
            .basic_auth(&self.user, Some(&self.auth_token))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("I-Twilio-Idempotency-Token", &message.idempotency_key)
            .timeout(self.timeout)
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        Ok((status, bytes.to_vec()))
    }
}

#[derive(serde::Deserialize)]
struct Created {
    sid: Option<String>,
}

impl Sender for TwilioSender {
    fn send<'a>(&'a self, message: &'a Outgoing) -> SendFuture<'a> {
        Box::pin(async move {
            let mut last = SendError::Transport {
                reason: "not attempted".into(),
                attempts: 0,
            };
            for attempt in 1..=self.attempts {
                if attempt > 1 {
                    // 100 ms, 200 ms, 400 ms…: a brief outage passes, a long one becomes a 503.
                    tokio::time::sleep(Duration::from_millis(100 << (attempt - 2).min(5))).await;
                }
                match self.attempt(message).await {
                    Ok((status, body)) if (200..300).contains(&status) => {
                        let sid = serde_json::from_slice::<Created>(&body)
                            .ok()
                            .and_then(|c| c.sid);
                        return Ok(Sent::Accepted { sid });
                    }
                    Ok((status, body)) if (400..500).contains(&status) => {
                        return match RestError::parse(&body) {
                            Some(e) if status == 400 => Ok(Sent::Refused { code: e.code }),
                            _ => Err(SendError::Status {
                                status,
                                attempts: attempt,
                            }),
                        };
                    }
                    Ok((status, _)) => {
                        tracing::warn!(status, attempt, "send failed; retrying if attempts remain");
                        last = SendError::Status {
                            status,
                            attempts: attempt,
                        };
                    }
                    Err(e) if e.is_timeout() => {
                        tracing::warn!(attempt, "send timed out; retrying if attempts remain");
                        last = SendError::Timeout {
                            timeout: self.timeout,
                            attempts: attempt,
                        };
                    }
                    Err(e) => {
                        tracing::warn!(attempt, error = %e, "send failed; retrying if attempts remain");
                        last = SendError::Transport {
                            reason: e.to_string(),
                            attempts: attempt,
                        };
                    }
                }
            }
            Err(last)
        })
    }

    fn name(&self) -> &'static str {
        "twilio"
    }
}

/// The sender a configuration asks for; a Twilio sender asks for delivery updates at
/// `public_url` + [`STATUS_CALLBACK_PATH`](crate::STATUS_CALLBACK_PATH).
///
/// # Errors
///
/// [`ConfigError`](crate::ConfigError) when the HTTP client cannot be built.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let db = dir.path().join("r.db");
/// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
/// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
/// # let config = proxy_relay::Config::from_args(&cli.serve)?;
/// let sender = proxy_relay::sender_for(&config, "https://relay.example.com")?;
/// assert_eq!(sender.name(), "log");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sender_for(
    config: &crate::Config,
    public_url: &str,
) -> Result<std::sync::Arc<dyn Sender>, crate::ConfigError> {
    use crate::config::SenderConfig;
    Ok(match &config.sender {
        SenderConfig::Log => std::sync::Arc::new(LogSender),
        SenderConfig::Twilio {
            api_url,
            account_sid,
            api_key,
            timeout,
            attempts,
        } => {
            let mut sender = TwilioSender::new(api_url, account_sid, &config.auth_tokens[0])?;
            if let Some((key, secret)) = api_key {
                sender = sender.api_key(key, secret);
            }
            std::sync::Arc::new(
                sender
                    .status_callback(format!("{public_url}{}", crate::STATUS_CALLBACK_PATH))
                    .retries(*timeout, *attempts),
            )
        }
    })
}
