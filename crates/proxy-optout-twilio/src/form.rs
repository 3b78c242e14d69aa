//! `application/x-www-form-urlencoded` bodies, parsed exactly: every pair in order, repeats
//! kept, nothing trimmed, empty values kept (Twilio signs them all).

use std::borrow::Cow;
use std::fmt::Write as _;

/// The largest form body accepted, in bytes.
///
/// Twilio caps a message body at 1,600 characters; percent-encoded, four-byte characters make
/// that at most 19,200 bytes, and the rest of an inbound webhook (addresses, SIDs, geo fields,
/// up to ten media URLs) adds a few kilobytes. 64 KiB leaves room for parameters Twilio adds
/// later while refusing what no real webhook sends.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// A form body that could not be parsed. New variants may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::{Form, FormError};
/// assert_eq!(Form::parse(b"Body=%ZZ"), Err(FormError::InvalidPercent { offset: 5 }));
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The body is longer than [`MAX_FORM_BYTES`].
    #[error("form body is {len} bytes long, over the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A `%` is not followed by two hexadecimal digits.
    #[error("invalid percent-encoding at byte {offset} of the form body")]
    InvalidPercent {
        /// Offset of the `%` in the body.
        offset: usize,
    },
    /// A decoded name or value is not UTF-8.
    #[error("form field starting at byte {offset} is not valid UTF-8 once decoded")]
    InvalidUtf8 {
        /// Offset of the name or value in the body.
        offset: usize,
    },
}

impl FormError {
    /// The HTTP status to answer a webhook with: 413 for a body over the limit, 400 otherwise.
    ///
    /// ```
    /// use proxy_optout_twilio::{Form, FormError};
    /// assert_eq!(Form::parse(b"Body=%ZZ").unwrap_err().status(), 400);
    /// assert_eq!(FormError::TooLarge { len: 70000, max: 65536 }.status(), 413);
    /// ```
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            FormError::TooLarge { .. } => 413,
            _ => 400,
        }
    }

    /// Whether the same request can succeed later: never, the request itself is wrong.
    ///
    /// ```
    /// use proxy_optout_twilio::{Form, FormError};
    /// assert!(!Form::parse(b"Body=%ZZ").unwrap_err().is_retryable());
    /// assert!(!FormError::TooLarge { len: 70000, max: 65536 }.is_retryable());
    /// ```
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// A parsed form: its `(name, value)` pairs in the order sent, repeats kept.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::Form;
/// let form = Form::parse(b"From=%2B15551110001&Body=Stop+please&FromCity=&Body=again")?;
/// assert_eq!(form.get("From"), Some("+15551110001"));
/// assert_eq!(form.get("Body"), Some("Stop please")); // the first
/// assert_eq!(form.get_all("Body").collect::<Vec<_>>(), ["Stop please", "again"]);
/// assert_eq!(form.get("FromCity"), Some(""));
/// assert_eq!(form.len(), 4);
/// # Ok::<(), proxy_optout_twilio::FormError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Form<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Form<'a> {
    /// Parses a raw body. Segments are separated by `&`; an empty segment is skipped; a segment
    /// without `=` is a name with an empty value; `+` is a space; `%XX` is a byte.
    ///
    /// # Errors
    ///
    /// [`FormError`] for an oversized body, a broken `%` escape, or bytes that are not UTF-8.
    ///
    /// ```
    /// let form = proxy_optout_twilio::Form::parse(b"a=1&&b")?;
    /// assert_eq!(form.pairs().collect::<Vec<_>>(), [("a", "1"), ("b", "")]);
    /// # Ok::<(), proxy_optout_twilio::FormError>(())
    /// ```
    pub fn parse(body: &'a [u8]) -> Result<Self, FormError> {
        if body.len() > MAX_FORM_BYTES {
            return Err(FormError::TooLarge {
                len: body.len(),
                max: MAX_FORM_BYTES,
            });
        }
        let mut pairs = Vec::with_capacity(body.iter().filter(|b| **b == b'&').count() + 1);
        let mut start = 0;
        for segment in body.split(|b| *b == b'&') {
            let offset = start;
            start += segment.len() + 1;
            if segment.is_empty() {
                continue;
            }
            let (name, value, value_offset) = match segment.iter().position(|b| *b == b'=') {
                Some(eq) => (&segment[..eq], &segment[eq + 1..], offset + eq + 1),
                None => (segment, &segment[segment.len()..], offset + segment.len()),
            };
            pairs.push((decode(name, offset)?, decode(value, value_offset)?));
        }
        Ok(Form { pairs })
    }

    /// A form from pairs (to build a request in a test, or a status callback you forward).
    ///
    /// ```
    /// let form = proxy_optout_twilio::Form::from_pairs([("To", "+1P"), ("Body", "hi")]);
    /// assert_eq!(form.get("To"), Some("+1P"));
    /// ```
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Form<'static>
    where
        N: Into<String>,
        V: Into<String>,
    {
        Form {
            pairs: pairs
                .into_iter()
                .map(|(n, v)| (Cow::Owned(n.into()), Cow::Owned(v.into())))
                .collect(),
        }
    }

    /// The first value of `name`.
    ///
    /// ```
    /// assert_eq!(proxy_optout_twilio::Form::parse(b"a=1&a=2")?.get("a"), Some("1"));
    /// # Ok::<(), proxy_optout_twilio::FormError>(())
    /// ```
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Every value of `name`, in order.
    ///
    /// ```
    /// assert_eq!(proxy_optout_twilio::Form::parse(b"a=1&a=2")?.get_all("a").count(), 2);
    /// # Ok::<(), proxy_optout_twilio::FormError>(())
    /// ```
    pub fn get_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Every pair, in order.
    ///
    /// ```
    /// assert_eq!(proxy_optout_twilio::Form::parse(b"x=%41")?.pairs().next(), Some(("x", "A")));
    /// # Ok::<(), proxy_optout_twilio::FormError>(())
    /// ```
    pub fn pairs(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.pairs.iter().map(|(n, v)| (n.as_ref(), v.as_ref()))
    }

    /// How many pairs.
    ///
    /// ```
    /// assert_eq!(proxy_optout_twilio::Form::parse(b"")?.len(), 0);
    /// # Ok::<(), proxy_optout_twilio::FormError>(())
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no pairs.
    ///
    /// ```
    /// assert!(proxy_optout_twilio::Form::parse(b"&&")?.is_empty());
    /// # Ok::<(), proxy_optout_twilio::FormError>(())
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The form encoded again (`application/x-www-form-urlencoded`, unreserved characters
    /// kept, space as `+`).
    ///
    /// ```
    /// let form = proxy_optout_twilio::Form::from_pairs([("Body", "Stop & go")]);
    /// assert_eq!(form.encode(), "Body=Stop+%26+go");
    /// ```
    #[must_use]
    pub fn encode(&self) -> String {
        encode_pairs(self.pairs())
    }
}

