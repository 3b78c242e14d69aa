//! The pipeline: what it holds, how it is built, its entry points, and its lifecycle (the
//! journal's replay and the purge of old message ids run in the background until
//! [`Pipeline::shutdown`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proxy_optout::{CarrierMode, RelayCore};
use proxy_optout_twilio::{InboundMessage, StatusCallback, Validator, EMPTY};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::Refusal;
use crate::handling::{self, Delivery, Failure, Handled, Never};
use crate::journal::{Journal, JournalError};
use crate::ledger::Ledger;
use crate::message::Message;
use crate::metrics::Metrics;
use crate::observer::{Leg, Observer, StatusReport};
use crate::policy::Policy;
use crate::routing::Routing;
use crate::sender::{Outgoing, Sender, SEND_ATTEMPTS};
use crate::webhook::{WebhookRequest, WebhookResponse, STATUS_CALLBACK_PATH, WEBHOOK_PATH};

/// How long the pipeline waits for the ledger or the routing before it treats the database
/// as down (and journals the message).
///
/// ```
/// assert_eq!(proxy_optout_host::DATABASE_TIMEOUT.as_secs(), 2);
/// ```
pub const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything the entry points share.
pub(crate) struct Inner {
    core: Arc<RelayCore>,
    ledger: Ledger,
    routing: Arc<dyn Routing>,
    validator: Validator,
    public_url: String,
    sender: Arc<dyn Sender>,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
    journal: Option<Journal>,
    send_attempts: u32,
    database_timeout: Duration,
    observer: Option<Arc<dyn Observer>>,
    policy: Arc<dyn Policy>,
    webhook_path: String,
    status_path: String,
    stop: CancellationToken,
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    pub(crate) fn core(&self) -> &Arc<RelayCore> {
        &self.core
    }
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    pub(crate) fn routing(&self) -> &dyn Routing {
        &*self.routing
    }
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    pub(crate) fn shared_metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }
    pub(crate) fn sender(&self) -> &dyn Sender {
        &*self.sender
    }
    pub(crate) fn send_attempts(&self) -> u32 {
        self.send_attempts
    }
    pub(crate) fn database_timeout(&self) -> Duration {
        self.database_timeout
    }
    pub(crate) fn has_journal(&self) -> bool {
        self.journal.is_some()
    }
    pub(crate) fn observer(&self) -> Option<&dyn Observer> {
        self.observer.as_deref()
    }
    pub(crate) fn policy(&self) -> &Arc<dyn Policy> {
        &self.policy
    }
}

/// The webhook pipeline: give it the ledger, the host's routing and a sender, and serve its
/// two webhooks (the inbound message and the status callback) through
/// [`router`](Pipeline::router) (axum) or [`serve`](Pipeline::serve) (any framework).
///
/// For each inbound message it checks the content type, the size and the signature, parses
/// the form, claims the message id (a redelivery gets the first answer and nothing is done
/// again), asks the routing for the session, runs the relay (the ledger read and written in
/// one job on the database), performs the effects in order (the auto-reply, then the
/// forward through the sender with a 21610 fed back into the ledger; sends are at most
/// once), stores the answer, and answers TwiML. Each message runs in a task of its own, so
/// Twilio hanging up cannot cut it short or strand its claim. With a
/// [journal](PipelineBuilder::journal), a message that cannot be handled now (the database
/// down, a send without a verdict) is kept on local disk and handled later, in order.
///
/// Cheap to clone: every clone is the same pipeline.
///
/// ```
/// use proxy_optout_host::{MemorySender, Pipeline, SessionRoute, SqliteLedger, WebhookRequest};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let ledger = SqliteLedger::open(dir.path().join("optout.db")).await?;
/// let routing = |from: &str, to: &str| Ok(Some(SessionRoute::new("ride-1", from, to, Some(("+15552220002", to)))?));
/// let sender = MemorySender::new();
/// let pipeline = Pipeline::builder(ledger, routing, sender.clone())
///     .auth_token("twilio-auth-token")
///     .public_url("https://relay.example.com")
///     .start()
///     .await?;
///
/// let body = b"MessageSid=SM1&From=%2B15551110001&To=%2B15550000100&Body=on+my+way";
/// let signature = proxy_optout_twilio::sign("twilio-auth-token", "https://relay.example.com/twilio/sms", &proxy_optout_twilio::Form::parse(body)?);
/// let answer = pipeline.serve(WebhookRequest::new("POST", "/twilio/sms", body)
///     .header("Content-Type", "application/x-www-form-urlencoded")
///     .header("X-Twilio-Signature", &signature)).await;
/// assert_eq!(answer.status(), 200);
/// assert_eq!(sender.sent()[0].to, "+15552220002");
/// pipeline.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("public_url", &self.inner.public_url)
            .field("ledger", &self.inner.ledger.kind())
            .field("sender", &self.inner.sender.name())
            .field("journal", &self.inner.journal.as_ref().map(Journal::path))
            .finish_non_exhaustive()
    }
}

