//! The relay: one inbound message in, one [`Outcome`] out, saying everything the host must do
//! (SPEC §1, §4-§6, §8). A thin layer over [`Classifier::decide`] and the ledger; it does no
//! I/O itself.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

use smallvec::SmallVec;

use crate::classifier::Classifier;
use crate::decision::{Action, Decision};
use crate::keywords::Category;
use crate::ledger::{LedgerKey, LedgerScope, OptOutStore, OptState, OwnedLedgerKey};
use crate::message::{Channel, Message};
use crate::notice::Notice;
use crate::policy::{ProxyPolicy, StopFiltering, TwilioProxy};
use crate::replies::AutoReplies;
use crate::session::{Participant, Route, Sessions};

/// One inbound message as the host's webhook receives it: sender, the proxy number it was
/// sent to, body and channel.
///
/// # Example
///
/// ```
/// use proxy_optout::{Channel, Inbound};
/// let m = Inbound::sms("+15551110001", "+15550000100", "on my way");
/// assert_eq!(m.channel(), Channel::Sms);
/// assert_eq!(m.message().body(), "on my way");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Inbound<'a> {
    from: &'a str,
    to: &'a str,
    body: &'a str,
    channel: Channel,
}

impl<'a> Inbound<'a> {
    /// A message from `from` to the proxy identifier `to`.
    ///
    /// ```
    /// use proxy_optout::{Channel, Inbound};
    /// let m = Inbound::new("whatsapp:+1A", "whatsapp:+1P", "STOP", Channel::WhatsApp);
    /// assert_eq!(m.from(), "whatsapp:+1A");
    /// ```
    #[must_use]
    pub const fn new(from: &'a str, to: &'a str, body: &'a str, channel: Channel) -> Self {
        Inbound {
            from,
            to,
            body,
            channel,
        }
    }

    /// An SMS from `from` to the proxy number `to`.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Inbound::sms("A", "P", "hi").to(), "P");
    /// ```
    #[must_use]
    pub const fn sms(from: &'a str, to: &'a str, body: &'a str) -> Self {
        Inbound::new(from, to, body, Channel::Sms)
    }

    /// The sender's own number or address.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Inbound::sms("A", "P", "hi").from(), "A");
    /// ```
    #[must_use]
    pub const fn from(&self) -> &'a str {
        self.from
    }

    /// The proxy identifier the message was sent to.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Inbound::sms("A", "P", "hi").to(), "P");
    /// ```
    #[must_use]
    pub const fn to(&self) -> &'a str {
        self.to
    }

    /// The body.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Inbound::sms("A", "P", "hi").body(), "hi");
    /// ```
    #[must_use]
    pub const fn body(&self) -> &'a str {
        self.body
    }

    /// The channel.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Inbound::sms("A", "P", "hi").channel(), proxy_optout::Channel::Sms);
    /// ```
    #[must_use]
    pub const fn channel(&self) -> Channel {
        self.channel
    }

    /// The message as the classifier sees it.
    ///
    /// ```
    /// let m = proxy_optout::Inbound::sms("A", "P", "hi").message();
    /// assert_eq!(m.to_number(), Some("P"));
    /// ```
    #[must_use]
    pub const fn message(&self) -> Message<'a> {
        Message::new(self.body, self.channel)
            .from(self.from)
            .to(self.to)
    }
}

/// A message the host must send: from a proxy identifier to a participant.
///
/// # Example
///
/// ```
/// use proxy_optout::{Inbound, MemoryStore, Participant, Relay};
/// let mut relay = Relay::new(MemoryStore::new());
/// relay.sessions_mut().open("r", Participant::new("A", "P"), Participant::new("B", "Q"))?;
/// let out = relay.handle(&Inbound::sms("A", "P", "hello"))?;
/// let sent = out.forwarded().unwrap();
/// assert_eq!((sent.from(), sent.to(), sent.body()), ("Q", "B", "hello"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Outbound {
    from: String,
    to: String,
    body: String,
    channel: Channel,
}

