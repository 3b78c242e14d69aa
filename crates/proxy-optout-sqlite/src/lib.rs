//! An opt-out ledger for [`proxy_optout`] on SQLite: the embedded default for a single relay
//! host. One file; WAL; `synchronous=FULL`, so a write the store acknowledged survives a crash
//! or a power loss; a busy timeout; versioned migrations that refuse a database written by a
//! newer schema; and a table of processed message ids that makes webhook redelivery harmless.
//!
//! ```
//! use proxy_optout::{Inbound, LedgerKey, OptOutStore, OptState, Relay};
//! use proxy_optout_sqlite::SqliteStore;
//!
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("ledger.db"))?;
//! let relay = Relay::new(store.clone());
//! relay.handle(&Inbound::sms("+15551110001", "+15550000100", "STOP"))?;
//! assert_eq!(store.state(LedgerKey::new("+15550000100", "+15551110001"))?, OptState::OptedOut);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proxy_optout::{Change, ChangeSource, LedgerKey, OptOutStore, OptState};

mod atomic;
mod history;
pub use history::SCHEMA_V4;
// The driver this crate's API shows (`with_connection`, `StoreError`'s sources), so a host uses
// exactly the version the store was built with.
pub use rusqlite;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use atomic::Atomic;

/// The schema version this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 4;

/// The schema, version 1.
pub const SCHEMA: &str = "
CREATE TABLE opt_out_ledger (
    scope       TEXT    NOT NULL,  -- the proxy number, or a service id (LedgerScope::Service)
    participant TEXT    NOT NULL,  -- the participant's own number or address
    state       TEXT    NOT NULL,  -- 'opted_in' | 'opted_out'; anything else reads as an error
    updated_at  INTEGER NOT NULL,  -- unix milliseconds of the last write
    PRIMARY KEY (scope, participant)
) WITHOUT ROWID;
CREATE TABLE processed_messages (
    message_id   TEXT    NOT NULL PRIMARY KEY,  -- the provider's id (Twilio MessageSid)
    answer       TEXT,                           -- the answer given; NULL while in progress
    processed_at INTEGER NOT NULL                -- unix milliseconds of the claim
) WITHOUT ROWID;
CREATE INDEX processed_messages_by_age ON processed_messages (processed_at);
";

/// Schema version 2: one row that [`SqliteStore::sync`] rewrites with a synced commit.
pub const SCHEMA_V2: &str = "
CREATE TABLE proxy_optout_sync (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
);
";

/// Schema version 3: the messaging bindings of Conversations participants (feature
/// `conversations`: `SqliteStore` is then a `proxy_optout_twilio::BindingStore`).
pub const SCHEMA_V3: &str = "
CREATE TABLE conversation_bindings (
    conversation_sid TEXT NOT NULL,
    participant_sid  TEXT NOT NULL,
    address          TEXT NOT NULL,
    proxy_address    TEXT,
    kind             TEXT,
    PRIMARY KEY (conversation_sid, participant_sid)
) WITHOUT ROWID;
";

