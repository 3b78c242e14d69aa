//! The one place where the Proxy decision is made: [`classify`], and the build-once
//! [`Classifier`] for rule sets, matching modes and extensions.

use alloc::string::String;
use alloc::vec::Vec;

use crate::decision::{Action, Decision};
use crate::error::{ConfigError, Utf8Error};
use crate::hints;
use crate::keywords::{Category, Keyword, LanguagePack, RuleSet, MANDATORY};
use crate::matching::{find_lenient, lenient_chars, trim, Matching};
use crate::message::{Channel, Message};
use crate::policy::{Intercept, ProxyPolicy, StopFilterFlag, StopFiltering, TwilioProxy};
use crate::table::{Table, MAX_KEYWORD_BYTES};

/// Classifies a message with Twilio Proxy's defaults: rule set `proxy-2025`, compatible
/// matching, flag off, STOP filtering on, no intercept hook.
///
/// Total and allocation-free: every `&str` is a valid body, and the cost does not grow with
/// the length of an ordinary message.
///
/// # Example
///
/// ```
/// use proxy_optout::{classify, Category, Channel, Message};
///
/// assert!(classify(&Message::sms("STOP")).is_dropped());
/// assert!(classify(&Message::sms("stop\u{00A0}")).is_dropped());
/// assert!(classify(&Message::sms("Stop please")).is_forwarded());
/// assert_eq!(classify(&Message::sms("Yes")).category(), Some(Category::OptIn));
/// assert!(classify(&Message::new("STOP", Channel::WhatsApp)).is_forwarded());
/// ```
#[inline]
pub fn classify(message: &Message<'_>) -> Decision {
    DEFAULT.classify(message)
}

/// Classifies an SMS body given as bytes, with the defaults of [`classify`].
///
/// # Errors
///
/// [`Utf8Error`] with the offset of the first invalid byte when `body` is not UTF-8.
///
/// # Example
///
/// ```
/// use proxy_optout::classify_bytes;
///
/// assert!(classify_bytes(b"STOP\r\n")?.is_dropped());
/// assert_eq!(classify_bytes(b"STOP \xC0").unwrap_err().offset(), 5);
/// # Ok::<(), proxy_optout::Utf8Error>(())
/// ```
pub fn classify_bytes(body: &[u8]) -> Result<Decision, Utf8Error> {
    DEFAULT.classify_bytes(body, Channel::Sms)
}

static DEFAULT: Classifier = Classifier::builtin(RuleSet::Proxy2025, Matching::Compatible);
static PROXY_2020: Classifier = Classifier::builtin(RuleSet::Proxy2020, Matching::Compatible);

/// A configured classifier: a rule set, a matching mode and any extensions, compiled once.
///
/// `Send + Sync`, cheap to share behind a reference or an `Arc`; classifying allocates
/// nothing. [`Classifier::default()`] is Twilio Proxy's behaviour, the same as [`classify`].
///
/// # Example
///
/// ```
/// use proxy_optout::{Category, Classifier, LanguagePack, Matching, Message, RuleSet};
///
/// assert!(format!("{:?}", Classifier::default()).starts_with(
///     "Classifier { rules: Proxy2025, matching: Compatible, revocation_hints: false, \
///      keywords: [\"STOP\", \"REVOKE\"",
/// ));
///
/// let c = Classifier::builder()
///     .rules(RuleSet::Proxy2020)
///     .matching(Matching::Lenient)
///     .language(LanguagePack::French)
///     .keyword("HALT", Category::OptOut)
///     .build()?;
///
/// assert!(c.classify(&Message::sms("Arrêt !")).is_dropped());
/// assert!(c.classify(&Message::sms("halt")).is_dropped());
/// assert!(c.classify(&Message::sms("REVOKE")).is_forwarded()); // not in proxy-2020
/// # Ok::<(), proxy_optout::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Classifier {
    rules: RuleSet,
    matching: Matching,
    hints: bool,
    table: Table,
}

