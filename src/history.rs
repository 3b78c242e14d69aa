//! The opt-out ledger's history: what changed a pair's state, when, and on what evidence.
//!
//! The ledger itself keeps only each pair's latest state, which is all the relay needs. A
//! compliance team needs more: when a STOP arrived, its text and message id, when the
//! confirmation went out, when and how the pair opted back in. A [`Change`] is
//! those facts for one ledger write, borrowed and allocation-free, as the relay's
//! [`Steps::change`](crate::Steps::change) produces them; a store that keeps history turns it
//! into a [`HistoryEntry`] in the same transaction as the state (see
//! [`OptOutStore::record_change`](crate::OptOutStore::record_change)), and serves entries back
//! through [`HistoryStore`].

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::str::FromStr;

use crate::error::{parse_named, ParseError};
use crate::keywords::RuleSet;
use crate::ledger::{AsyncOptOutStore, LedgerKey, OptOutStore, OptState};

/// What caused a ledger change.
///
/// # Example
///
/// ```
/// use proxy_optout::ChangeSource;
/// assert_eq!(ChangeSource::Keyword.as_str(), "keyword");
/// assert_eq!("import".parse::<ChangeSource>(), Ok(ChangeSource::Import));
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum ChangeSource {
    /// The participant texted an opt-out or opt-in keyword the classifier matched.
    Keyword,
    /// The messaging platform's verdict on the message (Twilio's `OptOutType`), without a
    /// keyword of the relay's own rule set.
    Platform,
    /// A send was refused because the carrier layer had the participant opted out (21610),
    /// on send or in a status callback.
    Refusal,
    /// An operator changed the state (an admin API or a command).
    Operator,
    /// An imported list (a migration from another provider).
    Import,
    /// Recorded without its facts: through [`OptOutStore::record`], or before the store kept
    /// history (a migrated store gives each existing state one such entry).
    Unspecified,
}

impl ChangeSource {
    /// Every source.
    ///
    /// ```
    /// assert_eq!(proxy_optout::ChangeSource::ALL.len(), 6);
    /// ```
    pub const ALL: [ChangeSource; 6] = [
        ChangeSource::Keyword,
        ChangeSource::Platform,
        ChangeSource::Refusal,
        ChangeSource::Operator,
        ChangeSource::Import,
        ChangeSource::Unspecified,
    ];

    /// The snake-case name stores and exports write.
    ///
    /// ```
    /// assert_eq!(proxy_optout::ChangeSource::Refusal.as_str(), "refusal");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangeSource::Keyword => "keyword",
            ChangeSource::Platform => "platform",
            ChangeSource::Refusal => "refusal",
            ChangeSource::Operator => "operator",
            ChangeSource::Import => "import",
            ChangeSource::Unspecified => "unspecified",
        }
    }
}

impl fmt::Display for ChangeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChangeSource {
    type Err = ParseError;

    /// Parses a name [`as_str`](ChangeSource::as_str) gives; ASCII case is ignored.
    ///
    /// ```
    /// use proxy_optout::ChangeSource;
    /// assert_eq!("KEYWORD".parse::<ChangeSource>(), Ok(ChangeSource::Keyword));
    /// assert!("rumour".parse::<ChangeSource>().unwrap_err().to_string().contains("rumour"));
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_named(
            &ChangeSource::ALL,
            ChangeSource::as_str,
            s,
            "change source",
            "keyword, platform, refusal, operator, import, unspecified",
        )
    }
}

