//! The session tables on SQLite, beside the store crate's ledger in the same file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::worker::DbWorker;

use proxy_optout_sqlite::{Durability, Options, SqliteStore};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{
    assemble, now_ms, pick_proxy, route_row, AdminError, Claim, Db, DbError, Inner, SessionHead,
    SESSION_SCHEMA, SESSION_SCHEMA_VERSION,
};
use crate::sessions::{
    FieldError, NewSession, RouteRow, Session, SessionParticipant, SessionStatus,
};

pub(super) fn open(path: &Path, worker: Arc<DbWorker>) -> Result<Db, DbError> {
    // Exclusive: this process is the file's only user (SQLite is the single-host setup), so
    // no transaction pays for file locks, and a second server on the same file fails at start
    // instead of sharing it unsafely.
    let ledger = SqliteStore::open_with(
        path,
        Options::default()
            .durability(Durability::Full)
            .exclusive(true)
            .busy_timeout(std::time::Duration::ZERO),
    )?;
    let found = ledger.with_connection(|c| {
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
        _ => Ok(Db(Inner::Sqlite {
            ledger,
            worker,
            in_flight: Arc::default(),
        })),
    }
}

fn parts(db: &Db) -> (&SqliteStore, &Mutex<HashMap<String, Instant>>) {
    match &db.0 {
        Inner::Sqlite {
            ledger, in_flight, ..
        } => (ledger, in_flight),
        Inner::Postgres(_) => unreachable!("only called on SQLite"),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The processed-message claim, single-process style: the answer is read from the store's
/// `processed_messages` table, and a delivery in progress is a map entry in memory. A crash
/// mid-message loses only the in-memory entry, so Twilio's retry is handled again, as it
/// would be once a stored claim went stale.
fn claim(db: &Db, id: &str) -> Result<Claim, DbError> {
    let (store, in_flight) = parts(db);
    let answer: Option<Option<String>> = store.with_connection(|c| {
        c.prepare_cached("SELECT answer FROM processed_messages WHERE message_id = ?1")?
            .query_row(params![id], |r| r.get(0))
            .optional()
    })?;
    if let Some(Some(answer)) = answer {
        return Ok(Claim::Answered(answer));
    }
    let mut map = lock(in_flight);
    let now = Instant::now();
    match map.get(id) {
        Some(at) if now.duration_since(*at) < proxy_optout_sqlite::STALE_CLAIM => {
            Ok(Claim::InProgress)
        }
        _ => {
            map.insert(id.to_owned(), now);
            Ok(Claim::New)
        }
    }
}

/// Stores the answer. Not synced to disk: SQLite's WAL keeps it through a process crash,
/// and if a power cut loses it, the retry is handled again (the ledger writes it caused were
/// synced, and are idempotent); a sync here would double the cost of every message.
pub(super) fn complete(db: &Db, id: &str, answer: &str) -> Result<(), DbError> {
    let (store, in_flight) = parts(db);
    let result = store.with_connection(|c| {
        c.prepare_cached("PRAGMA synchronous = NORMAL")?
            .execute([])?;
        let written = c
            .prepare_cached(
                "INSERT INTO processed_messages (message_id, answer, processed_at)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (message_id) DO UPDATE SET answer = excluded.answer",
            )
            .and_then(|mut st| st.execute(params![id, answer, now_ms()]));
        // Back to FULL whatever happened: every other write on this connection is synced.
        c.prepare_cached("PRAGMA synchronous = FULL")?.execute([])?;
        written.map(|_| ())
    });
    lock(in_flight).remove(id);
    Ok(result?)
}

pub(super) fn release(db: &Db, id: &str) {
    lock(parts(db).1).remove(id);
}

const ROUTE: &str = "SELECT p.session_sid, o.identifier, o.proxy_identifier
     FROM relay_participants p
     LEFT JOIN relay_participants o
       ON o.session_sid = p.session_sid AND o.active = 1 AND o.position <> p.position
     WHERE p.identifier = ?1 AND p.proxy_identifier = ?2 AND p.active = 1
     LIMIT 1";

pub(super) fn begin(
    db: &Db,
    message_id: Option<&str>,
    from: &str,
    to: &str,
) -> Result<(Claim, Option<RouteRow>), DbError> {
    let claim = match message_id {
        None => Claim::New,
        Some(id) => match claim(db, id)? {
            Claim::New => Claim::New,
            other => return Ok((other, None)),
        },
    };
    let fast = parts(db).0;
    let row = fast.with_connection(|c| {
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
    let route = row
        .map(|(session, other, other_proxy)| route_row(session, from, to, other, other_proxy))
        .transpose()?;
    Ok((claim, route))
}

fn used_proxies(tx: &Connection, identifier: &str) -> rusqlite::Result<Vec<String>> {
    tx.prepare_cached(
        "SELECT proxy_identifier FROM relay_participants WHERE identifier = ?1 AND active = 1",
    )?
    .query_map(params![identifier], |r| r.get(0))?
    .collect()
}

pub(super) fn create(
    ledger: &SqliteStore,
    sid: &str,
    request: &NewSession,
    pool: &[String],
) -> Result<Session, AdminError> {
    let result = ledger.with_connection(|c| {
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
            let proxy = match pick_proxy(i, &p.identifier, p.proxy_identifier.as_deref(), pool, &used) {
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

pub(super) fn session(fast: &SqliteStore, sid: &str) -> Result<Option<Session>, DbError> {
    let found = fast.with_connection(|c| {
        c.prepare_cached(&format!("{HEAD} WHERE sid = ?1"))?
            .query_row(params![sid], head)
            .optional()
    })?;
    match found {
        None => Ok(None),
        Some(h) => fast.with_connection(|c| Ok(read(c, h)))?.map(Some),
    }
}

pub(super) fn sessions(
    fast: &SqliteStore,
    status: Option<SessionStatus>,
    limit: u32,
) -> Result<Vec<Session>, DbError> {
    let heads = fast.with_connection(|c| {
        c.prepare_cached(&format!(
            "{HEAD} WHERE (?1 IS NULL OR status = ?1) ORDER BY created_at DESC, sid LIMIT ?2"
        ))?
        .query_map(params![status.map(SessionStatus::as_str), limit], head)?
        .collect::<rusqlite::Result<Vec<_>>>()
    })?;
    heads
        .into_iter()
        .map(|h| fast.with_connection(|c| Ok(read(c, h)))?)
        .collect()
}

pub(super) fn close(ledger: &SqliteStore, sid: &str) -> Result<Option<Session>, DbError> {
    let changed = ledger.with_connection(|c| {
        let tx = Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE relay_sessions SET status = 'closed', closed_at = ?2
             WHERE sid = ?1 AND status = 'open'",
            params![sid, now_ms()],
        )?;
        tx.execute(
            "UPDATE relay_participants SET active = 0 WHERE session_sid = ?1",
            params![sid],
        )?;
        tx.commit()?;
        Ok(n)
    })?;
    let _ = changed;
    session(ledger, sid)
}
