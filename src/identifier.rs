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
#[inline]
pub fn validate_identifier(field: &'static str, value: &str) -> Result<(), IdentifierError> {
    // The common case in one branch-free pass, inlined: printable ASCII with no space at all
    // (phone numbers, channel addresses, SIDs). Anything else takes the careful path.
    if printable(value.as_bytes()) {
        return Ok(());
    }
    validate_slow(field, value)
}

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Whether every byte of the word is printable ASCII other than space (0x21..=0x7E), eight
/// bytes at a time: a byte below 0x21 borrows into its high bit, a byte above 0x7E has or
/// reaches it when one is added. Carries only start at bytes that are already flagged.
#[inline]
const fn printable_word(x: u64) -> bool {
    let below = x.wrapping_sub(0x21 * LOW) & !x & HIGH;
    let above = (x.wrapping_add(LOW) | x) & HIGH;
    below | above == 0
}

/// The fast path: 1 to [`MAX_IDENTIFIER_BYTES`] bytes, all printable ASCII without space.
#[inline]
fn printable(bytes: &[u8]) -> bool {
    if bytes.is_empty() || bytes.len() > MAX_IDENTIFIER_BYTES {
        return false;
    }
    let chunks = bytes.chunks_exact(8);
    let tail = chunks.remainder();
    let words = chunks.fold(true, |ok, c| {
        let mut word = [0; 8];
        word.copy_from_slice(c);
        ok & printable_word(u64::from_le_bytes(word))
    });
    words && tail.iter().all(|b| b.wrapping_sub(0x21) < 0x5E)
}

#[cold]
#[inline(never)]
fn validate_slow(field: &'static str, value: &str) -> Result<(), IdentifierError> {
    let bytes = value.as_bytes();
    if bytes.len() > MAX_IDENTIFIER_BYTES {
        return Err(IdentifierError::TooLong {
            field,
            len: bytes.len(),
            max: MAX_IDENTIFIER_BYTES,
        });
    }
    if bytes.is_empty() {
        return Err(IdentifierError::Empty { field });
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
    #[test]
    fn the_word_check_sees_a_bad_byte_at_every_position() {
        for len in 1..40 {
            let good = alloc::vec![b'7'; len];
            assert!(printable(&good), "{len}");
            for at in 0..len {
                for bad in [0x00, 0x1F, 0x20, 0x7F, 0x80, 0xFF] {
                    let mut v = good.clone();
                    v[at] = bad;
                    assert!(!printable(&v), "{len} {at} {bad:#x}");
                }
                for ok in [0x21, 0x7E] {
                    let mut v = good.clone();
                    v[at] = ok;
                    assert!(printable(&v));
                }
            }
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_rules() {
        for b in 0u8..=0x7F {
            let one = [b];
            let s = core::str::from_utf8(&one).unwrap();
            let inside = alloc::format!("a{s}b");
            let expect_ok = !(b as char).is_control();
            assert_eq!(
                validate_identifier("x", &inside).is_ok(),
                expect_ok,
                "{b:#x}"
            );
            let alone_ok = !(b as char).is_control() && !(b as char).is_whitespace();
            assert_eq!(validate_identifier("x", s).is_ok(), alone_ok, "{b:#x}");
        }
    }

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
