//! The HTTP service: the Twilio webhooks, the session admin API, health, readiness, metrics.

// The early returns of a handler are axum `Response`s; boxing them would cost an allocation
// per refused request for nothing.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, OriginalUri, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use proxy_optout::{AsyncRelay, Effect, Feedback, Outcome, Relay, RelayError};
use proxy_optout_sqlite::SqliteStore;
use proxy_optout_twilio::{
    render, Form, ForwardVia, InboundMessage, StatusCallback, Validator, CONTENT_TYPE, EMPTY,
    MAX_FORM_BYTES,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Config, SenderConfig};
use crate::db::{AdminError, Claim, Db, DbError};
use crate::metrics::Metrics;
use crate::sender::{LogSender, Outgoing, Sender, Sent, TwilioSender};
use crate::sessions::{FieldError, NewSession, RouteRow, SessionStatus};

/// The webhook paths, relative to the public URL.
///
/// ```
/// assert_eq!(proxy_relay::WEBHOOK_PATH, "/twilio/sms");
/// ```
pub const WEBHOOK_PATH: &str = "/twilio/sms";
/// Where Twilio posts delivery updates (and a late 21610).
///
/// ```
/// assert_eq!(proxy_relay::STATUS_CALLBACK_PATH, "/twilio/status");
/// ```
pub const STATUS_CALLBACK_PATH: &str = "/twilio/status";

/// Everything the handlers share. Immutable but for counters, so instances behind a load
/// balancer agree: all state that matters is in the database.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let db = dir.path().join("r.db");
/// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
/// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
/// # let config = proxy_relay::Config::from_args(&cli.serve)?;
/// let server = proxy_relay::Server::start(&config, None).await?;
/// let app: &proxy_relay::App = server.app();
/// assert!(app.public_url().starts_with("http://127.0.0.1:"));
/// # server.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct App {
    relay: AsyncRelay<Db>,
    /// On SQLite, the same relay driven synchronously on the blocking pool.
    sqlite: Option<Relay<SqliteStore>>,
    validator: Validator,
    public_url: String,
    admin_digest: [u8; 32],
    sender: Arc<dyn Sender>,
    metrics: Metrics,
    pool: Vec<String>,
    draining: AtomicBool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("public_url", &self.public_url)
            .field("sender", &self.sender.name())
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl App {
    /// The metrics.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// let server = proxy_relay::Server::start(&config, None).await?;
    /// assert_eq!(server.app().metrics().messages("forwarded"), 0);
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The database.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// let server = proxy_relay::Server::start(&config, None).await?;
    /// server.app().db().ping().await?;
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn db(&self) -> &Db {
        self.relay.store()
    }

    /// The public base URL signatures are checked against.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// let server = proxy_relay::Server::start(&config, None).await?;
    /// assert_eq!(server.app().public_url(), server.url()); // no --public-url given
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    fn db_ref(&self) -> &Db {
        self.relay.store()
    }
}

/// Why the server did not start.
///
/// ```
/// let e = proxy_relay::StartError::from(proxy_relay::DbError::Task("x".into()));
/// assert!(e.to_string().starts_with("--database: "));
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The database could not be opened or migrated.
    #[error("--database: {0}")]
    Database(#[from] DbError),
    /// The address could not be bound.
    #[error("--listen: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The sender a configuration asks for.
///
/// # Errors
///
/// [`ConfigError`](crate::ConfigError) when the HTTP client cannot be built.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let db = dir.path().join("r.db");
/// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
/// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
/// # let config = proxy_relay::Config::from_args(&cli.serve)?;
/// let sender = proxy_relay::sender_for(&config, "https://relay.example.com")?;
/// assert_eq!(sender.name(), "log");
/// # Ok(()) }
/// ```
pub fn sender_for(
    config: &Config,
    public_url: &str,
) -> Result<Arc<dyn Sender>, crate::ConfigError> {
    Ok(match &config.sender {
        SenderConfig::Log => Arc::new(LogSender),
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
            Arc::new(
                sender
                    .status_callback(format!("{public_url}{STATUS_CALLBACK_PATH}"))
                    .retries(*timeout, *attempts),
            )
        }
    })
}

