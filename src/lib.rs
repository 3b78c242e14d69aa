//! SMS opt-out keyword handling for number-masking relays, faithful to Twilio Proxy.
//!
//! A relay that masks two people's numbers (ride-hailing, marketplaces, delivery) must honour
//! carrier opt-out keywords without losing real messages. Twilio Proxy does this with a
//! documented rule set: it never forwards STOP and its kin from either participant, forwards
//! opt-in and help words except UNSTOP, raises debugger notice 80901 for what it drops, fires
//! no callbacks for dropped messages, and can defer to the account's STOP-filter flag with
//! custom handling in an intercept hook. This crate reproduces that as a pure core with no
//! I/O, so the host wires its own transport and storage.
//!
//! # Tour
//!
//! **One message, Twilio's defaults.** [`classify`] is total, never panics and never
//! allocates:
//!
//! ```
//! use proxy_optout::{classify, Category, Message, Notice};
//!
//! let d = classify(&Message::sms("  Stop\n"));
//! assert!(d.is_dropped());                                  // never forwarded
//! assert_eq!(d.keyword(), Some("STOP"));
//! assert_eq!(d.notice(), Some(Notice::MessageMatchedStopWord)); // 80901
//! assert!(!d.fires_callbacks());
//! assert_eq!(d.carrier(), Some(Category::OptOut));          // the pair is opted out
//!
//! assert!(classify(&Message::sms("START")).is_forwarded());  // opt-in words get through
//! assert!(classify(&Message::sms("UNSTOP")).is_dropped());   // ...except UNSTOP
//! assert!(classify(&Message::sms("stop at the corner")).is_forwarded());
//! ```
//!
//! **A configured classifier.** [`Classifier::builder`] chooses the rule set, the matching
//! mode and the extensions, validates them once, and returns a `Send + Sync` classifier:
//!
//! ```
//! use proxy_optout::{Classifier, LanguagePack, Matching, Message, RuleSet};
//!
//! let c = Classifier::builder()
//!     .rules(RuleSet::Proxy2025)
//!     .matching(Matching::Lenient)
//!     .language(LanguagePack::Spanish)
//!     .build()?;
//! assert!(c.classify(&Message::sms("STOP 🛑")).is_dropped());
//! assert!(c.classify(&Message::sms("Alto.")).is_dropped());
//! # Ok::<(), proxy_optout::ConfigError>(())
//! ```
//!
//! **The host's policy.** A [`ProxyPolicy`] says whether `ProxyRespectSmsStopFilterFlag` is
//! on, whether STOP filtering is on per number, and is the intercept hook. The hook only ever
//! sees messages that would be forwarded and can only block them:
//!
//! ```
//! use proxy_optout::{Classifier, FixedPolicy, Message, StopFilterFlag, StopFiltering};
//!
//! let flag_on_filter_off = FixedPolicy::new(StopFilterFlag::Respect, StopFiltering::Off);
//! let d = Classifier::default().decide(&Message::sms("STOP"), &flag_on_filter_off);
//! assert!(d.is_forwarded()); // reaches the intercept hook with its category
//! assert_eq!(d.carrier(), None); // and the carrier layer does nothing
//! ```
//!
//! **The relay.** [`RelayCore`] turns one inbound message into one [`Outcome`] in two pure
//! steps: [`RelayCore::plan`] says what it needs to know (at most two ledger states and the
//! intercept hook's verdict), [`Plan::finish`] takes the answers. The outcome is an ordered
//! list of [`Effect`]s the host performs: the ledger change first, then the confirmation, the
//! forward, notices and callbacks. Nothing in the core does I/O, allocates or takes `&mut`.
//!
//! ```
//! use proxy_optout::{Answers, Effect, Inbound, OptState, RelayCore, Settings};
//!
//! let core = RelayCore::new(); // built once, shared by every handler
//! let inbound = Inbound::new("+1RIDER", "+1PROXY", "STOP");
//! let plan = core.plan(&inbound, None, Settings::default())?;
//! let outcome = plan.finish(Answers::new());
//! let mut effects = outcome.effects();
//! assert!(matches!(effects.next(), Some(Effect::Record { state: OptState::OptedOut, .. })));
//! assert!(matches!(effects.next(), Some(Effect::Reply(_)))); // only once the record is durable
//! # Ok::<(), proxy_optout::InputError>(())
//! ```
//!
//! Two thin drivers sit on the same core: [`Relay`] over a synchronous [`OptOutStore`] and
//! [`ProxyPolicy`], and [`AsyncRelay`] over [`AsyncOptOutStore`] and [`AsyncProxyPolicy`]
//! (futures are `Send`; no runtime is assumed). [`MemoryStore`] is a thread-safe store for
//! tests and single-process hosts.
//!
//! ```
//! # #[cfg(feature = "std")] {
//! use proxy_optout::{Inbound, MemoryStore, Notice, Participant, Relay};
//!
//! let mut relay = Relay::new(MemoryStore::new());
//! relay.sessions_mut().open(
//!     "ride-1",
//!     Participant::new("+1RIDER", "+1PROXY")?,
//!     Participant::new("+1DRIVER", "+1PROXY")?,
//! )?;
//! let _ = relay.handle(&Inbound::sms("+1RIDER", "+1PROXY", "STOP"))?; // dropped, recorded, confirmed
//! let out = relay.handle(&Inbound::sms("+1DRIVER", "+1PROXY", "I'm here"))?;
//! assert_eq!(out.notices(), &[Notice::UnsubscribedRecipient]); // 21610
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Section marks (§N) in these docs refer to the behaviour reference, `docs/BEHAVIOUR.md` in
//! the repository.
//!
//! # Features
//!
//! - `std` (default): the thread-safe in-memory opt-out store. Without it the crate is
//!   `no_std` and needs only `alloc`.
//! - `serde`: `Serialize`/`Deserialize` for the small value types, with stable lowercase
//!   names; `Serialize` for [`Decision`] with the fields of the `classify` tool.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod classifier;
mod decision;
mod error;
mod hints;
mod history;
mod identifier;
mod keywords;
mod ledger;
mod matching;
mod message;
mod notice;
mod policy;
mod relay;
mod replies;
mod session;
mod table;

