//! What the Proxy layer does with one message (§§4, §6): the decision table's output.

use core::fmt;

use crate::keywords::{Category, Keyword};
use crate::notice::Notice;

/// What happens to a message in the Proxy layer.
///
/// New actions may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout::Action;
///
/// assert_eq!(Action::Drop.as_str(), "drop");
/// assert_eq!(Action::Drop.notice().map(|n| n.code()), Some(80901));
/// assert_eq!(Action::Forward.notice(), None);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Action {
    /// Relayed to the other participant; the intercept hook allowed it.
    Forward,
    /// A keyword Proxy does not forward: notice 80901, no callbacks, no intercept hook.
    Drop,
    /// The intercept hook refused it: notice 80909.
    Block,
    /// Not relayed for a reason outside the keyword tables: the message is out of session,
    /// its session has no second participant, or the recipient's opt-out state could not be
    /// read. The intercept hook was not called and no callback fires;
    /// [`Outcome::withheld`](crate::Outcome::withheld) says which. [`classify`](crate::classify)
    /// never returns it; only the relay does.
    Withhold,
}

impl Action {
    /// The lowercase name: `forward`, `drop`, `block` or `withhold`.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Action::Block.as_str(), "block");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Forward => "forward",
            Action::Drop => "drop",
            Action::Block => "block",
            Action::Withhold => "withhold",
        }
    }

    /// The debugger notice this action raises.
    ///
    /// ```
    /// use proxy_optout::{Action, Notice};
    /// assert_eq!(Action::Block.notice(), Some(Notice::InboundContactRejected));
    /// ```
    #[must_use]
    pub const fn notice(self) -> Option<Notice> {
        match self {
            Action::Forward | Action::Withhold => None,
            Action::Drop => Some(Notice::MessageMatchedStopWord),
            Action::Block => Some(Notice::InboundContactRejected),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A forwarded message that reads like a revocation of consent without being a keyword
/// (§§3, US rules since 2025-04-11). Never a drop: the host may log or review it.
///
/// # Example
///
/// ```
/// use proxy_optout::{Classifier, Message};
///
/// let c = Classifier::builder().revocation_hints().build()?;
/// let d = c.classify(&Message::sms("please stop texting me"));
/// assert!(d.is_forwarded());
/// assert_eq!(d.revocation_hint().map(|h| h.phrase()), Some("stop texting"));
/// # Ok::<(), proxy_optout::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RevocationHint {
    phrase: &'static str,
}

impl RevocationHint {
    pub(crate) const fn new(phrase: &'static str) -> Self {
        RevocationHint { phrase }
    }

    /// The phrase found, in lower case (`"unsubscribe"`, `"opt out"`, `"stop texting"`, ...).
    ///
    /// ```
    /// use proxy_optout::{Classifier, Message};
    /// let c = Classifier::builder().revocation_hints().build()?;
    /// let d = c.classify(&Message::sms("Unsubscribe me"));
    /// assert_eq!(d.revocation_hint().unwrap().phrase(), "unsubscribe");
    /// # Ok::<(), proxy_optout::ConfigError>(())
    /// ```
    #[must_use]
    pub const fn phrase(&self) -> &'static str {
        self.phrase
    }
}

impl fmt::Display for RevocationHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.phrase)
    }
}

/// What the Proxy layer does with one inbound message, and what the carrier layer does
/// beside it. Small and `Copy`; the result of [`classify`](crate::classify).
///
/// # Example
///
/// ```
/// use proxy_optout::{classify, Action, Category, Message, Notice};
///
/// let d = classify(&Message::sms("Stop"));
/// assert_eq!(d.action(), Action::Drop);
/// assert_eq!(d.category(), Some(Category::OptOut));
/// assert_eq!(d.keyword(), Some("STOP"));
/// assert_eq!(d.notice(), Some(Notice::MessageMatchedStopWord));
/// assert!(!d.fires_callbacks());
/// assert_eq!(d.carrier(), Some(Category::OptOut));
///
/// // UNSTOP: an opt-in that Proxy drops, and that the carrier layer honours.
/// let d = classify(&Message::sms("unstop"));
/// assert!(d.is_dropped());
/// assert_eq!(d.carrier(), Some(Category::OptIn));
///
/// // ARRET: dropped by Proxy, unknown to the carrier layer.
/// let d = classify(&Message::sms("ARRET"));
/// assert!(d.is_dropped());
/// assert_eq!(d.carrier(), None);
/// ```
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    action: Action,
    keyword: Option<Keyword>,
    carrier: Option<Category>,
    hint: Option<RevocationHint>,
}

