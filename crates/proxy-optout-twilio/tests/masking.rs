//! Proxy's opt-out rules on Conversations, through the relay: what an SMS participant's
//! keyword, a WhatsApp participant's, a chat author's message and a 21610 receipt come to.

use proxy_optout::{
    CarrierMode, Classifier, Decision, FixedPolicy, Intercept, LedgerKey, MemoryStore, Message,
    Notice, OptOutStore, OptState, ProxyPolicy, Relay, RelayCore, StopFilterFlag, StopFiltering,
};
use proxy_optout_twilio::{
    answer_for, answer_without_binding, opted_out, Binding, BindingCache, BindingKind,
    BindingStore, CachedBinding, ConversationRoute, ConversationsEvent, Form, PreEventAnswer,
};

const SMS: Binding<'static> = Binding {
    address: "+16505551111",
    proxy_address: Some("+15550000100"),
    projected_address: None,
    kind: Some(BindingKind::Sms),
};

fn message_add(author: &str, body: &str, source: &str) -> Form<'static> {
    Form::from_pairs([
        ("EventType", "onMessageAdd"),
        ("ConversationSid", "CH00000000000000000000000000000001"),
        ("Author", author),
        ("Body", body),
        ("Source", source),
        ("ParticipantSid", "MB00000000000000000000000000000001"),
        ("RetryCount", "0"),
    ])
}

/// One SMS participant's message through a relay: the answer, the notices, the ledger change
/// and whether a confirmation text is due.
fn relay_sms<P: ProxyPolicy>(
    relay: &Relay<MemoryStore, P>,
    binding: &Binding<'_>,
    body: &str,
) -> (PreEventAnswer<'static>, Vec<Notice>, Option<OptState>, bool) {
    let form = message_add(binding.address, body, "SMS");
    let ConversationsEvent::MessageAdd(m) = ConversationsEvent::from_form(&form).unwrap() else {
        panic!("an onMessageAdd")
    };
    let route = ConversationRoute::new(m.conversation_sid, binding).unwrap();
    let out = relay
        .handle_routed(&route.inbound(&m), Some(route.route()))
        .unwrap();
    (
        answer_for(&out, 403),
        out.notices().to_vec(),
        out.ledger().map(|c| c.state()),
        out.reply().is_some(),
    )
}

#[test]
fn an_sms_participants_keywords_get_the_answer_proxy_would_give() {
    let relay = Relay::new(MemoryStore::new());
    let reject = PreEventAnswer::Reject { status: 403 };
    // (body, answer, notices, ledger, confirmation) in Emulate mode.
    let cases = [
        (
            "STOP",
            reject,
            vec![Notice::MessageMatchedStopWord],
            Some(OptState::OptedOut),
            true,
        ),
        (
            "unsubscribe",
            reject,
            vec![Notice::MessageMatchedStopWord],
            Some(OptState::OptedOut),
            true,
        ),
        (
            "UNSTOP",
            reject,
            vec![Notice::MessageMatchedStopWord],
            Some(OptState::OptedIn),
            true,
        ),
        (
            "START",
            PreEventAnswer::Publish,
            vec![],
            Some(OptState::OptedIn),
            true,
        ),
        ("HELP", PreEventAnswer::Publish, vec![], None, true),
        (
            "ARRET",
            reject,
            vec![Notice::MessageMatchedStopWord],
            None,
            false,
        ),
        (
            "stop at the corner",
            PreEventAnswer::Publish,
            vec![],
            None,
            false,
        ),
        ("on my way", PreEventAnswer::Publish, vec![], None, false),
    ];
    for (body, answer, notices, ledger, reply) in cases {
        assert_eq!(
            relay_sms(&relay, &SMS, body),
            (answer, notices, ledger, reply),
            "{body}"
        );
    }
    // The ledger is keyed by the binding: (proxy address, address), not the conversation.
    relay_sms(&relay, &SMS, "STOP");
    assert_eq!(
        relay
            .store()
            .state(LedgerKey::new("+15550000100", "+16505551111"))
            .unwrap(),
        OptState::OptedOut
    );
    // The same person through another proxy number is a separate pair, as in Proxy.
    let other = Binding {
        proxy_address: Some("+15550000101"),
        ..SMS
    };
    assert_eq!(
        relay_sms(&relay, &other, "hello").0,
        PreEventAnswer::Publish
    );
    assert_eq!(
        relay
            .store()
            .state(LedgerKey::new("+15550000101", SMS.address))
            .unwrap(),
        OptState::OptedIn
    );
}

