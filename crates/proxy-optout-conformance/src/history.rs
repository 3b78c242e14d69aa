//! The history checks: what a store that implements `HistoryStore` (or `AsyncHistoryStore`)
//! promises beside the ledger's own.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use proxy_optout::{
    AsyncHistoryStore, AsyncOptOutStore, Change, ChangeSource, HistoryEntry, HistoryQuery,
    HistoryStore, LedgerKey, OptOutStore, OptState, RuleSet,
};

use crate::{all_keys, flip, identifiers, owned_keys, AsyncHarness, Harness, WRITERS};

/// A write fault the kit asks a harness to inject, to check that a state and its history
/// entry are stored together or not at all.
///
/// ```
/// assert_ne!(proxy_optout_conformance::Fault::State, proxy_optout_conformance::Fault::History);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Writing the state fails.
    State,
    /// Writing the history entry fails.
    History,
}

/// Writes per writer in the history concurrency check (each one also appends an entry).
const HISTORY_WRITES: usize = 48;

/// The changes the order check writes, in order: every source, with and without facts.
fn changes(key: LedgerKey<'_>) -> Vec<Change<'_>> {
    let stop = Change::new(key, OptState::OptedOut, ChangeSource::Keyword)
        .with_keyword("STOP")
        .with_text("  Stop é 📱 ")
        .with_message_id("SM00000000000000000000000000000001")
        .with_rule_set(RuleSet::Proxy2025)
        .with_received_at(1_700_000_000_123);
    vec![
        stop,
        Change::new(key, OptState::OptedIn, ChangeSource::Keyword)
            .with_keyword("START")
            .with_rule_set(RuleSet::Proxy2020),
        Change::new(key, OptState::OptedOut, ChangeSource::Refusal),
        Change::new(key, OptState::OptedIn, ChangeSource::Operator).with_text("ticket 42"),
        Change::new(key, OptState::OptedOut, ChangeSource::Platform)
            .with_keyword("STOP")
            .with_confirmed_at(1_700_000_000_456),
        Change::new(key, OptState::OptedOut, ChangeSource::Import).with_received_at(1),
    ]
}

/// The facts an entry must carry back for `change` (the store's own fields aside).
fn assert_entry(entry: &HistoryEntry, change: &Change<'_>, what: &str) {
    assert_eq!(entry.key(), change.key(), "{what}: key");
    assert_eq!(entry.state, change.state(), "{what}: state");
    assert_eq!(entry.source, change.source(), "{what}: source");
    assert_eq!(
        entry.keyword.as_deref(),
        change.keyword(),
        "{what}: keyword"
    );
    assert_eq!(entry.text.as_deref(), change.text(), "{what}: text");
    assert_eq!(
        entry.message_id.as_deref(),
        change.message_id(),
        "{what}: message id"
    );
    assert_eq!(entry.rule_set, change.rule_set(), "{what}: rule set");
    assert_eq!(
        entry.received_at,
        change.received_at(),
        "{what}: received at"
    );
    assert!(entry.recorded_at > 0, "{what}: recorded at is set");
    assert_eq!(
        entry.confirmed_at,
        change.confirmed_at().map(|c| c.max(entry.recorded_at)),
        "{what}: confirmed at, no earlier than recorded"
    );
}

fn assert_ordered(entries: &[HistoryEntry], what: &str) {
    for pair in entries.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "{what}: entries come in increasing seq ({} then {})",
            pair[0].seq,
            pair[1].seq
        );
    }
}

/// What the concurrency check must find: per key, as many entries as acknowledged writes,
/// and the last one (by seq) with the key's state.
fn assert_concurrent(
    entries: &[HistoryEntry],
    states: &HashMap<(String, String), OptState>,
    acknowledged: usize,
) {
    assert_ordered(entries, "concurrent writers");
    let mut last: HashMap<(String, String), (usize, OptState)> = HashMap::new();
    for e in entries {
        let slot = last
            .entry((e.scope.clone(), e.participant.clone()))
            .or_insert((0, e.state));
        *slot = (slot.0 + 1, e.state);
    }
    for (key, state) in states {
        let (count, last_state) = last.get(key).copied().unwrap_or((0, OptState::OptedIn));
        assert_eq!(
            count, acknowledged,
            "one entry per acknowledged write for {key:?}"
        );
        assert_eq!(
            last_state, *state,
            "the last entry of {key:?} has its current state"
        );
    }
}

