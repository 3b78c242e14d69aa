//! The server's lifecycle: open the database, bind, serve, run the background purge, and shut
//! down releasing everything (connections, tasks, the database) before `shutdown` returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_optout_host::{Metrics, Pipeline, Sender};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::backend::{Db, DbError};
use crate::config::{sender_for, Config};

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
    /// The journal could not be opened.
    #[error("--journal: {0}")]
    Journal(#[from] proxy_optout_host::JournalError),
    /// The address could not be bound.
    #[error("--listen: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// A running server.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let db = dir.path().join("r.db");
/// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
/// #     "--database", db.to_str().unwrap(), "--auth-token", "t"]);
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
    serving: JoinHandle<std::io::Result<()>>,
    grace: Duration,
    sweeping: (CancellationToken, JoinHandle<()>),
    refreshing: (CancellationToken, JoinHandle<()>),
    retaining: (CancellationToken, JoinHandle<()>),
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
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t"]);
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
        let seeded = {
            let numbers = config.proxy_numbers.clone();
            db.sql()
                .run(move |tx| crate::proxy::store::seed(tx, crate::DEFAULT_SERVICE, &numbers))
                .await
        };
        if let Err(e) = seeded {
            db.close().await;
            return Err(StartError::Config(crate::ConfigError::new(
                "proxy-numbers",
                e.message,
            )));
        }
        let metrics = Arc::new(Metrics::with_prefix("proxy_relay"));
        let ctx = crate::proxy::store::Ctx {
            base: public_url.trim_end_matches('/').to_owned(),
            account: config.account_sid.clone(),
        };
        let hooks = match crate::proxy::hooks::Hooks::start(
            db.sql(),
            ctx,
            config.auth_tokens[0].clone(),
            config.hooks.clone(),
            config.mode,
            metrics.clone(),
        )
        .await
        {
            Ok(h) => h,
            Err(e) => {
                db.close().await;
                return Err(StartError::Database(e));
            }
        };
        let interactions = Arc::new(crate::proxy::Interactions::start(
            db.sql(),
            metrics.clone(),
            hooks.clone(),
        ));
        let pipeline = Pipeline::builder_shared(db.ledger().clone(), db.routing(), sender)
            .observer(interactions)
            .policy(Arc::new(crate::proxy::hooks::HookPolicy(hooks.clone())))
            .auth_token(config.auth_tokens[0].clone())
            .public_url(public_url)
            .mode(config.mode)
            .journal(config.journal.clone())
            .send_attempts(config.send_attempts)
            .database_timeout(config.database_timeout)
            .metrics(metrics);
        let pipeline = config.auth_tokens[1..]
            .iter()
            .fold(pipeline, |p, t| p.auth_token(t.clone()));
        let pipeline = match pipeline.start().await {
            Ok(p) => p,
            Err(e) => {
                db.close().await;
                return Err(match e {
                    proxy_optout_host::BuildError::Journal(j) => StartError::Journal(j),
                    other => {
                        StartError::Config(crate::ConfigError::new("public-url", other.to_string()))
                    }
                });
            }
        };
        let app = Arc::new(App::new(config, db, pipeline, hooks.clone()));
        let (tx, rx) = oneshot::channel::<()>();
        let router = crate::http::router(app.clone());
        let limits = Limits {
            header_timeout: config.header_timeout,
            max_connections: config.max_connections,
        };
        let serving = tokio::spawn(serve(listener, router, limits, app.clone(), rx));
        let stop = CancellationToken::new();
        let sweeping = (
            stop.clone(),
            tokio::spawn(crate::proxy::sweep(
                app.db().sql(),
                config.session_sweep,
                stop,
            )),
        );
        let stop = CancellationToken::new();
        let refreshing = (stop.clone(), tokio::spawn(hooks.refresh(stop)));
        let stop = CancellationToken::new();
        let retaining = (
            stop.clone(),
            tokio::spawn(retain(
                app.db().clone(),
                config.history_retention,
                config.text_retention,
                stop,
            )),
        );
        tracing::info!(%addr, public_url = %app.public_url(), database = %config.database.redacted(), journal = %app.pipeline().journal_path().map(|p| p.display().to_string()).unwrap_or_default(), journaled = app.journal_depth(), sender = app.pipeline().sender().name(), mode = ?config.mode, "serving");
        let (inbound, status) = webhook_urls(app.public_url());
        tracing::info!(
            a_message_comes_in = %inbound,
            status_callback = %status,
            "configure the Twilio number's messaging webhook (HTTP POST) with this URL"
        );
        Ok(Server {
            addr,
            app,
            shutdown: Some(tx),
            serving,
            grace: config.shutdown_grace,
            sweeping,
            refreshing,
            retaining,
        })
    }

    /// The bound address.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t"]);
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
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t"]);
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
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t"]);
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

    /// Stops accepting connections, lets in-flight requests and the message tasks they began
    /// finish (for at most the configured grace period), stops the background purge, and
    /// closes the database. When it returns, everything is released: the listener, the
    /// tasks, the SQLite file and its lock (or the PostgreSQL connections), so a new server
    /// on the same file starts at once.
    ///
    /// # Errors
    ///
    /// The server's I/O error, or `TimedOut` when requests were still running at the deadline
    /// (they are cut off; the database is closed all the same).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let db = dir.path().join("r.db");
    /// let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    ///     "--database", db.to_str().unwrap(), "--auth-token", "t"]);
    /// let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// let server = proxy_relay::Server::start(&config, None).await?;
    /// let url = server.url();
    /// server.shutdown().await?;
    /// assert!(reqwest::get(format!("{url}/healthz")).await.is_err());
    /// // The file is free: the same configuration starts again.
    /// proxy_relay::Server::start(&config, None).await?.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let deadline = tokio::time::Instant::now() + self.grace;
        let served = match tokio::time::timeout_at(deadline, &mut self.serving).await {
            Ok(joined) => joined.map_err(std::io::Error::other).and_then(|r| r),
            Err(_) => {
                self.serving.abort();
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "in-flight requests outlived the shutdown grace period",
                ))
            }
        };
        // Message tasks outlive their requests on purpose (a caller that hung up); the
        // pipeline waits for them too, within the same deadline, stops the journal's replay
        // (what is left stays journaled for the next start), and closes the database.
        self.sweeping.0.cancel();
        let _ = (&mut self.sweeping.1).await;
        self.refreshing.0.cancel();
        let _ = (&mut self.refreshing.1).await;
        self.retaining.0.cancel();
        let _ = (&mut self.retaining.1).await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let finished = self.app.pipeline().shutdown_within(left).await;
        match (served, finished) {
            (Err(e), _) => Err(e),
            (Ok(()), false) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "message tasks outlived the shutdown grace period",
            )),
            (Ok(()), true) => Ok(()),
        }
    }
}

