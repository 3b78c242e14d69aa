//! The keyword tables of §§2, in one place: Proxy's drop/forward lists per rule set, the
//! carrier (STOP filtering) list, and the optional language packs.

use core::fmt;
use core::str::FromStr;

use crate::decision::Action;
use crate::error::{parse_named, ParseError};

/// What a keyword asks for.
///
/// `Decision::category` uses `Option<Category>`, with `None` for ordinary messages; in JSON
/// that is `"none"`. New categories may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout::Category;
///
/// assert_eq!(Category::OptOut.as_str(), "opt_out");
/// assert_eq!(Category::OptOut.opt_out_type(), "STOP");
/// assert_eq!("help".parse::<Category>(), Ok(Category::Help));
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Category {
    /// STOP and its kin: the sender withdraws consent.
    OptOut,
    /// START and its kin: the sender gives consent again.
    OptIn,
    /// HELP and INFO.
    Help,
}

impl Category {
    /// Every category.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Category::ALL.len(), 3);
    /// ```
    pub const ALL: [Category; 3] = [Category::OptOut, Category::OptIn, Category::Help];

    /// The snake-case name used in JSON: `opt_out`, `opt_in`, `help`.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Category::OptIn.as_str(), "opt_in");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::OptOut => "opt_out",
            Category::OptIn => "opt_in",
            Category::Help => "help",
        }
    }

    /// The label Twilio puts in a webhook's `OptOutType` field: `STOP`, `START` or `HELP`.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Category::OptIn.opt_out_type(), "START");
    /// ```
    #[must_use]
    pub const fn opt_out_type(self) -> &'static str {
        match self {
            Category::OptOut => "STOP",
            Category::OptIn => "START",
            Category::Help => "HELP",
        }
    }

    /// The category of a Twilio `OptOutType` label (`STOP`, `START`, `HELP`; ASCII case is
    /// ignored), as an inbound webhook carries it.
    ///
    /// # Errors
    ///
    /// A [`ParseError`] naming the label when it is none of the three.
    ///
    /// ```
    /// use proxy_optout::Category;
    /// assert_eq!(Category::from_opt_out_type("STOP"), Ok(Category::OptOut));
    /// assert!(Category::from_opt_out_type("UNSUBSCRIBE").is_err());
    /// ```
    pub fn from_opt_out_type(label: &str) -> Result<Category, ParseError> {
        parse_named(
            &Category::ALL,
            Category::opt_out_type,
            label,
            "OptOutType",
            "STOP, START, HELP",
        )
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = ParseError;

    /// Parses `opt_out`, `opt_in` or `help` (`opt-out` and `opt-in` too); ASCII case is
    /// ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hyphenated = |c: Category| match c {
            Category::OptOut => "opt-out",
            Category::OptIn => "opt-in",
            Category::Help => "help",
        };
        parse_named(
            &Category::ALL,
            Category::as_str,
            s,
            "category",
            "opt_out, opt_in, help",
        )
        .or_else(|e| parse_named(&Category::ALL, hyphenated, s, "", "").map_err(|_| e))
    }
}

/// Which edition of Twilio Proxy's keyword list to apply (§§2).
///
/// New rule sets may be added in minor releases; the default stays the newest documented one
/// only in a release whose CHANGELOG says so.
///
/// # Example
///
/// ```
/// use proxy_optout::RuleSet;
///
/// assert_eq!(RuleSet::default(), RuleSet::Proxy2025);
/// assert_eq!("proxy-2020".parse::<RuleSet>(), Ok(RuleSet::Proxy2020));
/// assert!(RuleSet::Proxy2025.keywords().any(|k| k.word() == "REVOKE"));
/// assert!(!RuleSet::Proxy2020.keywords().any(|k| k.word() == "REVOKE"));
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum RuleSet {
    /// The list from 2020-09-15 (case-insensitive) until REVOKE and OPTOUT were added.
    #[cfg_attr(feature = "serde", serde(rename = "proxy-2020"))]
    Proxy2020,
    /// The current list: `proxy-2020` plus REVOKE and OPTOUT (carrier list of 2025-05-14).
    #[default]
    #[cfg_attr(feature = "serde", serde(rename = "proxy-2025"))]
    Proxy2025,
}