impl core::fmt::Debug for Classifier {
    /// The configuration and the keywords; not the lookup tables, which say nothing more.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        struct Words<'a>(&'a Classifier);
        impl core::fmt::Debug for Words<'_> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_list()
                    .entries(self.0.keywords().map(|k| k.word()))
                    .finish()
            }
        }
        f.debug_struct("Classifier")
            .field("rules", &self.rules)
            .field("matching", &self.matching)
            .field("revocation_hints", &self.hints)
            .field("keywords", &Words(self))
            .finish()
    }
}

impl Default for Classifier {
    fn default() -> Self {
        DEFAULT.clone()
    }
}

impl Classifier {
    const fn builtin(rules: RuleSet, matching: Matching) -> Self {
        Classifier {
            rules,
            matching,
            hints: false,
            table: Table::builtin(rules),
        }
    }

    /// A builder, starting from Twilio Proxy's defaults.
    ///
    /// ```
    /// let c = proxy_optout::Classifier::builder().build()?;
    /// assert_eq!(c.rules(), proxy_optout::RuleSet::Proxy2025);
    /// # Ok::<(), proxy_optout::ConfigError>(())
    /// ```
    pub fn builder() -> ClassifierBuilder {
        ClassifierBuilder::default()
    }

    /// The rule set this classifier applies.
    ///
    /// ```
    /// use proxy_optout::{Classifier, RuleSet};
    /// assert_eq!(Classifier::default().rules(), RuleSet::Proxy2025);
    /// ```
    #[must_use]
    pub fn rules(&self) -> RuleSet {
        self.rules
    }

    /// The matching mode.
    ///
    /// ```
    /// use proxy_optout::{Classifier, Matching};
    /// assert_eq!(Classifier::default().matching(), Matching::Compatible);
    /// ```
    #[must_use]
    pub fn matching(&self) -> Matching {
        self.matching
    }

