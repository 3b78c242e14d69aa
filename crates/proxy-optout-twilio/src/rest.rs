//! The REST side: the Messages create call for a forward, and 21610 in its error answer.

use proxy_optout::{Feedback, Notice, Outbound};
use serde::Deserialize;

use crate::form::encode_pairs;

/// Twilio's error code for a send to an unsubscribed (opted-out) recipient.
pub const UNSUBSCRIBED_RECIPIENT: u32 = Notice::UnsubscribedRecipient.code();

/// The Messages create call for one outbound message: the host's HTTP client POSTs
/// [`encode`](SendRequest::encode) to [`path`](SendRequest::path) with Basic auth (account SID
/// and auth token, or API key and secret) and `Content-Type:
/// application/x-www-form-urlencoded`.
///
/// # Example
///
/// ```
/// use proxy_optout::{Inbound, MemoryStore, Participant, Relay};
/// use proxy_optout_twilio::SendRequest;
///
/// let mut relay = Relay::new(MemoryStore::new());
/// relay.sessions_mut().open("r", Participant::new("+1A", "+1P")?, Participant::new("+1B", "+1Q")?)?;
/// let out = relay.handle(&Inbound::sms("+1A", "+1P", "on my way & 5 min"))?;
/// let req = SendRequest::new(out.forwarded().unwrap()).status_callback("https://relay.example/status");
/// assert_eq!(SendRequest::path("AC123"), "/2010-04-01/Accounts/AC123/Messages.json");
/// assert_eq!(
///     req.encode(),
///     "To=%2B1B&From=%2B1Q&Body=on+my+way+%26+5+min&StatusCallback=https%3A%2F%2Frelay.example%2Fstatus"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendRequest<'a> {
    to: &'a str,
    from: &'a str,
    body: &'a str,
    status_callback: Option<&'a str>,
    messaging_service_sid: Option<&'a str>,
}

impl<'a> SendRequest<'a> {
    /// The create call for `message`.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// # let relay = Relay::new(MemoryStore::new());
    /// # let out = relay.handle(&Inbound::sms("+1A", "+1P", "HELP"))?;
    /// let req = proxy_optout_twilio::SendRequest::new(out.reply().unwrap());
    /// assert!(req.encode().starts_with("To=%2B1A&From=%2B1P&Body="));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn new(message: &'a Outbound<'_>) -> Self {
        SendRequest {
            to: message.to(),
            from: message.from(),
            body: message.body(),
            status_callback: None,
            messaging_service_sid: None,
        }
    }

    /// With a `StatusCallback` URL.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// # let relay = Relay::new(MemoryStore::new());
    /// # let out = relay.handle(&Inbound::sms("+1A", "+1P", "HELP"))?;
    /// let req = proxy_optout_twilio::SendRequest::new(out.reply().unwrap()).status_callback("https://x/cb");
    /// assert!(req.encode().ends_with("StatusCallback=https%3A%2F%2Fx%2Fcb"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn status_callback(mut self, url: &'a str) -> Self {
        self.status_callback = Some(url);
        self
    }

    /// Sent through a Messaging Service instead of `From` (then a 21610 may arrive later, in
    /// a status callback).
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// # let relay = Relay::new(MemoryStore::new());
    /// # let out = relay.handle(&Inbound::sms("+1A", "+1P", "HELP"))?;
    /// let req = proxy_optout_twilio::SendRequest::new(out.reply().unwrap()).messaging_service("MG1");
    /// assert!(req.encode().contains("MessagingServiceSid=MG1") && !req.encode().contains("From="));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn messaging_service(mut self, sid: &'a str) -> Self {
        self.messaging_service_sid = Some(sid);
        self
    }

    /// The request path under `https://api.twilio.com`.
    ///
    /// ```
    /// assert!(proxy_optout_twilio::SendRequest::path("AC1").ends_with("/Messages.json"));
    /// ```
    #[must_use]
    pub fn path(account_sid: &str) -> String {
        format!("/2010-04-01/Accounts/{account_sid}/Messages.json")
    }

    /// The form fields, in order.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// # let relay = Relay::new(MemoryStore::new());
    /// # let out = relay.handle(&Inbound::sms("+1A", "+1P", "HELP"))?;
    /// let req = proxy_optout_twilio::SendRequest::new(out.reply().unwrap());
    /// assert_eq!(req.fields()[0], ("To", "+1A"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn fields(&self) -> Vec<(&'static str, &'a str)> {
        let mut f = vec![("To", self.to)];
        match self.messaging_service_sid {
            Some(sid) => f.push(("MessagingServiceSid", sid)),
            None => f.push(("From", self.from)),
        }
        f.push(("Body", self.body));
        if let Some(cb) = self.status_callback {
            f.push(("StatusCallback", cb));
        }
        f
    }

    /// The form-encoded request body.
    ///
    /// ```
    /// # use proxy_optout::{Inbound, MemoryStore, Relay};
    /// # let relay = Relay::new(MemoryStore::new());
    /// # let out = relay.handle(&Inbound::sms("+1A", "+1P", "HELP"))?;
    /// assert!(proxy_optout_twilio::SendRequest::new(out.reply().unwrap()).encode().contains("Body=Reply+STOP"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn encode(&self) -> String {
        encode_pairs(self.fields().into_iter())
    }
}

