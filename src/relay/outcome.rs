//! What one inbound message implies: the [`Outcome`], and the ordered [`Effect`]s the host
//! performs.

use alloc::borrow::Cow;
use core::fmt;

use smallvec::SmallVec;

use crate::decision::Decision;
use crate::ledger::{LedgerKey, OptState};
use crate::message::Channel;
use crate::notice::Notice;

/// A message the host must send (or record as refused): from a proxy identifier to a
/// participant. It borrows from the inbound message, the route and the relay's
/// configuration; [`into_owned`](Outbound::into_owned) detaches it.
///
/// # Example
///
/// ```
/// use proxy_optout::{Inbound, MemoryStore, Participant, Relay};
/// let mut relay = Relay::new(MemoryStore::new());
/// relay.sessions_mut().open("r", Participant::new("A", "P")?, Participant::new("B", "Q")?)?;
/// let out = relay.handle(&Inbound::sms("A", "P", "hello"))?;
/// let sent = out.forwarded().unwrap();
/// assert_eq!((sent.from(), sent.to(), sent.body()), ("Q", "B", "hello"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Outbound<'a> {
    from: Cow<'a, str>,
    to: Cow<'a, str>,
    body: Cow<'a, str>,
    channel: Channel,
}

impl<'a> Outbound<'a> {
    pub(crate) const fn borrowed(
        from: &'a str,
        to: &'a str,
        body: &'a str,
        channel: Channel,
    ) -> Self {
        Outbound {
            from: Cow::Borrowed(from),
            to: Cow::Borrowed(to),
            body: Cow::Borrowed(body),
            channel,
        }
    }

    /// The proxy identifier it is sent from.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "HELP"))?;
    /// assert_eq!(out.reply().unwrap().from(), "P");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn from(&self) -> &str {
        &self.from
    }

    /// The participant it is sent to.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "HELP"))?;
    /// assert_eq!(out.reply().unwrap().to(), "A");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn to(&self) -> &str {
        &self.to
    }

    /// The text.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay, DEFAULT_HELP_REPLY};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "HELP"))?;
    /// assert_eq!(out.reply().unwrap().body(), DEFAULT_HELP_REPLY);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The channel it goes out on: the recipient participant's channel.
    ///
    /// ```
    /// # use proxy_optout::{Channel, Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "HELP"))?;
    /// assert_eq!(out.reply().unwrap().channel(), Channel::Sms);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// A copy that owns its text.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay, Outbound};
    /// let body = String::from("HELP");
    /// let owned: Outbound<'static> = Relay::new(MemoryStore::new())
    ///     .handle(&Inbound::sms("A", "P", &body))?
    ///     .reply()
    ///     .unwrap()
    ///     .clone()
    ///     .into_owned();
    /// drop(body);
    /// assert_eq!(owned.to(), "A");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn into_owned(self) -> Outbound<'static> {
        Outbound {
            from: Cow::Owned(self.from.into_owned()),
            to: Cow::Owned(self.to.into_owned()),
            body: Cow::Owned(self.body.into_owned()),
            channel: self.channel,
        }
    }
}

impl fmt::Display for Outbound<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}: {:?}", self.from, self.to, self.body)
    }
}

/// Why nothing is sent to the other participant.
///
/// New reasons may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout::Withheld;
/// assert_eq!(Withheld::KeywordDropped.as_str(), "keyword_dropped");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Withheld {
    /// A keyword Proxy does not forward (80901).
    KeywordDropped,
    /// The intercept hook blocked it (80909), or was asked and gave no answer.
    HookBlocked,
    /// No open session has the (sender, proxy number) pair: the host's out-of-session
    /// handling decides what to do.
    OutOfSession,
    /// The session has no second participant yet.
    NoCounterpart,
    /// The store could not say whether the recipient opted out, so the forward is not sent
    /// (fail closed).
    RecipientStatusUnknown,
}