/// What went wrong, typed so a host can answer (503 so the platform retries, an alert for an
/// operator). The relay fails closed on every one. New variants may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout_sqlite::{SqliteStore, StoreError};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("not-a-database");
/// std::fs::write(&path, b"this is not SQLite, just some bytes that are long enough to matter")?;
/// assert!(matches!(SqliteStore::open(&path), Err(StoreError::Corrupt { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file was written by a newer schema; it is never rewritten.
    #[error("{path} has schema version {found}, newer than the {supported} this build supports")]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: u32,
        /// [`SCHEMA_VERSION`].
        supported: u32,
    },
    /// The file is not a SQLite database, or is damaged.
    #[error("{path} is corrupt or not a SQLite database: {source}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Another connection held the lock past the busy timeout.
    #[error("the database is locked past the busy timeout: {0}")]
    Busy(#[source] rusqlite::Error),
    /// The file or its directory is read-only.
    #[error("the database is read-only: {0}")]
    ReadOnly(#[source] rusqlite::Error),
    /// The disk (or the configured page limit) is full.
    #[error("the database or disk is full: {0}")]
    Full(#[source] rusqlite::Error),
    /// Any other SQLite or I/O error.
    #[error("sqlite: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// A stored state this build does not recognise (written by hand, or by a newer build).
    #[error("the stored state {value:?} for ({scope}, {participant}) is not one this build knows")]
    UnrecognisedState {
        /// The scope.
        scope: String,
        /// The participant.
        participant: String,
        /// The stored value.
        value: String,
    },
    /// A history entry holds a value this build does not recognise.
    #[error("history entry {seq} has {column} {value:?}, which this build does not know")]
    UnrecognisedHistory {
        /// The entry's sequence number.
        seq: i64,
        /// The column.
        column: &'static str,
        /// The stored value.
        value: String,
    },
    /// The blocking task running the query panicked or was cancelled.
    #[error("the database task did not finish: {0}")]
    Task(String),
    /// The [`Options`] cannot work together (the message names them).
    #[error("invalid options: {0}")]
    Config(&'static str),
}

impl StoreError {
    fn from_sqlite(path: &Path, e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy(e),
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly(e),
            Some(ErrorCode::DiskFull) => StoreError::Full(e),
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
                path: path.to_owned(),
                source: e,
            },
            _ => StoreError::Sqlite(e),
        }
    }
}

/// How an acknowledged write reaches the disk.
///
/// # Example
///
/// ```
/// assert_eq!(proxy_optout_sqlite::Durability::default(), proxy_optout_sqlite::Durability::Full);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: every commit is synced before it is acknowledged, so an
    /// acknowledged opt-out survives power loss. The only setting for production.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit may be lost on power loss (not on a process crash). For
    /// the benchmark's labelled comparison, and for throwaway databases.
    Normal,
}

/// Options for [`SqliteStore::open_with`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// let o = proxy_optout_sqlite::Options::default().busy_timeout(Duration::from_secs(1));
/// # let _ = o;
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    busy_timeout: Duration,
    durability: Durability,
    answer_durability: Durability,
    max_pages: Option<u32>,
    exclusive: bool,
    claims: Claims,
    keep_texts: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            busy_timeout: Duration::from_secs(5),
            durability: Durability::Full,
            answer_durability: Durability::Full,
            max_pages: None,
            exclusive: false,
            claims: Claims::Table,
            keep_texts: true,
        }
    }
}

/// Where [`SqliteStore::claim`] keeps a delivery that is being handled right now.
///
/// # Example
///
/// ```
/// assert_eq!(proxy_optout_sqlite::Claims::default(), proxy_optout_sqlite::Claims::Table);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Claims {
    /// A row in `processed_messages` with no answer yet, visible to every connection: a claim
    /// survives a crash and goes stale after [`STALE_CLAIM`].
    #[default]
    Table,
    /// A map in this store's memory; only the answer is written. Saves a synced write per
    /// message. A crash forgets the claim, so the platform's retry is handled again, as once a
    /// stored claim goes stale. Needs [`Options::exclusive`]: no other process can see it.
    Memory,
}

impl Options {
    /// Whether history entries keep the text as received (default: yes). Off, an entry keeps
    /// the keyword, the message id and the times, never the message text: for a host whose
    /// policy is not to store message contents.
    ///
    /// ```
    /// let o = proxy_optout_sqlite::Options::default().keep_texts(false);
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn keep_texts(mut self, keep: bool) -> Self {
        self.keep_texts = keep;
        self
    }

    /// How long a write waits for another connection's lock before [`StoreError::Busy`]
    /// (default 5 s: well inside Twilio's 15 s webhook timeout).
    ///
    /// ```
    /// let o = proxy_optout_sqlite::Options::default().busy_timeout(std::time::Duration::ZERO);
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// The durability setting (default [`Durability::Full`]).
    ///
    /// ```
    /// let o = proxy_optout_sqlite::Options::default().durability(proxy_optout_sqlite::Durability::Normal);
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// A cap on the database's size in pages (`max_page_count`): past it writes fail with
    /// [`StoreError::Full`], as on a full disk.
    ///
    /// ```
    /// let o = proxy_optout_sqlite::Options::default().max_pages(100_000);
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn max_pages(mut self, pages: u32) -> Self {
        self.max_pages = Some(pages);
        self
    }

