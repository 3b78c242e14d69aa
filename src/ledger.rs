//! The carrier layer's opt-out ledger (§§5): opt-out state per (proxy number,
//! participant), kept in storage the host provides.

use alloc::string::String;
use core::fmt;
use core::future::Future;
use core::str::FromStr;

use crate::error::{parse_named, ParseError};
use crate::history::Change;
use crate::identifier::{validate_identifier, IdentifierError};

/// Whether a participant may receive messages from a proxy number (or service).
///
/// # Example
///
/// ```
/// use proxy_optout::OptState;
/// assert_eq!(OptState::default(), OptState::OptedIn);
/// assert_eq!(OptState::OptedOut.as_str(), "opted_out");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum OptState {
    /// Messages may be sent (the state of a pair never seen).
    #[default]
    OptedIn,
    /// The participant sent an opt-out keyword; sends to them fail with 21610.
    OptedOut,
}

impl OptState {
    /// Both states.
    ///
    /// ```
    /// assert_eq!(proxy_optout::OptState::ALL.len(), 2);
    /// ```
    pub const ALL: [OptState; 2] = [OptState::OptedIn, OptState::OptedOut];

    /// The snake-case name: `opted_in` or `opted_out`.
    ///
    /// ```
    /// assert_eq!(proxy_optout::OptState::OptedIn.as_str(), "opted_in");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            OptState::OptedIn => "opted_in",
            OptState::OptedOut => "opted_out",
        }
    }
}

impl fmt::Display for OptState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OptState {
    type Err = ParseError;

    /// Parses `opted_in` or `opted_out` (the names stores write); ASCII case is ignored.
    ///
    /// ```
    /// use proxy_optout::OptState;
    /// assert_eq!("opted_out".parse::<OptState>(), Ok(OptState::OptedOut));
    /// assert!("opted_sideways".parse::<OptState>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_named(
            &OptState::ALL,
            OptState::as_str,
            s,
            "opt-out state",
            "opted_in, opted_out",
        )
    }
}

/// What one opt-out record is keyed by: a scope (the proxy number, or a service for a
/// service-wide ledger) and the participant's own number.
///
/// # Example
///
/// ```
/// use proxy_optout::LedgerKey;
/// let k = LedgerKey::new("+15550000100", "+15551112222");
/// assert_eq!(k.scope(), "+15550000100");
/// assert_eq!(k.participant(), "+15551112222");
/// assert_eq!(k.to_string(), "(+15550000100, +15551112222)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LedgerKey<'a> {
    scope: &'a str,
    participant: &'a str,
}

impl<'a> LedgerKey<'a> {
    /// The key for `participant` within `scope`.
    ///
    /// ```
    /// let k = proxy_optout::LedgerKey::new("P", "A");
    /// assert_eq!(k.scope(), "P");
    /// ```
    #[must_use]
    pub const fn new(scope: &'a str, participant: &'a str) -> Self {
        LedgerKey { scope, participant }
    }

    /// The proxy number (or service identifier) the opt-out applies to.
    ///
    /// ```
    /// assert_eq!(proxy_optout::LedgerKey::new("P", "A").scope(), "P");
    /// ```
    #[must_use]
    pub const fn scope(&self) -> &'a str {
        self.scope
    }

    /// The participant's own number or address.
    ///
    /// ```
    /// assert_eq!(proxy_optout::LedgerKey::new("P", "A").participant(), "A");
    /// ```
    #[must_use]
    pub const fn participant(&self) -> &'a str {
        self.participant
    }

    /// An owned copy.
    ///
    /// ```
    /// let k = proxy_optout::LedgerKey::new("P", "A").to_owned();
    /// assert_eq!(k.as_key().scope(), "P");
    /// ```
    #[must_use]
    pub fn to_owned(&self) -> OwnedLedgerKey {
        OwnedLedgerKey {
            scope: self.scope.into(),
            participant: self.participant.into(),
        }
    }
}

