//! Scenario tests for the relay (issue 3, SPEC §1, §4-§8): a rider A and a driver B talking
//! through masked numbers.

use proxy_optout::{
    AutoReplies, Category, Channel, Decision, Delivery, FixedPolicy, Inbound, Intercept, LedgerKey,
    LedgerScope, MemoryStore, Message, Notice, OptOutStore, OptState, Participant, ProxyPolicy,
    Relay, SessionError, StopFilterFlag, StopFiltering, Withheld, DEFAULT_HELP_REPLY,
    DEFAULT_START_REPLY, DEFAULT_STOP_REPLY,
};

const A: &str = "+15551110001";
const B: &str = "+15552220002";
const P1: &str = "+15550000101";
const P2: &str = "+15550000102";

/// Session "ride-1": A and B both talk through P1.
fn relay() -> Relay<MemoryStore> {
    let mut r = Relay::new(MemoryStore::new());
    r.sessions_mut()
        .open("ride-1", Participant::new(A, P1), Participant::new(B, P1))
        .unwrap();
    r
}

fn opted_out(r: &Relay<MemoryStore>, proxy: &str, who: &str) -> bool {
    r.store().state(LedgerKey::new(proxy, who)).unwrap() == OptState::OptedOut
}

#[test]
fn stop_is_dropped_recorded_confirmed_and_silent() {
    let r = relay();
    let out = r.handle(&Inbound::sms(A, P1, "STOP")).unwrap();
    assert_eq!(out.withheld(), Some(Withheld::KeywordDropped));
    assert_eq!(out.notices(), &[Notice::MessageMatchedStopWord]);
    assert!(!out.fires_status_callback());
    assert!(!out.decision().fires_callbacks());
    let change = out.ledger().unwrap();
    assert_eq!(change.state(), OptState::OptedOut);
    assert_eq!(change.key().as_key(), LedgerKey::new(P1, A));
    let reply = out.reply().unwrap();
    assert_eq!(
        (reply.from(), reply.to(), reply.body()),
        (P1, A, DEFAULT_STOP_REPLY)
    );
    assert_eq!(out.session(), Some("ride-1"));
    assert!(opted_out(&r, P1, A));
}

#[test]
fn forward_to_an_opted_out_participant_is_refused_with_21610() {
    let r = relay();
    let _ = r.handle(&Inbound::sms(A, P1, "stop")).unwrap();
    let out = r.handle(&Inbound::sms(B, P1, "I'm outside")).unwrap();
    let refused = out.refused().expect("the leg to A is refused");
    assert_eq!((refused.from(), refused.to()), (P1, A));
    assert_eq!(out.notices(), &[Notice::UnsubscribedRecipient]);
    assert_eq!(Notice::UnsubscribedRecipient.code(), 21610);
    assert!(out.forwarded().is_none());
    assert!(out.fires_status_callback(), "the failed leg is reported");
    assert!(out.reply().is_none());
    assert!(out.ledger().is_none());
}

#[test]
fn an_opted_out_participant_can_still_send() {
    let r = relay();
    let _ = r.handle(&Inbound::sms(A, P1, "STOP")).unwrap();
    let out = r
        .handle(&Inbound::sms(A, P1, "actually, see you at 5"))
        .unwrap();
    let sent = out.forwarded().unwrap();
    assert_eq!(
        (sent.from(), sent.to(), sent.body()),
        (P1, B, "actually, see you at 5")
    );
    assert!(out.notices().is_empty());
    assert!(out.fires_status_callback());
}

#[test]
fn opt_out_is_scoped_to_the_proxy_number_not_the_pool() {
    let mut r = relay();
    r.sessions_mut()
        .open("ride-2", Participant::new(A, P2), Participant::new(B, P2))
        .unwrap();
    let _ = r.handle(&Inbound::sms(A, P1, "STOP")).unwrap();
    // B reaches A through P2 in the other session.
    let out = r.handle(&Inbound::sms(B, P2, "new ride?")).unwrap();
    assert_eq!(out.forwarded().unwrap().to(), A);
    assert_eq!(out.forwarded().unwrap().from(), P2);
    assert_eq!(out.session(), Some("ride-2"));
    // ...but not through P1.
    assert!(r
        .handle(&Inbound::sms(B, P1, "hello?"))
        .unwrap()
        .refused()
        .is_some());
}

#[test]
fn service_wide_scope_is_an_explicit_option() {
    let mut r = Relay::new(MemoryStore::new()).with_scope(LedgerScope::Service("KS1".into()));
    r.sessions_mut()
        .open("ride-1", Participant::new(A, P1), Participant::new(B, P1))
        .unwrap();
    r.sessions_mut()
        .open("ride-2", Participant::new(A, P2), Participant::new(B, P2))
        .unwrap();
    let _ = r.handle(&Inbound::sms(A, P1, "STOP")).unwrap();
    assert!(r
        .handle(&Inbound::sms(B, P2, "new ride?"))
        .unwrap()
        .refused()
        .is_some());
    assert!(opted_out(&r, "KS1", A));
}