/// The facts of one ledger change, borrowed: what a store records beside the new state.
///
/// Times are milliseconds since the Unix epoch (the core reads no clock). A store fills in
/// when it recorded the change; `received_at` is when the message (or row, or request) that
/// caused it arrived, if the host knows.
///
/// # Example
///
/// ```
/// use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
/// let change = Change::new(LedgerKey::new("+1P", "+1A"), OptState::OptedOut, ChangeSource::Keyword)
///     .with_keyword("STOP")
///     .with_text("stop please")
///     .with_message_id("SM123")
///     .with_received_at(1_700_000_000_000);
/// assert_eq!(change.key().participant(), "+1A");
/// assert_eq!(change.keyword(), Some("STOP"));
/// assert_eq!(change.without_text().text(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Change<'a> {
    key: LedgerKey<'a>,
    state: OptState,
    source: ChangeSource,
    keyword: Option<&'a str>,
    text: Option<&'a str>,
    message_id: Option<&'a str>,
    rule_set: Option<RuleSet>,
    received_at: Option<u64>,
    confirmed_at: Option<u64>,
}

impl<'a> Change<'a> {
    /// `key`'s new `state`, caused by `source`, with no further facts.
    ///
    /// ```
    /// use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedIn, ChangeSource::Operator);
    /// assert_eq!(c.state(), OptState::OptedIn);
    /// assert_eq!(c.message_id(), None);
    /// ```
    #[must_use]
    pub const fn new(key: LedgerKey<'a>, state: OptState, source: ChangeSource) -> Self {
        Change {
            key,
            state,
            source,
            keyword: None,
            text: None,
            message_id: None,
            rule_set: None,
            received_at: None,
            confirmed_at: None,
        }
    }

    /// With the keyword that matched (its canonical spelling, such as `STOP`).
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Keyword).with_keyword("STOP");
    /// assert_eq!(c.keyword(), Some("STOP"));
    /// ```
    #[must_use]
    pub const fn with_keyword(mut self, keyword: &'a str) -> Self {
        self.keyword = Some(keyword);
        self
    }

    /// With the text as received (the message body, an operator's note, an import's row).
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Keyword).with_text(" Stop ");
    /// assert_eq!(c.text(), Some(" Stop "));
    /// ```
    #[must_use]
    pub const fn with_text(mut self, text: &'a str) -> Self {
        self.text = Some(text);
        self
    }

    /// Without the text: for a host that does not keep message texts.
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Keyword).with_text("stop");
    /// assert_eq!(c.without_text().text(), None);
    /// ```
    #[must_use]
    pub const fn without_text(mut self) -> Self {
        self.text = None;
        self
    }

    /// With the inbound message's id (Twilio's `MessageSid`).
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Keyword).with_message_id("SM1");
    /// assert_eq!(c.message_id(), Some("SM1"));
    /// ```
    #[must_use]
    pub const fn with_message_id(mut self, id: &'a str) -> Self {
        self.message_id = Some(id);
        self
    }

    /// With the rule set that classified the message.
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState, RuleSet};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Keyword).with_rule_set(RuleSet::Proxy2020);
    /// assert_eq!(c.rule_set(), Some(RuleSet::Proxy2020));
    /// ```
    #[must_use]
    pub const fn with_rule_set(mut self, rules: RuleSet) -> Self {
        self.rule_set = Some(rules);
        self
    }

    /// With when the cause arrived, in milliseconds since the Unix epoch.
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Import).with_received_at(5);
    /// assert_eq!(c.received_at(), Some(5));
    /// ```
    #[must_use]
    pub const fn with_received_at(mut self, unix_ms: u64) -> Self {
        self.received_at = Some(unix_ms);
        self
    }

    /// With when its confirmation reply was handed to the platform, when that is known as the
    /// change is recorded (a reply that rides in the webhook's answer); otherwise the host
    /// reports it later with [`OptOutStore::confirmed`]. A store records it no earlier than
    /// the change itself (a reply cannot confirm what is not yet stored).
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Keyword).with_confirmed_at(8);
    /// assert_eq!(c.confirmed_at(), Some(8));
    /// ```
    #[must_use]
    pub const fn with_confirmed_at(mut self, unix_ms: u64) -> Self {
        self.confirmed_at = Some(unix_ms);
        self
    }

    /// When the confirmation reply was handed to the platform, if known at recording.
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// assert_eq!(Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Import).confirmed_at(), None);
    /// ```
    #[must_use]
    pub const fn confirmed_at(&self) -> Option<u64> {
        self.confirmed_at
    }

    /// Whose state changes, where.
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Import);
    /// assert_eq!(c.key().scope(), "P");
    /// ```
    #[must_use]
    pub const fn key(&self) -> LedgerKey<'a> {
        self.key
    }

    /// The new state.
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Import);
    /// assert_eq!(c.state(), OptState::OptedOut);
    /// ```
    #[must_use]
    pub const fn state(&self) -> OptState {
        self.state
    }

    /// What caused it.
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Import);
    /// assert_eq!(c.source(), ChangeSource::Import);
    /// ```
    #[must_use]
    pub const fn source(&self) -> ChangeSource {
        self.source
    }

    /// The keyword that matched, if a keyword caused it.
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// assert_eq!(Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Import).keyword(), None);
    /// ```
    #[must_use]
    pub const fn keyword(&self) -> Option<&'a str> {
        self.keyword
    }

    /// The text as received.
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// assert_eq!(Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Import).text(), None);
    /// ```
    #[must_use]
    pub const fn text(&self) -> Option<&'a str> {
        self.text
    }

    /// The inbound message's id.
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// assert_eq!(Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Import).message_id(), None);
    /// ```
    #[must_use]
    pub const fn message_id(&self) -> Option<&'a str> {
        self.message_id
    }

    /// The rule set that classified the message.
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// assert_eq!(Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Import).rule_set(), None);
    /// ```
    #[must_use]
    pub const fn rule_set(&self) -> Option<RuleSet> {
        self.rule_set
    }

    /// When the cause arrived (Unix milliseconds), if the host said.
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
    /// assert_eq!(Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Import).received_at(), None);
    /// ```
    #[must_use]
    pub const fn received_at(&self) -> Option<u64> {
        self.received_at
    }
}

