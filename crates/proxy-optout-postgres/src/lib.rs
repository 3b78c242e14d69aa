//! An opt-out ledger for [`proxy_optout`] on PostgreSQL: the store for several relay instances
//! behind a load balancer. Async ([`AsyncOptOutStore`]), pooled (deadpool), prepared statements,
//! versioned migrations serialised by an advisory lock, and the processed-message table that
//! makes webhook redelivery harmless. Each key's state is one row changed by one atomic upsert,
//! so every instance reads the latest acknowledged write.
//!
//! ```no_run
//! use proxy_optout::{AsyncRelay, Inbound};
//! use proxy_optout_postgres::PgStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::connect("postgres://postgres@127.0.0.1:5432/test").await?;
//! let relay = AsyncRelay::new(store);
//! let out = relay.handle(&Inbound::sms("+15551110001", "+15550000100", "STOP"), None).await?;
//! assert!(out.is_recorded());
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
// The driver types this crate's API shows (`PgStore::pool`, `StoreError`), so a host uses
// exactly the versions the store was built with.
pub use deadpool_postgres;
use proxy_optout::{AsyncOptOutStore, Change, ChangeSource, LedgerKey, OptState};
pub use tokio_postgres;
use tokio_postgres::NoTls;

mod history;
pub use history::SCHEMA_V4;

/// The schema version this crate writes and reads.
pub const SCHEMA_VERSION: i32 = 4;

/// The schema, version 1 (created in the configured PostgreSQL schema).
pub const SCHEMA: &str = "
CREATE TABLE opt_out_ledger (
    scope       TEXT        NOT NULL,  -- the proxy number, or a service id
    participant TEXT        NOT NULL,  -- the participant's own number or address
    state       TEXT        NOT NULL,  -- 'opted_in' | 'opted_out'; anything else reads as an error
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, participant)
);
CREATE TABLE processed_messages (
    message_id   TEXT        NOT NULL PRIMARY KEY,  -- the provider's id (Twilio MessageSid)
    answer       TEXT,                               -- the answer given; NULL while in progress
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX processed_messages_by_age ON processed_messages (processed_at);
";

/// Schema version 2: the claim as a server-side function, so a host can claim a message id
/// inside a statement of its own (one round trip for the claim and its own lookups). It
/// returns one row: whether this call claimed the id, whether that took over a stale claim,
/// and the stored answer if there is one. Beside it, `proxy_optout_complete(message_id, answer, synced)`, which stores an answer.
/// PL/pgSQL, not SQL: its statements' plans are cached per connection, where a SQL-language
/// function with a data-modifying statement is planned again on every call (half the
/// throughput, measured with pgbench on this project's machine). Like every function of the
/// schema it is replaced on each connect, so it always matches the running build.
pub const SCHEMA_V2: &str = FUNCTIONS;

/// Schema version 3: the messaging bindings of Conversations participants (feature
/// `conversations`: `PgStore` is then a `proxy_optout_twilio::AsyncBindingStore`, shared by
/// every instance).
pub const SCHEMA_V3: &str = "
CREATE TABLE conversation_bindings (
    conversation_sid TEXT NOT NULL,
    participant_sid  TEXT NOT NULL,
    address          TEXT NOT NULL,
    proxy_address    TEXT,
    kind             TEXT,
    PRIMARY KEY (conversation_sid, participant_sid)
);
";

const FUNCTIONS: &str = "
DROP FUNCTION IF EXISTS proxy_optout_claim(TEXT, FLOAT8);
CREATE FUNCTION proxy_optout_claim(p_message_id TEXT, p_stale_secs FLOAT8)
RETURNS TABLE (claimed BOOLEAN, resumed BOOLEAN, answer TEXT)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    inserted BOOLEAN;
BEGIN
    INSERT INTO processed_messages AS m (message_id, answer, processed_at)
    VALUES (p_message_id, NULL, now())
    ON CONFLICT (message_id) DO UPDATE SET processed_at = now()
    WHERE m.answer IS NULL
      AND m.processed_at < now() - make_interval(secs => p_stale_secs)
    RETURNING (xmax = 0) INTO inserted;
    claimed := FOUND;
    -- An update, not an insert: a stale claim was taken over.
    resumed := claimed AND NOT inserted;
    IF NOT claimed THEN
        SELECT m.answer INTO answer FROM processed_messages m WHERE m.message_id = p_message_id;
    END IF;
    RETURN NEXT;
END
$$;
CREATE OR REPLACE FUNCTION proxy_optout_complete(p_message_id TEXT, p_answer TEXT, p_synced BOOLEAN)
RETURNS VOID
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF NOT p_synced THEN
        -- For this transaction only: the caller chose Commit::Asynchronous for answers.
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    INSERT INTO processed_messages (message_id, answer, processed_at)
    VALUES (p_message_id, p_answer, now())
    ON CONFLICT (message_id) DO UPDATE SET answer = excluded.answer;
END
$$;
CREATE OR REPLACE FUNCTION proxy_optout_complete_many(p_message_ids TEXT[], p_answers TEXT[], p_synced BOOLEAN)
RETURNS VOID
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF NOT p_synced THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    INSERT INTO processed_messages (message_id, answer, processed_at)
    SELECT m.id, m.answer, now() FROM unnest(p_message_ids, p_answers) AS m(id, answer)
    ON CONFLICT (message_id) DO UPDATE SET answer = excluded.answer;
END
$$;
";

/// What went wrong. The relay fails closed on every one. New variants may be added in minor
/// releases.
///
/// # Example
///
/// ```
/// let e = proxy_optout_postgres::StoreError::SchemaTooNew { found: 9, supported: 1 };
/// assert_eq!(e.to_string(), "the database has schema version 9, newer than the 1 this build supports");
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had from the pool (server down, pool exhausted past its wait).
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The server or the connection failed (a terminated backend, a network error).
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The database was migrated by a newer build; it is never rewritten.
    #[error(
        "the database has schema version {found}, newer than the {supported} this build supports"
    )]
    SchemaTooNew {
        /// The stored version.
        found: i32,
        /// [`SCHEMA_VERSION`].
        supported: i32,
    },
    /// A stored state this build does not recognise.
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
    /// The configuration (URL, schema name) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Options for [`PgStore::connect_with`].
