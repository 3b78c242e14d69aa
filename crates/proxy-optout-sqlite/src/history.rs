//! The ledger's history in the store's file: one `opt_out_history` row per change, written by
//! the same statement as the state (a trigger on the history table sets the state), so a
//! state is never stored without its entry, nor an entry without its state, inside or outside
//! a host's own transaction.

use proxy_optout::{
    Change, ChangeSource, HistoryEntry, HistoryQuery, HistoryStore, LedgerKey, OptState, RuleSet,
};
use rusqlite::{params, Row, TransactionBehavior};

use crate::atomic::Atomic;
use crate::{now_ms, parse_state, SqliteStore, StoreError};

/// Schema version 4: the history table, the state's pointer to its entry, one `unspecified`
/// entry for each state stored before, and the trigger that keeps state and entry together.
pub const SCHEMA_V4: &str = "
CREATE TABLE opt_out_history (
    -- Not AUTOINCREMENT, which costs every insert a write to sqlite_sequence: a seq can be
    -- given again only after a purge removed the newest entries (purges keep the entry behind
    -- each current opt-out, and remove only old ones).
    seq          INTEGER PRIMARY KEY,
    scope        TEXT    NOT NULL,
    participant  TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    source       TEXT    NOT NULL,  -- ChangeSource::as_str
    keyword      TEXT,
    body         TEXT,              -- the text as received; NULL where texts are not kept
    message_id   TEXT,
    rule_set     TEXT,              -- RuleSet::as_str
    received_at  INTEGER,           -- unix milliseconds
    recorded_at  INTEGER NOT NULL,  -- unix milliseconds
    confirmed_at INTEGER            -- unix milliseconds; set once
);
-- By key, for one person's history; no index by time: exports read in seq order and
-- the hourly retention pass can scan, where every write would pay for the index.
CREATE INDEX opt_out_history_by_key ON opt_out_history (scope, participant, seq);
ALTER TABLE opt_out_ledger ADD COLUMN history_seq INTEGER;  -- the entry behind the state
INSERT INTO opt_out_history (scope, participant, state, source, recorded_at)
    SELECT scope, participant, state, 'unspecified', updated_at FROM opt_out_ledger
    ORDER BY updated_at, scope, participant;
UPDATE opt_out_ledger SET history_seq = (
    SELECT max(h.seq) FROM opt_out_history h
    WHERE h.scope = opt_out_ledger.scope AND h.participant = opt_out_ledger.participant);
CREATE TRIGGER opt_out_history_sets_state AFTER INSERT ON opt_out_history
BEGIN
    INSERT INTO opt_out_ledger (scope, participant, state, updated_at, history_seq)
    VALUES (NEW.scope, NEW.participant, NEW.state, NEW.recorded_at, NEW.seq)
    ON CONFLICT (scope, participant) DO UPDATE
    SET state = excluded.state, updated_at = excluded.updated_at,
        history_seq = excluded.history_seq;
END;
";

const APPEND: &str = "INSERT INTO opt_out_history
    (scope, participant, state, source, keyword, body, message_id, rule_set, received_at,
     recorded_at, confirmed_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, max(?11, ?10))";

/// [`APPEND`], skipped when the key already has the change's state (absent reads as opted in).
const APPEND_IF_CHANGED: &str = "INSERT INTO opt_out_history
    (scope, participant, state, source, keyword, body, message_id, rule_set, received_at,
     recorded_at, confirmed_at)
    SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, max(?11, ?10)
    WHERE COALESCE((SELECT state FROM opt_out_ledger WHERE scope = ?1 AND participant = ?2),
                   'opted_in') <> ?3";

const CONFIRM: &str = "UPDATE opt_out_history SET confirmed_at = ?4
    WHERE seq = (SELECT history_seq FROM opt_out_ledger
                 WHERE scope = ?1 AND participant = ?2 AND state = ?3)
      AND confirmed_at IS NULL";

const READ: &str = "SELECT seq, scope, participant, state, source, keyword, body, message_id,
        rule_set, received_at, recorded_at, confirmed_at
    FROM opt_out_history h
    WHERE seq > ?1
      AND (?2 IS NULL OR scope = ?2)
      AND (?3 IS NULL OR participant = ?3)
      AND (?4 IS NULL OR state = ?4)
      AND (?5 IS NULL OR recorded_at >= ?5)
      AND (?6 IS NULL OR recorded_at < ?6)
      AND (?7 = 0 OR EXISTS (SELECT 1 FROM opt_out_ledger l
                             WHERE l.scope = h.scope AND l.participant = h.participant
                               AND l.history_seq = h.seq))
    ORDER BY seq
    LIMIT ?8";

