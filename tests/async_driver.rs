//! The async driver under a multi-threaded tokio runtime (issue 8): many concurrent tasks on
//! overlapping pairs, a store whose every call yields to the scheduler, and a relay shared by
//! every task without a lock. Each pair must end in the state of its sender's last word.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use proxy_optout::{
    AsyncOptOutStore, AsyncProxyPolicy, AsyncRelay, Decision, Inbound, Intercept, LedgerKey,
    MemoryStore, Message, OptOutStore, OptState, Participant, Route, StopFiltering,
};

/// The in-memory store, but every call first yields, so tasks interleave inside handle().
#[derive(Default)]
struct Yielding {
    inner: MemoryStore,
    calls: AtomicUsize,
}

impl AsyncOptOutStore for Yielding {
    type Error = Infallible;
    fn record(
        &self,
        key: LedgerKey<'_>,
        state: OptState,
    ) -> impl Future<Output = Result<(), Infallible>> + Send {
        let key = key.to_owned();
        async move {
            tokio::task::yield_now().await;
            self.calls.fetch_add(1, Ordering::Relaxed);
            OptOutStore::record(&self.inner, key.as_key(), state)
        }
    }
    fn state(
        &self,
        key: LedgerKey<'_>,
    ) -> impl Future<Output = Result<OptState, Infallible>> + Send {
        let key = key.to_owned();
        async move {
            tokio::task::yield_now().await;
            self.calls.fetch_add(1, Ordering::Relaxed);
            OptOutStore::state(&self.inner, key.as_key())
        }
    }
}

/// A policy whose answers are awaited too (a database lookup in a real host).
struct AsyncHook {
    asked: AtomicUsize,
}

impl AsyncProxyPolicy for AsyncHook {
    // Implementors may write `async fn`: the trait only asks that the future be `Send`.
    async fn stop_filtering(&self, _: Option<&str>) -> StopFiltering {
        tokio::task::yield_now().await;
        StopFiltering::On
    }
    async fn intercept(&self, _: &Message<'_>, _: &Decision) -> Intercept {
        tokio::task::yield_now().await;
        self.asked.fetch_add(1, Ordering::Relaxed);
        Intercept::Allow
    }
}

const PEOPLE: usize = 24;
const PROXIES: [&str; 2] = ["+1P1", "+1P2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tasks_on_overlapping_pairs_keep_each_senders_last_word() {
    let relay = Arc::new(AsyncRelay::new(Yielding::default()).with_policy(AsyncHook {
        asked: AtomicUsize::new(0),
    }));
    // Person i talks to person (i + 1) % PEOPLE through proxy i % 2: every person is in two
    // sessions, so pairs overlap between tasks.
    let people: Arc<Vec<String>> = Arc::new((0..PEOPLE).map(|i| format!("+1555{i:04}")).collect());
    let mut tasks = Vec::new();
    for i in 0..PEOPLE {
        let relay = Arc::clone(&relay);
        let people = Arc::clone(&people);
        tasks.push(tokio::spawn(async move {
            let me = &people[i];
            let proxy = PROXIES[i % 2];
            let them = &people[(i + 1) % PEOPLE];
            let (sender, recipient) = (
                Participant::new(me.as_str(), proxy).unwrap(),
                Participant::new(them.as_str(), proxy).unwrap(),
            );
            let script = [
                "STOP", "hi", "START", "hello", "QUIT", "yes", "CANCEL", "ok",
            ];
            let mut expected = OptState::OptedIn;
            let mut forwarded = 0;
            for k in 0..(100 + 7 * i) {
                let body = script[k % script.len()];
                let route = Route::new("s", &sender, Some(&recipient)).unwrap();
                let out = relay
                    .handle(&Inbound::sms(me, proxy, body), Some(route))
                    .await
                    .unwrap();
                match body {
                    "STOP" | "QUIT" | "CANCEL" => {
                        expected = OptState::OptedOut;
                        assert!(out.decision().is_dropped() && out.is_recorded());
                    }
                    "START" | "yes" => expected = OptState::OptedIn,
                    _ => {}
                }
                if out.forwarded().is_some() || out.refused().is_some() {
                    forwarded += 1;
                }
            }
            (me.clone(), proxy, expected, forwarded)
        }));
    }
    let mut last = HashMap::new();
    let mut total = 0;
    for t in tasks {
        let (me, proxy, expected, forwarded) = t.await.unwrap();
        total += forwarded;
        last.insert((proxy, me), expected);
    }
    for ((proxy, me), expected) in &last {
        let state = OptOutStore::state(&relay.store().inner, LedgerKey::new(proxy, me)).unwrap();
        assert_eq!(state, *expected, "{me} via {proxy}");
    }
    assert!(last.values().any(|s| *s == OptState::OptedIn));
    assert!(last.values().any(|s| *s == OptState::OptedOut));
    assert_eq!(
        relay.policy().asked.load(Ordering::Relaxed),
        total,
        "hook asked per relayed message"
    );
    assert!(relay.store().calls.load(Ordering::Relaxed) > PEOPLE * 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usable_from_spawned_tasks_with_a_shared_relay_and_store() {
    // The shape of an axum handler: Arc'd state, a task per request.
    let store = Arc::new(MemoryStore::new());
    let relay = Arc::new(AsyncRelay::new(Arc::clone(&store)));
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let relay = Arc::clone(&relay);
            tokio::spawn(async move {
                let from = format!("+1{i:03}");
                let out = relay
                    .handle(&Inbound::sms(&from, "+1P", "STOP"), None)
                    .await
                    .unwrap();
                out.into_owned()
            })
        })
        .collect();
    for h in handles {
        let out = h.await.unwrap();
        assert!(out.reply().is_some());
    }
    assert_eq!(store.len(), 64);
}