///
/// # Example
///
/// ```
/// let o = proxy_optout_postgres::Options::default().schema("relay").pool_size(32);
/// # let _ = o;
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    schema: String,
    pool_size: usize,
    application_name: String,
    connect_timeout: Duration,
    answer_commit: Commit,
    keep_texts: bool,
}

/// How a write's commit waits for the disk: PostgreSQL's `synchronous_commit` for one
/// transaction.
///
/// # Example
///
/// ```
/// assert_eq!(proxy_optout_postgres::Commit::default(), proxy_optout_postgres::Commit::Synchronous);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Commit {
    /// The server's setting (`on` by default): acknowledged once the WAL is flushed.
    #[default]
    Synchronous,
    /// `synchronous_commit = off` for this transaction: acknowledged before the flush, so a
    /// crash of the database server within its WAL writer's delay (200 ms by default) may
    /// lose it. Never used for a ledger write.
    Asynchronous,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            schema: "public".into(),
            pool_size: 16,
            application_name: "proxy-optout".into(),
            connect_timeout: Duration::from_secs(5),
            answer_commit: Commit::Synchronous,
            keep_texts: true,
        }
    }
}

impl Options {
    /// Whether history entries keep the text as received (default: yes). Off, an entry keeps
    /// the keyword, the message id and the times, never the message text.
    ///
    /// ```
    /// let o = proxy_optout_postgres::Options::default().keep_texts(false);
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn keep_texts(mut self, keep: bool) -> Self {
        self.keep_texts = keep;
        self
    }

