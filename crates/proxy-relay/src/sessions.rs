//! Sessions as the admin API sees them: what a client sends to create one, what it gets back,
//! and the checks that turn a bad request into an error naming the field.

use proxy_optout::validate_identifier;
use serde::{Deserialize, Serialize};

/// Whether a session still relays.
///
/// ```
/// assert_eq!(proxy_relay::SessionStatus::Open.as_str(), "open");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Messages between its participants are relayed.
    Open,
    /// Closed: its proxy numbers are free for other sessions; messages are out of session.
    Closed,
}

impl SessionStatus {
    /// The name stored and shown in JSON.
    ///
    /// ```
    /// assert_eq!(proxy_relay::SessionStatus::Closed.as_str(), "closed");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Open => "open",
            SessionStatus::Closed => "closed",
        }
    }

    pub(crate) fn parse(value: &str) -> Option<SessionStatus> {
        match value {
            "open" => Some(SessionStatus::Open),
            "closed" => Some(SessionStatus::Closed),
            _ => None,
        }
    }
}

/// One participant of a stored session.
///
/// ```
/// let p = proxy_relay::SessionParticipant {
///     identifier: "+15551110001".into(),
///     proxy_identifier: "+15550000100".into(),
///     friendly_name: Some("rider".into()),
/// };
/// assert_eq!(p.identifier, "+15551110001");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionParticipant {
    /// The participant's own number or address (`whatsapp:+1…` for WhatsApp).
    pub identifier: String,
    /// The proxy number the participant texts, taken from the configured pool.
    pub proxy_identifier: String,
    /// A label for people reading the admin API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
}

/// A stored session, as the admin API returns it.
///
/// ```
/// use proxy_relay::{Session, SessionStatus};
/// let s = Session { sid: "KS1".into(), unique_name: None, status: SessionStatus::Open,
///                   created_at_ms: 0, closed_at_ms: None, participants: vec![] };
/// assert_eq!(serde_json::to_value(&s)?["status"], "open");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session id (`KS` and 32 hex digits).
    pub sid: String,
    /// The client's own name for it (a ride or order id), unique among all sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_name: Option<String>,
    /// Open or closed.
    pub status: SessionStatus,
    /// Unix milliseconds at creation.
    pub created_at_ms: i64,
    /// Unix milliseconds at closing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at_ms: Option<i64>,
    /// Its two participants, in the order they were given.
    pub participants: Vec<SessionParticipant>,
}

/// The body of `POST /v1/sessions`.
///
/// ```
/// let req: proxy_relay::NewSession = serde_json::from_str(
///     r#"{"unique_name": "ride-42", "participants": [{"identifier": "+15551110001"}, {"identifier": "+15552220002"}]}"#,
/// )?;
/// assert_eq!(req.participants.len(), 2);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// Optional client name, unique among sessions.
    #[serde(default)]
    pub unique_name: Option<String>,
    /// Exactly two participants.
    pub participants: Vec<NewParticipant>,
}

/// One participant in a [`NewSession`].
///
/// ```
/// let p: proxy_relay::NewParticipant = serde_json::from_str(r#"{"identifier": "whatsapp:+15552220002"}"#)?;
/// assert!(p.proxy_identifier.is_none());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewParticipant {
    /// The participant's own number or address.
    pub identifier: String,
    /// A label.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// A pool number to use instead of the first free one (it must be in the pool).
    #[serde(default)]
    pub proxy_identifier: Option<String>,
}

/// A request the admin API refuses, naming the field.
///
/// ```
/// let e = proxy_relay::FieldError::new("participants", "a session has exactly two participants, got 1");
/// assert_eq!(e.to_string(), "participants: a session has exactly two participants, got 1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The JSON path of the bad field (`participants[1].identifier`).
    pub field: String,
    /// What is wrong with it, naming the value.
    pub message: String,
}

impl FieldError {
    /// An error for `field`.
    ///
    /// ```
    /// assert_eq!(proxy_relay::FieldError::new("unique_name", "taken").field, "unique_name");
    /// ```
    #[must_use]
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The longest friendly name kept.
///
/// ```
/// assert_eq!(proxy_relay::MAX_FRIENDLY_NAME, 256);
/// ```
pub const MAX_FRIENDLY_NAME: usize = 256;

impl NewSession {
    /// Checks the request against the pool: two participants with canonical, distinct
    /// identifiers; a chosen proxy number must be in the pool.
    ///
    /// # Errors
    ///
    /// A [`FieldError`] naming the first bad field.
    ///
    /// ```
    /// use proxy_relay::{NewParticipant, NewSession};
    /// let p = |id: &str| NewParticipant { identifier: id.into(), friendly_name: None, proxy_identifier: None };
    /// let req = NewSession { unique_name: None, participants: vec![p("+1555"), p(" +1666")] };
    /// assert_eq!(req.validate(&["+1P".into()]).unwrap_err().field, "participants[1].identifier");
    /// ```
    pub fn validate(&self, pool: &[String]) -> Result<(), FieldError> {
        if let Some(name) = &self.unique_name {
            validate_identifier("unique name", name)
                .map_err(|e| FieldError::new("unique_name", e.to_string()))?;
        }
        if self.participants.len() != 2 {
            return Err(FieldError::new(
                "participants",
                format!(
                    "a session has exactly two participants, got {}",
                    self.participants.len()
                ),
            ));
        }
        for (i, p) in self.participants.iter().enumerate() {
            validate_identifier("identifier", &p.identifier).map_err(|e| {
                FieldError::new(format!("participants[{i}].identifier"), e.to_string())
            })?;
            if let Some(name) = &p.friendly_name {
                if name.len() > MAX_FRIENDLY_NAME {
                    return Err(FieldError::new(
                        format!("participants[{i}].friendly_name"),
                        format!("longer than {MAX_FRIENDLY_NAME} bytes ({})", name.len()),
                    ));
                }
            }
            if let Some(proxy) = &p.proxy_identifier {
                let bare = strip_channel(proxy);
                if !pool.iter().any(|n| n == bare) {
                    return Err(FieldError::new(
                        format!("participants[{i}].proxy_identifier"),
                        format!("{proxy:?} is not a number in the proxy pool"),
                    ));
                }
            }
        }
        if self.participants[0].identifier == self.participants[1].identifier {
            return Err(FieldError::new(
                "participants[1].identifier",
                format!(
                    "{:?} is already participants[0]; a session relays between two people",
                    self.participants[1].identifier
                ),
            ));
        }
        Ok(())
    }
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
