//! Scenario tests for the relay (`docs/BEHAVIOUR.md` §§1, 4-8): a rider A and a driver B
//! talking through masked numbers. Every scenario runs through the pure steps, the sync driver
//! and the async driver (`common::drivers`), which must produce identical outcomes.

mod common;

use common::drivers::{each_driver, World};
use proxy_optout::{
    AutoReplies, CarrierMode, Category, Channel, Decision, Delivery, Effect, Feedback, FixedPolicy,
    IdentifierError, Inbound, Intercept, LedgerKey, LedgerScope, Message, Notice, OptState,
    Participant, ProxyPolicy, RelayCore, SessionError, Sessions, StopFilterFlag, StopFiltering,
    Withheld, DEFAULT_HELP_REPLY, DEFAULT_START_REPLY, DEFAULT_STOP_REPLY,
};

const A: &str = "+15551110001";
const B: &str = "+15552220002";
const P1: &str = "+15550000101";
const P2: &str = "+15550000102";

fn p(id: &str, proxy: &str) -> Participant {
    Participant::new(id, proxy).unwrap()
}

/// Session "ride-1": A and B both talk through P1.
fn ride(w: &mut World) {
    w.sessions.open("ride-1", p(A, P1), p(B, P1)).unwrap();
}

#[test]
fn stop_is_dropped_recorded_confirmed_and_silent() {
    each_driver(|w| {
        ride(w);
        let out = w.handle(Inbound::sms(A, P1, "STOP"));
        assert_eq!(out.withheld(), Some(Withheld::KeywordDropped));
        assert_eq!(out.notices(), &[Notice::MessageMatchedStopWord]);
        assert!(!out.fires_status_callback());
        assert!(!out.decision().fires_callbacks());
        let change = out.ledger().unwrap();
        assert_eq!(change.state(), OptState::OptedOut);
        assert_eq!(change.key(), LedgerKey::new(P1, A));
        let reply = out.reply().unwrap();
        assert_eq!(
            (reply.from(), reply.to(), reply.body()),
            (P1, A, DEFAULT_STOP_REPLY)
        );
        assert_eq!(out.session(), Some("ride-1"));
        assert!(w.opted_out(P1, A));
    });
}

#[test]
fn forward_to_an_opted_out_participant_is_refused_with_21610() {
    each_driver(|w| {
        ride(w);
        let _ = w.handle(Inbound::sms(A, P1, "stop"));
        let out = w.handle(Inbound::sms(B, P1, "I'm outside"));
        let refused = out.refused().expect("the leg to A is refused");
        assert_eq!((refused.from(), refused.to()), (P1, A));
        assert_eq!(out.notices(), &[Notice::UnsubscribedRecipient]);
        assert_eq!(Notice::UnsubscribedRecipient.code(), 21610);
        assert!(out.forwarded().is_none());
        assert!(out.fires_status_callback(), "the failed leg is reported");
        assert!(out.reply().is_none());
        assert!(out.ledger().is_none());
    });
}

#[test]
fn an_opted_out_participant_can_still_send() {
    each_driver(|w| {
        ride(w);
        let _ = w.handle(Inbound::sms(A, P1, "STOP"));
        let out = w.handle(Inbound::sms(A, P1, "actually, see you at 5"));
        let sent = out.forwarded().unwrap();
        assert_eq!(
            (sent.from(), sent.to(), sent.body()),
            (P1, B, "actually, see you at 5")
        );
        assert!(out.notices().is_empty());
        assert!(out.fires_status_callback());
    });
}

#[test]
fn opt_out_is_scoped_to_the_proxy_number_not_the_pool() {
    each_driver(|w| {
        ride(w);
        w.sessions.open("ride-2", p(A, P2), p(B, P2)).unwrap();
        let _ = w.handle(Inbound::sms(A, P1, "STOP"));
        // B reaches A through P2 in the other session.
        let out = w.handle(Inbound::sms(B, P2, "new ride?"));
        assert_eq!(out.forwarded().unwrap().to(), A);
        assert_eq!(out.forwarded().unwrap().from(), P2);
        assert_eq!(out.session(), Some("ride-2"));
        // ...but not through P1.
        assert!(w.handle(Inbound::sms(B, P1, "hello?")).refused().is_some());
    });
}

#[test]
fn service_wide_scope_is_an_explicit_option() {
    each_driver(|w| {
        w.core = RelayCore::new()
            .with_scope(LedgerScope::service("KS1").unwrap())
            .unwrap();
        ride(w);
        w.sessions.open("ride-2", p(A, P2), p(B, P2)).unwrap();
        let _ = w.handle(Inbound::sms(A, P1, "STOP"));
        assert!(w
            .handle(Inbound::sms(B, P2, "new ride?"))
            .refused()
            .is_some());
        assert!(w.opted_out("KS1", A));
    });
}

