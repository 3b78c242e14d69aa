//! A compiled keyword set: the lookup structure the classifier searches. Built once, at
//! compile time for the built-in rule sets and by the builder for custom configurations.

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

/// An ASCII keyword, lower-cased and zero-padded so that byte-array order is the words'
/// lexicographic order (shorter prefixes first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    lower: [u8; MAX_KEYWORD_BYTES],
    len: usize,
    entry: usize,
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

/// A keyword whose case folding is not ASCII, compared with unicase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Wide {
    pub(crate) entry: usize,
    /// The form compared with the (possibly lenient-folded) body.
    pub(crate) text: String,
    /// No body longer than this can equal `text` under full case folding.
    pub(crate) max_bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    entries: Cow<'static, [Keyword]>,
    keys: Cow<'static, [Key]>,
    wide: Cow<'static, [Wide]>,
    max_ascii_len: usize,
    max_bytes: usize,
    max_chars: usize,
}

/// Where a lenient match stands after some characters: the range of keys that start with
/// them, and how many there were.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prefix {
    lo: usize,
    hi: usize,
    pos: usize,
}

impl Table {
    pub(crate) fn entries(&self) -> &[Keyword] {
        &self.entries
    }

    pub(crate) fn has_wide(&self) -> bool {
        !self.wide.is_empty()
    }

    /// The most characters a lenient-folded body may have and still be a keyword.
    pub(crate) fn max_chars(&self) -> usize {
        self.max_chars
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

    #[inline]
    fn find_ascii(&self, b: &[u8]) -> Option<&Keyword> {
        if b.is_empty() || b.len() > self.max_ascii_len {
            return None;
        }
        let mut lower = [0u8; MAX_KEYWORD_BYTES];
        for (d, s) in lower.iter_mut().zip(b) {
            *d = s.to_ascii_lowercase();
        }
        let i = self.keys.binary_search_by(|k| k.lower.cmp(&lower)).ok()?;
        // Zero padding makes "stop" and "stop\0" pack alike; the length tells them apart.
        let key = self.keys.get(i).filter(|k| k.len == b.len())?;
        self.entry(key.entry)
    }

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

    pub(crate) fn prefix(&self) -> Prefix {
        Prefix {
            lo: 0,
            hi: self.keys.len(),
            pos: 0,
        }
    }

    /// Narrows `p` to the ASCII keys that continue with `byte`; false when none does.
    #[inline]
    pub(crate) fn narrow(&self, p: &mut Prefix, byte: u8) -> bool {
        let b = byte.to_ascii_lowercase();
        let at = |k: &Key| k.lower.get(p.pos).copied().unwrap_or(0);
        let range = self.keys.get(p.lo..p.hi).unwrap_or_default();
        // Keys in the range share the first `pos` bytes, so they are sorted by the next one.
        let start = range.partition_point(|k| at(k) < b);
        let end = range.partition_point(|k| at(k) <= b);
        p.hi = p.lo + end;
        p.lo += start;
        p.pos += 1;
        start < end
    }

    /// The key the narrowed prefix spells out exactly, if any.
    pub(crate) fn finish(&self, p: &Prefix) -> Option<&Keyword> {
        let key = self.keys.get(p.lo..p.hi)?.iter().find(|k| k.len == p.pos)?;
        self.entry(key.entry)
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
                keys.push(key(&text, entry));
            } else {
                let folded = unicase::UniCase::unicode(text.as_str()).to_folded_case();
                wide.push(Wide {
                    entry,
                    max_bytes: 4 * folded.chars().count(),
                    text,
                });
            }
        }
        keys.sort_by(|a, b| a.lower.cmp(&b.lower).then(a.entry.cmp(&b.entry)));
        keys.dedup_by(|later, first| later.lower == first.lower);
        let max_ascii_len = keys.iter().map(|k| k.len).max().unwrap_or(0);
        let max_bytes = wide
            .iter()
            .map(|w| w.max_bytes)
            .fold(3 * max_ascii_len, usize::max);
        let max_chars = wide
            .iter()
            .map(|w| w.max_bytes / 4)
            .fold(max_ascii_len, usize::max);
        Table {
            entries: Cow::Owned(entries),
            keys: Cow::Owned(keys),
            wide: Cow::Owned(wide),
            max_ascii_len,
            max_bytes,
            max_chars,
        }
    }

    /// The table of a built-in rule set, computed at compile time.
    pub(crate) const fn builtin(rules: RuleSet) -> Table {
        match rules {
            RuleSet::Proxy2020 => Table::from_static(
                &BUILTIN_2020.entries,
                &BUILTIN_2020.keys,
                BUILTIN_2020.max_ascii_len,
            ),
            RuleSet::Proxy2025 => Table::from_static(
                &BUILTIN_2025.entries,
                &BUILTIN_2025.keys,
                BUILTIN_2025.max_ascii_len,
            ),
        }
    }

    const fn from_static(
        entries: &'static [Keyword],
        keys: &'static [Key],
        max_ascii_len: usize,
    ) -> Table {
        Table {
            entries: Cow::Borrowed(entries),
            keys: Cow::Borrowed(keys),
            wide: Cow::Borrowed(&[]),
            max_ascii_len,
            max_bytes: 3 * max_ascii_len,
            max_chars: max_ascii_len,
        }
    }
}

fn key(word: &str, entry: usize) -> Key {
    let mut lower = [0u8; MAX_KEYWORD_BYTES];
    for (d, s) in lower.iter_mut().zip(word.bytes()) {
        *d = s.to_ascii_lowercase();
    }
    Key {
        lower,
        len: word.len(),
        entry,
    }
}

/// The compile-time form of a built-in table. Its functions index arrays directly: they
/// only run in constant evaluation, where an out-of-bounds index is a compile error, not a
/// panic at run time.
struct Builtin<const N: usize> {
    entries: [Keyword; N],
    keys: [Key; N],
    max_ascii_len: usize,
}

#[allow(clippy::indexing_slicing)]
const fn const_key(word: &str, entry: usize) -> Key {
    let b = word.as_bytes();
    assert!(b.len() <= MAX_KEYWORD_BYTES && b.is_ascii());
    let mut lower = [0u8; MAX_KEYWORD_BYTES];
    let mut i = 0;
    while i < b.len() {
        lower[i] = b[i].to_ascii_lowercase();
        i += 1;
    }
    Key {
        lower,
        len: b.len(),
        entry,
    }
}

#[allow(clippy::indexing_slicing)]
const fn const_less(a: &Key, b: &Key) -> bool {
    let mut i = 0;
    while i < MAX_KEYWORD_BYTES {
        if a.lower[i] != b.lower[i] {
            return a.lower[i] < b.lower[i];
        }
        i += 1;
    }
    false
}

#[allow(clippy::indexing_slicing)]
const fn const_builtin<const N: usize>(rules: RuleSet) -> Builtin<N> {
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
    let mut keys = [const_key("", 0); N];
    let mut max_ascii_len = 0;
    let mut i = 0;
    while i < N {
        keys[i] = const_key(entries[i].word(), i);
        if entries[i].word().len() > max_ascii_len {
            max_ascii_len = entries[i].word().len();
        }
        // Insertion sort: N is under twenty.
        let mut j = i;
        while j > 0 && const_less(&keys[j], &keys[j - 1]) {
            let t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
            j -= 1;
        }
        i += 1;
    }
    Builtin {
        entries,
        keys,
        max_ascii_len,
    }
}

const BUILTIN_2020: Builtin<15> = const_builtin(RuleSet::Proxy2020);
const BUILTIN_2025: Builtin<17> = const_builtin(RuleSet::Proxy2025);
