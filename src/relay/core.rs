//! The pure relay core: [`RelayCore::plan`] says what it needs to know about one message,
//! [`Plan::finish`] turns the host's answers into the [`Outcome`]. No I/O, no async, no
//! allocation; every driver is a thin adapter on these two steps.

use core::fmt;
use core::str::FromStr;

use smallvec::SmallVec;

use crate::classifier::Classifier;
use crate::decision::{Action, Decision};
use crate::error::{parse_named, ParseError};
use crate::history::{Change, ChangeSource};
use crate::identifier::IdentifierError;
use crate::keywords::Category;
use crate::ledger::{LedgerKey, LedgerScope, OptState};
use crate::message::{Channel, Message};
use crate::notice::Notice;
use crate::policy::{Intercept, ProxyPolicy, StopFilterFlag, StopFiltering};
use crate::relay::inbound::Inbound;
use crate::relay::outcome::{Delivery, LedgerChange, Outbound, Outcome, Withheld};
use crate::replies::AutoReplies;
use crate::session::{Participant, Route};

/// Who owns the carrier layer (STOP/START/HELP replies and refusing sends with 21610).
///
/// New modes may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout::{CarrierMode, Inbound, RelayCore, Settings};
///
/// // On Twilio long codes the platform answers STOP itself: mirror it, never reply.
/// let core = RelayCore::default().with_mode(CarrierMode::Mirror);
/// let inbound = Inbound::sms("+1A", "+1P", "STOP");
/// let out = core.plan(&inbound, None, Settings::default())?.finish(Default::default());
/// assert!(out.reply().is_none());
/// assert!(out.ledger().is_some()); // the ledger is still kept in step
/// # Ok::<(), proxy_optout::InputError>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum CarrierMode {
    /// The host is the carrier side: it sends the STOP/START/HELP replies and refuses sends
    /// to opted-out pairs with 21610. For transports that do not do this themselves (SMPP,
    /// many aggregators), and for tests.
    #[default]
    Emulate,
    /// The platform is the carrier side (Twilio long codes with STOP filtering on): the relay
    /// keeps its ledger in step, withholds forwards the platform would refuse, and never
    /// emits a reply, so the user is never confirmed twice.
    Mirror,
}

impl CarrierMode {
    /// Both modes.
    ///
    /// ```
    /// assert_eq!(proxy_optout::CarrierMode::ALL.len(), 2);
    /// ```
    pub const ALL: [CarrierMode; 2] = [CarrierMode::Emulate, CarrierMode::Mirror];

    /// The lowercase name: `emulate` or `mirror`.
    ///
    /// ```
    /// assert_eq!(proxy_optout::CarrierMode::Mirror.as_str(), "mirror");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            CarrierMode::Emulate => "emulate",
            CarrierMode::Mirror => "mirror",
        }
    }
}

impl fmt::Display for CarrierMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CarrierMode {
    type Err = ParseError;

    /// Parses `emulate` or `mirror`; ASCII case is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_named(
            &CarrierMode::ALL,
            CarrierMode::as_str,
            s,
            "carrier mode",
            "emulate, mirror",
        )
    }
}

/// The policy's answers the first step needs: the account flag, and whether STOP filtering
/// is on for the proxy number the message was sent to and for the recipient's proxy number.
/// A host that keeps these per number in its database looks them up (synchronously or with
/// `.await`) before planning; [`Settings::from_policy`] asks a [`ProxyPolicy`].
///
/// # Example
///
/// ```
/// use proxy_optout::{Settings, StopFilterFlag, StopFiltering};
/// assert_eq!(Settings::default(), Settings::new(StopFilterFlag::Ignore, StopFiltering::On));
/// let s = Settings::default().with_recipient_filtering(StopFiltering::Off);
/// assert_eq!(s.recipient_filtering(), StopFiltering::Off);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Settings {
    flag: StopFilterFlag,
    filtering: StopFiltering,
    recipient_filtering: StopFiltering,
}

