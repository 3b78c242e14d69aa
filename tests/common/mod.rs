//! A deliberately naive reference for §§2-§4, written from the spec's text and sharing no
//! code with the crate: `str::trim`, unicase's allocating `to_folded_case`, and the keyword
//! tables typed out again by hand.

#![allow(dead_code)]

pub mod drivers;
pub mod faulty;
pub mod invariants;

use proxy_optout::{Category, Channel, Classifier, Matching, RuleSet};
use unicase::UniCase;

pub use Category::{Help, OptIn, OptOut};

/// (word, Proxy category, Proxy drops it, carrier category, only in proxy-2025)
pub type Row = (&'static str, Category, bool, Option<Category>, bool);

/// §§2, Proxy layer, with the carrier column from the carrier table.
pub const SPEC_TABLE: [Row; 17] = [
    ("STOP", OptOut, true, Some(OptOut), false),
    ("REVOKE", OptOut, true, Some(OptOut), true),
    ("OPTOUT", OptOut, true, Some(OptOut), true),
    ("UNSUBSCRIBE", OptOut, true, Some(OptOut), false),
    ("END", OptOut, true, Some(OptOut), false),
    ("CANCEL", OptOut, true, Some(OptOut), false),
    ("QUIT", OptOut, true, Some(OptOut), false),
    ("STOPALL", OptOut, true, Some(OptOut), false),
    ("ARRETT", OptOut, true, None, false),
    ("ARRET", OptOut, true, None, false),
    ("ARRETE", OptOut, true, None, false),
    ("UNSTOP", OptIn, true, Some(OptIn), false),
    ("START", OptIn, false, Some(OptIn), false),
    ("YES", OptIn, false, Some(OptIn), false),
    ("DEBUT", OptIn, false, None, false),
    ("HELP", Help, false, Some(Help), false),
    ("INFO", Help, false, Some(Help), false),
];

pub fn rows(rules: RuleSet) -> impl Iterator<Item = &'static Row> {
    SPEC_TABLE
        .iter()
        .filter(move |r| rules == RuleSet::Proxy2025 || !r.4)
}

/// What the spec says for one body under compatible matching and the default policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub keyword: Option<&'static str>,
    pub dropped: bool,
    pub category: Option<Category>,
    pub carrier: Option<Category>,
}

pub const FORWARD: Expected = Expected {
    keyword: None,
    dropped: false,
    category: None,
    carrier: None,
};

pub fn oracle(body: &str, channel: Channel, rule_set: RuleSet) -> Expected {
    if !matches!(channel, Channel::Sms | Channel::Mms) {
        return FORWARD;
    }
    let folded = UniCase::new(body.trim()).to_folded_case();
    match rows(rule_set).find(|r| r.0.to_lowercase() == folded) {
        Some(&(word, category, dropped, carrier, _)) => Expected {
            keyword: Some(word),
            dropped,
            category: Some(category),
            carrier,
        },
        None => FORWARD,
    }
}

pub fn observed(d: &proxy_optout::Decision) -> Expected {
    Expected {
        keyword: d.keyword(),
        dropped: d.is_dropped(),
        category: d.category(),
        carrier: d.carrier(),
    }
}

/// The 25 White_Space code points of §§3, typed out.
pub const WHITE_SPACE: [char; 25] = [
    '\u{0009}', '\u{000A}', '\u{000B}', '\u{000C}', '\u{000D}', '\u{0020}', '\u{0085}', '\u{00A0}',
    '\u{1680}', '\u{2000}', '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}',
    '\u{2007}', '\u{2008}', '\u{2009}', '\u{200A}', '\u{2028}', '\u{2029}', '\u{202F}', '\u{205F}',
    '\u{3000}',
];

/// A classifier for every rule set and matching mode, built once.
pub fn classifiers() -> &'static [(RuleSet, Matching, Classifier)] {
    static ALL: std::sync::OnceLock<Vec<(RuleSet, Matching, Classifier)>> =
        std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let mut v = Vec::new();
        for rules in RuleSet::ALL {
            for matching in Matching::ALL {
                let c = Classifier::builder()
                    .rules(rules)
                    .matching(matching)
                    .build()
                    .expect("built-in configuration");
                v.push((rules, matching, c));
            }
        }
        v
    })
}
