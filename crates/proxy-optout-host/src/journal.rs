//! The local journal: authenticated webhooks that could not be handled now (the database was
//! unreachable, a send reached no verdict, another request held the message), kept in a file
//! of this instance and synced before the webhook is answered, then handled in arrival order
//! once they can be. Twilio does not retry a 5xx by default, so without it a database outage
//! would lose every message that arrived during it, STOPs included.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_optout::Category;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::Notify;

use crate::message::Message;

/// The journal could not be written or read: the only case left in which a webhook gets a 5xx.
///
/// ```
/// let e = proxy_optout_host::JournalError { path: "j.db".into(), reason: "disk full".into() };
/// assert_eq!(e.to_string(), "the journal j.db failed: disk full");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the journal {path} failed: {reason}")]
pub struct JournalError {
    /// The journal's file.
    pub path: PathBuf,
    /// What failed.
    pub reason: String,
}

/// One journaled webhook.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) seq: i64,
    pub(crate) received_at: SystemTime,
    /// A send of it may have gone out before it was journaled: ask the provider first.
    pub(crate) maybe_sent: bool,
    pub(crate) message: Message,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS journal (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order
    message_sid  TEXT UNIQUE,                         -- one entry per MessageSid
    received_at  INTEGER NOT NULL,                    -- unix milliseconds
    maybe_sent   INTEGER NOT NULL,
    sender       TEXT NOT NULL,
    proxy        TEXT NOT NULL,
    body         TEXT NOT NULL,
    media        INTEGER NOT NULL,
    opt_out_type TEXT
);
";

/// The journal file, with its depth kept in memory for readiness and metrics.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    depth: AtomicUsize,
    grew: Notify,
}

impl Journal {
    /// Opens (creating) the journal at `path`: WAL, every commit synced.
    pub(crate) fn open(path: &Path) -> Result<Journal, JournalError> {
        let err = |e: rusqlite::Error| JournalError {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let conn = Connection::open(path).map_err(err)?;
        // One instance per journal: a second one on the same file fails at start instead of
        // replaying what the first journaled.
        conn.pragma_update_and_check(None, "locking_mode", "EXCLUSIVE", |r| r.get::<_, String>(0))
            .map_err(err)?;
        conn.busy_timeout(Duration::ZERO).map_err(err)?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(|e| JournalError {
                path: path.to_owned(),
                reason: format!(
                    "{e} (another instance may be using it: give each instance its own journal file)"
                ),
            })?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let depth: i64 = conn
            .query_row("SELECT count(*) FROM journal", [], |r| r.get(0))
            .map_err(err)?;
        Ok(Journal {
            path: path.to_owned(),
            conn: Arc::new(Mutex::new(conn)),
            depth: AtomicUsize::new(usize::try_from(depth).unwrap_or(0)),
            grew: Notify::new(),
        })
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// How many webhooks wait in it.
    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, JournalError> {
        let (conn, path) = (self.conn.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&conn)
        })
        .await
        .map_err(|e| JournalError {
            path: path.clone(),
            reason: e.to_string(),
        })?
        .map_err(|e| JournalError {
            path,
            reason: e.to_string(),
        })
    }

    /// Keeps `message`, synced before this returns. A message id already journaled is kept
    /// once (its `maybe_sent` is raised if this delivery says so).
    pub(crate) async fn append(
        &self,
        message: &Message,
        maybe_sent: bool,
    ) -> Result<(), JournalError> {
        let m = message.clone();
        let added = self
            .run(move |c| {
                let added = c
                    .prepare_cached(
                        "INSERT INTO journal
                           (message_sid, received_at, maybe_sent, sender, proxy, body, media, opt_out_type)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (message_sid) DO UPDATE SET maybe_sent = max(maybe_sent, excluded.maybe_sent)",
                    )?
                    .execute(params![
                        m.sid,
                        i64::try_from(m.received_ms).unwrap_or(i64::MAX),
                        maybe_sent,
                        m.from,
                        m.to,
                        m.body,
                        m.media,
                        m.opt_out_type.map(Category::opt_out_type),
                    ])?;
                // An upsert reports 1 for an update too: count rows to know the depth.
                let depth: i64 = c.query_row("SELECT count(*) FROM journal", [], |r| r.get(0))?;
                Ok((added, depth))
            })
            .await?;
        self.depth
            .store(usize::try_from(added.1).unwrap_or(0), Ordering::SeqCst);
        self.grew.notify_one();
        Ok(())
    }

