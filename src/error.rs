//! Errors. A message body is never an error (classification is total); these are for
//! configuration, for names parsed from text, and for boundaries that take raw bytes.

use alloc::string::String;
use core::fmt;

/// A configuration the [`ClassifierBuilder`](crate::ClassifierBuilder) refuses.
///
/// Each variant carries the offending keyword. New variants may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout::{Category, Classifier, ConfigError};
///
/// let err = Classifier::builder().remove_keyword("STOP").build().unwrap_err();
/// assert_eq!(err, ConfigError::MandatoryKeyword { keyword: "STOP".into() });
/// assert_eq!(err.to_string(), "keyword \"STOP\" is mandatory and cannot be removed");
///
/// let err = Classifier::builder().keyword("HALT NOW", Category::OptOut).build().unwrap_err();
/// assert!(matches!(err, ConfigError::KeywordWhitespace { .. }));
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A custom keyword was the empty string.
    #[error("custom keyword is empty")]
    EmptyKeyword,
    /// A custom keyword is longer than [`MAX_KEYWORD_BYTES`](crate::MAX_KEYWORD_BYTES).
    #[error("custom keyword {keyword:?} is {len} bytes long, over the limit of {max}")]
    KeywordTooLong {
        /// The offending keyword.
        keyword: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A custom keyword contains whitespace; keywords are single words (§§2).
    #[error("custom keyword {keyword:?} contains whitespace")]
    KeywordWhitespace {
        /// The offending keyword.
        keyword: String,
    },
    /// A custom keyword contains a character other than letters and digits (punctuation is
    /// allowed inside a word, not at its ends; control and format characters never).
    #[error("custom keyword {keyword:?} contains {ch:?}, which is not a letter or digit")]
    KeywordCharacter {
        /// The offending keyword.
        keyword: String,
        /// The character.
        ch: char,
    },
    /// A keyword equals, under case folding, one already in the table.
    #[error("keyword {keyword:?} is already in the table as {existing:?}")]
    DuplicateKeyword {
        /// The keyword being added.
        keyword: String,
        /// The keyword already present.
        existing: String,
    },
    /// A non-ASCII keyword folds to plain ASCII; write the ASCII spelling instead.
    #[error("keyword {keyword:?} folds to the ASCII word {ascii:?}; add that spelling instead")]
    NonCanonicalKeyword {
        /// The offending keyword.
        keyword: String,
        /// Its ASCII folded form.
        ascii: String,
    },
    /// STOP, START, UNSTOP and HELP can never be removed (§§9).
    #[error("keyword {keyword:?} is mandatory and cannot be removed")]
    MandatoryKeyword {
        /// The keyword whose removal was asked.
        keyword: String,
    },
    /// A keyword to remove is not in the table.
    #[error("keyword {keyword:?} is not in the table, so it cannot be removed")]
    UnknownKeyword {
        /// The keyword whose removal was asked.
        keyword: String,
    },
}

/// A message body given as bytes was not valid UTF-8.
///
/// # Example
///
/// ```
/// let err = proxy_optout::classify_bytes(b"ST\xFFOP").unwrap_err();
/// assert_eq!(err.offset(), 2);
/// assert_eq!(err.to_string(), "message body is not valid UTF-8: invalid byte 0xff at offset 2");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Utf8Error {
    offset: usize,
    byte: Option<u8>,
}

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message body is not valid UTF-8: ")?;
        match self.byte {
            Some(b) => write!(f, "invalid byte {b:#04x} at offset {}", self.offset),
            None => write!(f, "truncated sequence at offset {}", self.offset),
        }
    }
}

impl core::error::Error for Utf8Error {}

impl Utf8Error {
    pub(crate) fn from_std(bytes: &[u8], err: core::str::Utf8Error) -> Self {
        let offset = err.valid_up_to();
        let byte = match err.error_len() {
            Some(_) => bytes.get(offset).copied(),
            None => None,
        };
        Utf8Error { offset, byte }
    }

    /// Byte offset of the first byte that is not part of valid UTF-8.
    ///
    /// ```
    /// let err = proxy_optout::classify_bytes(b"\xC3").unwrap_err();
    /// assert_eq!(err.offset(), 0);
    /// ```
    #[must_use]
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The offending byte, or `None` when the input ends inside a multi-byte sequence.
    ///
    /// ```
    /// let err = proxy_optout::classify_bytes(b"ok \x80").unwrap_err();
    /// assert_eq!(err.byte(), Some(0x80));
    /// assert_eq!(proxy_optout::classify_bytes(b"ok \xE2\x82").unwrap_err().byte(), None);
    /// ```
    #[must_use]
    pub fn byte(&self) -> Option<u8> {
        self.byte
    }
}

/// A name that is not one of the values of an enum parsed from text
/// ([`RuleSet`](crate::RuleSet), [`Matching`](crate::Matching), [`Channel`](crate::Channel), ...).
///
/// # Example
///
/// ```
/// use proxy_optout::Channel;
///
/// let err = "fax".parse::<Channel>().unwrap_err();
/// assert_eq!(err.value(), "fax");
/// assert_eq!(
///     err.to_string(),
///     "unknown channel \"fax\", expected one of sms, mms, whatsapp, messenger, chat, other",
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}, expected one of {expected}")]
pub struct ParseError {
    what: &'static str,
    value: String,
    expected: &'static str,
}

/// The value of `all` whose name is `s`, ignoring ASCII case: the `FromStr` of every named
/// enum in the crate.
pub(crate) fn parse_named<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    s: &str,
    what: &'static str,
    expected: &'static str,
) -> Result<T, ParseError> {
    all.iter()
        .copied()
        .find(|v| name(*v).eq_ignore_ascii_case(s))
        .ok_or_else(|| ParseError::new(what, s, expected))
}

impl ParseError {
    pub(crate) fn new(what: &'static str, value: &str, expected: &'static str) -> Self {
        ParseError {
            what,
            value: value.into(),
            expected,
        }
    }

    /// The text that did not parse.
    ///
    /// ```
    /// let err = "proxy-1999".parse::<proxy_optout::RuleSet>().unwrap_err();
    /// assert_eq!(err.value(), "proxy-1999");
    /// ```
    #[must_use]
    pub fn value(&self) -> &str {
        &self.value
    }
}
