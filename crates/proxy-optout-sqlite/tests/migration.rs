//! A file written by schema version 3 (before history) is migrated in place: each stored
//! state gets one `unspecified` entry, which is the entry behind it, and new changes append.

use proxy_optout::{ChangeSource, HistoryQuery, HistoryStore, LedgerKey, OptOutStore, OptState};
use proxy_optout_sqlite::{SqliteStore, SCHEMA, SCHEMA_V2, SCHEMA_V3, SCHEMA_VERSION};

#[test]
fn a_version_3_file_gains_one_entry_per_state_and_keeps_its_states() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in [SCHEMA, SCHEMA_V2, SCHEMA_V3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO opt_out_ledger VALUES ('+1P', '+1A', 'opted_out', 1000);
             INSERT INTO opt_out_ledger VALUES ('+1P', '+1B', 'opted_in', 2000);
             PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let version: u32 = store
        .with_connection(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let a = LedgerKey::new("+1P", "+1A");
    assert_eq!(store.state(a).unwrap(), OptState::OptedOut);
    assert_eq!(
        store.state(LedgerKey::new("+1P", "+1B")).unwrap(),
        OptState::OptedIn
    );
    let entries = store.history(&HistoryQuery::new()).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (entries[0].participant.as_str(), entries[0].recorded_at),
        ("+1A", 1000)
    );
    assert!(entries
        .iter()
        .all(|e| e.source == ChangeSource::Unspecified));
    let current = store
        .history(
            &HistoryQuery::new()
                .current_only(true)
                .state(OptState::OptedOut),
        )
        .unwrap();
    assert_eq!(
        current.len(),
        1,
        "the migrated entry is the one behind the state"
    );
    store.record(a, OptState::OptedIn).unwrap();
    let entries = store
        .history(&HistoryQuery::new().participant("+1A"))
        .unwrap();
    assert_eq!(entries.len(), 2);
    assert!(store
        .history(
            &HistoryQuery::new()
                .current_only(true)
                .state(OptState::OptedOut)
        )
        .unwrap()
        .is_empty());
}
