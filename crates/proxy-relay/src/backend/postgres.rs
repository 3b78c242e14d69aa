//! PostgreSQL: the session tables in the store's schema (its connections set the
//! `search_path`), shared by every relay instance. One message is one call of a server-side
//! function that claims its id (the store crate's `proxy_optout_claim`), finds its route,
//! stores a STOP or START, and reads both ledger states, in one statement: one round trip.

use std::sync::Arc;

use proxy_optout::AsyncOptOutStore as _;
use proxy_optout::{
    Answer, Answers, Feedback, FeedbackError, LedgerKey, LedgerScope, OptState, RelayCore,
    Settings, Step, TwilioProxy,
};
use proxy_optout_postgres::deadpool_postgres::Object;
use proxy_optout_postgres::tokio_postgres::error::SqlState;
use proxy_optout_postgres::tokio_postgres::Row;
use proxy_optout_postgres::{Commit, Options, PgStore, StoreError};

use super::{
    assemble, flag, now_ms, pick_proxy, policy_answer, route_of, route_row, AdminError, Backend,
    BoxFuture, DbError, DecideError, Decided, SessionHead, ROUTE, SESSION_SCHEMA,
    SESSION_SCHEMA_VERSION,
};
use crate::inbound::Message;
use crate::sessions::{FieldError, NewSession, Session, SessionParticipant, SessionStatus};

/// The decision's one statement. Versioned in its name: instances of two builds on one
/// database during a rolling upgrade each call their own.
const BEGIN_FUNCTION: &str = "
CREATE OR REPLACE FUNCTION proxy_relay_begin_v2(
    p_message_id TEXT, p_stale_secs FLOAT8, p_from TEXT, p_to TEXT,
    p_scope TEXT, p_write_state TEXT)
RETURNS TABLE (claim TEXT, answer TEXT, session_sid TEXT, other TEXT, other_proxy TEXT,
               sender_state TEXT, recipient_state TEXT)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    claim := 'new';
    IF p_message_id IS NOT NULL THEN
        SELECT CASE WHEN c.resumed THEN 'resumed' WHEN c.claimed THEN 'new'
                    WHEN c.answer IS NULL THEN 'in_progress' ELSE 'answered' END,
               c.answer
          INTO claim, answer
          FROM proxy_optout_claim(p_message_id, p_stale_secs) AS c;
        IF claim NOT IN ('new', 'resumed') THEN
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    SELECT r.session_sid, r.identifier, r.proxy_identifier
      INTO session_sid, other, other_proxy
      FROM ({ROUTE}) AS r;
    IF p_write_state IS NOT NULL THEN
        INSERT INTO opt_out_ledger AS l (scope, participant, state, updated_at)
        VALUES (COALESCE(p_scope, p_to), p_from, p_write_state, now())
        ON CONFLICT (scope, participant)
        DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at;
    END IF;
    SELECT l.state INTO sender_state FROM opt_out_ledger l
     WHERE l.scope = COALESCE(p_scope, p_to) AND l.participant = p_from;
    IF other IS NOT NULL THEN
        SELECT l.state INTO recipient_state FROM opt_out_ledger l
         WHERE l.scope = COALESCE(p_scope, other_proxy) AND l.participant = other;
    END IF;
    RETURN NEXT;
END
$$;
";

const BEGIN: &str =
    "SELECT claim, answer, session_sid, other, other_proxy, sender_state, recipient_state
     FROM proxy_relay_begin_v2($1, $2, $3, $4, $5, $6)";

#[derive(Debug)]
pub(super) struct PgBackend {
    pg: PgStore,
}

async fn client(pg: &PgStore) -> Result<Object, DbError> {
    Ok(pg.pool().get().await.map_err(StoreError::from)?)
}

/// The decision's function, with the route query both backends share.
fn begin_function() -> String {
    let route = ROUTE.replace("?1", "p_from").replace("?2", "p_to");
    BEGIN_FUNCTION.replace("{ROUTE}", &route)
}

impl PgBackend {
    pub(super) async fn open(url: &str, pool_size: usize) -> Result<PgBackend, DbError> {
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
        tx.batch_execute(&begin_function()).await?;
        tx.commit().await?;
        drop(c);
        Ok(PgBackend { pg })
    }

    async fn decide_now(&self, core: &RelayCore, m: &Message) -> Result<Decided, DecideError> {
        let inbound = m.inbound();
        // The ledger change a message asks for does not depend on its route (it is keyed by
        // its sender and proxy number, and the route's sender is built from the same
        // addresses), so it is known before the trip and stored inside it. The steps below
        // still decide: a change they ask for that was not stored gets its own write.
        let settings = Settings::from_policy(&TwilioProxy, &m.to, None);
        let predicted = core
            .plan(&inbound, None, settings)
            .map_err(DecideError::Input)?
            .finish(Answers::new())
            .ledger()
            .map(|c| c.state());
        let scope = match core.scope() {
            LedgerScope::Service(id) => Some(id.as_str()),
            _ => None,
        };
        let stale = proxy_optout_postgres::STALE_CLAIM.as_secs_f64();
        let row = self
            .begin(&m.sid, stale, m, scope, predicted)
            .await
            .map_err(DecideError::Unavailable)?;
        let claim: String = row.get(0);
        match claim.as_str() {
            "answered" => return Ok(Decided::Replay(row.get(1))),
            "in_progress" => return Ok(Decided::InProgress),
            _ => {}
        }
        let resumed = claim == "resumed";
        let decided = self.steps(core, m, &row, predicted, resumed).await;
        if let (Err(_), Some(id)) = (&decided, &m.sid) {
            if let Err(e) = self.pg.release(id).await {
                tracing::error!(error = %e, message_sid = %id, "could not release the claim; a retry waits for it to go stale");
            }
        }
        decided
    }