impl fmt::Display for LedgerKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.scope, self.participant)
    }
}

/// An owned [`LedgerKey`], as carried in an [`Outcome`](crate::Outcome) and in errors.
///
/// # Example
///
/// ```
/// let k = proxy_optout::LedgerKey::new("P", "A").to_owned();
/// assert_eq!(k.participant(), "A");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OwnedLedgerKey {
    scope: String,
    participant: String,
}

impl OwnedLedgerKey {
    /// The borrowed form.
    ///
    /// ```
    /// let k = proxy_optout::LedgerKey::new("P", "A").to_owned();
    /// assert_eq!(k.as_key(), proxy_optout::LedgerKey::new("P", "A"));
    /// ```
    #[must_use]
    pub fn as_key(&self) -> LedgerKey<'_> {
        LedgerKey::new(&self.scope, &self.participant)
    }

    /// The scope (proxy number or service).
    ///
    /// ```
    /// assert_eq!(proxy_optout::LedgerKey::new("P", "A").to_owned().scope(), "P");
    /// ```
    #[must_use]
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The participant.
    ///
    /// ```
    /// assert_eq!(proxy_optout::LedgerKey::new("P", "A").to_owned().participant(), "A");
    /// ```
    #[must_use]
    pub fn participant(&self) -> &str {
        &self.participant
    }
}

impl fmt::Display for OwnedLedgerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_key().fmt(f)
    }
}

/// What an opt-out applies to (§§5).
///
/// # Example
///
/// ```
/// use proxy_optout::LedgerScope;
/// assert_eq!(LedgerScope::default(), LedgerScope::ProxyNumber);
/// let s = LedgerScope::Service("KS0123".into());
/// assert_eq!(s.scope_for("+15550000100"), "KS0123");
/// assert_eq!(LedgerScope::ProxyNumber.scope_for("+15550000100"), "+15550000100");
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum LedgerScope {
    /// Twilio Proxy: an opt-out applies to one proxy number, never to the whole pool. A
    /// participant who opts out of P1 can still be reached through P2.
    #[default]
    ProxyNumber,
    /// An explicit extension: an opt-out applies to every number of the named service, the
    /// way Messaging Services scope it.
    Service(String),
}

impl LedgerScope {
    /// A service-wide scope, its id checked.
    ///
    /// # Errors
    ///
    /// An [`IdentifierError`] naming `service id` when `id` is not canonical.
    ///
    /// ```
    /// use proxy_optout::LedgerScope;
    /// assert_eq!(LedgerScope::service("KS1"), Ok(LedgerScope::Service("KS1".into())));
    /// assert!(LedgerScope::service("KS1\n").is_err());
    /// ```
    pub fn service(id: &str) -> Result<LedgerScope, IdentifierError> {
        validate_identifier("service id", id)?;
        Ok(LedgerScope::Service(id.into()))
    }

    /// Checks a service scope's id (the relay does, when it is given the scope).
    ///
    /// # Errors
    ///
    /// An [`IdentifierError`] naming `service id`.
    ///
    /// ```
    /// use proxy_optout::LedgerScope;
    /// assert!(LedgerScope::Service(String::new()).validate().is_err());
    /// assert!(LedgerScope::ProxyNumber.validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<(), IdentifierError> {
        match self {
            LedgerScope::ProxyNumber => Ok(()),
            LedgerScope::Service(id) => validate_identifier("service id", id),
        }
    }

    /// The ledger scope for a message through `proxy_number`.
    ///
    /// ```
    /// assert_eq!(proxy_optout::LedgerScope::ProxyNumber.scope_for("P1"), "P1");
    /// ```
    #[must_use]
    pub fn scope_for<'a>(&'a self, proxy_number: &'a str) -> &'a str {
        match self {
            LedgerScope::ProxyNumber => proxy_number,
            LedgerScope::Service(id) => id,
        }
    }
}