/// Twilio's REST error body: `{"code": 21610, "message": "...", "more_info": "...",
/// "status": 400}`.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::RestError;
/// let body = br#"{"code": 21610, "message": "Attempt to send to unsubscribed recipient", "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}"#;
/// let err = RestError::parse(body).unwrap();
/// assert!(err.is_unsubscribed_recipient());
/// assert_eq!(err.status, 400);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct RestError {
    /// Twilio's error code.
    pub code: u32,
    /// The message.
    #[serde(default)]
    pub message: String,
    /// The documentation link.
    #[serde(default)]
    pub more_info: String,
    /// The HTTP status.
    #[serde(default)]
    pub status: u16,
}

impl RestError {
    /// Parses an error body; `None` when it is not one (a proxy's HTML page, say).
    ///
    /// ```
    /// assert!(proxy_optout_twilio::RestError::parse(b"<html>").is_none());
    /// ```
    #[must_use]
    pub fn parse(body: &[u8]) -> Option<RestError> {
        serde_json::from_slice(body).ok()
    }

    /// Whether this is 21610: the recipient opted out of the sender.
    ///
    /// ```
    /// let e = proxy_optout_twilio::RestError::parse(br#"{"code": 21211}"#).unwrap();
    /// assert!(!e.is_unsubscribed_recipient());
    /// ```
    #[must_use]
    pub fn is_unsubscribed_recipient(&self) -> bool {
        self.code == UNSUBSCRIBED_RECIPIENT
    }
}

/// The ledger feedback a failed create call carries: a 400 whose body is error 21610 means the
/// pair (`from`, `to`) of `message` is opted out on the platform.
///
/// # Example
///
/// ```
/// use proxy_optout::{Feedback, Inbound, MemoryStore, Participant, Relay};
/// use proxy_optout_twilio::feedback_from_send;
///
/// let mut relay = Relay::new(MemoryStore::new());
/// relay.sessions_mut().open("r", Participant::new("+1A", "+1P")?, Participant::new("+1B", "+1P")?)?;
/// let out = relay.handle(&Inbound::sms("+1A", "+1P", "hi"))?;
/// let sent = out.forwarded().unwrap();
/// let body = br#"{"code": 21610, "message": "unsubscribed", "status": 400}"#;
/// let feedback = feedback_from_send(sent, 400, body).unwrap();
/// assert_eq!(feedback, Feedback::Refused { from: "+1P", to: "+1B" });
/// relay.feedback(&feedback)?; // the ledger now says +1B opted out of +1P
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn feedback_from_send<'m>(
    message: &'m Outbound<'_>,
    status: u16,
    body: &[u8],
) -> Option<Feedback<'m>> {
    if status != 400 {
        return None;
    }
    RestError::parse(body)
        .filter(RestError::is_unsubscribed_recipient)
        .map(|_| Feedback::Refused {
            from: message.from(),
            to: message.to(),
        })
}
