//! The SQLite store passes the conformance kit on real files, sync and async.

use proxy_optout::LedgerKey;
use proxy_optout_conformance::{check_async_store, check_store, AsyncHarness, Harness};
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
                "INSERT INTO opt_out_ledger VALUES (?1, ?2, 'opted_sideways', 0)
                 ON CONFLICT DO UPDATE SET state = 'opted_sideways'",
                [scope, participant],
            )
        })
        .unwrap();
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
}

impl AsyncHarness for Files {
    type Store = SqliteStore;
    async fn fresh(&self) -> SqliteStore {
        self.next()
    }
    async fn corrupt(&self, store: &SqliteStore, scope: &str, participant: &str) -> bool {
        corrupt(store, scope, participant)
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