impl Settings {
    /// The same flag and filtering setting for both numbers.
    ///
    /// ```
    /// use proxy_optout::{Settings, StopFilterFlag, StopFiltering};
    /// let s = Settings::new(StopFilterFlag::Respect, StopFiltering::Off);
    /// assert_eq!(s.flag(), StopFilterFlag::Respect);
    /// ```
    #[must_use]
    pub const fn new(flag: StopFilterFlag, filtering: StopFiltering) -> Self {
        Settings {
            flag,
            filtering,
            recipient_filtering: filtering,
        }
    }

    /// The same settings with another filtering setting for the recipient's proxy number.
    ///
    /// ```
    /// use proxy_optout::{Settings, StopFiltering};
    /// let s = Settings::default().with_recipient_filtering(StopFiltering::Off);
    /// assert_eq!(s.filtering(), StopFiltering::On);
    /// ```
    #[must_use]
    pub const fn with_recipient_filtering(mut self, filtering: StopFiltering) -> Self {
        self.recipient_filtering = filtering;
        self
    }

    /// Asks `policy` for the flag and for STOP filtering on `to` (the proxy number the
    /// message was sent to) and on `recipient_proxy` (the recipient's proxy number, if the
    /// route has a recipient).
    ///
    /// ```
    /// use proxy_optout::{Settings, TwilioProxy};
    /// assert_eq!(Settings::from_policy(&TwilioProxy, "+1P", Some("+1Q")), Settings::default());
    /// ```
    #[must_use]
    pub fn from_policy<P: ProxyPolicy + ?Sized>(
        policy: &P,
        to: &str,
        recipient_proxy: Option<&str>,
    ) -> Self {
        let filtering = policy.stop_filtering(Some(to));
        Settings {
            flag: policy.stop_filter_flag(),
            filtering,
            recipient_filtering: match other_number(to, recipient_proxy) {
                Some(p) => policy.stop_filtering(Some(p)),
                None => filtering,
            },
        }
    }

    /// The `ProxyRespectSmsStopFilterFlag` account flag.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Settings::default().flag(), proxy_optout::StopFilterFlag::Ignore);
    /// ```
    #[must_use]
    pub const fn flag(&self) -> StopFilterFlag {
        self.flag
    }

    /// STOP filtering on the proxy number the message was sent to.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Settings::default().filtering(), proxy_optout::StopFiltering::On);
    /// ```
    #[must_use]
    pub const fn filtering(&self) -> StopFiltering {
        self.filtering
    }

    /// STOP filtering on the recipient's proxy number.
    ///
    /// ```
    /// use proxy_optout::{Settings, StopFiltering};
    /// assert_eq!(Settings::default().recipient_filtering(), StopFiltering::On);
    /// ```
    #[must_use]
    pub const fn recipient_filtering(&self) -> StopFiltering {
        self.recipient_filtering
    }
}

/// The recipient's proxy number when its STOP filtering must be asked separately: when there is
/// a recipient and its proxy number is not the one the message was sent to.
#[inline]
pub(crate) fn other_number<'a>(to: &str, recipient_proxy: Option<&'a str>) -> Option<&'a str> {
    recipient_proxy.filter(|p| *p != to)
}

/// The settings, seen by the classifier as a policy (without a hook: the plan asks the host).
struct Fixed(Settings);

impl ProxyPolicy for Fixed {
    fn stop_filter_flag(&self) -> StopFilterFlag {
        self.0.flag
    }
    fn stop_filtering(&self, _proxy_number: Option<&str>) -> StopFiltering {
        self.0.filtering
    }
}