/// The expected contents of the filter checks: (query, entries it must return, by index in
/// `written`).
fn filter_cases<'a>(written: &[HistoryEntry]) -> Vec<(HistoryQuery<'a>, Vec<u64>)> {
    let seqs = |f: &dyn Fn(&HistoryEntry) -> bool| -> Vec<u64> {
        written.iter().filter(|e| f(e)).map(|e| e.seq).collect()
    };
    let last_per_key: Vec<u64> = {
        let mut last = HashMap::new();
        for e in written {
            last.insert((e.scope.clone(), e.participant.clone()), e.seq);
        }
        let mut v: Vec<u64> = last.into_values().collect();
        v.sort_unstable();
        v
    };
    let first = written[0].seq;
    vec![
        (HistoryQuery::new(), seqs(&|_| true)),
        (
            HistoryQuery::new().scope("+1HP"),
            seqs(&|e| e.scope == "+1HP"),
        ),
        (
            HistoryQuery::new().participant("+1HB"),
            seqs(&|e| e.participant == "+1HB"),
        ),
        (
            HistoryQuery::new().scope("+1HP").participant("+1HA"),
            seqs(&|e| e.scope == "+1HP" && e.participant == "+1HA"),
        ),
        (
            HistoryQuery::new().state(OptState::OptedOut),
            seqs(&|e| e.state == OptState::OptedOut),
        ),
        (HistoryQuery::new().current_only(true), last_per_key.clone()),
        (
            HistoryQuery::new()
                .current_only(true)
                .state(OptState::OptedOut),
            seqs(&|e| last_per_key.contains(&e.seq) && e.state == OptState::OptedOut),
        ),
        (HistoryQuery::new().after(first), seqs(&|e| e.seq > first)),
        (
            HistoryQuery::new().recorded_between(None, Some(0)),
            Vec::new(),
        ),
        (
            HistoryQuery::new().recorded_between(Some(written[0].recorded_at), None),
            seqs(&|e| e.recorded_at >= written[0].recorded_at),
        ),
    ]
}

/// The keys and states the filter checks write, in order.
const FILTER_WRITES: [(&str, &str, OptState); 5] = [
    ("+1HP", "+1HA", OptState::OptedOut),
    ("+1HP", "+1HB", OptState::OptedOut),
    ("+1HQ", "+1HA", OptState::OptedOut),
    ("+1HP", "+1HA", OptState::OptedIn),
    ("+1HQ", "+1HB", OptState::OptedIn),
];

fn filter_change(
    (scope, participant, state): (&'static str, &'static str, OptState),
) -> Change<'static> {
    Change::new(
        LedgerKey::new(scope, participant),
        state,
        ChangeSource::Keyword,
    )
}

