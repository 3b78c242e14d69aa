//! Twilio Conversations on the wire: the pre-event `onMessageAdd` and `onConversationAdd`,
//! the post-event `onParticipantAdded`, `onParticipantRemoved` and `onDeliveryUpdated`
//! webhooks as typed values over a parsed [`Form`], and the answers a pre-event webhook can
//! give. Conversations signs its webhooks exactly like Messaging: validate the whole form
//! with the same [`Validator`](crate::Validator) first.

use core::fmt;

use proxy_optout::Feedback;

use crate::form::Form;
use crate::rest::UNSUBSCRIBED_RECIPIENT;

/// A Conversations webhook form the adapter cannot use. Each names the offending field and
/// value. New variants may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::{ConversationsError, ConversationsEvent, Form};
/// let form = Form::parse(b"EventType=onMessageAdd&Body=hi")?;
/// assert_eq!(
///     ConversationsEvent::from_form(&form).unwrap_err(),
///     ConversationsError::Missing { field: "ConversationSid" },
/// );
/// # Ok::<(), proxy_optout_twilio::FormError>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConversationsError {
    /// A parameter the event always carries is absent.
    #[error("the webhook has no {field} parameter")]
    Missing {
        /// The parameter's name.
        field: &'static str,
    },
    /// A parameter has a value the adapter cannot read.
    #[error("the webhook's {field} {value:?} is not {expected}")]
    Invalid {
        /// The parameter's name.
        field: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
}

impl ConversationsError {
    /// The HTTP status to answer a webhook with: always 400 (the event is missing a parameter or carries a malformed one).
    ///
    /// ```
    /// let e = proxy_optout_twilio::ConversationsError::Missing { field: "EventType" };
    /// assert_eq!(e.status(), 400);
    /// ```
    #[must_use]
    pub fn status(&self) -> u16 {
        400
    }

    /// Whether the same request can succeed later: never, the request itself is wrong.
    ///
    /// ```
    /// let e = proxy_optout_twilio::ConversationsError::Missing { field: "EventType" };
    /// assert!(!e.is_retryable());
    /// ```
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        false
    }
}

fn required<'f>(form: &'f Form<'_>, field: &'static str) -> Result<&'f str, ConversationsError> {
    form.get(field).ok_or(ConversationsError::Missing { field })
}

fn optional<'f>(form: &'f Form<'_>, field: &str) -> Option<&'f str> {
    form.get(field).filter(|v| !v.is_empty())
}

fn number(form: &Form<'_>, field: &'static str) -> Result<Option<u32>, ConversationsError> {
    match optional(form, field) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ConversationsError::Invalid {
                field,
                value: v.to_owned(),
                expected: "a number",
            }),
    }
}

/// Where a message came from (`Source`). Twilio documents `SDK` and `API`; `SMS` is seen in
/// captured traffic; `WHATSAPP` is assumed by analogy (unverified). Matched without regard to
/// ASCII case.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::Source;
/// assert_eq!(Source::parse("SMS"), Source::Sms);
/// assert_eq!(Source::parse("sdk"), Source::Sdk);
/// assert_eq!(Source::parse("EMAIL"), Source::Other("EMAIL"));
/// assert!(Source::Sms.has_keyword_handling());
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source<'f> {
    /// A chat (SDK) author.
    Sdk,
    /// Posted through the REST API (these fire no pre-event webhook).
    Api,
    /// An SMS or MMS participant.
    Sms,
    /// A WhatsApp participant.
    WhatsApp,
    /// Anything else, as sent.
    Other(&'f str),
}