impl Withheld {
    /// The snake-case name.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Withheld::OutOfSession.as_str(), "out_of_session");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Withheld::KeywordDropped => "keyword_dropped",
            Withheld::HookBlocked => "hook_blocked",
            Withheld::OutOfSession => "out_of_session",
            Withheld::NoCounterpart => "no_counterpart",
            Withheld::RecipientStatusUnknown => "recipient_status_unknown",
        }
    }
}

impl fmt::Display for Withheld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Withheld::KeywordDropped => "keyword dropped",
            Withheld::HookBlocked => "hook blocked",
            Withheld::OutOfSession => "out of session",
            Withheld::NoCounterpart => "no counterpart",
            Withheld::RecipientStatusUnknown => "recipient status unknown",
        })
    }
}

/// What happens on the leg to the other participant.
///
/// New variants may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout::{Delivery, Inbound, MemoryStore, Relay, Withheld};
/// let relay = Relay::new(MemoryStore::new());
/// let out = relay.handle(&Inbound::sms("A", "P", "hi"))?;
/// assert_eq!(out.delivery(), &Delivery::Withheld(Withheld::OutOfSession));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Delivery<'a> {
    /// Send this message.
    Send(Outbound<'a>),
    /// The outbound leg fails with 21610: the recipient opted out of that proxy number.
    /// The host records the message as `failed` and sends nothing.
    Refused(Outbound<'a>),
    /// Nothing is sent.
    Withheld(Withheld),
}

impl Delivery<'_> {
    fn into_owned(self) -> Delivery<'static> {
        match self {
            Delivery::Send(m) => Delivery::Send(m.into_owned()),
            Delivery::Refused(m) => Delivery::Refused(m.into_owned()),
            Delivery::Withheld(w) => Delivery::Withheld(w),
        }
    }
}

/// A change to the opt-out ledger: which pair, and its new state.
///
/// # Example
///
/// ```
/// use proxy_optout::{Inbound, LedgerKey, MemoryStore, OptState, Relay};
/// let relay = Relay::new(MemoryStore::new());
/// let out = relay.handle(&Inbound::sms("A", "P", "STOP"))?;
/// let change = out.ledger().unwrap();
/// assert_eq!(change.state(), OptState::OptedOut);
/// assert_eq!(change.key(), LedgerKey::new("P", "A"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LedgerChange<'a> {
    scope: Cow<'a, str>,
    participant: Cow<'a, str>,
    state: OptState,
}

impl<'a> LedgerChange<'a> {
    pub(crate) const fn borrowed(key: LedgerKey<'a>, state: OptState) -> Self {
        LedgerChange {
            scope: Cow::Borrowed(key.scope()),
            participant: Cow::Borrowed(key.participant()),
            state,
        }
    }

    /// Whose state changes, where.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "STOP"))?;
    /// assert_eq!(out.ledger().unwrap().key().scope(), "P");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn key(&self) -> LedgerKey<'_> {
        LedgerKey::new(&self.scope, &self.participant)
    }

    /// The new state.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, OptState, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "START"))?;
    /// assert_eq!(out.ledger().unwrap().state(), OptState::OptedIn);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn state(&self) -> OptState {
        self.state
    }

    /// A copy that owns its identifiers.
    ///
    /// ```
    /// # use proxy_optout::{LedgerChange, Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "STOP"))?;
    /// let change: LedgerChange<'static> = out.ledger().unwrap().clone().into_owned();
    /// assert_eq!(change.key().participant(), "A");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn into_owned(self) -> LedgerChange<'static> {
        LedgerChange {
            scope: Cow::Owned(self.scope.into_owned()),
            participant: Cow::Owned(self.participant.into_owned()),
            state: self.state,
        }
    }
}

