//! The ledger's history in the shared database: one `opt_out_history` row per change,
//! written with the state by one server-side function (`proxy_optout_record`), so a state is
//! never stored without its entry, nor an entry without its state. The host crate's decision
//! function calls the same function inside its own statement.

use std::future::Future;

use proxy_optout::{
    AsyncHistoryStore, Change, ChangeSource, HistoryEntry, HistoryQuery, LedgerKey, OptState,
    RuleSet,
};
use tokio_postgres::Row;

use crate::{discard_if_broken, parse_state, PgStore, StoreError};

/// Schema version 4: the history table and its sequence, the state's pointer to its entry,
/// and one `unspecified` entry for each state stored before.
pub const SCHEMA_V4: &str = "
CREATE SEQUENCE opt_out_history_seq;
CREATE TABLE opt_out_history (
    seq          BIGINT      NOT NULL PRIMARY KEY,  -- drawn under the state's row lock
    scope        TEXT        NOT NULL,
    participant  TEXT        NOT NULL,
    state        TEXT        NOT NULL,
    source       TEXT        NOT NULL,  -- ChangeSource::as_str
    keyword      TEXT,
    body         TEXT,                  -- the text as received; NULL where texts are not kept
    message_id   TEXT,
    rule_set     TEXT,                  -- RuleSet::as_str
    received_at  TIMESTAMPTZ,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    confirmed_at TIMESTAMPTZ            -- set once
);
-- By key, for one person's history; no index by time: exports read in seq order and
-- the hourly retention pass can scan, where every write would pay for the index.
CREATE INDEX opt_out_history_by_key ON opt_out_history (scope, participant, seq);
ALTER TABLE opt_out_ledger ADD COLUMN history_seq BIGINT;
INSERT INTO opt_out_history (seq, scope, participant, state, source, recorded_at)
    SELECT nextval('opt_out_history_seq'), scope, participant, state, 'unspecified', updated_at
    FROM (SELECT * FROM opt_out_ledger ORDER BY updated_at, scope, participant) o;
UPDATE opt_out_ledger l SET history_seq = h.seq FROM opt_out_history h
    WHERE h.scope = l.scope AND h.participant = l.participant;
";

/// `proxy_optout_record(scope, participant, state, source, keyword, body, message_id,
/// rule_set, received_ms, confirmed_ms) -> seq`: the state and its entry. The state is written first: its
/// row lock orders the writers of one key, and the entry's number is drawn under that lock,
/// so a key's entries are numbered in commit order and its last one is behind its state.
pub(crate) const FUNCTIONS: &str = "
CREATE OR REPLACE FUNCTION proxy_optout_record(
    p_scope TEXT, p_participant TEXT, p_state TEXT, p_source TEXT, p_keyword TEXT,
    p_body TEXT, p_message_id TEXT, p_rule_set TEXT, p_received_ms BIGINT,
    p_confirmed_ms BIGINT)
RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_seq BIGINT;
    v_now TIMESTAMPTZ := clock_timestamp();
BEGIN
    INSERT INTO opt_out_ledger AS l (scope, participant, state, updated_at, history_seq)
    VALUES (p_scope, p_participant, p_state, now(), nextval('opt_out_history_seq'))
    ON CONFLICT (scope, participant) DO UPDATE
        SET state = excluded.state, updated_at = excluded.updated_at,
            history_seq = nextval('opt_out_history_seq')
    RETURNING l.history_seq INTO v_seq;
    INSERT INTO opt_out_history (seq, scope, participant, state, source, keyword, body,
                                 message_id, rule_set, received_at, recorded_at, confirmed_at)
    VALUES (v_seq, p_scope, p_participant, p_state, p_source, p_keyword, p_body,
            p_message_id, p_rule_set, to_timestamp(p_received_ms / 1000.0), v_now,
            -- A confirmation known at recording goes out after it, never before.
            CASE WHEN p_confirmed_ms IS NOT NULL
                 THEN GREATEST(to_timestamp(p_confirmed_ms / 1000.0), v_now) END);
    RETURN v_seq;
END
$$;
";

pub(crate) const RECORD: &str =
    "SELECT proxy_optout_record($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// [`RECORD`], skipped when the key already has the change's state.
const RECORD_IF_CHANGED: &str =
    "SELECT proxy_optout_record($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    WHERE COALESCE((SELECT state FROM opt_out_ledger WHERE scope = $1 AND participant = $2),
                   'opted_in') <> $3";