/// One recorded ledger change: a [`Change`] with the store's sequence number and times.
///
/// `seq` orders a store's whole history (every key), starting at 1; `recorded_at` is when
/// the store committed it and `confirmed_at` when the host reported the confirmation reply
/// sent ([`OptOutStore::confirmed`]), both in Unix milliseconds. The only field that changes
/// after the entry is written is `confirmed_at`, once, from empty to a time.
///
/// # Example
///
/// ```
/// use proxy_optout::{Change, ChangeSource, HistoryEntry, LedgerKey, OptState};
/// let change = Change::new(LedgerKey::new("+1P", "+1A"), OptState::OptedOut, ChangeSource::Keyword)
///     .with_keyword("STOP");
/// let entry = HistoryEntry::new(7, &change, 1_700_000_000_000);
/// assert_eq!(entry.seq, 7);
/// assert_eq!(entry.keyword.as_deref(), Some("STOP"));
/// assert_eq!(entry.received_at, None);
/// assert_eq!(entry.key(), LedgerKey::new("+1P", "+1A"));
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HistoryEntry {
    /// The store's sequence number: increasing in commit order across every key.
    pub seq: u64,
    /// The proxy number (or service) the change applies to.
    pub scope: String,
    /// The participant.
    pub participant: String,
    /// The new state.
    pub state: OptState,
    /// What caused it.
    pub source: ChangeSource,
    /// The keyword that matched.
    pub keyword: Option<String>,
    /// The text as received, where the store keeps texts.
    pub text: Option<String>,
    /// The inbound message's id.
    pub message_id: Option<String>,
    /// The rule set that classified the message.
    pub rule_set: Option<RuleSet>,
    /// When the cause arrived (Unix milliseconds).
    pub received_at: Option<u64>,
    /// When the store recorded it (Unix milliseconds).
    pub recorded_at: u64,
    /// When the confirmation reply was sent (Unix milliseconds), if one was.
    pub confirmed_at: Option<u64>,
}

