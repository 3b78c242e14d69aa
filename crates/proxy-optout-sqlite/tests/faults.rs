//! Files that are corrupt, newer, read-only, locked or full: typed errors, and the relay fails
//! closed. Redelivery of one message id, sequential and concurrent: one forward, one reply.

use std::sync::Arc;
use std::time::Duration;

use proxy_optout::{Inbound, LedgerKey, OptOutStore, OptState, Participant, Relay, RelayError};
use proxy_optout_sqlite::{Claim, Options, SqliteStore, StoreError, SCHEMA_VERSION};

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION + 1, "never rewritten");
}

#[test]
fn reopening_keeps_the_data_and_the_durability_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let store = SqliteStore::open(&path).unwrap();
    store
        .record(LedgerKey::new("P", "A"), OptState::OptedOut)
        .unwrap();
    let (mode, sync): (String, i64) = store
        .with_connection(|c| {
            Ok((
                c.pragma_query_value(None, "journal_mode", |r| r.get(0))?,
                c.pragma_query_value(None, "synchronous", |r| r.get(0))?,
            ))
        })
        .unwrap();
    assert_eq!(
        (mode.as_str(), sync),
        ("wal", 2),
        "WAL with synchronous=FULL"
    );
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.state(LedgerKey::new("P", "A")).unwrap(),
        OptState::OptedOut
    );
}

#[test]
fn corrupt_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    std::fs::write(&path, vec![0x5A; 8192]).unwrap();
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::Corrupt { .. })
    ));
}

fn relay_on(store: SqliteStore) -> Relay<SqliteStore> {
    let mut relay = Relay::new(store);
    relay
        .sessions_mut()
        .open(
            "r",
            Participant::new("+1A", "+1P").unwrap(),
            Participant::new("+1B", "+1P").unwrap(),
        )
        .unwrap();
    relay
}