/// Storage for the opt-out ledger, implemented by the host (a database table, a cache) or
/// by the crate's [`MemoryStore`].
///
/// Contract: when [`record`](OptOutStore::record) returns `Ok`, the new state is durable and
/// every later [`state`](OptOutStore::state) for the same key sees it or a later record.
/// The relay only acknowledges an opt-out (with the STOP reply) after `record` succeeded, so
/// with that contract an acknowledged opt-out is never lost or reordered behind a later
/// opt-in. Both methods may fail with the host's error type; the relay then fails closed.
///
/// # Example
///
/// ```
/// use proxy_optout::{LedgerKey, MemoryStore, OptOutStore, OptState};
///
/// let store = MemoryStore::new();
/// let key = LedgerKey::new("+15550000100", "+15551112222");
/// assert_eq!(store.state(key), Ok(OptState::OptedIn));
/// store.record(key, OptState::OptedOut)?;
/// assert_eq!(store.state(key), Ok(OptState::OptedOut));
/// # Ok::<(), core::convert::Infallible>(())
/// ```
pub trait OptOutStore {
    /// The host's storage error.
    type Error;

    /// Records that `key` is now in `state`.
    ///
    /// # Errors
    ///
    /// The host's error when the state could not be stored durably.
    fn record(&self, key: LedgerKey<'_>, state: OptState) -> Result<(), Self::Error>;

    /// The latest recorded state of `key`, [`OptState::OptedIn`] if none was recorded.
    ///
    /// # Errors
    ///
    /// The host's error when the state could not be read.
    fn state(&self, key: LedgerKey<'_>) -> Result<OptState, Self::Error>;

    /// Records `change`'s new state together with its facts (the history entry), in one
    /// transaction: never the state without its entry, or the entry without its state. The
    /// relay's drivers call this rather than [`record`](OptOutStore::record).
    ///
    /// The default records the state alone through `record` and keeps no history, so a
    /// store written before history existed still compiles and behaves as it did; a store
    /// that keeps history overrides this, [`confirmed`](OptOutStore::confirmed), and
    /// implements [`HistoryStore`](crate::HistoryStore).
    ///
    /// # Errors
    ///
    /// The host's error when the change could not be stored durably.
    ///
    /// ```
    /// use proxy_optout::{Change, ChangeSource, LedgerKey, MemoryStore, OptOutStore, OptState};
    /// let store = MemoryStore::new();
    /// let key = LedgerKey::new("P", "A");
    /// store.record_change(&Change::new(key, OptState::OptedOut, ChangeSource::Keyword).with_keyword("STOP"))?;
    /// assert_eq!(store.state(key)?, OptState::OptedOut);
    /// # Ok::<(), core::convert::Infallible>(())
    /// ```
    fn record_change(&self, change: &Change<'_>) -> Result<(), Self::Error> {
        self.record(change.key(), change.state())
    }

    /// Notes that the confirmation reply for `key`'s latest change to `state` was sent at
    /// `unix_ms`: sets that entry's `confirmed_at` if it has none (a second call changes
    /// nothing). The default does nothing (a store without history).
    ///
    /// # Errors
    ///
    /// The host's error when the note could not be stored.
    ///
    /// ```
    /// use proxy_optout::{HistoryQuery, HistoryStore, LedgerKey, MemoryStore, OptOutStore, OptState};
    /// let store = MemoryStore::new();
    /// let key = LedgerKey::new("P", "A");
    /// store.record(key, OptState::OptedOut)?;
    /// store.confirmed(key, OptState::OptedOut, 42)?;
    /// store.confirmed(key, OptState::OptedOut, 43)?;
    /// assert_eq!(store.history(&HistoryQuery::new())?[0].confirmed_at, Some(42));
    /// # Ok::<(), core::convert::Infallible>(())
    /// ```
    fn confirmed(
        &self,
        key: LedgerKey<'_>,
        state: OptState,
        unix_ms: u64,
    ) -> Result<(), Self::Error> {
        let _ = (key, state, unix_ms);
        Ok(())
    }
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        impl<S: OptOutStore + ?Sized> OptOutStore for $ty {
            type Error = S::Error;
            fn record(&self, key: LedgerKey<'_>, state: OptState) -> Result<(), Self::Error> {
                (**self).record(key, state)
            }
            fn state(&self, key: LedgerKey<'_>) -> Result<OptState, Self::Error> {
                (**self).state(key)
            }
            fn record_change(&self, change: &Change<'_>) -> Result<(), Self::Error> {
                (**self).record_change(change)
            }
            fn confirmed(&self, key: LedgerKey<'_>, state: OptState, unix_ms: u64) -> Result<(), Self::Error> {
                (**self).confirmed(key, state, unix_ms)
            }
        }
    )*};
}