impl HistoryEntry {
    /// The entry a store writes for `change` as its `seq`-th, at `recorded_at`.
    ///
    /// ```
    /// use proxy_optout::{Change, ChangeSource, HistoryEntry, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedIn, ChangeSource::Import);
    /// assert_eq!(HistoryEntry::new(1, &c, 9).recorded_at, 9);
    /// ```
    #[must_use]
    pub fn new(seq: u64, change: &Change<'_>, recorded_at: u64) -> Self {
        HistoryEntry {
            seq,
            scope: change.key.scope().into(),
            participant: change.key.participant().into(),
            state: change.state,
            source: change.source,
            keyword: change.keyword.map(Into::into),
            text: change.text.map(Into::into),
            message_id: change.message_id.map(Into::into),
            rule_set: change.rule_set,
            received_at: change.received_at,
            recorded_at,
            // A reply cannot confirm a change before it is stored.
            confirmed_at: change.confirmed_at.map(|c| c.max(recorded_at)),
        }
    }

    /// With the confirmation time set (what a store reads back from its columns).
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, HistoryEntry, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Keyword);
    /// assert_eq!(HistoryEntry::new(1, &c, 9).with_confirmed_at(Some(10)).confirmed_at, Some(10));
    /// ```
    #[must_use]
    pub fn with_confirmed_at(mut self, at: Option<u64>) -> Self {
        self.confirmed_at = at;
        self
    }

    /// The change the entry records (without its `seq` and `recorded_at`): to replay an
    /// entry into another store.
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, HistoryEntry, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Keyword)
    ///     .with_keyword("STOP").with_text("stop").with_message_id("SM1").with_received_at(3);
    /// assert_eq!(HistoryEntry::new(1, &c, 9).as_change(), c);
    /// ```
    #[must_use]
    pub fn as_change(&self) -> Change<'_> {
        Change {
            key: self.key(),
            state: self.state,
            source: self.source,
            keyword: self.keyword.as_deref(),
            text: self.text.as_deref(),
            message_id: self.message_id.as_deref(),
            rule_set: self.rule_set,
            received_at: self.received_at,
            confirmed_at: self.confirmed_at,
        }
    }

    /// The ledger key the entry is about.
    ///
    /// ```
    /// # use proxy_optout::{Change, ChangeSource, HistoryEntry, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Keyword);
    /// assert_eq!(HistoryEntry::new(1, &c, 9).key().scope(), "P");
    /// ```
    #[must_use]
    pub fn key(&self) -> LedgerKey<'_> {
        LedgerKey::new(&self.scope, &self.participant)
    }
}

/// Which history entries to read: filters, a cursor and a page size.
///
/// Entries come in `seq` order, those after [`after`](HistoryQuery::after) only, at most
/// [`limit`](HistoryQuery::limit) of them: to read everything, page with the last entry's
/// `seq` as the next cursor, so an export of any size holds one page in memory.
///
/// # Example
///
/// ```
/// use proxy_optout::{HistoryQuery, OptState};
/// let q = HistoryQuery::new()
///     .scope("+1P")
///     .state(OptState::OptedOut)
///     .current_only(true)
///     .recorded_between(Some(0), Some(2_000_000_000_000))
///     .after(10)
///     .limit(500);
/// assert_eq!(q.get_limit(), 500);
/// assert_eq!(q.get_after(), 10);
/// assert_eq!(q.get_scope(), Some("+1P"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HistoryQuery<'a> {
    scope: Option<&'a str>,
    participant: Option<&'a str>,
    state: Option<OptState>,
    current_only: bool,
    since: Option<u64>,
    until: Option<u64>,
    after: u64,
    limit: usize,
}

impl Default for HistoryQuery<'_> {
    fn default() -> Self {
        HistoryQuery::new()
    }
}

