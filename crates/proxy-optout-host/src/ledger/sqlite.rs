//! SQLite: one file, held exclusively by this process, every call on one database thread
//! ([`worker`](super::worker)), which group-commits the durable ones. The store crate keeps
//! the ledger and the processed message ids.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proxy_optout::{
    Answer, Feedback, FeedbackError, LedgerKey, OptOutStore, OptState, RelayCore, Step,
};
use proxy_optout_sqlite::{Claim, Durability, Options, SqliteStore};

use super::group::Group;
use super::worker::DbWorker;
use super::{
    policy_answer, route_of, Backend, BoxFuture, Colocated, ColocatedKind, DecideError, Decided,
    LedgerError, Routed, SqliteRouteFn,
};
use crate::message::Message;
use crate::routing::{RouteResult, Routing};

/// The ledger in a SQLite file: the single-host setup. The file is held exclusively (a
/// second process on it fails at open, instead of sharing it unsafely), and every call runs
/// on one database thread, which runs the pipeline's calls of a batch in one transaction
/// and syncs it once before answering any of them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("optout.db")).await?;
/// // The host's own queries can share the thread and the file.
/// let n: i64 = ledger.call(|store| store.with_connection(|c| c.query_row("SELECT 2", [], |r| r.get(0)))).await??;
/// assert_eq!(n, 2);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteLedger {
    worker: Arc<DbWorker>,
    /// Answers waiting for the database thread, stored together.
    answers: Arc<Group<Answered>>,
}

/// A stored answer on its way, and who hears of its failure.
type Answered = (String, String, Box<dyn FnOnce(LedgerError) + Send>);

/// Stores a group of answers together; if that fails, each alone, so one bad answer costs
/// only itself. Returns who hears of it if the batch that holds them is not committed.
fn store_answers(store: &SqliteStore, group: Vec<Answered>) -> Box<dyn FnOnce(LedgerError) + Send> {
    let pairs: Vec<(&str, &str)> = group
        .iter()
        .map(|(id, answer, _)| (id.as_str(), answer.as_str()))
        .collect();
    let stored = if store.complete_many(&pairs).is_ok() {
        group.into_iter().map(|(_, _, on_error)| on_error).collect()
    } else {
        let mut stored = Vec::new();
        for (id, answer, on_error) in group {
            match store.complete(&id, &answer) {
                Ok(()) => stored.push(on_error),
                Err(e) => on_error(e.into()),
            }
        }
        stored
    };
    Box::new(move |e: LedgerError| {
        for on_error in stored {
            on_error(LedgerError::Task(e.to_string()));
        }
    })
}

/// WAL pages after which a commit checkpoints (SQLite's `wal_autocheckpoint`).
const WAL_AUTOCHECKPOINT: i64 = 8_000;

fn open_store(path: &Path) -> Result<SqliteStore, LedgerError> {
    // Exclusive: this process is the file's only user (SQLite is the single-host setup), so
    // no transaction pays for file locks. Commits are not synced one by one: the database
    // thread group-commits every durable call (claims, ledger writes) before answering it. A
    // stored answer is not a durable call: a power cut can lose it, and the retry then finds
    // the claim unanswered and asks the provider before sending anything again.
    let store = SqliteStore::open_with(
        path,
        Options::default()
            .durability(Durability::Normal)
            .exclusive(true)
            .busy_timeout(std::time::Duration::ZERO),
    )?;
    // The database thread runs its calls inside one transaction per batch, and the store's
    // methods nest in it as savepoints, whose sub-journals (a copy of each page before its
    // first change) would otherwise be temporary files.
    store.with_connection(|c| c.pragma_update(None, "temp_store", "MEMORY"))?;
    // The automatic checkpoint at 8,000 WAL pages (32 MiB with 4 KiB pages), not SQLite's
    // 1,000: under load with random message ids, most pages a batch writes are written again
    // before the checkpoint, which copies each page once however often it changed. Measured
    // on the relay's load command: 9% fewer bytes written, 8–17% more ordinary messages per
    // second. At rest the idle checkpoint (after 32 batches) keeps the WAL short anyway.
    store.with_connection(|c| c.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT))?;
    // Nobody else can hold the file: an unanswered claim belongs to a process that died.
    let abandoned = store.abandon_claims()?;
    if abandoned > 0 {
        tracing::warn!(
            abandoned,
            "claims left unanswered by a previous run; their redeliveries ask the provider before sending"
        );
    }
    Ok(store)
}