/// Why a pipeline could not start.
///
/// ```
/// let e = proxy_optout_host::BuildError::Missing("auth_token");
/// assert_eq!(e.to_string(), "the pipeline needs auth_token");
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A required setting was not given.
    #[error("the pipeline needs {0}")]
    Missing(&'static str),
    /// A setting's value cannot work.
    #[error("{setting}: {value:?} {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// The value given.
        value: String,
        /// Why it cannot work.
        reason: &'static str,
    },
    /// The journal could not be opened.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Settings of a [`Pipeline`]; see [`Pipeline::builder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
/// let missing = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
///     .public_url("https://relay.example.com")
///     .start().await.unwrap_err();
/// assert_eq!(missing.to_string(), "the pipeline needs auth_token");
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `start` is called"]
pub struct PipelineBuilder {
    ledger: Ledger,
    routing: Arc<dyn Routing>,
    sender: Arc<dyn Sender>,
    auth_tokens: Vec<String>,
    public_url: Option<String>,
    core: RelayCore,
    journal: Option<PathBuf>,
    send_attempts: u32,
    database_timeout: Duration,
    metrics: Option<Arc<Metrics>>,
    observer: Option<Arc<dyn Observer>>,
    policy: Arc<dyn Policy>,
    webhook_path: String,
    status_path: String,
}

impl std::fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("public_url", &self.public_url)
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

