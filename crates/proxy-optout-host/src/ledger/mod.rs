//! The opt-out ledger and the processed message ids, on SQLite (one host) or PostgreSQL
//! (several instances), behind one seam. [`Ledger`] is what the pipeline asks of a database:
//! decide one routed message (claim its id, run the relay's steps with the ledger reads and
//! writes they ask for) in one job, store the answer, give a claim back, record a 21610. Each
//! database implements it in one file; nothing above this module knows which one it talks to.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use proxy_optout::{
    Answer, FeedbackError, InputError, Intercept, OptState, Outcome, RelayCore, RelayError, Step,
};

use crate::message::Message;
use crate::routing::SessionRoute;

mod group;
mod postgres;
mod sqlite;
mod worker;

pub use postgres::{PgLedger, PgRouting};
pub use sqlite::{SqliteLedger, SqliteRouting};

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A ledger failure.
///
/// ```
/// let e = proxy_optout_host::LedgerError::Closed;
/// assert_eq!(e.to_string(), "the ledger is closed (the pipeline is shutting down)");
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The SQLite store failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] proxy_optout_sqlite::StoreError),
    /// The PostgreSQL store failed.
    #[error("postgres: {0}")]
    Postgres(#[from] proxy_optout_postgres::StoreError),
    /// The ledger was closed.
    #[error("the ledger is closed (the pipeline is shutting down)")]
    Closed,
    /// The database thread could not run the call (it panicked), or gave no answer in time.
    #[error("the database task did not finish: {0}")]
    Task(String),
}

impl From<proxy_optout_postgres::tokio_postgres::Error> for LedgerError {
    fn from(e: proxy_optout_postgres::tokio_postgres::Error) -> Self {
        LedgerError::Postgres(e.into())
    }
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        LedgerError::Sqlite(proxy_optout_sqlite::StoreError::Sqlite(e))
    }
}

/// A routing that runs inside the ledger's own decision job: on the SQLite ledger's database
/// thread, or inside the PostgreSQL decision's one statement. Built by
/// [`SqliteLedger::routing`] or [`PgLedger::routing`]; the pipeline uses it when the routing
/// belongs to its own ledger, and asks [`Routing::route`](crate::Routing::route) otherwise.
#[doc(hidden)]
#[derive(Clone)]
pub struct Colocated(pub(crate) ColocatedKind);

impl std::fmt::Debug for Colocated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Colocated")
    }
}

pub(crate) type SqliteRouteFn =
    Arc<dyn Fn(&proxy_optout_sqlite::SqliteStore, &str, &str) -> crate::RouteResult + Send + Sync>;

#[derive(Clone)]
pub(crate) enum ColocatedKind {
    /// Runs on this worker's thread.
    Sqlite {
        worker: Arc<worker::DbWorker>,
        route: SqliteRouteFn,
    },
    /// The statement calling this decision function (the route query inside it) on this
    /// ledger's database.
    Postgres { ledger: Arc<()>, call: Arc<str> },
}

/// Where the decision gets its route.
pub(crate) enum Routed {
    /// The host's routing answered already.
    Resolved(Option<SessionRoute>),
    /// The ledger's job finds it.
    Colocated(ColocatedKind),
}

/// What the database and the relay made of one delivery.
#[derive(Debug)]
pub(crate) enum Decided {
    /// Decided (the ledger change, if any, is stored, and so is the claim: it marks that
    /// sends may follow). `resumed`: the claim was taken over from a handler that crashed or
    /// hung, so what it sent may have gone out.
    Outcome {
        outcome: Box<Outcome<'static>>,
        resumed: bool,
    },
    /// Answered before: give this again and perform nothing.
    Replay(String),
    /// Being handled by another request now.
    InProgress,
}

/// Why a delivery was not decided. Whatever the variant, nothing stays claimed.
#[derive(Debug)]
pub(crate) enum DecideError {
    /// The database could not be reached or answered with an error.
    Unavailable(LedgerError),
    /// The relay refused the message (or the host's route, a host bug).
    Input(InputError),
    /// The host's route is not one the relay can use, or (co-located) its routing failed.
    Route(crate::routing::RoutingError),
    /// The ledger failed: the relay failed closed (nothing confirmed, nothing forwarded).
    Ledger(Box<RelayError<LedgerError>>),
}

/// The database, as the pipeline uses it. Every method owns its arguments, because the
/// SQLite calls travel to the database thread.
pub(crate) trait Backend: Send + Sync + std::fmt::Debug {
    /// Claims the message id and runs the relay's steps over `route`, reading and storing
    /// the ledger as they ask: one job on the database (one thread hop on SQLite, one round
    /// trip on PostgreSQL for an ordinary message). The claim and the ledger change are
    /// durable when this returns.
    fn decide(
        &self,
        core: Arc<RelayCore>,
        policy: Arc<dyn crate::Policy>,
        message: Arc<Message>,
        route: Routed,
    ) -> BoxFuture<'_, Result<Decided, DecideError>>;

    /// Whether a co-located routing runs inside this ledger's jobs.
    fn runs(&self, colocated: &ColocatedKind) -> bool;

    /// Stores the answer of a claimed message. Returns once a later claim of the id is sure
    /// to see it; `on_error` runs if the write fails after that.
    fn complete(
        &self,
        message_id: String,
        answer: String,
        on_error: Box<dyn FnOnce(LedgerError) + Send>,
    ) -> BoxFuture<'_, ()>;

