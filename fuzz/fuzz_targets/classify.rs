//! `cargo +nightly fuzz run classify fuzz/seeds/classify`
//!
//! Asserts §§10 invariants 1-4 and the lenient definition under every rule set and
//! matching mode (see `tests/common/invariants.rs`), not just "no panic".
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::invariants::classify(data));