    /// Every keyword this classifier knows, Proxy and carrier layer together.
    ///
    /// ```
    /// let c = proxy_optout::Classifier::default();
    /// assert!(c.keywords().any(|k| k.word() == "UNSTOP"));
    /// assert_eq!(c.keywords().count(), 17);
    /// ```
    pub fn keywords(&self) -> impl ExactSizeIterator<Item = Keyword> + '_ {
        self.table.entries().iter().copied()
    }

    /// The keyword `body` is, under this classifier's matching, whatever its channel.
    ///
    /// ```
    /// let c = proxy_optout::Classifier::default();
    /// assert_eq!(c.find_keyword("  \u{017F}top ").map(|k| k.word()), Some("STOP"));
    /// assert_eq!(c.find_keyword("stop it"), None);
    /// ```
    #[must_use]
    #[inline]
    pub fn find_keyword(&self, body: &str) -> Option<Keyword> {
        match self.matching {
            Matching::Compatible => self.table.find(trim(body)),
            Matching::Lenient => find_lenient(&self.table, body),
        }
        .copied()
    }

    /// Classifies a message under Twilio Proxy's default policy ([`TwilioProxy`]).
    ///
    /// ```
    /// use proxy_optout::{Classifier, Message};
    /// let c = Classifier::default();
    /// assert!(c.classify(&Message::sms("\tOPTOUT\n")).is_dropped());
    /// ```
    #[inline]
    pub fn classify(&self, message: &Message<'_>) -> Decision {
        self.decide(message, &TwilioProxy)
    }

    /// Classifies a body given as bytes, on the given channel, under the default policy.
    ///
    /// # Errors
    ///
    /// [`Utf8Error`] with the offset of the first invalid byte when `body` is not UTF-8.
    ///
    /// ```
    /// use proxy_optout::{Channel, Classifier};
    /// let c = Classifier::default();
    /// assert!(c.classify_bytes(b"HELP", Channel::Mms)?.is_forwarded());
    /// assert!(c.classify_bytes(b"\xFF", Channel::Sms).is_err());
    /// # Ok::<(), proxy_optout::Utf8Error>(())
    /// ```
    pub fn classify_bytes(&self, body: &[u8], channel: Channel) -> Result<Decision, Utf8Error> {
        let text = core::str::from_utf8(body).map_err(|e| Utf8Error::from_std(body, e))?;
        Ok(self.classify(&Message::new(text, channel)))
    }

    /// Classifies a message under the host's policy: the decision of §§4 (flag off) or
    /// §6 (flag on), with the intercept hook consulted for anything that would be forwarded.
    ///
    /// ```
    /// use proxy_optout::{Classifier, Decision, Intercept, Message, ProxyPolicy};
    ///
    /// struct BlockEverything;
    /// impl ProxyPolicy for BlockEverything {
    ///     fn intercept(&self, _: &Message<'_>, _: &Decision) -> Intercept {
    ///         Intercept::Block
    ///     }
    /// }
    ///
    /// let c = Classifier::default();
    /// assert!(c.decide(&Message::sms("hello"), &BlockEverything).is_blocked());
    /// // The hook is never offered a dropped keyword, so it cannot change it.
    /// assert!(c.decide(&Message::sms("STOP"), &BlockEverything).is_dropped());
    /// ```
    #[inline]
    pub fn decide<P: ProxyPolicy + ?Sized>(&self, message: &Message<'_>, policy: &P) -> Decision {
        let decision = self.before_hook(message, policy);
        if decision.is_forwarded() && policy.intercept(message, &decision) == Intercept::Block {
            decision.blocked()
        } else {
            decision
        }
    }

    /// The decision before the intercept hook: the keyword tables and the account settings.
    #[inline]
    pub(crate) fn before_hook<P: ProxyPolicy + ?Sized>(
        &self,
        message: &Message<'_>,
        policy: &P,
    ) -> Decision {
        let keyword = if message.channel().has_keyword_handling() {
            self.find_keyword(message.body())
        } else {
            None
        };
        let Some(keyword) = keyword else {
            let hint = if self.hints {
                hints::find(message.body())
            } else {
                None
            };
            return Decision::new(Action::Forward, None, None, hint);
        };
        let filtering = policy.stop_filtering(message.to_number()) == StopFiltering::On;
        let drop = keyword.proxy_action() == Action::Drop
            && (filtering || policy.stop_filter_flag() == StopFilterFlag::Ignore);
        let action = if drop { Action::Drop } else { Action::Forward };
        let carrier = if filtering { keyword.carrier() } else { None };
        Decision::new(action, Some(keyword), carrier, None)
    }
}

/// Builds a [`Classifier`]: rule set, matching mode, language packs, custom keywords and
/// revocation hints. Validation happens once, in [`build`](ClassifierBuilder::build).
///
/// # Example
///
/// ```
/// use proxy_optout::{Category, Classifier, ConfigError, Message};
///
/// // A ride-hailing host where "cancel" is an ordinary thing to say to a driver.
/// let c = Classifier::builder().remove_keyword("CANCEL").build()?;
/// assert!(c.classify(&Message::sms("Cancel")).is_forwarded());
///
/// let err = Classifier::builder().keyword("stop", Category::OptOut).build().unwrap_err();
/// assert!(matches!(err, ConfigError::DuplicateKeyword { .. }));
/// # Ok::<(), ConfigError>(())
/// ```
#[must_use]
#[derive(Clone, Debug, Default)]
pub struct ClassifierBuilder {
    rules: RuleSet,
    matching: Matching,
    hints: bool,
    packs: Vec<LanguagePack>,
    added: Vec<Keyword>,
    removed: Vec<String>,
}

