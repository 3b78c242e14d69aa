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
/// A durable call: runs, and returns what to do once the batch's sync is known.
type Durable = Box<dyn FnOnce(&SqliteStore) -> Settle + Send>;
type Settle = Box<dyn FnOnce(&SqliteStore, Result<(), LedgerError>) + Send>;

/// The most durable calls one sync covers.
const BATCH: usize = 128;

enum Order {
    Run(Job),
    Durable(Durable),
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
                let mut settle: Vec<Settle> = Vec::new();
                while let Ok(first) = queue.recv() {
                    let mut next = Some(first);
                    while let Some(order) = next.take() {
                        match order {
                            // A panicking call drops its answer channel (the caller gets an
                            // error); the thread goes on serving the others.
                            Order::Run(job) => {
                                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&store)));
                            }
                            Order::Durable(job) => {
                                if let Ok(s) =
                                    std::panic::catch_unwind(AssertUnwindSafe(|| job(&store)))
                                {
                                    settle.push(s);
                                }
                            }
                            Order::Stop(done) => {
                                finish(&store, &mut settle);
                                drop(store);
                                let _ = done.send(());
                                return;
                            }
                        }
                        if settle.len() < BATCH {
                            next = queue.try_recv().ok();
                        }
                    }
                    finish(&store, &mut settle);
                }
            })
            .map_err(|e| LedgerError::Task(format!("cannot start the database thread: {e}")))?;
        ready
            .await
            .map_err(|_| LedgerError::Task("the database thread stopped while opening".into()))??;
        Ok(DbWorker { orders, path })
    }

    /// Runs `f` on the database thread and waits (asynchronously) for its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteStore) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.orders
            .send(Order::Run(Box::new(move |store| {
                let _ = tx.send(f(store));
            })))
            .map_err(|_| stopped())?;
        rx.await
            .map_err(|_| LedgerError::Task("a database call panicked".into()))?
    }

    /// Runs `f` on the database thread as a durable call: its writes are synced (with every
    /// other durable call of its batch) before `f`'s result is answered. If the sync fails,
    /// `undo` runs on the thread (to give back a claim, say) and the caller gets the error.
    pub(crate) async fn run_durable<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteStore) -> Result<T, LedgerError> + Send + 'static,
        undo: impl FnOnce(&SqliteStore) + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.orders
            .send(Order::Durable(Box::new(move |store| {
                let result = f(store);
                Box::new(
                    move |store: &SqliteStore, synced: Result<(), LedgerError>| {
                        let answer = match (result, synced) {
                            (Ok(v), Ok(())) => Ok(v),
                            (Err(e), _) => Err(e),
                            (Ok(_), Err(e)) => {
                                undo(store);
                                Err(e)
                            }
                        };
                        let _ = tx.send(answer);
                    },
                )
            })))
            .map_err(|_| stopped())?;
        rx.await
            .map_err(|_| LedgerError::Task("a database call panicked".into()))?
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `f` without waiting for it. Jobs run in the order they were queued, so a job
    /// queued later sees what this one wrote.
    pub(crate) fn submit(
        &self,
        f: impl FnOnce(&SqliteStore) + Send + 'static,
    ) -> Result<(), LedgerError> {
        self.orders
            .send(Order::Run(Box::new(f)))
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

/// Syncs the batch's writes once, then answers every durable call in it.
fn finish(store: &SqliteStore, settle: &mut Vec<Settle>) {
    if settle.is_empty() {
        return;
    }
    let synced = store.sync().map_err(LedgerError::from);
    for s in settle.drain(..) {
        let result = match &synced {
            Ok(()) => Ok(()),
            Err(e) => Err(LedgerError::Task(format!(
                "the batch could not be synced: {e}"
            ))),
        };
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| s(store, result)));
    }
}
