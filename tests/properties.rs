//! Property tests for the invariants of §§10, against the naive reference in `common`.

mod common;

use common::*;
use proptest::prelude::*;
use proxy_optout::{Channel, Classifier, Matching, Message, Notice, RuleSet};

fn white_space() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(WHITE_SPACE.to_vec()), 0..6)
        .prop_map(|v| v.into_iter().collect())
}

/// A keyword of either rule set with each letter's case chosen at random.
fn keyword_in_any_case() -> impl Strategy<Value = String> {
    (prop::sample::select(SPEC_TABLE.to_vec()), any::<u64>()).prop_map(|(row, bits)| {
        row.0
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if bits >> (i % 64) & 1 == 1 {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect()
    })
}

/// Bodies that are interesting near keywords: keywords, near misses, and random text.
fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        (white_space(), keyword_in_any_case(), white_space()).prop_map(|(a, k, b)| a + &k + &b),
        (
            keyword_in_any_case(),
            "[ .!?a-z\u{00A0}\u{200B}\u{017F}\u{212A}]{0,3}"
        )
            .prop_map(|(k, s)| k + &s),
        "[a-zA-Z \u{00A0}\u{3000}\u{017F}\u{FB06}\u{212A}]{0,12}",
        any::<String>(),
    ]
}

fn channel() -> impl Strategy<Value = Channel> {
    prop::sample::select(Channel::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Invariant 1 (and the whole decision table): in default mode the classifier agrees with
    /// the naive reference, so no body whose trimmed, case-folded form is a drop keyword is
    /// ever forwarded.
    #[test]
    fn agrees_with_naive_reference(body in body(), channel in channel()) {
        for rules in RuleSet::ALL {
            let c = Classifier::builder().rules(rules).build().unwrap();
            let d = c.classify(&Message::new(&body, channel));
            let expected = oracle(&body, channel, rules);
            prop_assert_eq!(observed(&d), expected, "{:?} on {} under {}", body, channel, rules);
            if expected.dropped {
                prop_assert!(!d.is_forwarded());
            }
        }
    }

    /// Invariant 1, directly: a drop keyword in any case with any White_Space padding is
    /// never forwarded, in either matching mode.
    #[test]
    fn padded_drop_keywords_are_never_forwarded(
        before in white_space(), word in keyword_in_any_case(), after in white_space(),
    ) {
        let body = format!("{before}{word}{after}");
        for &(rules, matching, ref c) in classifiers() {
            if oracle(&word, Channel::Sms, rules).dropped {
                prop_assert!(c.classify(&Message::sms(&body)).is_dropped(), "{:?} {} {}", body, rules, matching);
            }
        }
    }

    /// Invariant 2: classification is unchanged by surrounding whitespace and letter case.
    #[test]
    fn invariant_under_whitespace_and_case(
        body in body(), before in white_space(), after in white_space(), channel in channel(),
    ) {
        let padded = format!("{before}{body}{after}");
        let upper = body.to_uppercase();
        let lower = body.to_lowercase();
        for (_, _, c) in classifiers() {
            let d = c.classify(&Message::new(&body, channel));
            prop_assert_eq!(c.classify(&Message::new(&padded, channel)), d, "padding {:?}", padded);
            // Case: compare keyword identity only when the case mapping keeps the body
            // folding-equal (it always does for the keywords' letters).
            if unicase::eq(upper.as_str(), body.as_str()) {
                prop_assert_eq!(c.classify(&Message::new(&upper, channel)), d, "upper {:?}", upper);
            }
            if unicase::eq(lower.as_str(), body.as_str()) {
                prop_assert_eq!(c.classify(&Message::new(&lower, channel)), d, "lower {:?}", lower);
            }
        }
    }

    /// Invariant 3: every dropped keyword yields exactly one 80901 and no callbacks; nothing
    /// forwarded yields 80901.
    #[test]
    fn notices_and_callbacks(body in body(), channel in channel()) {
        for (_, _, c) in classifiers() {
            let d = c.classify(&Message::new(&body, channel));
            let is_80901 = d.notice() == Some(Notice::MessageMatchedStopWord);
            prop_assert_eq!(d.is_dropped(), is_80901);
            prop_assert_eq!(d.is_dropped(), !d.fires_callbacks());
            if d.is_forwarded() {
                prop_assert_eq!(d.notice(), None);
            }
        }
    }

    /// Lenient matching only ever adds keywords: whatever compatible matching finds, lenient
    /// finds too.
    #[test]
    fn lenient_extends_compatible(body in body()) {
        for rules in RuleSet::ALL {
            let compat = Classifier::builder().rules(rules).build().unwrap();
            let lenient = Classifier::builder().rules(rules).matching(Matching::Lenient).build().unwrap();
            if let Some(k) = compat.find_keyword(&body) {
                prop_assert_eq!(lenient.find_keyword(&body), Some(k), "{:?}", body);
            }
        }
    }

    /// Invariant 4 (no panic) over arbitrary strings, including long ones. The allocation
    /// half is in `tests/alloc.rs`.
    #[test]
    fn total_over_any_string(body in any::<String>(), pad in 0usize..5000) {
        let long = format!("{}{}{}", " ".repeat(pad), body, "\u{3000}".repeat(pad));
        for (_, _, c) in classifiers() {
            let _ = c.classify(&Message::sms(&body));
            let _ = c.classify(&Message::sms(&long));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A hook asked after the decision (`Outcome::intercepted`, what a host that calls its
    /// hook over HTTP outside the database job does) gives exactly the outcome of answering
    /// it inside the plan, for every flag, filtering setting and recipient state; and no
    /// verdict un-drops a keyword.
    #[test]
    fn hook_applied_afterwards_equals_hook_in_the_plan(
        body in body(),
        respect in any::<bool>(),
        filtering_on in any::<bool>(),
        recipient_out in any::<bool>(),
        in_session in any::<bool>(),
    ) {
        use proxy_optout::{Answers, Inbound, Intercept, OptState, Participant, RelayCore, Route,
            Settings, StopFilterFlag, StopFiltering};
        let core = RelayCore::new();
        let inbound = Inbound::sms("+15551110001", "+15550000100", &body);
        let rider = Participant::new("+15551110001", "+15550000100").unwrap();
        let driver = Participant::new("+15552220002", "+15550000100").unwrap();
        let route = Route::new("ride-1", &rider, Some(&driver)).unwrap();
        let settings = Settings::new(
            if respect { StopFilterFlag::Respect } else { StopFilterFlag::Ignore },
            if filtering_on { StopFiltering::On } else { StopFiltering::Off },
        );
        let plan = core.plan(&inbound, in_session.then_some(route), settings).unwrap();
        let state = if recipient_out { OptState::OptedOut } else { OptState::OptedIn };
        let answers = Answers::new().sender_state(OptState::OptedIn).recipient_state(state);
        for verdict in [Intercept::Allow, Intercept::Block] {
            let inside = plan.finish(answers.intercept(verdict));
            let after = plan.finish(answers.intercept(Intercept::Allow)).intercepted(verdict);
            prop_assert_eq!(&after, &inside, "{:?} {:?}", body, verdict);
            if plan.decision().is_dropped() {
                prop_assert!(after.decision().is_dropped());
                prop_assert!(after.forwarded().is_none());
            }
        }
    }
}
