//! The relay against a simple model of the ledger (issue 3; §§5, §10 invariant 5), and
//! the in-memory store under concurrent writers.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::invariants;
use proptest::prelude::*;
use proxy_optout::{Inbound, LedgerKey, MemoryStore, OptOutStore, OptState, Participant, Relay};

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random interleavings of messages from six participants in three sessions over two
    /// pooled numbers (and a stranger out of session), checked against a model of the
    /// ledger: see `invariants::relay`. No store faults here (the top bit of each byte is
    /// cleared); `tests/fuzz_corpus.rs` adds them.
    #[test]
    fn relay_matches_the_ledger_model(script in prop::collection::vec(any::<u8>(), 1..80)) {
        let script: Vec<u8> = script.into_iter().map(|b| b & 0x7F).collect();
        invariants::relay(&script);
    }
}

#[test]
fn memory_store_final_state_is_each_pairs_last_write() {
    const THREADS: usize = 8;
    const WRITES: usize = 5_000;
    let scopes = ["P1", "P2"];
    let people = ["A", "B", "C"];
    let store = Arc::new(MemoryStore::new());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
                let mut log = Vec::with_capacity(WRITES);
                for _ in 0..WRITES {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = (scopes[(x % 2) as usize], people[(x / 2 % 3) as usize]);
                    let state = if x / 6 % 2 == 0 {
                        OptState::OptedOut
                    } else {
                        OptState::OptedIn
                    };
                    let seq = store.record_sequenced(LedgerKey::new(key.0, key.1), state);
                    log.push((key, state, seq));
                }
                log
            })
        })
        .collect();
    let log: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(log.len(), THREADS * WRITES);
    let mut seqs: Vec<u64> = log.iter().map(|e| e.2).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        log.len(),
        "every write has its own sequence number"
    );
    let mut last: HashMap<(&str, &str), (u64, OptState)> = HashMap::new();
    for (key, state, seq) in &log {
        let e = last.entry(*key).or_insert((0, OptState::OptedIn));
        if *seq > e.0 {
            *e = (*seq, *state);
        }
    }
    for (key, (seq, state)) in last {
        let k = LedgerKey::new(key.0, key.1);
        assert_eq!(store.latest(k), Some((state, seq)), "{key:?}");
        assert_eq!(store.state(k).unwrap(), state);
    }
}

#[test]
fn relay_shared_across_threads_keeps_each_senders_last_word() {
    // Each thread is one participant, writing in order; proxy numbers are shared.
    let mut relay = Relay::new(MemoryStore::new());
    let people: Vec<String> = (0..8).map(|i| format!("+1555000{i:04}")).collect();
    for (i, p) in people.iter().enumerate() {
        relay
            .sessions_mut()
            .open(
                &format!("s{i}"),
                Participant::new(p.as_str(), "P1").unwrap(),
                Participant::new(format!("driver{i}"), "P1").unwrap(),
            )
            .unwrap();
    }
    let relay = Arc::new(relay);
    let handles: Vec<_> = people
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, me)| {
            let relay = Arc::clone(&relay);
            std::thread::spawn(move || {
                let script = [
                    "STOP", "hi", "START", "hello", "QUIT", "yes", "CANCEL", "ok",
                ];
                // Threads stop at different points of the script, on different last words.
                let n = 200 + i;
                let mut expected = OptState::OptedIn;
                for k in 0..n {
                    let body = script[k % script.len()];
                    let out = relay.handle(&Inbound::sms(&me, "P1", body)).unwrap();
                    assert_eq!(out.session(), Some(format!("s{i}").as_str()));
                    match body {
                        "STOP" | "QUIT" | "CANCEL" => expected = OptState::OptedOut,
                        "START" | "yes" => expected = OptState::OptedIn,
                        _ => {}
                    }
                }
                expected
            })
        })
        .collect();
    let mut states = Vec::new();
    for (me, h) in people.iter().zip(handles) {
        let expected = h.join().unwrap();
        states.push(expected);
        assert_eq!(
            relay.store().state(LedgerKey::new("P1", me)).unwrap(),
            expected,
            "{me}"
        );
    }
    assert!(states.contains(&OptState::OptedIn) && states.contains(&OptState::OptedOut));
}