impl PipelineBuilder {
    /// The auth token Twilio signs webhooks with. Call it again to accept a second token
    /// while rotating (the first is the current one).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let b = |l| proxy_optout_host::Pipeline::builder(l, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender);
    /// # let l = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(proxy_optout_host::SqliteLedger::open(dir.path().join("o.db"))).unwrap();
    /// let builder = b(l).auth_token("current").auth_token("previous");
    /// # let _ = builder;
    /// ```
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.auth_tokens.push(token.into());
        self
    }

    /// The public origin Twilio posts to (`https://rides.example.com`): signatures are
    /// checked against it followed by the request's path and query as this server received
    /// them. Add a path only when a reverse proxy strips it before the request arrives.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let l = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(proxy_optout_host::SqliteLedger::open(dir.path().join("o.db"))).unwrap();
    /// let builder = proxy_optout_host::Pipeline::builder(l, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .public_url("https://relay.example.com/");
    /// # let _ = builder;
    /// ```
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// The carrier layer's mode (default [`CarrierMode::Emulate`]: the relay sends the STOP/START
    /// confirmations itself). Choose [`CarrierMode::Mirror`] on Twilio long codes, where the
    /// platform already sends them.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let l = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(proxy_optout_host::SqliteLedger::open(dir.path().join("o.db"))).unwrap();
    /// let builder = proxy_optout_host::Pipeline::builder(l, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .mode(proxy_optout::CarrierMode::Mirror);
    /// # let _ = builder;
    /// ```
    pub fn mode(mut self, mode: CarrierMode) -> Self {
        self.core = self.core.with_mode(mode);
        self
    }

    /// The relay core to decide with, for settings beyond the mode (the ledger's scope, the
    /// keyword configuration).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let l = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(proxy_optout_host::SqliteLedger::open(dir.path().join("o.db"))).unwrap();
    /// let builder = proxy_optout_host::Pipeline::builder(l, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .core(proxy_optout::RelayCore::new());
    /// # let _ = builder;
    /// ```
    pub fn core(mut self, core: RelayCore) -> Self {
        self.core = core;
        self
    }

    /// Keep messages that cannot be handled now in a journal file of this instance (synced
    /// before the webhook is answered), and handle them later in arrival order. Without one,
    /// such a message is answered 503, and only Twilio's retry (with the connection
    /// overrides of [`webhook_url`](crate::webhook_url)) brings it back.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let l = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(proxy_optout_host::SqliteLedger::open(dir.path().join("o.db"))).unwrap();
    /// let builder = proxy_optout_host::Pipeline::builder(l, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .journal(dir.path().join("journal.db"));
    /// # let _ = builder;
    /// ```
    pub fn journal(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal = Some(path.into());
        self
    }

    /// Attempts per send (default [`SEND_ATTEMPTS`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let l = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(proxy_optout_host::SqliteLedger::open(dir.path().join("o.db"))).unwrap();
    /// let builder = proxy_optout_host::Pipeline::builder(l, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .send_attempts(5);
    /// # let _ = builder;
    /// ```
    pub fn send_attempts(mut self, attempts: u32) -> Self {
        self.send_attempts = attempts;
        self
    }

    /// How long to wait for the ledger or the routing (default [`DATABASE_TIMEOUT`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let l = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(proxy_optout_host::SqliteLedger::open(dir.path().join("o.db"))).unwrap();
    /// let builder = proxy_optout_host::Pipeline::builder(l, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .database_timeout(std::time::Duration::from_secs(1));
    /// # let _ = builder;
    /// ```
    pub fn database_timeout(mut self, timeout: Duration) -> Self {
        self.database_timeout = timeout;
        self
    }

    /// Count into these metrics (to render them beside the host's own).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let l = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(proxy_optout_host::SqliteLedger::open(dir.path().join("o.db"))).unwrap();
    /// let metrics = std::sync::Arc::new(proxy_optout_host::Metrics::with_prefix("rides_sms"));
    /// let builder = proxy_optout_host::Pipeline::builder(l, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .metrics(metrics);
    /// # let _ = builder;
    /// ```
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// An [`Observer`] told of each handled message and each reported status: where a host
    /// keeps its message log (proxy-relay writes Proxy's Interactions there).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let l = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(proxy_optout_host::SqliteLedger::open(dir.path().join("o.db"))).unwrap();
    /// use proxy_optout_host::{BoxFuture, Observer, Report};
    /// struct Log;
    /// impl Observer for Log {
    ///     fn handled(&self, r: Report) -> BoxFuture<'_, ()> { println!("{}", r.outcome); Box::pin(async {}) }
    /// }
    /// let builder = proxy_optout_host::Pipeline::builder(l, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .observer(std::sync::Arc::new(Log));
    /// # let _ = builder;
    /// ```
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The [`Policy`]: the account flag, STOP filtering per proxy number and the intercept
    /// hook. Default: Twilio Proxy with the flag off ([`TwilioProxy`](proxy_optout::TwilioProxy)).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let l = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(proxy_optout_host::SqliteLedger::open(dir.path().join("o.db"))).unwrap();
    /// use proxy_optout::{FixedPolicy, StopFilterFlag, StopFiltering};
    /// let builder = proxy_optout_host::Pipeline::builder(l, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .policy(std::sync::Arc::new(FixedPolicy::new(StopFilterFlag::Respect, StopFiltering::Off)));
    /// # let _ = builder;
    /// ```
    pub fn policy(mut self, policy: Arc<dyn Policy>) -> Self {
        self.policy = policy;
        self
    }

    /// The paths the [`router`](Pipeline::router) and [`serve`](Pipeline::serve) answer on
    /// (default [`WEBHOOK_PATH`] and [`STATUS_CALLBACK_PATH`]), as Twilio posts them.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let l = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(proxy_optout_host::SqliteLedger::open(dir.path().join("o.db"))).unwrap();
    /// let builder = proxy_optout_host::Pipeline::builder(l, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .paths("/hooks/sms", "/hooks/sms-status");
    /// # let _ = builder;
    /// ```
    pub fn paths(mut self, webhook: impl Into<String>, status_callback: impl Into<String>) -> Self {
        self.webhook_path = webhook.into();
        self.status_path = status_callback.into();
        self
    }

    /// Opens the journal and starts the background work (the journal's replay, the hourly
    /// purge of message ids past the redelivery window). Call it inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`BuildError`]: no auth token or public URL, a public URL that is not `http(s)://`,
    /// zero send attempts, a journal that cannot be opened (held by another instance).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let bad = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("relay.example.com").start().await.unwrap_err();
    /// assert!(bad.to_string().starts_with("public_url: \"relay.example.com\""));
    /// # Ok(()) }
    /// ```
    pub async fn start(self) -> Result<Pipeline, BuildError> {
        let public_url = self.public_url.ok_or(BuildError::Missing("public_url"))?;
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(BuildError::Invalid {
                setting: "public_url",
                value: public_url,
                reason: "is not an http:// or https:// URL",
            });
        }
        let Some((first, rest)) = self.auth_tokens.split_first() else {
            return Err(BuildError::Missing("auth_token"));
        };
        if self.send_attempts == 0 {
            return Err(BuildError::Invalid {
                setting: "send_attempts",
                value: "0".into(),
                reason: "must be at least 1",
            });
        }
        let mut validator = Validator::new(first);
        for t in rest {
            validator = validator.with_token(t);
        }
        let journal = match &self.journal {
            Some(path) => {
                let path = path.clone();
                Some(
                    tokio::task::spawn_blocking(move || Journal::open(&path))
                        .await
                        .map_err(|e| JournalError {
                            path: self.journal.clone().unwrap_or_default(),
                            reason: e.to_string(),
                        })??,
                )
            }
            None => None,
        };
        let inner = Arc::new(Inner {
            core: Arc::new(self.core),
            ledger: self.ledger,
            routing: self.routing,
            validator,
            public_url,
            sender: self.sender,
            metrics: self.metrics.unwrap_or_default(),
            tasks: TaskTracker::new(),
            journal,
            send_attempts: self.send_attempts,
            database_timeout: self.database_timeout,
            observer: self.observer,
            policy: self.policy,
            webhook_path: self.webhook_path,
            status_path: self.status_path,
            stop: CancellationToken::new(),
            background: Mutex::new(Vec::new()),
        });
        let pipeline = Pipeline { inner };
        let purge = Arc::downgrade(&pipeline.inner);
        let stop = pipeline.inner.stop.clone();
        let mut background = vec![tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let Some(inner) = purge.upgrade() else { break };
                if let Err(e) = inner.ledger.purge_processed().await {
                    tracing::warn!(error = %e, "purging old processed message ids failed");
                }
            }
        })];
        if pipeline.inner.journal.is_some() {
            background.push(tokio::spawn(replay(pipeline.inner.clone())));
        }
        *pipeline
            .inner
            .background
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = background;
        Ok(pipeline)
    }
}

