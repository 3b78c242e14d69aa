//! The deterministic benchmark corpus: a fixed-seed generator, committed, so every run and
//! every machine measures the same messages.

#![allow(dead_code)]

/// xorshift64*: tiny, deterministic, good enough to pick templates.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Every keyword of the Proxy and carrier lists (§§2), both rule sets.
pub const KEYWORDS: [&str; 17] = [
    "STOP",
    "REVOKE",
    "OPTOUT",
    "UNSUBSCRIBE",
    "END",
    "CANCEL",
    "QUIT",
    "STOPALL",
    "ARRETT",
    "ARRET",
    "ARRETE",
    "UNSTOP",
    "START",
    "YES",
    "DEBUT",
    "HELP",
    "INFO",
];

/// Whether Proxy drops `keyword` (`proxy-2025`): every keyword but the forwarded opt-in and
/// help words.
pub fn is_dropped(keyword: &str) -> bool {
    !matches!(keyword, "START" | "YES" | "DEBUT" | "HELP" | "INFO")
}

const OPENERS: [&str; 12] = [
    "Hi", "Hey", "Hello", "OK", "Sure", "Thanks", "Great", "Hola", "Bonjour", "Yo", "Morning",
    "Sorry",
];

const PHRASES: [&str; 24] = [
    "I'm outside the blue building",
    "on my way, be there in 5 minutes",
    "can you come down to the lobby?",
    "the gate code is 4821",
    "I'm the white Toyota Camry, plate 7KJX392",
    "running a bit late, traffic on 101",
    "is the package at the front door or the back?",
    "see you at the corner of Main and 3rd",
    "please call me when you arrive",
    "I left it with the concierge",
    "which entrance should I use",
    "stop at the corner please",
    "the order is ready for pickup",
    "my flight lands at 6:45pm",
    "track it here: https://example.com/t/8F3KQ2",
    "can we meet at the cafe instead",
    "ya llegué, estoy afuera",
    "je suis devant la porte",
    "я уже на месте, у подъезда",
    "我已经到了，在门口等你",
    "到着しました。入口で待っています",
    "वह गेट के पास खड़ा है",
    "estou chegando em 2 minutos",
    "ich stehe vor dem Eingang",
];

const CLOSERS: [&str; 10] = [
    "",
    "!",
    " 👍",
    " 🙏",
    ".",
    " thanks!",
    " 😊",
    " - R",
    "?",
    " 🚗💨",
];

/// Assorted case and padding around a keyword.
pub fn dress_keyword(rng: &mut Rng, word: &str) -> String {
    let cased: String = match rng.below(4) {
        0 => word.to_string(),
        1 => word.to_lowercase(),
        2 => {
            let lower = word.to_lowercase();
            let mut c = lower.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
        _ => word
            .chars()
            .map(|c| {
                if rng.below(2) == 0 {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect(),
    };
    let pads = ["", " ", "\n", "\r\n", "  ", "\u{00A0}", "\t", "\u{3000}"];
    format!("{}{}{}", rng.pick(&pads[..4]), cased, rng.pick(&pads))
}

/// One conversational SMS of 20 to 160 characters.
fn conversational(rng: &mut Rng) -> String {
    loop {
        let mut s = String::new();
        s.push_str(rng.pick::<&str>(&OPENERS));
        s.push_str(if rng.below(2) == 0 { ", " } else { "! " });
        s.push_str(rng.pick::<&str>(&PHRASES));
        if rng.below(3) == 0 {
            s.push_str(". ");
            s.push_str(rng.pick::<&str>(&PHRASES));
        }
        s.push_str(rng.pick::<&str>(&CLOSERS));
        let n = s.chars().count();
        if (20..=160).contains(&n) {
            return s;
        }
    }
}

/// The `mixed` corpus: `n` messages, about 90% conversational and 10% keywords.
pub fn mixed(n: usize) -> Vec<String> {
    let mut rng = Rng::new(0x5EED_2026);
    (0..n)
        .map(|_| {
            if rng.below(10) == 0 {
                let word = *rng.pick(&KEYWORDS);
                dress_keyword(&mut rng, word)
            } else {
                conversational(&mut rng)
            }
        })
        .collect()
}

/// The `keywords` corpus: every keyword four times, in assorted case and padding.
pub fn keywords() -> Vec<String> {
    let mut rng = Rng::new(17);
    KEYWORDS
        .iter()
        .flat_map(|w| (0..4).map(move |_| *w))
        .map(|w| dress_keyword(&mut rng, w))
        .collect()
}

/// A 1,600-character concatenated SMS.
pub fn long() -> String {
    let mut rng = Rng::new(1600);
    let mut s = String::new();
    while s.chars().count() < 1600 {
        s.push_str(&conversational(&mut rng));
        s.push(' ');
    }
    s.chars().take(1600).collect()
}