    /// The PostgreSQL schema holding the tables (default `public`); created if missing.
    /// Letters, digits and `_` only.
    ///
    /// ```
    /// let o = proxy_optout_postgres::Options::default().schema("tenant_a");
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most connections the pool opens (default 16).
    ///
    /// ```
    /// let o = proxy_optout_postgres::Options::default().pool_size(4);
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How [`complete`](PgStore::complete) commits a stored answer (default
    /// [`Commit::Synchronous`]). With [`Commit::Asynchronous`] a database crash may lose an
    /// answer: the platform's retry is then handled again, and the ledger writes it caused
    /// were committed synchronously. Saves a WAL flush per message.
    ///
    /// ```
    /// let o = proxy_optout_postgres::Options::default().answer_commit(proxy_optout_postgres::Commit::Asynchronous);
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn answer_commit(mut self, commit: Commit) -> Self {
        self.answer_commit = commit;
        self
    }

    /// The `application_name` the connections report (for `pg_stat_activity`).
    ///
    /// ```
    /// let o = proxy_optout_postgres::Options::default().application_name("relay-1");
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }
}

/// The answer to [`PgStore::claim`]: whether this delivery of a message id is the first.
///
/// # Example
///
/// ```
/// assert_ne!(proxy_optout_postgres::Claim::New, proxy_optout_postgres::Claim::InProgress);
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// First delivery: handle it, then [`complete`](PgStore::complete) or
    /// [`release`](PgStore::release) it.
    New,
    /// Another instance is handling it now.
    InProgress,
    /// A claim left unanswered past [`STALE_CLAIM`] (an instance that crashed or hung) was
    /// taken over: handle it, but what it sent before may have gone out, so ask the provider
    /// before sending again.
    TakenOver,
    /// Already handled: answer this again and perform nothing.
    Answered(String),
}

impl Claim {
    /// The claim a row of `proxy_optout_claim` (see [`SCHEMA_V2`]) describes: whether the
    /// call claimed the id, whether it took over a stale claim, and the stored answer. For
    /// hosts that call the function inside a statement of their own.
    ///
    /// ```
    /// use proxy_optout_postgres::Claim;
    /// assert_eq!(Claim::from_row(true, false, None), Claim::New);
    /// assert_eq!(Claim::from_row(true, true, None), Claim::TakenOver);
    /// assert_eq!(Claim::from_row(false, false, None), Claim::InProgress);
    /// assert_eq!(Claim::from_row(false, false, Some("<Response/>".into())), Claim::Answered("<Response/>".into()));
    /// ```
    #[must_use]
    pub fn from_row(claimed: bool, resumed: bool, answer: Option<String>) -> Claim {
        match (claimed, resumed, answer) {
            (true, false, _) => Claim::New,
            (true, true, _) => Claim::TakenOver,
            (false, _, Some(a)) => Claim::Answered(a),
            (false, _, None) => Claim::InProgress,
        }
    }
}

/// How long an unanswered claim blocks redeliveries before it counts as abandoned.
pub const STALE_CLAIM: Duration = Duration::from_secs(60);

/// The suggested retention for processed message ids: three days.
pub const RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);

/// The PostgreSQL opt-out store: a connection pool. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    schema: String,
    answer_commit: Commit,
    keep_texts: bool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .field("pool", &self.pool.status())
            .finish()
    }
}

const STATE: &str = "SELECT state FROM opt_out_ledger WHERE scope = $1 AND participant = $2";

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