impl Outbound {
    fn new(from: &str, to: &str, body: &str, channel: Channel) -> Self {
        Outbound {
            from: from.into(),
            to: to.into(),
            body: body.into(),
            channel,
        }
    }

    /// The proxy identifier it is sent from.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "HELP"))?;
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
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "HELP"))?;
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
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "HELP"))?;
    /// assert_eq!(out.reply().unwrap().body(), DEFAULT_HELP_REPLY);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The channel it goes out on.
    ///
    /// ```
    /// # use proxy_optout::{Channel, Inbound, MemoryStore, Relay};
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "HELP"))?;
    /// assert_eq!(out.reply().unwrap().channel(), Channel::Sms);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn channel(&self) -> Channel {
        self.channel
    }
}

impl fmt::Display for Outbound {
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
    /// The intercept hook blocked it (80909).
    HookBlocked,
    /// No open session has the (sender, proxy number) pair: the host's out-of-session
    /// handling decides what to do.
    OutOfSession,
    /// The session has no second participant yet.
    NoCounterpart,
    /// The store could not say whether the recipient opted out, so the forward is not sent
    /// (fail closed). The error is in the [`RelayError`].
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
/// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "hi"))?;
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
pub enum Delivery {
    /// Send this message.
    Send(Outbound),
    /// The outbound leg fails with 21610: the recipient opted out of that proxy number.
    /// The host records the message as `failed` and sends nothing.
    Refused(Outbound),
    /// Nothing is sent.
    Withheld(Withheld),
}

/// A change the carrier layer made to the ledger.
///
/// # Example
///
/// ```
/// use proxy_optout::{Inbound, MemoryStore, OptState, Relay};
/// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "STOP"))?;
/// let change = out.ledger().unwrap();
/// assert_eq!(change.state(), OptState::OptedOut);
/// assert_eq!(change.key().participant(), "A");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LedgerChange {
    key: OwnedLedgerKey,
    state: OptState,
}

impl LedgerChange {
    /// Whose state changed, where.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "STOP"))?;
    /// assert_eq!(out.ledger().unwrap().key().scope(), "P");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn key(&self) -> &OwnedLedgerKey {
        &self.key
    }

    /// The state recorded.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, OptState, Relay};
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "START"))?;
    /// assert_eq!(out.ledger().unwrap().state(), OptState::OptedIn);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn state(&self) -> OptState {
        self.state
    }
}

/// Everything one inbound message implies for the host: the Proxy decision, the delivery to
/// the other participant, the carrier layer's auto-reply and ledger change, the notices, and
/// whether the status callback fires.
///
/// # Example
///
/// ```
/// use proxy_optout::{Inbound, MemoryStore, Notice, OptState, Participant, Relay, Withheld};
///
/// let mut relay = Relay::new(MemoryStore::new());
/// relay.sessions_mut().open(
///     "ride-1",
///     Participant::new("+1RIDER", "+1PROXY"),
///     Participant::new("+1DRIVER", "+1PROXY"),
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
pub struct Outcome {
    decision: Decision,
    session: Option<String>,
    delivery: Delivery,
    reply: Option<Outbound>,
    ledger: Option<LedgerChange>,
    notices: SmallVec<[Notice; 2]>,
}