/// A running server.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let db = dir.path().join("r.db");
/// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
/// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
/// # let config = proxy_relay::Config::from_args(&cli.serve)?;
/// let server = proxy_relay::Server::start(&config, None).await?;
/// let health = reqwest::get(format!("{}/healthz", server.url())).await?;
/// assert_eq!(health.status(), 200);
/// server.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct Server {
    addr: SocketAddr,
    app: Arc<App>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    grace: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the database, binds, and serves in the background. `sender: None` uses the one
    /// the configuration names.
    ///
    /// # Errors
    ///
    /// [`StartError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// let server = proxy_relay::Server::start(&config, Some(std::sync::Arc::new(proxy_relay::MemorySender::new()))).await?;
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub async fn start(
        config: &Config,
        sender: Option<Arc<dyn Sender>>,
    ) -> Result<Server, StartError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let sender = match sender {
            Some(s) => s,
            None => sender_for(config, &public_url)?,
        };
        let db = Db::open(&config.database, config.pg_pool_size).await?;
        let mut validator = Validator::new(&config.auth_tokens[0]);
        for t in &config.auth_tokens[1..] {
            validator = validator.with_token(t);
        }
        let sqlite = db
            .sqlite()
            .map(|ledger| Relay::new(ledger.clone()).with_mode(config.mode));
        let app = Arc::new(App {
            sqlite,
            relay: AsyncRelay::new(db).with_mode(config.mode),
            validator,
            public_url,
            admin_digest: digest(&config.admin_token),
            sender,
            metrics: Metrics::default(),
            pool: config.proxy_numbers.clone(),
            draining: AtomicBool::new(false),
        });
        let (tx, rx) = oneshot::channel::<()>();
        let router = router(app.clone());
        let drain = app.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                    drain.draining.store(true, Ordering::SeqCst);
                })
                .await
        });
        let purge = Arc::downgrade(&app);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tick.tick().await;
                let Some(app) = purge.upgrade() else { break };
                if let Err(e) = app.db_ref().purge_processed().await {
                    tracing::warn!(error = %e, "purging old processed message ids failed");
                }
            }
        });
        tracing::info!(%addr, public_url = %app.public_url, database = %config.database.redacted(), sender = app.sender.name(), mode = ?config.mode, "serving");
        Ok(Server {
            addr,
            app,
            shutdown: Some(tx),
            task,
            grace: config.shutdown_grace,
        })
    }

    /// The bound address.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// let server = proxy_relay::Server::start(&config, None).await?;
    /// assert!(server.addr().ip().is_loopback());
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` and the bound address.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// let server = proxy_relay::Server::start(&config, None).await?;
    /// assert_eq!(server.url(), format!("http://{}", server.addr()));
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state (metrics, database).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// let server = proxy_relay::Server::start(&config, None).await?;
    /// assert!(server.app().metrics().render().contains("proxy_relay_request_duration_seconds"));
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Stops accepting connections and lets in-flight requests finish, for at most the
    /// configured grace period.
    ///
    /// # Errors
    ///
    /// The server's I/O error, or `TimedOut` when requests were still running at the deadline.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// let server = proxy_relay::Server::start(&config, None).await?;
    /// let url = server.url();
    /// server.shutdown().await?;
    /// assert!(reqwest::get(format!("{url}/healthz")).await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(self.grace, &mut self.task).await {
            Ok(joined) => joined.map_err(std::io::Error::other)?,
            Err(_) => {
                self.task.abort();
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "in-flight requests outlived the shutdown grace period",
                ))
            }
        }
    }
}

/// The service's routes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let db = dir.path().join("r.db");
/// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
/// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
/// # let config = proxy_relay::Config::from_args(&cli.serve)?;
/// let server = proxy_relay::Server::start(&config, None).await?;
/// // The same routes, to mount under a host's own axum app:
/// let routes: axum::Router = proxy_relay::router(server.app().clone());
/// # let _ = routes;
/// # server.shutdown().await?;
/// # Ok(()) }
/// ```
pub fn router(app: Arc<App>) -> Router {
    let admin = Router::new()
        .route("/v1/sessions", post(create_session).get(list_sessions))
        .route("/v1/sessions/{sid}", get(get_session).delete(close_session))
        .route("/v1/sessions/{sid}/close", post(close_session))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_admin));
    Router::new()
        .route(WEBHOOK_PATH, post(inbound_webhook))
        .route(STATUS_CALLBACK_PATH, post(status_webhook))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(admin)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = match request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
    {
        Some(WEBHOOK_PATH) => "webhook",
        Some(STATUS_CALLBACK_PATH) => "status_callback",
        Some("/healthz" | "/readyz") => "health",
        Some("/metrics") => "metrics",
        Some(p) if p.starts_with("/v1/") => "admin",
        _ => "other",
    };
    let start = Instant::now();
    let response = next.run(request).await;
    app.metrics.observe(route, start.elapsed());
    response
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    let mut m = message.into();
    m.push('\n');
    (status, m).into_response()
}

