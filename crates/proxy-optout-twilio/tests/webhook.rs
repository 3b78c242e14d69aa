//! The inbound webhook, status callbacks and REST answers, as Twilio sends them.

use proxy_optout::{Category, Channel, Feedback, Inbound, MemoryStore, Participant, Relay};
use proxy_optout_twilio::{
    feedback_from_send, Form, FormError, InboundMessage, RestError, SendRequest, StatusCallback,
    WebhookError, MAX_FORM_BYTES,
};

/// A real-shaped inbound SMS webhook, with the parameters Twilio adds.
const SMS: &[u8] = b"ToCountry=US&ToState=CA&SmsMessageSid=SM11&NumMedia=0&ToCity=&FromZip=94105\
&SmsSid=SM11&FromState=CA&SmsStatus=received&FromCity=SAN+FRANCISCO&Body=+Stop%0A&FromCountry=US\
&To=%2B14155550100&ToZip=&NumSegments=1&MessageSid=SM11&AccountSid=AC1&From=%2B14155550111\
&ApiVersion=2010-04-01&SomethingNew=1";

#[test]
fn an_sms_webhook() {
    let form = Form::parse(SMS).unwrap();
    let m = InboundMessage::from_form(&form).unwrap();
    assert_eq!((m.from(), m.to()), ("+14155550111", "+14155550100"));
    assert_eq!(m.body(), " Stop\n", "nothing trimmed");
    assert_eq!(m.message_sid(), Some("SM11"));
    assert_eq!(m.account_sid(), Some("AC1"));
    assert_eq!(form.get("ToCity"), Some(""), "empty values kept");
    assert_eq!(
        form.get("SomethingNew"),
        Some("1"),
        "unknown parameters kept"
    );
    let inbound = m.inbound();
    assert_eq!(inbound.channel(), Channel::Sms);
    assert_eq!(inbound.message_id(), Some("SM11"));
    let out = Relay::new(MemoryStore::new())
        .handle(&inbound)
        .map(|o| o.decision().is_dropped());
    assert!(out.unwrap());
}

#[test]
fn channels_media_and_opt_out_type() {
    let cases: [(&[u8], Channel, Option<Category>); 5] = [
        (
            b"From=whatsapp%3A%2B1&To=whatsapp%3A%2B2&Body=STOP",
            Channel::WhatsApp,
            None,
        ),
        (
            b"From=messenger%3A42&To=messenger%3A7&Body=hi",
            Channel::Messenger,
            None,
        ),
        (
            b"From=%2B1&To=%2B2&Body=&NumMedia=2&MediaUrl0=x&MediaUrl1=y",
            Channel::Mms,
            None,
        ),
        (
            b"From=%2B1&To=%2B2&Body=BASTA&OptOutType=STOP",
            Channel::Sms,
            Some(Category::OptOut),
        ),
        (b"From=%2B1&To=%2B2&Body=hi&OptOutType=", Channel::Sms, None),
    ];
    for (raw, channel, verdict) in cases {
        let form = Form::parse(raw).unwrap();
        let inbound: Inbound<'_> = InboundMessage::from_form(&form).unwrap().inbound();
        assert_eq!(
            inbound.channel(),
            channel,
            "{}",
            String::from_utf8_lossy(raw)
        );
        assert_eq!(inbound.opt_out_type(), verdict);
    }
}

