//! PostgreSQL: the session tables in the store's schema (its connections set the
//! `search_path`), beside the pipeline's ledger, shared by every relay instance.

use std::sync::Arc;

use proxy_optout_host::{Ledger, PgLedger, Routing};
use proxy_optout_postgres::deadpool_postgres::Object;
use proxy_optout_postgres::tokio_postgres::error::SqlState;
use proxy_optout_postgres::tokio_postgres::Row;
use proxy_optout_postgres::{Commit, Options, PgStore, StoreError};

use super::{
    assemble, now_ms, pick_proxy, AdminError, Backend, BoxFuture, DbError, SessionHead, ROUTE,
    SESSION_SCHEMA, SESSION_SCHEMA_VERSION,
};
use crate::sessions::{FieldError, NewSession, Session, SessionParticipant, SessionStatus};

#[derive(Debug)]
pub(super) struct PgBackend {
    pg: PgStore,
}

async fn client(pg: &PgStore) -> Result<Object, DbError> {
    Ok(pg.pool().get().await.map_err(StoreError::from)?)
}

/// The route query in PostgreSQL's placeholders.
fn route_query() -> String {
    ROUTE.replace("?1", "$1").replace("?2", "$2")
}

impl PgBackend {
    pub(super) async fn open(
        url: &str,
        pool_size: usize,
    ) -> Result<(PgBackend, Ledger, Arc<dyn Routing>), DbError> {
        let pg = PgStore::connect_with(
            url,
            Options::default()
                .pool_size(pool_size)
                .application_name("proxy-relay")
                .answer_commit(Commit::Asynchronous),
        )
        .await?;
        let mut c = client(&pg).await?;
        let tx = c.transaction().await?;
        // Every instance may start at once: one creates the tables, the others wait here.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('proxy_relay_migrate'))",
            &[],
        )
        .await?;
        tx.batch_execute(SESSION_SCHEMA).await?;
        let found: Option<i32> = tx
            .query_one("SELECT max(version) FROM proxy_relay_schema", &[])
            .await?
            .get(0);
        if found.is_none() {
            tx.execute(
                "INSERT INTO proxy_relay_schema (version) VALUES ($1)",
                &[&SESSION_SCHEMA_VERSION],
            )
            .await?;
        }
        if let Some(v) = found.filter(|v| *v > SESSION_SCHEMA_VERSION) {
            return Err(DbError::SchemaTooNew {
                found: v,
                supported: SESSION_SCHEMA_VERSION,
            });
        }
        tx.commit().await?;
        drop(c);
        let ledger = PgLedger::from_store(pg.clone()).await?;
        // The session lookup runs inside the decision's one statement.
        let routing = ledger.routing(&route_query()).await?;
        Ok((PgBackend { pg }, ledger.into(), Arc::new(routing)))
    }
}

fn unique_violation(e: &proxy_optout_postgres::tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|d| *d.code() == SqlState::UNIQUE_VIOLATION)
}

enum Retry {
    Race,
    Fail(AdminError),
}

impl From<proxy_optout_postgres::tokio_postgres::Error> for Retry {
    fn from(e: proxy_optout_postgres::tokio_postgres::Error) -> Self {
        Retry::Fail(AdminError::Store(e.into()))
    }
}

async fn create(
    pg: &PgStore,
    sid: &str,
    request: &NewSession,
    pool: &[String],
) -> Result<Session, AdminError> {
    // Another instance may take the number picked here between the read and the insert; the
    // partial unique index refuses the second insert, and picking again sees the taken one.
    for _ in 0..8 {
        match try_create(pg, sid, request, pool).await {
            Err(Retry::Race) => continue,
            Err(Retry::Fail(e)) => return Err(e),
            Ok(s) => return Ok(s),
        }
    }
    Err(AdminError::Conflict(FieldError::new(
        "participants",
        "other sessions kept taking the free proxy numbers; try again",
    )))
}

