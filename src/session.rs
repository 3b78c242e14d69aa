//! Sessions and routing: which masked conversation an inbound message belongs to, and who
//! receives it through which proxy number.

use alloc::collections::BTreeMap;
use alloc::string::String;
use core::fmt;

use smallvec::SmallVec;

use crate::identifier::{validate_identifier, IdentifierError};
use crate::message::Channel;
use crate::relay::inbound::channel_of;

/// One side of a masked conversation: the participant's own identifier (a phone number or a
/// channel address such as `whatsapp:+1555...`) and the proxy identifier (masked number)
/// they talk to.
///
/// # Example
///
/// ```
/// use proxy_optout::{Channel, Participant};
///
/// let rider = Participant::new("+15551110001", "+15550000100")?;
/// assert_eq!(rider.channel(), Channel::Sms);
/// let driver = Participant::new("whatsapp:+15552220002", "whatsapp:+15550000200")?;
/// assert_eq!(driver.channel(), Channel::WhatsApp); // inferred from the address
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Participant {
    identifier: String,
    proxy_identifier: String,
    channel: Channel,
}

impl Participant {
    /// A participant reached at `identifier` through `proxy_identifier`. The channel is
    /// inferred from a `whatsapp:` or `messenger:` prefix, SMS otherwise; set it with
    /// [`with_channel`](Participant::with_channel).
    ///
    /// # Errors
    ///
    /// An [`IdentifierError`] naming `identifier` or `proxy identifier` when one is not in
    /// canonical form (empty, padded, with a control character, or too long).
    ///
    /// ```
    /// let p = proxy_optout::Participant::new("+15551110001", "+15550000100")?;
    /// assert_eq!(p.identifier(), "+15551110001");
    /// assert!(proxy_optout::Participant::new("+1555\t", "+1P").is_err());
    /// # Ok::<(), proxy_optout::IdentifierError>(())
    /// ```
    pub fn new(
        identifier: impl Into<String>,
        proxy_identifier: impl Into<String>,
    ) -> Result<Self, IdentifierError> {
        let identifier = identifier.into();
        let proxy_identifier = proxy_identifier.into();
        validate_identifier("identifier", &identifier)?;
        validate_identifier("proxy identifier", &proxy_identifier)?;
        Ok(Participant {
            channel: channel_of(&identifier),
            identifier,
            proxy_identifier,
        })
    }

    /// The same participant on `channel`.
    ///
    /// ```
    /// use proxy_optout::{Channel, Participant};
    /// let p = Participant::new("web-42", "chat-proxy")?.with_channel(Channel::Chat);
    /// assert_eq!(p.channel(), Channel::Chat);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_channel(mut self, channel: Channel) -> Self {
        self.channel = channel;
        self
    }

    /// The participant's own number or address.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Participant::new("A", "P")?.identifier(), "A");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    /// The masked number this participant talks to.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Participant::new("A", "P")?.proxy_identifier(), "P");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn proxy_identifier(&self) -> &str {
        &self.proxy_identifier
    }

    /// The channel this participant is reached on.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Participant::new("A", "P")?.channel(), proxy_optout::Channel::Sms);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn channel(&self) -> Channel {
        self.channel
    }
}

impl fmt::Display for Participant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.identifier, self.proxy_identifier)
    }
}

/// A session configuration the [`Sessions`] table refuses. Each variant names the offending
/// value. New variants may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout::{Participant, SessionError, Sessions};
///
/// let mut s = Sessions::new();
/// s.open("ride-1", Participant::new("A", "P1")?, Participant::new("B", "P1")?)?;
/// let err = s.add_participant("ride-1", Participant::new("C", "P1")?).unwrap_err();
/// assert_eq!(err, SessionError::ThirdParticipant { session: "ride-1".into() });
/// assert_eq!(err.to_string(), "session \"ride-1\" already has two participants");
/// # Ok::<(), SessionError>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A session has exactly two participants.
    #[error("session {session:?} already has two participants")]
    ThirdParticipant {
        /// The session.
        session: String,
    },
    /// The (identifier, proxy identifier) pair is already in an open session, so a message
    /// from that identifier to that proxy number could not be routed.
    #[error(
        "participant {identifier:?} already talks to proxy {proxy_identifier:?} in session {existing:?}"
    )]
    DuplicatePair {
        /// The participant's identifier.
        identifier: String,
        /// The proxy identifier.
        proxy_identifier: String,
        /// The session that already holds the pair.
        existing: String,
    },
    /// A session id or identifier is not in canonical form.
    #[error(transparent)]
    Identifier(#[from] IdentifierError),
    /// No open session has this id.
    #[error("no open session {session:?}")]
    UnknownSession {
        /// The session id.
        session: String,
    },
    /// A session with this id is already open.
    #[error("session {session:?} is already open")]
    DuplicateSession {
        /// The session id.
        session: String,
    },
}

type Pair = SmallVec<[Participant; 2]>;