#[test]
fn bad_webhooks_are_typed_errors() {
    let cases: [(&[u8], WebhookError); 4] = [
        (b"To=%2B2&Body=hi", WebhookError::Missing { field: "From" }),
        (b"From=%2B1&Body=hi", WebhookError::Missing { field: "To" }),
        (
            b"From=%2B1&To=%2B2&NumMedia=-1",
            WebhookError::NotANumber {
                field: "NumMedia",
                value: "-1".into(),
            },
        ),
        (
            b"From=%2B1&To=%2B2&OptOutType=QUIT",
            WebhookError::OptOutType {
                value: "QUIT".into(),
            },
        ),
    ];
    for (raw, err) in cases {
        let form = Form::parse(raw).unwrap();
        assert_eq!(InboundMessage::from_form(&form).unwrap_err(), err);
    }
    // Bytes that never become a form.
    assert_eq!(
        Form::parse(b"Body=%F"),
        Err(FormError::InvalidPercent { offset: 5 })
    );
    assert_eq!(
        Form::parse(b"Body=%FF"),
        Err(FormError::InvalidUtf8 { offset: 5 })
    );
    assert_eq!(
        Form::parse(b"Bo\xFFdy=x"),
        Err(FormError::InvalidUtf8 { offset: 0 })
    );
    let huge = format!("Body={}", "a".repeat(MAX_FORM_BYTES));
    assert!(matches!(
        Form::parse(huge.as_bytes()),
        Err(FormError::TooLarge { .. })
    ));
    // The longest real body (1,600 four-byte characters, percent-encoded) fits.
    let longest = format!("From=%2B1&To=%2B2&Body={}", "%F0%9F%9B%91".repeat(1600));
    assert!(longest.len() < MAX_FORM_BYTES);
    let form = Form::parse(longest.as_bytes()).unwrap();
    assert_eq!(
        InboundMessage::from_form(&form)
            .unwrap()
            .body()
            .chars()
            .count(),
        1600
    );
}

#[test]
fn status_callbacks_with_21610_become_feedback() {
    let cases: [(&[u8], Option<Feedback<'static>>); 5] = [
        (
            b"MessageStatus=failed&ErrorCode=21610&From=%2B1P&To=%2B1A",
            Some(Feedback::Refused {
                from: "+1P",
                to: "+1A",
            }),
        ),
        (
            b"MessageStatus=undelivered&ErrorCode=21610&From=%2B1P&To=%2B1A",
            Some(Feedback::Refused {
                from: "+1P",
                to: "+1A",
            }),
        ),
        (
            b"MessageStatus=delivered&ErrorCode=21610&From=%2B1P&To=%2B1A",
            None,
        ),
        (
            b"MessageStatus=failed&ErrorCode=30006&From=%2B1P&To=%2B1A",
            None,
        ),
        (b"MessageStatus=failed&ErrorCode=&From=%2B1P&To=%2B1A", None),
    ];
    for (raw, want) in cases {
        let form = Form::parse(raw).unwrap();
        let cb = StatusCallback::from_form(&form).unwrap();
        assert_eq!(cb.feedback(), want, "{}", String::from_utf8_lossy(raw));
    }
    let form = Form::parse(b"MessageStatus=failed&ErrorCode=abc").unwrap();
    assert!(StatusCallback::from_form(&form).is_err());
    let form = Form::parse(b"ErrorCode=21610").unwrap();
    assert_eq!(
        StatusCallback::from_form(&form).unwrap_err(),
        WebhookError::Missing {
            field: "MessageStatus"
        }
    );
}

#[test]
fn a_400_with_21610_feeds_the_ledger_and_the_next_forward_is_refused() {
    let mut relay = Relay::new(MemoryStore::new());
    relay
        .sessions_mut()
        .open(
            "r",
            Participant::new("+1A", "+1P").unwrap(),
            Participant::new("+1B", "+1P").unwrap(),
        )
        .unwrap();
    let out = relay.handle(&Inbound::sms("+1A", "+1P", "hi")).unwrap();
    let sent = out.forwarded().unwrap().clone().into_owned();
    assert_eq!(
        SendRequest::new(&sent).fields(),
        vec![("To", "+1B"), ("From", "+1P"), ("Body", "hi")]
    );
    let body = br#"{"code": 21610, "message": "Attempt to send to unsubscribed recipient", "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}"#;
    assert_eq!(RestError::parse(body).unwrap().code, 21610);
    assert_eq!(
        feedback_from_send(&sent, 500, body),
        None,
        "only a 400 refuses"
    );
    assert_eq!(feedback_from_send(&sent, 400, br#"{"code": 21211}"#), None);
    assert_eq!(feedback_from_send(&sent, 400, b"not json"), None);
    let feedback = feedback_from_send(&sent, 400, body).unwrap();
    assert!(relay.feedback(&feedback).unwrap().is_recorded());
    let out = relay
        .handle(&Inbound::sms("+1A", "+1P", "still there?"))
        .unwrap();
    assert_eq!(out.refused().unwrap().to(), "+1B");
}
