//! Bad input at every boundary (issue 5; §§11): odd bodies are ordinary messages (or
//! keywords, per the matching rules), bytes get a typed error with the offset, configuration
//! gets a typed error naming the value. Never a panic.

use proxy_optout::{
    classify_bytes, Category, Channel, Classifier, ConfigError, IdentifierError, Inbound,
    InputError, Matching, MemoryStore, Message, Participant, Relay, RelayError, SessionError,
    Sessions,
};

fn both() -> [(Matching, Classifier); 2] {
    [
        (Matching::Compatible, Classifier::default()),
        (
            Matching::Lenient,
            Classifier::builder()
                .matching(Matching::Lenient)
                .build()
                .unwrap(),
        ),
    ]
}

#[test]
fn odd_bodies_are_ordinary_messages_in_both_modes() {
    let control: String = (0u8..0x20)
        .filter(|b| !b"\t\n\x0b\x0c\r".contains(b))
        .map(char::from)
        .collect();
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        (
            "whitespace only",
            " \t\n\u{000B}\u{000C}\r\u{0085}\u{00A0}\u{2028}\u{3000}".into(),
        ),
        ("control characters", control),
        ("control around a keyword", "\u{0001}STOP\u{0002}".into()),
        ("NUL after a keyword", "STOP\0".into()),
        ("lone combining marks", "\u{0301}\u{0302}\u{0303}".into()),
        (
            "right-to-left marks only",
            "\u{200F}\u{200E}\u{202E}".into(),
        ),
        ("maximal code points", "\u{10FFFF}\u{10FFFE}\u{E000}".into()),
        ("surrogate neighbours", "\u{D7FF}\u{E000}".into()),
        ("mixed scripts", "S\u{0422}OP".into()), // Cyrillic TE
        ("replacement character", "ST\u{FFFD}OP".into()),
        ("long word", "STOP".repeat(100_000)),
    ];
    for (mode, c) in both() {
        for (name, body) in &cases {
            for channel in Channel::ALL {
                let d = c.classify(&Message::new(body, channel));
                assert!(d.is_forwarded(), "{mode}: {name}");
                assert_eq!(d.keyword(), None, "{mode}: {name}");
                assert_eq!(d.notice(), None, "{mode}: {name}");
            }
        }
    }
}

#[test]
fn invisible_marks_around_a_keyword_differ_by_mode_as_documented() {
    let [(_, compat), (_, lenient)] = both();
    for body in [
        "\u{200F}STOP",
        "STOP\u{200E}",
        "\u{202E}STOP\u{202C}",
        "\u{FEFF}STOP",
        "S\u{200D}TOP",
        "STO\u{00AD}P",
        "STOP\u{0301}",
    ] {
        assert!(
            compat.classify(&Message::sms(body)).is_forwarded(),
            "{body:?}"
        );
        assert!(
            lenient.classify(&Message::sms(body)).is_dropped(),
            "{body:?}"
        );
    }
}

#[test]
fn a_hundred_megabytes_of_whitespace_and_text() {
    let mut padded = "\u{3000}".repeat(20 << 20);
    padded.push_str("stop");
    padded.push_str(&"\u{00A0}".repeat(20 << 20));
    for (mode, c) in both() {
        assert!(c.classify(&Message::sms(&padded)).is_dropped(), "{mode}");
    }
    let text = "\u{0436}".repeat(50 << 20);
    for (mode, c) in both() {
        assert!(c.classify(&Message::sms(&text)).is_forwarded(), "{mode}");
    }
}

