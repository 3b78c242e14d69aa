//! Exhaustive checks over every Unicode scalar value (issue 5; §§3):
//!
//! - which characters fold to ASCII under unicase's full folding, and that each of them
//!   matches inside a keyword exactly as the straightforward unicase comparison says (the
//!   differential test of the fast ASCII path, issue 4);
//! - every scalar value placed before, after and inside each keyword, under compatible and
//!   under lenient matching.

mod common;

use common::{oracle, SPEC_TABLE};
use proxy_optout::{lenient_form, Channel, Classifier, Matching, Message, RuleSet};
use unicase::UniCase;

fn all_chars() -> impl Iterator<Item = char> {
    (0..=0x10FFFFu32).filter_map(char::from_u32)
}

fn keywords() -> impl Iterator<Item = &'static str> {
    SPEC_TABLE.iter().map(|r| r.0)
}

fn insert(word: &str, at: usize, c: char) -> String {
    let mut s = String::with_capacity(word.len() + 4);
    s.push_str(&word[..at]);
    s.push(c);
    s.push_str(&word[at..]);
    s
}

fn folded(c: char) -> String {
    UniCase::unicode(c.to_string().as_str()).to_folded_case()
}

/// The non-ASCII characters whose full folding is ASCII, found by sweeping every scalar.
fn folds_to_ascii() -> Vec<(char, String)> {
    all_chars()
        .filter(|c| !c.is_ascii())
        .map(|c| (c, folded(c)))
        .filter(|(_, f)| f.is_ascii())
        .collect()
}

#[test]
fn the_characters_that_fold_to_ascii() {
    let found: Vec<char> = folds_to_ascii().into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        found,
        [
            '\u{00DF}',
            '\u{017F}',
            '\u{1E9E}',
            '\u{212A}',
            '\u{FB00}',
            '\u{FB01}',
            '\u{FB02}',
            '\u{FB03}',
            '\u{FB04}',
            '\u{FB05}',
            '\u{FB06}',
            '\u{1DF95}'
        ],
        "unicase's folding changed: review FOLDS_TO_ASCII in src/matching.rs"
    );
}

/// Every way of spelling a keyword with a character that folds to ASCII letters matches
/// exactly when unicase says it does. The body is the keyword with one occurrence of the
/// folded letters replaced by the character, in every case variant of the rest.
#[test]
fn differential_fast_path_against_unicase() {
    let compat = Classifier::default();
    let mut checked = 0;
    for (c, f) in folds_to_ascii() {
        for word in keywords() {
            let lower = word.to_lowercase();
            let mut from = 0;
            while let Some(at) = lower[from..].find(f.as_str()).map(|i| i + from) {
                for body in [
                    format!("{}{c}{}", &word[..at], &word[at + f.len()..]),
                    format!("{}{c}{}", &lower[..at], &lower[at + f.len()..]),
                ] {
                    let straightforward = keywords().find(|k| unicase::eq(body.as_str(), *k));
                    assert_eq!(
                        compat.find_keyword(&body).map(|k| k.word()),
                        straightforward,
                        "{body:?}"
                    );
                    assert_eq!(straightforward, Some(word), "{body:?} spells {word}");
                    checked += 1;
                }
                from = at + 1;
            }
        }
    }
    // ſ and the st ligatures in STOP, STOPALL, START, UNSTOP, UNSUBSCRIBE...; K in REVOKE.
    assert!(checked >= 30, "only {checked} spellings checked");
}