/// What the host supplies to [`Plan::finish`]: the states the plan asked for and the intercept
/// hook's verdict. An answer the plan asked for and did not get counts as unknown, and the
/// relay fails closed: no HELP reply for an unknown sender state, no forward to a recipient
/// whose state is unknown, and a hook that gave no answer blocks.
///
/// # Example
///
/// ```
/// use proxy_optout::{Answers, Intercept, OptState};
/// let a = Answers::new().recipient_state(OptState::OptedIn).intercept(Intercept::Allow);
/// # let _ = a;
/// ```
#[must_use]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Answers {
    sender: Option<OptState>,
    recipient: Option<OptState>,
    intercept: Option<Intercept>,
}

impl Answers {
    /// No answers yet.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Answers::new(), proxy_optout::Answers::default());
    /// ```
    pub const fn new() -> Self {
        Answers {
            sender: None,
            recipient: None,
            intercept: None,
        }
    }

    /// The state of [`Plan::sender_key`].
    ///
    /// ```
    /// let a = proxy_optout::Answers::new().sender_state(proxy_optout::OptState::OptedIn);
    /// # let _ = a;
    /// ```
    pub const fn sender_state(mut self, state: OptState) -> Self {
        self.sender = Some(state);
        self
    }

    /// The state of [`Plan::recipient_key`].
    ///
    /// ```
    /// let a = proxy_optout::Answers::new().recipient_state(proxy_optout::OptState::OptedOut);
    /// # let _ = a;
    /// ```
    pub const fn recipient_state(mut self, state: OptState) -> Self {
        self.recipient = Some(state);
        self
    }

    /// The intercept hook's verdict, when [`Plan::intercept`] asked for one.
    ///
    /// ```
    /// let a = proxy_optout::Answers::new().intercept(proxy_optout::Intercept::Block);
    /// # let _ = a;
    /// ```
    pub const fn intercept(mut self, verdict: Intercept) -> Self {
        self.intercept = Some(verdict);
        self
    }
}

/// An inbound message the host cannot hand to the relay. New variants may be added in minor
/// releases.
///
/// # Example
///
/// ```
/// use proxy_optout::{IdentifierError, Inbound, InputError, RelayCore, Settings};
/// let err = RelayCore::default()
///     .plan(&Inbound::sms("", "+1P", "hi"), None, Settings::default())
///     .unwrap_err();
/// assert_eq!(err, InputError::Identifier(IdentifierError::Empty { field: "from" }));
/// assert_eq!(err.to_string(), "from is empty");
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// An identifier of the message is not in canonical form.
    #[error(transparent)]
    Identifier(#[from] IdentifierError),
    /// The route's sender is not the message's (sender, proxy number) pair.
    #[error("route of session {session:?} is for {sender:?} via {proxy:?}, not for this message")]
    RouteMismatch {
        /// The route's session.
        session: alloc::string::String,
        /// The route's sender.
        sender: alloc::string::String,
        /// The route's sender's proxy identifier.
        proxy: alloc::string::String,
    },
}

impl InputError {
    /// Whether the error is the host's (a route that is not the message's own) rather than
    /// the message's: answer 500 and alert, not 400.
    ///
    /// ```
    /// use proxy_optout::{Inbound, Participant, RelayCore, Route, Settings};
    /// let (a, b) = (Participant::new("+1A", "+1P")?, Participant::new("+1B", "+1P")?);
    /// let wrong = Route::new("ride-1", &b, Some(&a))?; // B's route, for A's message
    /// let err = RelayCore::new().plan(&Inbound::sms("+1A", "+1P", "hi"), Some(wrong), Settings::default()).unwrap_err();
    /// assert!(err.is_host_bug());
    /// let bad = RelayCore::new().plan(&Inbound::sms(" +1A", "+1P", "hi"), None, Settings::default()).unwrap_err();
    /// assert!(!bad.is_host_bug());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn is_host_bug(&self) -> bool {
        matches!(self, InputError::RouteMismatch { .. })
    }
}

