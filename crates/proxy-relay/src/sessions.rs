//! A session as the demo client and the tests read it back from the Proxy API: its SID and
//! its participants' numbers. And the address helpers number selection uses.

use serde::{Deserialize, Serialize};

/// One participant of a session, as the Proxy API's Participant resource shows it.
///
/// ```
/// let p = proxy_relay::SessionParticipant {
///     sid: "KP1".into(),
///     identifier: "+15551110001".into(),
///     proxy_identifier: "+15550000100".into(),
///     friendly_name: Some("rider".into()),
/// };
/// assert_eq!(p.identifier, "+15551110001");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionParticipant {
    /// The participant's SID (`KP…`).
    pub sid: String,
    /// The participant's own number or address (`whatsapp:+1…` for WhatsApp).
    pub identifier: String,
    /// The proxy number the participant texts, from the service's pool.
    pub proxy_identifier: String,
    /// A label.
    pub friendly_name: Option<String>,
}

/// A session with its participants, in the order they were added.
///
/// ```
/// let s = proxy_relay::Session { sid: "KC1".into(), service_sid: "KS1".into(),
///     unique_name: None, status: "open".into(), participants: vec![] };
/// assert_eq!(serde_json::to_value(&s)?["status"], "open");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session SID (`KC` and 32 hex digits).
    pub sid: String,
    /// Its service (`KS…`).
    pub service_sid: String,
    /// The client's own name for it (a ride or order id), unique in its service.
    pub unique_name: Option<String>,
    /// `open`, `in-progress` or `closed`.
    pub status: String,
    /// Its participants.
    #[serde(default)]
    pub participants: Vec<SessionParticipant>,
}

/// The channel prefix of an address (`whatsapp:`), or "".
pub(crate) fn channel_prefix(identifier: &str) -> &str {
    match identifier.find(':') {
        Some(i) => &identifier[..=i],
        None => "",
    }
}

/// The address without its channel prefix.
pub(crate) fn strip_channel(identifier: &str) -> &str {
    &identifier[channel_prefix(identifier).len()..]
}

/// The proxy identifier for `participant` on pool number `number`: a WhatsApp participant
/// texts the same number on WhatsApp.
pub(crate) fn proxy_for(participant: &str, number: &str) -> String {
    format!("{}{}", channel_prefix(participant), number)
}
