//! Named, table-driven cases per SPEC section. Expected values are typed from the spec,
//! never read from the crate's own tables.

mod common;

use common::*;
use proxy_optout::{
    classify, Action, Category, Channel, Classifier, Decision, FixedPolicy, Intercept,
    LanguagePack, Matching, Message, Notice, ProxyPolicy, RuleSet, StopFilterFlag, StopFiltering,
};

fn with(rules: RuleSet, matching: Matching) -> Classifier {
    Classifier::builder()
        .rules(rules)
        .matching(matching)
        .build()
        .unwrap()
}

/// Case variants of a word: as written, lower, title, alternating.
fn case_variants(word: &str) -> Vec<String> {
    let lower = word.to_lowercase();
    let mut title = lower.clone();
    title[..1].make_ascii_uppercase();
    let alternating: String = word
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect();
    vec![word.to_string(), lower, title, alternating]
}

fn assert_keyword(c: &Classifier, body: &str, row: &Row, ctx: &str) {
    let d = c.classify(&Message::sms(body));
    let (word, category, dropped, carrier, _) = *row;
    assert_eq!(d.keyword(), Some(word), "{ctx}: keyword of {body:?}");
    assert_eq!(d.category(), Some(category), "{ctx}: category of {body:?}");
    assert_eq!(d.is_dropped(), dropped, "{ctx}: drop of {body:?}");
    assert_eq!(d.is_forwarded(), !dropped, "{ctx}: forward of {body:?}");
    assert_eq!(d.carrier(), carrier, "{ctx}: carrier of {body:?}");
    let notice = dropped.then_some(Notice::MessageMatchedStopWord);
    assert_eq!(d.notice(), notice, "{ctx}: notice of {body:?}");
    assert_eq!(
        d.fires_callbacks(),
        !dropped,
        "{ctx}: callbacks of {body:?}"
    );
    assert_eq!(
        d.calls_intercept(),
        !dropped,
        "{ctx}: intercept of {body:?}"
    );
}

fn assert_forward(c: &Classifier, body: &str, ctx: &str) {
    let d = c.classify(&Message::sms(body));
    assert_eq!(
        d.action(),
        Action::Forward,
        "{ctx}: {body:?} must be forwarded"
    );
    assert_eq!(d.keyword(), None, "{ctx}: {body:?} is not a keyword");
    assert_eq!(d.category(), None, "{ctx}: {body:?} has no category");
    assert_eq!(d.carrier(), None, "{ctx}: {body:?} has no carrier effect");
    assert_eq!(d.notice(), None, "{ctx}: {body:?} raises no notice");
    assert!(d.fires_callbacks(), "{ctx}: {body:?} fires callbacks");
}

/// §§2: every keyword of each rule set, in each case variant, in both matching modes.
mod section_2 {
    use super::*;

    fn check(category: Category) {
        for &(rules, matching, ref c) in classifiers() {
            for row in rows(rules).filter(|r| r.1 == category) {
                for body in case_variants(row.0) {
                    assert_keyword(c, &body, row, &format!("{rules}/{matching}"));
                }
            }
        }
    }

    #[test]
    fn opt_out() {
        check(Category::OptOut);
    }

    #[test]
    fn opt_in() {
        check(Category::OptIn);
    }

    #[test]
    fn help() {
        check(Category::Help);
    }

    #[test]
    fn rule_set_sizes_and_membership() {
        for rules in RuleSet::ALL {
            let ours: Vec<_> = rules.keywords().map(|k| k.word()).collect();
            let spec: Vec<_> = rows(rules).map(|r| r.0).collect();
            assert_eq!(ours, spec, "{rules}");
        }
        assert_eq!(RuleSet::Proxy2020.keywords().count(), 15);
        assert_eq!(RuleSet::Proxy2025.keywords().count(), 17);
    }

    #[test]
    fn revoke_and_optout_only_in_proxy_2025() {
        let old = with(RuleSet::Proxy2020, Matching::Compatible);
        for word in ["REVOKE", "OPTOUT", "revoke", "OptOut"] {
            assert_forward(&old, word, "proxy-2020");
            assert!(
                classify(&Message::sms(word)).is_dropped(),
                "{word} in proxy-2025"
            );
        }
    }

