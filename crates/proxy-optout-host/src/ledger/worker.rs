//! One thread that owns the SQLite store and runs every call of the pipeline (and the host's own, through `SqliteLedger::call`) on it, in arrival
//! order.
//!
//! SQLite takes one writer at a time and the store's connection sits behind a mutex, so
//! handing each call to tokio's blocking pool made tens of threads queue on the same lock,
//! and the profile was mostly their sleeps and wake-ups. One thread with a queue does the
//! same work back to back; under load it never sleeps between calls. Because the thread is
//! the store's only owner, stopping it closes the connection and releases the file's lock.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use proxy_optout_sqlite::SqliteStore;

use std::path::{Path, PathBuf};

use super::LedgerError;

type Job = Box<dyn FnOnce(&SqliteStore) + Send>;
/// A call that returns what to do once its writes are known to be committed (or synced).
type Durable = Box<dyn FnOnce(&SqliteStore) -> Settle + Send>;
type Settle = Box<dyn FnOnce(&SqliteStore, Result<(), LedgerError>) + Send>;

/// The most calls one transaction (and one sync) covers.
const BATCH: usize = 128;

/// Batches committed after which the thread checkpoints the WAL at its next idle moment.
///
/// SQLite's automatic checkpoint (at 8,000 WAL pages on the ledger) runs inside whichever
/// commit crosses the mark, on this thread, so every call queued behind it waits for it:
/// under load on a slow disk, 130–320 ms at SQLite's default of 1,000 pages. Checkpointing
/// when the queue is idle moves that work into the gaps between messages, and each such
/// checkpoint copies only the batches since the last one.
/// Under sustained load there is no idle moment and the automatic checkpoint still bounds
/// the WAL.
const CHECKPOINT_AFTER: usize = 32;

/// How long the queue must stay empty, once a checkpoint is due, for the thread to run it.
const IDLE: std::time::Duration = std::time::Duration::from_micros(500);

enum Order {
    /// A host's own call ([`SqliteLedger::call`](super::SqliteLedger::call)): runs with no
    /// transaction open, so it may begin its own, and is answered as soon as it returns.
    Alone(Job),
    /// A host's durable call: as `Alone`, answered once the batch's sync is known.
    AloneDurable(Durable),
    /// One of the ledger's own calls: runs inside the batch's transaction (the store's
    /// methods nest in it as savepoints) and is answered once that commits, or, if `durable`,
    /// once it is synced.
    Batched { job: Durable, durable: bool },
    /// Close the store, then say so.
    Stop(tokio::sync::oneshot::Sender<()>),
}

pub(crate) struct DbWorker {
    orders: mpsc::Sender<Order>,
    path: PathBuf,
}

impl std::fmt::Debug for DbWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbWorker")
    }
}

fn stopped() -> LedgerError {
    LedgerError::Closed
}

