//! The debugger notices of §§8.

use core::fmt;
use core::str::FromStr;

use crate::error::ParseError;

/// A debugger event the platform raises for a message (§§8).
///
/// New notices may be added in minor releases, so matches need a wildcard arm.
///
/// # Example
///
/// ```
/// use proxy_optout::{Level, Notice};
///
/// let n = Notice::MessageMatchedStopWord;
/// assert_eq!(n.code(), 80901);
/// assert_eq!(n.level(), Level::Warning);
/// assert_eq!(n.title(), "Message Matched Stop Word");
/// assert_eq!(Notice::from_code(21610), Some(Notice::UnsubscribedRecipient));
/// assert_eq!(n.to_string(), "80901 Message Matched Stop Word");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Notice {
    /// 80901: a keyword message was not forwarded.
    MessageMatchedStopWord,
    /// 80909: the intercept hook blocked the interaction.
    InboundContactRejected,
    /// 21610: the forwarded leg targets a pair that opted out.
    UnsubscribedRecipient,
}

/// How serious a [`Notice`] is.
///
/// # Example
///
/// ```
/// use proxy_optout::{Level, Notice};
///
/// assert_eq!(Notice::UnsubscribedRecipient.level(), Level::Error);
/// assert_eq!(Level::Error.as_str(), "error");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Level {
    /// Something was withheld on purpose; the platform keeps working.
    Warning,
    /// A send failed.
    Error,
}

impl Level {
    /// The lowercase name, as the debugger shows it.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Level::Warning.as_str(), "warning");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Notice {
    /// Every notice, in code order.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Notice::ALL.len(), 3);
    /// ```
    pub const ALL: [Notice; 3] = [
        Notice::UnsubscribedRecipient,
        Notice::MessageMatchedStopWord,
        Notice::InboundContactRejected,
    ];

    /// The numeric Twilio error code.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Notice::InboundContactRejected.code(), 80909);
    /// ```
    #[must_use]
    pub const fn code(self) -> u32 {
        match self {
            Notice::MessageMatchedStopWord => 80901,
            Notice::InboundContactRejected => 80909,
            Notice::UnsubscribedRecipient => 21610,
        }
    }

    /// The notice for a numeric code, if it is one of ours.
    ///
    /// ```
    /// use proxy_optout::Notice;
    /// assert_eq!(Notice::from_code(80909), Some(Notice::InboundContactRejected));
    /// assert_eq!(Notice::from_code(30007), None);
    /// ```
    #[must_use]
    pub const fn from_code(code: u32) -> Option<Notice> {
        match code {
            80901 => Some(Notice::MessageMatchedStopWord),
            80909 => Some(Notice::InboundContactRejected),
            21610 => Some(Notice::UnsubscribedRecipient),
            _ => None,
        }
    }

    /// The debugger level.
    ///
    /// ```
    /// use proxy_optout::{Level, Notice};
    /// assert_eq!(Notice::MessageMatchedStopWord.level(), Level::Warning);
    /// ```
    #[must_use]
    pub const fn level(self) -> Level {
        match self {
            Notice::MessageMatchedStopWord | Notice::InboundContactRejected => Level::Warning,
            Notice::UnsubscribedRecipient => Level::Error,
        }
    }

    /// The debugger title.
    ///
    /// ```
    /// assert_eq!(
    ///     proxy_optout::Notice::UnsubscribedRecipient.title(),
    ///     "Attempt to send to unsubscribed recipient",
    /// );
    /// ```
    #[must_use]
    pub const fn title(self) -> &'static str {
        match self {
            Notice::MessageMatchedStopWord => "Message Matched Stop Word",
            Notice::InboundContactRejected => "Inbound Contact Rejected",
            Notice::UnsubscribedRecipient => "Attempt to send to unsubscribed recipient",
        }
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.title())
    }
}

impl FromStr for Notice {
    type Err = ParseError;

    /// Parses a numeric code such as `"80901"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u32>()
            .ok()
            .and_then(Notice::from_code)
            .ok_or_else(|| ParseError::new("notice code", s, "21610, 80901, 80909"))
    }
}

// Notices travel as their numeric code, which is what Twilio's debugger and webhooks carry.
#[cfg(feature = "serde")]
impl serde::Serialize for Notice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.code())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Notice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = <u32 as serde::Deserialize>::deserialize(deserializer)?;
        Notice::from_code(code).ok_or_else(|| {
            serde::de::Error::invalid_value(
                serde::de::Unexpected::Unsigned(code.into()),
                &"one of 21610, 80901, 80909",
            )
        })
    }
}
