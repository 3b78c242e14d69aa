//! The invariants of §§10 as checks over raw bytes, shared by the fuzz targets in `fuzz/`
//! (libFuzzer, nightly) and `tests/fuzz_corpus.rs` (committed seeds and proptest, stable).
//! Each check panics on a violation.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use proxy_optout::{
    lenient_form, CarrierMode, Channel, Classifier, Delivery, Feedback, FeedbackError, Inbound,
    LedgerKey, Matching, Message, Notice, OptOutStore, OptState, Participant, Relay, RelayError,
    RuleSet, Withheld, DEFAULT_HELP_REPLY, DEFAULT_START_REPLY, DEFAULT_STOP_REPLY,
};

use super::faulty::Faulty;
use super::{classifiers, observed, oracle, Help, OptIn, OptOut, SPEC_TABLE, WHITE_SPACE};

fn exact(rules: RuleSet) -> &'static Classifier {
    classifiers()
        .iter()
        .find(|(r, m, _)| *r == rules && *m == Matching::Compatible)
        .map(|(_, _, c)| c)
        .expect("a compatible classifier per rule set")
}

fn take(data: &mut &[u8]) -> u8 {
    match data.split_first() {
        Some((&b, rest)) => {
            *data = rest;
            b
        }
        None => 0,
    }
}

/// Up to three White_Space characters chosen by `n`.
fn white_space(n: u8) -> String {
    let count = usize::from(n % 4);
    (0..count)
        .map(|i| WHITE_SPACE[(usize::from(n) / 4 + i * 7) % WHITE_SPACE.len()])
        .collect()
}

/// Classification invariants. The first four bytes choose padding, a keyword and its case;
/// the rest, decoded lossily, is a body.
pub fn classify(data: &[u8]) {
    // The byte boundary: valid UTF-8 is classified, anything else names the offset.
    match (
        std::str::from_utf8(data),
        proxy_optout::classify_bytes(data),
    ) {
        (Ok(s), Ok(d)) => assert_eq!(d, proxy_optout::classify(&Message::sms(s))),
        (Err(e), Err(err)) => assert_eq!(err.offset(), e.valid_up_to()),
        (a, b) => panic!("classify_bytes disagrees with from_utf8: {a:?} / {b:?}"),
    }
    let mut rest = data;
    let (w1, w2, k, case) = (
        take(&mut rest),
        take(&mut rest),
        take(&mut rest),
        take(&mut rest),
    );
    let body = String::from_utf8_lossy(rest);
    let (before, after) = (white_space(w1), white_space(w2));
    let row = &SPEC_TABLE[usize::from(k) % SPEC_TABLE.len()];
    let word: String = row
        .0
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if (case >> (i % 8)) & 1 == 1 {
                c.to_ascii_lowercase()
            } else {
                c
            }
        })
        .collect();
    let padded_word = format!("{before}{word}{after}");
    let padded_body = format!("{before}{body}{after}");
    for (rules, matching, c) in classifiers() {
        let d = c.classify(&Message::sms(&body));
        // Invariant 3: a drop raises exactly 80901 and fires no callback.
        assert_eq!(
            d.is_dropped(),
            d.notice() == Some(Notice::MessageMatchedStopWord)
        );
        assert_eq!(d.is_dropped(), !d.fires_callbacks());
        // Invariant 2: surrounding whitespace never changes the decision.
        assert_eq!(
            c.classify(&Message::sms(&padded_body)),
            d,
            "{rules}/{matching}: {padded_body:?} vs {body:?}"
        );
        // Invariant 1: a keyword in any case with any White_Space padding is classified as
        // the keyword; a drop keyword is never forwarded.
        let expected = oracle(&word, Channel::Sms, *rules);
        let kd = c.classify(&Message::sms(&padded_word));
        assert_eq!(
            kd.keyword(),
            expected.keyword,
            "{rules}/{matching}: {padded_word:?}"
        );
        assert_eq!(
            kd.is_dropped(),
            expected.dropped,
            "{rules}/{matching}: {padded_word:?}"
        );
        // Compatible matching is the naive reference; lenient extends it and is exactly its
        // documented folds.
        let reference = oracle(&body, Channel::Sms, *rules);
        match matching {
            Matching::Compatible => {
                assert_eq!(observed(&d), reference, "{rules}: {body:?}")
            }
            _ => {
                if reference.keyword.is_some() {
                    assert_eq!(
                        d.keyword(),
                        reference.keyword,
                        "lenient ⊇ compatible: {body:?}"
                    );
                }
                let form = lenient_form(&body);
                let defined = exact(*rules).find_keyword(&form).map(|k| k.word());
                assert_eq!(d.keyword(), defined, "{rules}: {body:?} folds to {form:?}");
            }
        }
        // Only SMS and MMS get keyword handling.
        let w = c.classify(&Message::new(&body, Channel::WhatsApp));
        assert!(w.is_forwarded() && w.keyword().is_none());
    }
}