/// The relay's configuration and its two pure steps. Immutable once built, `Send + Sync`,
/// shared by every handler and thread without a lock; holds no sessions and no store.
///
/// # Example
///
/// The whole protocol, answered by hand (a host answers from its database):
///
/// ```
/// use proxy_optout::{
///     Answers, Effect, Inbound, Intercept, OptState, Participant, RelayCore, Route, Settings,
/// };
///
/// let core = RelayCore::default();
/// let rider = Participant::new("+1RIDER", "+1P")?;
/// let driver = Participant::new("+1DRIVER", "+1P")?;
/// let route = Route::new("ride-1", &rider, Some(&driver))?;
///
/// let inbound = Inbound::sms("+1RIDER", "+1P", "on my way");
/// let plan = core.plan(&inbound, Some(route), Settings::default())?;
/// assert_eq!(plan.sender_key(), None); // only HELP needs the sender's state
/// let key = plan.recipient_key().unwrap(); // 21610 needs the recipient's
/// assert_eq!((key.scope(), key.participant()), ("+1P", "+1DRIVER"));
/// assert!(plan.intercept().is_some()); // in session and forwarded: ask the hook
///
/// let answers = Answers::new()
///     .recipient_state(OptState::OptedIn)
///     .intercept(Intercept::Allow);
/// let outcome = plan.finish(answers);
/// let first = outcome.effects().next().unwrap();
/// assert!(matches!(first, Effect::Forward(m) if m.to() == "+1DRIVER"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct RelayCore {
    classifier: Classifier,
    replies: AutoReplies,
    scope: LedgerScope,
    mode: CarrierMode,
}