impl DbWorker {
    /// Starts the thread, which opens the store with `open` and then serves calls.
    pub(crate) async fn spawn(
        path: PathBuf,
        open: impl FnOnce() -> Result<SqliteStore, LedgerError> + Send + 'static,
    ) -> Result<DbWorker, LedgerError> {
        let (orders, queue) = mpsc::channel::<Order>();
        let (opened, ready) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("proxy-optout-sqlite".into())
            .spawn(move || {
                let store = match open() {
                    Ok(store) => {
                        let _ = opened.send(Ok(()));
                        store
                    }
                    Err(e) => {
                        let _ = opened.send(Err(e));
                        return;
                    }
                };
                let mut batch = Batch::new(&store);
                let mut since_checkpoint = 0usize;
                loop {
                    let received = if since_checkpoint >= CHECKPOINT_AFTER {
                        queue.recv_timeout(IDLE)
                    } else {
                        queue
                            .recv()
                            .map_err(|_| mpsc::RecvTimeoutError::Disconnected)
                    };
                    let first = match received {
                        Ok(order) => order,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            checkpoint(&store);
                            since_checkpoint = 0;
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    let mut next = Some(first);
                    while let Some(order) = next.take() {
                        match order {
                            Order::Batched { job, durable } => batch.run(job, durable),
                            // A panicking call drops its answer channel (the caller gets an
                            // error); the thread goes on serving the others.
                            Order::Alone(job) => {
                                batch.commit();
                                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&store)));
                                close_left_open(&store);
                            }
                            Order::AloneDurable(job) => {
                                batch.commit();
                                if let Ok(s) =
                                    std::panic::catch_unwind(AssertUnwindSafe(|| job(&store)))
                                {
                                    batch.synced.push(s);
                                }
                                close_left_open(&store);
                            }
                            Order::Stop(done) => {
                                batch.finish();
                                drop(batch);
                                drop(store);
                                let _ = done.send(());
                                return;
                            }
                        }
                        if batch.len() < BATCH {
                            next = queue.try_recv().ok();
                        }
                    }
                    batch.finish();
                    since_checkpoint += 1;
                }
            })
            .map_err(|e| LedgerError::Task(format!("cannot start the database thread: {e}")))?;
        ready
            .await
            .map_err(|_| LedgerError::Task("the database thread stopped while opening".into()))??;
        Ok(DbWorker { orders, path })
    }

    /// Runs `f` on the database thread, inside the batch's transaction, and waits
    /// (asynchronously) for its result, which is answered once what `f` wrote is committed.
    /// `f` must not begin or end a transaction: the store's methods nest as savepoints.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteStore) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.batched(false, f, |_| {}).await
    }

    /// As [`run`](Self::run), answered once what `f` wrote is synced (with every other
    /// durable call of its batch). If the commit or the sync fails, `undo` runs on the thread
    /// (to give back a claim, say) and the caller gets the error.
    pub(crate) async fn run_durable<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteStore) -> Result<T, LedgerError> + Send + 'static,
        undo: impl FnOnce(&SqliteStore) + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.batched(true, f, undo).await
    }

    async fn batched<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&SqliteStore) -> Result<T, LedgerError> + Send + 'static,
        undo: impl FnOnce(&SqliteStore) + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.orders
            .send(Order::Batched {
                job: settled(f, undo, tx),
                durable,
            })
            .map_err(|_| stopped())?;
        rx.await
            .map_err(|_| LedgerError::Task("a database call panicked".into()))?
    }

    /// Runs a host's `f` on the database thread with no transaction open (it may begin its
    /// own), answered as soon as it returns.
    pub(crate) async fn run_alone<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteStore) -> T + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.orders
            .send(Order::Alone(Box::new(move |store| {
                let _ = tx.send(f(store));
            })))
            .map_err(|_| stopped())?;
        rx.await
            .map_err(|_| LedgerError::Task("a database call panicked".into()))
    }

    /// As [`run_alone`](Self::run_alone), answered once what `f` wrote is synced.
    pub(crate) async fn run_alone_durable<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteStore) -> T + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.orders
            .send(Order::AloneDurable(settled(
                move |store| Ok(f(store)),
                |_| {},
                tx,
            )))
            .map_err(|_| stopped())?;
        rx.await
            .map_err(|_| LedgerError::Task("a database call panicked".into()))?
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `f` without waiting for it, to run inside the batch's transaction. Jobs run in
    /// the order they were queued, so a job queued later sees what this one wrote. What `f`
    /// returns hears of it if the batch's commit fails after `f` ran.
    pub(crate) fn submit(
        &self,
        f: impl FnOnce(&SqliteStore) -> Box<dyn FnOnce(LedgerError) + Send> + Send + 'static,
    ) -> Result<(), LedgerError> {
        let job: Durable = Box::new(move |store| {
            let on_lost = f(store);
            Box::new(move |_: &SqliteStore, committed: Result<(), LedgerError>| {
                if let Err(e) = committed {
                    on_lost(e);
                }
            })
        });
        self.orders
            .send(Order::Batched {
                job,
                durable: false,
            })
            .map_err(|_| stopped())
    }

    /// Runs every job queued before it (syncing the durable ones), closes the store (the file's lock goes with it) and
    /// ends the thread; later calls fail. Returns once the store is closed.
    pub(crate) async fn stop(&self) {
        let (done, closed) = tokio::sync::oneshot::channel();
        if self.orders.send(Order::Stop(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

/// A call whose answer waits for its writes' commit (and sync): `f`'s result is sent on `tx`
/// then, or, if they were lost, the error, after `undo`.
fn settled<T: Send + 'static>(
    f: impl FnOnce(&SqliteStore) -> Result<T, LedgerError> + Send + 'static,
    undo: impl FnOnce(&SqliteStore) + Send + 'static,
    tx: tokio::sync::oneshot::Sender<Result<T, LedgerError>>,
) -> Durable {
    Box::new(move |store| {
        let result = f(store);
        Box::new(move |store: &SqliteStore, kept: Result<(), LedgerError>| {
            let answer = match (result, kept) {
                (Ok(v), Ok(())) => Ok(v),
                (Err(e), _) => Err(e),
                (Ok(_), Err(e)) => {
                    undo(store);
                    Err(e)
                }
            };
            let _ = tx.send(answer);
        })
    })
}

/// The thread's open transaction and the calls waiting on it.
///
/// Committing each call on its own made SQLite write the pages it touched (a claim's row, the
/// index above it) to the WAL once per call; one transaction for a batch writes each page
/// once, and the batch's sync covers it. Nothing is answered before its commit, so a call's
/// caller never acts on a write that a failed commit loses.
struct Batch<'s> {
    store: &'s SqliteStore,
    open: bool,
    /// Calls that ran in the open transaction, with whether they wait for the sync.
    pending: Vec<(Settle, bool)>,
    /// Calls committed, waiting for the sync.
    synced: Vec<Settle>,
}

impl<'s> Batch<'s> {
    fn new(store: &'s SqliteStore) -> Batch<'s> {
        Batch {
            store,
            open: false,
            pending: Vec::new(),
            synced: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.pending.len() + self.synced.len()
    }

    fn run(&mut self, job: Durable, durable: bool) {
        if !self.open {
            // If even BEGIN fails, the call runs without it: the store's methods then commit
            // one by one, as they would for any caller.
            self.open = statement(self.store, "BEGIN IMMEDIATE").is_ok();
        }
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| job(self.store)));
        if let Ok(settle) = ran {
            if self.open {
                self.pending.push((settle, durable));
            } else if durable {
                self.synced.push(settle);
            } else {
                settle_each(self.store, vec![settle], Ok(()));
            }
        }
        if self.open && autocommit(self.store) {
            // An error that SQLite answers by rolling back the whole transaction (a full
            // disk, an I/O error): every call in it lost its writes.
            self.open = false;
            let lost = std::mem::take(&mut self.pending);
            settle_each(
                self.store,
                lost.into_iter().map(|(s, _)| s).collect(),
                Err("the batch's transaction was rolled back".into()),
            );
        }
    }

    /// Commits the open transaction: answers the calls that need no sync, keeps the others
    /// for it.
    fn commit(&mut self) {
        if !self.open {
            return;
        }
        self.open = false;
        let committed = statement(self.store, "COMMIT").map_err(|e| {
            if !autocommit(self.store) {
                let _ = statement(self.store, "ROLLBACK");
            }
            format!("the batch could not be committed: {e}")
        });
        let mut now = Vec::new();
        for (settle, durable) in self.pending.drain(..) {
            if durable && committed.is_ok() {
                self.synced.push(settle);
            } else {
                now.push(settle);
            }
        }
        settle_each(self.store, now, committed);
    }

    /// Commits, syncs once, then answers every call waiting for it.
    fn finish(&mut self) {
        self.commit();
        if self.synced.is_empty() {
            return;
        }
        let synced = self
            .store
            .sync()
            .map_err(|e| format!("the batch could not be synced: {e}"));
        settle_each(self.store, std::mem::take(&mut self.synced), synced);
    }
}

/// Copies the WAL's committed frames into the database file (`PASSIVE`: it takes no lock
/// the thread does not already hold, so it cannot wait). A failure is only logged: the
/// automatic checkpoint remains, and nothing committed depends on this one.
fn checkpoint(store: &SqliteStore) {
    let done = store.with_connection(|c| {
        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))
    });
    if let Err(e) = done {
        tracing::warn!(error = %e, "an idle checkpoint of the WAL failed");
    }
}

