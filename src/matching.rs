//! How a body is compared with the keywords (§§3): the matching modes, Unicode
//! `White_Space` trimming, and the lenient folds.

use core::fmt;
use core::str::FromStr;

use crate::error::{parse_named, ParseError};
use crate::keywords::Keyword;
use crate::table::{Table, MAX_KEYWORD_BYTES};

/// How a message body is compared with the keywords (§§3).
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
        parse_named(
            &Matching::ALL,
            Matching::as_str,
            s,
            "matching mode",
            "compatible, lenient",
        )
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
#[inline]
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

/// How many bytes the leading `chunks` (each `BLOCK` long) cover while they are whitespace
/// like `unit`: any mix of ASCII whitespace for a 1-byte unit, or `unit` repeated.
fn run<'a>(chunks: impl Iterator<Item = &'a [u8]>, unit: &[u8]) -> usize {
    let whole = if unit.len() == 1 {
        // The fold (not `all`) lets the compiler vectorize.
        chunks
            .take_while(|c| c.iter().fold(true, |a, &b| a & is_ascii_white_space(b)))
            .count()
    } else {
        // A run of a 2- or 3-byte character is the same block read from either end, since
        // the block length is a multiple of the unit length.
        let block = repeated(unit);
        chunks.take_while(|c| *c == block.as_slice()).count()
    };
    whole * BLOCK
}

/// How many bytes at the front of `rest` are whole blocks of whitespace like `unit`.
fn run_forward(rest: &[u8], unit: &[u8]) -> usize {
    if rest.len() < BLOCK {
        return 0;
    }
    run(rest.chunks_exact(BLOCK), unit)
}

/// How many bytes at the back of `rest` are whole blocks of whitespace like `unit`.
fn run_backward(rest: &[u8], unit: &[u8]) -> usize {
    if rest.len() < BLOCK {
        return 0;
    }
    run(rest.rchunks_exact(BLOCK), unit)
}

/// Whether `bytes` may start with whitespace: ASCII whitespace, or the first two bytes of a
/// non-ASCII White_Space character (C2 85, C2 A0, E1 9A, E2 80, E2 81, E3 80). Checking two
/// bytes keeps text that merely starts with a 2- or 3-byte character (Japanese, "…", "©")
/// off the slow path.
#[inline]
fn may_start_white_space(bytes: &[u8]) -> bool {
    match *bytes {
        [b, ..] if b < 0x80 => is_ascii_white_space(b),
        [0xC2, 0x85 | 0xA0, ..] | [0xE1, 0x9A, ..] | [0xE2, 0x80 | 0x81, ..] | [0xE3, 0x80, ..] => {
            true
        }
        _ => false,
    }
}

/// Whether `bytes` may end with whitespace: ASCII whitespace, or the last two bytes of a
/// non-ASCII White_Space character (C2 85, C2 A0, 9A 80, 80 80..=8A, 80 A8, 80 A9, 80 AF,
/// 81 9F).
#[inline]
fn may_end_white_space(bytes: &[u8]) -> bool {
    match *bytes {
        [.., b] if b < 0x80 => is_ascii_white_space(b),
        [.., 0xC2, 0x85 | 0xA0]
        | [.., 0x9A, 0x80]
        | [.., 0x80, 0x80..=0x8A | 0xA8 | 0xA9 | 0xAF]
        | [.., 0x81, 0x9F] => true,
        _ => false,
    }
}

#[inline]
pub(crate) fn trim_start(s: &str) -> &str {
    // The common case: a body that starts with a visible character.
    if may_start_white_space(s.as_bytes()) {
        trim_start_slow(s)
    } else {
        s
    }
}