    /// Gives a claim back after a failure, so the platform's retry is handled in full.
    fn release(&self, message_id: String) -> BoxFuture<'_, Result<(), LedgerError>>;

    /// Records that the platform refused a send from `from` to `to` with 21610.
    fn refused(
        &self,
        core: Arc<RelayCore>,
        from: String,
        to: String,
    ) -> BoxFuture<'_, Result<(), FeedbackError<LedgerError>>>;

    /// The ledger's state of one key.
    fn state(
        &self,
        scope: String,
        participant: String,
    ) -> BoxFuture<'_, Result<OptState, LedgerError>>;

    /// Notes the confirmation reply of a key's latest change to `state` as sent at `at_ms`.
    fn confirmed(
        &self,
        scope: String,
        participant: String,
        state: OptState,
        at_ms: u64,
    ) -> BoxFuture<'_, Result<(), LedgerError>>;

    /// Whether the database answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), LedgerError>>;

    /// Forgets processed message ids older than the retention period.
    fn purge(&self) -> BoxFuture<'_, Result<u64, LedgerError>>;

    /// Finishes what was queued and lets go of the database. Later calls fail.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// The pipeline's database: the opt-out ledger and the processed message ids. Cheap to
/// clone. Open a [`SqliteLedger`] or a [`PgLedger`] and convert it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let ledger: proxy_optout_host::Ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("optout.db")).await?.into();
/// assert_eq!(ledger.kind(), "sqlite");
/// ledger.ping().await?;
/// ledger.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Ledger {
    backend: Arc<dyn Backend>,
    kind: &'static str,
}

impl From<SqliteLedger> for Ledger {
    fn from(l: SqliteLedger) -> Ledger {
        Ledger {
            backend: Arc::new(l),
            kind: "sqlite",
        }
    }
}

impl From<PgLedger> for Ledger {
    fn from(l: PgLedger) -> Ledger {
        Ledger {
            backend: Arc::new(l),
            kind: "postgres",
        }
    }
}

impl Ledger {
    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// `sqlite` or `postgres`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger: proxy_optout_host::Ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?.into();
    /// assert_eq!(ledger.kind(), "sqlite");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Whether the database answers (readiness).
    ///
    /// # Errors
    ///
    /// [`LedgerError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger: proxy_optout_host::Ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?.into();
    /// ledger.ping().await?;
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<(), LedgerError> {
        self.backend.ping().await
    }

    /// The state of `participant` on `proxy` (per-number scope; for a service-wide scope
    /// pass the service id as `proxy`).
    ///
    /// # Errors
    ///
    /// [`LedgerError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger: proxy_optout_host::Ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?.into();
    /// assert_eq!(ledger.state("+1P", "+1A").await?, proxy_optout::OptState::OptedIn);
    /// # Ok(()) }
    /// ```
    pub async fn state(&self, proxy: &str, participant: &str) -> Result<OptState, LedgerError> {
        self.backend
            .state(proxy.to_owned(), participant.to_owned())
            .await
    }

    /// Notes that the confirmation reply for the latest change of (`scope`, `participant`)
    /// to `state` was handed to the platform at `at_ms` (Unix milliseconds): the history
    /// entry's `confirmed_at`, set once. The pipeline calls it after each STOP or START
    /// reply.
    ///
    /// # Errors
    ///
    /// [`LedgerError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger: proxy_optout_host::Ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?.into();
    /// ledger.confirmed("+1P", "+1A", proxy_optout::OptState::OptedOut, 1_700_000_000_000).await?;
    /// # Ok(()) }
    /// ```
    pub async fn confirmed(
        &self,
        scope: &str,
        participant: &str,
        state: OptState,
        at_ms: u64,
    ) -> Result<(), LedgerError> {
        self.backend
            .confirmed(scope.to_owned(), participant.to_owned(), state, at_ms)
            .await
    }

    /// Forgets processed message ids older than the stores' retention (three days, beyond
    /// Twilio's retry window). The pipeline runs it hourly.
    ///
    /// # Errors
    ///
    /// [`LedgerError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger: proxy_optout_host::Ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?.into();
    /// assert_eq!(ledger.purge_processed().await?, 0);
    /// # Ok(()) }
    /// ```
    pub async fn purge_processed(&self) -> Result<u64, LedgerError> {
        self.backend.purge().await
    }

    /// Finishes queued writes and lets go of the database: the SQLite file and its lock, or
    /// the PostgreSQL connections. Every later call fails.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger: proxy_optout_host::Ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?.into();
    /// ledger.close().await;
    /// assert!(ledger.ping().await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) {
        self.backend.close().await;
    }
}

/// The policy's answers inside the decision's job: STOP filtering from the host's policy;
/// the hook answered `Allow` here and asked for real after the job (`policy::intercept`),
/// since a web call cannot run on the database thread. `Some` for the questions it answers.
fn policy_answer<E>(policy: &dyn crate::Policy, step: &Step<'_>) -> Option<Answer<E>> {
    match step {
        Step::Filtering(number) => Some(Answer::Filtering(policy.stop_filtering(number))),
        Step::Intercept(_, _) => Some(Answer::Intercept(Intercept::Allow)),
        _ => None,
    }
}

/// The route of a routed message, for the relay.
fn route_of(route: Option<&SessionRoute>) -> Result<Option<proxy_optout::Route<'_>>, DecideError> {
    route
        .map(|r| {
            r.route().map_err(|e| {
                DecideError::Route(crate::routing::RoutingError::Invalid {
                    session: r.session().to_owned(),
                    reason: e.to_string(),
                })
            })
        })
        .transpose()
}