#[test]
fn a_read_only_database_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    drop(SqliteStore::open(&path).unwrap());
    // A second process holding the file read-only (as after a bad deploy or a full volume).
    let ro =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    drop(ro);
    let store = SqliteStore::open(&path).unwrap();
    store
        .with_connection(|c| c.pragma_update(None, "query_only", true))
        .unwrap();
    let relay = relay_on(store);
    match relay.handle(&Inbound::sms("+1A", "+1P", "STOP")) {
        Err(RelayError::Record {
            source: StoreError::ReadOnly(_),
            outcome,
            ..
        }) => {
            assert!(
                outcome.reply().is_none(),
                "no confirmation of an unstored opt-out"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lock_held_past_the_timeout_is_busy_and_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let store = SqliteStore::open_with(
        &path,
        Options::default().busy_timeout(Duration::from_millis(100)),
    )
    .unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let relay = relay_on(store);
    let err = relay
        .handle(&Inbound::sms("+1A", "+1P", "STOP"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            RelayError::Record {
                source: StoreError::Busy(_),
                ..
            }
        ),
        "{err}"
    );
    // In WAL mode readers are never blocked by a writer: reads see the last committed state,
    // so messages keep flowing while the lock is held.
    let out = relay.handle(&Inbound::sms("+1A", "+1P", "hello")).unwrap();
    assert!(out.forwarded().is_some());
    other.execute_batch("ROLLBACK").unwrap();
    assert!(
        relay.handle(&Inbound::sms("+1A", "+1P", "STOP")).is_ok(),
        "recovers once the lock is gone"
    );
}

#[test]
fn a_full_database_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    drop(SqliteStore::open(&path).unwrap());
    let pages: u32 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    let store = SqliteStore::open_with(&path, Options::default().max_pages(pages + 2)).unwrap();
    let mut full = None;
    for i in 0..10_000 {
        let who = format!("+1{i:08}{}", "x".repeat(200));
        if let Err(e) = store.record(LedgerKey::new("P", &who), OptState::OptedOut) {
            full = Some(e);
            break;
        }
    }
    assert!(matches!(full, Some(StoreError::Full(_))), "{full:?}");
}

#[test]
fn redelivery_gives_one_forward_and_one_reply() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("l.db")).unwrap();
    let relay = Arc::new(relay_on(store.clone()));
    let performed = Arc::new(std::sync::Mutex::new((0, 0)));
    let deliver = {
        let (relay, store, performed) = (relay.clone(), store.clone(), performed.clone());
        move |body: &'static str| -> Option<String> {
            match store.claim("SM42").unwrap() {
                Claim::New => {
                    let out = relay
                        .handle(&Inbound::sms("+1A", "+1P", body).with_message_id("SM42"))
                        .unwrap();
                    let mut p = performed.lock().unwrap();
                    p.0 += usize::from(out.forwarded().is_some());
                    p.1 += usize::from(out.reply().is_some());
                    let answer = format!("{out}");
                    store.complete("SM42", &answer).unwrap();
                    Some(answer)
                }
                Claim::Answered(a) => Some(a),
                Claim::InProgress => None, // 503: the platform retries
                _ => unreachable!(),
            }
        }
    };
    // Sequential: the second delivery returns the first answer and performs nothing.
    let first = deliver("START").unwrap();
    assert_eq!(deliver("START").unwrap(), first);
    assert_eq!(*performed.lock().unwrap(), (1, 1));
    // Concurrent: many deliveries of a new id at once.
    let concurrent_store = store.clone();
    let relay2 = relay.clone();
    let count = Arc::new(std::sync::Mutex::new((0, 0)));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (s, r, c) = (concurrent_store.clone(), relay2.clone(), count.clone());
            std::thread::spawn(move || {
                if s.claim("SM43").unwrap() == Claim::New {
                    let out = r
                        .handle(&Inbound::sms("+1B", "+1P", "START").with_message_id("SM43"))
                        .unwrap();
                    let mut c = c.lock().unwrap();
                    c.0 += usize::from(out.forwarded().is_some());
                    c.1 += usize::from(out.reply().is_some());
                    s.complete("SM43", "done").unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*count.lock().unwrap(), (1, 1));
    assert_eq!(store.claim("SM43").unwrap(), Claim::Answered("done".into()));
    // Retention: nothing is younger than zero seconds... everything is older.
    assert_eq!(store.purge_processed(Duration::ZERO).unwrap(), 2);
}

#[test]
fn a_group_of_answers_is_stored_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("l.db")).unwrap();
    for id in ["SM1", "SM2", "SM3"] {
        assert_eq!(store.claim(id).unwrap(), Claim::New);
    }
    store
        .with_connection(|c| {
            c.execute_batch(
                "CREATE TRIGGER refuse_sm3 BEFORE UPDATE ON processed_messages
                 WHEN new.message_id = 'SM3' BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
        })
        .unwrap();
    assert!(store
        .complete_many(&[("SM1", "one"), ("SM3", "three")])
        .is_err());
    assert_eq!(
        store.claim("SM1").unwrap(),
        Claim::InProgress,
        "rolled back with SM3"
    );
    store
        .complete_many(&[("SM1", "one"), ("SM2", "two"), ("SM2", "two again")])
        .unwrap();
    assert_eq!(store.claim("SM1").unwrap(), Claim::Answered("one".into()));
    assert_eq!(
        store.claim("SM2").unwrap(),
        Claim::Answered("two again".into())
    );
}

#[test]
fn a_group_of_answers_releases_in_memory_claims() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(
        dir.path().join("l.db"),
        Options::default()
            .claims(proxy_optout_sqlite::Claims::Memory)
            .exclusive(true),
    )
    .unwrap();
    assert_eq!(store.claim("SM1").unwrap(), Claim::New);
    assert_eq!(store.claim("SM1").unwrap(), Claim::InProgress);
    store.complete_many(&[("SM1", "one")]).unwrap();
    assert_eq!(store.claim("SM1").unwrap(), Claim::Answered("one".into()));
}
