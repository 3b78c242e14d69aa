//! Conversations webhooks on the wire: the reference signature value, every event read field
//! for field, the errors naming the field, and the pre-event answers.

use proxy_optout::Feedback;
use proxy_optout_twilio::{
    sign, Binding, BindingKind, ConversationsError, ConversationsEvent, DeliveryStatus, Form,
    PreEventAnswer, SignatureError, Source, Validator,
};

fn zeros(prefix: &str) -> String {
    format!("{prefix}{}", "0".repeat(32))
}

/// The reference value computed with twilio-python 9.13's RequestValidator.
#[test]
fn the_reference_onmessageadd_signature_validates_with_the_messaging_validator() {
    let url = "https://example.com/conversations/pre";
    let (ac, is, ch, mb) = (zeros("AC"), zeros("IS"), zeros("CH"), zeros("MB"));
    let form = Form::from_pairs([
        ("AccountSid", ac.as_str()),
        ("Attributes", "{}"),
        ("Author", "+16505551111"),
        ("Body", "STOP"),
        ("ChatServiceSid", is.as_str()),
        ("ConversationSid", ch.as_str()),
        ("EventType", "onMessageAdd"),
        ("ParticipantSid", mb.as_str()),
        ("RetryCount", "0"),
        ("Source", "SMS"),
    ]);
    assert_eq!(sign("12345", url, &form), "m9YO2PxvAXX2wqP9oZY1nU9CuwY=");
    let v = Validator::new("12345");
    v.validate_form(url, Some("m9YO2PxvAXX2wqP9oZY1nU9CuwY="), &form)
        .unwrap();
    // The same request with the body changed, or for another URL, does not.
    let tampered = Form::from_pairs(
        form.pairs()
            .map(|(k, val)| (k, if k == "Body" { "START" } else { val })),
    );
    assert_eq!(
        v.validate_form(url, Some("m9YO2PxvAXX2wqP9oZY1nU9CuwY="), &tampered),
        Err(SignatureError::Mismatch)
    );
    let ConversationsEvent::MessageAdd(m) = ConversationsEvent::from_form(&form).unwrap() else {
        panic!("an onMessageAdd")
    };
    assert_eq!(
        (m.author, m.body, m.source),
        ("+16505551111", "STOP", Source::Sms)
    );
    assert_eq!(m.conversation_sid, ch);
    assert_eq!((m.participant_sid, m.retry_count), (Some(mb.as_str()), 0));
    assert_eq!(m.attributes, Some("{}"));
}