#[test]
fn unstop_is_dropped_and_opts_in_with_the_start_reply() {
    each_driver(|w| {
        ride(w);
        let _ = w.handle(Inbound::sms(A, P1, "STOP"));
        let out = w.handle(Inbound::sms(A, P1, "unstop"));
        assert_eq!(out.withheld(), Some(Withheld::KeywordDropped));
        assert_eq!(out.notices(), &[Notice::MessageMatchedStopWord]);
        assert_eq!(out.ledger().unwrap().state(), OptState::OptedIn);
        assert_eq!(out.reply().unwrap().body(), DEFAULT_START_REPLY);
        assert!(!w.opted_out(P1, A));
        assert!(w.handle(Inbound::sms(B, P1, "ok")).forwarded().is_some());
    });
}

#[test]
fn start_is_forwarded_and_opts_in() {
    each_driver(|w| {
        ride(w);
        let _ = w.handle(Inbound::sms(A, P1, "STOP"));
        let out = w.handle(Inbound::sms(A, P1, "Start"));
        assert_eq!(out.forwarded().unwrap().body(), "Start");
        assert_eq!(out.ledger().unwrap().state(), OptState::OptedIn);
        assert_eq!(out.reply().unwrap().body(), DEFAULT_START_REPLY);
        assert!(out.notices().is_empty());
        assert!(!w.opted_out(P1, A));
        // The effects in order: record, confirm, forward, callback.
        let effects: Vec<String> = out.effects().map(|e| e.to_string()).collect();
        assert!(effects.len() == 4 || (out.is_recorded() && effects.len() == 3));
        assert_eq!(effects.last().unwrap(), "status callback");
    });
}

#[test]
fn help_while_opted_out_is_forwarded_without_reply() {
    each_driver(|w| {
        ride(w);
        let _ = w.handle(Inbound::sms(A, P1, "STOP"));
        let out = w.handle(Inbound::sms(A, P1, "HELP"));
        assert!(out.forwarded().is_some());
        assert!(out.reply().is_none());
        assert!(out.ledger().is_none());
        // Opted in, HELP gets the HELP reply.
        let out = w.handle(Inbound::sms(B, P1, "info"));
        assert_eq!(out.reply().unwrap().body(), DEFAULT_HELP_REPLY);
        assert_eq!(out.reply().unwrap().to(), B);
    });
}

#[test]
fn arret_is_dropped_with_no_ledger_change_and_no_reply() {
    each_driver(|w| {
        ride(w);
        let out = w.handle(Inbound::sms(A, P1, "ARRET"));
        assert_eq!(out.withheld(), Some(Withheld::KeywordDropped));
        assert_eq!(out.notices(), &[Notice::MessageMatchedStopWord]);
        assert!(out.ledger().is_none());
        assert!(out.reply().is_none());
        assert!(w.store.is_empty());
    });
}

#[derive(Default)]
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
    each_driver(|w| {
        w.policy = Box::new(CustomHandling::default());
        ride(w);
        let out = w.handle(Inbound::sms(A, P1, "STOP"));
        assert_eq!(out.withheld(), Some(Withheld::HookBlocked));
        assert_eq!(out.notices(), &[Notice::InboundContactRejected]);
        assert!(out.intercept_called());
        assert!(out.ledger().is_none(), "filtering off: no ledger change");
        assert!(out.reply().is_none(), "filtering off: no auto-reply");
        assert!(w.store.is_empty());
        // Filtering off also means no 21610 on later sends.
        let out = w.handle(Inbound::sms(B, P1, "hello"));
        assert!(out.forwarded().is_some());
    });
}

#[test]
fn whatsapp_stop_is_forwarded_even_when_the_webhook_says_sms() {
    each_driver(|w| {
        let wa = p("whatsapp:+15551110001", "whatsapp:+15550000101");
        assert_eq!(wa.channel(), Channel::WhatsApp);
        w.sessions.open("chat-1", wa, p(B, P1)).unwrap();
        // The session knows the sender is on WhatsApp, whatever the inbound claims.
        for inbound in [
            Inbound::new("whatsapp:+15551110001", "whatsapp:+15550000101", "STOP"),
            Inbound::sms("whatsapp:+15551110001", "whatsapp:+15550000101", "STOP"),
        ] {
            let out = w.handle(inbound);
            let sent = out.forwarded().unwrap();
            assert_eq!((sent.to(), sent.channel()), (B, Channel::Sms));
            assert!(out.ledger().is_none());
            assert!(out.reply().is_none());
            assert!(out.notices().is_empty());
        }
        assert!(w.store.is_empty());
        // B's STOP over SMS is a keyword; the leg to the WhatsApp participant goes out on WhatsApp.
        let out = w.handle(Inbound::sms(B, P1, "hi"));
        assert_eq!(out.forwarded().unwrap().channel(), Channel::WhatsApp);
    });
}