    #[test]
    fn proxy_only_words_have_no_carrier_effect() {
        for word in ["ARRET", "ARRETE", "ARRETT", "DEBUT"] {
            let d = classify(&Message::sms(word));
            assert!(d.category().is_some(), "{word} is a Proxy keyword");
            assert_eq!(d.carrier(), None, "{word} is not a carrier keyword");
            assert_eq!(d.opt_out_type(), None, "{word}");
        }
    }

    #[test]
    fn opt_out_type_labels() {
        for (word, label) in [
            ("stop", "STOP"),
            ("unstop", "START"),
            ("yes", "START"),
            ("info", "HELP"),
        ] {
            assert_eq!(
                classify(&Message::sms(word)).opt_out_type(),
                Some(label),
                "{word}"
            );
        }
    }

    #[test]
    fn multi_word_forms_are_not_keywords_in_compatible_matching() {
        for body in ["STOP ALL", "OPT OUT", "opt-out", "UN STOP"] {
            assert_forward(&Classifier::default(), body, "compatible");
        }
    }
}

/// §§3: what matching trims, folds, and refuses.
mod section_3 {
    use super::*;

    #[test]
    fn whitespace() {
        let stop = &SPEC_TABLE[0];
        for &(rules, matching, ref c) in classifiers() {
            let ctx = format!("{rules}/{matching}");
            for ws in WHITE_SPACE {
                for body in [
                    format!("{ws}STOP"),
                    format!("STOP{ws}"),
                    format!("{ws}{ws}stop{ws}{ws}{ws}"),
                ] {
                    assert_keyword(c, &body, stop, &ctx);
                }
            }
            for body in [
                "  Stop \n",
                "stop\u{00A0}",
                "\u{000B}stop",
                "\u{3000}STOP\u{3000}",
                "\r\nSTOP\r\n",
            ] {
                assert_keyword(c, body, stop, &ctx);
            }
        }
    }

    #[test]
    fn unicode_case_folding() {
        let c = Classifier::default();
        let cases = [
            ("\u{017F}top", "STOP"),     // long s
            ("\u{FB06}op", "STOP"),      // st ligature
            ("\u{FB05}OP", "STOP"),      // long-s-t ligature
            ("revo\u{212A}e", "REVOKE"), // Kelvin sign
            ("\u{017F}TOP\u{017F}", ""), // not a keyword: STOPS
            ("un\u{017F}ub\u{017F}cribe", "UNSUBSCRIBE"),
            ("\u{FB01}nish", ""),
        ];
        for (body, word) in cases {
            let d = c.classify(&Message::sms(body));
            let expect = (!word.is_empty()).then_some(word);
            assert_eq!(d.keyword(), expect, "{body:?}");
        }
    }

    #[test]
    fn near_misses() {
        let compat = Classifier::default();
        for body in [
            "STOP.",
            "Stop please",
            "STOP ALL",
            "\u{FF33}\u{FF34}\u{FF2F}\u{FF30}",
            "ARR\u{00CA}T",
            "Arr\u{00EA}t",
            "qu\u{0131}t",
            "S\u{200B}TOP",
            "stop\0",
            "STOPP",
            "STO",
            "S TOP",
            "\"STOP\"",
            "STOP!",
            "#STOP",
            "stop stop",
            "STOP\u{FE0F}",
            "st\u{00F6}p",
            "",
            "   ",
            "\u{00A0}",
            "UNSTOPPABLE",
            "yes!",
            "helpful",
            "info?",
            "end.",
        ] {
            assert_forward(&compat, body, "compatible");
        }
    }