impl PgStore {
    /// Connects to `url` with the default [`Options`] and migrates the schema.
    ///
    /// # Errors
    ///
    /// [`StoreError`]: unreachable server, invalid URL, newer schema.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), proxy_optout_postgres::StoreError> {
    /// let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        PgStore::connect_with(url, Options::default()).await
    }

    /// Connects with `options` and migrates the schema.
    ///
    /// # Errors
    ///
    /// As [`connect`](PgStore::connect).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), proxy_optout_postgres::StoreError> {
    /// use proxy_optout_postgres::{Options, PgStore};
    /// let store = PgStore::connect_with("postgres://postgres@127.0.0.1/test", Options::default().schema("relay")).await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub async fn connect_with(url: &str, options: Options) -> Result<Self, StoreError> {
        let schema = options.schema;
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StoreError::Config(format!(
                "schema name {schema:?} must be letters, digits and _"
            )));
        }
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Config(format!("database URL: {e}")))?;
        config.options(format!("-c search_path={schema}"));
        config.application_name(&options.application_name);
        config.connect_timeout(options.connect_timeout);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // `Fast` recycling drops a connection the server closed (its client reports
                // closed) and opens a new one, so a terminated backend costs one message.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let store = PgStore {
            pool,
            schema,
            answer_commit: options.answer_commit,
            keep_texts: options.keep_texts,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The PostgreSQL schema in use.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), proxy_optout_postgres::StoreError> {
    /// # let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// assert_eq!(store.schema(), "public");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The pool (to run your own queries in the same schema).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// let client = store.pool().get().await?;
    /// client.execute("SELECT 1", &[]).await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Closes the pool: connections in it are dropped now, the ones in use when they are
    /// given back, and every later call fails with [`StoreError::Pool`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), proxy_optout_postgres::StoreError> {
    /// # let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// store.close();
    /// assert!(store.claim("SM1").await.is_err());
    /// # Ok(()) }
    /// ```
    pub fn close(&self) {
        self.pool.close();
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // One migrator at a time across every instance.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('proxy_optout_migrate'))",
            &[],
        )
        .await?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {0};
             CREATE TABLE IF NOT EXISTS {0}.proxy_optout_schema (version INTEGER NOT NULL)",
            self.schema
        ))
        .await?;
        let found: Option<i32> = tx
            .query_opt("SELECT max(version) FROM proxy_optout_schema", &[])
            .await?
            .and_then(|r| r.get(0));
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::SchemaTooNew {
                    found: v,
                    supported: SCHEMA_VERSION,
                })
            }
            Some(v) if v == SCHEMA_VERSION => {}
            from => {
                let from = from.unwrap_or(0);
                // Version 2 adds functions only; they are (re)created below.
                for (version, sql) in [(1, SCHEMA), (2, ""), (3, SCHEMA_V3), (4, SCHEMA_V4)] {
                    if version > from {
                        tx.batch_execute(sql).await?;
                        tx.execute(
                            "INSERT INTO proxy_optout_schema (version) VALUES ($1)",
                            &[&version],
                        )
                        .await?;
                    }
                }
            }
        }
        tx.batch_execute(FUNCTIONS).await?;
        tx.batch_execute(history::FUNCTIONS).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Claims a message id for handling: [`Claim::New`] for the first delivery, across every
    /// instance; [`Claim::InProgress`] while another handles it; the stored answer afterwards.
    /// A claim left unanswered past [`STALE_CLAIM`] is taken over.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), proxy_optout_postgres::StoreError> {
    /// # let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// use proxy_optout_postgres::Claim;
    /// if store.claim("SM1").await? == Claim::New {
    ///     // handle, then:
    ///     store.complete("SM1", "<Response/>").await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn claim(&self, message_id: &str) -> Result<Claim, StoreError> {
        let client = self.pool.get().await?;
        let stale = f64::from(u32::try_from(STALE_CLAIM.as_secs()).unwrap_or(u32::MAX));
        // One statement: insert the claim, or take over a stale one; otherwise report the row.
        let stmt = client
            .prepare_cached("SELECT claimed, resumed, answer FROM proxy_optout_claim($1, $2)")
            .await?;
        let row = client.query_one(&stmt, &[&message_id, &stale]).await?;
        Ok(Claim::from_row(row.get(0), row.get(1), row.get(2)))
    }

    /// Stores the answer given for a claimed id.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), proxy_optout_postgres::StoreError> {
    /// # let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// store.complete("SM1", "<Response/>").await?;
    /// # Ok(()) }
    /// ```
    pub async fn complete(&self, message_id: &str, answer: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached("SELECT proxy_optout_complete($1, $2, $3)")
            .await?;
        let synced = self.answer_commit == Commit::Synchronous;
        client
            .execute(&stmt, &[&message_id, &answer, &synced])
            .await?;
        Ok(())
    }

    /// Stores the answers of many claimed ids in one statement and one transaction (a host
    /// that completes messages in groups: one round trip for all of them). An id given
    /// twice keeps its last answer.
    ///
    /// # Errors
    ///
    /// [`StoreError`]: then none of them is stored.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), proxy_optout_postgres::StoreError> {
    /// # let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// store.complete_many(&[("SM1", "<Response/>"), ("SM2", "<Response/>")]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn complete_many(&self, answers: &[(&str, &str)]) -> Result<(), StoreError> {
        // One row per id: an upsert cannot touch the same row twice in one statement.
        let mut last: std::collections::HashMap<&str, &str> =
            std::collections::HashMap::with_capacity(answers.len());
        for (id, answer) in answers {
            last.insert(id, answer);
        }
        if last.is_empty() {
            return Ok(());
        }
        let (ids, texts): (Vec<&str>, Vec<&str>) = last.into_iter().unzip();
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached("SELECT proxy_optout_complete_many($1, $2, $3)")
            .await?;
        let synced = self.answer_commit == Commit::Synchronous;
        client.execute(&stmt, &[&ids, &texts, &synced]).await?;
        Ok(())
    }

    /// Gives an unanswered claim back (handling failed; the retry is handled in full).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), proxy_optout_postgres::StoreError> {
    /// # let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// store.release("SM1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(&self, message_id: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM processed_messages WHERE message_id = $1 AND answer IS NULL",
                &[&message_id],
            )
            .await?;
        Ok(())
    }

    /// Forgets processed ids older than `age` ([`RETENTION`] suggested). Returns how many.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), proxy_optout_postgres::StoreError> {
    /// # let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// store.purge_processed(proxy_optout_postgres::RETENTION).await?;
    /// # Ok(()) }
    /// ```
    pub async fn purge_processed(&self, age: Duration) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let secs = age.as_secs_f64();
        Ok(client
            .execute(
                "DELETE FROM processed_messages WHERE processed_at < now() - make_interval(secs => $1)",
                &[&secs],
            )
            .await?)
    }

    async fn record_now(&self, key: LedgerKey<'_>, state: OptState) -> Result<(), StoreError> {
        self.record_change_now(&Change::new(key, state, ChangeSource::Unspecified))
            .await
    }

    async fn state_now(&self, key: LedgerKey<'_>) -> Result<OptState, StoreError> {
        let client = self.pool.get().await?;
        let result = async {
            let stmt = client.prepare_cached(STATE).await?;
            client
                .query_opt(&stmt, &[&key.scope(), &key.participant()])
                .await
        }
        .await;
        discard_if_broken(client, &result);
        match result? {
            None => Ok(OptState::OptedIn),
            Some(r) => parse_state(key.scope(), key.participant(), r.get(0)),
        }
    }
}