/// One thing the host does for an [`Outcome`], in the order [`Outcome::effects`] lists them.
///
/// The order is the contract: perform [`Record`](Effect::Record) and wait until the store
/// says it is durable before the [`Reply`](Effect::Reply) that confirms it; if the record
/// fails, skip every effect whose [`needs_record`](Effect::needs_record) is true and still
/// perform the others (the forward does not depend on the sender's own opt-out). New effects
/// may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout::{Effect, Inbound, OptState, RelayCore, Settings};
///
/// let core = RelayCore::default();
/// let inbound = Inbound::sms("+1A", "+1P", "STOP");
/// let plan = core.plan(&inbound, None, Settings::default())?;
/// let outcome = plan.finish(Default::default());
/// let effects: Vec<Effect<'_>> = outcome.effects().collect();
/// assert!(matches!(effects[0], Effect::Record { state: OptState::OptedOut, .. }));
/// assert!(matches!(effects[1], Effect::Reply(_)));
/// assert!(effects[1].needs_record());
/// assert!(matches!(effects[2], Effect::Notice(n) if n.code() == 80901));
/// assert_eq!(effects.len(), 3);
/// # Ok::<(), proxy_optout::InputError>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect<'o> {
    /// Store this state for this key, durably, before anything after it. Listed only while
    /// the change is not stored: in the outcome of the pure steps. `Relay` and `AsyncRelay`
    /// store it before they return, so their outcomes do not list it.
    Record {
        /// The pair.
        key: LedgerKey<'o>,
        /// Its new state.
        state: OptState,
    },
    /// Send the carrier layer's auto-reply to the sender (Emulate mode only). Depends on the
    /// `Record` before it, if there is one.
    Reply(&'o Outbound<'o>),
    /// Send the message to the other participant.
    Forward(&'o Outbound<'o>),
    /// Log the leg to the other participant as failed with 21610; send nothing.
    Refuse(&'o Outbound<'o>),
    /// Raise this debugger notice (log it, show it in the host's message log).
    Notice(Notice),
    /// Fire the status callback for the outbound leg: Twilio Proxy's `CallbackUrl`, called
    /// after each new interaction and never for a dropped keyword. A host without such a
    /// callback ignores it.
    StatusCallback,
}

impl Effect<'_> {
    /// Whether this effect may only be performed once the outcome's `Record` succeeded: true
    /// for the auto-reply (it confirms the ledger change), false for everything else.
    ///
    /// ```
    /// assert!(!proxy_optout::Effect::StatusCallback.needs_record());
    /// ```
    #[must_use]
    pub const fn needs_record(&self) -> bool {
        matches!(self, Effect::Reply(_))
    }
}

impl fmt::Display for Effect<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::Record { key, state } => write!(f, "record {state} for {key}"),
            Effect::Reply(m) => write!(f, "reply {m}"),
            Effect::Forward(m) => write!(f, "forward {m}"),
            Effect::Refuse(m) => write!(f, "refuse {m} (21610)"),
            Effect::Notice(n) => write!(f, "notice {}", n.code()),
            Effect::StatusCallback => f.write_str("status callback"),
        }
    }
}

/// Everything one inbound message implies for the host: the Proxy decision, the delivery to
/// the other participant, the carrier layer's ledger change and auto-reply, the notices, and
/// whether the status callback fires. [`effects`](Outcome::effects) lists them in the order
/// the host performs them.
///
/// It borrows from the inbound message, the route and the relay;
/// [`into_owned`](Outcome::into_owned) detaches it (to cache the answer for a redelivered webhook, say).
///
/// # Example
///
/// ```
/// use proxy_optout::{Inbound, MemoryStore, Notice, OptState, Participant, Relay, Withheld};
///
/// let mut relay = Relay::new(MemoryStore::new());
/// relay.sessions_mut().open(
///     "ride-1",
///     Participant::new("+1RIDER", "+1PROXY")?,
///     Participant::new("+1DRIVER", "+1PROXY")?,
/// )?;
/// let out = relay.handle(&Inbound::sms("+1RIDER", "+1PROXY", "Stop"))?;
/// assert_eq!(out.withheld(), Some(Withheld::KeywordDropped));
/// assert_eq!(out.notices(), &[Notice::MessageMatchedStopWord]);
/// assert!(!out.fires_status_callback());
/// assert_eq!(out.ledger().unwrap().state(), OptState::OptedOut);
/// assert!(out.reply().unwrap().body().starts_with("You have successfully been unsubscribed"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Outcome<'a> {
    pub(crate) decision: Decision,
    pub(crate) session: Option<Cow<'a, str>>,
    pub(crate) message_id: Option<Cow<'a, str>>,
    pub(crate) delivery: Delivery<'a>,
    pub(crate) reply: Option<Outbound<'a>>,
    pub(crate) ledger: Option<LedgerChange<'a>>,
    pub(crate) recorded: bool,
    pub(crate) notices: SmallVec<[Notice; 2]>,
}

