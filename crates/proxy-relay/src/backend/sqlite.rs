//! SQLite: the session tables beside the pipeline's ledger in one file, their calls on the
//! ledger's database thread ([`SqliteLedger::call`]), so the file has one user and one lock.

use std::path::PathBuf;
use std::sync::Arc;

use proxy_optout_host::{Ledger, Routing, SessionRoute, SqliteLedger};
use proxy_optout_sqlite::SqliteStore;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{
    assemble, now_ms, pick_proxy, route_row, routing_error, AdminError, Backend, BoxFuture,
    DbError, SessionHead, ROUTE, SESSION_SCHEMA, SESSION_SCHEMA_VERSION,
};
use crate::sessions::{FieldError, NewSession, Session, SessionParticipant, SessionStatus};

#[derive(Debug)]
pub(super) struct SqliteBackend {
    ledger: SqliteLedger,
}

fn migrate(store: &SqliteStore) -> Result<(), DbError> {
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
        _ => Ok(()),
    }
}

impl SqliteBackend {
    pub(super) async fn open(
        path: PathBuf,
    ) -> Result<(SqliteBackend, Ledger, Arc<dyn Routing>), DbError> {
        let ledger = SqliteLedger::open(path).await?;
        if let Err(e) = ledger.call_durable(migrate).await? {
            Ledger::from(ledger).close().await;
            return Err(e);
        }
        // The session lookup runs on the ledger's thread, inside the decision's job.
        let routing =
            ledger.routing(|store, from, to| route(store, from, to).map_err(routing_error));
        Ok((
            SqliteBackend {
                ledger: ledger.clone(),
            },
            ledger.into(),
            Arc::new(routing),
        ))
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteStore) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.ledger.call(f).await?
    }

    async fn run_durable<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteStore) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.ledger.call_durable(f).await?
    }
}

fn route(store: &SqliteStore, from: &str, to: &str) -> Result<Option<SessionRoute>, DbError> {
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
    fn scalar(&self, sql: String) -> BoxFuture<'_, Result<i64, DbError>> {
        Box::pin(
            self.run(move |store| {
                Ok(store.with_connection(|c| c.query_row(&sql, [], |r| r.get(0)))?)
            }),
        )
    }

    fn execute(&self, sql: String) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(self.run(move |store| Ok(store.with_connection(|c| c.execute_batch(&sql))?)))
    }

    fn create_session(
        &self,
        sid: String,
        request: NewSession,
        pool: Arc<[String]>,
    ) -> BoxFuture<'_, Result<Session, AdminError>> {
        Box::pin(async move {
            self.run_durable(move |store| Ok(create(store, &sid, &request, &pool)))
                .await?
        })
    }

    fn session(&self, sid: String) -> BoxFuture<'_, Result<Option<Session>, DbError>> {
        Box::pin(self.run(move |store| session(store, &sid)))
    }

    fn sessions(
        &self,
        status: Option<SessionStatus>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Session>, DbError>> {
        Box::pin(self.run(move |store| sessions(store, status, limit)))
    }

    fn close_session(&self, sid: String) -> BoxFuture<'_, Result<Option<Session>, DbError>> {
        Box::pin(self.run_durable(move |store| close(store, &sid)))
    }
}