const CONFIRM: &str = "UPDATE opt_out_history SET confirmed_at = to_timestamp($4::bigint / 1000.0)
    WHERE seq = (SELECT history_seq FROM opt_out_ledger
                 WHERE scope = $1 AND participant = $2 AND state = $3)
      AND confirmed_at IS NULL";

const READ: &str = "SELECT seq, scope, participant, state, source, keyword, body, message_id,
        rule_set, floor(extract(epoch FROM received_at) * 1000)::bigint,
        floor(extract(epoch FROM recorded_at) * 1000)::bigint,
        floor(extract(epoch FROM confirmed_at) * 1000)::bigint
    FROM opt_out_history h
    WHERE seq > $1
      AND ($2::text IS NULL OR scope = $2)
      AND ($3::text IS NULL OR participant = $3)
      AND ($4::text IS NULL OR state = $4)
      AND ($5::bigint IS NULL OR recorded_at >= to_timestamp($5 / 1000.0))
      AND ($6::bigint IS NULL OR recorded_at < to_timestamp($6 / 1000.0))
      AND (NOT $7::boolean OR EXISTS (SELECT 1 FROM opt_out_ledger l
                                      WHERE l.scope = h.scope AND l.participant = h.participant
                                        AND l.history_seq = h.seq))
    ORDER BY seq
    LIMIT $8";

/// Unix milliseconds as PostgreSQL takes them: at most the end of year 9999, where its
/// timestamps end.
fn ms(v: Option<u64>) -> Option<i64> {
    v.map(|t| t.min(253_402_300_799_999) as i64)
}

fn unrecognised(seq: i64, column: &'static str, value: &str) -> StoreError {
    StoreError::UnrecognisedHistory {
        seq,
        column,
        value: value.to_owned(),
    }
}

fn entry(r: &Row) -> Result<HistoryEntry, StoreError> {
    let seq: i64 = r.get(0);
    let (scope, participant): (String, String) = (r.get(1), r.get(2));
    let state = parse_state(&scope, &participant, r.get(3))?;
    let source_name: String = r.get(4);
    let source = match source_name.parse::<ChangeSource>() {
        Ok(s) if s.as_str() == source_name => s,
        _ => return Err(unrecognised(seq, "source", &source_name)),
    };
    let rule_set = match r.get::<_, Option<String>>(8) {
        None => None,
        Some(name) => match name.parse::<RuleSet>() {
            Ok(rules) if rules.as_str() == name => Some(rules),
            _ => return Err(unrecognised(seq, "rule_set", &name)),
        },
    };
    let time = |i| {
        r.get::<_, Option<i64>>(i)
            .map(|t| u64::try_from(t).unwrap_or(0))
    };
    let change = Change::new(LedgerKey::new(&scope, &participant), state, source);
    let mut e = HistoryEntry::new(
        u64::try_from(seq).unwrap_or(0),
        &change,
        time(10).unwrap_or(0),
    );
    (e.keyword, e.text, e.message_id, e.rule_set) = (r.get(5), r.get(6), r.get(7), rule_set);
    (e.received_at, e.confirmed_at) = (time(9), time(11));
    Ok(e)
}

/// Runs `stmt` (`proxy_optout_record`'s parameters) for `change`, its text dropped unless
/// kept; returns the rows it reported.
async fn record_with(
    client: &(impl tokio_postgres::GenericClient + Sync),
    stmt: &tokio_postgres::Statement,
    change: &Change<'_>,
    keep_texts: bool,
) -> Result<u64, tokio_postgres::Error> {
    let key = change.key();
    let text = change.text().filter(|_| keep_texts);
    client
        .execute(
            stmt,
            &[
                &key.scope(),
                &key.participant(),
                &change.state().as_str(),
                &change.source().as_str(),
                &change.keyword(),
                &text,
                &change.message_id(),
                &change.rule_set().map(RuleSet::as_str),
                &ms(change.received_at()),
                &ms(change.confirmed_at()),
            ],
        )
        .await
}

