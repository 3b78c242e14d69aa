//! A compiled keyword set: the lookup structure the classifier searches. Built at compile
//! time for the built-in rule sets and by the builder for custom configurations; the two
//! share the `const fn`s below, so they cannot disagree.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use crate::keywords::{Keyword, RuleSet};
use crate::matching::folds_to_ascii;

/// The longest keyword, in bytes, a classifier accepts.
///
/// ```
/// assert_eq!(proxy_optout::MAX_KEYWORD_BYTES, 32);
/// ```
pub const MAX_KEYWORD_BYTES: usize = 32;

/// Keys up to this long are compared as one `u128`.
const PACKED: usize = 16;

/// An ASCII keyword form, lower-cased and zero-padded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    lower: [u8; MAX_KEYWORD_BYTES],
    packed: u128,
    len: usize,
    entry: usize,
}

/// A keyword whose case folding is not ASCII, compared with unicase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Wide {
    entry: usize,
    /// The form compared with the (possibly lenient-folded) body.
    text: String,
    /// No body longer than this can equal `text` under full case folding.
    max_bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    entries: Cow<'static, [Keyword]>,
    /// ASCII keys sorted by length, then bytes.
    keys: Cow<'static, [Key]>,
    /// `keys[by_len[n]..by_len[n + 1]]` are the keys of length `n`.
    by_len: [usize; MAX_KEYWORD_BYTES + 2],
    /// Bit `b` of `masks[i]`: some key has the lower-case byte `b` at position `i`.
    masks: [u128; MAX_KEYWORD_BYTES],
    /// Bit `b` of `pairs[a]`: some key starts with the lower-case bytes `a b`. Most messages
    /// are told apart from every key by their first two letters.
    pairs: [u128; 128],
    wide: Cow<'static, [Wide]>,
    max_ascii_len: usize,
    max_bytes: usize,
    max_chars: usize,
}