async fn try_create(
    pg: &PgStore,
    sid: &str,
    request: &NewSession,
    pool: &[String],
) -> Result<Session, Retry> {
    let mut c = client(pg).await.map_err(|e| Retry::Fail(e.into()))?;
    let tx = c.transaction().await?;
    let created = now_ms();
    if let Err(e) = tx
        .execute(
            "INSERT INTO relay_sessions (sid, unique_name, status, created_at) VALUES ($1, $2, 'open', $3)",
            &[&sid, &request.unique_name, &created],
        )
        .await
    {
        return Err(if unique_violation(&e) {
            Retry::Fail(AdminError::Conflict(FieldError::new(
                "unique_name",
                format!(
                    "{:?} is already the name of another session",
                    request.unique_name.as_deref().unwrap_or_default()
                ),
            )))
        } else {
            e.into()
        });
    }
    let mut participants = Vec::with_capacity(2);
    for (i, p) in request.participants.iter().enumerate() {
        let used: Vec<String> = tx
            .query(
                "SELECT proxy_identifier FROM relay_participants WHERE identifier = $1 AND active = 1",
                &[&p.identifier],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let proxy = pick_proxy(i, &p.identifier, p.proxy_identifier.as_deref(), pool, &used)
            .map_err(Retry::Fail)?;
        let position = i32::try_from(i).unwrap_or(i32::MAX);
        if let Err(e) = tx
            .execute(
                "INSERT INTO relay_participants
                     (session_sid, position, identifier, proxy_identifier, friendly_name, active)
                 VALUES ($1, $2, $3, $4, $5, 1)",
                &[&sid, &position, &p.identifier, &proxy, &p.friendly_name],
            )
            .await
        {
            return Err(if unique_violation(&e) {
                Retry::Race
            } else {
                e.into()
            });
        }
        participants.push(SessionParticipant {
            identifier: p.identifier.clone(),
            proxy_identifier: proxy,
            friendly_name: p.friendly_name.clone(),
        });
    }
    tx.commit().await?;
    Ok(Session {
        sid: sid.to_owned(),
        unique_name: request.unique_name.clone(),
        status: SessionStatus::Open,
        created_at_ms: created,
        closed_at_ms: None,
        participants,
    })
}

const HEAD: &str = "SELECT sid, unique_name, status, created_at, closed_at FROM relay_sessions";

fn head(r: &Row) -> SessionHead {
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

async fn read(c: &Object, h: SessionHead) -> Result<Session, DbError> {
    let participants = c
        .query(
            "SELECT identifier, proxy_identifier, friendly_name FROM relay_participants
             WHERE session_sid = $1 ORDER BY position",
            &[&h.0],
        )
        .await?
        .iter()
        .map(|r| SessionParticipant {
            identifier: r.get(0),
            proxy_identifier: r.get(1),
            friendly_name: r.get(2),
        })
        .collect();
    assemble(h, participants)
}

async fn session(pg: &PgStore, sid: &str) -> Result<Option<Session>, DbError> {
    let c = client(pg).await?;
    match c
        .query_opt(&format!("{HEAD} WHERE sid = $1"), &[&sid])
        .await?
    {
        None => Ok(None),
        Some(r) => read(&c, head(&r)).await.map(Some),
    }
}

async fn sessions(
    pg: &PgStore,
    status: Option<SessionStatus>,
    limit: u32,
) -> Result<Vec<Session>, DbError> {
    let c = client(pg).await?;
    let rows = c
        .query(
            &format!(
                "{HEAD} WHERE ($1::TEXT IS NULL OR status = $1) ORDER BY created_at DESC, sid LIMIT $2"
            ),
            &[&status.map(SessionStatus::as_str), &i64::from(limit)],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(read(&c, head(r)).await?);
    }
    Ok(out)
}

async fn close(pg: &PgStore, sid: &str) -> Result<Option<Session>, DbError> {
    {
        let mut c = client(pg).await?;
        let tx = c.transaction().await?;
        tx.execute(
            "UPDATE relay_sessions SET status = 'closed', closed_at = $2 WHERE sid = $1 AND status = 'open'",
            &[&sid, &now_ms()],
        )
        .await?;
        tx.execute(
            "UPDATE relay_participants SET active = 0 WHERE session_sid = $1",
            &[&sid],
        )
        .await?;
        tx.commit().await?;
    }
    session(pg, sid).await
}

impl Backend for PgBackend {
    fn scalar(&self, sql: String) -> BoxFuture<'_, Result<i64, DbError>> {
        Box::pin(async move {
            let c = client(&self.pg).await?;
            Ok(c.query_one(&sql, &[]).await?.get(0))
        })
    }

    fn execute(&self, sql: String) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(async move {
            let c = client(&self.pg).await?;
            Ok(c.batch_execute(&sql).await?)
        })
    }

    fn create_session(
        &self,
        sid: String,
        request: NewSession,
        pool: Arc<[String]>,
    ) -> BoxFuture<'_, Result<Session, AdminError>> {
        Box::pin(async move { create(&self.pg, &sid, &request, &pool).await })
    }

    fn session(&self, sid: String) -> BoxFuture<'_, Result<Option<Session>, DbError>> {
        Box::pin(async move { session(&self.pg, &sid).await })
    }

    fn sessions(
        &self,
        status: Option<SessionStatus>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Session>, DbError>> {
        Box::pin(async move { sessions(&self.pg, status, limit).await })
    }

    fn close_session(&self, sid: String) -> BoxFuture<'_, Result<Option<Session>, DbError>> {
        Box::pin(async move { close(&self.pg, &sid).await })
    }
}