/// A host's call that returned (or panicked) with its own transaction still open: rolled
/// back, so the calls after it are not caught in it (and committed, or lost, with it).
fn close_left_open(store: &SqliteStore) {
    if !autocommit(store) {
        tracing::error!("a database call left its transaction open; it was rolled back");
        let _ = statement(store, "ROLLBACK");
    }
}

fn statement(store: &SqliteStore, sql: &str) -> Result<(), proxy_optout_sqlite::StoreError> {
    store.with_connection(|c| c.prepare_cached(sql)?.execute([]).map(|_| ()))
}

fn autocommit(store: &SqliteStore) -> bool {
    store
        .with_connection(|c| Ok(c.is_autocommit()))
        .unwrap_or(true)
}

fn settle_each(store: &SqliteStore, settles: Vec<Settle>, result: Result<(), String>) {
    for s in settles {
        let one = result.clone().map_err(LedgerError::Task);
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| s(store, one)));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use proxy_optout_sqlite::{Options, SqliteStore};

    use super::*;

    async fn worker(dir: &tempfile::TempDir) -> Arc<DbWorker> {
        let path = dir.path().join("w.db");
        let open = path.clone();
        let w = DbWorker::spawn(path, move || {
            Ok(SqliteStore::open_with(
                &open,
                Options::default().exclusive(true),
            )?)
        })
        .await
        .unwrap();
        w.run_alone(|s| {
            s.with_connection(|c| {
                c.execute_batch(
                    "CREATE TABLE t (v TEXT);
                     CREATE TABLE parent (id INTEGER PRIMARY KEY);
                     CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
                     PRAGMA foreign_keys = ON;",
                )
            })
        })
        .await
        .unwrap()
        .unwrap();
        Arc::new(w)
    }

    /// Holds the database thread until the returned sender is dropped, so the calls queued
    /// meanwhile form one batch.
    fn hold(w: &Arc<DbWorker>) -> std::sync::mpsc::Sender<()> {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let w = w.clone();
        tokio::spawn(async move {
            w.run_alone(move |_| {
                let _ = held.recv();
            })
            .await
        });
        release
    }

    /// Queues `f` as a batched call from a task of its own, as a webhook handler would.
    fn queue<T: Send + 'static>(
        w: &Arc<DbWorker>,
        f: impl FnOnce(&SqliteStore) -> Result<T, LedgerError> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<T, LedgerError>> {
        let w = w.clone();
        tokio::spawn(async move { w.run(f).await })
    }

    fn insert(v: &'static str) -> impl FnOnce(&SqliteStore) -> Result<bool, LedgerError> {
        move |s| {
            Ok(s.with_connection(|c| {
                c.execute("INSERT INTO t VALUES (?1)", [v])?;
                Ok(c.is_autocommit())
            })?)
        }
    }

    async fn rows(w: &DbWorker) -> Vec<String> {
        w.run_alone(|s| {
            s.with_connection(|c| {
                c.prepare("SELECT v FROM t ORDER BY rowid")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
        })
        .await
        .unwrap()
        .unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_idle_moment_after_enough_batches_checkpoints_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(&dir).await;
        let file = dir.path().join("w.db");
        let main_file = || std::fs::metadata(&file).unwrap().len();
        // A row of about a page: what reaches the database file shows in its size.
        let write = |n: usize| {
            let w = w.clone();
            async move {
                for _ in 0..n {
                    w.run(|s| {
                        Ok(s.with_connection(|c| {
                            c.execute("INSERT INTO t VALUES (?1)", ["x".repeat(4000)])
                        })?)
                    })
                    .await
                    .unwrap();
                }
            }
        };
        let before = main_file();
        // Short of the mark (the schema's call was a batch too): the rows stay in the WAL
        // however long the thread idles.
        write(CHECKPOINT_AFTER - 2).await;
        tokio::time::sleep(IDLE * 40).await;
        assert_eq!(main_file(), before, "checkpointed before the mark");
        // Past it: the next idle moment copies every row into the database file. Waited for
        // rather than slept on, so a thread starved by a busy test run is not a failure.
        write(4).await;
        let rows = u64::try_from(CHECKPOINT_AFTER + 2).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while main_file() < before + rows * 4000 && std::time::Instant::now() < deadline {
            tokio::time::sleep(IDLE * 4).await;
        }
        assert!(
            main_file() >= before + rows * 4000,
            "{} bytes after the idle moment, {before} before",
            main_file()
        );
        // The thread serves calls after it as before.
        assert_eq!(self::rows(&w).await.len(), CHECKPOINT_AFTER + 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_runs_in_one_transaction_and_a_host_call_outside_it() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(&dir).await;
        let release = hold(&w);
        let a = queue(&w, insert("a"));
        let b = tokio::spawn({
            let w = w.clone();
            async move {
                w.run_durable(
                    |s| {
                        Ok(s.with_connection(|c| {
                            c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                        })?)
                    },
                    |_| {},
                )
                .await
            }
        });
        tokio::task::yield_now().await;
        drop(release);
        // Inside the batch's transaction, and a later call sees an earlier one's write.
        assert!(!a.await.unwrap().unwrap());
        assert_eq!(b.await.unwrap().unwrap(), 1);
        let alone = w
            .run_alone(|s| s.with_connection(|c| Ok(c.is_autocommit())))
            .await
            .unwrap()
            .unwrap();
        assert!(alone, "a host's call runs with no transaction open");
        assert_eq!(rows(&w).await, ["a"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_commit_fails_every_call_of_its_batch_and_undoes_the_durable_ones() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(&dir).await;
        let undone = Arc::new(AtomicBool::new(false));
        let release = hold(&w);
        let a = tokio::spawn({
            let (w, undone) = (w.clone(), undone.clone());
            async move {
                w.run_durable(insert("a"), move |_| undone.store(true, Ordering::SeqCst))
                    .await
            }
        });
        // A deferred foreign key: the statement succeeds, the COMMIT fails.
        let b = queue(&w, |s| {
            Ok(s.with_connection(|c| c.execute("INSERT INTO child VALUES (99)", []))?)
        });
        tokio::task::yield_now().await;
        drop(release);
        let a = a.await.unwrap();
        assert!(
            matches!(&a, Err(LedgerError::Task(m)) if m.contains("could not be committed")),
            "{a:?}"
        );
        assert!(b.await.unwrap().is_err());
        assert!(undone.load(Ordering::SeqCst), "the durable call's undo ran");
        assert!(rows(&w).await.is_empty(), "nothing of the batch was kept");
        // The thread goes on: the next batch commits.
        w.run(insert("c")).await.unwrap();
        assert_eq!(rows(&w).await, ["c"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_that_ends_the_batch_transaction_fails_the_calls_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(&dir).await;
        let release = hold(&w);
        let a = queue(&w, insert("a"));
        // As SQLite does itself on some errors (a full disk, an I/O error).
        let b = queue(&w, |s| {
            Ok(s.with_connection(|c| c.execute_batch("ROLLBACK"))?)
        });
        let c = queue(&w, insert("c"));
        tokio::task::yield_now().await;
        drop(release);
        let a = a.await.unwrap();
        assert!(
            matches!(&a, Err(LedgerError::Task(m)) if m.contains("rolled back")),
            "{a:?}"
        );
        assert!(b.await.unwrap().is_err());
        // The call after it opened a new transaction, and was committed.
        assert!(!c.await.unwrap().unwrap());
        assert_eq!(rows(&w).await, ["c"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_transaction_a_host_call_leaves_open_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let w = worker(&dir).await;
        w.run_alone(|s| {
            s.with_connection(|c| c.execute_batch("BEGIN; INSERT INTO t VALUES ('x')"))
        })
        .await
        .unwrap()
        .unwrap();
        assert!(!w.run(insert("y")).await.unwrap());
        assert_eq!(rows(&w).await, ["y"]);
        w.stop().await;
        let store = SqliteStore::open(dir.path().join("w.db")).unwrap();
        let kept: Vec<String> = store
            .with_connection(|c| {
                c.prepare("SELECT v FROM t")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .unwrap();
        assert_eq!(
            kept,
            ["y"],
            "the batch's write is on disk, the abandoned one is not"
        );
    }
}
