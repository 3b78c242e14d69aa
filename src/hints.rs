//! Revocation hints (§§3): wording in a forwarded message that may revoke consent.

use crate::decision::RevocationHint;

/// Phrases searched for, as whole words, ASCII case-insensitively; spaces in a phrase match
/// one or more spaces. Longer, more specific phrases come first so that "stop texting" is
/// reported rather than "stop". The single words are the ones the 2025 US rule names; the
/// phrases are common plain-language revocations.
const PHRASES: [&str; 20] = [
    "stop texting",
    "stop messaging",
    "stop contacting",
    "do not text",
    "don't text",
    "dont text",
    "do not contact",
    "don't contact",
    "remove me",
    "take me off",
    "leave me alone",
    "opt me out",
    "opt out",
    "opt-out",
    "optout",
    "unsubscribe",
    "revoke",
    "cancel",
    "quit",
    "stop",
];

/// Single words the rule names that are common in ordinary talk ("the end"): reported only
/// as a last resort, after the phrases above.
const WEAK: [&str; 1] = ["end"];

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// Whether `phrase` occurs in `text` at byte `at` as whole words.
fn phrase_at(text: &[u8], at: usize, phrase: &str) -> Option<()> {
    let mut i = at;
    for part in phrase.as_bytes().split(|&b| b == b' ') {
        if i != at {
            // At least one space between the words of a phrase.
            let spaces = text.get(i..)?.iter().take_while(|&&b| b == b' ').count();
            if spaces == 0 {
                return None;
            }
            i += spaces;
        }
        let end = i + part.len();
        text.get(i..end)?.eq_ignore_ascii_case(part).then_some(())?;
        i = end;
    }
    match text.get(i) {
        Some(&b) if is_word_byte(b) => None,
        _ => Some(()),
    }
}

/// The first revocation phrase in `text`, by the order of the phrase lists.
pub(crate) fn find(text: &str) -> Option<RevocationHint> {
    let bytes = text.as_bytes();
    let mut best: Option<(usize, usize)> = None; // (rank, position)
    let lists = PHRASES.iter().chain(WEAK.iter());
    for (at, _) in bytes.iter().enumerate().filter(|&(at, &b)| {
        b.is_ascii_alphabetic() && (at == 0 || bytes.get(at - 1).is_some_and(|&p| !is_word_byte(p)))
    }) {
        let limit = best.map_or(usize::MAX, |(rank, _)| rank);
        if let Some(rank) = lists
            .clone()
            .take(limit)
            .position(|p| phrase_at(bytes, at, p).is_some())
        {
            best = Some((rank, at));
            if rank == 0 {
                break;
            }
        }
    }
    let (rank, _) = best?;
    PHRASES
        .iter()
        .chain(WEAK.iter())
        .nth(rank)
        .map(|p| RevocationHint::new(p))
}
