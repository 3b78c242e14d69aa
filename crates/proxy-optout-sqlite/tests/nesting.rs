//! The store's methods inside a transaction of the caller's: each joins it (as a savepoint
//! where it writes more than one statement) instead of failing to begin its own, stays
//! all-or-nothing, and is kept or lost with the caller's commit.

use proxy_optout::{Change, ChangeSource, LedgerKey, OptOutStore, OptState};
use proxy_optout_sqlite::{Claim, SqliteStore};

fn begin(store: &SqliteStore) {
    store.with_connection(|c| c.execute_batch("BEGIN")).unwrap();
}
fn end(store: &SqliteStore, sql: &str) {
    store.with_connection(|c| c.execute_batch(sql)).unwrap();
}

#[test]
fn writes_inside_the_callers_transaction_are_kept_or_lost_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("n.db")).unwrap();
    let key = LedgerKey::new("+1P", "+1A");
    let changes = [Change::new(key, OptState::OptedOut, ChangeSource::Import)];

    begin(&store);
    assert_eq!(store.claim("SM1").unwrap(), Claim::New);
    store.complete_many(&[("SM1", "<Response/>")]).unwrap();
    assert_eq!(store.record_changes(&changes).unwrap(), 1);
    // The caller's transaction sees its own writes, and is still open.
    assert_eq!(store.state(key).unwrap(), OptState::OptedOut);
    assert!(!store.with_connection(|c| Ok(c.is_autocommit())).unwrap());
    end(&store, "ROLLBACK");
    assert_eq!(store.state(key).unwrap(), OptState::OptedIn);
    assert_eq!(
        store.claim("SM1").unwrap(),
        Claim::New,
        "the claim went with the rollback"
    );

    begin(&store);
    store.complete_many(&[("SM1", "<Response/>")]).unwrap();
    assert_eq!(store.record_changes(&changes).unwrap(), 1);
    end(&store, "COMMIT");
    assert_eq!(store.state(key).unwrap(), OptState::OptedOut);
    assert_eq!(
        store.claim("SM1").unwrap(),
        Claim::Answered("<Response/>".into())
    );
}

#[test]
fn a_failed_method_undoes_only_its_own_writes_in_the_callers_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("n.db")).unwrap();
    end(
        &store,
        "CREATE TRIGGER refuse_bad BEFORE INSERT ON processed_messages
         WHEN NEW.message_id = 'SMbad' BEGIN SELECT RAISE(ABORT, 'refused'); END",
    );
    begin(&store);
    assert_eq!(store.claim("SM0").unwrap(), Claim::New);
    // The first answer is written, the second refused: the savepoint takes back both.
    assert!(store
        .complete_many(&[("SMgood", "<Response/>"), ("SMbad", "<Response/>")])
        .is_err());
    assert!(!store.with_connection(|c| Ok(c.is_autocommit())).unwrap());
    end(&store, "COMMIT");
    assert_eq!(store.claim("SMgood").unwrap(), Claim::New, "not stored");
    assert_eq!(
        store.claim("SM0").unwrap(),
        Claim::InProgress,
        "the earlier claim kept"
    );
}