/// What a connection may cost the server.
#[derive(Clone, Copy, Debug)]
struct Limits {
    header_timeout: Duration,
    max_connections: usize,
}

/// Accepts connections within the limits and serves each with hyper, until `stop`; then
/// stops accepting and lets open connections finish their requests.
async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: Limits,
    app: Arc<App>,
    stop: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            app.metrics().rejected("connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that times out or resets ends its own connection; nothing to report.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    app.start_draining();
    graceful.shutdown().await;
    Ok(())
}

/// The URLs to give Twilio, with connection overrides in the fragment (Twilio does not sign
/// it, and strips it before the request). The server answers 2xx to every authenticated
/// webhook (what it cannot handle now it journals), so a retry is needed only when the
/// connection fails or the journal cannot be written (5xx): `rc=2&rp=ct,rt,5xx` asks Twilio
/// for two such retries, `tt=14000` keeps every attempt inside its 15-second budget.
///
/// ```
/// let (inbound, status) = proxy_relay::webhook_urls("https://relay.example.com");
/// assert_eq!(inbound, "https://relay.example.com/twilio/sms#rc=2&rp=ct,rt,5xx&tt=14000");
/// assert_eq!(status, "https://relay.example.com/twilio/status");
/// ```
#[must_use]
pub fn webhook_urls(public_url: &str) -> (String, String) {
    (
        proxy_optout_host::webhook_url(public_url, crate::WEBHOOK_PATH),
        format!("{public_url}{}", crate::STATUS_CALLBACK_PATH),
    )
}

/// Applies the opt-out history's retention hourly (and once at start), until `stop`.
async fn retain(
    db: crate::Db,
    history: Option<Duration>,
    texts: Option<Duration>,
    stop: CancellationToken,
) {
    if history.is_none() && texts.is_none() {
        return;
    }
    let before = |keep: Option<Duration>| {
        keep.and_then(|k| SystemTime::now().checked_sub(k))
            .map(|t| {
                t.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64)
            })
    };
    loop {
        match db.purge_history(before(history), before(texts)).await {
            Ok((0, 0)) => {}
            Ok((deleted, cleared)) => {
                tracing::info!(deleted, cleared, "opt-out history retention applied");
            }
            Err(e) => tracing::warn!(error = %e, "could not apply the opt-out history's retention"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}