fn twiml(body: String) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

fn unavailable(message: &str) -> Response {
    let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Content type, form and signature: everything before a webhook is believed.
fn authenticate<'b>(
    app: &App,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &'b Bytes,
) -> Result<Form<'b>, Response> {
    check_webhook(
        &app.validator,
        &app.public_url,
        &app.metrics,
        uri,
        headers,
        body,
    )
}

/// Content type, form and signature, for any webhook handler (the load test's floor server
/// uses it too, so the floor and the relay pay the same for them).
pub(crate) fn check_webhook<'b>(
    validator: &Validator,
    public_url: &str,
    metrics: &Metrics,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &'b Bytes,
) -> Result<Form<'b>, Response> {
    if !is_form(headers) {
        metrics.rejected("content_type");
        return Err(plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a Twilio webhook is application/x-www-form-urlencoded",
        ));
    }
    let form = Form::parse(body).map_err(|e| {
        metrics.rejected("form");
        plain(StatusCode::BAD_REQUEST, e.to_string())
    })?;
    // The URL Twilio signed: the configured public base, then the target exactly as received.
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{}{}", public_url, target);
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    validator
        .validate_form(&url, signature, &form)
        .map_err(|e| {
            metrics.rejected("signature");
            tracing::warn!(url = %url, error = %e, "webhook refused");
            plain(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN),
                e.to_string(),
            )
        })?;
    Ok(form)
}

async fn inbound_webhook(
    State(app): State<Arc<App>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The message is handled in its own task: if Twilio gives up and closes the connection,
    // hyper drops this handler, but the effects already begun (a ledger write, a send) still
    // finish and the answer is still stored for the retry.
    let task = tokio::spawn(handle_message(app, uri, headers, body));
    match task.await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "a webhook handler panicked");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