/// The open sessions and the routing table a [`Relay`](crate::Relay) uses. A pool lends the
/// same proxy number to many sessions as long as each (identifier, proxy identifier) pair is
/// in at most one open session.
///
/// # Example
///
/// ```
/// use proxy_optout::{Participant, Sessions};
///
/// let mut s = Sessions::new();
/// s.open("ride-1", Participant::new("+1A", "+1P1")?, Participant::new("+1B", "+1P1")?)?;
/// s.open("ride-2", Participant::new("+1C", "+1P1")?, Participant::new("+1D", "+1P1")?)?;
/// let route = s.route("+1A", "+1P1").unwrap();
/// assert_eq!(route.session(), "ride-1");
/// assert_eq!(route.recipient().unwrap().identifier(), "+1B");
/// assert!(s.route("+1A", "+1P9").is_none());
/// # Ok::<(), proxy_optout::SessionError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Sessions {
    sessions: BTreeMap<String, Pair>,
    // identifier -> proxy identifier -> session: nested so lookups borrow `&str` keys.
    routes: BTreeMap<String, BTreeMap<String, String>>,
}

/// Where an inbound message goes: its session, its sender, and the other participant.
///
/// # Example
///
/// ```
/// use proxy_optout::{Participant, Sessions};
/// let mut s = Sessions::new();
/// s.open("r", Participant::new("A", "P")?, Participant::new("B", "Q")?)?;
/// let r = s.route("B", "Q").unwrap();
/// assert_eq!(r.sender().identifier(), "B");
/// assert_eq!(r.recipient().unwrap().proxy_identifier(), "P");
/// # Ok::<(), proxy_optout::SessionError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route<'a> {
    session: &'a str,
    sender: &'a Participant,
    recipient: Option<&'a Participant>,
}

impl<'a> Route<'a> {
    /// A route the host resolved itself (its sessions are rows in its own database).
    ///
    /// # Errors
    ///
    /// [`SessionError::Identifier`] for a non-canonical session id, and
    /// [`SessionError::DuplicatePair`] when the recipient is the sender's own pair.
    ///
    /// ```
    /// use proxy_optout::{Participant, Route};
    /// let (a, b) = (Participant::new("A", "P")?, Participant::new("B", "P")?);
    /// let route = Route::new("ride-1", &a, Some(&b))?;
    /// assert_eq!(route.recipient().unwrap().identifier(), "B");
    /// assert!(Route::new("ride-1", &a, Some(&a)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(
        session: &'a str,
        sender: &'a Participant,
        recipient: Option<&'a Participant>,
    ) -> Result<Self, SessionError> {
        validate_identifier("session id", session)?;
        if let Some(r) = recipient {
            if r.identifier == sender.identifier && r.proxy_identifier == sender.proxy_identifier {
                return Err(SessionError::DuplicatePair {
                    identifier: r.identifier.clone(),
                    proxy_identifier: r.proxy_identifier.clone(),
                    existing: session.into(),
                });
            }
        }
        Ok(Route {
            session,
            sender,
            recipient,
        })
    }

    /// The session id.
    ///
    /// ```
    /// # use proxy_optout::{Participant, Sessions};
    /// # let mut s = Sessions::new();
    /// # s.open("r", Participant::new("A", "P")?, Participant::new("B", "Q")?).unwrap();
    /// assert_eq!(s.route("A", "P").unwrap().session(), "r");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn session(&self) -> &'a str {
        self.session
    }

    /// The participant who sent the message.
    ///
    /// ```
    /// # use proxy_optout::{Participant, Sessions};
    /// # let mut s = Sessions::new();
    /// # s.open("r", Participant::new("A", "P")?, Participant::new("B", "Q")?).unwrap();
    /// assert_eq!(s.route("A", "P").unwrap().sender().identifier(), "A");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn sender(&self) -> &'a Participant {
        self.sender
    }

    /// The other participant, if the session has two.
    ///
    /// ```
    /// # use proxy_optout::{Participant, Sessions};
    /// let mut s = Sessions::new();
    /// s.create("r")?;
    /// s.add_participant("r", Participant::new("A", "P")?)?;
    /// assert!(s.route("A", "P").unwrap().recipient().is_none());
    /// # Ok::<(), proxy_optout::SessionError>(())
    /// ```
    #[must_use]
    pub fn recipient(&self) -> Option<&'a Participant> {
        self.recipient
    }
}