impl<'f> Source<'f> {
    /// Reads `Source`.
    ///
    /// ```
    /// assert_eq!(proxy_optout_twilio::Source::parse("WhatsApp"), proxy_optout_twilio::Source::WhatsApp);
    /// ```
    #[must_use]
    pub fn parse(value: &'f str) -> Source<'f> {
        if value.eq_ignore_ascii_case("SDK") {
            Source::Sdk
        } else if value.eq_ignore_ascii_case("API") {
            Source::Api
        } else if value.eq_ignore_ascii_case("SMS") {
            Source::Sms
        } else if value.eq_ignore_ascii_case("WHATSAPP") {
            Source::WhatsApp
        } else {
            Source::Other(value)
        }
    }

    /// Whether Proxy's keyword rules apply to this author: SMS (and MMS) only.
    ///
    /// ```
    /// assert!(!proxy_optout_twilio::Source::WhatsApp.has_keyword_handling());
    /// ```
    #[must_use]
    pub fn has_keyword_handling(self) -> bool {
        matches!(self, Source::Sms)
    }
}

/// What kind of address a participant's messaging binding is (`MessagingBinding.Type`).
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::BindingKind;
/// assert_eq!(BindingKind::parse("sms"), BindingKind::Sms);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BindingKind<'f> {
    /// An SMS (and MMS) number.
    Sms,
    /// A WhatsApp address.
    WhatsApp,
    /// A chat (SDK) identity.
    Chat,
    /// Anything else, as sent.
    Other(&'f str),
}

impl<'f> BindingKind<'f> {
    /// Reads `MessagingBinding.Type`, ignoring ASCII case.
    ///
    /// ```
    /// assert_eq!(proxy_optout_twilio::BindingKind::parse("WHATSAPP"), proxy_optout_twilio::BindingKind::WhatsApp);
    /// ```
    #[must_use]
    pub fn parse(value: &'f str) -> BindingKind<'f> {
        if value.eq_ignore_ascii_case("sms") {
            BindingKind::Sms
        } else if value.eq_ignore_ascii_case("whatsapp") {
            BindingKind::WhatsApp
        } else if value.eq_ignore_ascii_case("chat") {
            BindingKind::Chat
        } else {
            BindingKind::Other(value)
        }
    }
}

/// A participant's messaging binding: their own address and the proxy address they text.
/// The pair is the opt-out ledger's key, as in Proxy.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::{Binding, BindingKind, Form};
/// let form = Form::parse(b"MessagingBinding.Address=%2B1A&MessagingBinding.ProxyAddress=%2B1P&MessagingBinding.Type=sms")?;
/// let b = Binding::from_form(&form).unwrap();
/// assert_eq!((b.address, b.proxy_address, b.kind), ("+1A", Some("+1P"), Some(BindingKind::Sms)));
/// # Ok::<(), proxy_optout_twilio::FormError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Binding<'f> {
    /// `MessagingBinding.Address`: the participant's own number or address.
    pub address: &'f str,
    /// `MessagingBinding.ProxyAddress`: the number they text (absent for a projected one).
    pub proxy_address: Option<&'f str>,
    /// `MessagingBinding.ProjectedAddress`, for group MMS.
    pub projected_address: Option<&'f str>,
    /// `MessagingBinding.Type`, when sent.
    pub kind: Option<BindingKind<'f>>,
}

impl<'f> Binding<'f> {
    /// The binding in a form, if it carries `MessagingBinding.Address`.
    ///
    /// ```
    /// let form = proxy_optout_twilio::Form::parse(b"Identity=web-7")?;
    /// assert!(proxy_optout_twilio::Binding::from_form(&form).is_none()); // a chat participant
    /// # Ok::<(), proxy_optout_twilio::FormError>(())
    /// ```
    #[must_use]
    pub fn from_form(form: &'f Form<'_>) -> Option<Binding<'f>> {
        Some(Binding {
            address: optional(form, "MessagingBinding.Address")?,
            proxy_address: optional(form, "MessagingBinding.ProxyAddress"),
            projected_address: optional(form, "MessagingBinding.ProjectedAddress"),
            kind: optional(form, "MessagingBinding.Type").map(BindingKind::parse),
        })
    }