/// Runs the history checks on a synchronous store that keeps history; panics with a message
/// naming the broken promise. Call it beside [`check_store`](crate::check_store).
///
/// ```
/// use proxy_optout::{LedgerKey, MemoryStore};
/// use proxy_optout_conformance::{check_history, Harness};
///
/// struct Memory;
/// impl Harness for Memory {
///     type Store = MemoryStore;
///     fn fresh(&self) -> MemoryStore { MemoryStore::new() }
///     fn corrupt(&self, _: &MemoryStore, _: LedgerKey<'_>) -> bool { false }
/// }
/// check_history(&Memory);
/// ```
pub fn check_history<H: Harness>(harness: &H)
where
    H::Store: HistoryStore,
    <H::Store as OptOutStore>::Error: Debug,
{
    let all = |s: &H::Store, q: HistoryQuery<'_>| read_all(q, |q| s.history(&q).expect("history"));
    // Order and facts.
    let store = harness.fresh();
    assert!(
        all(&store, HistoryQuery::new()).is_empty(),
        "a new store has no history"
    );
    for id in identifiers() {
        let key = LedgerKey::new(&id, &id);
        let written = changes(key);
        for (i, change) in written.iter().enumerate() {
            store.record_change(change).expect("record_change");
            assert_eq!(
                store.state(key).expect("state"),
                change.state(),
                "change {i} sets the state"
            );
        }
        let entries = all(&store, HistoryQuery::new().scope(&id).participant(&id));
        assert_eq!(
            entries.len(),
            written.len(),
            "one entry per change for {id:?}"
        );
        assert_ordered(&entries, "one key");
        for (i, (e, c)) in entries.iter().zip(&written).enumerate() {
            assert_entry(e, c, &format!("change {i} of {id:?}"));
        }
    }
    // `record` appends an unspecified entry; `confirmed` sets the latest entry's time once.
    let key = LedgerKey::new("+1CP", "+1CA");
    store.record(key, OptState::OptedOut).expect("record");
    store
        .confirmed(key, OptState::OptedIn, 5)
        .expect("confirmed");
    store
        .confirmed(key, OptState::OptedOut, 1_700_000_000_000)
        .expect("confirmed");
    store
        .confirmed(key, OptState::OptedOut, 1_800_000_000_000)
        .expect("confirmed");
    let entries = all(&store, HistoryQuery::new().scope("+1CP"));
    assert_eq!(entries.len(), 1, "record appends one entry");
    assert_eq!(
        entries[0].source,
        ChangeSource::Unspecified,
        "record's entry has no source"
    );
    assert_eq!(
        entries[0].confirmed_at,
        Some(1_700_000_000_000),
        "confirmed sets the time once, and only for the state asked"
    );
    // Filters and paging.
    let store = harness.fresh();
    for write in FILTER_WRITES {
        store
            .record_change(&filter_change(write))
            .expect("record_change");
    }
    let written = all(&store, HistoryQuery::new());
    for (query, expected) in filter_cases(&written) {
        let got: Vec<u64> = all(&store, query).iter().map(|e| e.seq).collect();
        assert_eq!(got, expected, "history for {query:?}");
    }
    // Faults: neither the state without its entry, nor the entry without its state.
    for fault in [Fault::State, Fault::History] {
        let store = harness.fresh();
        let key = LedgerKey::new("+1FP", "+1FA");
        store.record(key, OptState::OptedIn).expect("record");
        if !harness.inject(&store, fault, true) {
            continue;
        }
        let failed =
            store.record_change(&Change::new(key, OptState::OptedOut, ChangeSource::Keyword));
        assert!(failed.is_err(), "a write with a {fault:?} fault fails");
        assert!(harness.inject(&store, fault, false));
        assert_eq!(
            store.state(key).expect("state"),
            OptState::OptedIn,
            "{fault:?} fault: no state without its entry"
        );
        assert_eq!(
            all(&store, HistoryQuery::new()).len(),
            1,
            "{fault:?} fault: no entry without its state"
        );
    }
    // Concurrent writers on overlapping pairs.
    let store = Arc::new(harness.fresh());
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let keys = owned_keys(w);
                let mut state = OptState::OptedIn;
                for i in 0..HISTORY_WRITES {
                    state = flip(state);
                    let (s, p) = &keys[i % keys.len()];
                    let change = Change::new(LedgerKey::new(s, p), state, ChangeSource::Keyword);
                    store
                        .record_change(&change)
                        .expect("concurrent record_change");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
    let states = all_keys()
        .into_keys()
        .map(|(s, p)| {
            let state = store.state(LedgerKey::new(&s, &p)).expect("state");
            ((s, p), state)
        })
        .collect();
    assert_concurrent(
        &all(&store, HistoryQuery::new()),
        &states,
        HISTORY_WRITES / 4,
    );
}

/// Every page of `query`, read with the cursor and a small page size so paging is exercised.
fn read_all<'q>(
    query: HistoryQuery<'q>,
    mut page: impl FnMut(HistoryQuery<'q>) -> Vec<HistoryEntry>,
) -> Vec<HistoryEntry> {
    let mut out: Vec<HistoryEntry> = Vec::new();
    loop {
        let after = out.last().map_or(query.get_after(), |e| e.seq);
        let got = page(query.after(after).limit(3));
        let done = got.len() < 3;
        out.extend(got);
        if done {
            return out;
        }
    }
}

/// Every page of `query` from an async store (see [`read_all`]).
async fn read_all_async<S: AsyncHistoryStore>(
    store: &S,
    query: HistoryQuery<'_>,
) -> Vec<HistoryEntry>
where
    S::Error: Debug,
{
    let mut out: Vec<HistoryEntry> = Vec::new();
    loop {
        let after = out.last().map_or(query.get_after(), |e| e.seq);
        let got = store
            .history(&query.after(after).limit(3))
            .await
            .expect("history");
        let done = got.len() < 3;
        out.extend(got);
        if done {
            return out;
        }
    }
}

/// [`check_history`] for an asynchronous store, in a multi-threaded tokio runtime.
///
/// ```
/// use proxy_optout::MemoryStore;
/// use proxy_optout_conformance::{check_async_history, AsyncHarness};
///
/// struct Memory;
/// impl AsyncHarness for Memory {
///     type Store = MemoryStore;
///     async fn fresh(&self) -> MemoryStore { MemoryStore::new() }
///     async fn corrupt(&self, _: &MemoryStore, _: &str, _: &str) -> bool { false }
/// }
/// tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap()
///     .block_on(check_async_history(&Memory));
/// ```
pub async fn check_async_history<H: AsyncHarness>(harness: &H)
where
    H::Store: AsyncHistoryStore,
    <H::Store as AsyncOptOutStore>::Error: Debug,
{
    let store = harness.fresh().await;
    assert!(
        read_all_async(&store, HistoryQuery::new()).await.is_empty(),
        "a new store has no history"
    );
    let key = LedgerKey::new("+1P", "+1A");
    let written = changes(key);
    for change in &written {
        store.record_change(change).await.expect("record_change");
    }
    let entries = read_all_async(&store, HistoryQuery::new()).await;
    assert_eq!(entries.len(), written.len(), "one entry per change");
    assert_ordered(&entries, "one key");
    for (i, (e, c)) in entries.iter().zip(&written).enumerate() {
        assert_entry(e, c, &format!("change {i}"));
    }
    store
        .confirmed(key, OptState::OptedOut, 7)
        .await
        .expect("confirmed");
    store
        .confirmed(key, OptState::OptedOut, 8)
        .await
        .expect("confirmed");
    let last = read_all_async(&store, HistoryQuery::new().current_only(true)).await;
    assert_eq!(last.len(), 1, "one current entry");
    assert_eq!(
        last[0].confirmed_at,
        Some(7),
        "confirmed sets the time once"
    );
    // Filters and paging.
    let store = harness.fresh().await;
    for write in FILTER_WRITES {
        let change = filter_change(write);
        store.record_change(&change).await.expect("record_change");
    }
    let written = read_all_async(&store, HistoryQuery::new()).await;
    for (query, expected) in filter_cases(&written) {
        let got: Vec<u64> = read_all_async(&store, query)
            .await
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(got, expected, "history for {query:?}");
    }
    // Faults.
    for fault in [Fault::State, Fault::History] {
        let store = harness.fresh().await;
        let key = LedgerKey::new("+1FP", "+1FA");
        store.record(key, OptState::OptedIn).await.expect("record");
        if !harness.inject(&store, fault, true).await {
            continue;
        }
        let change = Change::new(key, OptState::OptedOut, ChangeSource::Keyword);
        assert!(
            store.record_change(&change).await.is_err(),
            "a write with a {fault:?} fault fails"
        );
        assert!(harness.inject(&store, fault, false).await);
        assert_eq!(
            store.state(key).await.expect("state"),
            OptState::OptedIn,
            "{fault:?} fault: no state without its entry"
        );
        assert_eq!(
            read_all_async(&store, HistoryQuery::new()).await.len(),
            1,
            "{fault:?} fault: no entry without its state"
        );
    }
    // Concurrent writers.
    let store = Arc::new(harness.fresh().await);
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let keys = owned_keys(w);
                let mut state = OptState::OptedIn;
                for i in 0..HISTORY_WRITES {
                    state = flip(state);
                    let (s, p) = &keys[i % keys.len()];
                    let change = Change::new(LedgerKey::new(s, p), state, ChangeSource::Keyword);
                    store
                        .record_change(&change)
                        .await
                        .expect("concurrent record_change");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer task");
    }
    let mut states = HashMap::new();
    for (s, p) in all_keys().into_keys() {
        let state = store.state(LedgerKey::new(&s, &p)).await.expect("state");
        states.insert((s, p), state);
    }
    assert_concurrent(
        &read_all_async(&*store, HistoryQuery::new()).await,
        &states,
        HISTORY_WRITES / 4,
    );
}