impl ClassifierBuilder {
    /// The rule set (default [`RuleSet::Proxy2025`]).
    ///
    /// ```
    /// use proxy_optout::{Classifier, RuleSet};
    /// let c = Classifier::builder().rules(RuleSet::Proxy2020).build()?;
    /// assert_eq!(c.rules(), RuleSet::Proxy2020);
    /// # Ok::<(), proxy_optout::ConfigError>(())
    /// ```
    pub fn rules(mut self, rules: RuleSet) -> Self {
        self.rules = rules;
        self
    }

    /// The matching mode (default [`Matching::Compatible`]).
    ///
    /// ```
    /// use proxy_optout::{Classifier, Matching};
    /// let c = Classifier::builder().matching(Matching::Lenient).build()?;
    /// assert_eq!(c.matching(), Matching::Lenient);
    /// # Ok::<(), proxy_optout::ConfigError>(())
    /// ```
    pub fn matching(mut self, matching: Matching) -> Self {
        self.matching = matching;
        self
    }

    /// Adds a language pack's keywords (an extension; off by default).
    ///
    /// ```
    /// use proxy_optout::{Category, Classifier, LanguagePack, Message};
    /// let c = Classifier::builder().language(LanguagePack::French).build()?;
    /// let d = c.classify(&Message::sms("aide"));
    /// assert_eq!(d.category(), Some(Category::Help));
    /// assert!(d.is_forwarded());
    /// # Ok::<(), proxy_optout::ConfigError>(())
    /// ```
    pub fn language(mut self, pack: LanguagePack) -> Self {
        if !self.packs.contains(&pack) {
            self.packs.push(pack);
        }
        self
    }

    /// Adds a custom keyword with Proxy's usual treatment of its category (see
    /// [`Keyword::new`]). Write it as it should be reported; matching ignores case.
    ///
    /// ```
    /// use proxy_optout::{Category, Classifier, Message};
    /// let c = Classifier::builder().keyword("PAUSE", Category::OptOut).build()?;
    /// assert_eq!(c.classify(&Message::sms("pause")).keyword(), Some("PAUSE"));
    /// # Ok::<(), proxy_optout::ConfigError>(())
    /// ```
    pub fn keyword(self, word: &'static str, category: Category) -> Self {
        self.add_keyword(Keyword::new(word, category))
    }

    /// Adds a custom keyword with full control over both layers.
    ///
    /// ```
    /// use proxy_optout::{Action, Category, Classifier, Keyword, Message};
    /// let k = Keyword::new("RESUME", Category::OptIn).with_proxy_action(Action::Drop);
    /// let c = Classifier::builder().add_keyword(k).build()?;
    /// assert!(c.classify(&Message::sms("Resume")).is_dropped());
    /// # Ok::<(), proxy_optout::ConfigError>(())
    /// ```
    pub fn add_keyword(mut self, keyword: Keyword) -> Self {
        self.added.push(keyword);
        self
    }

    /// Removes a built-in or pack keyword (matched case-insensitively). STOP, START, UNSTOP
    /// and HELP cannot be removed.
    ///
    /// ```
    /// use proxy_optout::{Classifier, Message};
    /// let c = Classifier::builder().remove_keyword("end").build()?;
    /// assert!(c.classify(&Message::sms("END")).is_forwarded());
    /// # Ok::<(), proxy_optout::ConfigError>(())
    /// ```
    pub fn remove_keyword(mut self, word: &str) -> Self {
        self.removed.push(word.into());
        self
    }

    /// Attaches a [`RevocationHint`](crate::RevocationHint) to forwarded messages that read
    /// like a revocation of consent (an extension; off by default).
    ///
    /// ```
    /// use proxy_optout::{Classifier, Message};
    /// let c = Classifier::builder().revocation_hints().build()?;
    /// assert!(c.classify(&Message::sms("unsubscribe me")).revocation_hint().is_some());
    /// # Ok::<(), proxy_optout::ConfigError>(())
    /// ```
    pub fn revocation_hints(mut self) -> Self {
        self.hints = true;
        self
    }

