//! The SQLite store passes the conformance kit on real files, sync and async.

use proxy_optout::LedgerKey;
use proxy_optout_conformance::{
    check_async_history, check_async_store, check_history, check_store, AsyncHarness, Fault,
    Harness,
};
use proxy_optout_sqlite::SqliteStore;

struct Files(tempfile::TempDir, std::sync::atomic::AtomicUsize);

impl Files {
    fn new() -> Self {
        Files(tempfile::tempdir().unwrap(), Default::default())
    }
    fn next(&self) -> SqliteStore {
        let n = self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        SqliteStore::open(self.0.path().join(format!("ledger-{n}.db"))).unwrap()
    }
}

fn corrupt(store: &SqliteStore, scope: &str, participant: &str) -> bool {
    store
        .with_connection(|c| {
            c.execute(
                "INSERT INTO opt_out_ledger (scope, participant, state, updated_at)
                 VALUES (?1, ?2, 'opted_sideways', 0)
                 ON CONFLICT DO UPDATE SET state = 'opted_sideways'",
                [scope, participant],
            )
        })
        .unwrap();
    true
}

/// A trigger that fails every write of the table `fault` names.
fn inject(store: &SqliteStore, fault: Fault, on: bool) -> bool {
    let table = match fault {
        Fault::State => "opt_out_ledger",
        _ => "opt_out_history",
    };
    let sql = if on {
        format!(
            "CREATE TRIGGER injected_insert BEFORE INSERT ON {table}
               BEGIN SELECT RAISE(ABORT, 'injected fault'); END;
             CREATE TRIGGER injected_update BEFORE UPDATE ON {table}
               BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
        )
    } else {
        "DROP TRIGGER injected_insert; DROP TRIGGER injected_update;".into()
    };
    store.with_connection(|c| c.execute_batch(&sql)).unwrap();
    true
}

impl Harness for Files {
    type Store = SqliteStore;
    fn fresh(&self) -> SqliteStore {
        self.next()
    }
    fn corrupt(&self, store: &SqliteStore, key: LedgerKey<'_>) -> bool {
        corrupt(store, key.scope(), key.participant())
    }
    fn inject(&self, store: &SqliteStore, fault: Fault, on: bool) -> bool {
        inject(store, fault, on)
    }
}

impl AsyncHarness for Files {
    type Store = SqliteStore;
    async fn fresh(&self) -> SqliteStore {
        self.next()
    }
    async fn corrupt(&self, store: &SqliteStore, scope: &str, participant: &str) -> bool {
        corrupt(store, scope, participant)
    }
    async fn inject(&self, store: &SqliteStore, fault: Fault, on: bool) -> bool {
        inject(store, fault, on)
    }
}

#[test]
fn sqlite_passes_the_sync_kit() {
    check_store(&Files::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_async_kit() {
    check_async_store(&Files::new()).await;
}

#[cfg(feature = "conversations")]
#[test]
fn conversation_bindings_are_kept_in_the_file_across_reopening() {
    use proxy_optout_twilio::{BindingStore, CachedBinding};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let rider = CachedBinding {
        address: "+16505551111".into(),
        proxy_address: Some("+15550000100".into()),
        kind: Some("sms".into()),
    };
    let chat = CachedBinding {
        address: "driver-7".into(),
        proxy_address: None,
        kind: Some("chat".into()),
    };
    {
        let store = proxy_optout_sqlite::SqliteStore::open(&path).unwrap();
        store.added("CH1", "MB1", &rider).unwrap();
        store.added("CH1", "MB2", &chat).unwrap();
        store.added("CH1", "MB1", &rider).unwrap(); // redelivered: replaced, not doubled
    }
    let store = proxy_optout_sqlite::SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.bindings("CH1").unwrap(),
        vec![rider.clone(), chat.clone()]
    ); // by address
    assert_eq!(store.binding("CH1", "MB1").unwrap(), Some(rider));
    store.removed("CH1", "MB1").unwrap();
    assert_eq!(store.binding("CH1", "MB1").unwrap(), None);
    assert_eq!(store.bindings("CH2").unwrap(), vec![]);
    assert_eq!(store.bindings("CH1").unwrap(), vec![chat]);
}

#[test]
fn sqlite_passes_the_sync_history_kit() {
    check_history(&Files::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_async_history_kit() {
    check_async_history(&Files::new()).await;
}
