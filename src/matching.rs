//! How a body is compared with the keywords (SPEC §3): the matching modes, Unicode
//! `White_Space` trimming, and the lenient folds.

use core::fmt;
use core::str::FromStr;

use crate::error::ParseError;

/// How a message body is compared with the keywords (SPEC §3).
///
/// New modes may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout::{Classifier, Matching, Message};
///
/// let strict = Classifier::builder().build()?;
/// let lenient = Classifier::builder().matching(Matching::Lenient).build()?;
///
/// // Twilio-compatible: the whole trimmed body, case folded, nothing else.
/// assert!(strict.classify(&Message::sms("  sToP \n")).is_dropped());
/// assert!(strict.classify(&Message::sms("STOP!!")).is_forwarded());
///
/// // Lenient also drops trailing punctuation and emoji, joins spaces, folds accents...
/// assert!(lenient.classify(&Message::sms("STOP!!")).is_dropped());
/// assert!(lenient.classify(&Message::sms("Opt out")).is_dropped());
/// // ...but stays whole-body: a sentence is not a keyword.
/// assert!(lenient.classify(&Message::sms("stop at the corner")).is_forwarded());
/// # Ok::<(), proxy_optout::ConfigError>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Matching {
    /// Twilio-compatible (default): trim Unicode `White_Space`, then the whole body must equal
    /// one keyword under Unicode full case folding. Nothing else is folded.
    #[default]
    Compatible,
    /// Compliance-first: before comparing, also remove zero-width and format characters and
    /// combining marks, fold fullwidth forms and Latin diacritics, drop trailing punctuation and
    /// emoji, and join internal whitespace. Still whole-body.
    Lenient,
}

impl Matching {
    /// Every mode.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Matching::ALL.len(), 2);
    /// ```
    pub const ALL: [Matching; 2] = [Matching::Compatible, Matching::Lenient];

    /// The lowercase name: `compatible` or `lenient`.
    ///
    /// ```
    /// assert_eq!(proxy_optout::Matching::Lenient.as_str(), "lenient");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Matching::Compatible => "compatible",
            Matching::Lenient => "lenient",
        }
    }
}

impl fmt::Display for Matching {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Matching {
    type Err = ParseError;

    /// Parses `compatible` or `lenient`; ASCII case is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Matching::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseError::new("matching mode", s, "compatible, lenient"))
    }
}

/// Removes leading and trailing Unicode `White_Space` (the 25 code points of
/// `char::is_whitespace`), like `str::trim`, but skips long runs of one whitespace
/// character a block at a time so that padding costs a few cycles per 48 bytes.
///
/// # Example
///
/// ```
/// use proxy_optout::trim;
///
/// assert_eq!(trim("\u{000B} STOP\u{00A0}\u{3000}\r\n"), "STOP");
/// assert_eq!(trim(" \u{200B}STOP "), "\u{200B}STOP"); // ZWSP is not White_Space
/// assert_eq!(trim("\u{2028}"), "");
/// ```
#[must_use]
pub fn trim(s: &str) -> &str {
    trim_end(trim_start(s))
}

const BLOCK: usize = 48;

#[inline]
fn is_ascii_white_space(b: u8) -> bool {
    // char::is_whitespace on ASCII: TAB, LF, VT, FF, CR and SPACE. (u8::is_ascii_whitespace
    // omits VT, which Unicode counts.)
    matches!(b, b'\t'..=b'\r' | b' ')
}

/// A block of `BLOCK` bytes holding `unit` repeated; `unit` is one whitespace character of 2
/// or 3 bytes, both of which divide `BLOCK`.
fn repeated(unit: &[u8]) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    for (d, s) in block.iter_mut().zip(unit.iter().cycle()) {
        *d = *s;
    }
    block
}

/// How many bytes at the front of `rest` are whole blocks of whitespace like `unit`.
fn run_forward(rest: &[u8], unit: &[u8]) -> usize {
    if unit.len() == 1 {
        // Any mix of ASCII whitespace: the fold (not `all`) lets the compiler vectorize.
        let whole = rest
            .chunks_exact(BLOCK)
            .take_while(|c| c.iter().fold(true, |a, &b| a & is_ascii_white_space(b)))
            .count();
        return whole * BLOCK;
    }
    let block = repeated(unit);
    rest.chunks_exact(BLOCK)
        .take_while(|c| *c == block.as_slice())
        .count()
        * BLOCK
}

/// How many bytes at the back of `rest` are whole blocks of whitespace like `unit`.
fn run_backward(rest: &[u8], unit: &[u8]) -> usize {
    if unit.len() == 1 {
        let whole = rest
            .rchunks_exact(BLOCK)
            .take_while(|c| c.iter().fold(true, |a, &b| a & is_ascii_white_space(b)))
            .count();
        return whole * BLOCK;
    }
    // A run of a 2- or 3-byte character seen from its end is the same block, since the block
    // length is a multiple of the unit length.
    let block = repeated(unit);
    rest.rchunks_exact(BLOCK)
        .take_while(|c| *c == block.as_slice())
        .count()
        * BLOCK
}

pub(crate) fn trim_start(s: &str) -> &str {
    let bytes = s.as_bytes();
    match bytes.first() {
        // The common case, a body that starts with a visible ASCII character.
        Some(&b) if b < 0x80 && !is_ascii_white_space(b) => return s,
        None => return s,
        _ => {}
    }
    let mut i = 0;
    while let Some(c) = s.get(i..).and_then(|t| t.chars().next()) {
        if !c.is_whitespace() {
            break;
        }
        let start = i;
        i += c.len_utf8();
        let unit = bytes.get(start..i).unwrap_or_default();
        i += run_forward(bytes.get(i..).unwrap_or_default(), unit);
    }
    s.get(i..).unwrap_or_default()
}

