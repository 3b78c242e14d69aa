//! SQLite: one file, held exclusively by this process, every call on one database thread
//! ([`worker`](super::worker)), which group-commits the durable ones. The store crate keeps
//! the ledger and the processed message ids; the session tables sit beside them in the same
//! file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proxy_optout::{
    Answer, Feedback, FeedbackError, LedgerKey, OptOutStore, OptState, RelayCore, Step,
};
use proxy_optout_sqlite::{Claim, Durability, Options, SqliteStore};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::worker::DbWorker;
use super::{
    assemble, flag, now_ms, pick_proxy, policy_answer, route_of, route_row, AdminError, Backend,
    BoxFuture, DbError, DecideError, Decided, SessionHead, ROUTE, SESSION_SCHEMA,
    SESSION_SCHEMA_VERSION,
};
use crate::inbound::Message;
use crate::sessions::{
    FieldError, NewSession, RouteRow, Session, SessionParticipant, SessionStatus,
};

#[derive(Debug)]
pub(super) struct SqliteBackend {
    worker: DbWorker,
}

fn open_store(path: &Path) -> Result<SqliteStore, DbError> {
    // Exclusive: this process is the file's only user (SQLite is the single-host setup), so
    // no transaction pays for file locks, and a second server on the same file fails at start
    // instead of sharing it unsafely. Commits are not synced one by one: the database thread
    // group-commits every durable call (claims, ledger and session writes) before answering
    // it. A stored answer is not a durable call: a power cut can lose it, and the retry then
    // finds the claim unanswered and asks the provider before sending anything again.
    let store = SqliteStore::open_with(
        path,
        Options::default()
            .durability(Durability::Normal)
            .exclusive(true)
            .busy_timeout(std::time::Duration::ZERO),
    )?;
    // Nobody else can hold the file: an unanswered claim belongs to a process that died.
    let abandoned = store.abandon_claims()?;
    if abandoned > 0 {
        tracing::warn!(
            abandoned,
            "claims left unanswered by a previous run; their redeliveries ask the provider before sending"
        );
    }
    let found = store.with_connection(|c| {
        let tx = Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
        tx.execute_batch(SESSION_SCHEMA)?;
        let found: Option<i32> =
            tx.query_row("SELECT max(version) FROM proxy_relay_schema", [], |r| {
                r.get(0)
            })?;
        if found.is_none() {
            tx.execute(
                "INSERT INTO proxy_relay_schema (version) VALUES (?1)",
                params![SESSION_SCHEMA_VERSION],
            )?;
        }
        tx.commit()?;
        Ok(found)
    })?;
    match found {
        Some(v) if v > SESSION_SCHEMA_VERSION => Err(DbError::SchemaTooNew {
            found: v,
            supported: SESSION_SCHEMA_VERSION,
        }),
        _ => Ok(store),
    }
}

impl SqliteBackend {
    pub(super) async fn open(path: PathBuf) -> Result<SqliteBackend, DbError> {
        let worker = DbWorker::spawn(move || open_store(&path)).await?;
        Ok(SqliteBackend { worker })
    }
}