#[test]
fn mirror_mode_records_but_never_confirms_twilio_already_does() {
    let relay = Relay::new(MemoryStore::new()).with_mode(CarrierMode::Mirror);
    let (answer, _, ledger, reply) = relay_sms(&relay, &SMS, "STOP");
    assert_eq!(
        (answer.status(), ledger, reply),
        (403, Some(OptState::OptedOut), false)
    );
}

#[test]
fn whatsapp_participants_pass_keywords_through() {
    let relay = Relay::new(MemoryStore::new());
    let wa = Binding {
        address: "whatsapp:+16505551111",
        proxy_address: Some("whatsapp:+15550000100"),
        projected_address: None,
        kind: Some(BindingKind::WhatsApp),
    };
    assert_eq!(
        relay_sms(&relay, &wa, "STOP"),
        (PreEventAnswer::Publish, vec![], None, false)
    );
}

/// A hook that blocks whatever mentions a phone number.
struct NoNumbers;
impl ProxyPolicy for NoNumbers {
    fn intercept(&self, message: &Message<'_>, _: &Decision) -> Intercept {
        if message.body().contains("555-") {
            Intercept::Block
        } else {
            Intercept::Allow
        }
    }
}

#[test]
fn the_intercept_hook_can_reject_but_never_publish_a_keyword() {
    let relay = Relay::new(MemoryStore::new()).with_policy(NoNumbers);
    let (answer, notices, _, _) = relay_sms(&relay, &SMS, "call me at 555-0100");
    assert_eq!(
        (answer.status(), notices),
        (403, vec![Notice::InboundContactRejected])
    );
    assert_eq!(
        relay_sms(&relay, &SMS, "see you").0,
        PreEventAnswer::Publish
    );
    // With the account flag on and STOP filtering off (SPEC §6), keywords reach the hook.
    let relay = Relay::new(MemoryStore::new()).with_policy(FixedPolicy::new(
        StopFilterFlag::Respect,
        StopFiltering::Off,
    ));
    let (answer, notices, ledger, _) = relay_sms(&relay, &SMS, "STOP");
    assert_eq!(
        (answer, notices, ledger),
        (PreEventAnswer::Publish, vec![], None)
    );
}

#[test]
fn without_the_binding_a_keyword_is_still_rejected() {
    let classifier = Classifier::default();
    for (body, source, rejected) in [
        ("STOP", "SMS", true),
        (" stop\n", "SMS", true),
        ("hello", "SMS", false),
        ("STOP", "SDK", false),
        ("STOP", "WHATSAPP", false),
    ] {
        let form = message_add("+16505551111", body, source);
        let ConversationsEvent::MessageAdd(m) = ConversationsEvent::from_form(&form).unwrap()
        else {
            panic!()
        };
        let (answer, decision) = answer_without_binding(&classifier, &m, 403);
        assert_eq!(answer.status() == 403, rejected, "{body:?} from {source}");
        assert_eq!(decision.is_dropped(), rejected);
    }
}

