//! A store that fails or delays on chosen calls, and the relay's guarantees at every
//! injection point (issue 5; §§5): an opt-out that cannot be recorded surfaces as an error
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

/// A host on the step API that performs the effects in order, skipping what depends on a
/// failed record, with the store failing at every injection point: it never confirms an opt-out
/// the store did not take, and never sends to a recipient whose last stored state is opted out.
#[test]
fn a_host_performing_effects_in_order_keeps_the_promises_at_every_injection_point() {
    use proxy_optout::{Answers, Effect, Intercept, RelayCore, Sessions, Settings};
    let mut sessions = Sessions::new();
    sessions
        .open(
            "ride",
            Participant::new(A, P).unwrap(),
            Participant::new(B, P).unwrap(),
        )
        .unwrap();
    let core = RelayCore::new();
    let run = |store: &Faulty| -> (usize, usize) {
        let (mut confirmed, mut sent) = (0, 0);
        for (from, body) in SCRIPT {
            let inbound = Inbound::sms(from, P, body);
            let route = sessions.route(from, P);
            let plan = core.plan(&inbound, route, Settings::default()).unwrap();
            let mut answers = Answers::new().intercept(Intercept::Allow);
            if let Some(k) = plan.sender_key() {
                if let Ok(s) = store.state(k) {
                    answers = answers.sender_state(s);
                }
            }
            if let Some(k) = plan.recipient_key() {
                if let Ok(s) = store.state(k) {
                    answers = answers.recipient_state(s);
                }
            }
            let out = plan.finish(answers);
            let mut record_failed = false;
            for effect in out.effects() {
                if record_failed && effect.needs_record() {
                    continue;
                }
                match effect {
                    Effect::Record { key, state } => {
                        record_failed = store.record(key, state).is_err();
                    }
                    Effect::Reply(m) => {
                        confirmed += 1;
                        // A confirmation is only sent for what the store holds now.
                        if let Some(change) = out.ledger() {
                            assert_eq!(store.inner.state(change.key()), Ok(change.state()));
                        }
                        assert_eq!(m.to(), from);
                    }
                    Effect::Forward(m) => {
                        sent += 1;
                        assert_eq!(
                            store.inner.state(LedgerKey::new(P, m.to())),
                            Ok(OptState::OptedIn),
                            "forwarded {body:?} to {}, who is opted out",
                            m.to()
                        );
                    }
                    _ => {}
                }
            }
        }
        (confirmed, sent)
    };
    let clean = Faulty::default();
    let (confirmed, sent) = run(&clean);
    assert!(confirmed >= 4 && sent >= 4, "{confirmed} {sent}");
    let calls = clean.calls.load(Ordering::SeqCst);
    for fail_at in 0..calls {
        let (c, s) = run(&Faulty::failing_at(fail_at));
        assert!(c <= confirmed + 1 && s <= sent + 1, "fail at {fail_at}");
    }
}