impl RelayCore {
    /// Twilio Proxy's defaults: the default classifier, the platform's auto-replies,
    /// opt-outs scoped to the proxy number, [`CarrierMode::Emulate`].
    ///
    /// ```
    /// let core = proxy_optout::RelayCore::new();
    /// assert_eq!(core.mode(), proxy_optout::CarrierMode::Emulate);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        RelayCore::default()
    }

    /// The same core with another classifier (rule set, matching, extensions).
    ///
    /// ```
    /// use proxy_optout::{Classifier, Matching, RelayCore};
    /// let c = Classifier::builder().matching(Matching::Lenient).build()?;
    /// assert_eq!(RelayCore::new().with_classifier(c).classifier().matching(), Matching::Lenient);
    /// # Ok::<(), proxy_optout::ConfigError>(())
    /// ```
    #[must_use]
    pub fn with_classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// The same core with other auto-replies.
    ///
    /// ```
    /// use proxy_optout::{AutoReplies, Category, RelayCore};
    /// let core = RelayCore::new().with_replies(AutoReplies::default().without(Category::Help));
    /// assert_eq!(core.replies().text(Category::Help), None);
    /// ```
    #[must_use]
    pub fn with_replies(mut self, replies: AutoReplies) -> Self {
        self.replies = replies;
        self
    }

    /// The same core with another ledger scope.
    ///
    /// # Errors
    ///
    /// An [`IdentifierError`] when a service scope's id is not canonical.
    ///
    /// ```
    /// use proxy_optout::{LedgerScope, RelayCore};
    /// let core = RelayCore::new().with_scope(LedgerScope::Service("KS1".into()))?;
    /// assert_eq!(core.scope().scope_for("+1P"), "KS1");
    /// assert!(RelayCore::new().with_scope(LedgerScope::Service(" KS1".into())).is_err());
    /// # Ok::<(), proxy_optout::IdentifierError>(())
    /// ```
    pub fn with_scope(mut self, scope: LedgerScope) -> Result<Self, IdentifierError> {
        scope.validate()?;
        self.scope = scope;
        Ok(self)
    }

    /// The same core in another carrier mode.
    ///
    /// ```
    /// use proxy_optout::{CarrierMode, RelayCore};
    /// assert_eq!(RelayCore::new().with_mode(CarrierMode::Mirror).mode(), CarrierMode::Mirror);
    /// ```
    #[must_use]
    pub fn with_mode(mut self, mode: CarrierMode) -> Self {
        self.mode = mode;
        self
    }

    /// The classifier.
    ///
    /// ```
    /// assert_eq!(proxy_optout::RelayCore::new().classifier().rules(), proxy_optout::RuleSet::Proxy2025);
    /// ```
    #[must_use]
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// The auto-replies.
    ///
    /// ```
    /// use proxy_optout::{Category, RelayCore, DEFAULT_STOP_REPLY};
    /// assert_eq!(RelayCore::new().replies().text(Category::OptOut), Some(DEFAULT_STOP_REPLY));
    /// ```
    #[must_use]
    pub fn replies(&self) -> &AutoReplies {
        &self.replies
    }

    /// The ledger scope.
    ///
    /// ```
    /// assert_eq!(proxy_optout::RelayCore::new().scope(), &proxy_optout::LedgerScope::ProxyNumber);
    /// ```
    #[must_use]
    pub fn scope(&self) -> &LedgerScope {
        &self.scope
    }

    /// The carrier mode.
    ///
    /// ```
    /// assert_eq!(proxy_optout::RelayCore::new().mode(), proxy_optout::CarrierMode::Emulate);
    /// ```
    #[must_use]
    pub fn mode(&self) -> CarrierMode {
        self.mode
    }

    /// The ledger key of `participant` on `proxy` under this core's scope.
    ///
    /// ```
    /// let core = proxy_optout::RelayCore::new();
    /// let k = core.key("+1P", "+1A");
    /// assert_eq!((k.scope(), k.participant()), ("+1P", "+1A"));
    /// ```
    #[must_use]
    pub fn key<'a>(&'a self, proxy: &'a str, participant: &'a str) -> LedgerKey<'a> {
        LedgerKey::new(self.scope.scope_for(proxy), participant)
    }

    /// The first step: classifies the message under `settings` and says what the host must
    /// find out before [`Plan::finish`]. `route` is where the host's sessions say the message
    /// goes (`None`: out of session). Never allocates, never panics.
    ///
    /// In session, the channel is the sender participant's (an SMS participant's MMS stays
    /// MMS), so a WhatsApp participant's STOP passes through as an ordinary message.
    ///
    /// # Errors
    ///
    /// [`InputError`] when an identifier of the message is not canonical or the route is not
    /// for this message's (sender, proxy number) pair.
    ///
    /// ```
    /// use proxy_optout::{Inbound, RelayCore, Settings};
    /// let core = RelayCore::new();
    /// let plan = core.plan(&Inbound::sms("+1A", "+1P", "HELP"), None, Settings::default())?;
    /// assert_eq!(plan.sender_key().map(|k| k.participant()), Some("+1A")); // HELP: is A opted in?
    /// # Ok::<(), proxy_optout::InputError>(())
    /// ```
    #[inline]
    pub fn plan<'a>(
        &'a self,
        inbound: &Inbound<'a>,
        route: Option<Route<'a>>,
        settings: Settings,
    ) -> Result<Plan<'a>, InputError> {
        let channel = check(inbound, route)?;
        Ok(self.plan_checked(inbound, route, channel, settings))
    }

    /// [`plan`](RelayCore::plan) for a message [`check`] accepted, on the channel it gave.
    #[inline]
    pub(crate) fn plan_checked<'a>(
        &'a self,
        inbound: &Inbound<'a>,
        route: Option<Route<'a>>,
        channel: Channel,
        settings: Settings,
    ) -> Plan<'a> {
        let message = inbound.message_on(channel);
        let mut decision = self.classifier.before_hook(&message, &Fixed(settings));
        if inbound.verdict.is_some() {
            // The platform already acted on the keyword: its verdict is the ledger's truth.
            decision = decision.with_carrier(inbound.verdict);
        }
        let asks_sender = self.mode == CarrierMode::Emulate
            && decision.carrier() == Some(Category::Help)
            && self.replies.text(Category::Help).is_some();
        let leg = match (decision.action(), route) {
            (Action::Forward, None) => Leg::Withheld(Withheld::OutOfSession),
            (Action::Forward, Some(r)) => match r.recipient() {
                None => Leg::Withheld(Withheld::NoCounterpart),
                Some(p) => Leg::To {
                    recipient: p,
                    filtered: p.channel().has_keyword_handling()
                        && settings.recipient_filtering == StopFiltering::On,
                },
            },
            _ => Leg::Withheld(Withheld::KeywordDropped),
        };
        Plan {
            core: self,
            inbound: *inbound,
            channel,
            session: route.map(|r| r.session()),
            decision,
            asks_sender,
            leg,
        }
    }
}