#[test]
fn every_event_reads_field_for_field_and_ignores_what_it_does_not_know() {
    let cases: &[(&[u8], &str)] = &[
        (b"EventType=onMessageAdd&ConversationSid=CH1&Author=web-7&Body=hi&Source=SDK&ClientIdentity=web-7&Extra=1", "message sdk"),
        (b"EventType=onConversationAdd&MessageBody=STOP&MessagingBinding.Address=%2B1A&MessagingBinding.ProxyAddress=%2B1P&RetryCount=2", "conversation"),
        (b"EventType=onParticipantRemoved&ConversationSid=CH1&ParticipantSid=MB2&Identity=web-7", "removed chat"),
        (b"EventType=onDeliveryUpdated&ConversationSid=CH1&MessageSid=IM1&ParticipantSid=MB1&Status=read", "read"),
    ];
    for (raw, what) in cases {
        let form = Form::parse(raw).unwrap();
        let event = ConversationsEvent::from_form(&form).unwrap();
        match (*what, event) {
            ("message sdk", ConversationsEvent::MessageAdd(m)) => {
                assert_eq!((m.source, m.client_identity), (Source::Sdk, Some("web-7")));
                assert!(!m.source.has_keyword_handling() && !m.has_media());
            }
            ("conversation", ConversationsEvent::ConversationAdd(c)) => {
                assert_eq!(c.message_body, Some("STOP"));
                let b = c.binding.unwrap();
                assert_eq!(
                    (b.address, b.proxy_address, b.kind),
                    ("+1A", Some("+1P"), None)
                );
                assert!(b.is_sms());
                assert_eq!(c.retry_count, 2);
            }
            ("removed chat", ConversationsEvent::ParticipantRemoved(p)) => {
                assert_eq!(
                    (p.participant_sid, p.identity, p.binding),
                    ("MB2", Some("web-7"), None)
                );
            }
            ("read", ConversationsEvent::DeliveryUpdated(d)) => {
                assert_eq!(
                    (d.status, d.error_code, d.is_unsubscribed()),
                    (DeliveryStatus::Read, None, false)
                );
            }
            (what, other) => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn errors_name_the_field() {
    let cases: &[(&[u8], ConversationsError)] = &[
        (b"Body=hi", ConversationsError::Missing { field: "EventType" }),
        (b"EventType=onMessageAdd&ConversationSid=CH1", ConversationsError::Missing { field: "Author" }),
        (b"EventType=onParticipantAdded&ConversationSid=CH1", ConversationsError::Missing { field: "ParticipantSid" }),
        (b"EventType=onDeliveryUpdated&ConversationSid=CH1&MessageSid=IM1&ParticipantSid=MB1", ConversationsError::Missing { field: "Status" }),
        (
            b"EventType=onDeliveryUpdated&ConversationSid=CH1&MessageSid=IM1&ParticipantSid=MB1&Status=failed&ErrorCode=21610x",
            ConversationsError::Invalid { field: "ErrorCode", value: "21610x".into(), expected: "a number" },
        ),
        (
            b"EventType=onMessageAdd&ConversationSid=CH1&Author=a&RetryCount=-1",
            ConversationsError::Invalid { field: "RetryCount", value: "-1".into(), expected: "a number" },
        ),
    ];
    for (raw, want) in cases {
        let form = Form::parse(raw).unwrap();
        let got = ConversationsEvent::from_form(&form).unwrap_err();
        assert_eq!(&got, want, "{}", String::from_utf8_lossy(raw));
        assert!(got.to_string().contains(match want {
            ConversationsError::Missing { field } | ConversationsError::Invalid { field, .. } =>
                field,
            _ => unreachable!(),
        }));
    }
}

#[test]
fn a_21610_receipt_becomes_ledger_feedback_for_the_recipients_binding() {
    let form = Form::parse(b"EventType=onDeliveryUpdated&ConversationSid=CH1&MessageSid=IM1&ParticipantSid=MB1&ChannelMessageSid=SM9&Status=undelivered&ErrorCode=21610").unwrap();
    let ConversationsEvent::DeliveryUpdated(d) = ConversationsEvent::from_form(&form).unwrap()
    else {
        panic!()
    };
    let sms = Binding {
        address: "+1A",
        proxy_address: Some("+1P"),
        projected_address: None,
        kind: Some(BindingKind::Sms),
    };
    assert_eq!(
        d.feedback(&sms),
        Some(Feedback::Refused {
            from: "+1P",
            to: "+1A"
        })
    );
    // A binding without a proxy address (projected group MMS) gives the ledger no key.
    let projected = Binding {
        proxy_address: None,
        projected_address: Some("+1G"),
        ..sms
    };
    assert_eq!(d.feedback(&projected), None);
}

#[test]
fn pre_event_answers_say_publish_modify_or_reject() {
    let cases = [
        (PreEventAnswer::Publish, 200, Some("application/json"), "{}"),
        (
            PreEventAnswer::PublishModified {
                body: Some("hi \"there\""),
                author: Some("a"),
                attributes: Some("{\"x\":1}"),
            },
            200,
            Some("application/json"),
            r#"{"attributes":"{\"x\":1}","author":"a","body":"hi \"there\""}"#,
        ),
        (PreEventAnswer::Reject { status: 403 }, 403, None, ""),
        (PreEventAnswer::Reject { status: 500 }, 500, None, ""),
    ];
    for (answer, status, content_type, body) in cases {
        assert_eq!(
            (answer.status(), answer.content_type()),
            (status, content_type),
            "{answer}"
        );
        let got = answer.body();
        if body.starts_with('{') {
            let a: serde_json::Value = serde_json::from_str(&got).unwrap();
            let b: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(a, b);
        } else {
            assert_eq!(got, body);
        }
    }
}