impl SqliteLedger {
    /// Opens (creating and migrating) the file at `path`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Sqlite`]: a corrupt file, a newer schema, or a file another process
    /// holds.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("optout.db");
    /// let ledger = proxy_optout_host::SqliteLedger::open(&path).await?;
    /// assert_eq!(ledger.path(), path);
    /// # Ok(()) }
    /// ```
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteLedger, LedgerError> {
        let path: PathBuf = path.as_ref().to_owned();
        let worker = DbWorker::spawn(path.clone(), move || open_store(&path)).await?;
        Ok(SqliteLedger {
            worker: Arc::new(worker),
            answers: Arc::default(),
        })
    }

    /// The file.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// assert!(ledger.path().ends_with("o.db"));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn path(&self) -> &Path {
        self.worker.path()
    }

    /// Runs `f` on the database thread, in order with the pipeline's calls: for the host's
    /// own tables in the same file. Not synced: use [`call_durable`](Self::call_durable) for
    /// a write that must survive a power cut.
    ///
    /// The pipeline's own calls share one transaction per batch (one commit for many
    /// messages); `f` runs after that is committed, with no transaction open, so it may
    /// begin and commit its own. A transaction `f` leaves open is rolled back (and logged),
    /// so it cannot catch the pipeline's calls after it.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Closed`] after [`Ledger::close`](crate::Ledger::close), or
    /// [`LedgerError::Task`] if `f` panicked.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let path = ledger.call(|store| store.path().to_owned()).await?;
    /// assert!(path.ends_with("o.db"));
    /// # Ok(()) }
    /// ```
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteStore) -> T + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.worker.run_alone(f).await
    }

    /// Runs `f` on the database thread and returns once what it wrote is on disk (the
    /// thread syncs a group of such calls together).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call), and [`LedgerError::Sqlite`] when the sync fails (then what
    /// `f` wrote may be lost).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// ledger.call_durable(|store| store.with_connection(|c| c.execute_batch("CREATE TABLE rides (id TEXT)"))).await??;
    /// # Ok(()) }
    /// ```
    pub async fn call_durable<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteStore) -> T + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.worker.run_alone_durable(f).await
    }
}

impl SqliteLedger {
    /// A routing over tables in this ledger's file, run on its database thread inside the
    /// decision's one job: claim, route and ledger in a single hand-off. `route(store, from,
    /// to)` reads the host's tables through `store.with_connection`, inside the batch's
    /// transaction: it must not begin or end one (SQLite refuses a nested `BEGIN`, and a
    /// `COMMIT` or `ROLLBACK` there fails the batch's other calls).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// use proxy_optout_host::{Routing, SessionRoute};
    /// let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let routing = ledger.routing(|store, from, to| {
    ///     let session: Option<String> = store
    ///         .with_connection(|c| c.query_row("SELECT 'ride-1' WHERE ?1 = '+1A'", [from], |r| r.get(0)))
    ///         .ok();
    ///     Ok(session.map(|s| SessionRoute::new(s, from, to, None)).transpose()?)
    /// });
    /// assert_eq!(routing.route("+1A", "+1P").await?.unwrap().session(), "ride-1");
    /// # Ok(()) }
    /// ```
    pub fn routing<F>(&self, route: F) -> SqliteRouting
    where
        F: Fn(&SqliteStore, &str, &str) -> RouteResult + Send + Sync + 'static,
    {
        SqliteRouting {
            ledger: self.clone(),
            route: Arc::new(route),
        }
    }
}

/// A routing over tables in a [`SqliteLedger`]'s file; see [`SqliteLedger::routing`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
/// let routing = ledger.routing(|_, _, _| Ok(None));
/// assert!(format!("{routing:?}").contains("SqliteRouting"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteRouting {
    ledger: SqliteLedger,
    route: SqliteRouteFn,
}

