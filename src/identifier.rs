//! Identifiers the crate accepts from the host (participants, proxy numbers, session ids,
//! message ids, service ids) and the one canonical form they must have.

use alloc::string::String;

/// The longest identifier accepted, in bytes. Phone numbers and channel addresses
/// (`whatsapp:+15551230000`, `messenger:1234567890`) and Twilio SIDs are far shorter; the
/// limit keeps a hostile webhook from making the ledger store arbitrarily large keys.
pub const MAX_IDENTIFIER_BYTES: usize = 256;

/// An identifier (participant, proxy number, session id, message id, service id) that is not
/// in canonical form. Each variant names the field and carries the offending value.
///
/// The canonical form: not empty; at most [`MAX_IDENTIFIER_BYTES`] bytes; no leading or
/// trailing whitespace (Unicode `White_Space`); no control characters anywhere. Nothing is
/// trimmed or rewritten for the host: a padded `" +1555"` is an error, not `"+1555"`, so two
/// spellings of one number can never become two ledger rows. New variants may be added in
/// minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout::{IdentifierError, Participant};
///
/// let err = Participant::new(" +15551110001", "+15550000100").unwrap_err();
/// assert_eq!(err, IdentifierError::Padded { field: "identifier", value: " +15551110001".into() });
/// assert_eq!(
///     err.to_string(),
///     "identifier \" +15551110001\" has leading or trailing whitespace",
/// );
/// assert!(matches!(Participant::new("", "P"), Err(IdentifierError::Empty { field: "identifier" })));
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    /// The identifier is the empty string.
    #[error("{field} is empty")]
    Empty {
        /// Which identifier: `"from"`, `"to"`, `"identifier"`, `"proxy identifier"`,
        /// `"session id"`, `"message id"`, `"service id"`, `"recipient"`.
        field: &'static str,
    },
    /// The identifier starts or ends with whitespace.
    #[error("{field} {value:?} has leading or trailing whitespace")]
    Padded {
        /// Which identifier.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// The identifier contains a control character (a newline, a NUL, ...).
    #[error("{field} {value:?} contains the control character {ch:?}")]
    Control {
        /// Which identifier.
        field: &'static str,
        /// The offending value.
        value: String,
        /// The first control character in it.
        ch: char,
    },
    /// The identifier is longer than [`MAX_IDENTIFIER_BYTES`].
    #[error("{field} is {len} bytes long, over the limit of {max}")]
    TooLong {
        /// Which identifier.
        field: &'static str,
        /// Its length in bytes (the value itself is not kept: it may be huge).
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl IdentifierError {
    /// Which identifier was refused.
    ///
    /// ```
    /// let err = proxy_optout::Participant::new("A", "").unwrap_err();
    /// assert_eq!(err.field(), "proxy identifier");
    /// ```
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            IdentifierError::Empty { field }
            | IdentifierError::Padded { field, .. }
            | IdentifierError::Control { field, .. }
            | IdentifierError::TooLong { field, .. } => field,
        }
    }
}

/// Checks that `value` is a canonical identifier; `field` names it in the error.
///
/// This is the check every entry point of the crate applies; hosts can call it to validate
/// identifiers at their own boundary (an admin API, a database import) with the same rules.
///
/// # Errors
///
/// An [`IdentifierError`] naming `field` and the value.
///
/// ```
/// use proxy_optout::validate_identifier;
/// assert!(validate_identifier("from", "whatsapp:+15551110001").is_ok());
/// assert!(validate_identifier("from", "+1555\n").is_err());
/// ```
pub fn validate_identifier(field: &'static str, value: &str) -> Result<(), IdentifierError> {
    // One pass over the bytes in the common case: ASCII printable is always fine inside, and
    // only the ends can hold (ASCII) padding.
    let bytes = value.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Err(IdentifierError::Empty { field });
    };
    if bytes.len() > MAX_IDENTIFIER_BYTES {
        return Err(IdentifierError::TooLong {
            field,
            len: bytes.len(),
            max: MAX_IDENTIFIER_BYTES,
        });
    }
    if bytes.iter().all(|b| (0x21..0x7F).contains(b) || *b == b' ') && first != b' ' && last != b' '
    {
        return Ok(());
    }
    if let Some(ch) = value.chars().find(|c| c.is_control()) {
        return Err(IdentifierError::Control {
            field,
            value: value.into(),
            ch,
        });
    }
    let starts = value.chars().next().is_some_and(char::is_whitespace);
    let ends = value.chars().next_back().is_some_and(char::is_whitespace);
    if starts || ends {
        return Err(IdentifierError::Padded {
            field,
            value: value.into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_identifiers_pass() {
        for ok in ["+15551110001", "whatsapp:+1555", "a b", "Ωmega", "x"] {
            assert_eq!(validate_identifier("from", ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn each_problem_is_named() {
        let cases: [(&str, &str); 6] = [
            ("", "empty"),
            (" +1", "padded"),
            ("+1\u{3000}", "padded"),
            ("+1\u{a0}", "padded"),
            ("+1\n2", "control"),
            ("+1\u{85}", "control"),
        ];
        for (value, kind) in cases {
            let err = validate_identifier("to", value).unwrap_err();
            let got = match err {
                IdentifierError::Empty { .. } => "empty",
                IdentifierError::Padded { .. } => "padded",
                IdentifierError::Control { .. } => "control",
                IdentifierError::TooLong { .. } => "long",
            };
            assert_eq!(got, kind, "{value:?}");
            assert_eq!(err.field(), "to");
        }
        let long = "1".repeat(MAX_IDENTIFIER_BYTES + 1);
        assert!(matches!(
            validate_identifier("to", &long),
            Err(IdentifierError::TooLong { len: 257, .. })
        ));
        assert_eq!(
            validate_identifier("to", &long[..MAX_IDENTIFIER_BYTES]),
            Ok(())
        );
    }
}
