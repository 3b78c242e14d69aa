//! `cargo +nightly fuzz run relay fuzz/seeds/relay`
//!
//! Drives the relay with an arbitrary sequence of messages and store faults and checks it
//! against a model of the ledger (see `tests/common/invariants.rs`).
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::invariants::relay(data));