impl Outcome {
    /// The Proxy layer's decision for the message.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "UNSTOP"))?;
    /// assert!(out.decision().is_dropped());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The session the message belongs to; `None` when it is out of session.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "hi"))?;
    /// assert_eq!(out.session(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// What happens on the leg to the other participant.
    ///
    /// ```
    /// # use proxy_optout::{Delivery, Inbound, MemoryStore, Relay, Withheld};
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "STOP"))?;
    /// assert_eq!(out.delivery(), &Delivery::Withheld(Withheld::KeywordDropped));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// The message to send to the other participant, if one is sent.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "hi"))?;
    /// assert!(out.forwarded().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn forwarded(&self) -> Option<&Outbound> {
        match &self.delivery {
            Delivery::Send(m) => Some(m),
            _ => None,
        }
    }

    /// The outbound leg refused with 21610, if the recipient opted out.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "hi"))?;
    /// assert!(out.refused().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn refused(&self) -> Option<&Outbound> {
        match &self.delivery {
            Delivery::Refused(m) => Some(m),
            _ => None,
        }
    }

    /// Why nothing is sent to the other participant, if nothing is.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay, Withheld};
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "hi"))?;
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

    /// The carrier layer's auto-reply, from the proxy number back to the sender.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay, DEFAULT_START_REPLY};
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "start"))?;
    /// assert_eq!(out.reply().unwrap().body(), DEFAULT_START_REPLY);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn reply(&self) -> Option<&Outbound> {
        self.reply.as_ref()
    }

    /// The ledger change the carrier layer made, if any.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "ARRET"))?;
    /// assert!(out.ledger().is_none()); // ARRET is not a carrier keyword
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn ledger(&self) -> Option<&LedgerChange> {
        self.ledger.as_ref()
    }

    /// The debugger notices raised, in order.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Notice, Relay};
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "QUIT"))?;
    /// assert_eq!(out.notices(), &[Notice::MessageMatchedStopWord]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    /// Whether the status callback fires: for a message the relay sends or that fails on its
    /// outbound leg (21610), never for a dropped keyword, a blocked or out-of-session one.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let out = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "P", "STOP"))?;
    /// assert!(!out.fires_status_callback());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn fires_status_callback(&self) -> bool {
        matches!(self.delivery, Delivery::Send(_) | Delivery::Refused(_))
    }
}

impl fmt::Display for Outcome {
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
            write!(f, "; ledger {} {}", c.key, c.state)?;
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
impl serde::Serialize for Outcome {
    /// The decision (with the classify tool's field names), the session, the delivery, the
    /// reply, the ledger change, the notices as codes and the status callback.
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        use serde::ser::SerializeStruct;
        let codes: SmallVec<[u32; 2]> = self.notices.iter().map(|n| n.code()).collect();
        let mut s = serializer.serialize_struct("Outcome", 7)?;
        s.serialize_field("decision", &self.decision)?;
        s.serialize_field("session", &self.session)?;
        s.serialize_field("delivery", &self.delivery)?;
        s.serialize_field("reply", &self.reply)?;
        s.serialize_field("ledger", &self.ledger)?;
        s.serialize_field("notices", codes.as_slice())?;
        s.serialize_field("status_callback", &self.fires_status_callback())?;
        s.end()
    }
}

/// The opt-out store failed. The relay failed closed, and the error carries the
/// [`Outcome`] it computed without the failed step, for the host to carry out or log.
///
/// # Example
///
/// ```
/// use proxy_optout::{Inbound, LedgerKey, OptOutStore, OptState, Relay, RelayError};
///
/// #[derive(Debug)]
/// struct Down;
/// impl std::fmt::Display for Down {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("database unreachable")
///     }
/// }
/// impl std::error::Error for Down {}
///
/// struct Broken;
/// impl OptOutStore for Broken {
///     type Error = Down;
///     fn record(&self, _: LedgerKey<'_>, _: OptState) -> Result<(), Down> { Err(Down) }
///     fn state(&self, _: LedgerKey<'_>) -> Result<OptState, Down> { Err(Down) }
/// }
///
/// let err = Relay::new(Broken).handle(&Inbound::sms("A", "P", "STOP")).unwrap_err();
/// assert!(matches!(err, RelayError::Record { .. }));
/// assert_eq!(
///     err.to_string(),
///     "the opt-out store failed to record opted_out for (P, A): database unreachable",
/// );
/// let outcome = err.outcome();
/// assert!(outcome.decision().is_dropped()); // the keyword is still not forwarded
/// assert!(outcome.reply().is_none()); // and nothing claims the opt-out happened
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RelayError<E> {
    /// Recording an opt-out or opt-in failed: no reply is sent and the ledger is unchanged.
    #[error("the opt-out store failed to record {state} for {key}: {source}")]
    Record {
        /// The pair whose state was being recorded.
        key: OwnedLedgerKey,
        /// The state being recorded.
        state: OptState,
        /// The store's error.
        #[source]
        source: E,
        /// What the relay decided without the failed step.
        outcome: Box<Outcome>,
    },
    /// Reading a pair's state failed: no HELP reply to the sender, or no forward to the
    /// recipient ([`Withheld::RecipientStatusUnknown`]).
    #[error("the opt-out store could not tell whether {key} opted out: {source}")]
    Lookup {
        /// The pair whose state was asked.
        key: OwnedLedgerKey,
        /// The store's error.
        #[source]
        source: E,
        /// What the relay decided without the failed step.
        outcome: Box<Outcome>,
    },
}

