//! The inbound message as the host's webhook receives it.

use crate::identifier::{validate_identifier, IdentifierError};
use crate::keywords::Category;
use crate::message::{Channel, Message};

/// One inbound message as the host's webhook receives it: sender, the proxy identifier it was
/// sent to, body, channel, and what the provider said about it (its message id, the number of
/// media items, the platform's own opt-out verdict).
///
/// [`Inbound::new`] infers the channel from the addresses the way
/// [`Participant::new`](crate::Participant::new) does (`whatsapp:`, `messenger:`, SMS
/// otherwise). In session the sender's participant decides the channel (§§7), so a
/// WhatsApp participant's STOP is never taken for an SMS opt-out.
///
/// # Example
///
/// ```
/// use proxy_optout::{Category, Channel, Inbound};
///
/// let m = Inbound::new("+15551110001", "+15550000100", "on my way");
/// assert_eq!(m.channel(), Channel::Sms);
/// assert_eq!(Inbound::new("whatsapp:+1A", "whatsapp:+1P", "STOP").channel(), Channel::WhatsApp);
///
/// // An MMS: media makes an SMS an MMS, keyword handling still applies to its text.
/// let m = Inbound::new("+1A", "+1P", "stop").with_media(1).with_message_id("MM123");
/// assert_eq!(m.channel(), Channel::Mms);
/// assert_eq!(m.message_id(), Some("MM123"));
///
/// // The platform's verdict (Twilio's `OptOutType`), when the webhook carries one.
/// let m = Inbound::new("+1A", "+1P", "ARRET").with_opt_out_type(Category::OptOut);
/// assert_eq!(m.opt_out_type(), Some(Category::OptOut));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Inbound<'a> {
    pub(crate) from: &'a str,
    pub(crate) to: &'a str,
    pub(crate) body: &'a str,
    pub(crate) channel: Channel,
    pub(crate) message_id: Option<&'a str>,
    pub(crate) verdict: Option<Category>,
}

/// The channel an address names: `whatsapp:` and `messenger:` prefixes, SMS otherwise.
pub(crate) fn channel_of(address: &str) -> Channel {
    if address.starts_with("whatsapp:") {
        Channel::WhatsApp
    } else if address.starts_with("messenger:") {
        Channel::Messenger
    } else {
        Channel::Sms
    }
}

impl<'a> Inbound<'a> {
    /// A message from `from` to the proxy identifier `to`, on the channel the sender's
    /// address names.
    ///
    /// ```
    /// use proxy_optout::{Channel, Inbound};
    /// assert_eq!(Inbound::new("messenger:42", "messenger:7", "hi").channel(), Channel::Messenger);
    /// ```
    #[must_use]
    pub fn new(from: &'a str, to: &'a str, body: &'a str) -> Self {
        Inbound {
            from,
            to,
            body,
            channel: channel_of(from),
            message_id: None,
            verdict: None,
        }
    }

    /// An SMS from `from` to the proxy number `to`, whatever the addresses look like (in
    /// session the sender's participant still decides the channel).
    ///
    /// ```
    /// assert_eq!(proxy_optout::Inbound::sms("A", "P", "hi").to(), "P");
    /// ```
    #[must_use]
    pub const fn sms(from: &'a str, to: &'a str, body: &'a str) -> Self {
        Inbound {
            from,
            to,
            body,
            channel: Channel::Sms,
            message_id: None,
            verdict: None,
        }
    }

    /// The same message on `channel`.
    ///
    /// ```
    /// use proxy_optout::{Channel, Inbound};
    /// assert_eq!(Inbound::sms("A", "P", "hi").with_channel(Channel::Chat).channel(), Channel::Chat);
    /// ```
    #[must_use]
    pub const fn with_channel(mut self, channel: Channel) -> Self {
        self.channel = channel;
        self
    }

    /// The same message with `count` media items (Twilio's `NumMedia`): an SMS with media is
    /// an MMS; other channels keep theirs.
    ///
    /// ```
    /// use proxy_optout::{Channel, Inbound};
    /// assert_eq!(Inbound::sms("A", "P", "").with_media(2).channel(), Channel::Mms);
    /// assert_eq!(Inbound::sms("A", "P", "").with_media(0).channel(), Channel::Sms);
    /// ```
    #[must_use]
    pub const fn with_media(mut self, count: u32) -> Self {
        if count > 0 && matches!(self.channel, Channel::Sms) {
            self.channel = Channel::Mms;
        }
        self
    }

    /// The same message with the provider's message id (Twilio's `MessageSid`), which the
    /// outcome carries so the host can make redelivery idempotent.
    ///
    /// ```
    /// let m = proxy_optout::Inbound::sms("A", "P", "hi").with_message_id("SM1");
    /// assert_eq!(m.message_id(), Some("SM1"));
    /// ```
    #[must_use]
    pub const fn with_message_id(mut self, id: &'a str) -> Self {
        self.message_id = Some(id);
        self
    }

    /// The same message with the platform's opt-out verdict (Twilio's `OptOutType`: STOP,
    /// START or HELP). The verdict decides the ledger change, since the platform has already
    /// acted on it; the Proxy layer's drop decision still follows the keyword tables.
    ///
    /// ```
    /// use proxy_optout::{Category, Inbound};
    /// let m = Inbound::sms("A", "P", "hi").with_opt_out_type(Category::Help);
    /// assert_eq!(m.opt_out_type(), Some(Category::Help));
    /// ```
    #[must_use]
    pub const fn with_opt_out_type(mut self, verdict: Category) -> Self {
        self.verdict = Some(verdict);
        self
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

    /// The channel the message says it arrived on.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Inbound::sms("A", "P", "hi").channel(), proxy_optout::Channel::Sms);
    /// ```
    #[must_use]
    pub const fn channel(&self) -> Channel {
        self.channel
    }

    /// The provider's message id, if the host gave one.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Inbound::sms("A", "P", "hi").message_id(), None);
    /// ```
    #[must_use]
    pub const fn message_id(&self) -> Option<&'a str> {
        self.message_id
    }

    /// The platform's opt-out verdict, if the webhook carried one.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Inbound::sms("A", "P", "STOP").opt_out_type(), None);
    /// ```
    #[must_use]
    pub const fn opt_out_type(&self) -> Option<Category> {
        self.verdict
    }

    /// The message as the classifier sees it (on the channel the inbound says).
    ///
    /// ```
    /// let m = proxy_optout::Inbound::sms("A", "P", "hi").message();
    /// assert_eq!(m.to_number(), Some("P"));
    /// ```
    #[must_use]
    pub const fn message(&self) -> Message<'a> {
        self.message_on(self.channel)
    }

    pub(crate) const fn message_on(&self, channel: Channel) -> Message<'a> {
        Message::new(self.body, channel).from(self.from).to(self.to)
    }

    /// Checks every identifier the message carries.
    ///
    /// # Errors
    ///
    /// An [`IdentifierError`] naming `from`, `to` or `message id`.
    ///
    /// ```
    /// use proxy_optout::Inbound;
    /// assert!(Inbound::sms("+1A", "+1P", "hi").validate().is_ok());
    /// let err = Inbound::sms("", "+1P", "hi").validate().unwrap_err();
    /// assert_eq!(err.to_string(), "from is empty");
    /// ```
    pub fn validate(&self) -> Result<(), IdentifierError> {
        validate_identifier("from", self.from)?;
        validate_identifier("to", self.to)?;
        if let Some(id) = self.message_id {
            validate_identifier("message id", id)?;
        }
        Ok(())
    }
}