    /// Holds the file's lock for as long as the store is open (`locking_mode=EXCLUSIVE`,
    /// set before WAL is entered, so the WAL index lives in this process's memory). Each
    /// transaction then skips the file-lock system calls; another connection or process
    /// opening the file gets [`StoreError::Busy`] until this store is dropped. For a host that
    /// is the file's only user and keeps one store (clones share it).
    ///
    /// ```
    /// use proxy_optout_sqlite::{Options, SqliteStore, StoreError};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("l.db");
    /// let fast = std::time::Duration::ZERO;
    /// let store = SqliteStore::open_with(&path, Options::default().exclusive(true))?;
    /// let other = SqliteStore::open_with(&path, Options::default().busy_timeout(fast));
    /// assert!(matches!(other, Err(StoreError::Busy(_))));
    /// drop(store);
    /// assert!(SqliteStore::open(&path).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.exclusive = exclusive;
        self
    }

    /// Where claims in progress are kept (default [`Claims::Table`]).
    /// [`Claims::Memory`] needs [`exclusive(true)`](Options::exclusive).
    ///
    /// ```
    /// use proxy_optout_sqlite::{Claims, Options, SqliteStore, StoreError};
    /// let dir = tempfile::tempdir()?;
    /// let shared = Options::default().claims(Claims::Memory);
    /// assert!(matches!(SqliteStore::open_with(dir.path().join("a.db"), shared), Err(StoreError::Config(_))));
    /// let store = SqliteStore::open_with(dir.path().join("b.db"), Options::default().exclusive(true).claims(Claims::Memory))?;
    /// assert_eq!(store.claim("SM1")?, proxy_optout_sqlite::Claim::New);
    /// assert_eq!(store.claim("SM1")?, proxy_optout_sqlite::Claim::InProgress);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn claims(mut self, claims: Claims) -> Self {
        self.claims = claims;
        self
    }

    /// How [`complete`](SqliteStore::complete) writes a stored answer (default
    /// [`Durability::Full`]). [`Durability::Normal`] keeps it through a process crash (it is in
    /// the WAL) but a power cut may lose it; the platform's retry is then handled again, and
    /// the ledger writes it caused were synced. Ledger writes keep [`Options::durability`].
    ///
    /// ```
    /// let o = proxy_optout_sqlite::Options::default().answer_durability(proxy_optout_sqlite::Durability::Normal);
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn answer_durability(mut self, durability: Durability) -> Self {
        self.answer_durability = durability;
        self
    }
}

/// The answer to [`SqliteStore::claim`]: whether this delivery of a message id is the first.
///
/// # Example
///
/// ```
/// use proxy_optout_sqlite::{Claim, SqliteStore};
/// let dir = tempfile::tempdir()?;
/// let store = SqliteStore::open(dir.path().join("l.db"))?;
/// assert_eq!(store.claim("SM1")?, Claim::New);
/// assert_eq!(store.claim("SM1")?, Claim::InProgress);
/// store.complete("SM1", "<Response/>")?;
/// assert_eq!(store.claim("SM1")?, Claim::Answered("<Response/>".into()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// First delivery: handle it, then [`complete`](SqliteStore::complete) it (or
    /// [`release`](SqliteStore::release) it if handling failed).
    New,
    /// A claim left unanswered past the staleness limit (a handler that crashed or hung) was
    /// taken over: handle it, but what it sent before may have gone out, so ask the provider
    /// before sending again.
    TakenOver,
    /// Another delivery is being handled right now: answer 503 and let the platform retry.
    InProgress,
    /// Already handled: answer this again and perform nothing.
    Answered(String),
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// With [`Claims::Memory`]: message ids being handled now, and since when.
    in_flight: Option<Mutex<HashMap<String, Instant>>>,
    /// Whether `complete` lowers `synchronous` for its write (the answer is not synced).
    lazy_answers: bool,
    /// Whether commits are synced (`Durability::Full`).
    full: bool,
    /// Whether history entries keep message texts.
    keep_texts: bool,
}

/// The SQLite opt-out store. Cheap to clone (shared connection); `Send + Sync`.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn parse_state(scope: &str, participant: &str, value: &str) -> Result<OptState, StoreError> {
    // Exactly the names the core writes (`OptState::as_str`): a stored value in another case
    // was not written by us either, so it is refused like any unknown value.
    match value.parse::<OptState>() {
        Ok(state) if state.as_str() == value => Ok(state),
        _ => Err(StoreError::UnrecognisedState {
            scope: scope.to_owned(),
            participant: participant.to_owned(),
            value: value.to_owned(),
        }),
    }
}