impl<'a> Outcome<'a> {
    /// The Proxy layer's decision for the message, as carried out: a message the relay did
    /// not relay for a routing or store reason is [`Action::Withhold`](crate::Action::Withhold),
    /// so its `calls_intercept()` and `fires_status_callback()` agree with the outcome's.
    ///
    /// ```
    /// # use proxy_optout::{Action, Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "UNSTOP"))?;
    /// assert!(out.decision().is_dropped());
    /// let out = relay.handle(&Inbound::sms("A", "P", "hello"))?; // out of session
    /// assert_eq!(out.decision().action(), Action::Withhold);
    /// assert!(!out.decision().calls_intercept());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The session the message belongs to; `None` when it is out of session.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "hi"))?;
    /// assert_eq!(out.session(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// The provider's message id the inbound message carried, if any: the key under which
    /// the host remembers this outcome for redelivery.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let inbound = Inbound::sms("A", "P", "hi").with_message_id("SM1");
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&inbound)?;
    /// assert_eq!(out.message_id(), Some("SM1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }

    /// What happens on the leg to the other participant.
    ///
    /// ```
    /// # use proxy_optout::{Delivery, Inbound, MemoryStore, Relay, Withheld};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "STOP"))?;
    /// assert_eq!(out.delivery(), &Delivery::Withheld(Withheld::KeywordDropped));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delivery(&self) -> &Delivery<'a> {
        &self.delivery
    }

    /// The message to send to the other participant, if one is sent.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "hi"))?;
    /// assert!(out.forwarded().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn forwarded(&self) -> Option<&Outbound<'a>> {
        match &self.delivery {
            Delivery::Send(m) => Some(m),
            _ => None,
        }
    }

    /// The outbound leg refused with 21610, if the recipient opted out.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "hi"))?;
    /// assert!(out.refused().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn refused(&self) -> Option<&Outbound<'a>> {
        match &self.delivery {
            Delivery::Refused(m) => Some(m),
            _ => None,
        }
    }

    /// Why nothing is sent to the other participant, if nothing is.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay, Withheld};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "hi"))?;
    /// assert_eq!(out.withheld(), Some(Withheld::OutOfSession));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn withheld(&self) -> Option<Withheld> {
        match &self.delivery {
            Delivery::Withheld(w) => Some(*w),
            _ => None,
        }
    }

    /// Whether the message is out of session and not dropped: the host's out-of-session
    /// handling takes it from here.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// assert!(relay.handle(&Inbound::sms("A", "P", "hi"))?.is_out_of_session());
    /// assert!(!relay.handle(&Inbound::sms("A", "P", "STOP"))?.is_out_of_session());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn is_out_of_session(&self) -> bool {
        self.withheld() == Some(Withheld::OutOfSession)
    }

    /// The carrier layer's auto-reply, from the proxy number back to the sender (Emulate mode
    /// only).
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay, DEFAULT_START_REPLY};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "start"))?;
    /// assert_eq!(out.reply().unwrap().body(), DEFAULT_START_REPLY);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn reply(&self) -> Option<&Outbound<'a>> {
        self.reply.as_ref()
    }

    /// The ledger change the carrier layer makes, if any.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "ARRET"))?;
    /// assert!(out.ledger().is_none()); // ARRET is not a carrier keyword
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn ledger(&self) -> Option<&LedgerChange<'a>> {
        self.ledger.as_ref()
    }

    /// Whether the ledger change was already stored by a driver ([`Relay`](crate::Relay),
    /// [`AsyncRelay`](crate::AsyncRelay)); [`effects`](Outcome::effects) then leaves it out.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "STOP"))?;
    /// assert!(out.is_recorded());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn is_recorded(&self) -> bool {
        self.recorded
    }

    /// The debugger notices raised, in order.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Notice, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "QUIT"))?;
    /// assert_eq!(out.notices(), &[Notice::MessageMatchedStopWord]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    /// Whether the intercept hook was consulted (equal to
    /// `self.decision().calls_intercept()`).
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "hi"))?;
    /// assert!(!out.intercept_called()); // out of session: the hook is not asked
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn intercept_called(&self) -> bool {
        self.decision.calls_intercept()
    }

    /// Whether the status callback fires: for a message the relay sends or that fails on its
    /// outbound leg (21610), never for a dropped, blocked or withheld one.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "STOP"))?;
    /// assert!(!out.fires_status_callback());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn fires_status_callback(&self) -> bool {
        matches!(self.delivery, Delivery::Send(_) | Delivery::Refused(_))
    }

    /// The effects the host performs, in order: the ledger change (unless a driver already
    /// stored it), the auto-reply that confirms it, the forward or the refused leg, the
    /// notices, the status callback. See [`Effect`] for what to skip when the record fails.
    /// Allocates nothing.
    ///
    /// ```
    /// use proxy_optout::{Effect, Inbound, MemoryStore, Participant, Relay};
    /// let mut relay = Relay::new(MemoryStore::new());
    /// relay.sessions_mut().open("r", Participant::new("A", "P")?, Participant::new("B", "P")?)?;
    /// let out = relay.handle(&Inbound::sms("A", "P", "START"))?;
    /// let effects: Vec<String> = out.effects().map(|e| e.to_string()).collect();
    /// assert_eq!(effects[1], "forward P -> B: \"START\"");
    /// assert_eq!(effects.last().unwrap(), "status callback");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn effects(&self) -> impl Iterator<Item = Effect<'_>> + '_ {
        let record = match (&self.ledger, self.recorded) {
            (Some(change), false) => Some(Effect::Record {
                key: change.key(),
                state: change.state,
            }),
            _ => None,
        };
        let delivery = match &self.delivery {
            Delivery::Send(m) => Some(Effect::Forward(m)),
            Delivery::Refused(m) => Some(Effect::Refuse(m)),
            Delivery::Withheld(_) => None,
        };
        let callback = self
            .fires_status_callback()
            .then_some(Effect::StatusCallback);
        record
            .into_iter()
            .chain(self.reply.as_ref().map(Effect::Reply))
            .chain(delivery)
            .chain(self.notices.iter().map(|n| Effect::Notice(*n)))
            .chain(callback)
    }

    /// The outcome with the intercept hook's verdict applied afterwards: for a host that
    /// decides with the hook answered [`Intercept::Allow`](crate::Intercept::Allow) (inside a
    /// database job, say) and asks its real hook (a web call) outside it. Equal to deciding
    /// with `verdict` in the first place: a [`Block`](crate::Intercept::Block) withholds the
    /// forward or the refused leg ([`Withheld::HookBlocked`], notice 80909, no status
    /// callback); the ledger change and the auto-reply stay, since the carrier layer acted
    /// before the Proxy layer. An outcome whose hook was not consulted (a dropped keyword, an
    /// out-of-session message) is returned unchanged, so no verdict can un-drop a keyword.
    /// Allocates nothing.
    ///
    /// ```
    /// use proxy_optout::{Inbound, Intercept, MemoryStore, Notice, Participant, Relay, Withheld};
    /// let mut relay = Relay::new(MemoryStore::new());
    /// relay.sessions_mut().open("r", Participant::new("A", "P")?, Participant::new("B", "P")?)?;
    /// let out = relay.handle(&Inbound::sms("A", "P", "hello"))?.intercepted(Intercept::Block);
    /// assert_eq!(out.withheld(), Some(Withheld::HookBlocked));
    /// assert_eq!(out.notices(), &[Notice::InboundContactRejected]);
    /// let stop = relay.handle(&Inbound::sms("A", "P", "STOP"))?;
    /// assert_eq!(stop.clone().intercepted(Intercept::Allow), stop); // still dropped
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn intercepted(mut self, verdict: crate::Intercept) -> Self {
        let consulted = matches!(self.delivery, Delivery::Send(_) | Delivery::Refused(_));
        if consulted && verdict == crate::Intercept::Block {
            self.decision = self.decision.blocked();
            self.delivery = Delivery::Withheld(Withheld::HookBlocked);
            self.notices.clear();
            self.notices.extend(self.decision.notice());
        }
        self
    }

    /// The outcome once the ledger change could not be stored: no change, no confirmation;
    /// the forward, notices and status callback stay (they do not depend on it).
    pub(crate) fn without_ledger(mut self) -> Self {
        self.ledger = None;
        self.reply = None;
        self.recorded = false;
        self
    }

    /// A copy that owns everything it refers to.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Outcome, Relay};
    /// let body = String::from("STOP");
    /// let out: Outcome<'static> = Relay::new(MemoryStore::new())
    ///     .handle(&Inbound::sms("A", "P", &body))?
    ///     .into_owned();
    /// drop(body);
    /// assert!(out.reply().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_owned(self) -> Outcome<'static> {
        Outcome {
            decision: self.decision,
            session: self.session.map(|s| Cow::Owned(s.into_owned())),
            message_id: self.message_id.map(|s| Cow::Owned(s.into_owned())),
            delivery: self.delivery.into_owned(),
            reply: self.reply.map(Outbound::into_owned),
            ledger: self.ledger.map(LedgerChange::into_owned),
            recorded: self.recorded,
            notices: self.notices,
        }
    }
}