impl Pipeline {
    /// A builder over the three things only the host knows: where the ledger lives, how a
    /// (From, To) pair maps to its session, and how to send.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let pipeline = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("http://127.0.0.1:8080").start().await?;
    /// assert_eq!(pipeline.public_url(), "http://127.0.0.1:8080");
    /// # pipeline.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn builder(
        ledger: impl Into<Ledger>,
        routing: impl Routing,
        sender: impl Sender + 'static,
    ) -> PipelineBuilder {
        PipelineBuilder::new(ledger.into(), Arc::new(routing), Arc::new(sender))
    }

    /// The same builder over shared parts (a routing or a sender the host also uses).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let sender: std::sync::Arc<dyn proxy_optout_host::Sender> = std::sync::Arc::new(proxy_optout_host::LogSender);
    /// let routing: std::sync::Arc<dyn proxy_optout_host::Routing> = std::sync::Arc::new(|_: &str, _: &str| Ok(None));
    /// let builder = proxy_optout_host::Pipeline::builder_shared(ledger.into(), routing, sender);
    /// # let _ = builder;
    /// # Ok(()) }
    /// ```
    pub fn builder_shared(
        ledger: Ledger,
        routing: Arc<dyn Routing>,
        sender: Arc<dyn Sender>,
    ) -> PipelineBuilder {
        PipelineBuilder::new(ledger, routing, sender)
    }

    /// The public base URL signatures are checked against.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://relay.example.com/").start().await?;
    /// assert_eq!(p.public_url(), "https://relay.example.com");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// The inbound-message webhook's path and the status callback's.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://relay.example.com").start().await?;
    /// assert_eq!(p.paths(), ("/twilio/sms", "/twilio/status"));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn paths(&self) -> (&str, &str) {
        (&self.inner.webhook_path, &self.inner.status_path)
    }

    /// The metrics it counts into.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://relay.example.com").start().await?;
    /// assert_eq!(p.metrics().messages("forwarded"), 0);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The ledger.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://relay.example.com").start().await?;
    /// assert_eq!(p.ledger().state("+1P", "+1A").await?, proxy_optout::OptState::OptedIn);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// The sender.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://relay.example.com").start().await?;
    /// assert_eq!(p.sender().name(), "log");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn sender(&self) -> &dyn Sender {
        self.inner.sender()
    }

    /// How many messages wait in the journal (0 without one).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://relay.example.com").start().await?;
    /// assert_eq!(p.journal_depth(), 0);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn journal_depth(&self) -> usize {
        self.inner.journal.as_ref().map_or(0, Journal::depth)
    }

    /// The journal's file, if there is one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://relay.example.com").start().await?;
    /// assert!(p.journal_path().is_none());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn journal_path(&self) -> Option<&std::path::Path> {
        self.inner.journal.as_ref().map(Journal::path)
    }

    /// Checks a webhook (content type, size, form, signature) and parses it as an inbound
    /// message, for a host that handles it itself.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] to answer (415, 413, 400 or 403).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://relay.example.com").start().await?;
    /// let unsigned = proxy_optout_host::WebhookRequest::new("POST", "/twilio/sms", b"From=%2B1A&To=%2B1P&Body=hi")
    ///     .header("Content-Type", "application/x-www-form-urlencoded");
    /// assert_eq!(p.authenticate(&unsigned).unwrap_err().status(), 400);
    /// # Ok(()) }
    /// ```
    pub fn authenticate(&self, request: &WebhookRequest<'_>) -> Result<Message, Refusal> {
        let form = request.authenticate(&self.inner.validator, &self.inner.public_url)?;
        InboundMessage::from_form(&form)
            .map(|m| Message::from_webhook(&m))
            .map_err(Refusal::Fields)
    }

    /// Serves one request: the inbound-message webhook or the status callback by path, 404
    /// for another path and 405 for another method. The framework-free entry point, for
    /// hosts on actix, hyper or anything else.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://relay.example.com").start().await?;
    /// let get = p.serve(proxy_optout_host::WebhookRequest::new("GET", "/twilio/sms", b"")).await;
    /// assert_eq!(get.status(), 405);
    /// let other = p.serve(proxy_optout_host::WebhookRequest::new("POST", "/elsewhere", b"")).await;
    /// assert_eq!(other.status(), 404);
    /// # Ok(()) }
    /// ```
    pub async fn serve(&self, request: WebhookRequest<'_>) -> WebhookResponse {
        let path = request.path();
        let known = path == self.inner.webhook_path || path == self.inner.status_path;
        let response = if !known {
            WebhookResponse::plain(404, format!("no such endpoint: {path}"), "not_found")
        } else if !request.method().eq_ignore_ascii_case("POST") {
            WebhookResponse::plain(
                405,
                format!("{path} takes POST, not {}", request.method()),
                "method",
            )
        } else if path == self.inner.webhook_path {
            return self.inbound(request).await;
        } else {
            return self.status_callback(request).await;
        };
        self.count(response)
    }

    /// Serves the inbound-message webhook: authenticates it, then handles it in a task of its
    /// own (see [`Pipeline`]) and answers its TwiML.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://relay.example.com").start().await?;
    /// let json = proxy_optout_host::WebhookRequest::new("POST", "/twilio/sms", b"{}").header("Content-Type", "application/json");
    /// assert_eq!(p.inbound(json).await.status(), 415);
    /// # Ok(()) }
    /// ```
    pub async fn inbound(&self, request: WebhookRequest<'_>) -> WebhookResponse {
        match self.authenticate(&request) {
            Ok(message) => self.handle(message).await,
            Err(refusal) => self.refuse(&refusal),
        }
    }

    /// Handles an authenticated message (from [`authenticate`](Pipeline::authenticate) or
    /// the [`TwilioWebhook`](crate::TwilioWebhook) extractor) in a task of its own, and
    /// answers its TwiML.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://relay.example.com").start().await?;
    /// let form = proxy_optout_twilio::Form::parse(b"MessageSid=SM1&From=%2B1A&To=%2B1P&Body=hello")?;
    /// let message = proxy_optout_host::Message::from_webhook(&proxy_optout_twilio::InboundMessage::from_form(&form)?);
    /// let answer = p.handle(message).await; // no session: withheld, answered with empty TwiML
    /// assert_eq!(answer.body(), proxy_optout_twilio::EMPTY);
    /// # Ok(()) }
    /// ```
    pub async fn handle(&self, message: Message) -> WebhookResponse {
        // In its own task: if Twilio gives up and closes the connection, the framework drops
        // this future, but the effects already begun (a ledger write, a send) still finish
        // and the answer is still stored for the retry. Shutdown waits for these tasks.
        let inner = self.inner.clone();
        let task = self
            .inner
            .tasks
            .spawn(async move { handle_live(&inner, message).await });
        match task.await {
            Ok(Ok(twiml)) => WebhookResponse::twiml(twiml),
            Ok(Err(refusal)) => self.refuse(&refusal),
            Err(_) => self.refuse(&Refusal::Panicked),
        }
    }

    /// Serves the status callback: authenticates it and records a 21610 it reports (the
    /// recipient opted out after the send was accepted).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://relay.example.com").start().await?;
    /// let body = b"MessageSid=SM9&MessageStatus=failed&ErrorCode=21610&From=%2B1P&To=%2B1B";
    /// let url = "https://relay.example.com/twilio/status";
    /// let signature = proxy_optout_twilio::sign("t", url, &proxy_optout_twilio::Form::parse(body)?);
    /// let request = proxy_optout_host::WebhookRequest::new("POST", "/twilio/status", body)
    ///     .header("Content-Type", "application/x-www-form-urlencoded")
    ///     .header("X-Twilio-Signature", &signature);
    /// assert_eq!(p.status_callback(request).await.status(), 200);
    /// assert_eq!(p.ledger().state("+1P", "+1B").await?, proxy_optout::OptState::OptedOut);
    /// # Ok(()) }
    /// ```
    pub async fn status_callback(&self, request: WebhookRequest<'_>) -> WebhookResponse {
        let (sid, feedback, status) = {
            let form = match request.authenticate(&self.inner.validator, &self.inner.public_url) {
                Ok(f) => f,
                Err(refusal) => return self.refuse(&refusal),
            };
            let callback = match StatusCallback::from_form(&form) {
                Ok(c) => c,
                Err(e) => return self.refuse(&Refusal::Fields(e)),
            };
            let feedback = match callback.feedback() {
                Some(proxy_optout::Feedback::Refused { from, to }) => {
                    Some((from.to_string(), to.to_string()))
                }
                _ => None,
            };
            let sid = callback.message_sid().unwrap_or_default().to_owned();
            let mut status = StatusReport::new(&sid, callback.status(), callback.error_code());
            if let Some(attempt) = attempt_of(request.target()) {
                status = status.with_attempt(attempt);
            }
            (sid, feedback, status)
        };
        if let Some((from, to)) = feedback {
            if let Err(e) = handling::refused_later(&self.inner, &from, &to).await {
                return self.refuse(&Refusal::Ledger(Box::new(e)));
            }
            tracing::info!(
                message_sid = sid,
                "a status callback reported 21610; opt-out recorded"
            );
        }
        if let (Some(observer), false) = (&self.inner.observer, sid.is_empty()) {
            observer.status(status).await;
        }
        WebhookResponse::twiml(EMPTY.to_owned())
    }

    /// Sends a message the host starts (not a relayed one: Proxy's MessageInteraction) under
    /// the ledger's rules, at most once. To a recipient who opted out of `message.from` it is
    /// refused with 21610 and never sent; a 21610 from the provider is recorded in the ledger.
    /// `message.attempt` names the send for the provider's lookup.
    ///
    /// # Errors
    ///
    /// [`SendFailure`](crate::SendFailure): the ledger could not be read (nothing was sent),
    /// or the provider gave no verdict.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let sender = proxy_optout_host::MemorySender::new();
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), sender.clone())
    ///     .auth_token("t").public_url("https://relay.example.com").start().await?;
    /// let leg = p.send(&proxy_optout_host::Outgoing { from: "+1P".into(), to: "+1B".into(),
    ///     body: "your driver is here".into(), attempt: "KI1".into() }).await?;
    /// assert_eq!(leg.status, proxy_optout_host::LegStatus::Accepted);
    /// assert_eq!(sender.sent().len(), 1);
    /// # p.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, message: &Outgoing) -> Result<Leg, crate::SendFailure> {
        handling::send(&self.inner, message).await
    }

    fn refuse(&self, refusal: &Refusal) -> WebhookResponse {
        refusal.log();
        self.count(WebhookResponse::refused(refusal))
    }

    fn count(&self, response: WebhookResponse) -> WebhookResponse {
        if let Some(label) = response.refusal() {
            if response.status() >= 500 {
                self.inner.metrics.store_error(label);
            } else {
                self.inner.metrics.rejected(label);
            }
        }
        response
    }

    /// Stops: waits (up to `grace`) for the messages being handled, stops the journal's
    /// replay (what is left stays journaled for the next start) and the purge, and closes
    /// the ledger. Returns whether everything finished within `grace`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://relay.example.com").start().await?;
    /// assert!(p.shutdown_within(std::time::Duration::from_secs(5)).await);
    /// assert!(p.ledger().ping().await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn shutdown_within(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        let tasks = &self.inner.tasks;
        tasks.close();
        let finished = tokio::time::timeout_at(deadline, tasks.wait())
            .await
            .is_ok();
        self.inner.stop.cancel();
        let background: Vec<JoinHandle<()>> = std::mem::take(
            &mut *self
                .inner
                .background
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut stopped = true;
        for mut handle in background {
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                handle.abort();
                let _ = handle.await;
                stopped = false;
            }
        }
        self.inner.ledger.close().await;
        finished && stopped
    }

    /// [`shutdown_within`](Pipeline::shutdown_within) 30 seconds.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let p = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://relay.example.com").start().await?;
    /// p.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) {
        if !self.shutdown_within(Duration::from_secs(30)).await {
            tracing::warn!("message tasks outlived the shutdown grace period");
        }
    }
}

