//! `cargo +nightly fuzz run twilio_conversations fuzz/seeds/twilio`
//!
//! The Conversations webhook reader's invariant check (see
//! `crates/proxy-optout-twilio/tests/common/mod.rs`, which `tests/fuzz_checks.rs` runs on
//! stable over seeds and proptest inputs).
#![no_main]

#[path = "../../crates/proxy-optout-twilio/tests/common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::conversations(data));