impl Decision {
    pub(crate) const fn new(
        action: Action,
        keyword: Option<Keyword>,
        carrier: Option<Category>,
        hint: Option<RevocationHint>,
    ) -> Self {
        Decision {
            action,
            keyword,
            carrier,
            hint,
        }
    }

    /// The same decision, not relayed for a routing or store reason. Only a forward can be
    /// withheld: a dropped keyword stays dropped.
    pub(crate) const fn withheld(mut self) -> Self {
        if let Action::Forward = self.action {
            self.action = Action::Withhold;
        }
        self
    }

    /// The same decision with the carrier layer's category set by the platform's verdict.
    pub(crate) const fn with_carrier(mut self, carrier: Option<Category>) -> Self {
        self.carrier = carrier;
        self
    }

    /// The same decision, blocked by the intercept hook. Only a forward can be blocked.
    pub(crate) const fn blocked(mut self) -> Self {
        if let Action::Forward = self.action {
            self.action = Action::Block;
        }
        self
    }

    /// What the Proxy layer does.
    ///
    /// ```
    /// use proxy_optout::{classify, Action, Message};
    /// assert_eq!(classify(&Message::sms("on my way")).action(), Action::Forward);
    /// ```
    pub const fn action(&self) -> Action {
        self.action
    }

    /// Whether the message is relayed to the other participant.
    ///
    /// ```
    /// use proxy_optout::{classify, Message};
    /// assert!(classify(&Message::sms("START")).is_forwarded());
    /// ```
    #[must_use]
    pub const fn is_forwarded(&self) -> bool {
        matches!(self.action, Action::Forward)
    }

    /// Whether the message is a keyword the Proxy layer drops (notice 80901).
    ///
    /// ```
    /// use proxy_optout::{classify, Message};
    /// assert!(classify(&Message::sms("QUIT")).is_dropped());
    /// ```
    #[must_use]
    pub const fn is_dropped(&self) -> bool {
        matches!(self.action, Action::Drop)
    }

    /// Whether the relay withheld the message for a routing or store reason (out of session,
    /// no counterpart, recipient state unknown).
    ///
    /// ```
    /// use proxy_optout::{classify, Message};
    /// assert!(!classify(&Message::sms("hello")).is_withheld());
    /// ```
    #[must_use]
    pub const fn is_withheld(&self) -> bool {
        matches!(self.action, Action::Withhold)
    }

    /// Whether the intercept hook blocked the message (notice 80909).
    ///
    /// ```
    /// use proxy_optout::{classify, Message};
    /// assert!(!classify(&Message::sms("hello")).is_blocked());
    /// ```
    #[must_use]
    pub const fn is_blocked(&self) -> bool {
        matches!(self.action, Action::Block)
    }

    /// The matched keyword's Proxy category, or `None` for an ordinary message.
    ///
    /// ```
    /// use proxy_optout::{classify, Category, Message};
    /// assert_eq!(classify(&Message::sms("info")).category(), Some(Category::Help));
    /// assert_eq!(classify(&Message::sms("info please")).category(), None);
    /// ```
    #[must_use]
    pub const fn category(&self) -> Option<Category> {
        match self.keyword {
            Some(k) => Some(k.category()),
            None => None,
        }
    }