pub use classifier::{classify, classify_bytes, Classifier, ClassifierBuilder};
pub use decision::{Action, Decision, RevocationHint};
pub use error::{ConfigError, ParseError, Utf8Error};
pub use history::{
    AsyncHistoryStore, Change, ChangeSource, HistoryEntry, HistoryQuery, HistoryStore,
    OwnedHistoryQuery,
};
pub use identifier::{validate_identifier, IdentifierError, MAX_IDENTIFIER_BYTES};
pub use keywords::{Category, Keyword, LanguagePack, RuleSet};
#[cfg(feature = "std")]
pub use ledger::MemoryStore;
pub use ledger::{AsyncOptOutStore, LedgerKey, LedgerScope, OptOutStore, OptState, OwnedLedgerKey};
pub use matching::{lenient_form, trim, Matching};
pub use message::{Channel, Message};
pub use notice::{Level, Notice};
pub use policy::{
    AsyncProxyPolicy, FixedPolicy, Intercept, ProxyPolicy, StopFilterFlag, StopFiltering,
    SyncPolicy, TwilioProxy,
};
pub use relay::{
    Answer, Answers, AsyncRelay, CarrierMode, Delivery, Effect, Feedback, FeedbackError,
    FeedbackOutcome, Inbound, InputError, LedgerChange, Outbound, Outcome, Plan, Relay, RelayCore,
    RelayError, Settings, Step, Steps, Withheld,
};
pub use replies::{AutoReplies, DEFAULT_HELP_REPLY, DEFAULT_START_REPLY, DEFAULT_STOP_REPLY};
pub use session::{Participant, Route, SessionError, Sessions};
pub use table::MAX_KEYWORD_BYTES;

/// The README's examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