impl std::fmt::Debug for SqliteRouting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteRouting")
            .field("ledger", &self.ledger.path())
            .finish_non_exhaustive()
    }
}

impl Routing for SqliteRouting {
    fn route<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
    ) -> crate::routing::BoxFuture<'a, RouteResult> {
        let (route, from, to) = (self.route.clone(), from.to_owned(), to.to_owned());
        Box::pin(async move {
            self.ledger
                .call(move |store| route(store, &from, &to))
                .await
                .map_err(crate::RoutingError::unavailable)?
        })
    }

    fn colocated(&self) -> Option<Colocated> {
        Some(Colocated(ColocatedKind::Sqlite {
            worker: self.ledger.worker.clone(),
            route: self.route.clone(),
        }))
    }
}

/// The whole decision, on the database thread.
fn decide(
    store: &SqliteStore,
    core: &RelayCore,
    policy: &dyn crate::Policy,
    m: &Message,
    route: &Routed,
) -> Result<Decided, DecideError> {
    let mut resumed = false;
    if let Some(id) = &m.sid {
        match store
            .claim(id)
            .map_err(|e| DecideError::Unavailable(e.into()))?
        {
            Claim::Answered(answer) => return Ok(Decided::Replay(answer)),
            Claim::InProgress => return Ok(Decided::InProgress),
            Claim::TakenOver => resumed = true,
            _ => {}
        }
    }
    let decided = decide_claimed(store, core, policy, m, route, resumed);
    if let (Err(_), Some(id)) = (&decided, &m.sid) {
        // Nothing was sent for it: give the claim back, so the retry is handled in full.
        if let Err(e) = store.release(id) {
            tracing::error!(error = %e, message_sid = %id, "could not release the claim; its retry waits for it to go stale");
        }
    }
    decided
}

fn decide_claimed(
    store: &SqliteStore,
    core: &RelayCore,
    policy: &dyn crate::Policy,
    m: &Message,
    route: &Routed,
    resumed: bool,
) -> Result<Decided, DecideError> {
    let found;
    let route = match route {
        Routed::Resolved(r) => r.as_ref(),
        Routed::Colocated(ColocatedKind::Sqlite { route, .. }) => {
            found = route(store, &m.from, &m.to).map_err(DecideError::Route)?;
            found.as_ref()
        }
        Routed::Colocated(ColocatedKind::Postgres { .. }) => {
            return Err(DecideError::Unavailable(LedgerError::Task(
                "a PostgreSQL routing cannot run on a SQLite ledger".into(),
            )))
        }
    };
    let route = route_of(route)?;
    let inbound = m.inbound();
    let mut steps = core
        .steps(&inbound, route, policy.stop_filter_flag())
        .map_err(DecideError::Input)?;
    while let Some(step) = steps.next() {
        let answer = match step {
            Step::State(key) => Answer::State(store.state(key).map_err(LedgerError::from)),
            Step::Record(key, state) => Answer::Recorded(
                match steps.change() {
                    Some(c) => store.record_change(&m.change(c, steps.outcome())),
                    None => store.record(key, state),
                }
                .map_err(LedgerError::from),
            ),
            other => policy_answer(policy, &other).unwrap_or(Answer::Unavailable),
        };
        steps.answer(answer);
    }
    let outcome = steps
        .finish()
        .map_err(|e| DecideError::Ledger(Box::new(e)))?;
    Ok(Decided::Outcome {
        outcome: Box::new(outcome.into_owned()),
        resumed,
    })
}

impl Backend for SqliteLedger {
    fn runs(&self, colocated: &ColocatedKind) -> bool {
        matches!(colocated, ColocatedKind::Sqlite { worker, .. } if Arc::ptr_eq(worker, &self.worker))
    }