impl PipelineBuilder {
    fn new(ledger: Ledger, routing: Arc<dyn Routing>, sender: Arc<dyn Sender>) -> Self {
        PipelineBuilder {
            ledger,
            routing,
            sender,
            auth_tokens: Vec::new(),
            public_url: None,
            core: RelayCore::new(),
            journal: None,
            send_attempts: SEND_ATTEMPTS,
            database_timeout: DATABASE_TIMEOUT,
            metrics: None,
            observer: None,
            policy: Arc::new(proxy_optout::TwilioProxy),
            webhook_path: WEBHOOK_PATH.to_owned(),
            status_path: STATUS_CALLBACK_PATH.to_owned(),
        }
    }
}

/// Handles one live message now, or journals it: while the journal holds anything, new
/// messages queue behind it, so a STOP that arrived during an outage is recorded before any
/// later message to that person is relayed.
async fn handle_live(inner: &Inner, message: Message) -> Result<String, Refusal> {
    if inner.journal.as_ref().is_some_and(|j| j.depth() > 0) {
        return journal(inner, message, false, "behind", "the journal is not empty").await;
    }
    match handling::handle(inner, message.clone(), Delivery::Live).await {
        Ok(Handled::Answered(answer) | Handled::Replayed(answer)) => Ok(answer),
        Err(Failure::Never(Never::Input(error))) => Err(Refusal::Input {
            message_sid: message.id().to_owned(),
            error,
        }),
        Err(Failure::Never(Never::BadRoute(error))) => Err(Refusal::BadRoute {
            message_sid: message.id().to_owned(),
            error,
        }),
        Err(Failure::Later { maybe_sent, cause }) => {
            tracing::warn!(message_sid = message.id(), cause = %cause, "cannot handle the message now");
            let reason = cause.to_string();
            journal(inner, message, maybe_sent, cause.label(), &reason).await
        }
    }
}