    #[test]
    fn lenient_folds() {
        let lenient = with(RuleSet::Proxy2025, Matching::Lenient);
        let cases = [
            ("STOP.", "STOP"),
            ("STOP!!", "STOP"),
            ("Stop \u{1F6D1}", "STOP"),
            ("stop \u{1F64F}\u{1F3FD}!", "STOP"),
            ("\u{FF33}\u{FF34}\u{FF2F}\u{FF30}", "STOP"),
            ("\u{FF33}\u{FF34}\u{FF2F}\u{FF30}\u{FF01}", "STOP"),
            ("S\u{200B}TOP", "STOP"),
            ("\u{FEFF}stop", "STOP"),
            ("st\u{00AD}op", "STOP"),
            ("STOP ALL", "STOPALL"),
            ("OPT OUT", "OPTOUT"),
            ("opt  out", "OPTOUT"),
            ("Arr\u{00EA}t", "ARRET"),
            ("ARR\u{00CA}TE", "ARRETE"),
            ("ARRE\u{0302}T", "ARRET"),
            ("D\u{00C9}BUT", "DEBUT"),
            ("qu\u{0131}t", "QUIT"),
            ("\u{017F}top", "STOP"),
            ("\u{FB06}op!", "STOP"),
            ("unsubscribe...", "UNSUBSCRIBE"),
            ("HELP?", "HELP"),
            ("yes \u{1F44D}", "YES"),
            ("\u{200F}STOP\u{200E}", "STOP"),
        ];
        for (body, word) in cases {
            let d = lenient.classify(&Message::sms(body));
            assert_eq!(d.keyword(), Some(word), "lenient {body:?}");
        }
    }

    #[test]
    fn lenient_stays_whole_body() {
        let lenient = with(RuleSet::Proxy2025, Matching::Lenient);
        for body in [
            "Stop please",
            "stop at the corner",
            "please stop",
            "STOP. Now.",
            "!STOP",
            "\u{1F6D1} STOP",
            "STOP-ALL",
            "S.T.O.P",
            "end of the road",
            "cancel my order",
            "hello",
            "",
            "!!!",
            "\u{1F6D1}",
            "\u{5B89}\u{5168}",
        ] {
            assert_forward(&lenient, body, "lenient");
        }
    }
}

/// §§4 and §6: the decision table under each policy.
mod section_4_and_6 {
    use super::*;

    const IGNORE_ON: FixedPolicy = FixedPolicy::new(StopFilterFlag::Ignore, StopFiltering::On);
    const IGNORE_OFF: FixedPolicy = FixedPolicy::new(StopFilterFlag::Ignore, StopFiltering::Off);
    const RESPECT_ON: FixedPolicy = FixedPolicy::new(StopFilterFlag::Respect, StopFiltering::On);
    const RESPECT_OFF: FixedPolicy = FixedPolicy::new(StopFilterFlag::Respect, StopFiltering::Off);

    #[test]
    fn flag_mode_table() {
        let c = Classifier::default();
        for row in rows(RuleSet::Proxy2025) {
            let (word, category, dropped, carrier, _) = *row;
            let m = Message::sms(word);
            // Flag off: Proxy drops regardless; the carrier acts when filtering is on.
            for (policy, carrier_expected) in [(IGNORE_ON, carrier), (IGNORE_OFF, None)] {
                let d = c.decide(&m, &policy);
                assert_eq!(d.is_dropped(), dropped, "{word} {policy:?}");
                assert_eq!(d.carrier(), carrier_expected, "{word} {policy:?}");
            }
            // Flag on, filtering on: as default mode.
            let d = c.decide(&m, &RESPECT_ON);
            assert_eq!(d.is_dropped(), dropped, "{word} respect/on");
            assert_eq!(d.carrier(), carrier, "{word} respect/on");
            // Flag on, filtering off: forwarded like any message, category kept, no carrier.
            let d = c.decide(&m, &RESPECT_OFF);
            assert!(d.is_forwarded(), "{word} respect/off");
            assert_eq!(d.category(), Some(category), "{word} respect/off");
            assert_eq!(d.carrier(), None, "{word} respect/off");
            assert_eq!(d.notice(), None, "{word} respect/off");
        }
    }

    struct Hook {
        verdict: Intercept,
        flag: StopFilterFlag,
        filtering: StopFiltering,
        seen: std::cell::RefCell<Vec<(String, Option<Category>)>>,
    }

    impl ProxyPolicy for Hook {
        fn stop_filter_flag(&self) -> StopFilterFlag {
            self.flag
        }
        fn stop_filtering(&self, _: Option<&str>) -> StopFiltering {
            self.filtering
        }
        fn intercept(&self, m: &Message<'_>, d: &Decision) -> Intercept {
            self.seen
                .borrow_mut()
                .push((m.body().to_string(), d.category()));
            self.verdict
        }
    }

