//! The server's database: the opt-out ledger and processed message ids (the store crates) plus
//! the session tables this crate owns, on SQLite (one host) or PostgreSQL (several instances).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use proxy_optout::{AsyncOptOutStore, LedgerKey, OptOutStore, OptState, Participant};
use proxy_optout_postgres::PgStore;
use proxy_optout_sqlite::SqliteStore;

use crate::sessions::{
    proxy_for, FieldError, NewSession, RouteRow, Session, SessionParticipant, SessionStatus,
};

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

/// A database failure. The webhook answers 503 on every one, so the platform retries.
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
    /// A blocking database task panicked or was cancelled.
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

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
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

/// The processed-message claim for one webhook delivery.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
/// assert_eq!(db.begin(Some("SM1"), "+1A", "+1P").await?.0, proxy_relay::Claim::New);
/// assert_eq!(db.begin(Some("SM1"), "+1A", "+1P").await?.0, proxy_relay::Claim::InProgress);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// First delivery (or no message id): handle it.
    New,
    /// Another delivery is being handled now: answer 503.
    InProgress,
    /// Handled before: answer this TwiML again and perform nothing.
    Answered(String),
}

/// The server's database handle. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
/// db.ping().await?;
/// assert!(db.sqlite().is_some() && db.postgres().is_none());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Db(Inner);

#[derive(Clone, Debug)]
enum Inner {
    /// SQLite: one connection, held exclusively by this process, used only from the
    /// database thread. Ledger and session writes are synced (`synchronous=FULL`); a stored
    /// webhook answer is not (see [`sqlite`]), and in-flight message ids live in memory.
    Sqlite {
        /// The store (and its connection).
        ledger: SqliteStore,
        /// The thread every SQLite call of the server runs on.
        worker: Arc<worker::DbWorker>,
        /// Message ids being handled now, with when they were claimed.
        in_flight: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    },
    /// PostgreSQL: every commit is durable (the server's `synchronous_commit`).
    Postgres(PgStore),
}

fn on_error_now(e: DbError) {
    tracing::error!(error = %e, "could not queue the answer; a retry is handled again");
}