impl SqliteStore {
    /// Opens (creating it on first use) the ledger at `path` with the default [`Options`].
    ///
    /// # Errors
    ///
    /// [`StoreError`]: corrupt file, newer schema, read-only directory, locked.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = proxy_optout_sqlite::SqliteStore::open(dir.path().join("ledger.db"))?;
    /// # let _ = store;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        SqliteStore::open_with(path, Options::default())
    }

    /// Opens the ledger with `options`.
    ///
    /// # Errors
    ///
    /// As [`open`](SqliteStore::open).
    ///
    /// ```
    /// use proxy_optout_sqlite::{Options, SqliteStore};
    /// let dir = tempfile::tempdir()?;
    /// let store = SqliteStore::open_with(dir.path().join("l.db"), Options::default())?;
    /// # let _ = store;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_with(path: impl AsRef<Path>, options: Options) -> Result<Self, StoreError> {
        if options.claims == Claims::Memory && !options.exclusive {
            return Err(StoreError::Config(
                "claims in memory need exclusive(true): another process could not see them",
            ));
        }
        let path = path.as_ref().to_owned();
        let err = |e| StoreError::from_sqlite(&path, e);
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(options.busy_timeout).map_err(err)?;
        if options.exclusive {
            conn.pragma_update_and_check(None, "locking_mode", "EXCLUSIVE", |r| {
                r.get::<_, String>(0)
            })
            .map_err(err)?;
        }
        // Reading the header first turns a file that is not a database into `Corrupt`.
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                path,
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(err)?;
        let sync = match options.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync).map_err(err)?;
        if let Some(pages) = options.max_pages {
            conn.pragma_update(None, "max_page_count", pages)
                .map_err(err)?;
        }
        let mut conn = conn;
        if version < SCHEMA_VERSION {
            migrate(&mut conn, version).map_err(err)?;
        }
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
                in_flight: (options.claims == Claims::Memory).then(Mutex::default),
                lazy_answers: options.answer_durability == Durability::Normal
                    && options.durability == Durability::Full,
                full: options.durability == Durability::Full,
                keep_texts: options.keep_texts,
            }),
        })
    }

    /// The database file.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = proxy_optout_sqlite::SqliteStore::open(dir.path().join("l.db"))?;
    /// assert!(store.path().ends_with("l.db"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done SQLite transaction behind:
        // SQLite rolls back an unfinished one.
        self.inner
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::from_sqlite(&self.inner.path, e)
    }

    fn record_now(&self, key: LedgerKey<'_>, state: OptState) -> Result<(), StoreError> {
        self.append_now(&Change::new(key, state, ChangeSource::Unspecified))
    }

    fn state_now(&self, key: LedgerKey<'_>) -> Result<OptState, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT state FROM opt_out_ledger WHERE scope = ?1 AND participant = ?2",
            )
            .map_err(|e| self.err(e))?;
        let value: Option<String> = stmt
            .query_row(params![key.scope(), key.participant()], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        match value {
            None => Ok(OptState::OptedIn),
            Some(v) => parse_state(key.scope(), key.participant(), &v),
        }
    }

    /// Claims a message id for handling, so a redelivered webhook is harmless: the first delivery gets
    /// [`Claim::New`]; a concurrent one [`Claim::InProgress`]; a later one the stored answer.
    /// A claim left in progress for longer than `stale_after` (a crashed handler) may be taken
    /// again, so the message is not lost.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    ///
    /// ```
    /// use proxy_optout_sqlite::{Claim, SqliteStore};
    /// let dir = tempfile::tempdir()?;
    /// let store = SqliteStore::open(dir.path().join("l.db"))?;
    /// assert_eq!(store.claim("SM1")?, Claim::New);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn claim(&self, message_id: &str) -> Result<Claim, StoreError> {
        self.claim_with(message_id, STALE_CLAIM)
    }

    /// [`claim`](SqliteStore::claim) with another staleness limit.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use proxy_optout_sqlite::{Claim, SqliteStore};
    /// let dir = tempfile::tempdir()?;
    /// let store = SqliteStore::open(dir.path().join("l.db"))?;
    /// assert_eq!(store.claim("SM1")?, Claim::New);
    /// assert_eq!(store.claim_with("SM1", Duration::ZERO)?, Claim::TakenOver);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn claim_with(&self, message_id: &str, stale_after: Duration) -> Result<Claim, StoreError> {
        if let Some(in_flight) = &self.inner.in_flight {
            return self.claim_in_memory(in_flight, message_id, stale_after);
        }
        let now = now_ms();
        let stale = now - i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
        let mut conn = self.conn();
        let tx = Atomic::begin_one_write(&mut conn, TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        // Cached statements: a claim runs once per webhook, so parsing its SQL each time
        // showed up in the relay server's profile.
        let existing: Option<(Option<String>, i64)> = tx
            .prepare_cached(
                "SELECT answer, processed_at FROM processed_messages WHERE message_id = ?1",
            )
            .and_then(|mut st| {
                st.query_row(params![message_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| self.err(e))?;
        let claim = match existing {
            Some((Some(answer), _)) => Claim::Answered(answer),
            Some((None, at)) if at > stale => Claim::InProgress,
            Some((None, _)) | None => {
                let taken_over = existing.is_some();
                tx.prepare_cached(
                    "INSERT INTO processed_messages (message_id, answer, processed_at)
                     VALUES (?1, NULL, ?2)
                     ON CONFLICT (message_id) DO UPDATE SET processed_at = excluded.processed_at",
                )
                .and_then(|mut st| st.execute(params![message_id, now]))
                .map_err(|e| self.err(e))?;
                if taken_over {
                    Claim::TakenOver
                } else {
                    Claim::New
                }
            }
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(claim)
    }

    fn claim_in_memory(
        &self,
        in_flight: &Mutex<HashMap<String, Instant>>,
        message_id: &str,
        stale_after: Duration,
    ) -> Result<Claim, StoreError> {
        let answer: Option<Option<String>> = self
            .conn()
            .prepare_cached("SELECT answer FROM processed_messages WHERE message_id = ?1")
            .and_then(|mut st| st.query_row(params![message_id], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        if let Some(Some(answer)) = answer {
            return Ok(Claim::Answered(answer));
        }
        let mut map = lock(in_flight);
        let now = Instant::now();
        match map.insert(message_id.to_owned(), now) {
            Some(at) if now.duration_since(at) < stale_after => {
                map.insert(message_id.to_owned(), at);
                Ok(Claim::InProgress)
            }
            Some(_) => Ok(Claim::TakenOver),
            None => Ok(Claim::New),
        }
    }

    /// Stores the answer given for a claimed message id; later deliveries get it back.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    ///
    /// ```
    /// # use proxy_optout_sqlite::SqliteStore;
    /// # let dir = tempfile::tempdir()?;
    /// # let store = SqliteStore::open(dir.path().join("l.db"))?;
    /// store.claim("SM1")?;
    /// store.complete("SM1", "<Response/>")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn complete(&self, message_id: &str, answer: &str) -> Result<(), StoreError> {
        self.complete_many(&[(message_id, answer)])
    }

    /// Stores the answers of many claimed ids in one transaction: a host that completes
    /// messages in groups pays one commit for all of them. An id given twice keeps its last
    /// answer.
    ///
    /// # Errors
    ///
    /// [`StoreError`]: then none of them is stored.
    ///
    /// ```
    /// # use proxy_optout_sqlite::SqliteStore;
    /// # let dir = tempfile::tempdir()?;
    /// # let store = SqliteStore::open(dir.path().join("l.db"))?;
    /// store.claim("SM1")?;
    /// store.claim("SM2")?;
    /// store.complete_many(&[("SM1", "<Response/>"), ("SM2", "<Response/>")])?;
    /// assert_eq!(store.claim("SM2")?, proxy_optout_sqlite::Claim::Answered("<Response/>".into()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn complete_many(&self, answers: &[(&str, &str)]) -> Result<(), StoreError> {
        if answers.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        // Inside a caller's transaction the caller's commit decides how it is synced (and
        // SQLite refuses to change `synchronous` there).
        let lazy = self.inner.lazy_answers && conn.is_autocommit();
        let written = (|| {
            if lazy {
                conn.prepare_cached("PRAGMA synchronous = NORMAL")?
                    .execute([])?;
            }
            let written = (|| {
                let tx = Atomic::begin(&mut conn, TransactionBehavior::Deferred)?;
                {
                    // An upsert: with claims in memory there is no row yet.
                    let mut st = tx.prepare_cached(
                        "INSERT INTO processed_messages (message_id, answer, processed_at)
                         VALUES (?1, ?2, ?3)
                         ON CONFLICT (message_id) DO UPDATE SET answer = excluded.answer",
                    )?;
                    let now = now_ms();
                    for (id, answer) in answers {
                        st.execute(params![id, answer, now])?;
                    }
                }
                tx.commit()
            })();
            if lazy {
                // Back to FULL whatever happened: every other write on this connection is synced.
                conn.prepare_cached("PRAGMA synchronous = FULL")?
                    .execute([])?;
            }
            written
        })();
        drop(conn);
        if let Some(in_flight) = &self.inner.in_flight {
            let mut map = lock(in_flight);
            for (id, _) in answers {
                map.remove(*id);
            }
        }
        written.map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Gives a claim back after handling failed (a store error answered with 503), so the
    /// platform's retry is handled in full.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    ///
    /// ```
    /// # use proxy_optout_sqlite::{Claim, SqliteStore};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = SqliteStore::open(dir.path().join("l.db"))?;
    /// store.claim("SM1")?;
    /// store.release("SM1")?;
    /// assert_eq!(store.claim("SM1")?, Claim::New);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn release(&self, message_id: &str) -> Result<(), StoreError> {
        if let Some(in_flight) = &self.inner.in_flight {
            lock(in_flight).remove(message_id);
            return Ok(());
        }
        self.conn()
            .execute(
                "DELETE FROM processed_messages WHERE message_id = ?1 AND answer IS NULL",
                params![message_id],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Makes every claim still unanswered stale at once, so the next delivery of each takes it
    /// over ([`Claim::TakenOver`]) instead of waiting [`STALE_CLAIM`]. For a host that is the
    /// file's only user ([`Options::exclusive`]) at start: an unanswered claim then belongs to
    /// a process that died. Returns how many.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    ///
    /// ```
    /// # use proxy_optout_sqlite::{Claim, SqliteStore};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = SqliteStore::open(dir.path().join("l.db"))?;
    /// store.claim("SM1")?;
    /// assert_eq!(store.abandon_claims()?, 1);
    /// store.purge_processed(proxy_optout_sqlite::RETENTION)?; // young enough to stay
    /// assert_eq!(store.claim("SM1")?, Claim::TakenOver);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn abandon_claims(&self) -> Result<usize, StoreError> {
        if let Some(in_flight) = &self.inner.in_flight {
            let mut map = lock(in_flight);
            let n = map.len();
            map.clear();
            return Ok(n);
        }
        // Just past stale, not at the epoch: a purge by age must still find them young, so
        // their redeliveries are taken over (and ask the provider) rather than seen as new.
        let stale = now_ms() - i64::try_from(STALE_CLAIM.as_millis()).unwrap_or(i64::MAX) - 1;
        self.conn()
            .execute(
                "UPDATE processed_messages SET processed_at = ?1 WHERE answer IS NULL",
                params![stale],
            )
            .map_err(|e| self.err(e))
    }

    /// Forgets processed ids older than `age` (the retention rule: keep them at least as long
    /// as the platform may redeliver; we suggest [`RETENTION`]). Returns how many were removed.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    ///
    /// ```
    /// # use proxy_optout_sqlite::{SqliteStore, RETENTION};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = SqliteStore::open(dir.path().join("l.db"))?;
    /// assert_eq!(store.purge_processed(RETENTION)?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn purge_processed(&self, age: Duration) -> Result<usize, StoreError> {
        if let Some(in_flight) = &self.inner.in_flight {
            // Entries of handlers that died (a panic) are stale after STALE_CLAIM: forget them
            // so the map cannot grow without bound.
            lock(in_flight).retain(|_, at| at.elapsed() < STALE_CLAIM);
        }
        let cutoff = now_ms() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        self.conn()
            .execute(
                "DELETE FROM processed_messages WHERE processed_at < ?1",
                params![cutoff],
            )
            .map_err(|e| self.err(e))
    }

    /// Makes every write committed so far durable: one commit with `synchronous=FULL`, whose
    /// sync of the WAL file covers every frame before it. With [`Durability::Normal`] a host
    /// commits many writes without syncing each and calls this once before it acknowledges
    /// any of them (a group commit): the promise of [`Durability::Full`] at a fraction of the
    /// syncs under concurrency.
    ///
    /// # Errors
    ///
    /// [`StoreError`]; also inside a transaction, where SQLite refuses to change
    /// `synchronous`.
    ///
    /// ```
    /// use proxy_optout::{LedgerKey, OptOutStore, OptState};
    /// use proxy_optout_sqlite::{Durability, Options, SqliteStore};
    /// let dir = tempfile::tempdir()?;
    /// let store = SqliteStore::open_with(dir.path().join("l.db"), Options::default().durability(Durability::Normal))?;
    /// store.record(LedgerKey::new("+1P", "+1A"), OptState::OptedOut)?;
    /// store.record(LedgerKey::new("+1P", "+1B"), OptState::OptedOut)?;
    /// store.sync()?; // both are durable now, with one sync
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sync(&self) -> Result<(), StoreError> {
        let conn = self.conn();
        let synced = (|| {
            conn.prepare_cached("PRAGMA synchronous = FULL")?
                .execute([])?;
            let written = conn
                .prepare_cached(
                    "INSERT INTO proxy_optout_sync (id, n) VALUES (1, 1)
                     ON CONFLICT (id) DO UPDATE SET n = n + 1",
                )
                .and_then(|mut st| st.execute([]));
            let back = if self.inner.full { "FULL" } else { "NORMAL" };
            conn.execute_batch(&format!("PRAGMA synchronous = {back}"))?;
            written.map(|_| ())
        })();
        synced.map_err(|e| self.err(e))
    }

    /// Runs `f` on the connection (for tests, audits and migrations of your own).
    ///
    /// A transaction begun here stays open across calls, and the store's methods join it
    /// rather than fail to begin their own: each is still all-or-nothing (a savepoint where
    /// it writes more than one statement), and its writes are kept or lost with your commit.
    ///
    /// ```
    /// # use proxy_optout_sqlite::SqliteStore;
    /// # let dir = tempfile::tempdir()?;
    /// # let store = SqliteStore::open(dir.path().join("l.db"))?;
    /// let n: i64 = store.with_connection(|c| c.query_row("SELECT count(*) FROM opt_out_ledger", [], |r| r.get(0)))?;
    /// assert_eq!(n, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_connection<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        f(&self.conn()).map_err(|e| self.err(e))
    }
}

/// How long an unanswered claim blocks redeliveries before it is considered abandoned: longer
/// than Twilio's 15-second webhook timeout.
pub const STALE_CLAIM: Duration = Duration::from_secs(60);

/// The suggested retention for processed message ids: three days.
pub const RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn migrate(conn: &mut Connection, from: u32) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Re-read inside the write lock: another process may have migrated meanwhile.
    let version: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version == from {
        for (to, sql) in [(1, SCHEMA), (2, SCHEMA_V2), (3, SCHEMA_V3), (4, SCHEMA_V4)] {
            if to > version {
                tx.execute_batch(sql)?;
            }
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()
}

impl OptOutStore for SqliteStore {
    type Error = StoreError;

    fn record(&self, key: LedgerKey<'_>, state: OptState) -> Result<(), StoreError> {
        self.record_now(key, state)
    }

    fn state(&self, key: LedgerKey<'_>) -> Result<OptState, StoreError> {
        self.state_now(key)
    }

    fn record_change(&self, change: &Change<'_>) -> Result<(), StoreError> {
        self.append_now(change)
    }

    fn confirmed(
        &self,
        key: LedgerKey<'_>,
        state: OptState,
        unix_ms: u64,
    ) -> Result<(), StoreError> {
        self.confirm_now(key, state, unix_ms)
    }
}

#[cfg(feature = "tokio")]
mod asynchronous {
    use std::future::Future;

    use proxy_optout::{
        AsyncHistoryStore, AsyncOptOutStore, Change, HistoryEntry, HistoryQuery, LedgerKey,
        OptState,
    };

    use super::{SqliteStore, StoreError};
    use crate::history::OwnedChange;

    impl SqliteStore {
        async fn blocking<T: Send + 'static>(
            &self,
            f: impl FnOnce(SqliteStore) -> Result<T, StoreError> + Send + 'static,
        ) -> Result<T, StoreError> {
            let store = self.clone();
            // SQLite blocks on disk (and on fsync, with FULL durability): run it on the blocking
            // pool so no runtime worker thread ever waits.
            tokio::task::spawn_blocking(move || f(store))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?
        }
    }

    impl AsyncOptOutStore for SqliteStore {
        type Error = StoreError;

        fn record(
            &self,
            key: LedgerKey<'_>,
            state: OptState,
        ) -> impl Future<Output = Result<(), StoreError>> + Send {
            let key = key.to_owned();
            self.blocking(move |s| s.record_now(key.as_key(), state))
        }

        fn state(
            &self,
            key: LedgerKey<'_>,
        ) -> impl Future<Output = Result<OptState, StoreError>> + Send {
            let key = key.to_owned();
            self.blocking(move |s| s.state_now(key.as_key()))
        }

        fn record_change(
            &self,
            change: &Change<'_>,
        ) -> impl Future<Output = Result<(), StoreError>> + Send {
            let owned = OwnedChange::of(change);
            self.blocking(move |s| s.append_now(&owned.as_change()))
        }

        fn confirmed(
            &self,
            key: LedgerKey<'_>,
            state: OptState,
            unix_ms: u64,
        ) -> impl Future<Output = Result<(), StoreError>> + Send {
            let key = key.to_owned();
            self.blocking(move |s| s.confirm_now(key.as_key(), state, unix_ms))
        }
    }

    impl AsyncHistoryStore for SqliteStore {
        fn history(
            &self,
            query: &HistoryQuery<'_>,
        ) -> impl Future<Output = Result<Vec<HistoryEntry>, StoreError>> + Send {
            let owned = query.to_owned();
            self.blocking(move |s| s.history_now(&owned.as_query()))
        }
    }
}

#[cfg(feature = "conversations")]
mod conversations {
    use proxy_optout_twilio::{BindingStore, CachedBinding};
    use rusqlite::{params, OptionalExtension};

    use super::{SqliteStore, StoreError};

    /// The Conversations participants' bindings, in the store's file: shared by everything
    /// that opens it, kept across restarts.
    ///
    /// ```
    /// use proxy_optout_twilio::{BindingStore, CachedBinding};
    /// let dir = tempfile::tempdir()?;
    /// let store = proxy_optout_sqlite::SqliteStore::open(dir.path().join("l.db"))?;
    /// let b = CachedBinding { address: "+1A".into(), proxy_address: Some("+1P".into()), kind: Some("sms".into()) };
    /// store.added("CH1", "MB1", &b)?;
    /// assert_eq!(store.binding("CH1", "MB1")?, Some(b));
    /// store.removed("CH1", "MB1")?;
    /// assert!(store.bindings("CH1")?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    impl BindingStore for SqliteStore {
        type Error = StoreError;

        fn added(
            &self,
            conversation_sid: &str,
            participant_sid: &str,
            binding: &CachedBinding,
        ) -> Result<(), StoreError> {
            self.with_connection(|c| {
                c.prepare_cached(
                    "INSERT INTO conversation_bindings
                       (conversation_sid, participant_sid, address, proxy_address, kind)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (conversation_sid, participant_sid) DO UPDATE SET
                       address = excluded.address, proxy_address = excluded.proxy_address,
                       kind = excluded.kind",
                )?
                .execute(params![
                    conversation_sid,
                    participant_sid,
                    binding.address,
                    binding.proxy_address,
                    binding.kind
                ])
                .map(|_| ())
            })
        }

        fn removed(&self, conversation_sid: &str, participant_sid: &str) -> Result<(), StoreError> {
            self.with_connection(|c| {
                c.prepare_cached(
                    "DELETE FROM conversation_bindings WHERE conversation_sid = ?1 AND participant_sid = ?2",
                )?
                .execute(params![conversation_sid, participant_sid])
                .map(|_| ())
            })
        }

        fn binding(
            &self,
            conversation_sid: &str,
            participant_sid: &str,
        ) -> Result<Option<CachedBinding>, StoreError> {
            self.with_connection(|c| {
                c.prepare_cached(
                    "SELECT address, proxy_address, kind FROM conversation_bindings
                     WHERE conversation_sid = ?1 AND participant_sid = ?2",
                )?
                .query_row(params![conversation_sid, participant_sid], |r| {
                    Ok(CachedBinding {
                        address: r.get(0)?,
                        proxy_address: r.get(1)?,
                        kind: r.get(2)?,
                    })
                })
                .optional()
            })
        }

        fn bindings(&self, conversation_sid: &str) -> Result<Vec<CachedBinding>, StoreError> {
            self.with_connection(|c| {
                c.prepare_cached(
                    "SELECT address, proxy_address, kind FROM conversation_bindings
                     WHERE conversation_sid = ?1 ORDER BY address",
                )?
                .query_map(params![conversation_sid], |r| {
                    Ok(CachedBinding {
                        address: r.get(0)?,
                        proxy_address: r.get(1)?,
                        kind: r.get(2)?,
                    })
                })?
                .collect()
            })
        }
    }
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