    fn hook(verdict: Intercept, flag: StopFilterFlag, filtering: StopFiltering) -> Hook {
        Hook {
            verdict,
            flag,
            filtering,
            seen: Default::default(),
        }
    }

    #[test]
    fn hook_cannot_undrop() {
        let c = Classifier::default();
        for verdict in [Intercept::Allow, Intercept::Block] {
            for (flag, filtering) in [
                (StopFilterFlag::Ignore, StopFiltering::On),
                (StopFilterFlag::Ignore, StopFiltering::Off),
                (StopFilterFlag::Respect, StopFiltering::On),
            ] {
                let h = hook(verdict, flag, filtering);
                for row in rows(RuleSet::Proxy2025).filter(|r| r.2) {
                    let d = c.decide(&Message::sms(row.0), &h);
                    assert!(d.is_dropped(), "{} {flag:?} {filtering:?}", row.0);
                    assert!(!d.fires_callbacks());
                }
                assert!(
                    h.seen.borrow().is_empty(),
                    "the hook never sees a dropped keyword"
                );
            }
        }
    }

    #[test]
    fn hook_blocks_forwarded_messages_with_80909() {
        let c = Classifier::default();
        let h = hook(Intercept::Block, StopFilterFlag::Ignore, StopFiltering::On);
        for body in ["hello", "START", "HELP", "yes"] {
            let d = c.decide(&Message::sms(body), &h);
            assert!(d.is_blocked(), "{body}");
            assert_eq!(d.notice(), Some(Notice::InboundContactRejected));
            assert!(!d.fires_status_callback());
            assert!(d.calls_intercept());
        }
        assert_eq!(h.seen.borrow().len(), 4);
    }

    #[test]
    fn flag_on_filtering_off_hands_keywords_to_the_hook() {
        let c = Classifier::default();
        let h = hook(
            Intercept::Allow,
            StopFilterFlag::Respect,
            StopFiltering::Off,
        );
        let d = c.decide(&Message::sms("stop"), &h);
        assert!(d.is_forwarded());
        assert_eq!(
            h.seen.borrow().as_slice(),
            &[("stop".to_string(), Some(Category::OptOut))]
        );
    }

    #[test]
    fn both_participants_same_decision() {
        let c = Classifier::default();
        for body in ["STOP", "hello", "UNSTOP", "START"] {
            let a = c.classify(&Message::sms(body).from("+15550000001").to("+15559990001"));
            let b = c.classify(&Message::sms(body).from("+15550000002").to("+15559990002"));
            assert_eq!(a, b, "{body}");
        }
    }

    #[test]
    fn policy_by_reference_box_and_arc() {
        let c = Classifier::default();
        let m = Message::sms("STOP");
        let expect = c.decide(&m, &RESPECT_OFF);
        let boxed: Box<dyn ProxyPolicy> = Box::new(RESPECT_OFF);
        assert_eq!(c.decide(&m, &boxed), expect);
        assert_eq!(c.decide(&m, &&RESPECT_OFF), expect);
        assert_eq!(c.decide(&m, &std::sync::Arc::new(RESPECT_OFF)), expect);
        assert_eq!(c.decide(&m, boxed.as_ref()), expect);
    }
}

/// §§7: only SMS and MMS get keyword handling.
mod section_7 {
    use super::*;

    #[test]
    fn channels() {
        let c = Classifier::default();
        for channel in Channel::ALL {
            for row in rows(RuleSet::Proxy2025) {
                let d = c.classify(&Message::new(row.0, channel));
                if matches!(channel, Channel::Sms | Channel::Mms) {
                    assert_eq!(d.is_dropped(), row.2, "{} on {channel}", row.0);
                    assert_eq!(d.keyword(), Some(row.0));
                } else {
                    assert!(d.is_forwarded(), "{} on {channel}", row.0);
                    assert_eq!(d.keyword(), None, "{} on {channel}", row.0);
                    assert_eq!(d.carrier(), None, "{} on {channel}", row.0);
                }
            }
        }
    }
}