/// Checks the message's identifiers and that `route` is its own, and returns the channel the
/// message is classified on: in session the sender participant's (an SMS participant's MMS
/// stays MMS), out of session the one the message says.
#[inline]
pub(crate) fn check(
    inbound: &Inbound<'_>,
    route: Option<Route<'_>>,
) -> Result<Channel, InputError> {
    match route {
        Some(r) => {
            let sender = r.sender();
            if !same(sender.identifier(), inbound.from)
                || !same(sender.proxy_identifier(), inbound.to)
            {
                inbound.validate()?;
                return Err(InputError::RouteMismatch {
                    session: r.session().into(),
                    sender: sender.identifier().into(),
                    proxy: sender.proxy_identifier().into(),
                });
            }
            // `from` and `to` equal the route's participant, whose identifiers were
            // checked when it was made: only the message id is left to check.
            if let Some(id) = inbound.message_id {
                crate::identifier::validate_identifier("message id", id)?;
            }
            Ok(match (sender.channel(), inbound.channel) {
                (Channel::Sms, Channel::Mms) => Channel::Mms,
                (c, _) => c,
            })
        }
        None => {
            inbound.validate()?;
            Ok(inbound.channel)
        }
    }
}

/// String equality that skips the comparison when both are the same slice (a route built from
/// the same row as the message).
#[inline]
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    // Phone numbers are 8 to 16 bytes: two overlapping word compares, no call to memcmp.
    if let (Some(a0), Some(b0), Some(a1), Some(b1)) = (
        a.first_chunk::<8>(),
        b.first_chunk::<8>(),
        a.last_chunk::<8>(),
        b.last_chunk::<8>(),
    ) {
        if a.len() <= 16 {
            return a0 == b0 && a1 == b1;
        }
    }
    core::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b
}

/// Where the forward would go, as far as the first step can tell.
#[derive(Clone, Copy, Debug)]
enum Leg<'a> {
    Withheld(Withheld),
    To {
        recipient: &'a Participant,
        filtered: bool,
    },
}

/// The first step's result: what the relay needs to know before it can decide. Ask for each
/// key it names (in any order, in one batch query if you like), ask the intercept hook if it
/// says so, then call [`finish`](Plan::finish).
///
/// # Example
///
/// ```
/// use proxy_optout::{Answers, Inbound, OptState, RelayCore, Settings};
/// let core = RelayCore::new();
/// let inbound = Inbound::sms("+1A", "+1P", "info");
/// let plan = core.plan(&inbound, None, Settings::default())?;
/// let sender = plan.sender_key().unwrap();
/// assert_eq!(sender.participant(), "+1A");
/// let out = plan.finish(Answers::new().sender_state(OptState::OptedIn));
/// assert!(out.reply().is_some()); // HELP is answered to an opted-in sender
/// # Ok::<(), proxy_optout::InputError>(())
/// ```
#[must_use]
#[derive(Clone, Copy, Debug)]
pub struct Plan<'a> {
    core: &'a RelayCore,
    inbound: Inbound<'a>,
    channel: Channel,
    session: Option<&'a str>,
    decision: Decision,
    asks_sender: bool,
    leg: Leg<'a>,
}

