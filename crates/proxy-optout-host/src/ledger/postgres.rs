//! PostgreSQL: the ledger and the processed message ids in the store crate's schema, shared
//! by every instance. One message is one call of a server-side function that claims its id
//! (the store crate's `proxy_optout_claim`), stores a STOP or START, and reads both ledger
//! states, in one statement: one round trip. A routing built by [`PgLedger::routing`] runs
//! inside that statement too; any other routing is one more round trip before it.

use std::sync::Arc;

use proxy_optout::AsyncOptOutStore as _;
use proxy_optout::{
    Answer, Answers, Change, Feedback, FeedbackError, LedgerKey, LedgerScope, OptState, RelayCore,
    RuleSet, Settings, Step,
};
use proxy_optout_postgres::deadpool_postgres::Object;
use proxy_optout_postgres::tokio_postgres::Row;
use proxy_optout_postgres::{Commit, Options, PgStore, StoreError};

use super::group::{Group, Writing};
use super::{
    policy_answer, route_of, Backend, BoxFuture, Colocated, ColocatedKind, DecideError, Decided,
    LedgerError, Routed,
};
use crate::message::Message;
use crate::routing::{RouteResult, Routing, RoutingError, SessionRoute};

/// The decision's one statement: claim the id, find the route, store a STOP or START, read
/// both ledger states. `{ROUTE}` is a query over `p_from` and `p_to` that yields at most one
/// row (the session, the other participant, their proxy number): the host's own query for a
/// co-located routing, or the route the host's routing already found, passed in as
/// `p_other` and `p_other_proxy`. Versioned in its name: instances of two builds on one
/// database during a rolling upgrade each call their own.
const DECIDE_FUNCTION: &str = "
CREATE OR REPLACE FUNCTION {NAME}(
    p_message_id TEXT, p_stale_secs FLOAT8, p_from TEXT, p_to TEXT,
    p_scope TEXT, p_write_state TEXT, p_other TEXT, p_other_proxy TEXT,
    p_source TEXT, p_keyword TEXT, p_body TEXT, p_rule_set TEXT, p_received_ms BIGINT,
    p_confirmed_ms BIGINT, p_async BOOLEAN)
RETURNS TABLE (claim TEXT, answer TEXT, sender_state TEXT, recipient_state TEXT,
               session_sid TEXT, other TEXT, other_proxy TEXT)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    IF p_async THEN
        -- Committed without waiting for the WAL flush: the caller waits for a group flush
        -- (`proxy_optout_host_flush`) before acting on it, one flush for many decisions.
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
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
    SELECT r.* INTO session_sid, other, other_proxy FROM ({ROUTE}) AS r LIMIT 1;
    IF p_write_state IS NOT NULL THEN
        -- The state and its history entry, together (the store crate's function).
        PERFORM proxy_optout_record(COALESCE(p_scope, p_to), p_from, p_write_state, p_source,
                                    p_keyword, p_body, p_message_id, p_rule_set, p_received_ms,
                                    p_confirmed_ms);
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

/// The decision for a route the host's routing found first.
const RESOLVED: &str = "proxy_optout_host_decide_v5";

/// The statement that calls the decision function `name`. Built once per function, not per
/// message.
fn call_of(name: &str) -> String {
    format!(
        "SELECT claim, answer, sender_state, recipient_state, session_sid, other, other_proxy
         FROM {name}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    )
}

/// The decision's function called `name`, with `route` inside it.
fn decide_function(name: &str, route: &str) -> String {
    DECIDE_FUNCTION
        .replace("{NAME}", name)
        .replace("{ROUTE}", route)
}

/// The ledger on PostgreSQL: shared by every instance behind a load balancer. Connect it,
/// or build it over a [`PgStore`] the host already has (its pool, its options).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ledger = proxy_optout_host::PgLedger::connect("postgres://postgres@127.0.0.1/test", 16).await?;
/// let ledger: proxy_optout_host::Ledger = ledger.into();
/// ledger.ping().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PgLedger {
    pg: PgStore,
    /// Who this ledger is, for a co-located routing to recognise it.
    id: Arc<()>,
    /// The statement calling the decision for a route found first.
    resolved: Arc<str>,
    /// Answers waiting to be stored, together: one statement for a group.
    answers: Arc<Group<Answered>>,
    /// Decisions committed asynchronously, waiting for one flush of the WAL together.
    flushes: Arc<Group<tokio::sync::oneshot::Sender<Result<(), String>>>>,
    /// This ledger's row in `proxy_optout_host_flush`.
    flusher: i64,
}

