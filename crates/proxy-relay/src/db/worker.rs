//! One thread that runs every SQLite call of the server, in arrival order.
//!
//! SQLite takes one writer at a time and each store connection sits behind a mutex, so
//! handing each call to tokio's blocking pool made tens of threads queue on the same lock,
//! and the profile was mostly their sleeps and wake-ups. One thread with a queue does the
//! same work back to back; under load it never sleeps between calls.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use super::DbError;

type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct DbWorker {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for DbWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbWorker")
    }
}

impl DbWorker {
    pub(crate) fn spawn() -> Result<DbWorker, DbError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("proxy-relay-sqlite".into())
            .spawn(move || {
                for job in queue {
                    // A panicking call drops its answer channel (the caller gets an error);
                    // the thread goes on serving the others.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            })
            .map_err(|e| DbError::Task(format!("cannot start the database thread: {e}")))?;
        Ok(DbWorker { jobs })
    }

    /// Runs `f` on the database thread and waits (asynchronously) for its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.call(f).await?
    }

    /// Queues `f` without waiting for it. Jobs run in the order they were queued, so a job
    /// queued later sees what this one wrote.
    pub(crate) fn submit(&self, f: impl FnOnce() + Send + 'static) -> Result<(), DbError> {
        self.jobs
            .send(Box::new(f))
            .map_err(|_| DbError::Task("the database thread has stopped".into()))
    }

    /// Runs `f` on the database thread; `Err` only when the thread could not run it.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, DbError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| DbError::Task("the database thread has stopped".into()))?;
        rx.await
            .map_err(|_| DbError::Task("a database call panicked".into()))
    }
}
