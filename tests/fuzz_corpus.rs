//! The fuzz targets' checks on stable Rust: over the committed seed corpus in `fuzz/seeds/`
//! (including any crash found by fuzzing, kept as a regression case) and over generated
//! inputs. The same functions run under libFuzzer in `fuzz/`.

mod common;

use std::path::Path;

use common::invariants;
use proptest::prelude::*;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("seeds")
        .join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn classify_seed_corpus() {
    let seeds = seeds("classify");
    assert!(seeds.len() >= 20, "{} seeds", seeds.len());
    for (name, data) in seeds {
        let r = std::panic::catch_unwind(|| invariants::classify(&data));
        assert!(r.is_ok(), "seed {name} violates an invariant");
    }
}

#[test]
fn relay_seed_corpus() {
    let seeds = seeds("relay");
    assert!(seeds.len() >= 5, "{} seeds", seeds.len());
    for (name, data) in seeds {
        let r = std::panic::catch_unwind(|| invariants::relay(&data));
        assert!(r.is_ok(), "seed {name} violates an invariant");
    }
}

/// Bytes biased towards the interesting: keywords, White_Space, and UTF-8 fragments.
fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "STOP", "stop", "UNSTOP", "ARRET", "E", "T", "yes", "help", "opt", "out", "ALL",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::sample::select(vec![
            " ",
            "\t",
            "\u{000B}",
            "\u{00A0}",
            "\u{3000}",
            "\u{2028}",
            "\u{200B}",
            "\u{FEFF}",
            "\u{0302}",
            "!",
            ".",
            "\u{1F6D1}",
            "\u{017F}",
            "\u{FB06}",
            "\u{212A}",
            "\u{FF33}",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 1..4),
    ];
    (
        prop::collection::vec(any::<u8>(), 4),
        prop::collection::vec(piece, 0..8),
    )
        .prop_map(|(head, pieces)| {
            let mut v = head;
            v.extend(pieces.into_iter().flatten());
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn classify_generated(data in prop_oneof![interesting_bytes(), prop::collection::vec(any::<u8>(), 0..256)]) {
        invariants::classify(&data);
    }

    #[test]
    fn relay_generated(data in prop::collection::vec(any::<u8>(), 0..200)) {
        invariants::relay(&data);
    }
}