fn ms(v: Option<u64>) -> Option<i64> {
    v.map(|t| i64::try_from(t).unwrap_or(i64::MAX))
}

fn unrecognised(seq: i64, column: &'static str, value: &str) -> StoreError {
    StoreError::UnrecognisedHistory {
        seq,
        column,
        value: value.to_owned(),
    }
}

fn entry(r: &Row<'_>) -> rusqlite::Result<Result<HistoryEntry, StoreError>> {
    let seq: i64 = r.get(0)?;
    let scope: String = r.get(1)?;
    let participant: String = r.get(2)?;
    let state: String = r.get(3)?;
    let source: String = r.get(4)?;
    let keyword: Option<String> = r.get(5)?;
    let body: Option<String> = r.get(6)?;
    let message_id: Option<String> = r.get(7)?;
    let rule_set: Option<String> = r.get(8)?;
    let time = |i| -> rusqlite::Result<Option<u64>> {
        Ok(r.get::<_, Option<i64>>(i)?
            .map(|t| u64::try_from(t).unwrap_or(0)))
    };
    let (received_at, recorded_at, confirmed_at) = (time(9)?, time(10)?, time(11)?);
    Ok((|| {
        let state = parse_state(&scope, &participant, &state)?;
        let source = match source.parse::<ChangeSource>() {
            Ok(s) if s.as_str() == source => s,
            _ => return Err(unrecognised(seq, "source", &source)),
        };
        let rule_set = match rule_set {
            None => None,
            Some(name) => match name.parse::<RuleSet>() {
                Ok(r) if r.as_str() == name => Some(r),
                _ => return Err(unrecognised(seq, "rule_set", &name)),
            },
        };
        let key = LedgerKey::new(&scope, &participant);
        let change = Change::new(key, state, source);
        let mut e = HistoryEntry::new(
            u64::try_from(seq).unwrap_or(0),
            &change,
            recorded_at.unwrap_or(0),
        );
        (e.keyword, e.text, e.message_id, e.rule_set) = (keyword, body, message_id, rule_set);
        (e.received_at, e.confirmed_at) = (received_at, confirmed_at);
        Ok(e)
    })())
}

impl SqliteStore {
    fn append_with(
        &self,
        stmt: &mut rusqlite::CachedStatement<'_>,
        change: &Change<'_>,
    ) -> Result<usize, StoreError> {
        let key = change.key();
        let text = change.text().filter(|_| self.inner.keep_texts);
        stmt.execute(params![
            key.scope(),
            key.participant(),
            change.state().as_str(),
            change.source().as_str(),
            change.keyword(),
            text,
            change.message_id(),
            change.rule_set().map(RuleSet::as_str),
            ms(change.received_at()),
            now_ms(),
            ms(change.confirmed_at()),
        ])
        .map_err(|e| self.err(e))
    }

    pub(crate) fn append_now(&self, change: &Change<'_>) -> Result<(), StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(APPEND).map_err(|e| self.err(e))?;
        self.append_with(&mut stmt, change).map(|_| ())
    }

