//! The state every handler shares, built once at start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proxy_optout_host::{Metrics, Pipeline};

use crate::backend::Db;
use crate::config::Config;

/// Everything the handlers share: the webhook [`Pipeline`] (from `proxy-optout-host`, with
/// the session tables as its routing), the database, and the Proxy API's credentials.
/// Immutable but for counters, so instances behind a load balancer agree: all state that
/// matters is in the database.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let db = dir.path().join("r.db");
/// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
/// #     "--database", db.to_str().unwrap(), "--auth-token", "t"]);
/// # let config = proxy_relay::Config::from_args(&cli.serve)?;
/// let server = proxy_relay::Server::start(&config, None).await?;
/// let app: &proxy_relay::App = server.app();
/// assert!(app.public_url().starts_with("http://127.0.0.1:"));
/// # server.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct App {
    pipeline: Pipeline,
    hooks: Arc<crate::proxy::hooks::Hooks>,
    db: Db,
    proxy: ProxyState,
    draining: AtomicBool,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("public_url", &self.pipeline.public_url())
            .field("database", &self.db.kind())
            .field("sender", &self.pipeline.sender().name())
            .finish_non_exhaustive()
    }
}

/// What the Proxy API's handlers share.
#[derive(Debug)]
pub(crate) struct ProxyState {
    pub(crate) sql: Arc<crate::backend::sql::Sql>,
    pub(crate) ctx: crate::proxy::store::Ctx,
    pub(crate) credentials: crate::proxy::Credentials,
}

impl App {
    pub(crate) fn new(
        config: &Config,
        db: Db,
        pipeline: Pipeline,
        hooks: Arc<crate::proxy::hooks::Hooks>,
    ) -> App {
        App {
            hooks,
            proxy: ProxyState {
                sql: db.sql(),
                ctx: crate::proxy::store::Ctx {
                    base: pipeline.public_url().trim_end_matches('/').to_owned(),
                    account: config.account_sid.clone(),
                },
                credentials: crate::proxy::Credentials::new(
                    &config.account_sid,
                    &config.auth_tokens,
                    &config.api_keys,
                ),
            },
            pipeline,
            db,
            draining: AtomicBool::new(false),
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight)),
        }
    }

    /// The metrics.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// let server = proxy_relay::Server::start(&config, None).await?;
    /// assert_eq!(server.app().metrics().messages("forwarded"), 0);
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        self.pipeline.metrics()
    }

    /// The database.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// let server = proxy_relay::Server::start(&config, None).await?;
    /// server.app().db().ping().await?;
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The public base URL signatures are checked against.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// let server = proxy_relay::Server::start(&config, None).await?;
    /// assert_eq!(server.app().public_url(), server.url()); // no --public-url given
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn public_url(&self) -> &str {
        self.pipeline.public_url()
    }

    /// The webhook pipeline.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// let server = proxy_relay::Server::start(&config, None).await?;
    /// assert_eq!(server.app().pipeline().paths().0, proxy_relay::WEBHOOK_PATH);
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub(crate) fn hooks(&self) -> &crate::proxy::hooks::Hooks {
        &self.hooks
    }

    pub(crate) fn proxy(&self) -> &ProxyState {
        &self.proxy
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// How many webhooks wait in the local journal.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// let server = proxy_relay::Server::start(&config, None).await?;
    /// assert_eq!(server.app().journal_depth(), 0);
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn journal_depth(&self) -> usize {
        self.pipeline.journal_depth()
    }

    /// One slot of the in-flight bound, if one is free.
    pub(crate) fn in_flight_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }
}