pub(crate) fn trim_end(s: &str) -> &str {
    let bytes = s.as_bytes();
    match bytes.last() {
        Some(&b) if b < 0x80 && !is_ascii_white_space(b) => return s,
        None => return s,
        _ => {}
    }
    let mut end = s.len();
    while let Some(c) = s.get(..end).and_then(|t| t.chars().next_back()) {
        if !c.is_whitespace() {
            break;
        }
        let stop = end;
        end -= c.len_utf8();
        let unit = bytes.get(end..stop).unwrap_or_default();
        end -= run_backward(bytes.get(..end).unwrap_or_default(), unit);
    }
    s.get(..end).unwrap_or_default()
}

/// Non-ASCII characters whose full case folding (as unicase performs it) is entirely ASCII.
/// Only bodies made of ASCII and these can equal an ASCII keyword; the list is checked against
/// every Unicode scalar value by a test.
const FOLDS_TO_ASCII: [char; 12] = [
    '\u{00DF}',  // ß -> ss
    '\u{017F}',  // ſ -> s
    '\u{1E9E}',  // ẞ -> ss
    '\u{212A}',  // Kelvin sign -> k
    '\u{FB00}',  // ﬀ -> ff
    '\u{FB01}',  // ﬁ -> fi
    '\u{FB02}',  // ﬂ -> fl
    '\u{FB03}',  // ﬃ -> ffi
    '\u{FB04}',  // ﬄ -> ffl
    '\u{FB05}',  // ﬅ -> st
    '\u{FB06}',  // ﬆ -> st
    '\u{1DF95}', // Latin small letter sharp s (Latin Extended-G) -> ss
];

pub(crate) fn folds_to_ascii(c: char) -> bool {
    c.is_ascii() || FOLDS_TO_ASCII.contains(&c)
}

/// Zero-width and format characters that lenient matching removes: ZWSP, ZWNJ, ZWJ, word
/// joiner, BOM, soft hyphen, the Mongolian vowel separator and the bidirectional marks and
/// controls, all invisible on a handset.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Combining marks a decomposed accent leaves behind (`E` + U+0302), and variation selectors.
pub(crate) fn is_mark(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FE20}'..='\u{FE2F}'
    )
}

/// Base letters for U+00C0..=U+017F (Latin-1 Supplement letters and Latin Extended-A);
/// `.` keeps the character (Æ, ×, ß, Œ, ...).
const LATIN: &[u8; 192] = b"AAAAAA.CEEEEIIIIDNOOOOO.OUUUUY..aaaaaa.ceeeeiiiidnooooo.ouuuuy.y\
AaAaAaCcCcCcCcDdDdEeEeEeEeEeGgGgGgGgHhHhIiIiIiIiIi..JjKk.LlLlLlLlLlNnNnNn...OoOoOo..RrRrRrSsSsSsSsTtTtTtUuUuUuUuUuUuWwYyYZzZzZzs";

/// Folds one character the lenient way: fullwidth forms to ASCII, Latin letters with
/// diacritics to their base letter. Everything else is returned unchanged.
pub(crate) fn fold_lenient(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{00C0}'..='\u{017F}' => match LATIN.get(c as usize - 0xC0) {
            Some(&b) if b != b'.' => b as char,
            _ => c,
        },
        _ => c,
    }
}

/// Trailing characters lenient matching drops: punctuation and emoji/symbol runs
/// (`STOP!!`, `Stop.`, `STOP 🛑`). Tested on the folded character, so fullwidth `！` counts.
pub(crate) fn is_trailing_junk(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(
            c,
            '\u{00A1}' | '\u{00A7}' | '\u{00A9}' | '\u{00AB}' | '\u{00AE}' | '\u{00B6}'
                | '\u{00B7}' | '\u{00BB}' | '\u{00BF}'
                | '\u{2010}'..='\u{2027}'
                | '\u{2030}'..='\u{205E}'
                | '\u{20E3}'
                | '\u{2122}' | '\u{2139}'
                | '\u{2190}'..='\u{21FF}'
                | '\u{2300}'..='\u{23FF}'
                | '\u{25A0}'..='\u{27BF}'
                | '\u{2900}'..='\u{297F}'
                | '\u{2B00}'..='\u{2BFF}'
                | '\u{2E00}'..='\u{2E7F}'
                | '\u{3001}'..='\u{303F}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FF61}'..='\u{FF65}'
                | '\u{1F000}'..='\u{1FAFF}'
                | '\u{E0020}'..='\u{E007F}'
        )
}

/// The lenient body without its trailing junk: whitespace, invisible characters, punctuation
/// and emoji at the end are removed, repeatedly.
pub(crate) fn strip_trailing_junk(s: &str) -> &str {
    let mut end = s.len();
    while let Some(c) = s.get(..end).and_then(|t| t.chars().next_back()) {
        if !(c.is_whitespace() || is_invisible(c) || is_trailing_junk(fold_lenient(c))) {
            break;
        }
        end -= c.len_utf8();
    }
    s.get(..end).unwrap_or_default()
}

/// The characters lenient matching compares: `s` after trimming and trailing-junk removal,
/// with whitespace, invisible characters and combining marks removed and the rest folded.
pub(crate) fn lenient_chars(s: &str) -> impl Iterator<Item = char> + '_ {
    strip_trailing_junk(trim(s))
        .chars()
        .filter(|&c| !(c.is_whitespace() || is_invisible(c) || is_mark(c)))
        .map(fold_lenient)
}