impl fmt::Display for Outcome<'_> {
    /// One readable line: what happened to the message, and what the carrier layer did.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.delivery {
            Delivery::Send(m) => write!(f, "forwarded {} -> {}", m.from, m.to)?,
            Delivery::Refused(m) => write!(f, "refused {} -> {} (21610)", m.from, m.to)?,
            Delivery::Withheld(Withheld::KeywordDropped) => f.write_str("dropped")?,
            Delivery::Withheld(w) => write!(f, "not forwarded: {w}")?,
        }
        if let Some(k) = self.decision.keyword() {
            write!(f, " [{k}]")?;
        }
        for n in &self.notices {
            write!(f, "; notice {}", n.code())?;
        }
        if let Some(c) = &self.ledger {
            write!(f, "; ledger {} {}", c.key(), c.state)?;
        }
        if let Some(r) = &self.reply {
            write!(f, "; reply {:?}", r.body)?;
        }
        if !self.fires_status_callback() {
            f.write_str("; no callback")?;
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Outcome<'_> {
    /// The decision (with the classify tool's field names), the session, the message id, the
    /// delivery, the reply, the ledger change, the notices as codes and the status callback.
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        use serde::ser::SerializeStruct;
        let codes: SmallVec<[u32; 2]> = self.notices.iter().map(|n| n.code()).collect();
        let mut s = serializer.serialize_struct("Outcome", 8)?;
        s.serialize_field("decision", &self.decision)?;
        s.serialize_field("session", &self.session)?;
        s.serialize_field("message_id", &self.message_id)?;
        s.serialize_field("delivery", &self.delivery)?;
        s.serialize_field("reply", &self.reply)?;
        s.serialize_field("ledger", &self.ledger)?;
        s.serialize_field("notices", codes.as_slice())?;
        s.serialize_field("status_callback", &self.fires_status_callback())?;
        s.end()
    }
}