    async fn begin(
        &self,
        id: &Option<String>,
        stale: f64,
        m: &Message,
        scope: Option<&str>,
        write: Option<OptState>,
    ) -> Result<Row, DbError> {
        let c = client(&self.pg).await?;
        let stmt = c.prepare_cached(BEGIN).await?;
        let write = write.map(OptState::as_str);
        Ok(
            c.query_one(&stmt, &[id, &stale, &m.from, &m.to, &scope, &write])
                .await?,
        )
    }

    async fn steps(
        &self,
        core: &RelayCore,
        m: &Message,
        row: &Row,
        predicted: Option<OptState>,
        resumed: bool,
    ) -> Result<Decided, DecideError> {
        let session: Option<String> = row.get(2);
        let route_row = session
            .map(|s| route_row(s, &m.from, &m.to, row.get(3), row.get(4)))
            .transpose()
            .map_err(DecideError::BadSession)?;
        let route = route_of(route_row.as_ref())?;
        let inbound = m.inbound();
        let sender_key = core.key(&m.to, &m.from);
        let recipient_key = route
            .and_then(|r| r.recipient())
            .map(|p| core.key(p.proxy_identifier(), p.identifier()));
        let prefetched = |key: LedgerKey<'_>| -> Option<Result<OptState, DbError>> {
            let column = if key == sender_key {
                5
            } else if Some(key) == recipient_key {
                6
            } else {
                return None;
            };
            let value: Option<String> = row.get(column);
            Some(parse_state(key, value.as_deref()))
        };
        let mut steps = core
            .steps(&inbound, route, flag())
            .map_err(DecideError::Input)?;
        while let Some(step) = steps.next() {
            let answer = match step {
                Step::State(key) => Answer::State(match prefetched(key) {
                    Some(state) => state,
                    None => self.pg.state(key).await.map_err(DbError::from),
                }),
                Step::Record(key, state) if key == sender_key && predicted == Some(state) => {
                    Answer::Recorded(Ok(()))
                }
                Step::Record(key, state) => {
                    Answer::Recorded(self.pg.record(key, state).await.map_err(DbError::from))
                }
                other => policy_answer(&other).unwrap_or(Answer::Unavailable),
            };
            steps.answer(answer);
        }
        let outcome = steps
            .finish()
            .map_err(|e| DecideError::Ledger(Box::new(e)))?;
        if predicted.is_some() && outcome.ledger().is_none() {
            // Cannot happen while routes are built from the message's own addresses; if it
            // ever does, the stored change is the safe one (a STOP or START the person sent).
            tracing::error!(
                message_sid = m.id(),
                "a ledger change was stored that the relay did not ask for"
            );
        }
        Ok(Decided::Outcome {
            outcome: Box::new(outcome.into_owned()),
            resumed,
        })
    }
}

fn parse_state(key: LedgerKey<'_>, value: Option<&str>) -> Result<OptState, DbError> {
    match value {
        None => Ok(OptState::OptedIn),
        Some(v) => match v.parse::<OptState>() {
            Ok(state) if state.as_str() == v => Ok(state),
            _ => Err(DbError::Postgres(StoreError::UnrecognisedState {
                scope: key.scope().to_owned(),
                participant: key.participant().to_owned(),
                value: v.to_owned(),
            })),
        },
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
    fn decide(
        &self,
        core: Arc<RelayCore>,
        message: Arc<Message>,
    ) -> BoxFuture<'_, Result<Decided, DecideError>> {
        Box::pin(async move { self.decide_now(&core, &message).await })
    }

    fn complete(
        &self,
        message_id: String,
        answer: String,
        on_error: Box<dyn FnOnce(DbError) + Send>,
    ) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.pg.complete(&message_id, &answer).await {
                on_error(e.into());
            }
        })
    }

    fn release(&self, message_id: String) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(async move { Ok(self.pg.release(&message_id).await?) })
    }

    fn refused(
        &self,
        core: Arc<RelayCore>,
        from: String,
        to: String,
    ) -> BoxFuture<'_, Result<(), FeedbackError<DbError>>> {
        Box::pin(async move {
            let out = core.feedback(&Feedback::Refused {
                from: &from,
                to: &to,
            })?;
            let recorded = match out.ledger() {
                Some(c) => Some(
                    self.pg
                        .record(c.key(), c.state())
                        .await
                        .map_err(DbError::from),
                ),
                None => None,
            };
            out.settle(recorded).map(|_| ())
        })
    }

    fn state(
        &self,
        scope: String,
        participant: String,
    ) -> BoxFuture<'_, Result<OptState, DbError>> {
        Box::pin(async move { Ok(self.pg.state(LedgerKey::new(&scope, &participant)).await?) })
    }

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

    fn ping(&self) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(async move {
            let c = client(&self.pg).await?;
            c.execute("SELECT 1", &[]).await?;
            Ok(())
        })
    }

    fn purge(&self) -> BoxFuture<'_, Result<u64, DbError>> {
        Box::pin(async move {
            Ok(self
                .pg
                .purge_processed(proxy_optout_postgres::RETENTION)
                .await?)
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

    fn close(&self) -> BoxFuture<'_, ()> {
        self.pg.close();
        Box::pin(async {})
    }
}