async fn handle_message(
    app: Arc<App>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match authenticate(&app, &uri, &headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let message = match InboundMessage::from_form(&form) {
        Ok(m) => m,
        Err(e) => {
            app.metrics.rejected("fields");
            return plain(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let id = message.message_sid();
    let outcome = match decide(&app, &body, &message).await {
        Ok(Decided::Outcome(outcome)) => outcome,
        Ok(Decided::Replay(answer)) => {
            app.metrics.message("replayed");
            tracing::info!(message_sid = id, "redelivered; answering as before");
            return twiml(answer);
        }
        Ok(Decided::InProgress) => return unavailable("this message is being handled; retry"),
        Err(failure) => {
            let claimed = !matches!(failure, Failure::Claim(_));
            let response = failure.respond(&app, id);
            if claimed {
                release(&app, id).await;
            }
            return response;
        }
    };
    match perform(&app, id.unwrap_or(""), &outcome).await {
        Ok(answer) => {
            if let Some(id) = id {
                let (errors, sid) = (app.clone(), id.to_owned());
                app.db_ref()
                    .complete_in_order(id, answer.clone(), move |e| {
                        // Everything was performed; only redelivery protection is missing.
                        errors.metrics.store_error("complete");
                        tracing::error!(error = %e, message_sid = sid, "could not store the answer");
                    })
                    .await;
            }
            twiml(answer)
        }
        Err(response) => {
            release(&app, id).await;
            response
        }
    }
}

async fn release(app: &App, id: Option<&str>) {
    if let Some(id) = id {
        if let Err(e) = app.db_ref().release(id).await {
            app.metrics.store_error("release");
            tracing::error!(error = %e, message_sid = id, "could not release the claim; a retry waits for it to go stale");
        }
    }
}

/// What the database and the relay made of one delivery. Moved once per request, so the
/// size difference between variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Decided {
    /// First delivery, decided (the ledger change, if any, is stored).
    Outcome(Outcome<'static>),
    /// Answered before: give this again.
    Replay(String),
    /// Being handled by another request.
    InProgress,
}

/// Why a delivery was not decided.
enum Failure {
    /// The claim or the session lookup failed: nothing was claimed.
    Claim(DbError),
    /// A stored session is not valid.
    Session(String),
    /// The relay refused the input.
    Input(String),
    /// The ledger failed: nothing confirmed, nothing forwarded.
    Ledger(String),
}

impl Failure {
    fn respond(self, app: &App, id: Option<&str>) -> Response {
        match self {
            Failure::Claim(e) => {
                app.metrics.store_error("claim");
                tracing::error!(error = %e, message_sid = id, "database unavailable; answering 503");
                unavailable("the database is unavailable; retry")
            }
            Failure::Session(e) => {
                app.metrics.store_error("session");
                tracing::error!(error = %e, "a stored session is not valid");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "a stored session is not valid",
                )
            }
            Failure::Input(e) => {
                app.metrics.rejected("fields");
                plain(StatusCode::BAD_REQUEST, e)
            }
            Failure::Ledger(e) => {
                // Fail closed: nothing confirmed, nothing forwarded; Twilio retries on 503.
                app.metrics.store_error("ledger");
                tracing::error!(error = %e, message_sid = id, "opt-out ledger unavailable; answering 503");
                unavailable("the opt-out ledger is unavailable; retry")
            }
        }
    }
}

fn relay_failure<E: std::fmt::Display>(e: RelayError<E>) -> Failure {
    match e {
        RelayError::Input(e) => Failure::Input(e.to_string()),
        other => Failure::Ledger(other.to_string()),
    }
}

/// Claims the message, finds its session and runs the relay (which stores the ledger change).
async fn decide(
    app: &Arc<App>,
    body: &Bytes,
    message: &InboundMessage<'_>,
) -> Result<Decided, Failure> {
    if app.sqlite.is_some() {
        // SQLite: the whole decision in one trip to the database thread; four trips (claim,
        // route, read, write) cost more in thread hand-offs than the queries themselves.
        let (app2, body) = (app.clone(), body.clone());
        let decided = app
            .db_ref()
            .on_sqlite_thread(move |_| decide_here(&app2, &body))
            .await;
        if let Some(decided) = decided {
            return decided.map_err(Failure::Claim)?;
        }
    }
    let (claim, route) = app
        .db_ref()
        .begin(message.message_sid(), message.from(), message.to())
        .await
        .map_err(Failure::Claim)?;
    if let Some(done) = answered(claim) {
        return Ok(done);
    }
    let route_row = route;
    let route = route_of(route_row.as_ref())?;
    let inbound = message.inbound();
    let outcome = app
        .relay
        .handle(&inbound, route)
        .await
        .map_err(relay_failure)?;
    Ok(Decided::Outcome(outcome.into_owned()))
}

/// The answer for a delivery that is not to be handled now, if it is one.
fn answered(claim: Claim) -> Option<Decided> {
    match claim {
        Claim::Answered(answer) => Some(Decided::Replay(answer)),
        Claim::InProgress => Some(Decided::InProgress),
        Claim::New => None,
    }
}

fn route_of(row: Option<&RouteRow>) -> Result<Option<proxy_optout::Route<'_>>, Failure> {
    row.map(RouteRow::route)
        .transpose()
        .map_err(|e| Failure::Session(e.to_string()))
}

fn decide_here(app: &App, body: &Bytes) -> Result<Decided, Failure> {
    let relay = app
        .sqlite
        .as_ref()
        .ok_or_else(|| Failure::Claim(DbError::Task("not SQLite".into())))?;
    // Parsed and validated already on the way in; parsing again is cheaper than sending the
    // borrowed form across threads.
    let form = Form::parse(body).map_err(|e| Failure::Input(e.to_string()))?;
    let message = InboundMessage::from_form(&form).map_err(|e| Failure::Input(e.to_string()))?;
    let begun = app
        .db_ref()
        .begin_here(message.message_sid(), message.from(), message.to())
        .ok_or_else(|| Failure::Claim(DbError::Task("not SQLite".into())))?;
    let (claim, route_row) = begun.map_err(Failure::Claim)?;
    if let Some(done) = answered(claim) {
        return Ok(done);
    }
    let route = route_of(route_row.as_ref())?;
    let inbound = message.inbound();
    let outcome = relay
        .handle_routed(&inbound, route)
        .map_err(relay_failure)?;
    Ok(Decided::Outcome(outcome.into_owned()))
}

fn outcome_label(outcome: &Outcome<'_>) -> &'static str {
    if outcome.forwarded().is_some() {
        "forwarded"
    } else if outcome.refused().is_some() {
        "refused"
    } else {
        outcome.withheld().map_or("other", |w| w.as_str())
    }
}

/// Performs a decided outcome's effects in order and renders the answer. `Err` is the
/// response to give when the platform should retry (the forward reached no verdict, or a
/// 21610 could not be recorded).
async fn perform(app: &App, sid: &str, outcome: &Outcome<'_>) -> Result<String, Response> {
    let session = outcome.session().unwrap_or("");
    if let (true, Some(category)) = (
        outcome.decision().is_dropped(),
        outcome.decision().category(),
    ) {
        app.metrics.keyword_drop(category.as_str());
    }
    let mut label = outcome_label(outcome);
    for effect in outcome.effects() {
        match effect {
            // Done by the driver, durably, before anything below.
            Effect::Record { key, state } => {
                tracing::debug!(message_sid = sid, %key, %state, "ledger updated");
            }
            // Given back as TwiML in this response.
            Effect::Reply(reply) => {
                tracing::debug!(message_sid = sid, to = reply.to(), "auto-reply");
            }
            Effect::Forward(out) => {
                let outgoing = Outgoing {
                    from: out.from().to_owned(),
                    to: out.to().to_owned(),
                    body: out.body().to_owned(),
                    idempotency_key: if sid.is_empty() {
                        uuid::Uuid::new_v4().to_string()
                    } else {
                        format!("{sid}-forward")
                    },
                };
                match app.sender.send(&outgoing).await {
                    Ok(Sent::Accepted { sid: sent }) => {
                        tracing::debug!(
                            message_sid = sid,
                            session,
                            to = out.to(),
                            sent_sid = sent.as_deref(),
                            "forwarded"
                        );
                    }
                    Ok(verdict) if verdict.is_unsubscribed() => {
                        label = "refused";
                        app.metrics.refusal("rest");
                        tracing::info!(
                            message_sid = sid,
                            session,
                            to = out.to(),
                            "the platform refused the forward with 21610; recording the opt-out"
                        );
                        let feedback = Feedback::Refused {
                            from: out.from(),
                            to: out.to(),
                        };
                        if let Err(e) = app.relay.feedback(&feedback).await {
                            app.metrics.store_error("ledger");
                            tracing::error!(error = %e, "could not record the 21610 opt-out; answering 503");
                            return Err(unavailable("the opt-out ledger is unavailable; retry"));
                        }
                    }
                    Ok(verdict) => {
                        label = "send_refused";
                        tracing::warn!(
                            message_sid = sid,
                            session,
                            to = out.to(),
                            ?verdict,
                            "the platform refused the forward"
                        );
                    }
                    Err(e) => {
                        app.metrics.send_error(app.sender.name());
                        tracing::error!(message_sid = sid, session, error = %e, "forward reached no verdict; answering 503 so the platform retries");
                        return Err(unavailable("the forward could not be sent; retry"));
                    }
                }
            }
            Effect::Refuse(out) => {
                app.metrics.refusal("ledger");
                tracing::debug!(
                    message_sid = sid,
                    session,
                    to = out.to(),
                    "not forwarded: the recipient opted out of this number (21610)"
                );
            }
            Effect::Notice(n) => {
                app.metrics.notice(match n.code() {
                    80901 => "80901",
                    80909 => "80909",
                    21610 => "21610",
                    _ => "other",
                });
                tracing::debug!(
                    message_sid = sid,
                    session,
                    code = n.code(),
                    notice = n.title(),
                    "notice"
                );
            }
            _ => {}
        }
    }
    app.metrics.message(label);
    // One line per message at info: who and what happened, never the text.
    tracing::info!(
        message_sid = sid,
        session,
        outcome = label,
        keyword = outcome.decision().keyword(),
        ledger = outcome.ledger().map(|c| c.state().as_str()),
        "message handled"
    );
    Ok(render(outcome, ForwardVia::Rest))
}

async fn status_webhook(
    State(app): State<Arc<App>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match authenticate(&app, &uri, &headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let callback = match StatusCallback::from_form(&form) {
        Ok(c) => c,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if let Some(feedback) = callback.feedback() {
        app.metrics.refusal("status_callback");
        if let Err(e) = app.relay.feedback(&feedback).await {
            app.metrics.store_error("ledger");
            tracing::error!(error = %e, "could not record the 21610 opt-out from a status callback");
            return unavailable("the opt-out ledger is unavailable; retry");
        }
        tracing::info!(
            message_sid = callback.message_sid(),
            "a status callback reported 21610; opt-out recorded"
        );
    }
    twiml(EMPTY.to_owned())
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.draining.load(Ordering::SeqCst) {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    match app.db_ref().ping().await {
        Ok(()) => plain(StatusCode::OK, "ready"),
        Err(e) => {
            app.metrics.store_error("ping");
            tracing::warn!(error = %e, "not ready");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            )
        }
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

// ---- the admin API ----

fn json_error(status: StatusCode, field: Option<&str>, message: &str) -> Response {
    let body = serde_json::json!({
        "error": { "status": status.as_u16(), "field": field, "message": message }
    });
    (status, Json(body)).into_response()
}

fn admin_error(e: &AdminError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match e {
        AdminError::Invalid(f) | AdminError::Conflict(f) => {
            json_error(status, Some(&f.field), &e.to_string())
        }
        AdminError::Store(inner) => {
            tracing::error!(error = %inner, "admin call failed on the database");
            json_error(status, None, "the database is unavailable; retry")
        }
        _ => json_error(status, None, &e.to_string()),
    }
}

async fn require_admin(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // Digests have one length, so the comparison's time says nothing about the token.
    let ok = presented.is_some_and(|t| bool::from(digest(t).ct_eq(&app.admin_digest)));
    if !ok {
        app.metrics.rejected("admin_token");
        let mut r = json_error(
            StatusCode::UNAUTHORIZED,
            None,
            "a valid bearer token is required (Authorization: Bearer <token>)",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
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

async fn create_session(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if !is_json(&headers) {
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            "send application/json",
        );
    }
    let request: NewSession = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let field = serde_field(&e);
            return json_error(
                StatusCode::BAD_REQUEST,
                Some(&field),
                &format!("{field}: {e}"),
            );
        }
    };
    match app.db_ref().create_session(&request, &app.pool).await {
        Ok(s) => {
            tracing::info!(session = %s.sid, "session created");
            (StatusCode::CREATED, Json(s)).into_response()
        }
        Err(e) => admin_error(&e),
    }
}

async fn get_session(State(app): State<Arc<App>>, Path(sid): Path<String>) -> Response {
    match app.db_ref().session(&sid).await {
        Ok(Some(s)) => Json(s).into_response(),
        Ok(None) => admin_error(&AdminError::NotFound { sid }),
        Err(e) => admin_error(&AdminError::Store(e)),
    }
}

/// The query of `GET /v1/sessions`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
}

/// The most sessions one list call returns.
///
/// ```
/// assert_eq!(proxy_relay::MAX_LIST, 1000);
/// ```
pub const MAX_LIST: u32 = 1000;

async fn list_sessions(
    State(app): State<Arc<App>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, Some("query"), &e.body_text()),
    };
    let status = match query.status.as_deref() {
        None => None,
        Some("open") => Some(SessionStatus::Open),
        Some("closed") => Some(SessionStatus::Closed),
        Some(other) => {
            let e = FieldError::new("status", format!("{other:?} is not open or closed"));
            return admin_error(&AdminError::Invalid(e));
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
            return admin_error(&AdminError::Invalid(e));
        }
    };
    match app.db_ref().sessions(status, limit).await {
        Ok(list) => Json(serde_json::json!({ "sessions": list })).into_response(),
        Err(e) => admin_error(&AdminError::Store(e)),
    }
}

async fn close_session(State(app): State<Arc<App>>, Path(sid): Path<String>) -> Response {
    match app.db_ref().close_session(&sid).await {
        Ok(Some(s)) => {
            tracing::info!(session = %s.sid, "session closed");
            Json(s).into_response()
        }
        Ok(None) => admin_error(&AdminError::NotFound { sid }),
        Err(e) => admin_error(&AdminError::Store(e)),
    }
}