/// §§8: the notices.
mod section_8 {
    use super::*;

    #[test]
    fn notices() {
        let table = [
            (
                Notice::MessageMatchedStopWord,
                80901,
                "warning",
                "Message Matched Stop Word",
            ),
            (
                Notice::InboundContactRejected,
                80909,
                "warning",
                "Inbound Contact Rejected",
            ),
            (
                Notice::UnsubscribedRecipient,
                21610,
                "error",
                "Attempt to send to unsubscribed recipient",
            ),
        ];
        for (n, code, level, title) in table {
            assert_eq!(n.code(), code);
            assert_eq!(n.level().as_str(), level);
            assert_eq!(n.title(), title);
            assert_eq!(Notice::from_code(code), Some(n));
            assert_eq!(code.to_string().parse::<Notice>(), Ok(n));
        }
        assert!("80900".parse::<Notice>().is_err());
    }
}

/// §§9: extensions, each off by default.
mod section_9 {
    use super::*;
    use proxy_optout::{ConfigError, Keyword};

    #[test]
    fn extensions_are_off_by_default() {
        for body in ["ALTO", "AYUDA", "AIDE", "ARR\u{00CA}T", "STOP!"] {
            assert_forward(&Classifier::default(), body, "default");
        }
        assert_eq!(
            classify(&Message::sms("stop texting me")).revocation_hint(),
            None
        );
    }

    #[test]
    fn language_packs() {
        let fr = Classifier::builder()
            .language(LanguagePack::French)
            .build()
            .unwrap();
        let d = fr.classify(&Message::sms("arr\u{00EA}t"));
        assert!(d.is_dropped());
        assert_eq!(d.keyword(), Some("ARR\u{00CA}T"));
        assert_eq!(d.carrier(), Some(Category::OptOut));
        let d = fr.classify(&Message::sms("ARRET"));
        assert_eq!(
            d.carrier(),
            Some(Category::OptOut),
            "the pack puts ARRET on the carrier"
        );
        let d = fr.classify(&Message::sms("Aide"));
        assert!(d.is_forwarded());
        assert_eq!(d.category(), Some(Category::Help));
        assert_eq!(fr.keywords().count(), 17 + 2);

        let es = Classifier::builder()
            .language(LanguagePack::Spanish)
            .matching(Matching::Lenient)
            .build()
            .unwrap();
        assert!(
            es.classify(&Message::sms("\u{00A1}ALTO!")).is_forwarded(),
            "leading ¡ stays"
        );
        assert!(es.classify(&Message::sms("alto!")).is_dropped());
        assert_eq!(
            es.classify(&Message::sms("ayuda")).category(),
            Some(Category::Help)
        );
    }

    #[test]
    fn custom_keywords() {
        let c = Classifier::builder()
            .keyword("HALT", Category::OptOut)
            .keyword("\u{0421}\u{0422}\u{041E}\u{041F}", Category::OptOut) // СТОП
            .add_keyword(Keyword::new("GO", Category::OptIn).without_carrier_effect())
            .remove_keyword("cancel")
            .build()
            .unwrap();
        assert!(c.classify(&Message::sms(" halt ")).is_dropped());
        assert!(c
            .classify(&Message::sms("\u{0441}\u{0442}\u{043E}\u{043F}"))
            .is_dropped());
        let go = c.classify(&Message::sms("go"));
        assert!(go.is_forwarded());
        assert_eq!(go.category(), Some(Category::OptIn));
        assert_eq!(go.carrier(), None);
        assert_forward(&c, "CANCEL", "cancel removed");
        assert!(c.classify(&Message::sms("STOP")).is_dropped());
    }

