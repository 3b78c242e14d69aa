//! `MemoryStore` passes the kit, sync and async.

use proxy_optout::{LedgerKey, MemoryStore};
use proxy_optout_conformance::{check_async_store, check_store, AsyncHarness, Harness};

struct Memory;

impl Harness for Memory {
    type Store = MemoryStore;
    fn fresh(&self) -> MemoryStore {
        MemoryStore::new()
    }
    fn corrupt(&self, _: &MemoryStore, _: LedgerKey<'_>) -> bool {
        false // typed values only: nothing unrecognised can be stored
    }
}

impl AsyncHarness for Memory {
    type Store = MemoryStore;
    async fn fresh(&self) -> MemoryStore {
        MemoryStore::new()
    }
    async fn corrupt(&self, _: &MemoryStore, _: &str, _: &str) -> bool {
        false
    }
}

#[test]
fn memory_store_passes_the_sync_kit() {
    check_store(&Memory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_async_kit() {
    check_async_store(&Memory).await;
}

#[test]
fn memory_store_passes_the_sync_history_kit() {
    proxy_optout_conformance::check_history(&Memory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_async_history_kit() {
    proxy_optout_conformance::check_async_history(&Memory).await;
}