/// The table a group flush writes to: a synchronous commit flushes the WAL up to its own
/// commit record, so every transaction committed before it is then on disk.
const FLUSH_TABLE: &str = "
CREATE TABLE IF NOT EXISTS proxy_optout_host_flush (
    id         BIGINT PRIMARY KEY,
    n          BIGINT NOT NULL,
    flushed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
DELETE FROM proxy_optout_host_flush WHERE flushed_at < now() - interval '1 day';
";

/// The flush's statement: an upsert, so it always writes (a row deleted while its ledger
/// was idle comes back) and its commit always waits for the WAL flush.
const FLUSH: &str = "INSERT INTO proxy_optout_host_flush (id, n) VALUES ($1, 1)
     ON CONFLICT (id) DO UPDATE SET n = proxy_optout_host_flush.n + 1, flushed_at = now()";

/// A row of its own for each ledger, so instances' flushes never wait on each other's row
/// lock (std's hasher keys are random per process).
fn flusher_id() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish() as i64
}

/// Flushes the WAL for every decision waiting, a group per synchronous commit, until none
/// is left. A decision committed while a flush runs waits for the next (its commit may lie
/// after the flush's). Each decision committed with `synchronous_commit` off, so many
/// share one WAL flush where each waited for its own: under load the backends queued on
/// PostgreSQL's WAL write lock.
async fn flush_decisions(
    pg: PgStore,
    row: i64,
    waiting: Arc<Group<tokio::sync::oneshot::Sender<Result<(), String>>>>,
) {
    let mut writing = Writing::new(waiting);
    loop {
        let group = writing.take();
        if group.is_empty() {
            return;
        }
        let flushed = async {
            let c = client(&pg).await?;
            let stmt = c.prepare_cached(FLUSH).await?;
            c.execute(&stmt, &[&row]).await?;
            Ok::<(), LedgerError>(())
        }
        .await
        .map_err(|e| e.to_string());
        for w in group {
            let _ = w.send(flushed.clone());
        }
    }
}

/// A stored answer on its way: who hears of its failure, and who waits for it.
type Answered = (
    String,
    String,
    Box<dyn FnOnce(LedgerError) + Send>,
    tokio::sync::oneshot::Sender<()>,
);

/// Stores the waiting answers, a group per statement, until none is left. What arrives
/// while a group is written goes into the next. A group that fails is stored answer by
/// answer, so one bad answer costs only itself.
async fn store_answers(pg: PgStore, answers: Arc<Group<Answered>>) {
    let mut writing = Writing::new(answers);
    loop {
        let group = writing.take();
        if group.is_empty() {
            return;
        }
        let pairs: Vec<(&str, &str)> = group
            .iter()
            .map(|(id, answer, _, _)| (id.as_str(), answer.as_str()))
            .collect();
        let stored = pg.complete_many(&pairs).await;
        drop(pairs);
        for (id, answer, on_error, done) in group {
            if stored.is_err() {
                if let Err(e) = pg.complete(&id, &answer).await {
                    on_error(e.into());
                }
            }
            let _ = done.send(());
        }
    }
}

/// A name for the routed function of `query`, the same on every instance of every build
/// that routes with the same query (FNV-1a of its text).
fn routed_name(query: &str) -> String {
    let hash = query.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("proxy_optout_host_routed_v4_{hash:016x}")
}

async fn client(pg: &PgStore) -> Result<Object, LedgerError> {
    Ok(pg.pool().get().await.map_err(StoreError::from)?)
}