/// Encodes pairs as `application/x-www-form-urlencoded`.
pub(crate) fn encode_pairs<'p>(pairs: impl Iterator<Item = (&'p str, &'p str)>) -> String {
    let mut out = String::new();
    for (i, (n, v)) in pairs.enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component(n, &mut out);
        out.push('=');
        encode_component(v, &mut out);
    }
    out
}

fn encode_component(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one component; borrows when nothing needs decoding.
fn decode(raw: &[u8], offset: usize) -> Result<Cow<'_, str>, FormError> {
    if !raw.iter().any(|b| *b == b'%' || *b == b'+') {
        return std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| FormError::InvalidUtf8 { offset });
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let pair = raw
                    .get(i + 1)
                    .and_then(|h| hex(*h))
                    .zip(raw.get(i + 2).and_then(|l| hex(*l)));
                let Some((h, l)) = pair else {
                    return Err(FormError::InvalidPercent { offset: offset + i });
                };
                out.push(h << 4 | l);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| FormError::InvalidUtf8 { offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_cases() {
        type Case<'c> = (&'c [u8], &'c [(&'c str, &'c str)]);
        let ok: &[Case<'_>] = &[
            (b"", &[]),
            (b"a", &[("a", "")]),
            (b"a=", &[("a", "")]),
            (b"=b", &[("", "b")]),
            (b"a=b=c", &[("a", "b=c")]),
            (b"a=%20+%2B", &[("a", "  +")]),
            (b"Body=%F0%9F%9B%91", &[("Body", "\u{1F6D1}")]),
            (b"a=1&&&b=2&", &[("a", "1"), ("b", "2")]),
            (b"x=%e9%41", &[]),
        ];
        for (raw, pairs) in ok {
            match Form::parse(raw) {
                Ok(f) => assert_eq!(f.pairs().collect::<Vec<_>>(), *pairs, "{raw:?}"),
                Err(e) => assert_eq!(*raw, b"x=%e9%41", "{e}"),
            }
        }
        assert_eq!(
            Form::parse(b"x=%e9%41"),
            Err(FormError::InvalidUtf8 { offset: 2 })
        );
        assert_eq!(
            Form::parse(b"ab=%4"),
            Err(FormError::InvalidPercent { offset: 3 })
        );
        assert_eq!(
            Form::parse(b"ab%G1=1"),
            Err(FormError::InvalidPercent { offset: 2 })
        );
        let big = vec![b'a'; MAX_FORM_BYTES + 1];
        assert!(matches!(Form::parse(&big), Err(FormError::TooLarge { .. })));
        assert!(Form::parse(&big[..MAX_FORM_BYTES]).is_ok());
    }
}
