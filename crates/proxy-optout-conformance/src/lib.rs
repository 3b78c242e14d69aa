//! A conformance kit for opt-out stores: one call from a store's own tests proves it keeps the
//! ledger's promises (the behaviour reference, §5):
//!
//! - a key never written reads as opted in; the latest acknowledged write wins per key, through
//!   opt-out and opt-in sequences;
//! - keys that share a scope or a participant are independent, and both ledger scopes (per proxy
//!   number, service-wide) work through a relay;
//! - identifiers up to [`MAX_IDENTIFIER_BYTES`], non-ASCII
//!   ones included, round-trip;
//! - many concurrent writers (threads for a sync store, tasks for an async one) on overlapping
//!   pairs end at each key's last acknowledged write;
//! - a stored value the store does not recognise is an error, never "opted in", and the relay
//!   then fails closed.
//!
//! ```
//! use proxy_optout::{LedgerKey, MemoryStore};
//! use proxy_optout_conformance::{check_store, Harness};
//!
//! struct Memory;
//! impl Harness for Memory {
//!     type Store = MemoryStore;
//!     fn fresh(&self) -> MemoryStore { MemoryStore::new() }
//!     // MemoryStore holds typed values: nothing unrecognised can be stored in it.
//!     fn corrupt(&self, _: &MemoryStore, _: LedgerKey<'_>) -> bool { false }
//! }
//! check_store(&Memory);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod history;

pub use history::{check_async_history, check_history, Fault};

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use proxy_optout::{
    AsyncOptOutStore, AsyncRelay, Inbound, LedgerKey, LedgerScope, OptOutStore, OptState,
    Participant, Relay, RelayCore, RelayError, Route, Withheld, MAX_IDENTIFIER_BYTES,
};

/// How the kit gets a synchronous store to test.
///
/// # Example
///
/// ```
/// use proxy_optout::{LedgerKey, MemoryStore, OptOutStore};
/// use proxy_optout_conformance::Harness;
///
/// struct Memory;
/// impl Harness for Memory {
///     type Store = MemoryStore;
///     fn fresh(&self) -> MemoryStore { MemoryStore::new() }
///     fn corrupt(&self, _: &MemoryStore, _: LedgerKey<'_>) -> bool { false }
/// }
/// assert!(Memory.fresh().is_empty());
/// ```
pub trait Harness {
    /// The store.
    type Store: OptOutStore + Send + Sync + 'static;

    /// A new, empty store (a new file, a new schema).
    fn fresh(&self) -> Self::Store;

    /// Writes a value the store will not recognise for `key` (bypassing its API). Returns
    /// false if the store cannot hold such a value (then that check is skipped).
    fn corrupt(&self, store: &Self::Store, key: LedgerKey<'_>) -> bool;

    /// Makes the store's writes of what `fault` names fail (`on`) or work again (`!on`),
    /// for [`check_history`]'s atomicity check. Returns false if the store cannot (the
    /// default; that check is then skipped).
    fn inject(&self, store: &Self::Store, fault: Fault, on: bool) -> bool {
        let _ = (store, fault, on);
        false
    }
}

/// How the kit gets an asynchronous store to test.
///
/// # Example
///
/// ```
/// use proxy_optout::MemoryStore;
/// use proxy_optout_conformance::{check_async_store, AsyncHarness};
///
/// struct Memory;
/// impl AsyncHarness for Memory {
///     type Store = MemoryStore;
///     async fn fresh(&self) -> MemoryStore { MemoryStore::new() }
///     async fn corrupt(&self, _: &MemoryStore, _: &str, _: &str) -> bool { false }
/// }
/// tokio::runtime::Builder::new_current_thread()
///     .build()
///     .unwrap()
///     .block_on(check_async_store(&Memory));
/// ```
pub trait AsyncHarness: Sync {
    /// The store.
    type Store: AsyncOptOutStore + Send + Sync + 'static;

    /// A new, empty store.
    fn fresh(&self) -> impl Future<Output = Self::Store> + Send;

    /// Writes an unrecognised value for `(scope, participant)`; false if impossible.
    fn corrupt(
        &self,
        store: &Self::Store,
        scope: &str,
        participant: &str,
    ) -> impl Future<Output = bool> + Send;