#[test]
fn bytes_get_typed_errors_with_the_offset() {
    let cases: [(&[u8], usize, Option<u8>); 7] = [
        (b"\xFF", 0, Some(0xFF)),
        (b"STOP\xC0\xAF", 4, Some(0xC0)),     // overlong encoding
        (b"ok \xED\xA0\x80", 3, Some(0xED)),  // encoded surrogate
        (b"\xF4\x90\x80\x80", 0, Some(0xF4)), // beyond U+10FFFF
        (b"STOP \xE2\x82", 5, None),          // truncated at the end
        (b"\x80STOP", 0, Some(0x80)),         // lone continuation byte
        (b"abc\xF0\x9F\x98", 3, None),
    ];
    for (bytes, offset, byte) in cases {
        let err = classify_bytes(bytes).unwrap_err();
        assert_eq!(err.offset(), offset, "{bytes:?}");
        assert_eq!(err.byte(), byte, "{bytes:?}");
        assert!(
            err.to_string().contains(&format!("offset {offset}")),
            "{err}"
        );
        let via_classifier = Classifier::default()
            .classify_bytes(bytes, Channel::Mms)
            .unwrap_err();
        assert_eq!(via_classifier, err);
    }
    assert!(classify_bytes(b"").unwrap().is_forwarded());
    assert!(classify_bytes(b"\xC2\xA0STOP").unwrap().is_dropped());
}

#[test]
fn configuration_errors_never_panic() {
    let long: &'static str = Box::leak("X".repeat(1000).into_boxed_str());
    for (word, category) in [
        ("", Category::OptOut),
        (long, Category::Help),
        ("\u{0000}", Category::OptIn),
        ("A\nB", Category::OptOut),
        ("-", Category::OptOut),
        ("\u{0301}", Category::OptOut),
        ("\u{FB06}OP", Category::OptOut),
    ] {
        let err = Classifier::builder().keyword(word, category).build();
        assert!(err.is_err(), "{word:?} must be refused");
    }
    assert!(matches!(
        Classifier::builder().remove_keyword("").build(),
        Err(ConfigError::UnknownKeyword { .. })
    ));
}

#[test]
fn session_boundaries() {
    let mut s = Sessions::new();
    assert_eq!(
        s.create(""),
        Err(SessionError::Identifier(IdentifierError::Empty {
            field: "session id"
        }))
    );
    s.create("r").unwrap();
    assert_eq!(
        Participant::new("A", ""),
        Err(IdentifierError::Empty {
            field: "proxy identifier"
        })
    );
    assert_eq!(
        Participant::new("", "P"),
        Err(IdentifierError::Empty {
            field: "identifier"
        })
    );
    s.add_participant("r", Participant::new("A", "P").unwrap())
        .unwrap();
    assert!(matches!(
        s.add_participant("r", Participant::new("A", "P").unwrap()),
        Err(SessionError::DuplicatePair { .. })
    ));
    s.add_participant("r", Participant::new("B", "P").unwrap())
        .unwrap();
    assert!(matches!(
        s.add_participant("r", Participant::new("C", "P").unwrap()),
        Err(SessionError::ThirdParticipant { .. })
    ));
    assert!(!s.close("nope"));
}

#[test]
fn the_relay_takes_any_body_and_refuses_bad_addresses_by_name() {
    let mut relay = Relay::new(MemoryStore::new());
    relay
        .sessions_mut()
        .open(
            "r",
            Participant::new("A", "P").unwrap(),
            Participant::new("B", "P").unwrap(),
        )
        .unwrap();
    for body in ["", "\u{0000}", "STOP", "\u{3000}", "\u{202E}STOP"] {
        let out = relay.handle(&Inbound::sms("A", "P", body)).unwrap();
        let _ = out.to_string();
    }
    for (from, to, field) in [
        ("", "P", "from"),
        ("A", "", "to"),
        ("A ", "P", "from"),
        ("A", "P\n", "to"),
        ("\u{0}", "P", "from"),
    ] {
        let err = relay.handle(&Inbound::sms(from, to, "STOP")).unwrap_err();
        let RelayError::Input(InputError::Identifier(e)) = &err else {
            panic!("{err}");
        };
        assert_eq!(e.field(), field);
        assert!(!err.is_retryable());
    }
    // Unusual but canonical identifiers are fine.
    for (from, to) in [("\u{10FFFF}", "P"), ("A", "\u{202E}P")] {
        let out = relay.handle(&Inbound::sms(from, to, "STOP")).unwrap();
        assert!(out.decision().is_dropped());
    }
    assert!(relay.store().len() >= 2);
}