impl PgStore {
    pub(crate) async fn record_change_now(&self, change: &Change<'_>) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let result = async {
            let stmt = client.prepare_cached(RECORD).await?;
            record_with(&**client, &stmt, change, self.keep_texts).await
        }
        .await;
        discard_if_broken(client, &result);
        result?;
        Ok(())
    }

    /// Records each of `changes` whose state differs from its key's current one, each with
    /// its history entry, in one transaction, and returns how many were recorded. For
    /// imports: re-running one records nothing new, and a failure leaves none of the batch.
    ///
    /// # Errors
    ///
    /// [`StoreError`]; nothing of the batch is stored then.
    ///
    /// ```no_run
    /// use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// # async fn run() -> Result<(), proxy_optout_postgres::StoreError> {
    /// let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// let row = Change::new(LedgerKey::new("+1P", "+1A"), OptState::OptedOut, ChangeSource::Import);
    /// store.record_changes(&[row]).await?;
    /// assert_eq!(store.record_changes(&[row]).await?, 0);
    /// # Ok(()) }
    /// ```
    pub async fn record_changes(&self, changes: &[Change<'_>]) -> Result<u64, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare_cached(RECORD_IF_CHANGED).await?;
        let mut recorded = 0;
        for change in changes {
            recorded += record_with(&*tx, &stmt, change, self.keep_texts).await?;
        }
        tx.commit().await?;
        Ok(recorded)
    }

    pub(crate) async fn confirm_now(
        &self,
        key: LedgerKey<'_>,
        state: OptState,
        unix_ms: u64,
    ) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let result = async {
            let stmt = client.prepare_cached(CONFIRM).await?;
            client
                .execute(
                    &stmt,
                    &[
                        &key.scope(),
                        &key.participant(),
                        &state.as_str(),
                        &ms(Some(unix_ms)),
                    ],
                )
                .await
        }
        .await;
        discard_if_broken(client, &result);
        result?;
        Ok(())
    }

    async fn history_now(&self, query: &HistoryQuery<'_>) -> Result<Vec<HistoryEntry>, StoreError> {
        let client = self.pool.get().await?;
        let (since, until) = query.get_recorded_between();
        let result = async {
            let stmt = client.prepare_cached(READ).await?;
            client
                .query(
                    &stmt,
                    &[
                        &i64::try_from(query.get_after()).unwrap_or(i64::MAX),
                        &query.get_scope(),
                        &query.get_participant(),
                        &query.get_state().map(OptState::as_str),
                        &ms(since),
                        &ms(until),
                        &query.is_current_only(),
                        &i64::try_from(query.get_limit()).unwrap_or(i64::MAX),
                    ],
                )
                .await
        }
        .await;
        discard_if_broken(client, &result);
        result?.iter().map(entry).collect()
    }

    /// Whether history entries keep message texts ([`Options::keep_texts`](crate::Options::keep_texts)).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), proxy_optout_postgres::StoreError> {
    /// let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// assert!(store.keeps_texts());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn keeps_texts(&self) -> bool {
        self.keep_texts
    }

    /// Deletes history entries recorded before `unix_ms`, except the entry behind each
    /// current opt-out, and returns how many went.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the delete fails.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), proxy_optout_postgres::StoreError> {
    /// let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// let four_years_ago = 1_700_000_000_000;
    /// store.purge_history(four_years_ago).await?;
    /// # Ok(()) }
    /// ```
    pub async fn purge_history(&self, before_unix_ms: u64) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM opt_out_history WHERE recorded_at < to_timestamp($1::bigint / 1000.0)
                   AND seq NOT IN (SELECT history_seq FROM opt_out_ledger
                                   WHERE state = 'opted_out' AND history_seq IS NOT NULL)",
                &[&ms(Some(before_unix_ms))],
            )
            .await?)
    }

    /// Clears the text of history entries recorded before `unix_ms` (the entries stay) and
    /// returns how many were cleared.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the update fails.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), proxy_optout_postgres::StoreError> {
    /// let store = proxy_optout_postgres::PgStore::connect("postgres://postgres@127.0.0.1/test").await?;
    /// store.purge_texts(1_700_000_000_000).await?;
    /// # Ok(()) }
    /// ```
    pub async fn purge_texts(&self, before_unix_ms: u64) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "UPDATE opt_out_history SET body = NULL
                 WHERE recorded_at < to_timestamp($1::bigint / 1000.0) AND body IS NOT NULL",
                &[&ms(Some(before_unix_ms))],
            )
            .await?)
    }
}

impl AsyncHistoryStore for PgStore {
    fn history(
        &self,
        query: &HistoryQuery<'_>,
    ) -> impl Future<Output = Result<Vec<HistoryEntry>, StoreError>> + Send {
        self.history_now(query)
    }
}