#[test]
fn unstop_is_dropped_and_opts_in_with_the_start_reply() {
    let r = relay();
    let _ = r.handle(&Inbound::sms(A, P1, "STOP")).unwrap();
    let out = r.handle(&Inbound::sms(A, P1, "unstop")).unwrap();
    assert_eq!(out.withheld(), Some(Withheld::KeywordDropped));
    assert_eq!(out.notices(), &[Notice::MessageMatchedStopWord]);
    assert_eq!(out.ledger().unwrap().state(), OptState::OptedIn);
    assert_eq!(out.reply().unwrap().body(), DEFAULT_START_REPLY);
    assert!(!opted_out(&r, P1, A));
    assert!(r
        .handle(&Inbound::sms(B, P1, "ok"))
        .unwrap()
        .forwarded()
        .is_some());
}

#[test]
fn start_is_forwarded_and_opts_in() {
    let r = relay();
    let _ = r.handle(&Inbound::sms(A, P1, "STOP")).unwrap();
    let out = r.handle(&Inbound::sms(A, P1, "Start")).unwrap();
    assert_eq!(out.forwarded().unwrap().body(), "Start");
    assert_eq!(out.ledger().unwrap().state(), OptState::OptedIn);
    assert_eq!(out.reply().unwrap().body(), DEFAULT_START_REPLY);
    assert!(out.notices().is_empty());
    assert!(!opted_out(&r, P1, A));
}

#[test]
fn help_while_opted_out_is_forwarded_without_reply() {
    let r = relay();
    let _ = r.handle(&Inbound::sms(A, P1, "STOP")).unwrap();
    let out = r.handle(&Inbound::sms(A, P1, "HELP")).unwrap();
    assert!(out.forwarded().is_some());
    assert!(out.reply().is_none());
    assert!(out.ledger().is_none());
    // Opted in, HELP gets the HELP reply.
    let out = r.handle(&Inbound::sms(B, P1, "info")).unwrap();
    assert_eq!(out.reply().unwrap().body(), DEFAULT_HELP_REPLY);
    assert_eq!(out.reply().unwrap().to(), B);
}

#[test]
fn arret_is_dropped_with_no_ledger_change_and_no_reply() {
    let r = relay();
    let out = r.handle(&Inbound::sms(A, P1, "ARRET")).unwrap();
    assert_eq!(out.withheld(), Some(Withheld::KeywordDropped));
    assert_eq!(out.notices(), &[Notice::MessageMatchedStopWord]);
    assert!(out.ledger().is_none());
    assert!(out.reply().is_none());
    assert!(r.store().is_empty());
}

struct CustomHandling {
    seen: std::sync::Mutex<Vec<Option<Category>>>,
}

impl ProxyPolicy for CustomHandling {
    fn stop_filter_flag(&self) -> StopFilterFlag {
        StopFilterFlag::Respect
    }
    fn stop_filtering(&self, _: Option<&str>) -> StopFiltering {
        StopFiltering::Off
    }
    fn intercept(&self, _: &Message<'_>, d: &Decision) -> Intercept {
        self.seen.lock().unwrap().push(d.category());
        if d.category() == Some(Category::OptOut) {
            Intercept::Block
        } else {
            Intercept::Allow
        }
    }
}

#[test]
fn flag_on_filtering_off_hands_stop_to_the_hook_which_blocks_it() {
    let mut r = Relay::new(MemoryStore::new()).with_policy(CustomHandling {
        seen: Default::default(),
    });
    r.sessions_mut()
        .open("ride-1", Participant::new(A, P1), Participant::new(B, P1))
        .unwrap();
    let out = r.handle(&Inbound::sms(A, P1, "STOP")).unwrap();
    assert_eq!(out.withheld(), Some(Withheld::HookBlocked));
    assert_eq!(out.notices(), &[Notice::InboundContactRejected]);
    assert!(out.ledger().is_none(), "filtering off: no ledger change");
    assert!(out.reply().is_none(), "filtering off: no auto-reply");
    assert!(r.store().is_empty());
    // Filtering off also means no 21610 on later sends.
    let out = r.handle(&Inbound::sms(B, P1, "hello")).unwrap();
    assert!(out.forwarded().is_some());
}

#[test]
fn whatsapp_stop_is_forwarded() {
    let mut r = Relay::new(MemoryStore::new());
    r.sessions_mut()
        .open(
            "chat-1",
            Participant::new("whatsapp:+15551110001", "whatsapp:+15550000101"),
            Participant::new(B, P1),
        )
        .unwrap();
    let out = r
        .handle(&Inbound::new(
            "whatsapp:+15551110001",
            "whatsapp:+15550000101",
            "STOP",
            Channel::WhatsApp,
        ))
        .unwrap();
    let sent = out.forwarded().unwrap();
    assert_eq!((sent.to(), sent.channel()), (B, Channel::Sms));
    assert!(out.ledger().is_none());
    assert!(out.reply().is_none());
    assert!(out.notices().is_empty());
}