    fn decide(
        &self,
        core: Arc<RelayCore>,
        policy: Arc<dyn crate::Policy>,
        message: Arc<Message>,
        route: Routed,
    ) -> BoxFuture<'_, Result<Decided, DecideError>> {
        Box::pin(async move {
            // The whole decision in one trip to the database thread: three trips (claim,
            // read, write) cost more in thread hand-offs than the queries themselves.
            let sid = message.sid.clone();
            let decided = self.worker.run_durable(
                move |store| Ok(decide(store, &core, &*policy, &message, &route)),
                move |store| {
                    // Not on disk: give the claim back so the retry is handled in full.
                    if let Some(id) = sid {
                        let _ = store.release(&id);
                    }
                },
            );
            match decided.await {
                Ok(decided) => decided,
                Err(e) => Err(DecideError::Unavailable(e)),
            }
        })
    }

    fn complete(
        &self,
        message_id: String,
        answer: String,
        on_error: Box<dyn FnOnce(LedgerError) + Send>,
    ) -> BoxFuture<'_, ()> {
        // Not waited for: the thread runs calls in order, and the group this answer joins
        // was queued no later than now, so any delivery that arrives after this returns is
        // claimed after the answer is stored.
        let queued = if self.answers.push((message_id, answer, on_error)) {
            let answers = self.answers.clone();
            self.worker
                .submit(move |store| store_answers(store, answers.take_all()))
                .inspect_err(|_| {
                    for (_, _, on_error) in self.answers.take_all() {
                        on_error(LedgerError::Closed);
                    }
                })
        } else {
            Ok(())
        };
        Box::pin(async move {
            if let Err(e) = queued {
                tracing::error!(error = %e, "could not queue the answer; a retry is handled again");
            }
        })
    }

    fn release(&self, message_id: String) -> BoxFuture<'_, Result<(), LedgerError>> {
        Box::pin(
            self.worker
                .run(move |store| Ok(store.release(&message_id)?)),
        )
    }

    fn refused(
        &self,
        core: Arc<RelayCore>,
        from: String,
        to: String,
    ) -> BoxFuture<'_, Result<(), FeedbackError<LedgerError>>> {
        Box::pin(async move {
            let (f, t) = (from.clone(), to.clone());
            let run = self.worker.run_durable(
                move |store| {
                    let feedback = Feedback::Refused { from: &f, to: &t };
                    Ok(match core.feedback(&feedback) {
                        Ok(out) => {
                            let now = crate::message::now_ms();
                            let recorded = out.change().map(|c| {
                                store
                                    .record_change(&c.with_received_at(now))
                                    .map_err(LedgerError::from)
                            });
                            out.settle(recorded).map(|_| ())
                        }
                        Err(e) => Err(FeedbackError::Input(e)),
                    })
                },
                |_| {},
            );
            match run.await {
                Ok(result) => result,
                Err(source) => Err(FeedbackError::Record {
                    key: LedgerKey::new(&from, &to).to_owned(),
                    state: OptState::OptedOut,
                    source,
                }),
            }
        })
    }

    fn state(
        &self,
        scope: String,
        participant: String,
    ) -> BoxFuture<'_, Result<OptState, LedgerError>> {
        Box::pin(
            self.worker
                .run(move |store| Ok(store.state(LedgerKey::new(&scope, &participant))?)),
        )
    }

    fn confirmed(
        &self,
        scope: String,
        participant: String,
        state: OptState,
        at_ms: u64,
    ) -> BoxFuture<'_, Result<(), LedgerError>> {
        Box::pin(self.worker.run(move |store| {
            Ok(store.confirmed(LedgerKey::new(&scope, &participant), state, at_ms)?)
        }))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), LedgerError>> {
        Box::pin(self.worker.run(|store| {
            store.with_connection(|c| {
                c.prepare_cached("SELECT count(*) FROM opt_out_ledger WHERE 0")?
                    .query_row([], |r| r.get::<_, i64>(0))
            })?;
            Ok(())
        }))
    }

    fn purge(&self) -> BoxFuture<'_, Result<u64, LedgerError>> {
        Box::pin(
            self.worker
                .run(|store| Ok(store.purge_processed(proxy_optout_sqlite::RETENTION)? as u64)),
        )
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.worker.stop())
    }
}