const PEOPLE: [(&str, &str); 7] = [
    ("A", "P1"),
    ("B", "P1"),
    ("A", "P2"),
    ("C", "P2"),
    ("B", "P2"),
    ("C", "P1"),
    ("Z", "P1"), // out of session
];

const SESSIONS: [(&str, usize, usize); 3] = [("s1", 0, 1), ("s2", 2, 3), ("s3", 4, 5)];

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

fn counterpart(sender: usize) -> Option<usize> {
    SESSIONS.iter().find_map(|&(_, a, b)| {
        if a == sender {
            Some(b)
        } else if b == sender {
            Some(a)
        } else {
            None
        }
    })
}

/// Relay invariants under an arbitrary sequence of messages, platform feedback and store
/// faults, in either carrier mode. The first byte's low bit picks the mode (Emulate or
/// Mirror). Each byte is then an event: sender (3 bits; 7 means a 21610 refusal reported for
/// the person the body bits name, at their proxy number), body (4 bits), and whether the
/// store fails on its first call for that event (top bit). Checked against a model of acknowledged ledger events:
/// never a forward to a pair whose last acknowledged event is an opt-out (invariant 5),
/// store failures always surface, and nothing unacknowledged is written.
pub fn relay(data: &[u8]) {
    let mode = match data.first() {
        Some(b) if b & 1 == 1 => CarrierMode::Mirror,
        _ => CarrierMode::Emulate,
    };
    let mut relay = Relay::new(Faulty::default()).with_mode(mode);
    for (id, a, b) in SESSIONS {
        let (pa, pb) = (PEOPLE[a], PEOPLE[b]);
        relay
            .sessions_mut()
            .open(
                id,
                Participant::new(pa.0, pa.1).unwrap(),
                Participant::new(pb.0, pb.1).unwrap(),
            )
            .expect("valid sessions");
    }
    let mut acked: HashMap<(&str, &str), OptState> = HashMap::new();
    for &byte in data.iter().take(256) {
        let fault = byte & 0x80 != 0;
        if byte & 7 == 7 {
            let (who, proxy) = PEOPLE[usize::from(byte >> 3 & 15) % PEOPLE.len()];
            relay.store().fail_next.store(fault, Ordering::SeqCst);
            let result = relay.feedback(&Feedback::Refused {
                from: proxy,
                to: who,
            });
            relay.store().fail_next.store(false, Ordering::SeqCst);
            match result {
                Ok(out) => {
                    assert!(!fault, "a store failure was swallowed");
                    assert!(out.is_recorded());
                    acked.insert((proxy, who), OptState::OptedOut);
                }
                Err(FeedbackError::Record { key, .. }) => {
                    assert!(fault);
                    assert_eq!(key.as_key(), LedgerKey::new(proxy, who));
                }
                Err(e) => panic!("unexpected feedback error {e}"),
            }
            continue;
        }
        let sender = usize::from(byte & 7) % PEOPLE.len();
        let body = BODIES[usize::from(byte >> 3) & 15];
        let (from, to) = PEOPLE[sender];
        relay.store().fail_next.store(fault, Ordering::SeqCst);
        let calls_before = relay.store().calls.load(Ordering::SeqCst);
        let result = relay.handle(&Inbound::sms(from, to, body));
        let made_calls = relay.store().calls.load(Ordering::SeqCst) > calls_before;
        relay.store().fail_next.store(false, Ordering::SeqCst);
        let expected = oracle(body, Channel::Sms, RuleSet::Proxy2025);
        let sender_state = *acked.get(&(to, from)).unwrap_or(&OptState::OptedIn);
        let outcome = match result {
            Ok(out) => {
                assert!(
                    !(fault && made_calls),
                    "a store failure was swallowed: {body:?}"
                );
                out
            }
            Err(RelayError::Record { outcome, .. }) => {
                assert!(fault);
                assert!(outcome.reply().is_none() && outcome.ledger().is_none());
                *outcome
            }
            Err(RelayError::Lookup { key, outcome, .. }) => {
                assert!(fault);
                if key.participant() != from {
                    assert_eq!(outcome.withheld(), Some(Withheld::RecipientStatusUnknown));
                } else {
                    assert!(outcome.reply().is_none());
                }
                if outcome.ledger().is_some() {
                    assert!(outcome.is_recorded(), "a failed read does not undo a write");
                }
                *outcome
            }
            Err(e) => panic!("unexpected relay error {e}"),
        };
        if let Some(change) = outcome.ledger() {
            assert_eq!(change.key(), LedgerKey::new(to, from));
            acked.insert((to, from), change.state());
            let want = match expected.carrier {
                Some(OptOut) => OptState::OptedOut,
                Some(OptIn) => OptState::OptedIn,
                other => panic!("ledger change for carrier {other:?}"),
            };
            assert_eq!(change.state(), want);
        } else if !fault {
            assert!(
                matches!(expected.carrier, None | Some(Help)),
                "{body:?}: carrier keyword without ledger change"
            );
        }
        // The carrier layer's reply, once what it depends on was answered; never in Mirror.
        if mode == CarrierMode::Mirror {
            assert!(outcome.reply().is_none());
        } else if !fault {
            let reply = match expected.carrier {
                Some(OptOut) => Some(DEFAULT_STOP_REPLY),
                Some(OptIn) => Some(DEFAULT_START_REPLY),
                Some(Help) => (sender_state == OptState::OptedIn).then_some(DEFAULT_HELP_REPLY),
                _ => None,
            };
            assert_eq!(outcome.reply().map(|m| m.body()), reply, "{from}: {body:?}");
            if let Some(m) = outcome.reply() {
                assert_eq!((m.from(), m.to()), (to, from));
            }
        }
        // The Proxy layer.
        assert_eq!(
            outcome.decision().is_dropped(),
            expected.dropped,
            "{body:?}"
        );
        let n80901 = outcome
            .notices()
            .iter()
            .filter(|n| n.code() == 80901)
            .count();
        assert_eq!(n80901, usize::from(expected.dropped));
        match outcome.delivery() {
            Delivery::Send(m) => {
                let r = PEOPLE[counterpart(sender).expect("sent only in session")];
                assert_eq!((m.from(), m.to()), (r.1, r.0));
                let latest = *acked.get(&(r.1, r.0)).unwrap_or(&OptState::OptedIn);
                assert_eq!(latest, OptState::OptedIn, "forwarded to an opted-out pair");
                assert!(!expected.dropped);
            }
            Delivery::Refused(m) => {
                let latest = *acked.get(&(m.from(), m.to())).unwrap_or(&OptState::OptedIn);
                assert_eq!(latest, OptState::OptedOut);
                assert!(outcome.notices().iter().any(|n| n.code() == 21610));
            }
            Delivery::Withheld(w) => match w {
                Withheld::KeywordDropped => assert!(expected.dropped),
                Withheld::OutOfSession => assert!(counterpart(sender).is_none()),
                Withheld::RecipientStatusUnknown => assert!(fault),
                other => panic!("unexpected {other:?}"),
            },
            other => panic!("unexpected {other:?}"),
        }
    }
    // Nothing acknowledged was lost; nothing unacknowledged was written.
    for (scope, who) in PEOPLE.iter().map(|p| (p.1, p.0)) {
        let expected = *acked.get(&(scope, who)).unwrap_or(&OptState::OptedIn);
        let stored = relay
            .store()
            .inner
            .state(LedgerKey::new(scope, who))
            .unwrap_or_else(|e| match e {});
        assert_eq!(stored, expected, "({scope}, {who})");
    }
}