#[test]
fn a_stop_from_either_participant_is_dropped() {
    let r = relay();
    for who in [A, B] {
        let out = r.handle(&Inbound::sms(who, P1, " StOp\n")).unwrap();
        assert_eq!(out.withheld(), Some(Withheld::KeywordDropped), "{who}");
        assert_eq!(out.ledger().unwrap().key().participant(), who);
    }
}

#[test]
fn out_of_session_messages_are_handed_to_the_host_and_keywords_still_apply() {
    let r = relay();
    let out = r
        .handle(&Inbound::sms("+15559999999", P1, "hi, who is this?"))
        .unwrap();
    assert!(out.is_out_of_session());
    assert_eq!(out.session(), None);
    assert!(!out.fires_status_callback());
    // The carrier layer acts on any message to the number.
    let out = r.handle(&Inbound::sms("+15559999999", P1, "STOP")).unwrap();
    assert_eq!(out.withheld(), Some(Withheld::KeywordDropped));
    assert_eq!(out.ledger().unwrap().state(), OptState::OptedOut);
}

#[test]
fn a_session_with_one_participant_withholds() {
    let mut r = Relay::new(MemoryStore::new());
    r.sessions_mut().create("ride-1").unwrap();
    r.sessions_mut()
        .add_participant("ride-1", Participant::new(A, P1))
        .unwrap();
    let out = r.handle(&Inbound::sms(A, P1, "hello")).unwrap();
    assert_eq!(out.withheld(), Some(Withheld::NoCounterpart));
}

#[test]
fn custom_replies_and_disabled_replies() {
    let mut r = Relay::new(MemoryStore::new()).with_replies(
        AutoReplies::default()
            .with(
                Category::OptOut,
                "Acme: you won't hear from this number again.",
            )
            .without(Category::Help),
    );
    r.sessions_mut()
        .open("ride-1", Participant::new(A, P1), Participant::new(B, P1))
        .unwrap();
    let out = r.handle(&Inbound::sms(A, P1, "quit")).unwrap();
    assert!(out.reply().unwrap().body().starts_with("Acme"));
    assert!(r
        .handle(&Inbound::sms(B, P1, "help"))
        .unwrap()
        .reply()
        .is_none());
}

#[test]
fn hook_is_not_called_for_out_of_session_or_dropped_messages() {
    let policy = CustomHandling {
        seen: Default::default(),
    };
    let mut r = Relay::new(MemoryStore::new()).with_policy(FixedPolicy::default());
    r.sessions_mut()
        .open("ride-1", Participant::new(A, P1), Participant::new(B, P1))
        .unwrap();
    let r = r.with_policy(&policy);
    let _ = r.handle(&Inbound::sms("+1stranger", P1, "hi")).unwrap();
    assert!(policy.seen.lock().unwrap().is_empty());
    let _ = r.handle(&Inbound::sms(A, P1, "hi")).unwrap();
    assert_eq!(policy.seen.lock().unwrap().as_slice(), &[None]);
}

#[test]
fn session_configuration_errors() {
    let mut r = relay();
    let s = r.sessions_mut();
    assert_eq!(
        s.add_participant("ride-1", Participant::new("C", P1)),
        Err(SessionError::ThirdParticipant {
            session: "ride-1".into()
        })
    );
    assert_eq!(
        s.open("ride-2", Participant::new(A, P1), Participant::new("C", P1)),
        Err(SessionError::DuplicatePair {
            identifier: A.into(),
            proxy_identifier: P1.into(),
            existing: "ride-1".into()
        })
    );
    assert!(
        s.participants("ride-2").is_none(),
        "a failed open leaves nothing behind"
    );
    assert_eq!(
        s.open(
            "ride-3",
            Participant::new("", P1),
            Participant::new("C", P1)
        ),
        Err(SessionError::Empty {
            field: "identifier"
        })
    );
    assert_eq!(
        s.add_participant("nope", Participant::new("C", P1)),
        Err(SessionError::UnknownSession {
            session: "nope".into()
        })
    );
    assert_eq!(
        s.create("ride-1"),
        Err(SessionError::DuplicateSession {
            session: "ride-1".into()
        })
    );
    assert_eq!(
        s.create(""),
        Err(SessionError::Empty {
            field: "session id"
        })
    );
    for e in [
        SessionError::Empty {
            field: "identifier",
        },
        SessionError::ThirdParticipant {
            session: "x".into(),
        },
    ] {
        assert!(e.to_string().chars().next().unwrap().is_lowercase());
    }
}

#[test]
fn outcome_display_is_one_readable_line() {
    let r = relay();
    let out = r.handle(&Inbound::sms(A, P1, "STOP")).unwrap();
    let line = out.to_string();
    assert!(
        line.starts_with(
            "dropped [STOP]; notice 80901; ledger (+15550000101, +15551110001) opted_out; reply"
        ),
        "{line}"
    );
    assert!(line.ends_with("no callback"), "{line}");
    let out = r.handle(&Inbound::sms(B, P1, "hi")).unwrap();
    assert_eq!(
        out.to_string(),
        "refused +15550000101 -> +15551110001 (21610); notice 21610"
    );
    assert!(matches!(out.delivery(), Delivery::Refused(_)));
}
