//! The server's database: the pipeline's [`Ledger`] (the opt-out ledger and the processed
//! message ids, from `proxy-optout-host`) and, beside it in the same file or database, the
//! Proxy API's tables (services, numbers, sessions, participants, interactions). The tables'
//! operations are written once over [`sql::Tx`]; the two files here only open the database,
//! migrate, and hand the pipeline its co-located routing.

use std::path::PathBuf;
use std::sync::Arc;

use proxy_optout::{OptState, Participant};
use proxy_optout_host::{Ledger, LedgerError, Routing, RoutingError, SessionRoute};

mod postgres;
pub(crate) mod sql;
mod sqlite;

use sql::Sql;

/// The version of the session tables this build writes.
///
/// ```
/// assert_eq!(proxy_relay::SESSION_SCHEMA_VERSION, 3);
/// ```
pub const SESSION_SCHEMA_VERSION: i32 = crate::proxy::VERSION as i32;

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
    sql: Arc<Sql>,
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
                let (sql, ledger, routing) = sqlite::open(path.clone()).await?;
                Db {
                    sql: Arc::new(sql),
                    ledger,
                    routing,
                }
            }
            Database::Postgres(url) => {
                let (sql, ledger, routing) = postgres::open(url, pg_pool_size).await?;
                Db {
                    sql: Arc::new(sql),
                    ledger,
                    routing,
                }
            }
        })
    }

    /// Where the Proxy API's operations run.
    pub(crate) fn sql(&self) -> Arc<Sql> {
        self.sql.clone()
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
    /// assert_eq!(db.scalar("SELECT count(*) FROM proxy_sessions").await?, 0);
    /// # Ok(()) }
    /// ```
    pub async fn scalar(&self, sql: &str) -> Result<i64, DbError> {
        let sql = sql.to_owned();
        self.sql
            .run(move |tx| {
                tx.row(&sql, &[])?
                    .and_then(|r| r.first().and_then(sql::Val::int))
                    .ok_or_else(|| DbError::Task(format!("{sql:?} returned no integer")))
            })
            .await
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
        let sql = sql.to_owned();
        self.sql
            .run(move |tx| {
                // As queries: a PRAGMA answers with a row even when it sets something.
                for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    tx.query(statement, &[])?;
                }
                Ok(())
            })
            .await
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

    /// Applies the opt-out history's retention: deletes entries recorded before
    /// `history_before` except the one behind each current opt-out, and clears the text of
    /// entries recorded before `texts_before` (Unix milliseconds; `None`: nothing). Returns
    /// (entries deleted, texts cleared).
    ///
    /// # Errors
    ///
    /// [`DbError`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = proxy_relay::Db::open(&proxy_relay::Database::Sqlite(dir.path().join("r.db")), 4).await?;
    /// assert_eq!(db.purge_history(Some(u64::MAX), Some(u64::MAX)).await?, (0, 0));
    /// # Ok(()) }
    /// ```
    pub async fn purge_history(
        &self,
        history_before: Option<u64>,
        texts_before: Option<u64>,
    ) -> Result<(u64, u64), DbError> {
        // SQLite keeps Unix milliseconds, PostgreSQL timestamps.
        let at = match &*self.sql {
            sql::Sql::Sqlite(_) => "?1",
            sql::Sql::Postgres(_) => "to_timestamp(?1::bigint / 1000.0)",
        };
        let delete = format!(
            "DELETE FROM opt_out_history WHERE recorded_at < {at}
               AND seq NOT IN (SELECT history_seq FROM opt_out_ledger
                               WHERE state = 'opted_out' AND history_seq IS NOT NULL)"
        );
        let clear = format!(
            "UPDATE opt_out_history SET body = NULL WHERE recorded_at < {at} AND body IS NOT NULL"
        );
        // Year 9999 at the latest: PostgreSQL's timestamps end there.
        let ms = |t: Option<u64>| t.map(|t| sql::Val::from(t.min(253_402_300_799_999) as i64));
        let (history, texts) = (ms(history_before), ms(texts_before));
        self.sql
            .run(move |tx| {
                let deleted = match history {
                    Some(t) => tx.execute(&delete, &[t])?,
                    None => 0,
                };
                let cleared = match texts {
                    Some(t) => tx.execute(&clear, &[t])?,
                    None => 0,
                };
                Ok((deleted, cleared))
            })
            .await
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