    /// Whether Proxy's keyword rules apply to this binding: an SMS number, given as such or
    /// (with no type) an address with no channel prefix.
    ///
    /// ```
    /// use proxy_optout_twilio::{Binding, BindingKind};
    /// let sms = Binding { address: "+1A", proxy_address: Some("+1P"), projected_address: None, kind: None };
    /// assert!(sms.is_sms());
    /// let wa = Binding { address: "whatsapp:+1A", kind: Some(BindingKind::WhatsApp), ..sms };
    /// assert!(!wa.is_sms());
    /// ```
    #[must_use]
    pub fn is_sms(&self) -> bool {
        match self.kind {
            Some(k) => k == BindingKind::Sms,
            None => !self.address.contains(':'),
        }
    }
}

/// The pre-event `onMessageAdd`: a message about to be added to a conversation.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::{ConversationsEvent, Form, Source};
/// let form = Form::parse(b"EventType=onMessageAdd&ConversationSid=CH1&Body=STOP&Author=%2B1A\
/// &ParticipantSid=MB1&Source=SMS&RetryCount=0&AccountSid=AC1&Attributes=%7B%7D")?;
/// let ConversationsEvent::MessageAdd(m) = ConversationsEvent::from_form(&form)? else { panic!() };
/// assert_eq!((m.body, m.author, m.source), ("STOP", "+1A", Source::Sms));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageAdd<'f> {
    /// `ConversationSid` (`CH…`).
    pub conversation_sid: &'f str,
    /// `Body` (empty for a media-only message).
    pub body: &'f str,
    /// `Author`: the SMS participant's address, or the chat identity.
    pub author: &'f str,
    /// `ParticipantSid` (`MB…`), when the author is a participant.
    pub participant_sid: Option<&'f str>,
    /// `Source`.
    pub source: Source<'f>,
    /// `Attributes`, the JSON string as sent.
    pub attributes: Option<&'f str>,
    /// `Media`, the JSON string as sent.
    pub media: Option<&'f str>,
    /// `ClientIdentity` (SDK authors).
    pub client_identity: Option<&'f str>,
    /// `AccountSid`.
    pub account_sid: Option<&'f str>,
    /// `ChatServiceSid` (`IS…`).
    pub chat_service_sid: Option<&'f str>,
    /// `RetryCount`: 0 on the first delivery.
    pub retry_count: u32,
}

impl MessageAdd<'_> {
    /// Whether the message carries media (an MMS, for an SMS author).
    ///
    /// ```
    /// # use proxy_optout_twilio::{ConversationsEvent, Form};
    /// let form = Form::parse(b"EventType=onMessageAdd&ConversationSid=CH1&Body=&Author=a&Media=%5B%7B%22Sid%22%3A%22ME1%22%7D%5D")?;
    /// let ConversationsEvent::MessageAdd(m) = ConversationsEvent::from_form(&form)? else { panic!() };
    /// assert!(m.has_media());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn has_media(&self) -> bool {
        self.media
            .is_some_and(|m| !matches!(m.trim(), "" | "[]" | "null"))
    }
}

/// The pre-event `onConversationAdd`: a conversation about to be created, with the first
/// message of an auto-created one in `message_body`.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::{ConversationsEvent, Form};
/// let form = Form::parse(b"EventType=onConversationAdd&ChatServiceSid=IS1&MessageBody=STOP\
/// &MessagingBinding.Address=%2B1A&MessagingBinding.ProxyAddress=%2B1P")?;
/// let ConversationsEvent::ConversationAdd(c) = ConversationsEvent::from_form(&form)? else { panic!() };
/// assert_eq!(c.message_body, Some("STOP"));
/// assert_eq!(c.binding.unwrap().proxy_address, Some("+1P"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConversationAdd<'f> {
    /// `ChatServiceSid`.
    pub chat_service_sid: Option<&'f str>,
    /// `MessageBody`: the first message, for a conversation created by an inbound message.
    pub message_body: Option<&'f str>,
    /// The binding of the participant whose message creates it.
    pub binding: Option<Binding<'f>>,
    /// `AccountSid`.
    pub account_sid: Option<&'f str>,
    /// `RetryCount`.
    pub retry_count: u32,
}

