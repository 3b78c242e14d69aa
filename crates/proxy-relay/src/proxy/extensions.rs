//! The library's extensions as a service's settings, each off by default and each beyond
//! what Proxy offers: the rule set, lenient matching, the French and Spanish keyword packs,
//! custom keywords and replies, and the FCC 2025 revocation hints (raised as alerts for an
//! operator to review, never a drop). Set as extra fields on `services.create`/`update`
//! (`RuleSet`, `Matching`, `LanguagePacks`, `Keywords`, `Replies`, `RevocationHints`), kept
//! as one JSON column, shown as the service's `extensions`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, OnceLock};

use proxy_optout::{
    AutoReplies, CarrierMode, Category, Classifier, LanguagePack, Matching, RelayCore, RuleSet,
};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::store::Fields;

/// A service's extensions. The default is Twilio Proxy's behaviour exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Extensions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rule_set: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) matching: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) language_packs: Vec<String>,
    /// Word → category (`opt_out`, `opt_in`, `help`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) keywords: BTreeMap<String, String>,
    /// Category → reply text; an empty text sends no reply for that category.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) replies: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) revocation_hints: bool,
}

/// Custom keywords are `&'static str` in the core (its tables are static): each distinct
/// word is leaked once and reused, so re-reading the settings never grows memory.
fn interned(word: &str) -> &'static str {
    static WORDS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut words = WORDS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(w) = words.get(word) {
        return w;
    }
    let leaked: &'static str = Box::leak(word.to_owned().into_boxed_str());
    words.insert(leaked);
    leaked
}

fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| ApiError::invalid(format!("{name} {value:?}: {e}")))
}

impl Extensions {
    /// The stored column (`None`: none set).
    pub(crate) fn from_column(column: Option<&str>) -> Extensions {
        column
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default()
    }

    /// The column to store.
    pub(crate) fn to_column(&self) -> Option<String> {
        (self != &Extensions::default()).then(|| serde_json::to_string(self).unwrap_or_default())
    }

    /// These settings with the form's extension fields applied. `None`: the form has none.
    pub(crate) fn updated(&self, f: &Fields) -> Result<Option<Extensions>, ApiError> {
        let mut e = self.clone();
        let mut changed = false;
        if let Some(v) = f.get("RuleSet") {
            changed = true;
            e.rule_set = if v.is_empty() {
                None
            } else {
                parse::<RuleSet>("RuleSet", v)?;
                Some(v.to_owned())
            };
        }
        if let Some(v) = f.get("Matching") {
            changed = true;
            e.matching = if v.is_empty() {
                None
            } else {
                parse::<Matching>("Matching", v)?;
                Some(v.to_owned())
            };
        }
        let packs: Vec<&str> = f.all("LanguagePacks").collect();
        if !packs.is_empty() {
            changed = true;
            e.language_packs.clear();
            for p in packs.iter().flat_map(|p| p.split(',')).map(str::trim) {
                if p.is_empty() {
                    continue;
                }
                parse::<LanguagePack>("LanguagePacks", p)?;
                if !e.language_packs.iter().any(|q| q == p) {
                    e.language_packs.push(p.to_owned());
                }
            }
        }
        for (name, slot) in [("Keywords", &mut e.keywords), ("Replies", &mut e.replies)] {
            if let Some(v) = f.get(name) {
                changed = true;
                *slot = if v.is_empty() {
                    BTreeMap::new()
                } else {
                    serde_json::from_str(v).map_err(|err| {
                        ApiError::invalid(format!(
                            "{name} {v:?} is not a JSON object of strings: {err}"
                        ))
                    })?
                };
            }
        }
        if let Some(v) = f.get("RevocationHints") {
            changed = true;
            e.revocation_hints = match v {
                "true" | "True" => true,
                "false" | "False" | "" => false,
                other => {
                    return Err(ApiError::invalid(format!(
                        "RevocationHints {other:?} is not true or false"
                    )))
                }
            };
        }
        if !changed {
            return Ok(None);
        }
        e.core(CarrierMode::Emulate)?;
        Ok(Some(e))
    }

    /// The relay core these settings make (`None`: the pipeline's own will do).
    pub(crate) fn core(&self, mode: CarrierMode) -> Result<Option<RelayCore>, ApiError> {
        if self == &Extensions::default() {
            return Ok(None);
        }
        let mut b = Classifier::builder();
        if let Some(r) = &self.rule_set {
            b = b.rules(parse("RuleSet", r)?);
        }
        if let Some(m) = &self.matching {
            b = b.matching(parse("Matching", m)?);
        }
        for p in &self.language_packs {
            b = b.language(parse("LanguagePacks", p)?);
        }
        for (word, category) in &self.keywords {
            let category: Category = parse(&format!("Keywords[{word}]"), category)?;
            b = b.keyword(interned(word), category);
        }
        if self.revocation_hints {
            b = b.revocation_hints();
        }
        let classifier = b
            .build()
            .map_err(|e| ApiError::invalid(format!("Keywords: {e}")))?;
        let mut replies = AutoReplies::default();
        for (category, text) in &self.replies {
            let c: Category = parse(&format!("Replies[{category}]"), category)?;
            replies = if text.is_empty() {
                replies.without(c)
            } else {
                replies.with(c, text.clone())
            };
        }
        Ok(Some(
            RelayCore::new()
                .with_mode(mode)
                .with_classifier(classifier)
                .with_replies(replies),
        ))
    }
}