    /// Validates the configuration and compiles the classifier.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the offending keyword: empty, too long, containing
    /// whitespace or a character that is not a letter or digit, duplicated, not in
    /// canonical form, mandatory (for removal), or unknown (for removal).
    ///
    /// ```
    /// use proxy_optout::{Classifier, ConfigError};
    /// let err = Classifier::builder().remove_keyword("FOO").build().unwrap_err();
    /// assert_eq!(err, ConfigError::UnknownKeyword { keyword: "FOO".into() });
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn build(&self) -> Result<Classifier, ConfigError> {
        let customized =
            !(self.packs.is_empty() && self.added.is_empty() && self.removed.is_empty());
        let table = if customized {
            let entries = self.entries()?;
            match self.matching {
                Matching::Compatible => Table::build(entries, String::from),
                Matching::Lenient => Table::build(entries, |w| lenient_chars(w).collect()),
            }
        } else {
            // The built-ins are upper-case ASCII letters, which lenient folding keeps as
            // they are, so both modes share the compile-time table.
            match self.rules {
                RuleSet::Proxy2020 => PROXY_2020.table.clone(),
                RuleSet::Proxy2025 => DEFAULT.table.clone(),
            }
        };
        Ok(Classifier {
            rules: self.rules,
            matching: self.matching,
            hints: self.hints,
            table,
        })
    }

    fn entries(&self) -> Result<Vec<Keyword>, ConfigError> {
        let same = |a: &str, b: &str| unicase::eq(a, b);
        let mut entries: Vec<Keyword> = self.rules.keywords().collect();
        for k in self.packs.iter().flat_map(|p| p.keywords()) {
            match entries.iter_mut().find(|e| same(e.word(), k.word())) {
                Some(e) => *e = *k,
                None => entries.push(*k),
            }
        }
        for word in &self.removed {
            if MANDATORY.iter().any(|m| same(m, word)) {
                return Err(ConfigError::MandatoryKeyword {
                    keyword: word.clone(),
                });
            }
            let before = entries.len();
            entries.retain(|e| !same(e.word(), word));
            if entries.len() == before {
                return Err(ConfigError::UnknownKeyword {
                    keyword: word.clone(),
                });
            }
        }
        for k in &self.added {
            validate(k.word())?;
            if let Some(e) = entries.iter().find(|e| same(e.word(), k.word())) {
                return Err(ConfigError::DuplicateKeyword {
                    keyword: k.word().into(),
                    existing: e.word().into(),
                });
            }
            entries.push(*k);
        }
        Ok(entries)
    }
}

/// Checks a custom keyword: one word of letters and digits, punctuation only inside it,
/// at most [`MAX_KEYWORD_BYTES`], and written in its canonical (non-ASCII-folding) form.
fn validate(word: &str) -> Result<(), ConfigError> {
    let keyword = || String::from(word);
    if word.is_empty() {
        return Err(ConfigError::EmptyKeyword);
    }
    if word.len() > MAX_KEYWORD_BYTES {
        return Err(ConfigError::KeywordTooLong {
            keyword: keyword(),
            len: word.len(),
            max: MAX_KEYWORD_BYTES,
        });
    }
    if word.chars().any(char::is_whitespace) {
        return Err(ConfigError::KeywordWhitespace { keyword: keyword() });
    }
    let last = word.chars().count() - 1;
    for (i, ch) in word.chars().enumerate() {
        let inside = i != 0 && i != last;
        if !(ch.is_alphanumeric() || (inside && ch.is_ascii_punctuation())) {
            return Err(ConfigError::KeywordCharacter {
                keyword: keyword(),
                ch,
            });
        }
    }
    if !word.is_ascii() {
        let folded = unicase::UniCase::unicode(word).to_folded_case();
        if folded.is_ascii() {
            return Err(ConfigError::NonCanonicalKeyword {
                keyword: keyword(),
                ascii: folded.to_ascii_uppercase(),
            });
        }
    }
    Ok(())
}
