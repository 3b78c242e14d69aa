//! One authenticated inbound message, owned, so it can travel to the database thread, a
//! task of its own or the journal without the request's buffers.

use proxy_optout::{Category, Change, Inbound, Outcome};
use proxy_optout_twilio::InboundMessage;

/// An inbound-message webhook whose signature was checked, owned: the fields the relay
/// uses. What the [`TwilioWebhook`](crate::TwilioWebhook) extractor and
/// [`Pipeline::authenticate`](crate::Pipeline::authenticate) give a host's own handler.
///
/// ```
/// let form = proxy_optout_twilio::Form::parse(b"MessageSid=SM1&From=%2B1A&To=%2B1P&Body=hi")?;
/// let m = proxy_optout_host::Message::from_webhook(&proxy_optout_twilio::InboundMessage::from_form(&form)?);
/// assert_eq!((m.sid(), m.from(), m.to(), m.body()), (Some("SM1"), "+1A", "+1P", "hi"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub(crate) sid: Option<String>,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) body: String,
    pub(crate) media: u32,
    pub(crate) opt_out_type: Option<Category>,
    /// When the webhook arrived (Unix milliseconds): a journaled message keeps its arrival.
    pub(crate) received_ms: u64,
    /// Handled from the journal: its webhook was answered long ago.
    pub(crate) replayed: bool,
}

impl Message {
    /// The change `steps` asks to record, with when this message arrived and, for a dropped
    /// keyword whose confirmation rides in this webhook's answer, when that answer goes (now:
    /// the answer follows the record). Every other confirmation is noted once sent.
    pub(crate) fn change<'a>(
        &self,
        change: Change<'a>,
        outcome: Option<&Outcome<'_>>,
    ) -> Change<'a> {
        let change = change.with_received_at(self.received_ms);
        let in_answer = !self.replayed
            && outcome.is_some_and(|o| o.reply().is_some() && o.decision().is_dropped());
        if in_answer {
            change.with_confirmed_at(now_ms())
        } else {
            change
        }
    }
}

/// Whether the pipeline notes `outcome`'s confirmation after sending it: every one the
/// record did not carry already (see [`Message::change`]).
pub(crate) fn confirmed_later(outcome: &Outcome<'_>, replayed: bool) -> bool {
    replayed || !outcome.decision().is_dropped()
}

/// The system clock in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Message {
    /// The owned copy of a parsed webhook.
    ///
    /// ```
    /// let form = proxy_optout_twilio::Form::parse(b"From=%2B1A&To=%2B1P&Body=STOP&OptOutType=STOP")?;
    /// let m = proxy_optout_host::Message::from_webhook(&proxy_optout_twilio::InboundMessage::from_form(&form)?);
    /// assert_eq!(m.opt_out_type(), Some(proxy_optout::Category::OptOut));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn from_webhook(m: &InboundMessage<'_>) -> Message {
        Message {
            sid: m.message_sid().map(str::to_owned),
            from: m.from().to_owned(),
            to: m.to().to_owned(),
            body: m.body().to_owned(),
            media: m.num_media(),
            opt_out_type: m.opt_out_type(),
            received_ms: now_ms(),
            replayed: false,
        }
    }

    /// The relay's view of it, as [`InboundMessage::inbound`] builds it.
    ///
    /// ```
    /// # let form = proxy_optout_twilio::Form::parse(b"From=%2B1A&To=%2B1P&Body=hi")?;
    /// # let m = proxy_optout_host::Message::from_webhook(&proxy_optout_twilio::InboundMessage::from_form(&form)?);
    /// assert_eq!(m.inbound().body(), "hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn inbound(&self) -> Inbound<'_> {
        let mut inbound = Inbound::new(&self.from, &self.to, &self.body).with_media(self.media);
        if let Some(id) = &self.sid {
            inbound = inbound.with_message_id(id);
        }
        if let Some(verdict) = self.opt_out_type {
            inbound = inbound.with_opt_out_type(verdict);
        }
        inbound
    }

    /// The message id, or "" for logs when Twilio sent none.
    pub(crate) fn id(&self) -> &str {
        self.sid.as_deref().unwrap_or("")
    }

    /// `MessageSid`, if Twilio sent one.
    ///
    /// ```
    /// # let form = proxy_optout_twilio::Form::parse(b"From=%2B1A&To=%2B1P&Body=hi")?;
    /// # let m = proxy_optout_host::Message::from_webhook(&proxy_optout_twilio::InboundMessage::from_form(&form)?);
    /// assert_eq!(m.sid(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// `From`: the sender.
    ///
    /// ```
    /// # let form = proxy_optout_twilio::Form::parse(b"From=%2B1A&To=%2B1P&Body=hi")?;
    /// # let m = proxy_optout_host::Message::from_webhook(&proxy_optout_twilio::InboundMessage::from_form(&form)?);
    /// assert_eq!(m.from(), "+1A");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn from(&self) -> &str {
        &self.from
    }

    /// `To`: the proxy number texted.
    ///
    /// ```
    /// # let form = proxy_optout_twilio::Form::parse(b"From=%2B1A&To=%2B1P&Body=hi")?;
    /// # let m = proxy_optout_host::Message::from_webhook(&proxy_optout_twilio::InboundMessage::from_form(&form)?);
    /// assert_eq!(m.to(), "+1P");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn to(&self) -> &str {
        &self.to
    }

    /// `Body`, as received.
    ///
    /// ```
    /// # let form = proxy_optout_twilio::Form::parse(b"From=%2B1A&To=%2B1P&Body=hi")?;
    /// # let m = proxy_optout_host::Message::from_webhook(&proxy_optout_twilio::InboundMessage::from_form(&form)?);
    /// assert_eq!(m.body(), "hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn body(&self) -> &str {
        &self.body
    }

    /// `NumMedia`.
    ///
    /// ```
    /// # let form = proxy_optout_twilio::Form::parse(b"From=%2B1A&To=%2B1P&Body=&NumMedia=2")?;
    /// # let m = proxy_optout_host::Message::from_webhook(&proxy_optout_twilio::InboundMessage::from_form(&form)?);
    /// assert_eq!(m.num_media(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn num_media(&self) -> u32 {
        self.media
    }

    /// `OptOutType`: the platform's own verdict (Advanced Opt-Out), if it sent one.
    ///
    /// ```
    /// # let form = proxy_optout_twilio::Form::parse(b"From=%2B1A&To=%2B1P&Body=hi")?;
    /// # let m = proxy_optout_host::Message::from_webhook(&proxy_optout_twilio::InboundMessage::from_form(&form)?);
    /// assert_eq!(m.opt_out_type(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn opt_out_type(&self) -> Option<Category> {
        self.opt_out_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_optout_twilio::Form;

    #[test]
    fn the_owned_message_is_seen_by_the_relay_as_the_webhook_is() {
        for body in [
            &b"MessageSid=SM1&From=%2B1A&To=%2B1P&Body=STOP&NumMedia=0"[..],
            b"MessageSid=MM2&From=%2B1A&To=%2B1P&Body=hi&NumMedia=2",
            b"MessageSid=SM3&From=whatsapp%3A%2B1A&To=whatsapp%3A%2B1P&Body=stop",
            b"MessageSid=SM4&From=%2B1A&To=%2B1P&Body=STOP&OptOutType=STOP",
            b"From=%2B1A&To=%2B1P&Body=hello",
        ] {
            let form = Form::parse(body).unwrap();
            let webhook = InboundMessage::from_form(&form).unwrap();
            let owned = Message::from_webhook(&webhook);
            assert_eq!(owned.inbound(), webhook.inbound(), "{body:?}");
        }
    }
}