forward_store!(&S, alloc::boxed::Box<S>, alloc::sync::Arc<S>);

/// Asynchronous storage for the opt-out ledger: the same contract as [`OptOutStore`], with
/// futures that are `Send` so [`AsyncRelay`](crate::AsyncRelay) can be awaited in a
/// multi-threaded runtime's request handler. No runtime is assumed.
///
/// # Example
///
/// ```
/// use std::future::Future;
/// use proxy_optout::{AsyncOptOutStore, LedgerKey, OptState};
///
/// /// A store over the host's async database client (elided).
/// struct Db;
///
/// impl AsyncOptOutStore for Db {
///     type Error = std::io::Error;
///     fn record(&self, key: LedgerKey<'_>, state: OptState) -> impl Future<Output = Result<(), Self::Error>> + Send {
///         let (scope, who) = (key.scope().to_owned(), key.participant().to_owned());
///         async move {
///             // INSERT INTO opt_outs (scope, participant, state) VALUES ($1, $2, $3)
///             // ON CONFLICT (scope, participant) DO UPDATE SET state = excluded.state
///             let _ = (scope, who, state);
///             Ok(())
///         }
///     }
///     fn state(&self, _key: LedgerKey<'_>) -> impl Future<Output = Result<OptState, Self::Error>> + Send {
///         async { Ok(OptState::OptedIn) }
///     }
/// }
/// # let _ = Db;
/// ```
pub trait AsyncOptOutStore: Sync {
    /// The host's storage error.
    type Error: Send;

