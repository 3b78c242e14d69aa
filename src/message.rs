//! The inbound message: a borrowed body, its channel, and optionally its two numbers.

use core::fmt;
use core::str::FromStr;

use crate::error::{parse_named, ParseError};

/// The channel a message arrived on (§§7).
///
/// Only [`Sms`](Channel::Sms) and [`Mms`](Channel::Mms) get keyword handling; other channels
/// pass through the Proxy layer like any ordinary message. New channels may be added in minor
/// releases.
///
/// # Example
///
/// ```
/// use proxy_optout::Channel;
///
/// assert!(Channel::Mms.has_keyword_handling());
/// assert!(!Channel::WhatsApp.has_keyword_handling());
/// assert_eq!("whatsapp".parse::<Channel>(), Ok(Channel::WhatsApp));
/// assert_eq!(Channel::Messenger.as_str(), "messenger");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Channel {
    /// SMS: the only channel Twilio documents opt-out handling for.
    #[default]
    Sms,
    /// MMS: keyword handling applies to its text body; media does not change it.
    Mms,
    /// WhatsApp.
    #[cfg_attr(feature = "serde", serde(rename = "whatsapp"))]
    WhatsApp,
    /// Facebook Messenger.
    Messenger,
    /// A chat channel (Conversations, web chat).
    Chat,
    /// Any other non-SMS channel.
    Other,
}

impl Channel {
    /// Every channel.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Channel::ALL.len(), 6);
    /// ```
    pub const ALL: [Channel; 6] = [
        Channel::Sms,
        Channel::Mms,
        Channel::WhatsApp,
        Channel::Messenger,
        Channel::Chat,
        Channel::Other,
    ];

    /// The lowercase name used in JSON and on the command line.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Channel::WhatsApp.as_str(), "whatsapp");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Mms => "mms",
            Channel::WhatsApp => "whatsapp",
            Channel::Messenger => "messenger",
            Channel::Chat => "chat",
            Channel::Other => "other",
        }
    }

    /// Whether opt-out keywords are handled on this channel: SMS and MMS only.
    ///
    /// ```
    /// assert!(proxy_optout::Channel::Sms.has_keyword_handling());
    /// assert!(!proxy_optout::Channel::Chat.has_keyword_handling());
    /// ```
    #[must_use]
    pub const fn has_keyword_handling(self) -> bool {
        matches!(self, Channel::Sms | Channel::Mms)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = ParseError;

    /// Parses the lowercase name; ASCII case is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_named(
            &Channel::ALL,
            Channel::as_str,
            s,
            "channel",
            "sms, mms, whatsapp, messenger, chat, other",
        )
    }
}

/// One inbound message, borrowed: its body, channel and, when the host knows them, the
/// sender's number (`from`) and the proxy number it was sent to (`to`).
///
/// Classification looks only at the body and channel; `from` and `to` are there for the
/// [`ProxyPolicy`](crate::ProxyPolicy), which may decide per proxy number.
///
/// # Example
///
/// ```
/// use proxy_optout::{Channel, Message};
///
/// let m = Message::sms("STOP").from("+15550001111").to("+15559990000");
/// assert_eq!(m.body(), "STOP");
/// assert_eq!(m.channel(), Channel::Sms);
/// assert_eq!(m.to_number(), Some("+15559990000"));
///
/// let w = Message::new("STOP", Channel::WhatsApp);
/// assert_eq!(w.from_number(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Message<'a> {
    body: &'a str,
    channel: Channel,
    from: Option<&'a str>,
    to: Option<&'a str>,
}

impl<'a> Message<'a> {
    /// A message with the given body and channel.
    ///
    /// ```
    /// let m = proxy_optout::Message::new("hi", proxy_optout::Channel::Mms);
    /// assert_eq!(m.channel(), proxy_optout::Channel::Mms);
    /// ```
    #[must_use]
    pub const fn new(body: &'a str, channel: Channel) -> Self {
        Message {
            body,
            channel,
            from: None,
            to: None,
        }
    }

    /// An SMS with the given body.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Message::sms("hi").body(), "hi");
    /// ```
    #[must_use]
    pub const fn sms(body: &'a str) -> Self {
        Message::new(body, Channel::Sms)
    }

    /// Sets the sender's own number (or channel address).
    ///
    /// ```
    /// let m = proxy_optout::Message::sms("hi").from("+15550001111");
    /// assert_eq!(m.from_number(), Some("+15550001111"));
    /// ```
    #[must_use]
    pub const fn from(mut self, number: &'a str) -> Self {
        self.from = Some(number);
        self
    }

    /// Sets the proxy (masked) number the message was sent to.
    ///
    /// ```
    /// let m = proxy_optout::Message::sms("hi").to("+15559990000");
    /// assert_eq!(m.to_number(), Some("+15559990000"));
    /// ```
    #[must_use]
    pub const fn to(mut self, number: &'a str) -> Self {
        self.to = Some(number);
        self
    }

    /// The body as received.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Message::sms(" Stop ").body(), " Stop ");
    /// ```
    #[must_use]
    pub const fn body(&self) -> &'a str {
        self.body
    }

    /// The channel.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Message::sms("x").channel(), proxy_optout::Channel::Sms);
    /// ```
    #[must_use]
    pub const fn channel(&self) -> Channel {
        self.channel
    }

    /// The sender's number, if set.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Message::sms("x").from_number(), None);
    /// ```
    #[must_use]
    pub const fn from_number(&self) -> Option<&'a str> {
        self.from
    }

    /// The proxy number the message was sent to, if set.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Message::sms("x").to_number(), None);
    /// ```
    #[must_use]
    pub const fn to_number(&self) -> Option<&'a str> {
        self.to
    }
}

impl<'a> From<&'a str> for Message<'a> {
    /// An SMS with this body.
    fn from(body: &'a str) -> Self {
        Message::sms(body)
    }
}