impl<'a> HistoryQuery<'a> {
    /// The largest page a store is asked for; a larger limit is cut to it.
    ///
    /// ```
    /// use proxy_optout::HistoryQuery;
    /// assert_eq!(HistoryQuery::new().limit(usize::MAX).get_limit(), HistoryQuery::MAX_LIMIT);
    /// ```
    pub const MAX_LIMIT: usize = 10_000;

    /// Every entry, from the first, 1,000 per page.
    ///
    /// ```
    /// assert_eq!(proxy_optout::HistoryQuery::new().get_limit(), 1000);
    /// ```
    #[must_use]
    pub const fn new() -> Self {
        HistoryQuery {
            scope: None,
            participant: None,
            state: None,
            current_only: false,
            since: None,
            until: None,
            after: 0,
            limit: 1000,
        }
    }

    /// Only this proxy number's (or service's) entries.
    ///
    /// ```
    /// assert_eq!(proxy_optout::HistoryQuery::new().scope("P").get_scope(), Some("P"));
    /// ```
    #[must_use]
    pub const fn scope(mut self, scope: &'a str) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Only this participant's entries.
    ///
    /// ```
    /// assert_eq!(proxy_optout::HistoryQuery::new().participant("A").get_participant(), Some("A"));
    /// ```
    #[must_use]
    pub const fn participant(mut self, participant: &'a str) -> Self {
        self.participant = Some(participant);
        self
    }

    /// Only entries that set this state.
    ///
    /// ```
    /// use proxy_optout::{HistoryQuery, OptState};
    /// assert_eq!(HistoryQuery::new().state(OptState::OptedOut).get_state(), Some(OptState::OptedOut));
    /// ```
    #[must_use]
    pub const fn state(mut self, state: OptState) -> Self {
        self.state = Some(state);
        self
    }

    /// Only the entry behind each key's current state (with [`state`](HistoryQuery::state)
    /// `OptedOut`: the opted-out list, with the evidence for each).
    ///
    /// ```
    /// assert!(proxy_optout::HistoryQuery::new().current_only(true).is_current_only());
    /// ```
    #[must_use]
    pub const fn current_only(mut self, current: bool) -> Self {
        self.current_only = current;
        self
    }

    /// Only entries recorded at or after `since` and before `until` (Unix milliseconds;
    /// `None`: unbounded).
    ///
    /// ```
    /// let q = proxy_optout::HistoryQuery::new().recorded_between(Some(5), None);
    /// assert_eq!(q.get_recorded_between(), (Some(5), None));
    /// ```
    #[must_use]
    pub const fn recorded_between(mut self, since: Option<u64>, until: Option<u64>) -> Self {
        self.since = since;
        self.until = until;
        self
    }

    /// Only entries whose `seq` is greater than `seq` (the cursor: the last `seq` read).
    ///
    /// ```
    /// assert_eq!(proxy_optout::HistoryQuery::new().after(3).get_after(), 3);
    /// ```
    #[must_use]
    pub const fn after(mut self, seq: u64) -> Self {
        self.after = seq;
        self
    }

    /// At most `limit` entries (at least 1, at most [`MAX_LIMIT`](HistoryQuery::MAX_LIMIT)).
    ///
    /// ```
    /// assert_eq!(proxy_optout::HistoryQuery::new().limit(0).get_limit(), 1);
    /// ```
    #[must_use]
    pub const fn limit(mut self, limit: usize) -> Self {
        self.limit = if limit == 0 {
            1
        } else if limit > Self::MAX_LIMIT {
            Self::MAX_LIMIT
        } else {
            limit
        };
        self
    }

    /// The scope filter.
    ///
    /// ```
    /// assert_eq!(proxy_optout::HistoryQuery::new().get_scope(), None);
    /// ```
    #[must_use]
    pub const fn get_scope(&self) -> Option<&'a str> {
        self.scope
    }