impl<E> RelayError<E> {
    /// The outcome computed without the failed step (fail closed).
    ///
    /// ```
    /// # use proxy_optout::{Inbound, LedgerKey, OptOutStore, OptState, Relay};
    /// # #[derive(Debug)] struct Down;
    /// # impl std::fmt::Display for Down { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("down") } }
    /// # impl std::error::Error for Down {}
    /// # struct Broken;
    /// # impl OptOutStore for Broken {
    /// #     type Error = Down;
    /// #     fn record(&self, _: LedgerKey<'_>, _: OptState) -> Result<(), Down> { Err(Down) }
    /// #     fn state(&self, _: LedgerKey<'_>) -> Result<OptState, Down> { Err(Down) }
    /// # }
    /// let err = Relay::new(Broken).handle(&Inbound::sms("A", "P", "HELP")).unwrap_err();
    /// assert!(err.outcome().reply().is_none()); // fail closed: no HELP reply
    /// ```
    pub fn outcome(&self) -> &Outcome {
        match self {
            RelayError::Record { outcome, .. } | RelayError::Lookup { outcome, .. } => outcome,
        }
    }

    /// The outcome, by value.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, LedgerKey, OptOutStore, OptState, Relay};
    /// # #[derive(Debug)] struct Down;
    /// # impl std::fmt::Display for Down { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("down") } }
    /// # impl std::error::Error for Down {}
    /// # struct Broken;
    /// # impl OptOutStore for Broken {
    /// #     type Error = Down;
    /// #     fn record(&self, _: LedgerKey<'_>, _: OptState) -> Result<(), Down> { Err(Down) }
    /// #     fn state(&self, _: LedgerKey<'_>) -> Result<OptState, Down> { Err(Down) }
    /// # }
    /// let out = Relay::new(Broken).handle(&Inbound::sms("A", "P", "STOP")).unwrap_err().into_outcome();
    /// assert!(out.decision().is_dropped());
    /// ```
    pub fn into_outcome(self) -> Outcome {
        match self {
            RelayError::Record { outcome, .. } | RelayError::Lookup { outcome, .. } => *outcome,
        }
    }

    /// The store's error.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, LedgerKey, OptOutStore, OptState, Relay};
    /// # #[derive(Debug, PartialEq)] struct Down;
    /// # impl std::fmt::Display for Down { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("down") } }
    /// # impl std::error::Error for Down {}
    /// # struct Broken;
    /// # impl OptOutStore for Broken {
    /// #     type Error = Down;
    /// #     fn record(&self, _: LedgerKey<'_>, _: OptState) -> Result<(), Down> { Err(Down) }
    /// #     fn state(&self, _: LedgerKey<'_>) -> Result<OptState, Down> { Err(Down) }
    /// # }
    /// let err = Relay::new(Broken).handle(&Inbound::sms("A", "P", "STOP")).unwrap_err();
    /// assert_eq!(err.store_error(), &Down);
    /// ```
    pub fn store_error(&self) -> &E {
        match self {
            RelayError::Record { source, .. } | RelayError::Lookup { source, .. } => source,
        }
    }
}

