//! The carrier layer's auto-replies (§§2, §5).

use alloc::borrow::Cow;

use crate::keywords::Category;

/// The platform's default reply to an opt-out keyword (long codes).
pub const DEFAULT_STOP_REPLY: &str = "You have successfully been unsubscribed. You will not receive any more messages from this number. Reply START to resubscribe.";

/// The platform's default reply to an opt-in keyword (long codes).
pub const DEFAULT_START_REPLY: &str = "You have successfully been re-subscribed to messages from this number. Reply HELP for help. Reply STOP to unsubscribe. Msg&Data Rates May Apply.";

/// The platform's default reply to a help keyword (long codes).
pub const DEFAULT_HELP_REPLY: &str = "Reply STOP to unsubscribe. Msg&Data Rates May Apply.";

/// The texts the carrier layer sends back for each keyword category. The defaults are the
/// platform's; the host may replace any of them, or send none for a category.
///
/// # Example
///
/// ```
/// use proxy_optout::{AutoReplies, Category, DEFAULT_STOP_REPLY};
///
/// let r = AutoReplies::default();
/// assert_eq!(r.text(Category::OptOut), Some(DEFAULT_STOP_REPLY));
///
/// let r = AutoReplies::default()
///     .with(Category::Help, "Acme rides: reply STOP to opt out. Help: acme.example/help")
///     .without(Category::OptIn);
/// assert!(r.text(Category::Help).unwrap().starts_with("Acme"));
/// assert_eq!(r.text(Category::OptIn), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AutoReplies {
    stop: Option<Cow<'static, str>>,
    start: Option<Cow<'static, str>>,
    help: Option<Cow<'static, str>>,
}

impl Default for AutoReplies {
    fn default() -> Self {
        AutoReplies {
            stop: Some(Cow::Borrowed(DEFAULT_STOP_REPLY)),
            start: Some(Cow::Borrowed(DEFAULT_START_REPLY)),
            help: Some(Cow::Borrowed(DEFAULT_HELP_REPLY)),
        }
    }
}

impl AutoReplies {
    fn slot(&mut self, category: Category) -> &mut Option<Cow<'static, str>> {
        match category {
            Category::OptOut => &mut self.stop,
            Category::OptIn => &mut self.start,
            Category::Help => &mut self.help,
        }
    }

    /// Replaces the reply for `category`.
    ///
    /// ```
    /// use proxy_optout::{AutoReplies, Category};
    /// let r = AutoReplies::default().with(Category::OptOut, String::from("Bye."));
    /// assert_eq!(r.text(Category::OptOut), Some("Bye."));
    /// ```
    #[must_use]
    pub fn with(mut self, category: Category, text: impl Into<Cow<'static, str>>) -> Self {
        *self.slot(category) = Some(text.into());
        self
    }

    /// Sends no reply for `category`.
    ///
    /// ```
    /// use proxy_optout::{AutoReplies, Category};
    /// assert_eq!(AutoReplies::default().without(Category::Help).text(Category::Help), None);
    /// ```
    #[must_use]
    pub fn without(mut self, category: Category) -> Self {
        *self.slot(category) = None;
        self
    }

    /// The reply text for `category`, if one is sent.
    ///
    /// ```
    /// use proxy_optout::{AutoReplies, Category, DEFAULT_HELP_REPLY};
    /// assert_eq!(AutoReplies::default().text(Category::Help), Some(DEFAULT_HELP_REPLY));
    /// ```
    #[must_use]
    pub fn text(&self, category: Category) -> Option<&str> {
        match category {
            Category::OptOut => self.stop.as_deref(),
            Category::OptIn => self.start.as_deref(),
            Category::Help => self.help.as_deref(),
        }
    }
}