async fn journal(
    inner: &Inner,
    message: Message,
    maybe_sent: bool,
    cause: &'static str,
    reason: &str,
) -> Result<String, Refusal> {
    let Some(journal) = &inner.journal else {
        return Err(Refusal::Unavailable {
            message_sid: message.id().to_owned(),
            reason: reason.to_owned(),
            journal: None,
        });
    };
    match journal.append(&message, maybe_sent).await {
        Ok(()) => {
            inner.metrics.journal(match cause {
                "database" => "journaled_database",
                "busy" => "journaled_busy",
                "send" => "journaled_send",
                "ledger" => "journaled_ledger",
                _ => "journaled_behind",
            });
            // Answered: Twilio is done with it. What the TwiML would have carried (the
            // auto-reply) goes through the sender when the journal is replayed.
            Ok(EMPTY.to_owned())
        }
        Err(error) => Err(Refusal::Unavailable {
            message_sid: message.id().to_owned(),
            reason: reason.to_owned(),
            journal: Some(error),
        }),
    }
}

/// Handles the journal's entries in arrival order, each until it is handled or can never be.
async fn replay(inner: Arc<Inner>) {
    let Some(journal) = &inner.journal else {
        return;
    };
    let stop = inner.stop.clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = journal.wait() => {}
        }
        let entry = match journal.oldest().await {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the journal");
                if pause(&stop, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        let delivery = Delivery::Replay {
            received_at: entry.received_at,
            maybe_sent: entry.maybe_sent,
        };
        let sid = entry.message.id().to_owned();
        let done = match handling::handle(&inner, entry.message, delivery).await {
            Ok(_) => {
                inner.metrics.journal("replayed");
                true
            }
            Err(Failure::Never(error)) => {
                inner.metrics.journal("dropped");
                tracing::error!(message_sid = sid, error = ?error, "a journaled message can never be handled; dropping it");
                true
            }
            Err(Failure::Later { maybe_sent, cause }) => {
                tracing::warn!(message_sid = sid, cause = %cause, retry_in = ?backoff, "a journaled message cannot be handled yet");
                if maybe_sent && !entry.maybe_sent {
                    if let Err(e) = journal.mark_maybe_sent(entry.seq).await {
                        tracing::error!(error = %e, "cannot update the journal");
                    }
                }
                false
            }
        };
        if done {
            backoff = Duration::from_millis(100);
            if let Err(e) = journal.remove(entry.seq).await {
                tracing::error!(error = %e, "cannot update the journal");
            }
        } else {
            let wait = backoff;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            if pause(&stop, wait).await {
                return;
            }
        }
    }
}

async fn pause(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(wait) => false,
    }
}

/// The send a status callback's URL names (see [`crate::ATTEMPT_PARAMETER`]); a query that
/// does not parse names none, and the callback is handled as one without it.
fn attempt_of(target: &str) -> Option<String> {
    let (_, query) = target.split_once('?')?;
    let query = proxy_optout_twilio::Form::parse(query.as_bytes()).ok()?;
    query
        .get(crate::sender::ATTEMPT_PARAMETER)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
}