/// The relay engine: a classifier, the host's policy, an opt-out store, the auto-replies and
/// the open sessions. [`handle`](Relay::handle) turns one inbound message into one
/// [`Outcome`]; the host performs the sends it describes.
///
/// # Example
///
/// ```
/// use proxy_optout::{Inbound, MemoryStore, Notice, Participant, Relay};
///
/// let mut relay = Relay::new(MemoryStore::new());
/// relay.sessions_mut().open(
///     "ride-1",
///     Participant::new("+1RIDER", "+1P1"),
///     Participant::new("+1DRIVER", "+1P1"),
/// )?;
///
/// // The rider opts out of +1P1: dropped, recorded, confirmed.
/// let out = relay.handle(&Inbound::sms("+1RIDER", "+1P1", "STOP"))?;
/// assert!(out.decision().is_dropped());
///
/// // The driver writes: the leg to the rider is refused with 21610.
/// let out = relay.handle(&Inbound::sms("+1DRIVER", "+1P1", "I'm here"))?;
/// assert_eq!(out.notices(), &[Notice::UnsubscribedRecipient]);
/// assert!(out.refused().is_some());
///
/// // The rider can still write to the driver.
/// let out = relay.handle(&Inbound::sms("+1RIDER", "+1P1", "coming down"))?;
/// assert_eq!(out.forwarded().unwrap().to(), "+1DRIVER");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Relay<S, P = TwilioProxy> {
    classifier: Classifier,
    policy: P,
    store: S,
    replies: AutoReplies,
    scope: LedgerScope,
    sessions: Sessions,
}

impl<S: OptOutStore> Relay<S> {
    /// A relay with Twilio Proxy's defaults around `store`: the default classifier and
    /// policy, the platform's auto-replies, opt-outs scoped to the proxy number, no sessions.
    ///
    /// ```
    /// let relay = proxy_optout::Relay::new(proxy_optout::MemoryStore::new());
    /// assert!(relay.sessions().is_empty());
    /// ```
    pub fn new(store: S) -> Self {
        Relay {
            classifier: Classifier::default(),
            policy: TwilioProxy,
            store,
            replies: AutoReplies::default(),
            scope: LedgerScope::default(),
            sessions: Sessions::default(),
        }
    }
}

impl<S: OptOutStore, P: ProxyPolicy> Relay<S, P> {
    /// The same relay with another policy.
    ///
    /// ```
    /// use proxy_optout::{FixedPolicy, MemoryStore, Relay, StopFilterFlag, StopFiltering};
    /// let relay = Relay::new(MemoryStore::new())
    ///     .with_policy(FixedPolicy::new(StopFilterFlag::Respect, StopFiltering::Off));
    /// # let _ = relay;
    /// ```
    pub fn with_policy<Q: ProxyPolicy>(self, policy: Q) -> Relay<S, Q> {
        Relay {
            classifier: self.classifier,
            policy,
            store: self.store,
            replies: self.replies,
            scope: self.scope,
            sessions: self.sessions,
        }
    }

    /// The same relay with another classifier (rule set, matching, extensions).
    ///
    /// ```
    /// use proxy_optout::{Classifier, Matching, MemoryStore, Relay};
    /// let c = Classifier::builder().matching(Matching::Lenient).build()?;
    /// let relay = Relay::new(MemoryStore::new()).with_classifier(c);
    /// assert_eq!(relay.classifier().matching(), Matching::Lenient);
    /// # Ok::<(), proxy_optout::ConfigError>(())
    /// ```
    #[must_use]
    pub fn with_classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// The same relay with other auto-replies.
    ///
    /// ```
    /// use proxy_optout::{AutoReplies, Category, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new())
    ///     .with_replies(AutoReplies::default().with(Category::Help, "Acme support: acme.example"));
    /// # let _ = relay;
    /// ```
    #[must_use]
    pub fn with_replies(mut self, replies: AutoReplies) -> Self {
        self.replies = replies;
        self
    }