    /// Makes the store's writes of what `fault` names fail (`on`) or work again (`!on`), for
    /// [`check_async_history`]. Returns false if the store cannot (the default).
    fn inject(
        &self,
        store: &Self::Store,
        fault: Fault,
        on: bool,
    ) -> impl Future<Output = bool> + Send {
        let _ = (store, fault, on);
        async { false }
    }
}

const WRITERS: usize = 8;
const WRITES: usize = 200;

fn identifiers() -> Vec<String> {
    vec![
        "+15551110001".into(),
        "whatsapp:+15551110001".into(),
        "messenger:1234567890".into(),
        "é".repeat(MAX_IDENTIFIER_BYTES / 2),
        "9".repeat(MAX_IDENTIFIER_BYTES),
        "📱".repeat(MAX_IDENTIFIER_BYTES / 4),
        "a b".into(),
        "O'Brien; DROP TABLE x --".into(),
    ]
}

fn flip(s: OptState) -> OptState {
    match s {
        OptState::OptedOut => OptState::OptedIn,
        _ => OptState::OptedOut,
    }
}

/// Which writer owns which key in the concurrency checks: every writer shares the three scopes
/// with the others, and writers `w` and `w + 4` share participants, but each full key has one
/// writer, so its last acknowledged write is well defined.
fn owned_keys(writer: usize) -> Vec<(String, String)> {
    (0..4)
        .map(|k| {
            (
                format!("+1P{}", (writer + k) % 3),
                format!("+1A{}-{}", k, writer % 4),
            )
        })
        .collect()
}

fn all_keys() -> HashMap<(String, String), usize> {
    let mut keys = HashMap::new();
    for w in 0..WRITERS {
        for k in owned_keys(w) {
            keys.insert(k, w);
        }
    }
    keys
}

/// Runs every check on a synchronous store; panics with a message naming the broken promise.
/// See the crate's example.
pub fn check_store<H: Harness>(harness: &H)
where
    <H::Store as OptOutStore>::Error: Debug,
{
    // Unknown keys, latest write wins, sequences.
    let store = harness.fresh();
    let key = LedgerKey::new("+1P", "+1A");
    assert_eq!(
        store.state(key).expect("state"),
        OptState::OptedIn,
        "a key never written is opted in"
    );
    let mut expected = OptState::OptedIn;
    for i in 0..20 {
        expected = if i % 3 == 0 {
            OptState::OptedOut
        } else {
            flip(expected)
        };
        store.record(key, expected).expect("record");
        assert_eq!(
            store.state(key).expect("state"),
            expected,
            "latest write wins (write {i})"
        );
    }
    store.record(key, OptState::OptedOut).expect("record");
    store
        .record(key, OptState::OptedOut)
        .expect("record the same state twice");
    assert_eq!(store.state(key).expect("state"), OptState::OptedOut);
    // Keys sharing a scope or a participant are independent.
    store
        .record(LedgerKey::new("+1P", "+1B"), OptState::OptedIn)
        .expect("record");
    store
        .record(LedgerKey::new("+1Q", "+1A"), OptState::OptedIn)
        .expect("record");
    assert_eq!(
        store.state(key).expect("state"),
        OptState::OptedOut,
        "keys are independent"
    );
    assert_eq!(
        store.state(LedgerKey::new("+1R", "+1A")).expect("state"),
        OptState::OptedIn
    );
    // Identifiers at the limits.
    for id in identifiers() {
        let k = LedgerKey::new(&id, &id);
        store
            .record(k, OptState::OptedOut)
            .expect("record a long identifier");
        assert_eq!(store.state(k).expect("state"), OptState::OptedOut, "{id:?}");
        assert_eq!(
            store.state(LedgerKey::new(&id, "+1Z")).expect("state"),
            OptState::OptedIn
        );
    }
    // Both scopes through a relay.
    scopes(|| harness.fresh());
    // Concurrent writers.
    let store = Arc::new(harness.fresh());
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let keys = owned_keys(w);
                let mut last = HashMap::new();
                for i in 0..WRITES {
                    let Some((s, p)) = keys.get(i % keys.len().max(1)) else {
                        break;
                    };
                    let state = if (i * 7 + w) % 3 == 0 {
                        OptState::OptedIn
                    } else {
                        OptState::OptedOut
                    };
                    store.record(LedgerKey::new(s, p), state).expect("record");
                    last.insert((s.clone(), p.clone()), state);
                    // Reads interleave with the other writers' writes and see our own.
                    assert_eq!(store.state(LedgerKey::new(s, p)).expect("state"), state);
                }
                last
            })
        })
        .collect();
    let mut last = HashMap::new();
    for h in handles {
        last.extend(h.join().expect("writer thread"));
    }
    assert_eq!(last.len(), all_keys().len());
    for ((s, p), state) in &last {
        assert_eq!(
            store.state(LedgerKey::new(s, p)).expect("state"),
            *state,
            "({s}, {p}) is not its last acknowledged write"
        );
    }
    // Contended: all writers on one key; afterwards one more write decides.
    let hot = Arc::new(harness.fresh());
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let hot = Arc::clone(&hot);
            std::thread::spawn(move || {
                for i in 0..WRITES / 4 {
                    let s = if (i + w) % 2 == 0 {
                        OptState::OptedOut
                    } else {
                        OptState::OptedIn
                    };
                    hot.record(LedgerKey::new("+1HOT", "+1A"), s)
                        .expect("record");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
    hot.record(LedgerKey::new("+1HOT", "+1A"), OptState::OptedOut)
        .expect("record");
    assert_eq!(
        hot.state(LedgerKey::new("+1HOT", "+1A")).expect("state"),
        OptState::OptedOut
    );
    // Unrecognised values fail closed.
    let store = harness.fresh();
    if harness.corrupt(&store, LedgerKey::new("+1P", "+1B")) {
        assert!(
            store.state(LedgerKey::new("+1P", "+1B")).is_err(),
            "an unrecognised stored value must be an error"
        );
        let mut relay = Relay::new(store);
        relay
            .sessions_mut()
            .open(
                "r",
                Participant::new("+1A", "+1P").expect("id"),
                Participant::new("+1B", "+1P").expect("id"),
            )
            .expect("session");
        match relay.handle(&Inbound::sms("+1A", "+1P", "hello")) {
            Err(RelayError::Lookup { outcome, .. }) => {
                assert_eq!(outcome.withheld(), Some(Withheld::RecipientStatusUnknown));
            }
            Ok(out) => panic!("forwarded to a recipient whose state is unreadable: {out}"),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

fn scopes<S: OptOutStore>(fresh: impl Fn() -> S)
where
    S::Error: Debug,
{
    let (a1, b1) = (
        Participant::new("+1A", "+1P1").expect("id"),
        Participant::new("+1B", "+1P1").expect("id"),
    );
    let (a2, b2) = (
        Participant::new("+1A", "+1P2").expect("id"),
        Participant::new("+1B", "+1P2").expect("id"),
    );
    for (scope, refused_via_p2) in [
        (LedgerScope::ProxyNumber, false),
        (LedgerScope::service("KS1").expect("id"), true),
    ] {
        let relay = Relay::new(fresh()).with_scope(scope).expect("scope");
        let out = relay
            .handle_routed(
                &Inbound::sms("+1A", "+1P1", "STOP"),
                Some(Route::new("r1", &a1, Some(&b1)).expect("route")),
            )
            .expect("STOP");
        assert!(out.is_recorded());
        let via_p1 = relay
            .handle_routed(
                &Inbound::sms("+1B", "+1P1", "hi"),
                Some(Route::new("r1", &b1, Some(&a1)).expect("route")),
            )
            .expect("hi");
        assert!(
            via_p1.refused().is_some(),
            "the opt-out holds on its own number"
        );
        let via_p2 = relay
            .handle_routed(
                &Inbound::sms("+1B", "+1P2", "hi"),
                Some(Route::new("r2", &b2, Some(&a2)).expect("route")),
            )
            .expect("hi");
        assert_eq!(
            via_p2.refused().is_some(),
            refused_via_p2,
            "scope {:?}",
            relay.core().scope()
        );
    }
}

/// Runs every check on an asynchronous store, with concurrent tasks on the current tokio
/// runtime (call it from `#[tokio::test(flavor = "multi_thread")]`). See [`AsyncHarness`] for
/// an example.
pub async fn check_async_store<H: AsyncHarness>(harness: &H)
where
    <H::Store as AsyncOptOutStore>::Error: Debug,
{
    let store = harness.fresh().await;
    let key = LedgerKey::new("+1P", "+1A");
    assert_eq!(
        store.state(key).await.expect("state"),
        OptState::OptedIn,
        "a key never written is opted in"
    );
    let mut expected = OptState::OptedIn;
    for i in 0..20 {
        expected = if i % 3 == 0 {
            OptState::OptedOut
        } else {
            flip(expected)
        };
        store.record(key, expected).await.expect("record");
        assert_eq!(
            store.state(key).await.expect("state"),
            expected,
            "latest write wins (write {i})"
        );
    }
    store
        .record(LedgerKey::new("+1P", "+1B"), OptState::OptedIn)
        .await
        .expect("record");
    store
        .record(LedgerKey::new("+1Q", "+1A"), OptState::OptedIn)
        .await
        .expect("record");
    assert_eq!(
        store.state(key).await.expect("state"),
        expected,
        "keys are independent"
    );
    for id in identifiers() {
        let k = LedgerKey::new(&id, &id);
        store
            .record(k, OptState::OptedOut)
            .await
            .expect("record a long identifier");
        assert_eq!(
            store.state(k).await.expect("state"),
            OptState::OptedOut,
            "{id:?}"
        );
    }
    // Both scopes through the async relay.
    for (scope, refused_via_p2) in [
        (LedgerScope::ProxyNumber, false),
        (LedgerScope::service("KS1").expect("id"), true),
    ] {
        let relay = AsyncRelay::new(harness.fresh().await)
            .with_core(RelayCore::new().with_scope(scope).expect("scope"));
        let (a1, b1) = (
            Participant::new("+1A", "+1P1").expect("id"),
            Participant::new("+1B", "+1P1").expect("id"),
        );
        let (a2, b2) = (
            Participant::new("+1A", "+1P2").expect("id"),
            Participant::new("+1B", "+1P2").expect("id"),
        );
        let _ = relay
            .handle(
                &Inbound::sms("+1A", "+1P1", "STOP"),
                Some(Route::new("r1", &a1, Some(&b1)).expect("route")),
            )
            .await
            .expect("STOP");
        let via_p1 = relay
            .handle(
                &Inbound::sms("+1B", "+1P1", "hi"),
                Some(Route::new("r1", &b1, Some(&a1)).expect("route")),
            )
            .await
            .expect("hi");
        assert!(via_p1.refused().is_some());
        let via_p2 = relay
            .handle(
                &Inbound::sms("+1B", "+1P2", "hi"),
                Some(Route::new("r2", &b2, Some(&a2)).expect("route")),
            )
            .await
            .expect("hi");
        assert_eq!(via_p2.refused().is_some(), refused_via_p2);
    }
    // Concurrent tasks.
    let store = Arc::new(harness.fresh().await);
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let keys = owned_keys(w);
                let mut last = HashMap::new();
                for i in 0..WRITES {
                    let Some((s, p)) = keys.get(i % keys.len().max(1)) else {
                        break;
                    };
                    let state = if (i * 7 + w) % 3 == 0 {
                        OptState::OptedIn
                    } else {
                        OptState::OptedOut
                    };
                    store
                        .record(LedgerKey::new(s, p), state)
                        .await
                        .expect("record");
                    last.insert((s.clone(), p.clone()), state);
                    assert_eq!(
                        store.state(LedgerKey::new(s, p)).await.expect("state"),
                        state
                    );
                }
                last
            })
        })
        .collect();
    let mut last = HashMap::new();
    for t in tasks {
        last.extend(t.await.expect("writer task"));
    }
    assert_eq!(last.len(), all_keys().len());
    for ((s, p), state) in &last {
        assert_eq!(
            store.state(LedgerKey::new(s, p)).await.expect("state"),
            *state,
            "({s}, {p}) is not its last acknowledged write"
        );
    }
    // Unrecognised values fail closed.
    let store = harness.fresh().await;
    if harness.corrupt(&store, "+1P", "+1B").await {
        assert!(
            store.state(LedgerKey::new("+1P", "+1B")).await.is_err(),
            "an unrecognised stored value must be an error"
        );
        let relay = AsyncRelay::new(store);
        let (a, b) = (
            Participant::new("+1A", "+1P").expect("id"),
            Participant::new("+1B", "+1P").expect("id"),
        );
        match relay
            .handle(
                &Inbound::sms("+1A", "+1P", "hello"),
                Some(Route::new("r", &a, Some(&b)).expect("route")),
            )
            .await
        {
            Err(RelayError::Lookup { outcome, .. }) => {
                assert_eq!(outcome.withheld(), Some(Withheld::RecipientStatusUnknown));
            }
            Ok(out) => panic!("forwarded to a recipient whose state is unreadable: {out}"),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