impl<'a> Plan<'a> {
    pub(crate) fn sender(&self) -> LedgerKey<'a> {
        self.core.key(self.inbound.to, self.inbound.from)
    }

    /// The facts of a change of the sender's pair to `state` caused by this message, for
    /// [`OptOutStore::record_change`](crate::OptOutStore::record_change): the source (the
    /// keyword, or the platform's verdict when the core mirrors it or no keyword matched),
    /// the keyword, the body as received, the message id and the rule set. For the change
    /// [`Plan::finish`] reports, pass its state; [`Steps::change`](crate::Steps::change)
    /// does. Allocates nothing.
    ///
    /// ```
    /// use proxy_optout::{ChangeSource, Inbound, OptState, RelayCore, Settings};
    /// let core = RelayCore::new();
    /// let inbound = Inbound::sms("A", "P", "stop").with_message_id("SM9");
    /// let plan = core.plan(&inbound, None, Settings::default())?;
    /// let change = plan.change(OptState::OptedOut);
    /// assert_eq!((change.source(), change.keyword(), change.message_id()), (ChangeSource::Keyword, Some("STOP"), Some("SM9")));
    /// # Ok::<(), proxy_optout::InputError>(())
    /// ```
    #[must_use]
    pub fn change(&self, state: OptState) -> Change<'a> {
        let keyword = self.decision.keyword();
        let mirrored = self.core.mode() == CarrierMode::Mirror && self.inbound.verdict.is_some();
        let source = if keyword.is_none() || mirrored {
            ChangeSource::Platform
        } else {
            ChangeSource::Keyword
        };
        let mut change = Change::new(self.sender(), state, source)
            .with_text(self.inbound.body)
            .with_rule_set(self.core.classifier().rules());
        if let Some(keyword) = keyword {
            change = change.with_keyword(keyword);
        }
        if let Some(id) = self.inbound.message_id {
            change = change.with_message_id(id);
        }
        change
    }

    /// The sender's pair, whose state is needed (to answer HELP only to an opted-in sender).
    ///
    /// ```
    /// use proxy_optout::{Inbound, RelayCore, Settings};
    /// let core = RelayCore::new();
    /// let plan = core.plan(&Inbound::sms("A", "P", "STOP"), None, Settings::default())?;
    /// assert_eq!(plan.sender_key(), None); // STOP is recorded, not looked up
    /// # Ok::<(), proxy_optout::InputError>(())
    /// ```
    #[must_use]
    pub fn sender_key(&self) -> Option<LedgerKey<'a>> {
        self.asks_sender.then(|| self.sender())
    }

    /// The recipient's pair, whose state is needed (to refuse the forward with 21610).
    ///
    /// ```
    /// use proxy_optout::{Inbound, RelayCore, Settings};
    /// let core = RelayCore::new();
    /// let plan = core.plan(&Inbound::sms("A", "P", "hi"), None, Settings::default())?;
    /// assert_eq!(plan.recipient_key(), None); // out of session: nobody to forward to
    /// # Ok::<(), proxy_optout::InputError>(())
    /// ```
    #[must_use]
    pub fn recipient_key(&self) -> Option<LedgerKey<'a>> {
        match self.leg {
            Leg::To {
                recipient,
                filtered: true,
            } => Some(
                self.core
                    .key(recipient.proxy_identifier(), recipient.identifier()),
            ),
            _ => None,
        }
    }

    /// The message and the decision so far, when the intercept hook must be asked: for an
    /// in-session message the Proxy layer would forward to a counterpart. If the recipient's
    /// state could not be read, the hook need not be asked (its answer would be ignored).
    ///
    /// ```
    /// use proxy_optout::{Inbound, RelayCore, Settings};
    /// let core = RelayCore::new();
    /// let plan = core.plan(&Inbound::sms("A", "P", "hi"), None, Settings::default())?;
    /// assert!(plan.intercept().is_none()); // out of session: the hook is not asked
    /// # Ok::<(), proxy_optout::InputError>(())
    /// ```
    #[must_use]
    pub fn intercept(&self) -> Option<(Message<'a>, Decision)> {
        match self.leg {
            Leg::To { .. } => Some((self.inbound.message_on(self.channel), self.decision)),
            Leg::Withheld(_) => None,
        }
    }

    /// The decision before the intercept hook.
    ///
    /// ```
    /// use proxy_optout::{Inbound, RelayCore, Settings};
    /// let core = RelayCore::new();
    /// let plan = core.plan(&Inbound::sms("A", "P", "STOP"), None, Settings::default())?;
    /// assert!(plan.decision().is_dropped());
    /// # Ok::<(), proxy_optout::InputError>(())
    /// ```
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The second step: the outcome, given the answers. Never allocates, never panics.
    ///
    /// ```
    /// use proxy_optout::{Answers, Inbound, RelayCore, Settings, Withheld};
    /// let core = RelayCore::new();
    /// let out = core
    ///     .plan(&Inbound::sms("A", "P", "hi"), None, Settings::default())?
    ///     .finish(Answers::new());
    /// assert_eq!(out.withheld(), Some(Withheld::OutOfSession));
    /// # Ok::<(), proxy_optout::InputError>(())
    /// ```
    #[inline]
    pub fn finish(self, answers: Answers) -> Outcome<'a> {
        let core = self.core;
        let sender = self.sender();
        let inbound = self.inbound;
        let mut decision = self.decision;
        let ledger = match decision.carrier() {
            Some(Category::OptOut) => Some(LedgerChange::borrowed(sender, OptState::OptedOut)),
            Some(Category::OptIn) => Some(LedgerChange::borrowed(sender, OptState::OptedIn)),
            _ => None,
        };
        let reply = match (core.mode, decision.carrier()) {
            (CarrierMode::Emulate, Some(category)) => {
                let answered =
                    category != Category::Help || answers.sender == Some(OptState::OptedIn);
                let text = core.replies.text(category).filter(|_| answered);
                let channel = match self.channel {
                    Channel::Mms => Channel::Sms,
                    c => c,
                };
                text.map(|t| Outbound::borrowed(inbound.to, inbound.from, t, channel))
            }
            _ => None,
        };
        let delivery = match self.leg {
            Leg::Withheld(w) => {
                decision = decision.withheld();
                Delivery::Withheld(w)
            }
            Leg::To {
                recipient,
                filtered,
            } => {
                let outbound = Outbound::borrowed(
                    recipient.proxy_identifier(),
                    recipient.identifier(),
                    inbound.body,
                    recipient.channel(),
                );
                let state = if filtered {
                    answers.recipient
                } else {
                    Some(OptState::OptedIn)
                };
                match (state, answers.intercept) {
                    (None, _) => {
                        decision = decision.withheld();
                        Delivery::Withheld(Withheld::RecipientStatusUnknown)
                    }
                    (Some(_), None | Some(Intercept::Block)) => {
                        decision = decision.blocked();
                        Delivery::Withheld(Withheld::HookBlocked)
                    }
                    (Some(OptState::OptedOut), Some(Intercept::Allow)) => {
                        Delivery::Refused(outbound)
                    }
                    (Some(_), Some(_)) => Delivery::Send(outbound),
                }
            }
        };
        let mut notices = SmallVec::new();
        notices.extend(decision.notice());
        if let Delivery::Refused(_) = delivery {
            notices.push(Notice::UnsubscribedRecipient);
        }
        Outcome {
            decision,
            session: self.session.map(alloc::borrow::Cow::Borrowed),
            message_id: inbound.message_id.map(alloc::borrow::Cow::Borrowed),
            delivery,
            reply,
            ledger,
            recorded: false,
            notices,
        }
    }
}