/// The post-event `onParticipantAdded` or `onParticipantRemoved`.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::{ConversationsEvent, Form};
/// let form = Form::parse(b"EventType=onParticipantAdded&ConversationSid=CH1&ParticipantSid=MB1\
/// &MessagingBinding.Address=%2B1A&MessagingBinding.ProxyAddress=%2B1P&MessagingBinding.Type=sms")?;
/// let ConversationsEvent::ParticipantAdded(p) = ConversationsEvent::from_form(&form)? else { panic!() };
/// assert_eq!(p.binding.unwrap().address, "+1A");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParticipantEvent<'f> {
    /// `ConversationSid`.
    pub conversation_sid: &'f str,
    /// `ParticipantSid` (`MB…`).
    pub participant_sid: &'f str,
    /// `Identity`, for a chat participant.
    pub identity: Option<&'f str>,
    /// The messaging binding, for an SMS or WhatsApp participant.
    pub binding: Option<Binding<'f>>,
}

/// A delivery receipt's `Status`.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::DeliveryStatus;
/// assert_eq!(DeliveryStatus::parse("undelivered"), DeliveryStatus::Undelivered);
/// assert!(DeliveryStatus::Failed.is_failure());
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus<'f> {
    /// `sent`.
    Sent,
    /// `delivered`.
    Delivered,
    /// `read`.
    Read,
    /// `failed`.
    Failed,
    /// `undelivered`.
    Undelivered,
    /// Anything else, as sent.
    Other(&'f str),
}

impl<'f> DeliveryStatus<'f> {
    /// Reads `Status`, ignoring ASCII case.
    ///
    /// ```
    /// assert_eq!(proxy_optout_twilio::DeliveryStatus::parse("READ"), proxy_optout_twilio::DeliveryStatus::Read);
    /// ```
    #[must_use]
    pub fn parse(value: &'f str) -> DeliveryStatus<'f> {
        match value.to_ascii_lowercase().as_str() {
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "failed" => DeliveryStatus::Failed,
            "undelivered" => DeliveryStatus::Undelivered,
            _ => DeliveryStatus::Other(value),
        }
    }

    /// `failed` or `undelivered`.
    ///
    /// ```
    /// assert!(!proxy_optout_twilio::DeliveryStatus::Delivered.is_failure());
    /// ```
    #[must_use]
    pub fn is_failure(self) -> bool {
        matches!(self, DeliveryStatus::Failed | DeliveryStatus::Undelivered)
    }
}

/// The post-event `onDeliveryUpdated`: a delivery receipt for one participant.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::{ConversationsEvent, DeliveryStatus, Form};
/// let form = Form::parse(b"EventType=onDeliveryUpdated&ConversationSid=CH1&MessageSid=IM1\
/// &ParticipantSid=MB1&ChannelMessageSid=SM1&Status=failed&ErrorCode=21610")?;
/// let ConversationsEvent::DeliveryUpdated(d) = ConversationsEvent::from_form(&form)? else { panic!() };
/// assert!(d.is_unsubscribed());
/// assert_eq!(d.status, DeliveryStatus::Failed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryUpdated<'f> {
    /// `ConversationSid`.
    pub conversation_sid: &'f str,
    /// `MessageSid` (`IM…`, the conversation message).
    pub message_sid: &'f str,
    /// `ParticipantSid`: the recipient.
    pub participant_sid: &'f str,
    /// `ChannelMessageSid` (`SM…`, the SMS), when there is one.
    pub channel_message_sid: Option<&'f str>,
    /// `Status`.
    pub status: DeliveryStatus<'f>,
    /// `ErrorCode` (21610: the recipient opted out of the proxy address).
    pub error_code: Option<u32>,
}