    /// The participant filter.
    ///
    /// ```
    /// assert_eq!(proxy_optout::HistoryQuery::new().get_participant(), None);
    /// ```
    #[must_use]
    pub const fn get_participant(&self) -> Option<&'a str> {
        self.participant
    }

    /// The state filter.
    ///
    /// ```
    /// assert_eq!(proxy_optout::HistoryQuery::new().get_state(), None);
    /// ```
    #[must_use]
    pub const fn get_state(&self) -> Option<OptState> {
        self.state
    }

    /// Whether only current entries are read.
    ///
    /// ```
    /// assert!(!proxy_optout::HistoryQuery::new().is_current_only());
    /// ```
    #[must_use]
    pub const fn is_current_only(&self) -> bool {
        self.current_only
    }

    /// The recorded-time window.
    ///
    /// ```
    /// assert_eq!(proxy_optout::HistoryQuery::new().get_recorded_between(), (None, None));
    /// ```
    #[must_use]
    pub const fn get_recorded_between(&self) -> (Option<u64>, Option<u64>) {
        (self.since, self.until)
    }

    /// The cursor.
    ///
    /// ```
    /// assert_eq!(proxy_optout::HistoryQuery::new().get_after(), 0);
    /// ```
    #[must_use]
    pub const fn get_after(&self) -> u64 {
        self.after
    }

    /// The page size.
    ///
    /// ```
    /// assert_eq!(proxy_optout::HistoryQuery::new().limit(7).get_limit(), 7);
    /// ```
    #[must_use]
    pub const fn get_limit(&self) -> usize {
        self.limit
    }

    /// Whether `entry` passes the filters and the cursor (not `current_only`, which needs the
    /// store's current states): what a store over a plain list checks.
    ///
    /// ```
    /// use proxy_optout::{Change, ChangeSource, HistoryEntry, HistoryQuery, LedgerKey, OptState};
    /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Keyword);
    /// let e = HistoryEntry::new(4, &c, 100);
    /// assert!(HistoryQuery::new().scope("P").matches(&e));
    /// assert!(!HistoryQuery::new().after(4).matches(&e));
    /// assert!(!HistoryQuery::new().recorded_between(None, Some(100)).matches(&e));
    /// ```
    #[must_use]
    pub fn matches(&self, entry: &HistoryEntry) -> bool {
        entry.seq > self.after
            && self.scope.map_or(true, |s| s == entry.scope)
            && self.participant.map_or(true, |p| p == entry.participant)
            && self.state.map_or(true, |s| s == entry.state)
            && self.since.map_or(true, |t| entry.recorded_at >= t)
            && self.until.map_or(true, |t| entry.recorded_at < t)
    }
}

impl HistoryQuery<'_> {
    /// A copy that owns its filters: to move a query to another thread or task.
    ///
    /// ```
    /// use proxy_optout::HistoryQuery;
    /// let scope = String::from("+1P");
    /// let owned = HistoryQuery::new().scope(&scope).after(5).to_owned();
    /// drop(scope);
    /// assert_eq!(owned.as_query().get_scope(), Some("+1P"));
    /// assert_eq!(owned.as_query().get_after(), 5);
    /// ```
    #[must_use]
    pub fn to_owned(&self) -> OwnedHistoryQuery {
        OwnedHistoryQuery {
            scope: self.scope.map(Into::into),
            participant: self.participant.map(Into::into),
            rest: HistoryQuery {
                scope: None,
                participant: None,
                ..*self
            },
        }
    }
}

/// An owned [`HistoryQuery`], from [`HistoryQuery::to_owned`].
///
/// ```
/// let q = proxy_optout::HistoryQuery::new().participant("A").to_owned();
/// assert_eq!(q.as_query().get_participant(), Some("A"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwnedHistoryQuery {
    scope: Option<String>,
    participant: Option<String>,
    rest: HistoryQuery<'static>,
}

