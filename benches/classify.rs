//! `cargo bench --bench classify`
//!
//! Each group holds our classifier beside baselines written here, over the same inputs, so
//! every figure reads as a ratio:
//!
//! - `ours`: `proxy_optout::Classifier` (compatible matching unless the member says otherwise);
//! - `naive`: `trim` + `to_uppercase` + a hash lookup, the straightforward implementation;
//! - `regex`: an anchored, case-insensitive alternation of the keywords, one capture group
//!   per keyword so that it tells which one matched (`regex` crate);
//! - `trim_floor`: a bare `str::trim` over the same bodies, the least any matcher must do.
//!
//! The `relay` group runs a scripted stream of messages four ways: `steps` (the pure core,
//! `RelayCore::plan` + `Plan::finish`, with routes and ledger answers supplied),
//! `sync_memory` (the sync `Relay` driver over `MemoryStore` and its in-memory sessions),
//! `naive` (a straightforward relay written here) and `classify` (the classifier alone over the
//! same bodies, the floor for `steps`).
//!
//! Every member works out the same thing for each message (which keyword, and whether it is
//! dropped) and asserts the tally over the inputs inside the timed closure.

mod support;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use proxy_optout::{Classifier, Matching, Message};
use regex::{Regex, RegexBuilder};

/// What each member must work out for a message: the keyword, and whether it is dropped.
type Verdict = Option<(&'static str, bool)>;

struct Baselines {
    naive: HashMap<&'static str, bool>,
    regex: Regex,
}

impl Baselines {
    fn new() -> Self {
        let groups: Vec<String> = support::KEYWORDS.iter().map(|k| format!("({k})")).collect();
        let pattern = format!(r"^\s*(?:{})\s*$", groups.join("|"));
        Baselines {
            naive: support::KEYWORDS
                .iter()
                .map(|k| (*k, support::is_dropped(k)))
                .collect(),
            regex: RegexBuilder::new(&pattern)
                .case_insensitive(true)
                .build()
                .unwrap(),
        }
    }

    fn naive(&self, body: &str) -> Verdict {
        self.naive
            .get_key_value(body.trim().to_uppercase().as_str())
            .map(|(k, d)| (*k, *d))
    }

    fn regex(&self, body: &str) -> Verdict {
        let caps = self.regex.captures(body)?;
        let i = caps.iter().skip(1).position(|g| g.is_some())?;
        let k = support::KEYWORDS[i];
        Some((k, support::is_dropped(k)))
    }
}

fn ours(c: &Classifier, body: &str) -> Verdict {
    let d = c.classify(&Message::sms(body));
    d.keyword().map(|k| (k, d.is_dropped()))
}

/// A checksum of verdicts that every member must reproduce: keywords found, drops.
fn tally(verdicts: impl Iterator<Item = Verdict>) -> (usize, usize) {
    verdicts.fold((0, 0), |(k, d), v| match v {
        Some((_, dropped)) => (k + 1, d + usize::from(dropped)),
        None => (k, d),
    })
}

/// Adds the members over `bodies`, each asserting it reaches the same tally.
fn members(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    param: Option<&str>,
    bodies: &[String],
    base: &Baselines,
    classifiers: &[(&str, &Classifier)],
) {
    let expected = tally(bodies.iter().map(|b| base.naive(b)));
    let trimmed: usize = bodies.iter().map(|b| b.trim().len()).sum();
    let id = |name: &str| match param {
        Some(p) => BenchmarkId::new(name, p),
        None => BenchmarkId::from_parameter(name),
    };
    for &(name, c) in classifiers {
        group.bench_function(id(name), |b| {
            b.iter(|| {
                assert_eq!(
                    tally(bodies.iter().map(|m| ours(c, black_box(m)))),
                    expected
                )
            })
        });
    }
    group.bench_function(id("naive"), |b| {
        b.iter(|| {
            assert_eq!(
                tally(bodies.iter().map(|m| base.naive(black_box(m)))),
                expected
            )
        })
    });
    group.bench_function(id("regex"), |b| {
        b.iter(|| {
            assert_eq!(
                tally(bodies.iter().map(|m| base.regex(black_box(m)))),
                expected
            )
        })
    });
    group.bench_function(id("trim_floor"), |b| {
        b.iter(|| {
            let n: usize = bodies
                .iter()
                .map(|m| black_box(black_box(m).trim()).len())
                .sum();
            assert_eq!(n, trimmed);
        })
    });
}

fn bytes(bodies: &[String]) -> u64 {
    bodies.iter().map(|b| b.len() as u64).sum()
}

fn classify_benches(cr: &mut Criterion) {
    let base = Baselines::new();
    let compat = Classifier::default();
    let lenient = Classifier::builder()
        .matching(Matching::Lenient)
        .build()
        .unwrap();

    let mixed = support::mixed(1000);
    let mut g = cr.benchmark_group("mixed");
    g.throughput(Throughput::Bytes(bytes(&mixed)));
    members(
        &mut g,
        None,
        &mixed,
        &base,
        &[("ours", &compat), ("ours_lenient", &lenient)],
    );
    g.finish();

    let keywords = support::keywords();
    let mut g = cr.benchmark_group("keywords");
    g.throughput(Throughput::Bytes(bytes(&keywords)));
    members(&mut g, None, &keywords, &base, &[("ours", &compat)]);
    g.finish();

    let long = vec![support::long()];
    let mut g = cr.benchmark_group("long");
    g.throughput(Throughput::Bytes(bytes(&long)));
    members(
        &mut g,
        None,
        &long,
        &base,
        &[("ours", &compat), ("ours_lenient", &lenient)],
    );
    g.finish();

    let mut g = cr.benchmark_group("adversarial");
    for (label, pad, core) in [
        ("ascii_ws", " ", "StOp"),
        ("nbsp_ws", "\u{00A0}", "sTOP"),
        ("ideographic_ws", "\u{3000}", "stop"),
        ("cyrillic_text", "\u{0436}", "\u{0436}"),
    ] {
        for size in [10 << 10, 1 << 20] {
            let half = pad.repeat(size / 2 / pad.len());
            let body = vec![format!("{half}{core}{half}")];
            let param = format!("{label}/{}", if size > 10 << 10 { "1MB" } else { "10KB" });
            g.throughput(Throughput::Bytes(bytes(&body)));
            members(
                &mut g,
                Some(&param),
                &body,
                &base,
                &[("ours", &compat), ("ours_lenient", &lenient)],
            );
        }
    }
    g.finish();
}

/// A straightforward relay, the way one would first write it: string-keyed hash maps for
/// routes and the ledger behind a mutex, the naive classification, owned strings out.
struct NaiveRelay {
    routes: HashMap<(String, String), (String, String)>,
    ledger: std::sync::Mutex<HashMap<(String, String), bool>>,
    base: Baselines,
}

/// What both relays must agree on over a script: forwards, drops, refusals, replies.
type RelayTally = (usize, usize, usize, usize);

impl NaiveRelay {
    fn handle(
        &self,
        from: &str,
        to: &str,
        body: &str,
    ) -> (Option<String>, bool, bool, Option<String>) {
        let verdict = self.base.naive(body);
        let carrier = verdict.map(|(k, _)| k).and_then(|k| match k {
            "ARRET" | "ARRETE" | "ARRETT" | "DEBUT" => None,
            "START" | "YES" | "UNSTOP" => Some("in"),
            "HELP" | "INFO" => Some("help"),
            _ => Some("out"),
        });
        let mut ledger = self.ledger.lock().unwrap();
        let key = (to.to_string(), from.to_string());
        let reply = match carrier {
            Some("out") => {
                ledger.insert(key, true);
                Some(proxy_optout::DEFAULT_STOP_REPLY.to_string())
            }
            Some("in") => {
                ledger.insert(key, false);
                Some(proxy_optout::DEFAULT_START_REPLY.to_string())
            }
            Some(_) if !ledger.get(&key).copied().unwrap_or(false) => {
                Some(proxy_optout::DEFAULT_HELP_REPLY.to_string())
            }
            _ => None,
        };
        let dropped = verdict.is_some_and(|(_, d)| d);
        let Some((rid, rproxy)) = self.routes.get(&(from.to_string(), to.to_string())) else {
            return (None, dropped, false, reply);
        };
        if dropped {
            return (None, true, false, reply);
        }
        let refused = ledger
            .get(&(rproxy.clone(), rid.clone()))
            .copied()
            .unwrap_or(false);
        let sent = (!refused).then(|| format!("{rproxy}->{rid}:{body}"));
        (sent, false, refused, reply)
    }
}

fn relay_benches(cr: &mut Criterion) {
    use proxy_optout::{
        Answers, Inbound, Intercept, MemoryStore, OptOutStore, Participant, Relay, RelayCore,
        Settings,
    };

    const PAIRS: usize = 50;
    let mut ours = Relay::new(MemoryStore::new());
    let mut routes = HashMap::new();
    let people: Vec<(String, String, String)> = (0..PAIRS)
        .map(|i| {
            (
                format!("+1555100{i:04}"),
                format!("+1555200{i:04}"),
                format!("+1555000{:04}", i % 7),
            )
        })
        .collect();
    for (i, (rider, driver, proxy)) in people.iter().enumerate() {
        ours.sessions_mut()
            .open(
                &format!("ride-{i}"),
                Participant::new(rider.as_str(), proxy.as_str()).unwrap(),
                Participant::new(driver.as_str(), proxy.as_str()).unwrap(),
            )
            .unwrap();
        routes.insert(
            (rider.clone(), proxy.clone()),
            (driver.clone(), proxy.clone()),
        );
        routes.insert(
            (driver.clone(), proxy.clone()),
            (rider.clone(), proxy.clone()),
        );
    }
    let naive = NaiveRelay {
        routes,
        ledger: Default::default(),
        base: Baselines::new(),
    };
    // The mixed corpus from random participants, then START from everyone: each pass ends
    // with every pair opted in, so every pass sees the same ledger and the same tally.
    let mut rng = support::Rng::new(42);
    let mut script: Vec<(String, String, String)> = support::mixed(1000)
        .into_iter()
        .map(|body| {
            let (rider, driver, proxy) = &people[rng.below(PAIRS)];
            let from = if rng.below(2) == 0 { rider } else { driver };
            (from.clone(), proxy.clone(), body)
        })
        .collect();
    for (rider, driver, proxy) in &people {
        script.push((rider.clone(), proxy.clone(), "START".into()));
        script.push((driver.clone(), proxy.clone(), "START".into()));
    }
    let run_ours = || -> RelayTally {
        script.iter().fold((0, 0, 0, 0), |t, (from, to, body)| {
            let out = ours
                .handle(&Inbound::sms(from, to, black_box(body)))
                .unwrap();
            (
                t.0 + usize::from(out.forwarded().is_some()),
                t.1 + usize::from(out.decision().is_dropped()),
                t.2 + usize::from(out.refused().is_some()),
                t.3 + usize::from(out.reply().is_some()),
            )
        })
    };
    // The steps member gets what a host would supply: each message's route and the ledger
    // answers its plan asks for, taken from a first pass over the script.
    let core = RelayCore::new();
    let routes: Vec<_> = script
        .iter()
        .map(|(from, to, _)| ours.sessions().route(from, to))
        .collect();
    let answers: Vec<Answers> = {
        let ledger = MemoryStore::new();
        script
            .iter()
            .zip(&routes)
            .map(|((from, to, body), route)| {
                let inbound = Inbound::sms(from, to, body);
                let plan = core.plan(&inbound, *route, Settings::default()).unwrap();
                let mut a = Answers::new().intercept(Intercept::Allow);
                if let Some(k) = plan.sender_key() {
                    a = a.sender_state(ledger.state(k).unwrap());
                }
                if let Some(k) = plan.recipient_key() {
                    a = a.recipient_state(ledger.state(k).unwrap());
                }
                if let Some(c) = plan.finish(a).ledger() {
                    ledger.record(c.key(), c.state()).unwrap();
                }
                a
            })
            .collect()
    };
    let run_steps = || -> RelayTally {
        script.iter().zip(&routes).zip(&answers).fold(
            (0, 0, 0, 0),
            |t, (((from, to, body), route), a)| {
                let inbound = Inbound::sms(from, to, black_box(body));
                let out = core
                    .plan(&inbound, *route, Settings::default())
                    .unwrap()
                    .finish(*a);
                (
                    t.0 + usize::from(out.forwarded().is_some()),
                    t.1 + usize::from(out.decision().is_dropped()),
                    t.2 + usize::from(out.refused().is_some()),
                    t.3 + usize::from(out.reply().is_some()),
                )
            },
        )
    };
    let classifier = Classifier::default();
    let run_classify = || -> usize {
        script
            .iter()
            .filter(|(_, _, body)| {
                classifier
                    .classify(&Message::sms(black_box(body)))
                    .is_dropped()
            })
            .count()
    };
    let run_naive = || -> RelayTally {
        script.iter().fold((0, 0, 0, 0), |t, (from, to, body)| {
            let (sent, dropped, refused, reply) = naive.handle(from, to, black_box(body));
            (
                t.0 + usize::from(sent.is_some()),
                t.1 + usize::from(dropped),
                t.2 + usize::from(refused),
                t.3 + usize::from(reply.is_some()),
            )
        })
    };
    let expected = run_naive();
    assert_eq!(
        run_ours(),
        expected,
        "the two relays disagree on the script"
    );
    assert_eq!(
        run_steps(),
        expected,
        "the steps disagree with the naive relay"
    );
    assert_eq!(run_classify(), expected.1);
    assert!(
        expected.1 > 0 && expected.2 > 0,
        "the script exercises drops and refusals"
    );

    let mut g = cr.benchmark_group("relay");
    g.throughput(Throughput::Bytes(
        script.iter().map(|m| m.2.len() as u64).sum(),
    ));
    g.bench_function("steps", |b| b.iter(|| assert_eq!(run_steps(), expected)));
    g.bench_function("sync_memory", |b| {
        b.iter(|| assert_eq!(run_ours(), expected))
    });
    g.bench_function("naive", |b| b.iter(|| assert_eq!(run_naive(), expected)));
    g.bench_function("classify", |b| {
        b.iter(|| assert_eq!(run_classify(), expected.1))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = classify_benches, relay_benches
}
criterion_main!(benches);