impl RuleSet {
    /// Every rule set, oldest first.
    ///
    /// ```
    /// assert_eq!(proxy_optout::RuleSet::ALL.len(), 2);
    /// ```
    pub const ALL: [RuleSet; 2] = [RuleSet::Proxy2020, RuleSet::Proxy2025];

    /// The name used on the command line: `proxy-2020` or `proxy-2025`.
    ///
    /// ```
    /// assert_eq!(proxy_optout::RuleSet::Proxy2025.as_str(), "proxy-2025");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleSet::Proxy2020 => "proxy-2020",
            RuleSet::Proxy2025 => "proxy-2025",
        }
    }

    /// The built-in keywords of this rule set, Proxy and carrier layer together.
    ///
    /// ```
    /// use proxy_optout::{Category, RuleSet};
    ///
    /// let arret = RuleSet::Proxy2025.keywords().find(|k| k.word() == "ARRET").unwrap();
    /// assert_eq!(arret.category(), Category::OptOut);
    /// assert_eq!(arret.carrier(), None); // Proxy drops it; the carrier layer ignores it
    /// assert_eq!(RuleSet::Proxy2025.keywords().count(), 17);
    /// assert_eq!(RuleSet::Proxy2020.keywords().count(), 15);
    /// ```
    pub fn keywords(self) -> impl Iterator<Item = Keyword> + Clone {
        RuleSet::builtin_entries()
            .iter()
            .filter(move |(since, _)| *since <= self)
            .map(|&(_, k)| k)
    }
}

impl RuleSet {
    /// The whole built-in table, each keyword with the first rule set that has it.
    pub(crate) const fn builtin_entries() -> &'static [(RuleSet, Keyword)] {
        &BUILTIN
    }
}

impl fmt::Display for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RuleSet {
    type Err = ParseError;

    /// Parses `proxy-2020` or `proxy-2025`; ASCII case is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_named(
            &RuleSet::ALL,
            RuleSet::as_str,
            s,
            "rule set",
            "proxy-2020, proxy-2025",
        )
    }
}

/// One keyword: its canonical spelling, what the Proxy layer does with it, and its effect on
/// the carrier layer (STOP filtering).
///
/// # Example
///
/// ```
/// use proxy_optout::{Action, Category, Keyword};
///
/// // A custom keyword: opt-out words are dropped by Proxy and opt the pair out.
/// let halt = Keyword::new("HALT", Category::OptOut);
/// assert_eq!(halt.proxy_action(), Action::Drop);
/// assert_eq!(halt.carrier(), Some(Category::OptOut));
///
/// // A Proxy-only word, forwarded, with no carrier effect.
/// let hola = Keyword::new("HOLA", Category::OptIn).without_carrier_effect();
/// assert_eq!(hola.proxy_action(), Action::Forward);
/// assert_eq!(hola.carrier(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Keyword {
    word: &'static str,
    category: Category,
    action: Action,
    carrier: Option<Category>,
}

impl Keyword {
    /// A keyword with Proxy's usual treatment of its category: opt-out words are dropped,
    /// opt-in and help words forwarded; the carrier layer gives it the same category.
    ///
    /// Write `word` as it should be reported (canonically upper-case); matching ignores case.
    /// [`ClassifierBuilder::build`](crate::ClassifierBuilder::build) validates it.
    ///
    /// ```
    /// let k = proxy_optout::Keyword::new("AYUDA", proxy_optout::Category::Help);
    /// assert_eq!(k.word(), "AYUDA");
    /// ```
    #[must_use]
    pub const fn new(word: &'static str, category: Category) -> Self {
        let action = match category {
            Category::OptOut => Action::Drop,
            Category::OptIn | Category::Help => Action::Forward,
        };
        Keyword {
            word,
            category,
            action,
            carrier: Some(category),
        }
    }

