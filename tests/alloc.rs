//! §§10 invariant 4, allocation half: `classify` never allocates, in either matching
//! mode, on any path (ASCII, Unicode folding, lenient second pass, hints, policies), for
//! bodies up to 100 MB. A counting global allocator counts this thread's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proxy_optout::{
    classify, Category, Channel, Classifier, Decision, FixedPolicy, Intercept, LanguagePack,
    Matching, Message, ProxyPolicy, RuleSet, StopFilterFlag, StopFiltering,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread-local, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let r = f();
    (r, ALLOCATIONS.with(Cell::get) - before)
}

struct Hook;
impl ProxyPolicy for Hook {
    fn stop_filter_flag(&self) -> StopFilterFlag {
        StopFilterFlag::Respect
    }
    fn stop_filtering(&self, n: Option<&str>) -> StopFiltering {
        if n == Some("+1off") {
            StopFiltering::Off
        } else {
            StopFiltering::On
        }
    }
    fn intercept(&self, m: &Message<'_>, d: &Decision) -> Intercept {
        if m.body().len() % 2 == 0 && d.category().is_none() {
            Intercept::Block
        } else {
            Intercept::Allow
        }
    }
}

fn corpus() -> Vec<String> {
    let mut v: Vec<String> = [
        "", " ", "STOP", "stop", " Stop \n", "sToP\u{00A0}", "\u{3000}UNSUBSCRIBE\u{3000}",
        "UNSTOP", "start", "help", "INFO", "ARRET", "arr\u{00EA}t", "ARRÊTE", "debut",
        "\u{017F}top", "\u{FB06}op", "revo\u{212A}e", "STOP.", "STOP!!", "Stop please",
        "STOP ALL", "opt out", "\u{FF33}\u{FF34}\u{FF2F}\u{FF30}", "S\u{200B}TOP", "qu\u{0131}t",
        "stop \u{1F6D1}", "ARRE\u{0302}T", "stop\0", "on my way, see you at 5",
        "Hey! I'm outside the blue building on 5th street, can you come down?",
        "\u{041F}\u{0440}\u{0438}\u{0432}\u{0435}\u{0442}, \u{044F} \u{0443}\u{0436}\u{0435} \u{0438}\u{0434}\u{0443}",
        "\u{6211}\u{5DF2}\u{7ECF}\u{5230}\u{4E86}", "\u{1F44D}\u{1F44D}", "ok", "yes!",
        "please stop texting me", "unsubscribe me", "\u{0421}\u{0422}\u{041E}\u{041F}",
        "\u{0441}\u{0442}\u{043E}\u{043F}!", "alto", "AYUDA", "\u{10FFFF}", "\u{0301}",
        "\u{202E}STOP", "https://example.com/track/12345?ref=sms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!(
        "{}STOP{}",
        " ".repeat(10_000),
        "\u{00A0}".repeat(5_000)
    ));
    v.push(format!(
        "{}stop{}",
        "\u{3000}".repeat(400_000),
        "\t\n".repeat(100_000)
    ));
    v.push("\u{00E9}".repeat(1 << 20));
    v.push("x".repeat(1600));
    v
}

fn classifiers() -> Vec<Classifier> {
    let mut v = Vec::new();
    for rules in RuleSet::ALL {
        for matching in Matching::ALL {
            v.push(
                Classifier::builder()
                    .rules(rules)
                    .matching(matching)
                    .build()
                    .unwrap(),
            );
            v.push(
                Classifier::builder()
                    .rules(rules)
                    .matching(matching)
                    .language(LanguagePack::French)
                    .language(LanguagePack::Spanish)
                    .keyword("\u{0421}\u{0422}\u{041E}\u{041F}", Category::OptOut)
                    .remove_keyword("CANCEL")
                    .revocation_hints()
                    .build()
                    .unwrap(),
            );
        }
    }
    v
}