impl Key {
    /// The (ASCII, lower-case) form this key matches.
    fn text(&self) -> &str {
        self.lower
            .get(..self.len)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl Table {
    pub(crate) fn entries(&self) -> &[Keyword] {
        &self.entries
    }

    pub(crate) fn has_wide(&self) -> bool {
        !self.wide.is_empty()
    }

    /// Whether some ASCII key has the byte `b` (any case) at position `pos`, after the byte
    /// `first` at position 0.
    #[inline]
    pub(crate) fn allows(&self, pos: usize, b: u8, first: u8) -> bool {
        let b = b.to_ascii_lowercase();
        let m = if pos == 1 {
            self.pairs.get(usize::from(first.to_ascii_lowercase()))
        } else {
            self.masks.get(pos)
        };
        let Some(&m) = m else {
            return false;
        };
        // Two 64-bit halves: a variable 128-bit shift costs a multi-instruction sequence.
        let half = if b < 64 { m as u64 } else { (m >> 64) as u64 };
        b < 128 && (half >> (b & 63)) & 1 == 1
    }

    fn entry(&self, i: usize) -> Option<&Keyword> {
        self.entries.get(i)
    }

    /// The keyword that `t` (already trimmed) equals under full case folding.
    #[inline]
    pub(crate) fn find(&self, t: &str) -> Option<&Keyword> {
        if t.len() > self.max_bytes {
            return None;
        }
        if t.is_ascii() {
            self.find_ascii(t.as_bytes())
        } else {
            self.find_unicode(t)
        }
    }

    /// The keyword of length `len` whose packed lower-case form is `packed`.
    #[inline]
    fn find_packed(&self, len: usize, packed: u128) -> Option<&Keyword> {
        let start = *self.by_len.get(len)?;
        let end = *self.by_len.get(len + 1)?;
        let key = self
            .keys
            .get(start..end)?
            .iter()
            .find(|k| k.packed == packed)?;
        self.entry(key.entry)
    }

    /// The keyword the ASCII bytes `b` spell, ignoring ASCII case.
    #[inline]
    pub(crate) fn find_ascii(&self, b: &[u8]) -> Option<&Keyword> {
        let len = b.len();
        if len == 0 || len > self.max_ascii_len {
            return None;
        }
        if len <= PACKED {
            return self.find_packed(len, pack(b));
        }
        let start = *self.by_len.get(len)?;
        let end = *self.by_len.get(len + 1)?;
        let l = lower(b);
        let key = self.keys.get(start..end)?.iter().find(|k| k.lower == l)?;
        self.entry(key.entry)
    }

    // Kept out of line: rare, and large once unicase is inlined into it.
    #[cold]
    #[inline(never)]
    fn find_unicode(&self, t: &str) -> Option<&Keyword> {
        // Only ASCII plus the few characters that fold to ASCII can equal an ASCII keyword,
        // and each such character takes at most 3 bytes per folded letter.
        let ascii = if t.len() <= 3 * self.max_ascii_len && t.chars().all(folds_to_ascii) {
            self.keys
                .iter()
                .find(|k| unicase::eq(t, k.text()))
                .and_then(|k| self.entry(k.entry))
        } else {
            None
        };
        ascii.or_else(|| {
            self.wide
                .iter()
                .filter(|w| t.len() <= w.max_bytes)
                .find(|w| unicase::eq(t, w.text.as_str()))
                .and_then(|w| self.entry(w.entry))
        })
    }

    /// A table of `entries`, each compared in the form `form` gives it (the word itself, or
    /// its lenient fold). ASCII forms become keys; the others are compared with unicase. Two
    /// entries with the same ASCII form keep the first. The caller has validated every word.
    pub(crate) fn build(entries: Vec<Keyword>, form: impl Fn(&'static str) -> String) -> Table {
        let mut keys = Vec::new();
        let mut wide = Vec::new();
        for (entry, k) in entries.iter().enumerate() {
            let text = form(k.word());
            if text.is_ascii() {
                keys.push(key(text.as_bytes(), entry));
            } else {
                let folded = unicase::UniCase::unicode(text.as_str()).to_folded_case();
                wide.push(Wide {
                    entry,
                    max_bytes: 4 * folded.chars().count(),
                    text,
                });
            }
        }
        keys.sort_by(|a, b| key_order(a, b).then(a.entry.cmp(&b.entry)));
        keys.dedup_by(|later, first| key_order(later, first).is_eq());
        let max_ascii_len = keys.iter().map(|k| k.len).max().unwrap_or(0);
        // Each body character folds to one to three characters of at most 4 bytes.
        let max_bytes = wide
            .iter()
            .map(|w| w.max_bytes)
            .fold(3 * max_ascii_len, usize::max);
        let max_chars = wide
            .iter()
            .map(|w| w.max_bytes / 4)
            .fold(max_ascii_len, usize::max);
        Table {
            by_len: offsets(&keys),
            masks: masks(&keys),
            pairs: pairs(&keys),
            entries: Cow::Owned(entries),
            keys: Cow::Owned(keys),
            wide: Cow::Owned(wide),
            max_ascii_len,
            max_bytes,
            max_chars,
        }
    }

    /// The most characters a lenient-folded body may have and still be a keyword.
    pub(crate) fn max_chars(&self) -> usize {
        self.max_chars
    }

    /// The table of a built-in rule set, computed at compile time.
    pub(crate) const fn builtin(rules: RuleSet) -> Table {
        match rules {
            RuleSet::Proxy2020 => Table::from_static(&BUILTIN_2020),
            RuleSet::Proxy2025 => Table::from_static(&BUILTIN_2025),
        }
    }

    const fn from_static<const N: usize>(b: &'static Builtin<N>) -> Table {
        Table {
            entries: Cow::Borrowed(&b.entries),
            keys: Cow::Borrowed(&b.keys),
            by_len: b.by_len,
            masks: b.masks,
            pairs: b.pairs,
            wide: Cow::Borrowed(&[]),
            max_ascii_len: b.max_ascii_len,
            max_bytes: 3 * b.max_ascii_len,
            max_chars: b.max_ascii_len,
        }
    }
}

fn key_order(a: &Key, b: &Key) -> core::cmp::Ordering {
    a.len.cmp(&b.len).then(a.lower.cmp(&b.lower))
}

fn lower(b: &[u8]) -> [u8; MAX_KEYWORD_BYTES] {
    let mut out = [0u8; MAX_KEYWORD_BYTES];
    for (d, s) in out.iter_mut().zip(b) {
        *d = s.to_ascii_lowercase();
    }
    out
}

/// The lower-cased bytes of a body of at most [`PACKED`] bytes, as one integer, the same
/// packing [`key`] uses. Built with shifts: copying into a buffer and loading it back as one
/// wide word stalls on store forwarding and costs several times more.
#[inline]
fn pack(b: &[u8]) -> u128 {
    // Two 64-bit halves, each folded from its last byte down with constant shifts.
    let word = |half: &[u8]| {
        half.iter()
            .rev()
            .fold(0u64, |acc, &c| acc << 8 | u64::from(c.to_ascii_lowercase()))
    };
    let (lo, hi) = b.split_at(b.len().min(8));
    u128::from(word(lo)) | u128::from(word(hi.get(..hi.len().min(8)).unwrap_or_default())) << 64
}

// The `const fn`s below index arrays directly: the built-in tables run them in constant
// evaluation, where an out-of-bounds index is a compile error; at run time the builder only
// passes them keys it has already bounded by `MAX_KEYWORD_BYTES`.

#[allow(clippy::indexing_slicing)]
const fn key(word: &[u8], entry: usize) -> Key {
    let mut lower = [0u8; MAX_KEYWORD_BYTES];
    let mut packed = 0u128;
    let mut i = 0;
    while i < word.len() && i < MAX_KEYWORD_BYTES {
        lower[i] = word[i].to_ascii_lowercase();
        if i < PACKED {
            packed |= (lower[i] as u128) << (8 * i);
        }
        i += 1;
    }
    Key {
        lower,
        packed,
        len: word.len(),
        entry,
    }
}

/// Start offsets per length of `keys`, which are sorted by length.
#[allow(clippy::indexing_slicing)]
const fn offsets(keys: &[Key]) -> [usize; MAX_KEYWORD_BYTES + 2] {
    let mut by_len = [0usize; MAX_KEYWORD_BYTES + 2];
    let mut n = 0;
    while n < by_len.len() {
        let mut i = 0;
        while i < keys.len() && keys[i].len < n {
            i += 1;
        }
        by_len[n] = i;
        n += 1;
    }
    by_len
}

#[allow(clippy::indexing_slicing)]
const fn masks(keys: &[Key]) -> [u128; MAX_KEYWORD_BYTES] {
    let mut masks = [0u128; MAX_KEYWORD_BYTES];
    let mut k = 0;
    while k < keys.len() {
        let mut i = 0;
        while i < keys[k].len && i < MAX_KEYWORD_BYTES {
            masks[i] |= 1u128 << (keys[k].lower[i] & 127);
            i += 1;
        }
        k += 1;
    }
    masks
}

#[allow(clippy::indexing_slicing)]
const fn pairs(keys: &[Key]) -> [u128; 128] {
    let mut pairs = [0u128; 128];
    let mut k = 0;
    while k < keys.len() {
        if keys[k].len >= 2 {
            pairs[(keys[k].lower[0] & 127) as usize] |= 1u128 << (keys[k].lower[1] & 127);
        }
        k += 1;
    }
    pairs
}

#[allow(clippy::indexing_slicing)]
const fn less(a: &Key, b: &Key) -> bool {
    if a.len != b.len {
        return a.len < b.len;
    }
    let mut i = 0;
    while i < MAX_KEYWORD_BYTES {
        if a.lower[i] != b.lower[i] {
            return a.lower[i] < b.lower[i];
        }
        i += 1;
    }
    false
}

/// The compile-time form of a built-in table.
struct Builtin<const N: usize> {
    entries: [Keyword; N],
    keys: [Key; N],
    by_len: [usize; MAX_KEYWORD_BYTES + 2],
    masks: [u128; MAX_KEYWORD_BYTES],
    pairs: [u128; 128],
    max_ascii_len: usize,
}

#[allow(clippy::indexing_slicing)]
const fn builtin<const N: usize>(rules: RuleSet) -> Builtin<N> {
    let mut entries = [Keyword::new("", crate::Category::Help); N];
    let mut n = 0;
    let mut all = RuleSet::builtin_entries();
    while let [(since, k), rest @ ..] = all {
        if (*since as u8) <= (rules as u8) {
            entries[n] = *k;
            n += 1;
        }
        all = rest;
    }
    assert!(n == N, "built-in table size mismatch");
    let mut keys = [key(b"", 0); N];
    let mut max_ascii_len = 0;
    let mut i = 0;
    while i < N {
        let word = entries[i].word().as_bytes();
        assert!(word.is_ascii() && word.len() <= MAX_KEYWORD_BYTES);
        keys[i] = key(word, i);
        if word.len() > max_ascii_len {
            max_ascii_len = word.len();
        }
        // Insertion sort: N is under twenty.
        let mut j = i;
        while j > 0 && less(&keys[j], &keys[j - 1]) {
            let t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
            j -= 1;
        }
        i += 1;
    }
    Builtin {
        by_len: offsets(&keys),
        masks: masks(&keys),
        pairs: pairs(&keys),
        entries,
        keys,
        max_ascii_len,
    }
}

const BUILTIN_2020: Builtin<15> = builtin(RuleSet::Proxy2020);
const BUILTIN_2025: Builtin<17> = builtin(RuleSet::Proxy2025);