    /// The same keyword, with the Proxy layer dropping or forwarding it in default mode (the
    /// way UNSTOP is an opt-in word that Proxy drops). [`Action::Block`] and
    /// [`Action::Withhold`] count as [`Action::Drop`]: only the intercept hook blocks, and only
    /// the relay withholds.
    ///
    /// ```
    /// use proxy_optout::{Action, Category, Keyword};
    /// let k = Keyword::new("RESUME", Category::OptIn).with_proxy_action(Action::Drop);
    /// assert_eq!(k.proxy_action(), Action::Drop);
    /// ```
    #[must_use]
    pub const fn with_proxy_action(mut self, action: Action) -> Self {
        self.action = match action {
            Action::Forward => Action::Forward,
            _ => Action::Drop,
        };
        self
    }

    /// The same keyword, unknown to the carrier layer: no ledger change, no auto-reply.
    ///
    /// ```
    /// use proxy_optout::{Category, Keyword};
    /// assert_eq!(Keyword::new("X", Category::Help).without_carrier_effect().carrier(), None);
    /// ```
    #[must_use]
    pub const fn without_carrier_effect(mut self) -> Self {
        self.carrier = None;
        self
    }

    const fn proxy_only(word: &'static str, category: Category) -> Self {
        Keyword::new(word, category).without_carrier_effect()
    }

    /// The canonical spelling, as reported in decisions.
    ///
    /// ```
    /// let k = proxy_optout::RuleSet::Proxy2025.keywords().next().unwrap();
    /// assert_eq!(k.word(), "STOP");
    /// ```
    #[must_use]
    pub const fn word(&self) -> &'static str {
        self.word
    }

    /// The keyword's category in the Proxy layer.
    ///
    /// ```
    /// use proxy_optout::{Category, Keyword};
    /// assert_eq!(Keyword::new("ALTO", Category::OptOut).category(), Category::OptOut);
    /// ```
    #[must_use]
    pub const fn category(&self) -> Category {
        self.category
    }

    /// What the Proxy layer does with it in default mode: [`Action::Drop`] or
    /// [`Action::Forward`].
    ///
    /// ```
    /// use proxy_optout::{Action, RuleSet};
    /// let unstop = RuleSet::Proxy2025.keywords().find(|k| k.word() == "UNSTOP").unwrap();
    /// assert_eq!(unstop.proxy_action(), Action::Drop);
    /// ```
    #[must_use]
    pub const fn proxy_action(&self) -> Action {
        self.action
    }

    /// Its category on the carrier layer (STOP filtering), or `None` if the carrier layer does
    /// not know it.
    ///
    /// ```
    /// use proxy_optout::{Category, RuleSet};
    /// let debut = RuleSet::Proxy2025.keywords().find(|k| k.word() == "DEBUT").unwrap();
    /// assert_eq!(debut.category(), Category::OptIn);
    /// assert_eq!(debut.carrier(), None);
    /// ```
    #[must_use]
    pub const fn carrier(&self) -> Option<Category> {
        self.carrier
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word)
    }
}

use Category::{Help, OptIn, OptOut};
use RuleSet::{Proxy2020, Proxy2025};