/// A connection whose query failed at the connection level (a terminated backend, a reset
/// socket) is taken out of the pool instead of being handed to the next message: its `closed`
/// flag may not be set yet when it would be recycled.
fn discard_if_broken<T>(
    client: deadpool_postgres::Client,
    result: &Result<T, tokio_postgres::Error>,
) {
    if let Err(e) = result {
        if e.is_closed()
            || e.as_db_error()
                .is_some_and(|d| d.code().code().starts_with("57P"))
            || e.code().is_none()
        {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

impl AsyncOptOutStore for PgStore {
    type Error = StoreError;

    fn record(
        &self,
        key: LedgerKey<'_>,
        state: OptState,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.record_now(key, state)
    }

    fn state(
        &self,
        key: LedgerKey<'_>,
    ) -> impl Future<Output = Result<OptState, StoreError>> + Send {
        self.state_now(key)
    }

    fn record_change(
        &self,
        change: &Change<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.record_change_now(change)
    }

    fn confirmed(
        &self,
        key: LedgerKey<'_>,
        state: OptState,
        unix_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.confirm_now(key, state, unix_ms)
    }
}

#[cfg(feature = "conversations")]
mod conversations {
    use std::future::Future;

    use proxy_optout_twilio::{AsyncBindingStore, CachedBinding};

    use super::{PgStore, StoreError};

    fn binding(r: &tokio_postgres::Row) -> CachedBinding {
        CachedBinding {
            address: r.get(0),
            proxy_address: r.get(1),
            kind: r.get(2),
        }
    }

    /// The Conversations participants' bindings, in the database every instance shares.
    ///
    /// ```no_run
    /// use proxy_optout_twilio::{AsyncBindingStore, CachedBinding};
    /// # async fn run() -> Result<(), proxy_optout_postgres::StoreError> {
    /// let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// let b = CachedBinding { address: "+1A".into(), proxy_address: Some("+1P".into()), kind: Some("sms".into()) };
    /// store.added("CH1", "MB1", &b).await?;
    /// assert_eq!(store.binding("CH1", "MB1").await?, Some(b));
    /// # Ok(()) }
    /// ```
    impl AsyncBindingStore for PgStore {
        type Error = StoreError;

        fn added(
            &self,
            conversation_sid: &str,
            participant_sid: &str,
            b: &CachedBinding,
        ) -> impl Future<Output = Result<(), StoreError>> + Send {
            let (c, p, b) = (
                conversation_sid.to_owned(),
                participant_sid.to_owned(),
                b.clone(),
            );
            async move {
                let client = self.pool.get().await?;
                let stmt = client
                    .prepare_cached(
                        "INSERT INTO conversation_bindings
                           (conversation_sid, participant_sid, address, proxy_address, kind)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (conversation_sid, participant_sid) DO UPDATE SET
                           address = excluded.address, proxy_address = excluded.proxy_address,
                           kind = excluded.kind",
                    )
                    .await?;
                client
                    .execute(&stmt, &[&c, &p, &b.address, &b.proxy_address, &b.kind])
                    .await?;
                Ok(())
            }
        }

        fn removed(
            &self,
            conversation_sid: &str,
            participant_sid: &str,
        ) -> impl Future<Output = Result<(), StoreError>> + Send {
            let (c, p) = (conversation_sid.to_owned(), participant_sid.to_owned());
            async move {
                let client = self.pool.get().await?;
                client
                    .execute(
                        "DELETE FROM conversation_bindings WHERE conversation_sid = $1 AND participant_sid = $2",
                        &[&c, &p],
                    )
                    .await?;
                Ok(())
            }
        }

        fn binding(
            &self,
            conversation_sid: &str,
            participant_sid: &str,
        ) -> impl Future<Output = Result<Option<CachedBinding>, StoreError>> + Send {
            let (c, p) = (conversation_sid.to_owned(), participant_sid.to_owned());
            async move {
                let client = self.pool.get().await?;
                let stmt = client
                    .prepare_cached(
                        "SELECT address, proxy_address, kind FROM conversation_bindings
                         WHERE conversation_sid = $1 AND participant_sid = $2",
                    )
                    .await?;
                Ok(client
                    .query_opt(&stmt, &[&c, &p])
                    .await?
                    .as_ref()
                    .map(binding))
            }
        }

        fn bindings(
            &self,
            conversation_sid: &str,
        ) -> impl Future<Output = Result<Vec<CachedBinding>, StoreError>> + Send {
            let c = conversation_sid.to_owned();
            async move {
                let client = self.pool.get().await?;
                let stmt = client
                    .prepare_cached(
                        "SELECT address, proxy_address, kind FROM conversation_bindings
                         WHERE conversation_sid = $1 ORDER BY address",
                    )
                    .await?;
                Ok(client
                    .query(&stmt, &[&c])
                    .await?
                    .iter()
                    .map(binding)
                    .collect())
            }
        }
    }
}

/// The SQL the store runs for `record` and `state`, for benchmarks that issue it directly.
pub mod sql {
    /// The call behind `record`: the state and its history entry, through
    /// `proxy_optout_record(scope, participant, state, source, keyword, body, message_id,
    /// rule_set, received_ms, confirmed_ms)`.
    pub const RECORD: &str = super::history::RECORD;
    /// The read behind `state`.
    pub const STATE: &str = super::STATE;
    /// The claim, as a function a host's own statement can call:
    /// `SELECT claimed, resumed, answer FROM proxy_optout_claim($message_id, $stale_secs)`.
    pub const CLAIM_FUNCTION: &str = "proxy_optout_claim";
}

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
