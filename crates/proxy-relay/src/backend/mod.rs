//! The server's database: the pipeline's [`Ledger`] (the opt-out ledger and the processed
//! message ids, from `proxy-optout-host`) and, beside it in the same file or database, the
//! session tables. [`Backend`] is what the server asks of the session tables: the route of a
//! (From, To) pair, which it gives the pipeline as its [`Routing`], and the admin calls.
//! SQLite (one host) and PostgreSQL (several instances) each implement it in one file;
//! nothing above this module knows which one it talks to.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use proxy_optout::{OptState, Participant};
use proxy_optout_host::{Ledger, LedgerError, Routing, RoutingError, SessionRoute};

use crate::sessions::{
    proxy_for, FieldError, NewSession, Session, SessionParticipant, SessionStatus,
};

mod postgres;
mod sqlite;

/// A boxed, `Send` future: the backend is used as `Arc<dyn Backend>`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The version of the session tables this build writes.
///
/// ```
/// assert_eq!(proxy_relay::SESSION_SCHEMA_VERSION, 1);
/// ```
pub const SESSION_SCHEMA_VERSION: i32 = 1;

/// The session tables, the same text on SQLite and PostgreSQL. The partial unique index is
/// what keeps a (participant, proxy number) pair in at most one open session, even when two
/// instances allocate at once.
///
/// ```
/// assert!(proxy_relay::SESSION_SCHEMA.contains("relay_participants_active_pair"));
/// ```
pub const SESSION_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS proxy_relay_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS relay_sessions (
    sid          TEXT    NOT NULL PRIMARY KEY,
    unique_name  TEXT    UNIQUE,
    status       TEXT    NOT NULL,            -- 'open' | 'closed'
    created_at   BIGINT  NOT NULL,            -- unix milliseconds
    closed_at    BIGINT
);
CREATE INDEX IF NOT EXISTS relay_sessions_by_age ON relay_sessions (created_at);
CREATE TABLE IF NOT EXISTS relay_participants (
    session_sid      TEXT    NOT NULL REFERENCES relay_sessions (sid),
    position         INTEGER NOT NULL,        -- 0 or 1, the order given at creation
    identifier       TEXT    NOT NULL,
    proxy_identifier TEXT    NOT NULL,
    friendly_name    TEXT,
    active           INTEGER NOT NULL,        -- 1 while the session is open
    PRIMARY KEY (session_sid, position)
);
CREATE UNIQUE INDEX IF NOT EXISTS relay_participants_active_pair
    ON relay_participants (identifier, proxy_identifier) WHERE active = 1;
";

/// The route of a (sender, proxy number) pair: its session, and the other participant if it
/// is still active. The same text on both databases but for the placeholders.
const ROUTE: &str = "SELECT p.session_sid, o.identifier, o.proxy_identifier
     FROM relay_participants p
     LEFT JOIN relay_participants o
       ON o.session_sid = p.session_sid AND o.active = 1 AND o.position <> p.position
     WHERE p.identifier = ?1 AND p.proxy_identifier = ?2 AND p.active = 1
     LIMIT 1";

/// Where the data lives.
///
/// ```
/// use proxy_relay::Database;
/// assert!(matches!(Database::parse("postgres://u@h/db"), Database::Postgres(_)));
/// assert!(matches!(Database::parse("relay.db"), Database::Sqlite(_)));
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file, created on first run.
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl Database {
    /// `postgres://…` or `postgresql://…` is PostgreSQL; `sqlite://path` or any other text is a
    /// SQLite file path.
    ///
    /// ```
    /// use proxy_relay::Database;
    /// assert_eq!(Database::parse("sqlite://x.db"), Database::Sqlite("x.db".into()));
    /// ```
    #[must_use]
    pub fn parse(value: &str) -> Database {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            Database::Postgres(value.to_owned())
        } else {
            Database::Sqlite(value.strip_prefix("sqlite://").unwrap_or(value).into())
        }
    }

    /// A description safe to log: the SQLite path, or the PostgreSQL URL without its password.
    ///
    /// ```
    /// use proxy_relay::Database;
    /// assert_eq!(Database::parse("postgres://u:secret@h/db").redacted(), "postgres://u:***@h/db");
    /// ```
    #[must_use]
    pub fn redacted(&self) -> String {
        match self {
            Database::Sqlite(p) => p.display().to_string(),
            Database::Postgres(url) => redact_url(url),
        }
    }
}

fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// A database failure.
///
/// ```
/// let e = proxy_relay::DbError::Task("cancelled".into());
/// assert_eq!(e.to_string(), "the database task did not finish: cancelled");
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The SQLite store failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] proxy_optout_sqlite::StoreError),
    /// The PostgreSQL store failed.
    #[error("postgres: {0}")]
    Postgres(#[from] proxy_optout_postgres::StoreError),
    /// The database thread could not run the call (it panicked, or the server is closing).
    #[error("the database task did not finish: {0}")]
    Task(String),
    /// The session tables were written by a newer build.
    #[error(
        "the session tables have version {found}, newer than the {supported} this build supports"
    )]
    SchemaTooNew {
        /// The stored version.
        found: i32,
        /// [`SESSION_SCHEMA_VERSION`].
        supported: i32,
    },
    /// A stored row this build cannot use (edited by hand).
    #[error("stored session {sid} is not valid: {reason}")]
    BadRow {
        /// The session.
        sid: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<LedgerError> for DbError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Sqlite(e) => DbError::Sqlite(e),
            LedgerError::Postgres(e) => DbError::Postgres(e),
            other => DbError::Task(other.to_string()),
        }
    }
}

impl From<proxy_optout_postgres::tokio_postgres::Error> for DbError {
    fn from(e: proxy_optout_postgres::tokio_postgres::Error) -> Self {
        DbError::Postgres(e.into())
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(proxy_optout_sqlite::StoreError::Sqlite(e))
    }
}

/// What an admin call can fail with.
///
/// ```
/// use proxy_relay::{AdminError, FieldError};
/// assert_eq!(AdminError::NotFound { sid: "KS1".into() }.status(), 404);
/// assert_eq!(AdminError::Invalid(FieldError::new("participants", "x")).status(), 400);
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request is malformed: 400.
    #[error(transparent)]
    Invalid(FieldError),
    /// The request conflicts with stored sessions (name taken, pool exhausted): 409.
    #[error(transparent)]
    Conflict(FieldError),
    /// No such session: 404.
    #[error("no session {sid}")]
    NotFound {
        /// The id asked for.
        sid: String,
    },
    /// The database failed: 503.
    #[error(transparent)]
    Store(#[from] DbError),
}

impl AdminError {
    /// The HTTP status for this error.
    ///
    /// ```
    /// # use proxy_relay::{AdminError, FieldError};
    /// assert_eq!(AdminError::Conflict(FieldError::new("unique_name", "taken")).status(), 409);
    /// ```
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            AdminError::Invalid(_) => 400,
            AdminError::Conflict(_) => 409,
            AdminError::NotFound { .. } => 404,
            AdminError::Store(_) => 503,
        }
    }
}

/// The database, as the server uses it. Implemented once per database; every method owns its
/// arguments, because the SQLite calls travel to the database thread.
pub(crate) trait Backend: Send + Sync + std::fmt::Debug {
    /// Runs a query that returns one integer (for audits and tests).
    fn scalar(&self, sql: String) -> BoxFuture<'_, Result<i64, DbError>>;

    /// Runs statements that return no rows (for maintenance and tests).
    fn execute(&self, sql: String) -> BoxFuture<'_, Result<(), DbError>>;

    /// Creates a session with id `sid`, giving each participant a proxy number from `pool`.
    fn create_session(
        &self,
        sid: String,
        request: NewSession,
        pool: Arc<[String]>,
    ) -> BoxFuture<'_, Result<Session, AdminError>>;

    /// One session by id.
    fn session(&self, sid: String) -> BoxFuture<'_, Result<Option<Session>, DbError>>;