/// Every built-in keyword with the first rule set that has it. The order is the order of
/// §§2 and of [`RuleSet::keywords`].
const BUILTIN: [(RuleSet, Keyword); 17] = [
    // Opt-out: never forwarded from either participant (seed, item 1); the carrier layer opts
    // the pair out.
    (Proxy2020, Keyword::new("STOP", OptOut)),
    // REVOKE and OPTOUT: on the carrier list since 2025-05-14, and in Proxy's since then.
    (Proxy2025, Keyword::new("REVOKE", OptOut)),
    (Proxy2025, Keyword::new("OPTOUT", OptOut)),
    (Proxy2020, Keyword::new("UNSUBSCRIBE", OptOut)),
    (Proxy2020, Keyword::new("END", OptOut)),
    (Proxy2020, Keyword::new("CANCEL", OptOut)),
    (Proxy2020, Keyword::new("QUIT", OptOut)),
    (Proxy2020, Keyword::new("STOPALL", OptOut)),
    // French forms Proxy drops although the carrier layer does not know them.
    (Proxy2020, Keyword::proxy_only("ARRETT", OptOut)),
    (Proxy2020, Keyword::proxy_only("ARRET", OptOut)),
    (Proxy2020, Keyword::proxy_only("ARRETE", OptOut)),
    // Opt-in: forwarded "to ensure that potentially valid messages are not lost" (item 2),
    // except UNSTOP.
    (
        Proxy2020,
        Keyword::new("UNSTOP", OptIn).with_proxy_action(Action::Drop),
    ),
    (Proxy2020, Keyword::new("START", OptIn)),
    (Proxy2020, Keyword::new("YES", OptIn)),
    (Proxy2020, Keyword::proxy_only("DEBUT", OptIn)),
    // Help: forwarded; the carrier layer replies.
    (Proxy2020, Keyword::new("HELP", Help)),
    (Proxy2020, Keyword::new("INFO", Help)),
];

/// Words that can never be removed from a classifier (§§9).
pub(crate) const MANDATORY: [&str; 4] = ["STOP", "START", "UNSTOP", "HELP"];

/// An optional set of keywords in another language (§§9). Off by default: Twilio Proxy
/// knows none of them beyond the French words in its drop list.
///
/// # Example
///
/// ```
/// use proxy_optout::{Classifier, LanguagePack, Message};
///
/// let c = Classifier::builder().language(LanguagePack::Spanish).build()?;
/// let d = c.classify(&Message::sms("alto"));
/// assert!(d.is_dropped());
/// assert_eq!(d.keyword(), Some("ALTO"));
/// # Ok::<(), proxy_optout::ConfigError>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum LanguagePack {
    /// ARRET and ARRÊT (opt-out, now also on the carrier layer), AIDE (help).
    French,
    /// ALTO (opt-out), AYUDA (help).
    Spanish,
}

impl LanguagePack {
    /// Every pack.
    ///
    /// ```
    /// assert_eq!(proxy_optout::LanguagePack::ALL.len(), 2);
    /// ```
    pub const ALL: [LanguagePack; 2] = [LanguagePack::French, LanguagePack::Spanish];

    /// The pack's lowercase name.
    ///
    /// ```
    /// assert_eq!(proxy_optout::LanguagePack::French.as_str(), "french");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            LanguagePack::French => "french",
            LanguagePack::Spanish => "spanish",
        }
    }

    /// The pack's keywords. A word already in the table (ARRET) is replaced by the pack's
    /// entry when the pack is added.
    ///
    /// ```
    /// use proxy_optout::LanguagePack;
    /// let words: Vec<_> = LanguagePack::French.keywords().iter().map(|k| k.word()).collect();
    /// assert_eq!(words, ["ARRET", "ARRÊT", "AIDE"]);
    /// ```
    #[must_use]
    pub const fn keywords(self) -> &'static [Keyword] {
        match self {
            LanguagePack::French => &FRENCH,
            LanguagePack::Spanish => &SPANISH,
        }
    }
}

impl fmt::Display for LanguagePack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LanguagePack {
    type Err = ParseError;

    /// Parses `french` or `spanish` (or `fr`, `es`); ASCII case is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let code = |p: LanguagePack| match p {
            LanguagePack::French => "fr",
            LanguagePack::Spanish => "es",
        };
        parse_named(
            &LanguagePack::ALL,
            LanguagePack::as_str,
            s,
            "language pack",
            "french, spanish",
        )
        .or_else(|e| parse_named(&LanguagePack::ALL, code, s, "", "").map_err(|_| e))
    }
}

static FRENCH: [Keyword; 3] = [
    Keyword::new("ARRET", OptOut),
    Keyword::new("ARRÊT", OptOut),
    Keyword::new("AIDE", Help),
];

static SPANISH: [Keyword; 2] = [Keyword::new("ALTO", OptOut), Keyword::new("AYUDA", Help)];