    /// Records that `key` is now in `state`; resolves once it is durable.
    fn record(
        &self,
        key: LedgerKey<'_>,
        state: OptState,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The latest recorded state of `key`, [`OptState::OptedIn`] if none was recorded.
    fn state(
        &self,
        key: LedgerKey<'_>,
    ) -> impl Future<Output = Result<OptState, Self::Error>> + Send;

    /// Records `change` with its history entry, atomically (see
    /// [`OptOutStore::record_change`]). The default records the state alone through
    /// `record`.
    ///
    /// ```
    /// use proxy_optout::{AsyncOptOutStore, Change, ChangeSource, LedgerKey, MemoryStore, OptState};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::new();
    /// let change = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Keyword);
    /// AsyncOptOutStore::record_change(&store, &change).await?;
    /// assert_eq!(AsyncOptOutStore::state(&store, change.key()).await?, OptState::OptedOut);
    /// # Ok::<(), core::convert::Infallible>(())
    /// # }).unwrap();
    /// ```
    fn record_change(
        &self,
        change: &Change<'_>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.record(change.key(), change.state())
    }

    /// Notes the confirmation reply as sent (see [`OptOutStore::confirmed`]). The default
    /// does nothing.
    ///
    /// ```
    /// use proxy_optout::{AsyncOptOutStore, LedgerKey, MemoryStore, OptState};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::new();
    /// AsyncOptOutStore::confirmed(&store, LedgerKey::new("P", "A"), OptState::OptedOut, 1).await?;
    /// # Ok::<(), core::convert::Infallible>(())
    /// # }).unwrap();
    /// ```
    fn confirmed(
        &self,
        key: LedgerKey<'_>,
        state: OptState,
        unix_ms: u64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = (key, state, unix_ms);
        core::future::ready(Ok(()))
    }
}

macro_rules! forward_async_store {
    ($($ty:ty),*) => {$(
        impl<S: AsyncOptOutStore + ?Sized + Send> AsyncOptOutStore for $ty {
            type Error = S::Error;
            fn record(&self, key: LedgerKey<'_>, state: OptState) -> impl Future<Output = Result<(), Self::Error>> + Send {
                (**self).record(key, state)
            }
            fn state(&self, key: LedgerKey<'_>) -> impl Future<Output = Result<OptState, Self::Error>> + Send {
                (**self).state(key)
            }
            fn record_change(&self, change: &Change<'_>) -> impl Future<Output = Result<(), Self::Error>> + Send {
                (**self).record_change(change)
            }
            fn confirmed(&self, key: LedgerKey<'_>, state: OptState, unix_ms: u64) -> impl Future<Output = Result<(), Self::Error>> + Send {
                (**self).confirmed(key, state, unix_ms)
            }
        }
    )*};
}

forward_async_store!(&S, alloc::boxed::Box<S>, alloc::sync::Arc<S>);

#[cfg(feature = "std")]
impl AsyncOptOutStore for MemoryStore {
    type Error = core::convert::Infallible;
    fn record(
        &self,
        key: LedgerKey<'_>,
        state: OptState,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        core::future::ready(OptOutStore::record(self, key, state))
    }
    fn state(
        &self,
        key: LedgerKey<'_>,
    ) -> impl Future<Output = Result<OptState, Self::Error>> + Send {
        core::future::ready(OptOutStore::state(self, key))
    }
    fn record_change(
        &self,
        change: &Change<'_>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        core::future::ready(OptOutStore::record_change(self, change))
    }
    fn confirmed(
        &self,
        key: LedgerKey<'_>,
        state: OptState,
        unix_ms: u64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        core::future::ready(OptOutStore::confirmed(self, key, state, unix_ms))
    }
}

#[cfg(feature = "std")]
impl crate::history::AsyncHistoryStore for MemoryStore {
    fn history(
        &self,
        query: &crate::history::HistoryQuery<'_>,
    ) -> impl Future<Output = Result<alloc::vec::Vec<crate::history::HistoryEntry>, Self::Error>> + Send
    {
        core::future::ready(crate::history::HistoryStore::history(self, query))
    }
}

#[cfg(feature = "std")]
pub use memory::MemoryStore;

#[cfg(feature = "std")]
mod memory {
    use alloc::collections::BTreeMap;
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::convert::Infallible;
    use std::sync::{Mutex, MutexGuard, PoisonError};

    use super::{LedgerKey, OptOutStore, OptState};
    use crate::history::{Change, ChangeSource, HistoryEntry, HistoryQuery, HistoryStore};

    #[derive(Debug, Default)]
    struct Inner {
        // scope -> participant -> (state, sequence): nested so lookups borrow `&str` keys.
        // The sequence is that of the key's last history entry.
        states: BTreeMap<String, BTreeMap<String, (OptState, u64)>>,
        // In sequence order; entry `n` has sequence `n + 1`.
        history: Vec<HistoryEntry>,
        sequence: u64,
    }

    fn system_clock() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// A thread-safe in-memory ledger with its history: for tests, examples, and
    /// single-process hosts.
    ///
    /// Every record gets a sequence number from one counter, under one lock, so records
    /// are totally ordered and a state read after a record sees it. Each record appends one
    /// [`HistoryEntry`] under the same lock, timed by the system clock (or the one given to
    /// [`with_clock`](MemoryStore::with_clock)).
    ///
    /// # Example
    ///
    /// ```
    /// use proxy_optout::{LedgerKey, MemoryStore, OptOutStore, OptState};
    ///
    /// let store = MemoryStore::new();
    /// let key = LedgerKey::new("P1", "A");
    /// let first = store.record_sequenced(key, OptState::OptedOut);
    /// let second = store.record_sequenced(key, OptState::OptedIn);
    /// assert!(second > first);
    /// assert_eq!(store.latest(key), Some((OptState::OptedIn, second)));
    /// assert_eq!(store.state(LedgerKey::new("P2", "A")), Ok(OptState::OptedIn));
    /// ```
    #[derive(Debug)]
    pub struct MemoryStore {
        inner: Mutex<Inner>,
        clock: fn() -> u64,
        keep_texts: bool,
    }