impl<'f> DeliveryUpdated<'f> {
    /// Whether the delivery failed because the recipient opted out (21610).
    ///
    /// ```
    /// # use proxy_optout_twilio::{ConversationsEvent, Form};
    /// let form = Form::parse(b"EventType=onDeliveryUpdated&ConversationSid=CH1&MessageSid=IM1&ParticipantSid=MB1&Status=delivered")?;
    /// let ConversationsEvent::DeliveryUpdated(d) = ConversationsEvent::from_form(&form)? else { panic!() };
    /// assert!(!d.is_unsubscribed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn is_unsubscribed(&self) -> bool {
        self.status.is_failure() && self.error_code == Some(UNSUBSCRIBED_RECIPIENT)
    }

    /// The ledger feedback of a 21610 receipt, given the recipient's binding (the receipt names
    /// only the participant: the host looks its binding up).
    ///
    /// ```
    /// use proxy_optout::Feedback;
    /// # use proxy_optout_twilio::{Binding, ConversationsEvent, Form};
    /// let form = Form::parse(b"EventType=onDeliveryUpdated&ConversationSid=CH1&MessageSid=IM1&ParticipantSid=MB1&Status=undelivered&ErrorCode=21610")?;
    /// let ConversationsEvent::DeliveryUpdated(d) = ConversationsEvent::from_form(&form)? else { panic!() };
    /// let b = Binding { address: "+1A", proxy_address: Some("+1P"), projected_address: None, kind: None };
    /// assert_eq!(d.feedback(&b), Some(Feedback::Refused { from: "+1P", to: "+1A" }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn feedback<'b>(&self, recipient: &Binding<'b>) -> Option<Feedback<'b>> {
        match (self.is_unsubscribed(), recipient.proxy_address) {
            (true, Some(from)) => Some(Feedback::Refused {
                from,
                to: recipient.address,
            }),
            _ => None,
        }
    }
}