    /// The same relay with another ledger scope (an explicit service-wide scope, say).
    ///
    /// ```
    /// use proxy_optout::{LedgerScope, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new()).with_scope(LedgerScope::Service("KS1".into()));
    /// # let _ = relay;
    /// ```
    #[must_use]
    pub fn with_scope(mut self, scope: LedgerScope) -> Self {
        self.scope = scope;
        self
    }

    /// The classifier.
    ///
    /// ```
    /// let relay = proxy_optout::Relay::new(proxy_optout::MemoryStore::new());
    /// assert_eq!(relay.classifier().rules(), proxy_optout::RuleSet::Proxy2025);
    /// ```
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// The store.
    ///
    /// ```
    /// let relay = proxy_optout::Relay::new(proxy_optout::MemoryStore::new());
    /// assert!(relay.store().is_empty());
    /// ```
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The open sessions.
    ///
    /// ```
    /// let relay = proxy_optout::Relay::new(proxy_optout::MemoryStore::new());
    /// assert_eq!(relay.sessions().len(), 0);
    /// ```
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The open sessions, to open, fill and close them.
    ///
    /// ```
    /// use proxy_optout::{MemoryStore, Participant, Relay};
    /// let mut relay = Relay::new(MemoryStore::new());
    /// relay.sessions_mut().open("r", Participant::new("A", "P"), Participant::new("B", "P"))?;
    /// # Ok::<(), proxy_optout::SessionError>(())
    /// ```
    pub fn sessions_mut(&mut self) -> &mut Sessions {
        &mut self.sessions
    }