    /// The oldest entry.
    pub(crate) async fn oldest(&self) -> Result<Option<Entry>, JournalError> {
        self.run(|c| {
            c.prepare_cached(
                "SELECT seq, received_at, maybe_sent, message_sid, sender, proxy, body, media, opt_out_type
                 FROM journal ORDER BY seq LIMIT 1",
            )?
            .query_row([], |r| {
                let opt_out: Option<String> = r.get(8)?;
                let received_ms = u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0);
                Ok(Entry {
                    seq: r.get(0)?,
                    received_at: UNIX_EPOCH + Duration::from_millis(received_ms),
                    maybe_sent: r.get(2)?,
                    message: Message {
                        sid: r.get(3)?,
                        from: r.get(4)?,
                        to: r.get(5)?,
                        body: r.get(6)?,
                        media: r.get(7)?,
                        opt_out_type: opt_out
                            .and_then(|t| Category::from_opt_out_type(&t).ok()),
                        received_ms,
                        replayed: true,
                    },
                })
            })
            .optional()
        })
        .await
    }

    /// Notes that a send of entry `seq` may have gone out.
    pub(crate) async fn mark_maybe_sent(&self, seq: i64) -> Result<(), JournalError> {
        self.run(move |c| {
            c.execute(
                "UPDATE journal SET maybe_sent = 1 WHERE seq = ?1",
                params![seq],
            )
            .map(|_| ())
        })
        .await
    }

    /// Removes a handled entry.
    pub(crate) async fn remove(&self, seq: i64) -> Result<(), JournalError> {
        let depth = self
            .run(move |c| {
                c.execute("DELETE FROM journal WHERE seq = ?1", params![seq])?;
                c.query_row("SELECT count(*) FROM journal", [], |r| r.get::<_, i64>(0))
            })
            .await?;
        self.depth
            .store(usize::try_from(depth).unwrap_or(0), Ordering::SeqCst);
        Ok(())
    }

    /// Waits until the journal has an entry.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.grew.notified();
            if self.depth() > 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(sid: &str, body: &str) -> Message {
        Message {
            sid: Some(sid.into()),
            from: "+1A".into(),
            to: "+1P".into(),
            body: body.into(),
            media: 0,
            opt_out_type: Some(Category::OptOut),
            received_ms: 1,
            replayed: false,
        }
    }

    #[tokio::test]
    async fn entries_come_back_in_arrival_order_once_per_message_id_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let j = Journal::open(&path).unwrap();
        j.append(&message("SM1", "STOP"), false).await.unwrap();
        j.append(&message("SM2", "hi"), false).await.unwrap();
        j.append(&message("SM1", "STOP"), true).await.unwrap(); // a redelivery
        assert_eq!(j.depth(), 2);
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.depth(), 2);
        let first = j.oldest().await.unwrap().unwrap();
        // Read back from the journal, it is a replay.
        let replayed = Message {
            replayed: true,
            ..message("SM1", "STOP")
        };
        assert_eq!(first.message, replayed);
        assert!(
            first.maybe_sent,
            "the redelivery said a send may have gone out"
        );
        j.remove(first.seq).await.unwrap();
        let second = j.oldest().await.unwrap().unwrap();
        assert_eq!(
            (second.message.body.as_str(), second.maybe_sent),
            ("hi", false)
        );
        j.remove(second.seq).await.unwrap();
        assert_eq!(j.depth(), 0);
        assert!(j.oldest().await.unwrap().is_none());
    }
}