fn route(store: &SqliteStore, from: &str, to: &str) -> Result<Option<RouteRow>, DbError> {
    let row = store.with_connection(|c| {
        c.prepare_cached(ROUTE)?
            .query_row(params![from, to], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .optional()
    })?;
    row.map(|(session, other, other_proxy)| route_row(session, from, to, other, other_proxy))
        .transpose()
}

/// The whole decision, on the database thread.
fn decide(store: &SqliteStore, core: &RelayCore, m: &Message) -> Result<Decided, DecideError> {
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
    let decided = decide_claimed(store, core, m, resumed);
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
    m: &Message,
    resumed: bool,
) -> Result<Decided, DecideError> {
    let row = route(store, &m.from, &m.to).map_err(DecideError::Unavailable)?;
    let route = route_of(row.as_ref())?;
    let inbound = m.inbound();
    let mut steps = core
        .steps(&inbound, route, flag())
        .map_err(DecideError::Input)?;
    while let Some(step) = steps.next() {
        let answer = match step {
            Step::State(key) => Answer::State(store.state(key).map_err(DbError::from)),
            Step::Record(key, state) => {
                Answer::Recorded(store.record(key, state).map_err(DbError::from))
            }
            other => policy_answer(&other).unwrap_or(Answer::Unavailable),
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

fn used_proxies(tx: &Connection, identifier: &str) -> rusqlite::Result<Vec<String>> {
    tx.prepare_cached(
        "SELECT proxy_identifier FROM relay_participants WHERE identifier = ?1 AND active = 1",
    )?
    .query_map(params![identifier], |r| r.get(0))?
    .collect()
}

fn create(
    store: &SqliteStore,
    sid: &str,
    request: &NewSession,
    pool: &[String],
) -> Result<Session, AdminError> {
    let result = store.with_connection(|c| {
        // IMMEDIATE: the write lock is held from the first read, so the numbers picked below
        // cannot be taken by another connection before the insert.
        let tx = Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
        if let Some(name) = &request.unique_name {
            let taken: Option<String> = tx
                .query_row(
                    "SELECT sid FROM relay_sessions WHERE unique_name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(other) = taken {
                return Ok(Err(AdminError::Conflict(FieldError::new(
                    "unique_name",
                    format!("{name:?} is already the name of session {other}"),
                ))));
            }
        }
        let created = now_ms();
        tx.execute(
            "INSERT INTO relay_sessions (sid, unique_name, status, created_at) VALUES (?1, ?2, 'open', ?3)",
            params![sid, request.unique_name, created],
        )?;
        let mut participants = Vec::with_capacity(2);
        for (i, p) in request.participants.iter().enumerate() {
            let used = used_proxies(&tx, &p.identifier)?;
            let proxy =
                match pick_proxy(i, &p.identifier, p.proxy_identifier.as_deref(), pool, &used) {
                    Ok(proxy) => proxy,
                    Err(e) => return Ok(Err(e)),
                };
            tx.execute(
                "INSERT INTO relay_participants
                     (session_sid, position, identifier, proxy_identifier, friendly_name, active)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1)",
                params![sid, i as i64, p.identifier, proxy, p.friendly_name],
            )?;
            participants.push(SessionParticipant {
                identifier: p.identifier.clone(),
                proxy_identifier: proxy,
                friendly_name: p.friendly_name.clone(),
            });
        }
        tx.commit()?;
        Ok(Ok(Session {
            sid: sid.to_owned(),
            unique_name: request.unique_name.clone(),
            status: SessionStatus::Open,
            created_at_ms: created,
            closed_at_ms: None,
            participants,
        }))
    });
    result.map_err(|e| AdminError::Store(e.into()))?
}

fn read(c: &Connection, head: SessionHead) -> Result<Session, DbError> {
    let participants = c
        .prepare_cached(
            "SELECT identifier, proxy_identifier, friendly_name FROM relay_participants
             WHERE session_sid = ?1 ORDER BY position",
        )?
        .query_map(params![head.0], |r| {
            Ok(SessionParticipant {
                identifier: r.get(0)?,
                proxy_identifier: r.get(1)?,
                friendly_name: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    assemble(head, participants)
}

fn head(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionHead> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

const HEAD: &str = "SELECT sid, unique_name, status, created_at, closed_at FROM relay_sessions";

fn session(store: &SqliteStore, sid: &str) -> Result<Option<Session>, DbError> {
    let found = store.with_connection(|c| {
        c.prepare_cached(&format!("{HEAD} WHERE sid = ?1"))?
            .query_row(params![sid], head)
            .optional()
    })?;
    match found {
        None => Ok(None),
        Some(h) => store.with_connection(|c| Ok(read(c, h)))?.map(Some),
    }
}

fn sessions(
    store: &SqliteStore,
    status: Option<SessionStatus>,
    limit: u32,
) -> Result<Vec<Session>, DbError> {
    let heads = store.with_connection(|c| {
        c.prepare_cached(&format!(
            "{HEAD} WHERE (?1 IS NULL OR status = ?1) ORDER BY created_at DESC, sid LIMIT ?2"
        ))?
        .query_map(params![status.map(SessionStatus::as_str), limit], head)?
        .collect::<rusqlite::Result<Vec<_>>>()
    })?;
    heads
        .into_iter()
        .map(|h| store.with_connection(|c| Ok(read(c, h)))?)
        .collect()
}

fn close(store: &SqliteStore, sid: &str) -> Result<Option<Session>, DbError> {
    store.with_connection(|c| {
        let tx = Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE relay_sessions SET status = 'closed', closed_at = ?2
             WHERE sid = ?1 AND status = 'open'",
            params![sid, now_ms()],
        )?;
        tx.execute(
            "UPDATE relay_participants SET active = 0 WHERE session_sid = ?1",
            params![sid],
        )?;
        tx.commit()
    })?;
    session(store, sid)
}

impl Backend for SqliteBackend {
    fn decide(
        &self,
        core: Arc<RelayCore>,
        message: Arc<Message>,
    ) -> BoxFuture<'_, Result<Decided, DecideError>> {
        Box::pin(async move {
            // The whole decision in one trip to the database thread: four trips (claim,
            // route, read, write) cost more in thread hand-offs than the queries themselves.
            let sid = message.sid.clone();
            let decided = self.worker.run_durable(
                move |store| Ok(decide(store, &core, &message)),
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
        on_error: Box<dyn FnOnce(DbError) + Send>,
    ) -> BoxFuture<'_, ()> {
        // Not waited for: the thread runs calls in order, so any delivery that arrives after
        // this returns is claimed after the answer is stored.
        let queued = self.worker.submit(move |store| {
            if let Err(e) = store.complete(&message_id, &answer) {
                on_error(e.into());
            }
        });
        Box::pin(async move {
            if let Err(e) = queued {
                tracing::error!(error = %e, "could not queue the answer; a retry is handled again");
            }
        })
    }

    fn release(&self, message_id: String) -> BoxFuture<'_, Result<(), DbError>> {
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
    ) -> BoxFuture<'_, Result<(), FeedbackError<DbError>>> {
        Box::pin(async move {
            let (f, t) = (from.clone(), to.clone());
            let run = self.worker.run_durable(
                move |store| {
                    let feedback = Feedback::Refused { from: &f, to: &t };
                    Ok(match core.feedback(&feedback) {
                        Ok(out) => {
                            let recorded = out
                                .ledger()
                                .map(|c| store.record(c.key(), c.state()).map_err(DbError::from));
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
    ) -> BoxFuture<'_, Result<OptState, DbError>> {
        Box::pin(
            self.worker
                .run(move |store| Ok(store.state(LedgerKey::new(&scope, &participant))?)),
        )
    }

    fn scalar(&self, sql: String) -> BoxFuture<'_, Result<i64, DbError>> {
        Box::pin(
            self.worker.run(move |store| {
                Ok(store.with_connection(|c| c.query_row(&sql, [], |r| r.get(0)))?)
            }),
        )
    }

    fn execute(&self, sql: String) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(
            self.worker
                .run(move |store| Ok(store.with_connection(|c| c.execute_batch(&sql))?)),
        )
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(self.worker.run(|store| {
            store.with_connection(|c| {
                c.prepare_cached("SELECT count(*) FROM relay_sessions WHERE 0")?
                    .query_row([], |r| r.get::<_, i64>(0))
            })?;
            Ok(())
        }))
    }

    fn purge(&self) -> BoxFuture<'_, Result<u64, DbError>> {
        Box::pin(
            self.worker
                .run(|store| Ok(store.purge_processed(proxy_optout_sqlite::RETENTION)? as u64)),
        )
    }

    fn create_session(
        &self,
        sid: String,
        request: NewSession,
        pool: Arc<[String]>,
    ) -> BoxFuture<'_, Result<Session, AdminError>> {
        Box::pin(async move {
            self.worker
                .run_durable(
                    move |store| Ok(create(store, &sid, &request, &pool)),
                    |_| {},
                )
                .await?
        })
    }

    fn session(&self, sid: String) -> BoxFuture<'_, Result<Option<Session>, DbError>> {
        Box::pin(self.worker.run(move |store| session(store, &sid)))
    }

    fn sessions(
        &self,
        status: Option<SessionStatus>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Session>, DbError>> {
        Box::pin(self.worker.run(move |store| sessions(store, status, limit)))
    }

    fn close_session(&self, sid: String) -> BoxFuture<'_, Result<Option<Session>, DbError>> {
        Box::pin(
            self.worker
                .run_durable(move |store| close(store, &sid), |_| {}),
        )
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.worker.stop())
    }
}