#[test]
fn an_mms_stop_is_a_keyword_and_is_confirmed_by_sms() {
    each_driver(|w| {
        ride(w);
        let out = w.handle(Inbound::new(A, P1, "STOP").with_media(1));
        assert!(out.decision().is_dropped());
        assert_eq!(out.reply().unwrap().channel(), Channel::Sms);
        assert!(w.opted_out(P1, A));
    });
}

#[test]
fn a_stop_from_either_participant_is_dropped() {
    each_driver(|w| {
        ride(w);
        for who in [A, B] {
            let out = w.handle(Inbound::sms(who, P1, " StOp\n"));
            assert_eq!(out.withheld(), Some(Withheld::KeywordDropped), "{who}");
            assert_eq!(out.ledger().unwrap().key().participant(), who);
        }
    });
}

#[test]
fn out_of_session_messages_are_handed_to_the_host_and_keywords_still_apply() {
    each_driver(|w| {
        ride(w);
        let out = w.handle(Inbound::sms("+15559999999", P1, "hi, who is this?"));
        assert!(out.is_out_of_session());
        assert_eq!(out.session(), None);
        assert!(!out.fires_status_callback());
        assert!(!out.decision().fires_status_callback());
        assert!(!out.decision().calls_intercept());
        assert!(!out.intercept_called());
        assert!(out.decision().is_withheld());
        // The carrier layer acts on any message to the number.
        let out = w.handle(Inbound::sms("+15559999999", P1, "STOP"));
        assert_eq!(out.withheld(), Some(Withheld::KeywordDropped));
        assert_eq!(out.ledger().unwrap().state(), OptState::OptedOut);
    });
}

#[test]
fn a_session_with_one_participant_withholds() {
    each_driver(|w| {
        w.sessions.create("ride-1").unwrap();
        w.sessions.add_participant("ride-1", p(A, P1)).unwrap();
        let out = w.handle(Inbound::sms(A, P1, "hello"));
        assert_eq!(out.withheld(), Some(Withheld::NoCounterpart));
        assert!(!out.decision().calls_intercept());
        assert!(!out.decision().fires_status_callback());
        assert!(!out.fires_status_callback());
    });
}

#[test]
fn custom_replies_and_disabled_replies() {
    each_driver(|w| {
        w.core = RelayCore::new().with_replies(
            AutoReplies::default()
                .with(
                    Category::OptOut,
                    "Acme: you won't hear from this number again.",
                )
                .without(Category::Help),
        );
        ride(w);
        let out = w.handle(Inbound::sms(A, P1, "quit"));
        assert!(out.reply().unwrap().body().starts_with("Acme"));
        assert!(w.handle(Inbound::sms(B, P1, "help")).reply().is_none());
    });
}

#[test]
fn hook_is_not_called_for_out_of_session_or_dropped_messages() {
    struct Shared(std::sync::Arc<CustomHandling>);
    impl ProxyPolicy for Shared {
        fn intercept(&self, m: &Message<'_>, d: &Decision) -> Intercept {
            self.0.intercept(m, d)
        }
    }
    each_driver(|w| {
        let policy = std::sync::Arc::new(CustomHandling::default());
        w.policy = Box::new(Shared(policy.clone()));
        ride(w);
        let _ = w.handle(Inbound::sms("+1stranger", P1, "hi"));
        let _ = w.handle(Inbound::sms(A, P1, "STOP"));
        assert!(policy.seen.lock().unwrap().is_empty());
        let out = w.handle(Inbound::sms(B, P1, "hi"));
        assert!(out.refused().is_some() && out.intercept_called());
        let _ = w.handle(Inbound::sms(A, P1, "hi"));
        assert_eq!(policy.seen.lock().unwrap().as_slice(), &[None, None]);
    });
}

#[test]
fn mirror_mode_keeps_the_ledger_and_never_replies() {
    each_driver(|w| {
        w.core = RelayCore::new().with_mode(CarrierMode::Mirror);
        ride(w);
        for body in ["STOP", "HELP", "START", "unstop", "STOP"] {
            let out = w.handle(Inbound::sms(A, P1, body));
            assert!(out.reply().is_none(), "{body}");
            assert!(!out.effects().any(|e| matches!(e, Effect::Reply(_))));
        }
        assert!(w.opted_out(P1, A));
        // The relay withholds what the platform would refuse.
        let out = w.handle(Inbound::sms(B, P1, "there?"));
        assert!(out.refused().is_some());
        assert_eq!(out.notices(), &[Notice::UnsubscribedRecipient]);
    });
}