/// One Conversations webhook, by its `EventType`. Unknown event types are kept, not refused
/// (Twilio adds events without notice); unknown parameters are ignored (but were signed).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConversationsEvent<'f> {
    /// `onMessageAdd` (pre-event).
    MessageAdd(MessageAdd<'f>),
    /// `onConversationAdd` (pre-event).
    ConversationAdd(ConversationAdd<'f>),
    /// `onParticipantAdded` (post-event).
    ParticipantAdded(ParticipantEvent<'f>),
    /// `onParticipantRemoved` (post-event).
    ParticipantRemoved(ParticipantEvent<'f>),
    /// `onDeliveryUpdated` (post-event).
    DeliveryUpdated(DeliveryUpdated<'f>),
    /// Any other event type, as sent.
    Other(&'f str),
}

impl<'f> ConversationsEvent<'f> {
    /// Reads the event a webhook form carries.
    ///
    /// # Errors
    ///
    /// [`ConversationsError`] naming the first missing or unreadable parameter.
    ///
    /// ```
    /// use proxy_optout_twilio::{ConversationsEvent, Form};
    /// let form = Form::parse(b"EventType=onConversationStateUpdated&ConversationSid=CH1")?;
    /// assert_eq!(ConversationsEvent::from_form(&form)?, ConversationsEvent::Other("onConversationStateUpdated"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_form(form: &'f Form<'_>) -> Result<ConversationsEvent<'f>, ConversationsError> {
        let event = required(form, "EventType")?;
        let retry_count = number(form, "RetryCount")?.unwrap_or(0);
        Ok(match event {
            "onMessageAdd" => ConversationsEvent::MessageAdd(MessageAdd {
                conversation_sid: required(form, "ConversationSid")?,
                body: form.get("Body").unwrap_or(""),
                author: required(form, "Author")?,
                participant_sid: optional(form, "ParticipantSid"),
                source: Source::parse(form.get("Source").unwrap_or("API")),
                attributes: optional(form, "Attributes"),
                media: optional(form, "Media"),
                client_identity: optional(form, "ClientIdentity"),
                account_sid: optional(form, "AccountSid"),
                chat_service_sid: optional(form, "ChatServiceSid"),
                retry_count,
            }),
            "onConversationAdd" => ConversationsEvent::ConversationAdd(ConversationAdd {
                chat_service_sid: optional(form, "ChatServiceSid"),
                message_body: form.get("MessageBody"),
                binding: Binding::from_form(form),
                account_sid: optional(form, "AccountSid"),
                retry_count,
            }),
            "onParticipantAdded" | "onParticipantRemoved" => {
                let p = ParticipantEvent {
                    conversation_sid: required(form, "ConversationSid")?,
                    participant_sid: required(form, "ParticipantSid")?,
                    identity: optional(form, "Identity"),
                    binding: Binding::from_form(form),
                };
                if event == "onParticipantAdded" {
                    ConversationsEvent::ParticipantAdded(p)
                } else {
                    ConversationsEvent::ParticipantRemoved(p)
                }
            }
            "onDeliveryUpdated" => ConversationsEvent::DeliveryUpdated(DeliveryUpdated {
                conversation_sid: required(form, "ConversationSid")?,
                message_sid: required(form, "MessageSid")?,
                participant_sid: required(form, "ParticipantSid")?,
                channel_message_sid: optional(form, "ChannelMessageSid"),
                status: DeliveryStatus::parse(required(form, "Status")?),
                error_code: number(form, "ErrorCode")?,
            }),
            other => ConversationsEvent::Other(other),
        })
    }
}

/// What a pre-event webhook answers: publish as is, publish a modified message, or reject it
/// (any 4xx or 5xx: nobody sees it and no post-event webhook fires). No answer within
/// 5 seconds publishes it unmodified (Conversations fails open).
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::PreEventAnswer;
/// let reject = PreEventAnswer::Reject { status: 403 };
/// assert_eq!((reject.status(), reject.body()), (403, String::new()));
/// let publish = PreEventAnswer::Publish;
/// assert_eq!((publish.status(), publish.content_type()), (200, Some("application/json")));
/// assert_eq!(publish.body(), "{}");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PreEventAnswer<'a> {
    /// 200 with `{}`: publish unchanged.
    Publish,
    /// 200 with the fields to change: publish a modified message.
    PublishModified {
        /// A new body.
        body: Option<&'a str>,
        /// A new author.
        author: Option<&'a str>,
        /// New attributes (a JSON string, as Conversations stores them).
        attributes: Option<&'a str>,
    },
    /// Reject with this status (4xx or 5xx; the host's choice, 403 by default in the docs
    /// of this crate).
    Reject {
        /// The HTTP status.
        status: u16,
    },
}

impl PreEventAnswer<'_> {
    /// The HTTP status to answer with.
    ///
    /// ```
    /// assert_eq!(proxy_optout_twilio::PreEventAnswer::Reject { status: 422 }.status(), 422);
    /// ```
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            PreEventAnswer::Reject { status } => *status,
            _ => 200,
        }
    }

    /// The `Content-Type` of the answer, if it has a body.
    ///
    /// ```
    /// assert_eq!(proxy_optout_twilio::PreEventAnswer::Reject { status: 403 }.content_type(), None);
    /// ```
    #[must_use]
    pub fn content_type(&self) -> Option<&'static str> {
        match self {
            PreEventAnswer::Reject { .. } => None,
            _ => Some("application/json"),
        }
    }

    /// The body of the answer.
    ///
    /// ```
    /// use proxy_optout_twilio::PreEventAnswer;
    /// let a = PreEventAnswer::PublishModified { body: Some("[redacted]"), author: None, attributes: None };
    /// assert_eq!(a.body(), r#"{"body":"[redacted]"}"#);
    /// ```
    #[must_use]
    pub fn body(&self) -> String {
        match self {
            PreEventAnswer::Publish => "{}".to_owned(),
            PreEventAnswer::PublishModified {
                body,
                author,
                attributes,
            } => {
                let mut map = serde_json::Map::new();
                for (k, v) in [
                    ("body", body),
                    ("author", author),
                    ("attributes", attributes),
                ] {
                    if let Some(v) = v {
                        map.insert(k.to_owned(), serde_json::Value::String((*v).to_owned()));
                    }
                }
                serde_json::Value::Object(map).to_string()
            }
            PreEventAnswer::Reject { .. } => String::new(),
        }
    }
}

impl fmt::Display for PreEventAnswer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreEventAnswer::Publish => f.write_str("publish"),
            PreEventAnswer::PublishModified { .. } => f.write_str("publish modified"),
            PreEventAnswer::Reject { status } => write!(f, "reject ({status})"),
        }
    }
}