    impl Default for MemoryStore {
        fn default() -> Self {
            MemoryStore {
                inner: Mutex::default(),
                clock: system_clock,
                keep_texts: true,
            }
        }
    }

    impl MemoryStore {
        /// An empty store.
        ///
        /// ```
        /// assert!(proxy_optout::MemoryStore::new().is_empty());
        /// ```
        #[must_use]
        pub fn new() -> Self {
            MemoryStore::default()
        }

        /// A store that times its entries with `clock` (Unix milliseconds): for tests that
        /// need known times.
        ///
        /// ```
        /// use proxy_optout::{HistoryQuery, HistoryStore, LedgerKey, MemoryStore, OptOutStore, OptState};
        /// let store = MemoryStore::new().with_clock(|| 1_000);
        /// store.record(LedgerKey::new("P", "A"), OptState::OptedOut)?;
        /// assert_eq!(store.history(&HistoryQuery::new())?[0].recorded_at, 1_000);
        /// # Ok::<(), core::convert::Infallible>(())
        /// ```
        #[must_use]
        pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
            self.clock = clock;
            self
        }

        /// Whether history entries keep the text as received (default: yes). Off, an entry
        /// keeps the keyword and the message id but never the text.
        ///
        /// ```
        /// use proxy_optout::{Change, ChangeSource, HistoryQuery, HistoryStore, LedgerKey, MemoryStore, OptOutStore, OptState};
        /// let store = MemoryStore::new().keep_texts(false);
        /// let change = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Keyword);
        /// store.record_change(&change.with_text("stop it"))?;
        /// assert_eq!(store.history(&HistoryQuery::new())?[0].text, None);
        /// # Ok::<(), core::convert::Infallible>(())
        /// ```
        #[must_use]
        pub fn keep_texts(mut self, keep: bool) -> Self {
            self.keep_texts = keep;
            self
        }

        fn lock(&self) -> MutexGuard<'_, Inner> {
            // Each critical section is a single insert or read, so a panic elsewhere while
            // the lock was held cannot have left the map half-updated.
            self.inner.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// Records `state` for `key` and returns the record's sequence number.
        ///
        /// ```
        /// use proxy_optout::{LedgerKey, MemoryStore, OptState};
        /// let s = MemoryStore::new();
        /// assert_eq!(s.record_sequenced(LedgerKey::new("P", "A"), OptState::OptedOut), 1);
        /// ```
        pub fn record_sequenced(&self, key: LedgerKey<'_>, state: OptState) -> u64 {
            self.record_change_sequenced(&Change::new(key, state, ChangeSource::Unspecified))
        }

        /// Records `change` (state and history entry) and returns its sequence number.
        ///
        /// ```
        /// use proxy_optout::{Change, ChangeSource, LedgerKey, MemoryStore, OptState};
        /// let s = MemoryStore::new();
        /// let c = Change::new(LedgerKey::new("P", "A"), OptState::OptedOut, ChangeSource::Import);
        /// assert_eq!(s.record_change_sequenced(&c), 1);
        /// ```
        pub fn record_change_sequenced(&self, change: &Change<'_>) -> u64 {
            let change = if self.keep_texts {
                *change
            } else {
                change.without_text()
            };
            let now = (self.clock)();
            let mut inner = self.lock();
            inner.sequence += 1;
            let seq = inner.sequence;
            let key = change.key();
            inner
                .states
                .entry(key.scope().into())
                .or_default()
                .insert(key.participant().into(), (change.state(), seq));
            inner.history.push(HistoryEntry::new(seq, &change, now));
            seq
        }

