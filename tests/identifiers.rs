//! Bad identifiers at every entry point (issue 8): each is refused with a typed error that
//! names the field and the value, and nothing is written.

mod common;

use common::drivers::block_on;
use proxy_optout::{
    AsyncRelay, Feedback, FeedbackError, IdentifierError, Inbound, InputError, LedgerScope,
    MemoryStore, Participant, Relay, RelayCore, RelayError, Route, SessionError, Sessions,
    Settings, MAX_IDENTIFIER_BYTES,
};

/// (value, what the error must be)
fn bad() -> Vec<(String, &'static str)> {
    vec![
        (String::new(), "empty"),
        (" +15551110001".into(), "padded"),
        ("+15551110001 ".into(), "padded"),
        ("+15551110001\u{00A0}".into(), "padded"),
        ("\u{2003}whatsapp:+1".into(), "padded"),
        ("+1555\n1110001".into(), "control"),
        ("+1555\u{0}".into(), "control"),
        ("+1555\u{7F}".into(), "control"),
        ("+1555\u{9C}".into(), "control"),
        ("9".repeat(MAX_IDENTIFIER_BYTES + 1), "long"),
        ("é".repeat(MAX_IDENTIFIER_BYTES / 2 + 1), "long"),
    ]
}

fn check(err: &IdentifierError, field: &str, value: &str, kind: &str) {
    assert_eq!(err.field(), field, "{value:?}");
    let got = match err {
        IdentifierError::Empty { .. } => "empty",
        IdentifierError::Padded { value: v, .. } => {
            assert_eq!(v, value);
            "padded"
        }
        IdentifierError::Control { value: v, .. } => {
            assert_eq!(v, value);
            "control"
        }
        IdentifierError::TooLong { len, .. } => {
            assert_eq!(*len, value.len());
            "long"
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(got, kind, "{value:?}");
    let text = err.to_string();
    assert!(text.starts_with(field), "{text}");
    if kind != "long" && kind != "empty" {
        assert!(text.contains(&format!("{value:?}")), "{text}");
    }
}

fn input(err: RelayError<std::convert::Infallible>) -> IdentifierError {
    assert!(!err.is_retryable());
    match err {
        RelayError::Input(InputError::Identifier(e)) => e,
        other => panic!("{other}"),
    }
}

#[test]
fn participants_sessions_and_routes() {
    let ok = Participant::new("+1A", "+1P").unwrap();
    for (v, kind) in bad() {
        check(
            &Participant::new(v.as_str(), "+1P").unwrap_err(),
            "identifier",
            &v,
            kind,
        );
        check(
            &Participant::new("+1A", v.as_str()).unwrap_err(),
            "proxy identifier",
            &v,
            kind,
        );
        let mut s = Sessions::new();
        match s.create(&v).unwrap_err() {
            SessionError::Identifier(e) => check(&e, "session id", &v, kind),
            other => panic!("{other}"),
        }
        assert!(s.is_empty());
        match Route::new(&v, &ok, None).unwrap_err() {
            SessionError::Identifier(e) => check(&e, "session id", &v, kind),
            other => panic!("{other}"),
        }
    }
}

#[test]
fn inbound_messages_through_every_driver() {
    let core = RelayCore::new();
    let store = MemoryStore::new();
    let relay = Relay::new(&store);
    let async_relay = AsyncRelay::new(&store);
    for (v, kind) in bad() {
        let cases = [
            (Inbound::sms(&v, "+1P", "STOP"), "from"),
            (Inbound::sms("+1A", &v, "STOP"), "to"),
            (
                Inbound::sms("+1A", "+1P", "STOP").with_message_id(&v),
                "message id",
            ),
        ];
        for (inbound, field) in cases {
            let e = core.plan(&inbound, None, Settings::default()).unwrap_err();
            let InputError::Identifier(e) = e else {
                panic!("{e}")
            };
            check(&e, field, &v, kind);
            check(&inbound.validate().unwrap_err(), field, &v, kind);
            check(&input(relay.handle(&inbound).unwrap_err()), field, &v, kind);
            check(
                &input(block_on(async_relay.handle(&inbound, None)).unwrap_err()),
                field,
                &v,
                kind,
            );
        }
    }
    assert!(
        store.is_empty(),
        "nothing was recorded for a refused message"
    );
}

#[test]
fn feedback_and_scopes() {
    let store = MemoryStore::new();
    let relay = Relay::new(&store);
    for (v, kind) in bad() {
        for (fb, field) in [
            (
                Feedback::Refused {
                    from: &v,
                    to: "+1A",
                },
                "from",
            ),
            (
                Feedback::Refused {
                    from: "+1P",
                    to: &v,
                },
                "to",
            ),
        ] {
            check(
                &RelayCore::new().feedback(&fb).unwrap_err(),
                field,
                &v,
                kind,
            );
            match relay.feedback(&fb).unwrap_err() {
                FeedbackError::Input(e) => check(&e, field, &v, kind),
                other => panic!("{other}"),
            }
        }
        check(
            &LedgerScope::service(&v).unwrap_err(),
            "service id",
            &v,
            kind,
        );
        let scope = LedgerScope::Service(v.clone());
        check(&scope.validate().unwrap_err(), "service id", &v, kind);
        check(
            &RelayCore::new().with_scope(scope.clone()).unwrap_err(),
            "service id",
            &v,
            kind,
        );
        check(
            &Relay::new(MemoryStore::new())
                .with_scope(scope.clone())
                .unwrap_err(),
            "service id",
            &v,
            kind,
        );
        check(
            &AsyncRelay::new(MemoryStore::new())
                .with_scope(scope)
                .unwrap_err(),
            "service id",
            &v,
            kind,
        );
    }
    assert!(store.is_empty());
}

#[test]
fn a_route_for_another_pair_is_refused() {
    let (a, b) = (
        Participant::new("+1A", "+1P").unwrap(),
        Participant::new("+1B", "+1P").unwrap(),
    );
    let route = Route::new("ride", &b, Some(&a)).unwrap();
    let core = RelayCore::new();
    let err = core
        .plan(
            &Inbound::sms("+1A", "+1P", "hi"),
            Some(route),
            Settings::default(),
        )
        .unwrap_err();
    assert!(matches!(err, InputError::RouteMismatch { .. }), "{err}");
    assert!(err.to_string().contains("\"+1B\""));
}

#[test]
fn canonical_identifiers_at_the_limits_are_accepted() {
    let long = "9".repeat(MAX_IDENTIFIER_BYTES);
    let wide = "é".repeat(MAX_IDENTIFIER_BYTES / 2);
    for v in [
        long.as_str(),
        wide.as_str(),
        "whatsapp:+15551110001",
        "messenger:1234",
        "a b",
    ] {
        let p = Participant::new(v, v).unwrap();
        assert_eq!(p.identifier(), v);
        let store = MemoryStore::new();
        let relay = Relay::new(&store);
        let out = relay
            .handle(&Inbound::sms(v, "+1P", "STOP").with_message_id(v))
            .unwrap();
        assert_eq!(out.message_id(), Some(v));
        assert_eq!(store.len(), 1);
    }
}