    /// The newest sessions first.
    fn sessions(
        &self,
        status: Option<SessionStatus>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Session>, DbError>>;

    /// Closes a session (its pairs stop routing); `None` if there is none.
    fn close_session(&self, sid: String) -> BoxFuture<'_, Result<Option<Session>, DbError>>;
}

/// The server's database handle. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
/// db.ping().await?;
/// assert_eq!(db.kind(), "sqlite");
/// db.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Db {
    backend: Arc<dyn Backend>,
    ledger: Ledger,
    routing: Arc<dyn Routing>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (creating and migrating) the database. `pg_pool_size` is the most PostgreSQL
    /// connections this instance opens.
    ///
    /// # Errors
    ///
    /// [`DbError`]: unreachable server, corrupt or locked file, newer schema.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// db.ping().await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(database: &Database, pg_pool_size: usize) -> Result<Db, DbError> {
        Ok(match database {
            Database::Sqlite(path) => {
                let (backend, ledger, routing) = sqlite::SqliteBackend::open(path.clone()).await?;
                Db {
                    backend: Arc::new(backend),
                    ledger,
                    routing,
                }
            }
            Database::Postgres(url) => {
                let (backend, ledger, routing) =
                    postgres::PgBackend::open(url, pg_pool_size).await?;
                Db {
                    backend: Arc::new(backend),
                    ledger,
                    routing,
                }
            }
        })
    }

    /// The pipeline's ledger, in the same file or database.
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The pipeline's routing: the session tables, queried inside the ledger's decision job
    /// (on SQLite's database thread, or in PostgreSQL's one statement).
    pub(crate) fn routing(&self) -> Arc<dyn Routing> {
        self.routing.clone()
    }

    /// `sqlite` or `postgres`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// assert_eq!(db.kind(), "sqlite");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn kind(&self) -> &'static str {
        self.ledger.kind()
    }

    /// Whether the database answers (readiness).
    ///
    /// # Errors
    ///
    /// [`DbError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// db.ping().await?;
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<(), DbError> {
        Ok(self.ledger.ping().await?)
    }

    /// The ledger's state of `participant` on `proxy` (per-number scope).
    ///
    /// # Errors
    ///
    /// [`DbError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// assert_eq!(db.state("+1P", "+1A").await?, proxy_optout::OptState::OptedIn);
    /// # Ok(()) }
    /// ```
    pub async fn state(&self, proxy: &str, participant: &str) -> Result<OptState, DbError> {
        Ok(self.ledger.state(proxy, participant).await?)
    }

    /// Runs `sql`, a query returning one integer, on whichever database this is: for audits
    /// and tests (`SELECT count(*) FROM opt_out_ledger`).
    ///
    /// # Errors
    ///
    /// [`DbError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// assert_eq!(db.scalar("SELECT count(*) FROM relay_sessions").await?, 0);
    /// # Ok(()) }
    /// ```
    pub async fn scalar(&self, sql: &str) -> Result<i64, DbError> {
        self.backend.scalar(sql.to_owned()).await
    }

    /// Runs `sql`, statements that return no rows (maintenance, or a test that takes a table
    /// away), on whichever database this is.
    ///
    /// # Errors
    ///
    /// [`DbError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// db.execute("DELETE FROM processed_messages").await?;
    /// # Ok(()) }
    /// ```
    pub async fn execute(&self, sql: &str) -> Result<(), DbError> {
        self.backend.execute(sql.to_owned()).await
    }

    /// Forgets processed message ids older than the retention period (three days).
    ///
    /// # Errors
    ///
    /// [`DbError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// assert_eq!(db.purge_processed().await?, 0);
    /// # Ok(()) }
    /// ```
    pub async fn purge_processed(&self) -> Result<u64, DbError> {
        Ok(self.ledger.purge_processed().await?)
    }

    /// Creates a session, giving each participant a proxy number from `pool`.
    ///
    /// # Errors
    ///
    /// [`AdminError`]: invalid request (400), name taken or pool exhausted (409), store (503).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// let req = serde_json::from_str(r#"{"participants": [{"identifier": "+1A"}, {"identifier": "+1B"}]}"#)?;
    /// let s = db.create_session(&req, &["+1P".into()]).await?;
    /// assert_eq!(s.participants[0].proxy_identifier, "+1P");
    /// # Ok(()) }
    /// ```
    pub async fn create_session(
        &self,
        request: &NewSession,
        pool: &[String],
    ) -> Result<Session, AdminError> {
        request.validate(pool).map_err(AdminError::Invalid)?;
        self.backend
            .create_session(new_sid(), request.clone(), pool.into())
            .await
    }

    /// One session by id.
    ///
    /// # Errors
    ///
    /// [`DbError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// assert!(db.session("KSnone").await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn session(&self, sid: &str) -> Result<Option<Session>, DbError> {
        self.backend.session(sid.to_owned()).await
    }

    /// The newest sessions first, at most `limit`, optionally only those with `status`.
    ///
    /// # Errors
    ///
    /// [`DbError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// let req = serde_json::from_str(r#"{"participants": [{"identifier": "+1A"}, {"identifier": "+1B"}]}"#)?;
    /// db.create_session(&req, &["+1P".into()]).await?;
    /// let open = db.sessions(Some(proxy_relay::SessionStatus::Open), 10).await?;
    /// assert_eq!(open.len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn sessions(
        &self,
        status: Option<SessionStatus>,
        limit: u32,
    ) -> Result<Vec<Session>, DbError> {
        self.backend.sessions(status, limit).await
    }

    /// Closes a session: its pairs leave the routing table at once. Closing a closed session
    /// changes nothing. `None` if there is no such session.
    ///
    /// # Errors
    ///
    /// [`DbError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// let req = serde_json::from_str(r#"{"participants": [{"identifier": "+1A"}, {"identifier": "+1B"}]}"#)?;
    /// let s = db.create_session(&req, &["+1P".into()]).await?;
    /// let closed = db.close_session(&s.sid).await?.unwrap();
    /// assert_eq!(closed.status, proxy_relay::SessionStatus::Closed);
    /// # Ok(()) }
    /// ```
    pub async fn close_session(&self, sid: &str) -> Result<Option<Session>, DbError> {
        self.backend.close_session(sid.to_owned()).await
    }

    /// Finishes queued writes and lets go of the database: the SQLite file and its lock, or
    /// the PostgreSQL connections. Every later call fails.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("r.db");
    /// let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(path.clone()), 4).await?;
    /// db.close().await;
    /// assert!(db.ping().await.is_err());
    /// // The file is free again at once.
    /// proxy_relay::Db::open(&proxy_relay::Database::Sqlite(path), 4).await?.close().await;
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) {
        self.ledger.close().await;
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn new_sid() -> String {
    format!("KS{}", uuid::Uuid::new_v4().simple())
}

/// Picks the proxy number for `identifier`: the requested one if free, else the first pool
/// number not already paired with this identifier in an open session.
fn pick_proxy(
    index: usize,
    identifier: &str,
    requested: Option<&str>,
    pool: &[String],
    used: &[String],
) -> Result<String, AdminError> {
    if let Some(req) = requested {
        let proxy = proxy_for(identifier, crate::sessions::strip_channel(req));
        if used.contains(&proxy) {
            return Err(AdminError::Conflict(FieldError::new(
                format!("participants[{index}].proxy_identifier"),
                format!("{identifier:?} already has an open session through {proxy:?}"),
            )));
        }
        return Ok(proxy);
    }
    pool.iter()
        .map(|n| proxy_for(identifier, n))
        .find(|p| !used.contains(p))
        .ok_or_else(|| {
            AdminError::Conflict(FieldError::new(
                format!("participants[{index}].identifier"),
                format!(
                    "every proxy number in the pool ({}) already has an open session with {identifier:?}",
                    pool.len()
                ),
            ))
        })
}

fn participant(sid: &str, identifier: &str, proxy: &str) -> Result<Participant, DbError> {
    Participant::new(identifier, proxy).map_err(|e| DbError::BadRow {
        sid: sid.to_owned(),
        reason: e.to_string(),
    })
}

/// The route of one lookup: the sender as asked, the other participant as stored. A row
/// the relay cannot use is a [`DbError::BadRow`].
fn route_row(
    session: String,
    from: &str,
    to: &str,
    other: Option<String>,
    other_proxy: Option<String>,
) -> Result<SessionRoute, DbError> {
    let recipient = match (other, other_proxy) {
        (Some(o), Some(op)) => Some(participant(&session, &o, &op)?),
        _ => None,
    };
    let sender = participant(&session, from, to)?;
    SessionRoute::from_participants(session.clone(), sender, recipient).map_err(|e| {
        DbError::BadRow {
            sid: session,
            reason: e.to_string(),
        }
    })
}

fn status_of(sid: &str, value: &str) -> Result<SessionStatus, DbError> {
    SessionStatus::parse(value).ok_or_else(|| DbError::BadRow {
        sid: sid.to_owned(),
        reason: format!("unknown status {value:?}"),
    })
}

type SessionHead = (String, Option<String>, String, i64, Option<i64>);

fn assemble(head: SessionHead, participants: Vec<SessionParticipant>) -> Result<Session, DbError> {
    let (sid, unique_name, status, created_at_ms, closed_at_ms) = head;
    Ok(Session {
        status: status_of(&sid, &status)?,
        sid,
        unique_name,
        created_at_ms,
        closed_at_ms,
        participants,
    })
}

/// A route lookup's failure, as the pipeline's routing reports it: a row this build cannot
/// use is the host's bug (500), any other failure the database's (the message is journaled).
fn routing_error(e: DbError) -> RoutingError {
    match e {
        DbError::BadRow { sid, reason } => RoutingError::Invalid {
            session: sid,
            reason,
        },
        other => RoutingError::unavailable(other),
    }
}