        /// The latest record for `key` and its sequence number, if any.
        ///
        /// ```
        /// use proxy_optout::{LedgerKey, MemoryStore};
        /// assert_eq!(MemoryStore::new().latest(LedgerKey::new("P", "A")), None);
        /// ```
        #[must_use]
        pub fn latest(&self, key: LedgerKey<'_>) -> Option<(OptState, u64)> {
            self.lock()
                .states
                .get(key.scope())?
                .get(key.participant())
                .copied()
        }

        /// How many keys have a record.
        ///
        /// ```
        /// use proxy_optout::{LedgerKey, MemoryStore, OptState};
        /// let s = MemoryStore::new();
        /// s.record_sequenced(LedgerKey::new("P", "A"), OptState::OptedOut);
        /// assert_eq!(s.len(), 1);
        /// ```
        #[must_use]
        pub fn len(&self) -> usize {
            self.lock().states.values().map(BTreeMap::len).sum()
        }

        /// Whether no key has a record.
        ///
        /// ```
        /// assert!(proxy_optout::MemoryStore::new().is_empty());
        /// ```
        #[must_use]
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Every record: (scope, participant, state), in key order.
        ///
        /// ```
        /// use proxy_optout::{LedgerKey, MemoryStore, OptState};
        /// let s = MemoryStore::new();
        /// s.record_sequenced(LedgerKey::new("P", "A"), OptState::OptedOut);
        /// assert_eq!(s.snapshot(), vec![("P".into(), "A".into(), OptState::OptedOut)]);
        /// ```
        #[must_use]
        pub fn snapshot(&self) -> Vec<(String, String, OptState)> {
            self.lock()
                .states
                .iter()
                .flat_map(|(scope, m)| {
                    m.iter()
                        .map(move |(p, (s, _))| (scope.clone(), p.clone(), *s))
                })
                .collect()
        }
    }

    impl OptOutStore for MemoryStore {
        type Error = Infallible;

        fn record(&self, key: LedgerKey<'_>, state: OptState) -> Result<(), Infallible> {
            self.record_sequenced(key, state);
            Ok(())
        }

        fn state(&self, key: LedgerKey<'_>) -> Result<OptState, Infallible> {
            Ok(self.latest(key).map_or(OptState::OptedIn, |(s, _)| s))
        }

        fn record_change(&self, change: &Change<'_>) -> Result<(), Infallible> {
            self.record_change_sequenced(change);
            Ok(())
        }

        fn confirmed(
            &self,
            key: LedgerKey<'_>,
            state: OptState,
            unix_ms: u64,
        ) -> Result<(), Infallible> {
            let mut inner = self.lock();
            let latest = inner
                .states
                .get(key.scope())
                .and_then(|m| m.get(key.participant()))
                .copied();
            if let Some((current, seq)) = latest {
                let entry = usize::try_from(seq - 1)
                    .ok()
                    .and_then(|i| inner.history.get_mut(i));
                if let Some(entry) = entry {
                    if current == state && entry.confirmed_at.is_none() {
                        entry.confirmed_at = Some(unix_ms);
                    }
                }
            }
            Ok(())
        }
    }

    impl HistoryStore for MemoryStore {
        fn history(&self, query: &HistoryQuery<'_>) -> Result<Vec<HistoryEntry>, Infallible> {
            let inner = self.lock();
            // Entry n has sequence n + 1: start right after the cursor.
            let start = usize::try_from(query.get_after()).unwrap_or(usize::MAX);
            let current = |e: &HistoryEntry| {
                inner
                    .states
                    .get(&e.scope)
                    .and_then(|m| m.get(&e.participant))
                    .is_some_and(|&(_, seq)| seq == e.seq)
            };
            Ok(inner
                .history
                .iter()
                .skip(start)
                .filter(|e| query.matches(e) && (!query.is_current_only() || current(e)))
                .take(query.get_limit())
                .cloned()
                .collect())
        }
    }
}