    /// Records each of `changes` whose state differs from its key's current one (a key never
    /// written reads as opted in), each with its history entry, all in one transaction, and
    /// returns how many were recorded. For imports: re-running one records nothing new, and a
    /// failure leaves none of the batch.
    ///
    /// # Errors
    ///
    /// [`StoreError`]; nothing of the batch is stored then.
    ///
    /// ```
    /// use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// let dir = tempfile::tempdir()?;
    /// let store = proxy_optout_sqlite::SqliteStore::open(dir.path().join("l.db"))?;
    /// let rows = [
    ///     Change::new(LedgerKey::new("+1P", "+1A"), OptState::OptedOut, ChangeSource::Import),
    ///     Change::new(LedgerKey::new("+1P", "+1B"), OptState::OptedOut, ChangeSource::Import),
    /// ];
    /// assert_eq!(store.record_changes(&rows)?, 2);
    /// assert_eq!(store.record_changes(&rows)?, 0); // already opted out
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn record_changes(&self, changes: &[Change<'_>]) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx =
            Atomic::begin(&mut conn, TransactionBehavior::Deferred).map_err(|e| self.err(e))?;
        let mut recorded = 0;
        {
            let mut stmt = tx
                .prepare_cached(APPEND_IF_CHANGED)
                .map_err(|e| self.err(e))?;
            for change in changes {
                recorded += self.append_with(&mut stmt, change)?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(recorded)
    }

    pub(crate) fn confirm_now(
        &self,
        key: LedgerKey<'_>,
        state: OptState,
        unix_ms: u64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(CONFIRM).map_err(|e| self.err(e))?;
        stmt.execute(params![
            key.scope(),
            key.participant(),
            state.as_str(),
            ms(Some(unix_ms))
        ])
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(crate) fn history_now(
        &self,
        query: &HistoryQuery<'_>,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(READ).map_err(|e| self.err(e))?;
        let (since, until) = query.get_recorded_between();
        let rows = stmt
            .query_map(
                params![
                    i64::try_from(query.get_after()).unwrap_or(i64::MAX),
                    query.get_scope(),
                    query.get_participant(),
                    query.get_state().map(OptState::as_str),
                    ms(since),
                    ms(until),
                    query.is_current_only(),
                    i64::try_from(query.get_limit()).unwrap_or(i64::MAX),
                ],
                entry,
            )
            .map_err(|e| self.err(e))?;
        let mut page = Vec::with_capacity(query.get_limit().min(1024));
        for row in rows {
            page.push(row.map_err(|e| self.err(e))??);
        }
        Ok(page)
    }

    /// Deletes history entries recorded before `unix_ms`, except the entry behind each
    /// current opt-out (the evidence for a state still in force is never purged), and returns
    /// how many went.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the delete fails.
    ///
    /// ```
    /// use proxy_optout::{HistoryQuery, HistoryStore, LedgerKey, OptOutStore, OptState};
    /// let dir = tempfile::tempdir()?;
    /// let store = proxy_optout_sqlite::SqliteStore::open(dir.path().join("l.db"))?;
    /// let key = LedgerKey::new("+1P", "+1A");
    /// store.record(key, OptState::OptedIn)?;
    /// store.record(key, OptState::OptedOut)?;
    /// assert_eq!(store.purge_history(u64::MAX)?, 1); // the opt-in; the opt-out's entry stays
    /// assert_eq!(store.history(&HistoryQuery::new())?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn purge_history(&self, before_unix_ms: u64) -> Result<usize, StoreError> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM opt_out_history WHERE recorded_at < ?1
               AND seq NOT IN (SELECT history_seq FROM opt_out_ledger
                               WHERE state = 'opted_out' AND history_seq IS NOT NULL)",
            params![ms(Some(before_unix_ms))],
        )
        .map_err(|e| self.err(e))
    }

    /// Clears the text of history entries recorded before `unix_ms` (the entries stay) and
    /// returns how many were cleared.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the update fails.
    ///
    /// ```
    /// use proxy_optout::{Change, ChangeSource, HistoryQuery, HistoryStore, LedgerKey, OptOutStore, OptState};
    /// let dir = tempfile::tempdir()?;
    /// let store = proxy_optout_sqlite::SqliteStore::open(dir.path().join("l.db"))?;
    /// let c = Change::new(LedgerKey::new("+1P", "+1A"), OptState::OptedOut, ChangeSource::Keyword);
    /// store.record_change(&c.with_text("stop it"))?;
    /// assert_eq!(store.purge_texts(u64::MAX)?, 1);
    /// assert_eq!(store.history(&HistoryQuery::new())?[0].text, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn purge_texts(&self, before_unix_ms: u64) -> Result<usize, StoreError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE opt_out_history SET body = NULL WHERE recorded_at < ?1 AND body IS NOT NULL",
            params![ms(Some(before_unix_ms))],
        )
        .map_err(|e| self.err(e))
    }
}

impl HistoryStore for SqliteStore {
    fn history(&self, query: &HistoryQuery<'_>) -> Result<Vec<HistoryEntry>, StoreError> {
        self.history_now(query)
    }
}

/// A [`Change`] moved to the blocking pool: the core's type borrows.
#[cfg(feature = "tokio")]
pub(crate) struct OwnedChange(HistoryEntry);

#[cfg(feature = "tokio")]
impl OwnedChange {
    pub(crate) fn of(change: &Change<'_>) -> Self {
        OwnedChange(HistoryEntry::new(0, change, 0))
    }

    pub(crate) fn as_change(&self) -> Change<'_> {
        self.0.as_change()
    }
}