    /// The matched keyword in its canonical spelling (upper case for the built-ins).
    ///
    /// ```
    /// use proxy_optout::{classify, Message};
    /// assert_eq!(classify(&Message::sms(" unsubscribe\n")).keyword(), Some("UNSUBSCRIBE"));
    /// ```
    #[must_use]
    pub const fn keyword(&self) -> Option<&'static str> {
        match self.keyword {
            Some(k) => Some(k.word()),
            None => None,
        }
    }

    /// The matched keyword with its table entry.
    ///
    /// ```
    /// use proxy_optout::{classify, Action, Message};
    /// let k = classify(&Message::sms("yes")).matched().unwrap();
    /// assert_eq!(k.proxy_action(), Action::Forward);
    /// ```
    #[must_use]
    pub const fn matched(&self) -> Option<Keyword> {
        self.keyword
    }

    /// The debugger notice raised: 80901 for a dropped keyword, 80909 for a blocked message.
    ///
    /// ```
    /// use proxy_optout::{classify, Message};
    /// assert_eq!(classify(&Message::sms("CANCEL")).notice().map(|n| n.code()), Some(80901));
    /// ```
    #[must_use]
    pub const fn notice(&self) -> Option<Notice> {
        self.action.notice()
    }

    /// Whether any callback fires for this message. Dropped keywords fire none (seed,
    /// item 1); a forwarded message fires the status callback.
    ///
    /// ```
    /// use proxy_optout::{classify, Message};
    /// assert!(!classify(&Message::sms("END")).fires_callbacks());
    /// assert!(classify(&Message::sms("the end")).fires_callbacks());
    /// ```
    #[must_use]
    pub const fn fires_callbacks(&self) -> bool {
        matches!(self.action, Action::Forward | Action::Block)
    }

    /// Whether the intercept hook is (or was) consulted: for every message the Proxy layer
    /// would forward in session, never for a dropped keyword nor a withheld message.
    ///
    /// ```
    /// use proxy_optout::{classify, Message};
    /// assert!(classify(&Message::sms("HELP")).calls_intercept());
    /// assert!(!classify(&Message::sms("STOP")).calls_intercept());
    /// ```
    #[must_use]
    pub const fn calls_intercept(&self) -> bool {
        matches!(self.action, Action::Forward | Action::Block)
    }

    /// Whether the status callback fires: only for a message that is forwarded.
    ///
    /// ```
    /// use proxy_optout::{classify, Message};
    /// assert!(classify(&Message::sms("see you")).fires_status_callback());
    /// ```
    #[must_use]
    pub const fn fires_status_callback(&self) -> bool {
        self.is_forwarded()
    }

    /// What the carrier layer (STOP filtering) does with the message: record an opt-out or
    /// opt-in for the pair, or answer HELP. `None` when the carrier layer ignores it.
    ///
    /// ```
    /// use proxy_optout::{classify, Category, Message};
    /// assert_eq!(classify(&Message::sms("START")).carrier(), Some(Category::OptIn));
    /// assert_eq!(classify(&Message::sms("DEBUT")).carrier(), None);
    /// ```
    #[must_use]
    pub const fn carrier(&self) -> Option<Category> {
        self.carrier
    }

    /// The `OptOutType` label (`STOP`, `START`, `HELP`) Twilio attaches to a message the
    /// carrier layer acts on.
    ///
    /// ```
    /// use proxy_optout::{classify, Message};
    /// assert_eq!(classify(&Message::sms("stopall")).opt_out_type(), Some("STOP"));
    /// assert_eq!(classify(&Message::sms("hi")).opt_out_type(), None);
    /// ```
    #[must_use]
    pub const fn opt_out_type(&self) -> Option<&'static str> {
        match self.carrier {
            Some(c) => Some(c.opt_out_type()),
            None => None,
        }
    }

    /// A revocation hint, when the classifier was built with
    /// [`revocation_hints`](crate::ClassifierBuilder::revocation_hints).
    ///
    /// ```
    /// use proxy_optout::{classify, Message};
    /// assert_eq!(classify(&Message::sms("stop texting me")).revocation_hint(), None);
    /// ```
    #[must_use]
    pub const fn revocation_hint(&self) -> Option<RevocationHint> {
        self.hint
    }
}

impl fmt::Display for Decision {
    /// `drop STOP (opt_out, 80901)`, `forward`, `forward START (opt_in)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.action.as_str())?;
        if let Some(k) = self.keyword {
            write!(f, " {} ({}", k.word(), k.category())?;
            if let Some(n) = self.notice() {
                write!(f, ", {}", n.code())?;
            }
            f.write_str(")")?;
        } else if let Some(n) = self.notice() {
            write!(f, " ({})", n.code())?;
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Decision {
    /// The same fields, with the same names, as the `classify` example prints.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Decision", 8)?;
        s.serialize_field("action", &self.action)?;
        s.serialize_field("category", self.category().map_or("none", Category::as_str))?;
        s.serialize_field("keyword", &self.keyword())?;
        s.serialize_field("notice", &self.notice().map(Notice::code))?;
        s.serialize_field("carrier", self.carrier.map_or("none", Category::as_str))?;
        s.serialize_field("callbacks", &self.fires_callbacks())?;
        s.serialize_field("opt_out_type", &self.opt_out_type())?;
        s.serialize_field("hint", &self.hint.map(|h| h.phrase()))?;
        s.end()
    }
}