    #[test]
    fn config_errors_name_the_value() {
        let cases: Vec<(proxy_optout::ClassifierBuilder, ConfigError)> = vec![
            (
                Classifier::builder().keyword("", Category::OptOut),
                ConfigError::EmptyKeyword,
            ),
            (
                Classifier::builder().keyword("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG", Category::Help),
                ConfigError::KeywordTooLong {
                    keyword: "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG".into(),
                    len: 33,
                    max: 32,
                },
            ),
            (
                Classifier::builder().keyword("OPT OUT", Category::OptOut),
                ConfigError::KeywordWhitespace {
                    keyword: "OPT OUT".into(),
                },
            ),
            (
                Classifier::builder().keyword("HALT!", Category::OptOut),
                ConfigError::KeywordCharacter {
                    keyword: "HALT!".into(),
                    ch: '!',
                },
            ),
            (
                Classifier::builder().keyword("HA\u{200B}LT", Category::OptOut),
                ConfigError::KeywordCharacter {
                    keyword: "HA\u{200B}LT".into(),
                    ch: '\u{200B}',
                },
            ),
            (
                Classifier::builder().keyword("Quit", Category::OptOut),
                ConfigError::DuplicateKeyword {
                    keyword: "Quit".into(),
                    existing: "QUIT".into(),
                },
            ),
            (
                Classifier::builder().keyword("\u{017F}TOP", Category::OptOut),
                ConfigError::NonCanonicalKeyword {
                    keyword: "\u{017F}TOP".into(),
                    ascii: "STOP".into(),
                },
            ),
            (
                Classifier::builder().remove_keyword("unstop"),
                ConfigError::MandatoryKeyword {
                    keyword: "unstop".into(),
                },
            ),
            (
                Classifier::builder().remove_keyword("BOGUS"),
                ConfigError::UnknownKeyword {
                    keyword: "BOGUS".into(),
                },
            ),
        ];
        for (builder, expected) in cases {
            let err = builder.build().unwrap_err();
            assert_eq!(err, expected);
            let text = err.to_string();
            assert!(text.chars().next().unwrap().is_lowercase(), "{text}");
        }
        for word in ["STOP", "START", "UNSTOP", "HELP", "help"] {
            assert!(matches!(
                Classifier::builder().remove_keyword(word).build(),
                Err(ConfigError::MandatoryKeyword { .. })
            ));
        }
    }

    #[test]
    fn revocation_hints() {
        let c = Classifier::builder().revocation_hints().build().unwrap();
        let cases = [
            ("please stop texting me", Some("stop texting")),
            ("unsubscribe me", Some("unsubscribe")),
            ("Can you OPT   OUT my number", Some("opt out")),
            ("don't text me again", Some("don't text")),
            ("I want to quit this", Some("quit")),
            ("see you at the end", Some("end")),
            ("stopped by the store", None),
            ("endless fun", None),
            ("on my way", None),
        ];
        for (body, hint) in cases {
            let d = c.classify(&Message::sms(body));
            assert!(d.is_forwarded(), "a hint is never a drop: {body:?}");
            assert_eq!(d.revocation_hint().map(|h| h.phrase()), hint, "{body:?}");
        }
        assert_eq!(c.classify(&Message::sms("STOP")).revocation_hint(), None);
        // Hints look at other channels too, where keywords pass through unhandled.
        let w = c.classify(&Message::new("STOP", Channel::WhatsApp));
        assert_eq!(w.revocation_hint().map(|h| h.phrase()), Some("stop"));
    }
}

/// §§11: bodies are never errors; bytes boundaries are typed errors.
mod section_11 {
    use super::*;

    #[test]
    fn odd_bodies_are_ordinary_messages() {
        let huge = "a".repeat(1 << 20);
        for body in [
            "",
            " ",
            "\0",
            "\u{0301}",
            "\u{10FFFF}",
            "\u{202E}STOP",
            huge.as_str(),
        ] {
            assert_forward(&Classifier::default(), body, "odd");
        }
    }

    #[test]
    fn bytes_boundary() {
        assert!(proxy_optout::classify_bytes(b" stop ")
            .unwrap()
            .is_dropped());
        for (bytes, offset) in [
            (&b"\xFF"[..], 0),
            (b"STOP\xC3", 4),
            (b"ab\xE2\x82", 2),
            (b"ok\xED\xA0\x80", 2),
        ] {
            let err = proxy_optout::classify_bytes(bytes).unwrap_err();
            assert_eq!(err.offset(), offset, "{bytes:?}");
            assert!(err.to_string().contains(&format!("offset {offset}")));
        }
    }
}
