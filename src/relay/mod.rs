//! The relay: one inbound message in, one [`Outcome`] out, saying everything the host must do
//! (`docs/BEHAVIOUR.md` §§1, 4-8: who performs which effect, and in which order).
//!
//! - [`core`]: the pure core, in two steps ([`RelayCore::plan`], [`Plan::finish`]) and the
//!   feedback step; no I/O, no async, no allocation.
//! - [`steps`]: the same two steps as a loop of questions ([`Steps`]), so every driver is
//!   one short loop with the fail-closed bookkeeping kept in one place.
//! - [`outcome`]: what the host performs, as an ordered list of [`Effect`]s.
//! - [`sync`] and [`asynchronous`]: the drivers, thin adapters on the core over a store and a
//!   policy.

pub(crate) mod asynchronous;
pub(crate) mod core;
pub(crate) mod error;
pub(crate) mod feedback;
pub(crate) mod inbound;
pub(crate) mod outcome;
pub(crate) mod steps;
pub(crate) mod sync;

pub use self::asynchronous::AsyncRelay;
pub use self::core::{Answers, CarrierMode, InputError, Plan, RelayCore, Settings};
pub use self::error::{FeedbackError, RelayError};
pub use self::feedback::{Feedback, FeedbackOutcome};
pub use self::inbound::Inbound;
pub use self::outcome::{Delivery, Effect, LedgerChange, Outbound, Outcome, Withheld};
pub use self::steps::{Answer, Step, Steps};
pub use self::sync::Relay;
