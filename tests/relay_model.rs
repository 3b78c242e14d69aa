//! The relay against a simple model of the ledger (issue 3; SPEC §5, §10 invariant 5), and
//! the in-memory store under concurrent writers.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{oracle, Help, OptIn, OptOut};
use proptest::prelude::*;
use proxy_optout::{
    Channel, Delivery, Inbound, LedgerKey, MemoryStore, OptOutStore, OptState, Participant, Relay,
    RuleSet, Withheld, DEFAULT_HELP_REPLY, DEFAULT_START_REPLY, DEFAULT_STOP_REPLY,
};

/// (identifier, proxy identifier)
type Pair = (&'static str, &'static str);

/// Three sessions over two pooled proxy numbers; every (identifier, proxy) pair is unique.
const SESSIONS: [(&str, Pair, Pair); 3] = [
    ("ride-1", ("A", "P1"), ("B", "P1")),
    ("ride-2", ("A", "P2"), ("C", "P2")),
    ("ride-3", ("B", "P2"), ("C", "P1")),
];

const BODIES: [&str; 16] = [
    "STOP",
    " stop ",
    "Quit",
    "unstop",
    "START",
    "yes",
    "help",
    "INFO",
    "ARRET",
    "debut",
    "hello",
    "on my way",
    "stop at the corner",
    "STOP ALL",
    "revoke",
    "\u{00A0}cancel\n",
];

fn relay() -> Relay<MemoryStore> {
    let mut r = Relay::new(MemoryStore::new());
    for (id, a, b) in SESSIONS {
        r.sessions_mut()
            .open(id, Participant::new(a.0, a.1), Participant::new(b.0, b.1))
            .unwrap();
    }
    r
}

/// Sender pairs: the six participants of the sessions, plus a stranger out of session.
fn senders() -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = SESSIONS.iter().flat_map(|(_, a, b)| [*a, *b]).collect();
    v.push(("Z", "P1"));
    v
}

fn recipient_of(from: (&str, &str)) -> Option<(&'static str, &'static str)> {
    SESSIONS.iter().find_map(|(_, a, b)| {
        if *a == from {
            Some(*b)
        } else if *b == from {
            Some(*a)
        } else {
            None
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn relay_matches_the_ledger_model(
        script in prop::collection::vec((0usize..7, 0usize..BODIES.len()), 1..60)
    ) {
        let r = relay();
        let senders = senders();
        let mut model: HashMap<(&str, &str), OptState> = HashMap::new();
        for (s, b) in script {
            let (from, to) = senders[s];
            let body = BODIES[b];
            let out = r.handle(&Inbound::sms(from, to, body)).unwrap();
            let expect = oracle(body, Channel::Sms, RuleSet::Proxy2025);
            let before = *model.get(&(to, from)).unwrap_or(&OptState::OptedIn);

            // Carrier layer: ledger change and reply.
            let (state, reply) = match expect.carrier {
                Some(OptOut) => (Some(OptState::OptedOut), Some(DEFAULT_STOP_REPLY)),
                Some(OptIn) => (Some(OptState::OptedIn), Some(DEFAULT_START_REPLY)),
                Some(Help) => (None, (before == OptState::OptedIn).then_some(DEFAULT_HELP_REPLY)),
                None => (None, None),
                Some(other) => panic!("a category the model does not know: {other:?}"),
            };
            if let Some(state) = state {
                model.insert((to, from), state);
            }
            prop_assert_eq!(out.ledger().map(|c| c.state()), state, "{} {}", from, body);
            prop_assert_eq!(out.reply().map(|m| m.body()), reply, "{} {}", from, body);

            // Proxy layer: delivery.
            match (expect.dropped, recipient_of((from, to))) {
                (true, _) => prop_assert_eq!(out.withheld(), Some(Withheld::KeywordDropped)),
                (false, None) => prop_assert!(out.is_out_of_session()),
                (false, Some((rid, rproxy))) => {
                    let latest = *model.get(&(rproxy, rid)).unwrap_or(&OptState::OptedIn);
                    match out.delivery() {
                        Delivery::Send(m) => {
                            // Invariant 5: never a forward to a pair whose latest event is an
                            // opt-out.
                            prop_assert_eq!(latest, OptState::OptedIn);
                            prop_assert_eq!((m.from(), m.to()), (rproxy, rid));
                        }
                        Delivery::Refused(m) => {
                            prop_assert_eq!(latest, OptState::OptedOut);
                            prop_assert_eq!((m.from(), m.to()), (rproxy, rid));
                        }
                        other => prop_assert!(false, "unexpected {:?}", other),
                    }
                }
            }
            // Invariant 3 in the relay: exactly one 80901 for a drop, none otherwise.
            let n80901 = out.notices().iter().filter(|n| n.code() == 80901).count();
            prop_assert_eq!(n80901, usize::from(expect.dropped));
            if expect.dropped {
                prop_assert!(!out.fires_status_callback());
            }
        }
        // The store agrees with the model at the end.
        for ((proxy, who), state) in &model {
            prop_assert_eq!(r.store().state(LedgerKey::new(proxy, who)).unwrap(), *state);
        }
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
                Participant::new(p.as_str(), "P1"),
                Participant::new(format!("driver{i}"), "P1"),
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