impl OwnedHistoryQuery {
    /// The borrowed form.
    ///
    /// ```
    /// let q = proxy_optout::HistoryQuery::new().limit(7).to_owned();
    /// assert_eq!(q.as_query().get_limit(), 7);
    /// ```
    #[must_use]
    pub fn as_query(&self) -> HistoryQuery<'_> {
        HistoryQuery {
            scope: self.scope.as_deref(),
            participant: self.participant.as_deref(),
            ..self.rest
        }
    }
}

/// A ledger store that keeps history and reads it back: for exports, audits and the
/// conformance kit. The relay itself never reads history.
///
/// Contract, beside [`OptOutStore`]'s: every successful
/// [`record_change`](OptOutStore::record_change) (and [`record`](OptOutStore::record))
/// appends exactly one entry, in the same transaction as the state; `seq`s increase in commit
/// order; the last entry of a key has the key's current state.
///
/// # Example
///
/// ```
/// use proxy_optout::{Change, ChangeSource, HistoryQuery, HistoryStore, LedgerKey, MemoryStore, OptOutStore, OptState};
/// let store = MemoryStore::new();
/// let key = LedgerKey::new("+1P", "+1A");
/// store.record_change(&Change::new(key, OptState::OptedOut, ChangeSource::Keyword).with_keyword("STOP"))?;
/// store.record_change(&Change::new(key, OptState::OptedIn, ChangeSource::Keyword).with_keyword("START"))?;
/// let page = store.history(&HistoryQuery::new().participant("+1A"))?;
/// assert_eq!(page.len(), 2);
/// assert_eq!(page[1].state, OptState::OptedIn);
/// assert!(store.history(&HistoryQuery::new().state(OptState::OptedOut).current_only(true))?.is_empty());
/// # Ok::<(), core::convert::Infallible>(())
/// ```
pub trait HistoryStore: OptOutStore {
    /// One page of entries, in `seq` order (see [`HistoryQuery`]).
    ///
    /// # Errors
    ///
    /// The host's error when history could not be read.
    fn history(&self, query: &HistoryQuery<'_>) -> Result<Vec<HistoryEntry>, Self::Error>;
}

/// [`HistoryStore`] for an asynchronous store.
///
/// # Example
///
/// ```
/// use proxy_optout::{AsyncHistoryStore, AsyncOptOutStore, HistoryQuery, LedgerKey, MemoryStore, OptState};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// AsyncOptOutStore::record(&store, LedgerKey::new("P", "A"), OptState::OptedOut).await?;
/// let page = AsyncHistoryStore::history(&store, &HistoryQuery::new()).await?;
/// assert_eq!(page[0].source, proxy_optout::ChangeSource::Unspecified);
/// # Ok::<(), core::convert::Infallible>(())
/// # }).unwrap();
/// ```
pub trait AsyncHistoryStore: AsyncOptOutStore {
    /// One page of entries, in `seq` order (see [`HistoryQuery`]).
    fn history(
        &self,
        query: &HistoryQuery<'_>,
    ) -> impl Future<Output = Result<Vec<HistoryEntry>, Self::Error>> + Send;
}

macro_rules! forward_history {
    ($($ty:ty),*) => {$(
        impl<S: HistoryStore + ?Sized> HistoryStore for $ty {
            fn history(&self, query: &HistoryQuery<'_>) -> Result<Vec<HistoryEntry>, Self::Error> {
                (**self).history(query)
            }
        }
        impl<S: AsyncHistoryStore + ?Sized + Send> AsyncHistoryStore for $ty {
            fn history(
                &self,
                query: &HistoryQuery<'_>,
            ) -> impl Future<Output = Result<Vec<HistoryEntry>, Self::Error>> + Send {
                (**self).history(query)
            }
        }
    )*};
}

forward_history!(&S, alloc::boxed::Box<S>, alloc::sync::Arc<S>);
