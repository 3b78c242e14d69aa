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
                .map(|k| (*k, support::DROPPED.contains(k)))
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
        Some((k, support::DROPPED.contains(&k)))
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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = classify_benches
}
criterion_main!(benches);