#[test]
fn a_chat_authors_message_names_the_sms_participants_who_opted_out() {
    let core = RelayCore::new();
    let store = MemoryStore::new();
    let cache = BindingCache::new();
    let ch = "CH00000000000000000000000000000001";
    // The participant webhooks fill the cache.
    for raw in [
        &b"EventType=onParticipantAdded&ConversationSid=CH00000000000000000000000000000001&ParticipantSid=MB1&MessagingBinding.Address=%2B16505551111&MessagingBinding.ProxyAddress=%2B15550000100&MessagingBinding.Type=sms"[..],
        b"EventType=onParticipantAdded&ConversationSid=CH00000000000000000000000000000001&ParticipantSid=MB2&MessagingBinding.Address=%2B16505552222&MessagingBinding.ProxyAddress=%2B15550000100&MessagingBinding.Type=sms",
        b"EventType=onParticipantAdded&ConversationSid=CH00000000000000000000000000000001&ParticipantSid=MB3&Identity=driver-7",
    ] {
        let form = Form::parse(raw).unwrap();
        if let ConversationsEvent::ParticipantAdded(p) = ConversationsEvent::from_form(&form).unwrap() {
            if let Some(b) = p.binding {
                cache.added(p.conversation_sid, p.participant_sid, &CachedBinding::from(&b)).unwrap();
            }
        }
    }
    store
        .record(
            LedgerKey::new("+15550000100", "+16505551111"),
            OptState::OptedOut,
        )
        .unwrap();
    let kept = cache.bindings(ch).unwrap();
    let bindings: Vec<Binding<'_>> = kept.iter().map(CachedBinding::as_binding).collect();
    let out = opted_out(&core, &bindings, |k| store.state(k)).unwrap();
    assert_eq!(
        out.iter().map(|b| b.address).collect::<Vec<_>>(),
        ["+16505551111"]
    );
    // The one who left is not asked about.
    cache.removed(ch, "MB1").unwrap();
    let kept = cache.bindings(ch).unwrap();
    let bindings: Vec<Binding<'_>> = kept.iter().map(CachedBinding::as_binding).collect();
    assert!(opted_out(&core, &bindings, |k| store.state(k))
        .unwrap()
        .is_empty());
}

#[test]
fn a_21610_receipt_opts_the_recipient_out_through_the_relay() {
    let relay = Relay::new(MemoryStore::new());
    let cache = BindingCache::new();
    cache
        .added("CH1", "MB1", &CachedBinding::from(&SMS))
        .unwrap();
    let form = Form::parse(b"EventType=onDeliveryUpdated&ConversationSid=CH1&MessageSid=IM1&ParticipantSid=MB1&ChannelMessageSid=SM1&Status=failed&ErrorCode=21610").unwrap();
    let ConversationsEvent::DeliveryUpdated(d) = ConversationsEvent::from_form(&form).unwrap()
    else {
        panic!()
    };
    let kept = cache
        .binding(d.conversation_sid, d.participant_sid)
        .unwrap()
        .unwrap();
    let feedback = d.feedback(&kept.as_binding()).unwrap();
    assert!(relay.feedback(&feedback).unwrap().is_recorded());
    assert_eq!(
        relay
            .store()
            .state(LedgerKey::new("+15550000100", "+16505551111"))
            .unwrap(),
        OptState::OptedOut
    );
}

#[test]
fn the_first_message_of_an_auto_created_conversation_is_classified_too() {
    let relay = Relay::new(MemoryStore::new());
    let form = Form::parse(b"EventType=onConversationAdd&MessageBody=STOP&MessagingBinding.Address=%2B16505551111&MessagingBinding.ProxyAddress=%2B15550000100").unwrap();
    let ConversationsEvent::ConversationAdd(c) = ConversationsEvent::from_form(&form).unwrap()
    else {
        panic!()
    };
    let route = ConversationRoute::new("pending-conversation", &c.binding.unwrap()).unwrap();
    let out = relay
        .handle_routed(&route.first_message(&c), Some(route.route()))
        .unwrap();
    // Rejecting it drops the conversation too; the next non-keyword message creates it.
    assert_eq!(answer_for(&out, 403).status(), 403);
    assert_eq!(out.ledger().unwrap().state(), OptState::OptedOut);
}