/// Compatible matching: the decision is the keyword's exactly when the added character is
/// White_Space before or after it; otherwise the body is a keyword only if it is itself one
/// under unicase folding (ARRET + E, ARRET + T, ...), and forwarded in every other case.
#[test]
fn every_scalar_around_and_inside_every_keyword_compatible() {
    let compat = Classifier::default();
    let foldable: Vec<char> = folds_to_ascii().into_iter().map(|(c, _)| c).collect();
    let mut keyword_hits = 0u32;
    for word in keywords() {
        let expected_kw = oracle(word, Channel::Sms, RuleSet::Proxy2025);
        for c in all_chars() {
            // Only ASCII and the characters that fold to ASCII can turn a keyword into
            // another keyword; everything else leaves a non-ASCII letter in the fold.
            let could_spell = c.is_ascii() || foldable.contains(&c);
            for at in 0..=word.len() {
                let body = insert(word, at, c);
                let d = compat.classify(&Message::sms(&body));
                let end = at == 0 || at == word.len();
                if c.is_whitespace() && end {
                    assert_eq!(d.keyword(), expected_kw.keyword, "{body:?}");
                    assert_eq!(d.is_dropped(), expected_kw.dropped, "{body:?}");
                } else if could_spell {
                    let expected = oracle(&body, Channel::Sms, RuleSet::Proxy2025);
                    assert_eq!(d.keyword(), expected.keyword, "{body:?}");
                    keyword_hits += u32::from(expected.keyword.is_some());
                } else {
                    assert_eq!(d.keyword(), None, "{body:?} ({:?}) must be forwarded", c);
                    assert!(d.is_forwarded(), "{body:?}");
                }
            }
        }
    }
    // ARRET+E, ARRET+T (at the end and inside), and the like.
    assert!(keyword_hits >= 4, "{keyword_hits}");
}

/// Lenient matching against its documented folds: `lenient_form` is the definition, applied
/// to the character in context (inside the body, or trailing), and the streaming matcher must
/// agree with it for every scalar at every position of every keyword.
#[test]
fn every_scalar_around_and_inside_every_keyword_lenient() {
    let lenient = Classifier::builder()
        .matching(Matching::Lenient)
        .build()
        .unwrap();
    let exact = Classifier::default();
    let mut keyword_hits = 0u32;
    for c in all_chars() {
        // What lenient folding makes of `c` followed by a letter, and after a letter at the
        // end of the body.
        let inside = lenient_form(&format!("{c}a"));
        let inside = inside.strip_suffix('a').unwrap_or(&inside).to_string();
        let trailing = lenient_form(&format!("a{c}"));
        let trailing = trailing.strip_prefix('a').unwrap_or(&trailing).to_string();
        for word in keywords() {
            for at in 0..=word.len() {
                let piece = if at == word.len() { &trailing } else { &inside };
                let body = insert(word, at, c);
                let got = lenient.find_keyword(&body).map(|k| k.word());
                let form = format!("{}{piece}{}", &word[..at], &word[at..]);
                let expected = exact.find_keyword(&form).map(|k| k.word());
                assert_eq!(got, expected, "{body:?} folds to {form:?}");
                keyword_hits += u32::from(expected.is_some());
            }
        }
    }
    // Whitespace, invisible characters and marks anywhere; trailing punctuation and emoji.
    assert!(keyword_hits > 1_000, "{keyword_hits}");
}

/// The Latin diacritic fold agrees with canonical decomposition: a Latin-1 or Latin
/// Extended-A letter that decomposes to an ASCII letter plus marks folds to that letter.
/// Letters with a stroke, which do not decompose, fold to their base by design.
#[test]
fn latin_fold_agrees_with_canonical_decomposition() {
    use unicode_normalization::UnicodeNormalization;
    let by_design = [
        ('Ø', 'O'),
        ('ø', 'o'),
        ('Đ', 'D'),
        ('đ', 'd'),
        ('Ð', 'D'),
        ('ð', 'd'),
        ('Ħ', 'H'),
        ('ħ', 'h'),
        ('ı', 'i'),
        ('Ł', 'L'),
        ('ł', 'l'),
        ('Ŀ', 'L'),
        ('ŀ', 'l'),
        ('Ŧ', 'T'),
        ('ŧ', 't'),
        ('ſ', 's'),
    ];
    for c in '\u{00C0}'..='\u{017F}' {
        let nfd: Vec<char> = c.nfd().collect();
        let form = lenient_form(&c.to_string());
        let expected = match nfd.as_slice() {
            [base, marks @ ..] if base.is_ascii_alphabetic() && !marks.is_empty() => {
                base.to_string()
            }
            _ => match by_design.iter().find(|(from, _)| *from == c) {
                Some((_, to)) => to.to_string(),
                None => c.to_string(),
            },
        };
        assert_eq!(form, expected, "{c:?} (U+{:04X})", c as u32);
    }
}