#[inline]
fn trim_start_slow(s: &str) -> &str {
    let bytes = s.as_bytes();
    let mut i = 0;
    loop {
        // Short ASCII padding (a space, CRLF) is the usual case: a plain loop.
        while bytes.get(i).is_some_and(|&b| is_ascii_white_space(b)) {
            i += 1;
            if i % BLOCK == 0 {
                i += run_forward(bytes.get(i..).unwrap_or_default(), b" ");
            }
        }
        // A visible ASCII character ends the padding without decoding anything.
        if bytes.get(i).map_or(true, |&b| b < 0x80) {
            break;
        }
        let Some(c) = s.get(i..).and_then(|t| t.chars().next()) else {
            break;
        };
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

#[inline]
pub(crate) fn trim_end(s: &str) -> &str {
    if may_end_white_space(s.as_bytes()) {
        trim_end_slow(s)
    } else {
        s
    }
}

#[inline]
fn trim_end_slow(s: &str) -> &str {
    let bytes = s.as_bytes();
    let mut end = s.len();
    loop {
        while end
            .checked_sub(1)
            .and_then(|i| bytes.get(i))
            .is_some_and(|&b| is_ascii_white_space(b))
        {
            end -= 1;
            if end % BLOCK == 0 {
                end -= run_backward(bytes.get(..end).unwrap_or_default(), b" ");
            }
        }
        if end
            .checked_sub(1)
            .and_then(|i| bytes.get(i))
            .map_or(true, |&b| b < 0x80)
        {
            break;
        }
        let Some(c) = s.get(..end).and_then(|t| t.chars().next_back()) else {
            break;
        };
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
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    matches!(
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

/// Whether `c` belongs to the trailing run lenient matching drops.
fn is_tail(c: char) -> bool {
    c.is_whitespace() || is_invisible(c) || is_trailing_junk(fold_lenient(c))
}

/// The lenient body without its trailing junk: whitespace, invisible characters, punctuation
/// and emoji at the end are removed, repeatedly.
pub(crate) fn strip_trailing_junk(s: &str) -> &str {
    let bytes = s.as_bytes();
    let mut end = s.len();
    while let Some(&b) = end.checked_sub(1).and_then(|i| bytes.get(i)) {
        if b < 0x80 {
            if !(is_ascii_white_space(b) || b.is_ascii_punctuation()) {
                break;
            }
            end -= 1;
            continue;
        }
        match s.get(..end).and_then(|t| t.chars().next_back()) {
            Some(c) if is_tail(c) => end -= c.len_utf8(),
            _ => break,
        }
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

/// The form of `body` that lenient matching compares with the keywords (§§3): trimmed,
/// trailing punctuation and emoji dropped, zero-width, format and bidirectional characters,
/// combining marks and internal whitespace removed, fullwidth forms and Latin letters with
/// diacritics folded. Case is left alone: comparison folds it.
///
/// Useful to log what a lenient classifier saw. Classification itself never builds this
/// string.
///
/// # Example
///
/// ```
/// use proxy_optout::lenient_form;
///
/// assert_eq!(lenient_form("  Opt out!! \u{1F6D1}"), "Optout");
/// assert_eq!(lenient_form("\u{FF33}\u{FF34}\u{FF2F}\u{FF30}"), "STOP");
/// assert_eq!(lenient_form("Arr\u{00EA}t."), "Arret");
/// assert_eq!(lenient_form("S\u{200B}TOP"), "STOP");
/// assert_eq!(lenient_form("stop at the corner"), "stopatthecorner");
/// ```
#[must_use]
pub fn lenient_form(body: &str) -> alloc::string::String {
    lenient_chars(body).collect()
}

/// Lenient matching without allocating, and without looking at the end of an ordinary
/// message. Significant characters are checked against the keys' per-position letter sets
/// as they come, so a message is usually rejected within a character or two. When a
/// character that is not allowed is punctuation or emoji, it is either the start of the
/// trailing run (everything after it is trailing junk too) or the body is no keyword. Only
/// bodies with non-ASCII letters left after folding take the buffered pass.
pub(crate) fn find_lenient<'t>(table: &'t Table, body: &str) -> Option<&'t Keyword> {
    let t = trim(body);
    let bytes = t.as_bytes();
    // Two leading ASCII letters or digits are certainly the first two significant
    // characters; most messages share no keyword's first two letters.
    if let [a, b, ..] = *bytes {
        if a.is_ascii_alphanumeric()
            && b.is_ascii_alphanumeric()
            && !(table.allows(0, a, 0) && table.allows(1, b, a))
            && !table.has_wide()
        {
            return None;
        }
    }
    if too_many_letters(bytes, table.max_chars()) {
        return None;
    }
    let mut ascii = [0u8; MAX_KEYWORD_BYTES];
    // Significant characters seen, and how many of them precede any trailing junk.
    let mut n = 0;
    let mut keep = 0;
    let mut first = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let start = i;
        // The significant character as ASCII (0x80 for one that stays non-ASCII), and the
        // character it folded from, whose junk-ness is only asked for when it matters.
        let (c, ch) = if b < 0x80 {
            i += 1;
            if is_ascii_white_space(b) {
                continue;
            }
            (b, b as char)
        } else {
            let ch = t.get(i..).and_then(|r| r.chars().next())?;
            i += ch.len_utf8();
            if ch.is_whitespace() || is_invisible(ch) || is_mark(ch) {
                continue;
            }
            let folded = fold_lenient(ch);
            match u8::try_from(folded) {
                Ok(c) if c < 0x80 => (c, folded),
                _ if is_trailing_junk(folded) => (0x80, folded),
                // A letter that folds to no ASCII can only be part of a non-ASCII keyword.
                _ if !table.has_wide() && !folds_to_ascii(folded) => return None,
                _ => return find_folded(table, t),
            }
        };
        if !table.allows(n, c, first) {
            if is_trailing_junk(ch) && t.get(start..).is_some_and(|rest| rest.chars().all(is_tail))
            {
                break;
            }
            // Every ASCII key has been ruled out; a non-ASCII keyword might remain.
            return if table.has_wide() {
                find_folded(table, t)
            } else {
                None
            };
        }
        *ascii.get_mut(n)? = c;
        if n == 0 {
            first = c;
        }
        n += 1;
        if c.is_ascii_alphanumeric() || !is_trailing_junk(ch) {
            keep = n;
        }
    }
    table.find_ascii(ascii.get(..keep)?)
}

/// Whether the start of `bytes` already holds more ASCII letters and digits than any
/// keyword has characters. Those are never removed or dropped by lenient folding, so such a
/// body is no keyword. Only the first 48 bytes are counted, in vectorizable blocks, so the
/// check costs the same for any message; it rejects most conversation outright.
#[inline]
fn too_many_letters(bytes: &[u8], max_chars: usize) -> bool {
    let alnum = |b: u8| u8::from((b | 0x20).wrapping_sub(b'a') < 26 || b.wrapping_sub(b'0') < 10);
    // Per-lane counts over up to three 16-byte blocks, summed once at the end: lane-wise
    // adds vectorize, where a horizontal count per block would not on baseline x86-64.
    let mut lanes = [0u8; 16];
    for block in bytes.chunks_exact(16).take(3) {
        for (lane, &b) in lanes.iter_mut().zip(block) {
            *lane += alnum(b);
        }
    }
    lanes.iter().map(|&n| usize::from(n)).sum::<usize>() > max_chars
}

/// The buffered lenient pass: the folded characters written out, then compared in full.
#[cold]
#[inline(never)]
fn find_folded<'t>(table: &'t Table, t: &str) -> Option<&'t Keyword> {
    let mut buf = [0u8; 4 * 3 * MAX_KEYWORD_BYTES];
    let mut len = 0;
    for (chars, c) in lenient_chars(t).enumerate() {
        if chars >= table.max_chars() {
            return None;
        }
        let end = len + c.len_utf8();
        c.encode_utf8(buf.get_mut(len..end)?);
        len = end;
    }
    table.find(core::str::from_utf8(buf.get(..len)?).ok()?)
}
