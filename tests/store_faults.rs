//! A store that fails or delays on chosen calls, and the relay's guarantees at every
//! injection point (issue 5; SPEC §5): an opt-out that cannot be recorded surfaces as an error
//! and is still not forwarded nor confirmed; a recipient whose state cannot be read gets no
//! forward (fail closed); an acknowledged opt-out is never lost or reordered behind a later
//! opt-in.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::faulty::{Fault, Faulty};
use proxy_optout::{
    Delivery, Inbound, LedgerKey, OptOutStore, OptState, Participant, Relay, RelayError, Withheld,
};

const A: &str = "+1A";
const B: &str = "+1B";
const P: &str = "+1P";

fn relay(store: Faulty) -> Relay<Faulty> {
    let mut r = Relay::new(store);
    r.sessions_mut()
        .open(
            "ride",
            Participant::new(A, P).unwrap(),
            Participant::new(B, P).unwrap(),
        )
        .unwrap();
    r
}

const SCRIPT: [(&str, &str); 14] = [
    (A, "hi"),
    (A, "STOP"),
    (B, "are you there?"),
    (A, "help"),
    (A, "still here"),
    (A, "START"),
    (B, "great"),
    (B, "quit"),
    (A, "ok bye"),
    (B, "unstop"),
    (A, "info"),
    (B, "cancel"),
    (B, "yes"),
    (A, "thanks"),
];

#[test]
fn guarantees_hold_at_every_injection_point() {
    // A clean run tells how many store calls the script makes.
    let clean = relay(Faulty::default());
    for (from, body) in SCRIPT {
        let _ = clean.handle(&Inbound::sms(from, P, body)).unwrap();
    }
    let calls = clean.store().calls.load(Ordering::SeqCst);
    assert!(calls >= 15, "{calls}");

    for fail_at in 0..calls {
        let r = relay(Faulty::failing_at(fail_at));
        // The latest acknowledged state per participant.
        let mut acked: HashMap<&str, OptState> = HashMap::new();
        let mut errors = 0;
        for (from, body) in SCRIPT {
            let to = if from == A { B } else { A };
            let recipient_state = *acked.get(to).unwrap_or(&OptState::OptedIn);
            match r.handle(&Inbound::sms(from, P, body)) {
                Ok(out) => {
                    if let Some(change) = out.ledger() {
                        acked.insert(from, change.state());
                    }
                    if let Delivery::Send(m) = out.delivery() {
                        assert_eq!(m.to(), to);
                        assert_eq!(
                            recipient_state,
                            OptState::OptedIn,
                            "fail at {fail_at}: forwarded {body:?} to {to}, who opted out"
                        );
                    }
                }
                Err(RelayError::Record {
                    state,
                    outcome,
                    source,
                    ..
                }) => {
                    errors += 1;
                    assert_eq!(source.call, fail_at);
                    assert!(
                        outcome.reply().is_none(),
                        "no reply claims an unrecorded change"
                    );
                    assert!(outcome.ledger().is_none());
                    if state == OptState::OptedOut {
                        assert!(outcome.decision().is_dropped(), "still not forwarded");
                        assert!(outcome.forwarded().is_none());
                    }
                }
                Err(RelayError::Lookup {
                    key,
                    outcome,
                    source,
                    ..
                }) => {
                    errors += 1;
                    assert_eq!(source.call, fail_at);
                    // Fail closed: the unanswered question was either the sender's state for
                    // a HELP reply (none sent) or the recipient's (no forward).
                    if key.participant() == to {
                        assert_eq!(outcome.withheld(), Some(Withheld::RecipientStatusUnknown));
                    } else {
                        assert_eq!(key.participant(), from);
                        assert!(
                            outcome.reply().is_none(),
                            "no HELP reply on an unknown state"
                        );
                    }
                    if let Some(change) = outcome.ledger() {
                        acked.insert(from, change.state());
                    }
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(
            errors, 1,
            "fail at {fail_at}: the failure surfaced exactly once"
        );
        // Nothing acknowledged was lost; nothing unacknowledged was written.
        for who in [A, B] {
            let expected = *acked.get(who).unwrap_or(&OptState::OptedIn);
            assert_eq!(
                r.store().inner.state(LedgerKey::new(P, who)),
                Ok(expected),
                "{who}"
            );
        }
    }
}

#[test]
fn a_failed_opt_in_leaves_an_acknowledged_opt_out_in_place() {
    // Calls: STOP record (0); START: the recipient's state (1), then its record (2) fails.
    let r = relay(Faulty::failing_at(2));
    let _ = r.handle(&Inbound::sms(A, P, "STOP")).unwrap();
    let err = r.handle(&Inbound::sms(A, P, "START")).unwrap_err();
    assert!(matches!(
        err,
        RelayError::Record {
            state: OptState::OptedIn,
            ..
        }
    ));
    // The forward did not depend on the failed write: the error's outcome still carries it,
    // and no confirmation.
    let outcome = err.outcome().unwrap();
    assert_eq!(outcome.forwarded().unwrap().to(), B);
    assert!(outcome.reply().is_none() && outcome.ledger().is_none());
    assert_eq!(
        r.store().inner.state(LedgerKey::new(P, A)),
        Ok(OptState::OptedOut)
    );
    assert!(r
        .handle(&Inbound::sms(B, P, "hello"))
        .unwrap()
        .refused()
        .is_some());
}

#[test]
fn a_slow_store_never_lets_a_forward_overtake_an_acknowledged_opt_out() {
    for delay_ms in [1, 20, 60] {
        let store = Faulty {
            plan: HashMap::from([(0, Fault::Delay(Duration::from_millis(delay_ms)))]),
            ..Faulty::default()
        };
        let r = Arc::new(relay(store));
        let stop = {
            let r = Arc::clone(&r);
            std::thread::spawn(move || r.handle(&Inbound::sms(A, P, "STOP")).unwrap().into_owned())
        };
        // B keeps writing while the opt-out is in flight; until it is acknowledged either
        // answer is fine, never a panic or an error.
        let racing = {
            let r = Arc::clone(&r);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let out = r.handle(&Inbound::sms(B, P, "where are you?")).unwrap();
                    assert!(matches!(
                        out.delivery(),
                        Delivery::Send(_) | Delivery::Refused(_)
                    ));
                }
            })
        };
        let acknowledged = stop.join().unwrap();
        assert_eq!(acknowledged.ledger().unwrap().state(), OptState::OptedOut);
        // Once acknowledged, every later forward to A is refused.
        for _ in 0..20 {
            assert!(r
                .handle(&Inbound::sms(B, P, "hello?"))
                .unwrap()
                .refused()
                .is_some());
        }
        racing.join().unwrap();
        // A later opt-in wins, because it is later.
        let _ = r.handle(&Inbound::sms(A, P, "START")).unwrap();
        assert!(r
            .handle(&Inbound::sms(B, P, "back?"))
            .unwrap()
            .forwarded()
            .is_some());
    }
}