    fn key<'a>(&'a self, proxy: &'a str, participant: &'a str) -> LedgerKey<'a> {
        LedgerKey::new(self.scope.scope_for(proxy), participant)
    }

    /// Handles one inbound message: classifies it under the policy (the intercept hook is
    /// consulted only for in-session messages that would be forwarded), applies the carrier
    /// layer (ledger and auto-reply), and decides the delivery to the other participant
    /// (refused with 21610 if they opted out of their proxy number).
    ///
    /// # Errors
    ///
    /// [`RelayError`] when the store fails. The relay fails closed: an opt-out that could not
    /// be recorded gets no reply (and a dropped keyword stays dropped); a recipient whose
    /// state could not be read gets no forward. The error carries that outcome.
    ///
    /// ```
    /// use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "hello"))?;
    /// assert!(out.is_out_of_session());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle(&self, inbound: &Inbound<'_>) -> Result<Outcome, RelayError<S::Error>> {
        let route = self.sessions.route(inbound.from, inbound.to);
        let message = inbound.message();
        // Out-of-session messages go to the host's out-of-session handling, not the hook.
        let decision = match route {
            Some(_) => self.classifier.decide(&message, &self.policy),
            None => self.classifier.before_hook(&message, &self.policy),
        };
        let mut failure = None;
        let (ledger, reply) = self.carrier(inbound, &decision, &mut failure);
        let delivery = self.delivery(inbound, &decision, route, &mut failure);
        let mut notices = SmallVec::new();
        notices.extend(decision.notice());
        if let Delivery::Refused(_) = delivery {
            notices.push(Notice::UnsubscribedRecipient);
        }
        let outcome = Outcome {
            decision,
            session: route.map(|r| r.session().into()),
            delivery,
            reply,
            ledger,
            notices,
        };
        match failure {
            None => Ok(outcome),
            Some(f) => Err(f.into_error(outcome)),
        }
    }

    /// The carrier layer: record the keyword's effect for the sender's pair and pick the
    /// auto-reply. Nothing is claimed (no reply, no change) unless the store acknowledged it.
    fn carrier(
        &self,
        inbound: &Inbound<'_>,
        decision: &Decision,
        failure: &mut Option<Failure<S::Error>>,
    ) -> (Option<LedgerChange>, Option<Outbound>) {
        let Some(category) = decision.carrier() else {
            return (None, None);
        };
        let key = self.key(inbound.to, inbound.from);
        let change = match category {
            Category::OptOut => Some(OptState::OptedOut),
            Category::OptIn => Some(OptState::OptedIn),
            Category::Help => None,
        };
        let answered = match change {
            Some(state) => match self.store.record(key, state) {
                Ok(()) => Some(Some(LedgerChange {
                    key: key.to_owned(),
                    state,
                })),
                Err(source) => {
                    failure.get_or_insert(Failure::record(key, state, source));
                    None
                }
            },
            // No HELP reply to a pair that opted out, nor to one whose state is unknown.
            None => match self.store.state(key) {
                Ok(OptState::OptedIn) => Some(None),
                Ok(OptState::OptedOut) => None,
                Err(source) => {
                    failure.get_or_insert(Failure::lookup(key, source));
                    None
                }
            },
        };
        let Some(ledger) = answered else {
            return (None, None);
        };
        let reply = self
            .replies
            .text(category)
            .map(|text| Outbound::new(inbound.to, inbound.from, text, inbound.channel));
        (ledger, reply)
    }

    /// The Proxy layer's leg to the other participant.
    fn delivery(
        &self,
        inbound: &Inbound<'_>,
        decision: &Decision,
        route: Option<Route<'_>>,
        failure: &mut Option<Failure<S::Error>>,
    ) -> Delivery {
        match decision.action() {
            Action::Forward => {}
            Action::Drop => return Delivery::Withheld(Withheld::KeywordDropped),
            _ => return Delivery::Withheld(Withheld::HookBlocked),
        }
        let Some(route) = route else {
            return Delivery::Withheld(Withheld::OutOfSession);
        };
        let Some(recipient) = route.recipient() else {
            return Delivery::Withheld(Withheld::NoCounterpart);
        };
        let outbound = Outbound::new(
            recipient.proxy_identifier(),
            recipient.identifier(),
            inbound.body,
            recipient.channel(),
        );
        if !self.filtered(recipient) {
            return Delivery::Send(outbound);
        }
        let key = self.key(recipient.proxy_identifier(), recipient.identifier());
        match self.store.state(key) {
            Ok(OptState::OptedIn) => Delivery::Send(outbound),
            Ok(OptState::OptedOut) => Delivery::Refused(outbound),
            Err(source) => {
                failure.get_or_insert(Failure::lookup(key, source));
                Delivery::Withheld(Withheld::RecipientStatusUnknown)
            }
        }
    }

    /// Whether STOP filtering applies to sends to `recipient`: only on SMS and MMS, and only
    /// where the policy says filtering is on for their proxy number.
    fn filtered(&self, recipient: &Participant) -> bool {
        recipient.channel().has_keyword_handling()
            && self
                .policy
                .stop_filtering(Some(recipient.proxy_identifier()))
                == StopFiltering::On
    }
}

/// The first store failure of a `handle` call, waiting for the outcome.
enum Failure<E> {
    Record(OwnedLedgerKey, OptState, E),
    Lookup(OwnedLedgerKey, E),
}

impl<E> Failure<E> {
    fn record(key: LedgerKey<'_>, state: OptState, source: E) -> Self {
        Failure::Record(key.to_owned(), state, source)
    }

    fn lookup(key: LedgerKey<'_>, source: E) -> Self {
        Failure::Lookup(key.to_owned(), source)
    }

    fn into_error(self, outcome: Outcome) -> RelayError<E> {
        let outcome = Box::new(outcome);
        match self {
            Failure::Record(key, state, source) => RelayError::Record {
                key,
                state,
                source,
                outcome,
            },
            Failure::Lookup(key, source) => RelayError::Lookup {
                key,
                source,
                outcome,
            },
        }
    }
}
