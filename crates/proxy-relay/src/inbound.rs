//! One authenticated inbound message, owned, so it can travel to the database thread or a
//! task of its own without the request's buffers.

use proxy_optout::{Category, Inbound};
use proxy_optout_twilio::InboundMessage;

/// The fields of an inbound-message webhook the relay uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) sid: Option<String>,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) body: String,
    pub(crate) media: u32,
    pub(crate) opt_out_type: Option<Category>,
}

impl Message {
    pub(crate) fn from_webhook(m: &InboundMessage<'_>) -> Message {
        Message {
            sid: m.message_sid().map(str::to_owned),
            from: m.from().to_owned(),
            to: m.to().to_owned(),
            body: m.body().to_owned(),
            media: m.num_media(),
            opt_out_type: m.opt_out_type(),
        }
    }

    /// The relay's view of it, as [`InboundMessage::inbound`] builds it.
    pub(crate) fn inbound(&self) -> Inbound<'_> {
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