#[test]
fn classify_never_allocates() {
    let corpus = corpus();
    let classifiers = classifiers();
    let policies: [&dyn ProxyPolicy; 3] = [
        &FixedPolicy::new(StopFilterFlag::Respect, StopFiltering::Off),
        &Hook,
        &proxy_optout::TwilioProxy,
    ];
    let mut checked = 0;
    for body in &corpus {
        for channel in [Channel::Sms, Channel::WhatsApp] {
            let m = Message::new(body, channel).from("+1a").to("+1off");
            let (_, n) = allocations(|| classify(&m));
            assert_eq!(n, 0, "classify allocated for {:.40?}", body);
            for c in &classifiers {
                let (_, n) = allocations(|| c.classify(&m));
                assert_eq!(
                    n,
                    0,
                    "{:?}/{:?} allocated for {:.40?}",
                    c.rules(),
                    c.matching(),
                    body
                );
                for p in policies {
                    let (_, n) = allocations(|| c.decide(&m, p));
                    assert_eq!(n, 0, "decide allocated for {:.40?}", body);
                }
                let (_, n) = allocations(|| c.classify_bytes(body.as_bytes(), channel));
                assert_eq!(n, 0, "classify_bytes allocated for {:.40?}", body);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, corpus.len() * 2 * classifiers.len());
    // The counter works: building a classifier with extensions does allocate.
    let (_, n) = allocations(|| {
        Classifier::builder()
            .keyword("HALT", Category::OptOut)
            .build()
    });
    assert!(
        n > 0,
        "the counting allocator must see the builder's allocations"
    );
}

#[test]
fn hundred_megabyte_bodies() {
    let mut body = " ".repeat(50 << 20);
    body.push_str("StOp");
    body.push_str(&"\u{00A0}".repeat(25 << 20));
    let c = Classifier::builder()
        .matching(Matching::Lenient)
        .build()
        .unwrap();
    let (d, n) = allocations(|| classify(&Message::sms(&body)));
    assert!(d.is_dropped());
    assert_eq!(n, 0);
    let (d, n) = allocations(|| c.classify(&Message::sms(&body)));
    assert!(d.is_dropped());
    assert_eq!(n, 0);
    let text = "word ".repeat(20 << 20);
    let (d, n) = allocations(|| classify(&Message::sms(&text)));
    assert!(d.is_forwarded());
    assert_eq!(n, 0);
}

/// Issue 8: the relay's two pure steps, the feedback step and walking the effects allocate
/// nothing, in both carrier modes, in and out of session, for every kind of answer.
#[test]
fn relay_steps_never_allocate() {
    use proxy_optout::{
        Answer, Answers, CarrierMode, Feedback, Inbound, OptState, Participant, RelayCore, Route,
        Settings, Step,
    };
    let corpus = corpus();
    let rider = Participant::new("+1rider", "+1P").unwrap();
    let driver = Participant::new("+1driver", "+1P").unwrap();
    let wa = Participant::new("whatsapp:+1wa", "whatsapp:+1Q").unwrap();
    let routes = [
        None,
        Some(Route::new("ride", &rider, Some(&driver)).unwrap()),
        Some(Route::new("ride", &rider, None).unwrap()),
        Some(Route::new("chat", &rider, Some(&wa)).unwrap()),
    ];
    let settings = [
        Settings::default(),
        Settings::new(StopFilterFlag::Respect, StopFiltering::Off),
        Settings::default().with_recipient_filtering(StopFiltering::Off),
    ];
    let answers = [
        Answers::new(),
        Answers::new()
            .sender_state(OptState::OptedIn)
            .recipient_state(OptState::OptedIn)
            .intercept(Intercept::Allow),
        Answers::new()
            .sender_state(OptState::OptedOut)
            .recipient_state(OptState::OptedOut)
            .intercept(Intercept::Allow),
        Answers::new()
            .recipient_state(OptState::OptedIn)
            .intercept(Intercept::Block),
    ];
    let mut outcomes = 0;
    for mode in CarrierMode::ALL {
        let core = RelayCore::new().with_mode(mode);
        for body in &corpus {
            let inbound = Inbound::sms("+1rider", "+1P", body).with_message_id("SM1");
            for route in routes {
                for s in settings {
                    for a in answers {
                        let (effects, n) = allocations(|| {
                            let plan = core.plan(&inbound, route, s).unwrap();
                            let _ = (plan.sender_key(), plan.recipient_key(), plan.intercept());
                            let out = plan.finish(a);
                            out.effects().count()
                        });
                        assert_eq!(n, 0, "{mode:?} allocated for {:.40?}", body);
                        assert!(effects <= 6);
                        outcomes += 1;
                    }
                }
            }
        }
        let (count, n) = allocations(|| {
            core.feedback(&Feedback::Refused {
                from: "+1P",
                to: "+1rider",
            })
            .unwrap()
            .effects()
            .count()
        });
        assert_eq!((count, n), (2, 0));
    }
    assert_eq!(outcomes, 2 * corpus.len() * 4 * 3 * 4);
    // The step loop every driver runs, answered as a store and a hook would (Ok and Err).
    let mut loops = 0;
    for mode in CarrierMode::ALL {
        let core = RelayCore::new().with_mode(mode);
        for body in &corpus {
            let inbound = Inbound::sms("+1rider", "+1P", body).with_message_id("SM1");
            for route in routes {
                for (filtering, state, verdict, store_up) in [
                    (StopFiltering::On, OptState::OptedIn, Intercept::Allow, true),
                    (
                        StopFiltering::Off,
                        OptState::OptedOut,
                        Intercept::Block,
                        true,
                    ),
                    (
                        StopFiltering::On,
                        OptState::OptedOut,
                        Intercept::Allow,
                        false,
                    ),
                ] {
                    let (done, n) = allocations(|| {
                        let mut steps = core
                            .steps::<u8>(&inbound, route, StopFilterFlag::Ignore)
                            .unwrap();
                        let mut asked = 0;
                        while let Some(step) = steps.next() {
                            asked += 1;
                            steps.answer(match step {
                                Step::Filtering(_) => Answer::Filtering(filtering),
                                Step::State(_) if store_up => Answer::State(Ok(state)),
                                Step::State(_) => Answer::State(Err(1)),
                                Step::Intercept(..) => Answer::Intercept(verdict),
                                // The change's facts, as a history-keeping driver asks.
                                Step::Record(key, state) if store_up => {
                                    let change = steps.change().expect("a pending record");
                                    assert_eq!((change.key(), change.state()), (key, state));
                                    Answer::Recorded(Ok(()))
                                }
                                _ => Answer::Unavailable,
                            });
                        }
                        // Only the store-down error path boxes its outcome: count the rest.
                        let ok = store_up.then(|| steps.finish().map(|o| o.effects().count()));
                        (asked, ok)
                    });
                    assert!(done.0 >= 1 && done.0 <= 6, "{} questions", done.0);
                    assert!(done.1.map_or(true, |r| r.is_ok()));
                    assert_eq!(n, 0, "{mode:?} steps allocated for {:.40?}", body);
                    loops += 1;
                }
            }
        }
    }
    assert_eq!(loops, 2 * corpus.len() * 4 * 3);
    // The counter works on this path too: detaching an outcome allocates.
    let core = RelayCore::new();
    let inbound = Inbound::sms("+1rider", "+1P", "STOP");
    let (_, n) = allocations(|| {
        core.plan(&inbound, None, Settings::default())
            .unwrap()
            .finish(Answers::new())
            .into_owned()
    });
    assert!(n > 0);
}