#[test]
fn the_platforms_opt_out_type_decides_the_ledger() {
    for mode in CarrierMode::ALL {
        each_driver(|w| {
            w.core = RelayCore::new().with_mode(mode);
            ride(w);
            // An Advanced Opt-Out keyword our tables do not know.
            let out = w.handle(Inbound::sms(A, P1, "BASTA").with_opt_out_type(Category::OptOut));
            assert_eq!(out.ledger().unwrap().state(), OptState::OptedOut);
            assert!(
                out.forwarded().is_some(),
                "not a Proxy keyword: still relayed"
            );
            assert!(w.opted_out(P1, A));
            let out = w.handle(Inbound::sms(A, P1, "ok").with_opt_out_type(Category::OptIn));
            assert_eq!(out.ledger().unwrap().state(), OptState::OptedIn);
            assert_eq!(out.reply().is_some(), mode == CarrierMode::Emulate);
        });
    }
}

#[test]
fn refused_feedback_opts_the_pair_out() {
    let core = RelayCore::new();
    let store = proxy_optout::MemoryStore::new();
    let relay = proxy_optout::Relay::new(&store).with_core(core.clone());
    let out = relay
        .feedback(&Feedback::Refused { from: P1, to: A })
        .unwrap();
    assert!(out.is_recorded());
    assert_eq!(out.effects().count(), 1, "only the notice is left to do");
    let mut w = World::new(common::drivers::Driver::Steps);
    w.store = store;
    ride(&mut w);
    assert!(w.handle(Inbound::sms(B, P1, "hi")).refused().is_some());
    // The async driver does the same.
    let store = proxy_optout::MemoryStore::new();
    let relay = proxy_optout::AsyncRelay::new(&store);
    let out =
        common::drivers::block_on(relay.feedback(&Feedback::Refused { from: P2, to: B })).unwrap();
    assert!(out.is_recorded());
    assert_eq!(
        store.snapshot(),
        vec![(P2.into(), B.into(), OptState::OptedOut)]
    );
}

#[test]
fn fixed_policy_filtering_off_means_no_carrier_layer() {
    each_driver(|w| {
        w.policy = Box::new(FixedPolicy::new(StopFilterFlag::Ignore, StopFiltering::Off));
        ride(w);
        let out = w.handle(Inbound::sms(A, P1, "STOP"));
        assert!(out.decision().is_dropped(), "flag off: Proxy still drops");
        assert!(out.ledger().is_none() && out.reply().is_none());
    });
}

#[test]
fn session_configuration_errors() {
    let mut s = Sessions::new();
    s.open("ride-1", p(A, P1), p(B, P1)).unwrap();
    assert_eq!(
        s.add_participant("ride-1", p("C", P1)),
        Err(SessionError::ThirdParticipant {
            session: "ride-1".into()
        })
    );
    assert_eq!(
        s.open("ride-2", p(A, P1), p("C", P1)),
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
        Participant::new("", P1),
        Err(IdentifierError::Empty {
            field: "identifier"
        })
    );
    assert_eq!(
        s.add_participant("nope", p("C", P1)),
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
        s.create(" ride"),
        Err(SessionError::Identifier(IdentifierError::Padded {
            field: "session id",
            value: " ride".into()
        }))
    );
    for e in [
        SessionError::Identifier(IdentifierError::Empty {
            field: "identifier",
        }),
        SessionError::ThirdParticipant {
            session: "x".into(),
        },
    ] {
        assert!(e.to_string().chars().next().unwrap().is_lowercase());
    }
}

#[test]
fn outcome_display_is_one_readable_line() {
    each_driver(|w| {
        ride(w);
        let out = w.handle(Inbound::sms(A, P1, "STOP"));
        let line = out.to_string();
        assert!(
            line.starts_with(
                "dropped [STOP]; notice 80901; ledger (+15550000101, +15551110001) opted_out; reply"
            ),
            "{line}"
        );
        assert!(line.ends_with("no callback"), "{line}");
        let out = w.handle(Inbound::sms(B, P1, "hi"));
        assert_eq!(
            out.to_string(),
            "refused +15550000101 -> +15551110001 (21610); notice 21610"
        );
        assert!(matches!(out.delivery(), Delivery::Refused(_)));
    });
}
