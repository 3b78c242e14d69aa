//! TwiML responses: what the webhook answers, with every text XML-escaped.

use std::fmt::Write as _;

use proxy_optout::{Outbound, Outcome};

/// The `Content-Type` of a TwiML response. Without one, Twilio's debugger shows a 502 (12300).
pub const CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// The answer when there is nothing to say.
pub const EMPTY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

/// Where the forward to the other participant goes.
///
/// # Example
///
/// ```
/// assert_eq!(proxy_optout_twilio::ForwardVia::default(), proxy_optout_twilio::ForwardVia::Rest);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ForwardVia {
    /// The host sends the forward with the REST API ([`SendRequest`](crate::SendRequest)),
    /// so a 21610 refusal comes back synchronously and feeds the ledger. The TwiML carries the
    /// auto-reply only.
    #[default]
    Rest,
    /// The forward is a `<Message to=… from=…>` in the TwiML as well (one round trip, but a
    /// refusal only shows up later in the debugger or a status callback).
    Twiml,
}

/// Renders an outcome as TwiML: the carrier layer's reply (to the sender, from the proxy
/// number: a plain `<Message>`), and the forward when `forward` is [`ForwardVia::Twiml`].
/// Nothing to say is `<Response/>`.
///
/// # Example
///
/// ```
/// use proxy_optout::{Inbound, MemoryStore, Relay};
/// use proxy_optout_twilio::{render, ForwardVia, EMPTY};
///
/// let relay = Relay::new(MemoryStore::new());
/// let out = relay.handle(&Inbound::sms("+1A", "+1P", "HELP"))?;
/// let xml = render(&out, ForwardVia::Rest);
/// assert_eq!(
///     xml,
///     "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>Reply STOP to unsubscribe. \
///      Msg&amp;Data Rates May Apply.</Message></Response>"
/// );
/// let out = relay.handle(&Inbound::sms("+1A", "+1P", "hello"))?; // out of session
/// assert_eq!(render(&out, ForwardVia::Rest), EMPTY);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn render(outcome: &Outcome<'_>, forward: ForwardVia) -> String {
    let forwarded = match forward {
        ForwardVia::Twiml => outcome.forwarded(),
        ForwardVia::Rest => None,
    };
    render_messages(outcome.reply(), forwarded)
}

/// Renders a reply to the sender and a message to someone else, either optional.
///
/// ```
/// use proxy_optout_twilio::{render_messages, EMPTY};
/// assert_eq!(render_messages(None, None), EMPTY);
/// ```
#[must_use]
pub fn render_messages(reply: Option<&Outbound<'_>>, other: Option<&Outbound<'_>>) -> String {
    if reply.is_none() && other.is_none() {
        return EMPTY.to_owned();
    }
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>");
    if let Some(m) = reply {
        xml.push_str("<Message>");
        escape_into(m.body(), &mut xml);
        xml.push_str("</Message>");
    }
    if let Some(m) = other {
        xml.push_str("<Message to=\"");
        escape_into(m.to(), &mut xml);
        xml.push_str("\" from=\"");
        escape_into(m.from(), &mut xml);
        xml.push_str("\">");
        escape_into(m.body(), &mut xml);
        xml.push_str("</Message>");
    }
    xml.push_str("</Response>");
    xml
}

/// Escapes text for XML 1.0 content and attribute values: `&`, `<`, `>` (so `]]>` cannot end
/// a section), both quotes, and the control characters XML 1.0 allows only as references (tab,
/// newline, carriage return, written as references so attribute normalisation keeps them).
/// Characters XML 1.0 forbids outright (other C0 controls, U+FFFE, U+FFFF) cannot be
/// represented at all and become U+FFFD.
///
/// ```
/// let mut out = String::new();
/// proxy_optout_twilio::escape_into("a<b & \"c\" ]]> \u{1}", &mut out);
/// assert_eq!(out, "a&lt;b &amp; &quot;c&quot; ]]&gt; \u{FFFD}");
/// ```
pub fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            '\u{0}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}