impl PgLedger {
    /// Connects to `url` with at most `pool_size` connections (the store's schema is created
    /// or migrated, and so is the decision's function).
    ///
    /// # Errors
    ///
    /// [`LedgerError::Postgres`]: an unreachable server, a newer schema.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ledger = proxy_optout_host::PgLedger::connect("postgres://postgres@127.0.0.1/test", 8).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str, pool_size: usize) -> Result<PgLedger, LedgerError> {
        let pg = PgStore::connect_with(
            url,
            Options::default()
                .pool_size(pool_size)
                .application_name("proxy-optout-host")
                .answer_commit(Commit::Asynchronous),
        )
        .await?;
        PgLedger::from_store(pg).await
    }

    /// The ledger over a store the host opened (with its own [`Options`]: the pool size, the
    /// schema, the commit of stored answers). Creates the decision's function.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Postgres`].
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// let ledger = proxy_optout_host::PgLedger::from_store(store).await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_store(pg: PgStore) -> Result<PgLedger, LedgerError> {
        let mut c = client(&pg).await?;
        let tx = c.transaction().await?;
        // Every instance may start at once: one replaces the function, the others wait here.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('proxy_optout_host_migrate'))",
            &[],
        )
        .await?;
        tx.batch_execute(&decide_function(
            RESOLVED,
            "SELECT NULL::TEXT, p_other, p_other_proxy WHERE p_other IS NOT NULL",
        ))
        .await?;
        tx.batch_execute(FLUSH_TABLE).await?;
        tx.commit().await?;
        drop(c);
        Ok(PgLedger {
            pg,
            id: Arc::new(()),
            resolved: call_of(RESOLVED).into(),
            answers: Arc::default(),
            flushes: Arc::default(),
            flusher: flusher_id(),
        })
    }

    /// A routing by `query`, over the host's tables in this ledger's database, run inside
    /// the decision's one statement. `query` takes the sender as `$1` and the proxy number as
    /// `$2`, and returns at most one row: the session id, then the other participant's
    /// identifier and proxy identifier (both NULL when the session has no other participant).
    /// No row: no open session.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Postgres`] when the function cannot be created (a query PostgreSQL
    /// refuses, naming what is wrong).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ledger = proxy_optout_host::PgLedger::connect("postgres://postgres@127.0.0.1/test", 8).await?;
    /// let routing = ledger.routing(
    ///     "SELECT id, CASE WHEN rider = $1 THEN driver ELSE rider END, proxy_number
    ///        FROM rides WHERE active AND proxy_number = $2 AND $1 IN (rider, driver)",
    /// ).await?;
    /// # Ok(()) }
    /// ```
    pub async fn routing(&self, query: &str) -> Result<PgRouting, LedgerError> {
        let function = routed_name(query);
        let inside = query.replace("$1", "p_from").replace("$2", "p_to");
        let sql = decide_function(&function, &inside);
        let mut c = client(&self.pg).await?;
        let tx = c.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('proxy_optout_host_migrate'))",
            &[],
        )
        .await?;
        tx.batch_execute(&sql).await?;
        tx.commit().await?;
        Ok(PgRouting {
            ledger: self.clone(),
            query: query.into(),
            call: call_of(&function).into(),
        })
    }

    /// The store: its pool is the host's to share (its own tables in the same database).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ledger = proxy_optout_host::PgLedger::connect("postgres://postgres@127.0.0.1/test", 8).await?;
    /// let client = ledger.store().pool().get().await?;
    /// client.execute("SELECT 1", &[]).await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn store(&self) -> &PgStore {
        &self.pg
    }

    async fn decide_now(
        &self,
        core: &RelayCore,
        policy: &dyn crate::Policy,
        m: &Message,
        route: &Routed,
    ) -> Result<Decided, DecideError> {
        let inbound = m.inbound();
        let function = match route {
            Routed::Resolved(r) => {
                // A route that is not the message's own (a host bug) is refused before
                // anything is stored.
                let _checked = core
                    .plan(&inbound, route_of(r.as_ref())?, Settings::default())
                    .map_err(DecideError::Input)?;
                None
            }
            Routed::Colocated(ColocatedKind::Postgres { call, .. }) => Some(call.clone()),
            Routed::Colocated(_) => {
                return Err(DecideError::Unavailable(LedgerError::Task(
                    "a SQLite routing cannot run on a PostgreSQL ledger".into(),
                )))
            }
        };
        // The ledger change a message asks for does not depend on its route (it is keyed by
        // its sender and proxy number, and the route's sender is built from the same
        // addresses), so it is known before the trip and stored inside it. The steps below
        // still decide: a change they ask for that was not stored gets its own write.
        let settings = Settings::new(policy.stop_filter_flag(), policy.stop_filtering(&m.to));
        let plan = core
            .plan(&inbound, None, settings)
            .map_err(DecideError::Input)?;
        let preview = plan.finish(Answers::new());
        let predicted = preview
            .ledger()
            .map(|c| m.change(plan.change(c.state()), Some(&preview)));
        let scope = match core.scope() {
            LedgerScope::Service(id) => Some(id.as_str()),
            _ => None,
        };
        let stale = proxy_optout_postgres::STALE_CLAIM.as_secs_f64();
        let resolved = match route {
            Routed::Resolved(r) => r.as_ref(),
            Routed::Colocated(_) => None,
        };
        let row = self
            .begin(
                &m.sid,
                stale,
                m,
                scope,
                predicted,
                resolved,
                function.as_deref(),
            )
            .await
            .map_err(DecideError::Unavailable)?;
        let claim: String = row.get(0);
        match claim.as_str() {
            "answered" => return Ok(Decided::Replay(row.get(1))),
            "in_progress" => return Ok(Decided::InProgress),
            _ => {}
        }
        let resumed = claim == "resumed";
        // The claim (and a STOP or START) was committed without waiting for the disk: the
        // flush starts now and is waited for before anything acts on the decision.
        let flushed = self.flush();
        let found = match function {
            None => Ok(None),
            Some(_) => route_from(&m.from, &m.to, row.get(4), row.get(5), row.get(6))
                .map_err(DecideError::Route),
        };
        let decided = match found {
            Ok(found) => {
                let route = if function.is_some() {
                    found.as_ref()
                } else {
                    resolved
                };
                let predicted = predicted.map(|c| c.state());
                self.steps(core, policy, m, route, &row, predicted, resumed)
                    .await
            }
            Err(e) => Err(e),
        };
        let decided = match (decided, flushed.await) {
            (Ok(d), Ok(Ok(()))) => Ok(d),
            (Err(e), _) => Err(e),
            (Ok(_), Ok(Err(e))) => Err(DecideError::Unavailable(LedgerError::Task(format!(
                "the decision could not be flushed to disk: {e}"
            )))),
            (Ok(_), Err(_)) => Err(DecideError::Unavailable(LedgerError::Task(
                "the decision's flush stopped".into(),
            ))),
        };
        if let (Err(_), Some(id)) = (&decided, &m.sid) {
            if let Err(e) = self.pg.release(id).await {
                tracing::error!(error = %e, message_sid = %id, "could not release the claim; a retry waits for it to go stale");
            }
        }
        decided
    }

    /// Waits for the next group flush of the WAL: what this ledger committed before the
    /// call is on disk when it answers `Ok`.
    fn flush(&self) -> tokio::sync::oneshot::Receiver<Result<(), String>> {
        let (done, flushed) = tokio::sync::oneshot::channel();
        if self.flushes.push(done) {
            tokio::spawn(flush_decisions(
                self.pg.clone(),
                self.flusher,
                self.flushes.clone(),
            ));
        }
        flushed
    }

    #[allow(clippy::too_many_arguments)]
    async fn begin(
        &self,
        id: &Option<String>,
        stale: f64,
        m: &Message,
        scope: Option<&str>,
        write: Option<Change<'_>>,
        route: Option<&SessionRoute>,
        routed: Option<&str>,
    ) -> Result<Row, LedgerError> {
        let c = client(&self.pg).await?;
        let state = write.map(|w| w.state().as_str());
        let source = write.map(|w| w.source().as_str());
        let keyword = write.and_then(|w| w.keyword());
        let body = write
            .and_then(|w| w.text())
            .filter(|_| self.pg.keeps_texts());
        let rule_set = write.and_then(|w| w.rule_set()).map(RuleSet::as_str);
        let ms = |t: Option<u64>| t.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        let received = ms(write.and_then(|w| w.received_at()));
        let confirmed = ms(write.and_then(|w| w.confirmed_at()));
        let stmt = c.prepare_cached(routed.unwrap_or(&self.resolved)).await?;
        let other = route.and_then(SessionRoute::recipient);
        let (other, other_proxy) = (
            other.map(|p| p.identifier()),
            other.map(|p| p.proxy_identifier()),
        );
        Ok(c.query_one(
            &stmt,
            &[
                id,
                &stale,
                &m.from,
                &m.to,
                &scope,
                &state,
                &other,
                &other_proxy,
                &source,
                &keyword,
                &body,
                &rule_set,
                &received,
                &confirmed,
                &true,
            ],
        )
        .await?)
    }

    #[allow(clippy::too_many_arguments)]
    async fn steps(
        &self,
        core: &RelayCore,
        policy: &dyn crate::Policy,
        m: &Message,
        route: Option<&SessionRoute>,
        row: &Row,
        predicted: Option<OptState>,
        resumed: bool,
    ) -> Result<Decided, DecideError> {
        let route = route_of(route)?;
        let inbound = m.inbound();
        let sender_key = core.key(&m.to, &m.from);
        let recipient_key = route
            .and_then(|r| r.recipient())
            .map(|p| core.key(p.proxy_identifier(), p.identifier()));
        let prefetched = |key: LedgerKey<'_>| -> Option<Result<OptState, LedgerError>> {
            let column = if key == sender_key {
                2
            } else if Some(key) == recipient_key {
                3
            } else {
                return None;
            };
            let value: Option<String> = row.get(column);
            Some(parse_state(key, value.as_deref()))
        };
        let mut steps = core
            .steps(&inbound, route, policy.stop_filter_flag())
            .map_err(DecideError::Input)?;
        while let Some(step) = steps.next() {
            let answer = match step {
                Step::State(key) => Answer::State(match prefetched(key) {
                    Some(state) => state,
                    None => self.pg.state(key).await.map_err(LedgerError::from),
                }),
                Step::Record(key, state) if key == sender_key && predicted == Some(state) => {
                    Answer::Recorded(Ok(()))
                }
                Step::Record(key, state) => Answer::Recorded(
                    match steps.change() {
                        Some(c) => {
                            let c = m.change(c, steps.outcome());
                            self.pg.record_change(&c).await
                        }
                        None => self.pg.record(key, state).await,
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

/// A routing by a query over the host's tables in a [`PgLedger`]'s database; see
/// [`PgLedger::routing`].
#[derive(Clone, Debug)]
pub struct PgRouting {
    ledger: PgLedger,
    query: Arc<str>,
    /// The statement that calls its decision function.
    call: Arc<str>,
}

/// The route of a row of the host's query (or of the routed function's route columns).
fn route_from(
    from: &str,
    to: &str,
    session: Option<String>,
    other: Option<String>,
    other_proxy: Option<String>,
) -> RouteResult {
    match session {
        None => Ok(None),
        Some(s) => {
            let recipient = other.as_deref().zip(other_proxy.as_deref());
            SessionRoute::new(s, from, to, recipient).map(Some)
        }
    }
}

impl Routing for PgRouting {
    fn route<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
    ) -> crate::routing::BoxFuture<'a, RouteResult> {
        Box::pin(async move {
            let c = client(&self.ledger.pg)
                .await
                .map_err(RoutingError::unavailable)?;
            let row = c
                .query_opt(&*self.query, &[&from, &to])
                .await
                .map_err(RoutingError::unavailable)?;
            match row {
                None => Ok(None),
                Some(r) => route_from(from, to, r.get(0), r.get(1), r.get(2)),
            }
        })
    }

    fn colocated(&self) -> Option<Colocated> {
        Some(Colocated(ColocatedKind::Postgres {
            ledger: self.ledger.id.clone(),
            call: self.call.clone(),
        }))
    }
}

fn parse_state(key: LedgerKey<'_>, value: Option<&str>) -> Result<OptState, LedgerError> {
    match value {
        None => Ok(OptState::OptedIn),
        Some(v) => match v.parse::<OptState>() {
            Ok(state) if state.as_str() == v => Ok(state),
            _ => Err(LedgerError::Postgres(StoreError::UnrecognisedState {
                scope: key.scope().to_owned(),
                participant: key.participant().to_owned(),
                value: v.to_owned(),
            })),
        },
    }
}

impl Backend for PgLedger {
    fn decide(
        &self,
        core: Arc<RelayCore>,
        policy: Arc<dyn crate::Policy>,
        message: Arc<Message>,
        route: Routed,
    ) -> BoxFuture<'_, Result<Decided, DecideError>> {
        Box::pin(async move { self.decide_now(&core, &*policy, &message, &route).await })
    }

    fn runs(&self, colocated: &ColocatedKind) -> bool {
        matches!(colocated, ColocatedKind::Postgres { ledger, .. } if Arc::ptr_eq(ledger, &self.id))
    }

    fn complete(
        &self,
        message_id: String,
        answer: String,
        on_error: Box<dyn FnOnce(LedgerError) + Send>,
    ) -> BoxFuture<'_, ()> {
        let (done, stored) = tokio::sync::oneshot::channel();
        if self.answers.push((message_id, answer, on_error, done)) {
            tokio::spawn(store_answers(self.pg.clone(), self.answers.clone()));
        }
        Box::pin(async move {
            // Waited for, so a redelivery after the webhook's answer finds this answer.
            let _ = stored.await;
        })
    }

    fn release(&self, message_id: String) -> BoxFuture<'_, Result<(), LedgerError>> {
        Box::pin(async move { Ok(self.pg.release(&message_id).await?) })
    }

    fn refused(
        &self,
        core: Arc<RelayCore>,
        from: String,
        to: String,
    ) -> BoxFuture<'_, Result<(), FeedbackError<LedgerError>>> {
        Box::pin(async move {
            let out = core.feedback(&Feedback::Refused {
                from: &from,
                to: &to,
            })?;
            let recorded = match out.change() {
                Some(c) => {
                    let c = c.with_received_at(crate::message::now_ms());
                    Some(self.pg.record_change(&c).await.map_err(LedgerError::from))
                }
                None => None,
            };
            out.settle(recorded).map(|_| ())
        })
    }

    fn state(
        &self,
        scope: String,
        participant: String,
    ) -> BoxFuture<'_, Result<OptState, LedgerError>> {
        Box::pin(async move { Ok(self.pg.state(LedgerKey::new(&scope, &participant)).await?) })
    }

    fn confirmed(
        &self,
        scope: String,
        participant: String,
        state: OptState,
        at_ms: u64,
    ) -> BoxFuture<'_, Result<(), LedgerError>> {
        Box::pin(async move {
            let key = LedgerKey::new(&scope, &participant);
            Ok(self.pg.confirmed(key, state, at_ms).await?)
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), LedgerError>> {
        Box::pin(async move {
            let c = client(&self.pg).await?;
            c.execute("SELECT 1", &[]).await?;
            Ok(())
        })
    }

    fn purge(&self) -> BoxFuture<'_, Result<u64, LedgerError>> {
        Box::pin(async move {
            Ok(self
                .pg
                .purge_processed(proxy_optout_postgres::RETENTION)
                .await?)
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.pg.close();
        Box::pin(async {})
    }
}