fn now_ms() -> i64 {
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

/// The route row of one lookup: the sender as asked, the other participant as stored.
fn route_row(
    session: String,
    from: &str,
    to: &str,
    other: Option<String>,
    other_proxy: Option<String>,
) -> Result<RouteRow, DbError> {
    Ok(RouteRow {
        sender: participant(&session, from, to)?,
        recipient: match (other, other_proxy) {
            (Some(o), Some(op)) => Some(participant(&session, &o, &op)?),
            _ => None,
        },
        session,
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

mod postgres;
mod sqlite;
mod worker;

impl Db {
    /// Opens (creating and migrating) the database.
    ///
    /// # Errors
    ///
    /// [`DbError`]: unreachable server, corrupt file, newer schema.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// db.ping().await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(database: &Database, pg_pool_size: usize) -> Result<Db, DbError> {
        match database {
            Database::Sqlite(path) => {
                let path = path.clone();
                let worker = Arc::new(worker::DbWorker::spawn()?);
                worker
                    .clone()
                    .run(move || sqlite::open(&path, worker))
                    .await
            }
            Database::Postgres(url) => postgres::open(url, pg_pool_size).await,
        }
    }

    /// Claims `message_id` (when there is one) and finds the session of (`from`, `to`), in one
    /// round trip where the database allows.
    ///
    /// # Errors
    ///
    /// [`DbError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// let (claim, route) = db.begin(Some("SM1"), "+1A", "+1P").await?;
    /// assert_eq!((claim, route), (proxy_relay::Claim::New, None)); // no session for (+1A, +1P)
    /// # Ok(()) }
    /// ```
    pub async fn begin(
        &self,
        message_id: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<(Claim, Option<RouteRow>), DbError> {
        match &self.0 {
            Inner::Sqlite { worker, .. } => {
                let (db, id, from, to) = (
                    self.clone(),
                    message_id.map(str::to_owned),
                    from.to_owned(),
                    to.to_owned(),
                );
                worker
                    .run(move || sqlite::begin(&db, id.as_deref(), &from, &to))
                    .await
            }
            Inner::Postgres(pg) => postgres::begin(pg, message_id, from, to).await,
        }
    }

    /// SQLite only: runs `f` on the database thread with this handle (for a caller that
    /// wants several calls in one trip). `None` on PostgreSQL.
    pub(crate) async fn on_sqlite_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> T + Send + 'static,
    ) -> Option<Result<T, DbError>> {
        match &self.0 {
            Inner::Sqlite { worker, .. } => {
                let db = self.clone();
                Some(worker.call(move || f(&db)).await)
            }
            Inner::Postgres(_) => None,
        }
    }

    /// SQLite only: [`begin`](Db::begin) on the calling thread (the database thread).
    pub(crate) fn begin_here(
        &self,
        message_id: Option<&str>,
        from: &str,
        to: &str,
    ) -> Option<Result<(Claim, Option<RouteRow>), DbError>> {
        match &self.0 {
            Inner::Sqlite { .. } => Some(sqlite::begin(self, message_id, from, to)),
            Inner::Postgres(_) => None,
        }
    }

    /// Stores the answer for a claimed message id without waiting for the write, where that
    /// is safe: on SQLite every call runs in order on one thread, so any delivery that
    /// arrives after this returns is looked up after the answer is stored. `on_error` runs
    /// (on the database thread) if the write fails. On PostgreSQL this waits, as
    /// [`complete`](Db::complete).
    pub(crate) async fn complete_in_order(
        &self,
        message_id: &str,
        answer: String,
        on_error: impl FnOnce(DbError) + Send + 'static,
    ) {
        match &self.0 {
            Inner::Sqlite { worker, .. } => {
                let (db, id) = (self.clone(), message_id.to_owned());
                let queued = worker.submit(move || {
                    if let Err(e) = sqlite::complete(&db, &id, &answer) {
                        on_error(e);
                    }
                });
                if let Err(e) = queued {
                    sqlite::release(self, message_id);
                    on_error_now(e);
                }
            }
            Inner::Postgres(_) => {
                if let Err(e) = self.complete(message_id, &answer).await {
                    on_error(e);
                }
            }
        }
    }

    /// Stores the answer for a claimed message id.
    ///
    /// # Errors
    ///
    /// [`DbError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// db.begin(Some("SM1"), "+1A", "+1P").await?;
    /// db.complete("SM1", "<Response/>").await?;
    /// assert_eq!(db.begin(Some("SM1"), "+1A", "+1P").await?.0, proxy_relay::Claim::Answered("<Response/>".into()));
    /// # Ok(()) }
    /// ```
    pub async fn complete(&self, message_id: &str, answer: &str) -> Result<(), DbError> {
        match &self.0 {
            Inner::Sqlite { worker, .. } => {
                let (db, id, answer) = (self.clone(), message_id.to_owned(), answer.to_owned());
                worker
                    .run(move || sqlite::complete(&db, &id, &answer))
                    .await
            }
            Inner::Postgres(pg) => Ok(pg.complete(message_id, answer).await?),
        }
    }

    /// Gives a claim back after a failure, so the platform's retry is handled in full.
    ///
    /// # Errors
    ///
    /// [`DbError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// db.begin(Some("SM1"), "+1A", "+1P").await?;
    /// db.release("SM1").await?;
    /// assert_eq!(db.begin(Some("SM1"), "+1A", "+1P").await?.0, proxy_relay::Claim::New);
    /// # Ok(()) }
    /// ```
    pub async fn release(&self, message_id: &str) -> Result<(), DbError> {
        match &self.0 {
            Inner::Sqlite { .. } => {
                sqlite::release(self, message_id);
                Ok(())
            }
            Inner::Postgres(pg) => Ok(pg.release(message_id).await?),
        }
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
        let sid = new_sid();
        match &self.0 {
            Inner::Sqlite { ledger, worker, .. } => {
                let (ledger, request, pool) = (ledger.clone(), request.clone(), pool.to_vec());
                worker
                    .run(move || Ok(sqlite::create(&ledger, &sid, &request, &pool)))
                    .await?
            }
            Inner::Postgres(pg) => postgres::create(pg, &sid, request, pool).await,
        }
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
        match &self.0 {
            Inner::Sqlite {
                ledger: fast,
                worker,
                ..
            } => {
                let (fast, sid) = (fast.clone(), sid.to_owned());
                worker.run(move || sqlite::session(&fast, &sid)).await
            }
            Inner::Postgres(pg) => postgres::session(pg, sid).await,
        }
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
        match &self.0 {
            Inner::Sqlite {
                ledger: fast,
                worker,
                ..
            } => {
                let fast = fast.clone();
                worker
                    .run(move || sqlite::sessions(&fast, status, limit))
                    .await
            }
            Inner::Postgres(pg) => postgres::sessions(pg, status, limit).await,
        }
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
    /// assert!(db.begin(None, "+1A", "+1P").await?.1.is_none()); // no longer routed
    /// # Ok(()) }
    /// ```
    pub async fn close_session(&self, sid: &str) -> Result<Option<Session>, DbError> {
        match &self.0 {
            Inner::Sqlite { ledger, worker, .. } => {
                let (ledger, sid) = (ledger.clone(), sid.to_owned());
                worker.run(move || sqlite::close(&ledger, &sid)).await
            }
            Inner::Postgres(pg) => postgres::close(pg, sid).await,
        }
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
        match &self.0 {
            Inner::Sqlite {
                ledger: fast,
                worker,
                ..
            } => {
                let fast = fast.clone();
                worker
                    .run(move || {
                        fast.with_connection(|c| {
                            c.query_row("SELECT count(*) FROM relay_sessions WHERE 0", [], |r| {
                                r.get::<_, i64>(0)
                            })
                        })?;
                        Ok(())
                    })
                    .await
            }
            Inner::Postgres(pg) => {
                let client = pg
                    .pool()
                    .get()
                    .await
                    .map_err(proxy_optout_postgres::StoreError::from)?;
                client.execute("SELECT 1", &[]).await?;
                Ok(())
            }
        }
    }

    /// Forgets processed message ids older than the retention period.
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
        match &self.0 {
            Inner::Sqlite {
                ledger: fast,
                worker,
                in_flight,
            } => {
                // In-flight entries of handlers that died (a panic, a crash of the task) are
                // stale after STALE_CLAIM; forget them so the map cannot grow without bound.
                in_flight
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .retain(|_, at| at.elapsed() < proxy_optout_sqlite::STALE_CLAIM);
                let fast = fast.clone();
                worker
                    .run(move || Ok(fast.purge_processed(proxy_optout_sqlite::RETENTION)? as u64))
                    .await
            }
            Inner::Postgres(pg) => Ok(pg.purge_processed(proxy_optout_postgres::RETENTION).await?),
        }
    }

    /// The SQLite store with durable commits, if this is SQLite (for tests and audits).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// assert!(db.sqlite().is_some());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn sqlite(&self) -> Option<&SqliteStore> {
        match &self.0 {
            Inner::Sqlite { ledger, .. } => Some(ledger),
            Inner::Postgres(_) => None,
        }
    }

    /// The PostgreSQL store, if this is PostgreSQL.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// assert!(db.postgres().is_none());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn postgres(&self) -> Option<&PgStore> {
        match &self.0 {
            Inner::Postgres(pg) => Some(pg),
            Inner::Sqlite { .. } => None,
        }
    }
}

impl AsyncOptOutStore for Db {
    type Error = DbError;

    fn record(
        &self,
        key: LedgerKey<'_>,
        state: OptState,
    ) -> impl Future<Output = Result<(), DbError>> + Send {
        let key = key.to_owned();
        let db = self.clone();
        async move {
            match &db.0 {
                Inner::Sqlite { ledger, worker, .. } => {
                    let ledger = ledger.clone();
                    worker
                        .run(move || Ok(OptOutStore::record(&ledger, key.as_key(), state)?))
                        .await
                }
                Inner::Postgres(pg) => Ok(AsyncOptOutStore::record(pg, key.as_key(), state).await?),
            }
        }
    }

    fn state(&self, key: LedgerKey<'_>) -> impl Future<Output = Result<OptState, DbError>> + Send {
        let key = key.to_owned();
        let db = self.clone();
        async move {
            match &db.0 {
                // Reads go through the durable connection too: it is the one that wrote.
                Inner::Sqlite { ledger, worker, .. } => {
                    let ledger = ledger.clone();
                    worker
                        .run(move || Ok(OptOutStore::state(&ledger, key.as_key())?))
                        .await
                }
                Inner::Postgres(pg) => Ok(AsyncOptOutStore::state(pg, key.as_key()).await?),
            }
        }
    }
}