impl Sessions {
    /// An empty table.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Sessions::new().len(), 0);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Sessions::default()
    }

    /// Opens an empty session; add its two participants with
    /// [`add_participant`](Sessions::add_participant).
    ///
    /// # Errors
    ///
    /// [`SessionError::Identifier`] for a non-canonical id, [`SessionError::DuplicateSession`] if it is
    /// already open.
    ///
    /// ```
    /// let mut s = proxy_optout::Sessions::new();
    /// s.create("ride-1")?;
    /// assert!(s.create("ride-1").is_err());
    /// # Ok::<(), proxy_optout::SessionError>(())
    /// ```
    pub fn create(&mut self, session: &str) -> Result<(), SessionError> {
        validate_identifier("session id", session)?;
        if self.sessions.contains_key(session) {
            return Err(SessionError::DuplicateSession {
                session: session.into(),
            });
        }
        self.sessions.insert(session.into(), Pair::new());
        Ok(())
    }

    /// Opens a session with its two participants, or changes nothing on error.
    ///
    /// # Errors
    ///
    /// Any error of [`create`](Sessions::create) or
    /// [`add_participant`](Sessions::add_participant).
    ///
    /// ```
    /// use proxy_optout::{Participant, SessionError, Sessions};
    /// let mut s = Sessions::new();
    /// let err = s.open("r", Participant::new("A", "P")?, Participant::new("A", "P")?).unwrap_err();
    /// assert!(matches!(err, SessionError::DuplicatePair { .. }));
    /// assert_eq!(s.len(), 0, "nothing was opened");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(
        &mut self,
        session: &str,
        first: Participant,
        second: Participant,
    ) -> Result<(), SessionError> {
        self.create(session)?;
        let added = self
            .add_participant(session, first)
            .and_then(|()| self.add_participant(session, second));
        if added.is_err() {
            self.close(session);
        }
        added
    }

    /// Adds a participant to an open session.
    ///
    /// # Errors
    ///
    /// [`SessionError::UnknownSession`], [`SessionError::ThirdParticipant`],
    /// or [`SessionError::DuplicatePair`] when another open session (or this one) already
    /// routes that pair. (The participant's identifiers were checked when it was made.)
    ///
    /// ```
    /// use proxy_optout::{Participant, Sessions};
    /// let mut s = Sessions::new();
    /// s.create("r")?;
    /// s.add_participant("r", Participant::new("A", "P")?)?;
    /// assert!(s.add_participant("r", Participant::new("A", "P")?).is_err());
    /// # Ok::<(), proxy_optout::SessionError>(())
    /// ```
    pub fn add_participant(
        &mut self,
        session: &str,
        participant: Participant,
    ) -> Result<(), SessionError> {
        let Some(pair) = self.sessions.get_mut(session) else {
            return Err(SessionError::UnknownSession {
                session: session.into(),
            });
        };
        if pair.len() >= 2 {
            return Err(SessionError::ThirdParticipant {
                session: session.into(),
            });
        }
        let (id, proxy) = (participant.identifier(), participant.proxy_identifier());
        if let Some(existing) = self.routes.get(id).and_then(|m| m.get(proxy)) {
            return Err(SessionError::DuplicatePair {
                identifier: id.into(),
                proxy_identifier: proxy.into(),
                existing: existing.clone(),
            });
        }
        self.routes
            .entry(id.into())
            .or_default()
            .insert(proxy.into(), session.into());
        pair.push(participant);
        Ok(())
    }

    /// Closes a session and frees its pairs for other sessions. Returns whether it was open.
    ///
    /// ```
    /// use proxy_optout::{Participant, Sessions};
    /// let mut s = Sessions::new();
    /// s.open("r", Participant::new("A", "P")?, Participant::new("B", "P")?)?;
    /// assert!(s.close("r"));
    /// assert!(s.route("A", "P").is_none());
    /// s.open("r2", Participant::new("A", "P")?, Participant::new("C", "P")?)?; // pair reused
    /// # Ok::<(), proxy_optout::SessionError>(())
    /// ```
    pub fn close(&mut self, session: &str) -> bool {
        let Some(pair) = self.sessions.remove(session) else {
            return false;
        };
        for p in &pair {
            if let Some(m) = self.routes.get_mut(p.identifier()) {
                m.remove(p.proxy_identifier());
                if m.is_empty() {
                    self.routes.remove(p.identifier());
                }
            }
        }
        true
    }

    /// The route of a message from `from` to the proxy identifier `to`, if an open session
    /// has that pair.
    ///
    /// ```
    /// assert!(proxy_optout::Sessions::new().route("A", "P").is_none());
    /// ```
    #[must_use]
    pub fn route(&self, from: &str, to: &str) -> Option<Route<'_>> {
        let (session, pair) = self
            .sessions
            .get_key_value(self.routes.get(from)?.get(to)?)?;
        let sender = pair
            .iter()
            .find(|p| p.identifier() == from && p.proxy_identifier() == to)?;
        let recipient = pair.iter().find(|p| !core::ptr::eq(*p, sender));
        Some(Route {
            session,
            sender,
            recipient,
        })
    }

    /// The participants of an open session.
    ///
    /// ```
    /// use proxy_optout::{Participant, Sessions};
    /// let mut s = Sessions::new();
    /// s.open("r", Participant::new("A", "P")?, Participant::new("B", "P")?)?;
    /// assert_eq!(s.participants("r").map(<[_]>::len), Some(2));
    /// # Ok::<(), proxy_optout::SessionError>(())
    /// ```
    #[must_use]
    pub fn participants(&self, session: &str) -> Option<&[Participant]> {
        self.sessions.get(session).map(|p| p.as_slice())
    }

    /// How many sessions are open.
    ///
    /// ```
    /// assert!(proxy_optout::Sessions::new().is_empty());
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is open.
    ///
    /// ```
    /// assert!(proxy_optout::Sessions::new().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}
