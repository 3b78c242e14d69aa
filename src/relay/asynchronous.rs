//! The asynchronous driver: the core's two steps over an [`AsyncOptOutStore`] and an
//! [`AsyncProxyPolicy`]. Runtime-agnostic: it only awaits the host's futures.

use crate::identifier::IdentifierError;
use crate::ledger::{AsyncOptOutStore, LedgerScope};
use crate::policy::{AsyncProxyPolicy, TwilioProxy};
use crate::relay::core::{CarrierMode, RelayCore};
use crate::relay::error::{FeedbackError, RelayError};
use crate::relay::feedback::{Feedback, FeedbackOutcome};
use crate::relay::inbound::Inbound;
use crate::relay::outcome::Outcome;
use crate::relay::steps::{Answer, Step};
use crate::session::Route;

/// The asynchronous relay: a [`RelayCore`], an async policy and an async opt-out store. The
/// host resolves the route (its sessions live in its database) and awaits
/// [`handle`](AsyncRelay::handle) straight inside its request handler: the future is `Send`
/// whenever the store's and the policy's are, and nothing blocks.
///
/// # Example
///
/// ```
/// use proxy_optout::{AsyncRelay, Inbound, MemoryStore, Participant, Route};
///
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// let relay = AsyncRelay::new(MemoryStore::new());
/// let (rider, driver) = (Participant::new("+1R", "+1P")?, Participant::new("+1D", "+1P")?);
/// let route = Route::new("ride-1", &rider, Some(&driver))?;
/// let out = block_on(relay.handle(&Inbound::sms("+1R", "+1P", "STOP"), Some(route)))?;
/// assert!(out.decision().is_dropped() && out.is_recorded());
/// let route = Route::new("ride-1", &driver, Some(&rider))?;
/// let out = block_on(relay.handle(&Inbound::sms("+1D", "+1P", "hello?"), Some(route)))?;
/// assert!(out.refused().is_some()); // 21610
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AsyncRelay<S, P = TwilioProxy> {
    core: RelayCore,
    policy: P,
    store: S,
}

impl<S: AsyncOptOutStore> AsyncRelay<S> {
    /// A relay with Twilio Proxy's defaults around `store`.
    ///
    /// ```
    /// let relay = proxy_optout::AsyncRelay::new(proxy_optout::MemoryStore::new());
    /// assert!(relay.store().is_empty());
    /// ```
    pub fn new(store: S) -> Self {
        AsyncRelay {
            core: RelayCore::default(),
            policy: TwilioProxy,
            store,
        }
    }
}

impl<S: AsyncOptOutStore, P: AsyncProxyPolicy> AsyncRelay<S, P> {
    /// The same relay with another policy.
    ///
    /// ```
    /// use proxy_optout::{AsyncRelay, FixedPolicy, MemoryStore, StopFilterFlag, StopFiltering};
    /// let relay = AsyncRelay::new(MemoryStore::new())
    ///     .with_policy(FixedPolicy::new(StopFilterFlag::Respect, StopFiltering::Off));
    /// # let _ = relay;
    /// ```
    pub fn with_policy<Q: AsyncProxyPolicy>(self, policy: Q) -> AsyncRelay<S, Q> {
        AsyncRelay {
            core: self.core,
            policy,
            store: self.store,
        }
    }

    /// The same relay with another core (classifier, replies, scope, carrier mode).
    ///
    /// ```
    /// use proxy_optout::{AsyncRelay, CarrierMode, MemoryStore, RelayCore};
    /// let core = RelayCore::new().with_mode(CarrierMode::Mirror);
    /// assert_eq!(AsyncRelay::new(MemoryStore::new()).with_core(core).core().mode(), CarrierMode::Mirror);
    /// ```
    #[must_use]
    pub fn with_core(mut self, core: RelayCore) -> Self {
        self.core = core;
        self
    }

    /// The same relay in another carrier mode.
    ///
    /// ```
    /// use proxy_optout::{AsyncRelay, CarrierMode, MemoryStore};
    /// let relay = AsyncRelay::new(MemoryStore::new()).with_mode(CarrierMode::Mirror);
    /// assert_eq!(relay.core().mode(), CarrierMode::Mirror);
    /// ```
    #[must_use]
    pub fn with_mode(mut self, mode: CarrierMode) -> Self {
        self.core = self.core.with_mode(mode);
        self
    }

    /// The same relay with another ledger scope.
    ///
    /// # Errors
    ///
    /// An [`IdentifierError`] when a service id is not canonical.
    ///
    /// ```
    /// use proxy_optout::{AsyncRelay, LedgerScope, MemoryStore};
    /// assert!(AsyncRelay::new(MemoryStore::new()).with_scope(LedgerScope::Service("".into())).is_err());
    /// ```
    pub fn with_scope(mut self, scope: LedgerScope) -> Result<Self, IdentifierError> {
        self.core = self.core.with_scope(scope)?;
        Ok(self)
    }

    /// The core.
    ///
    /// ```
    /// let relay = proxy_optout::AsyncRelay::new(proxy_optout::MemoryStore::new());
    /// assert_eq!(relay.core().mode(), proxy_optout::CarrierMode::Emulate);
    /// ```
    pub fn core(&self) -> &RelayCore {
        &self.core
    }

    /// The policy.
    ///
    /// ```
    /// let relay = proxy_optout::AsyncRelay::new(proxy_optout::MemoryStore::new());
    /// assert_eq!(relay.policy(), &proxy_optout::TwilioProxy);
    /// ```
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The store.
    ///
    /// ```
    /// let relay = proxy_optout::AsyncRelay::new(proxy_optout::MemoryStore::new());
    /// assert!(relay.store().is_empty());
    /// ```
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Handles one inbound message whose route the host resolved (`None`: out of session).
    /// The same steps, in the same order, as [`Relay::handle_routed`](crate::Relay::handle_routed),
    /// with every store and policy call awaited.
    ///
    /// # Errors
    ///
    /// As [`Relay::handle_routed`](crate::Relay::handle_routed).
    ///
    /// ```
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let mut f = std::pin::pin!(f);
    /// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    /// use proxy_optout::{AsyncRelay, Inbound, MemoryStore};
    /// let relay = AsyncRelay::new(MemoryStore::new());
    /// let out = block_on(relay.handle(&Inbound::sms("A", "P", "hi"), None))?;
    /// assert!(out.is_out_of_session());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn handle<'a>(
        &'a self,
        inbound: &Inbound<'a>,
        route: Option<Route<'a>>,
    ) -> Result<Outcome<'a>, RelayError<S::Error>> {
        let mut steps = self
            .core
            .steps(inbound, route, self.policy.stop_filter_flag())?;
        while let Some(step) = steps.next() {
            let answer = match step {
                Step::Filtering(number) => {
                    Answer::Filtering(self.policy.stop_filtering(Some(number)).await)
                }
                Step::State(key) => Answer::State(self.store.state(key).await),
                Step::Intercept(message, decision) => {
                    Answer::Intercept(self.policy.intercept(&message, &decision).await)
                }
                Step::Record(key, state) => Answer::Recorded(match steps.change() {
                    Some(change) => self.store.record_change(&change).await,
                    None => self.store.record(key, state).await,
                }),
            };
            steps.answer(answer);
        }
        steps.finish()
    }

    /// Applies platform feedback (a send refused with 21610) to the ledger.
    ///
    /// # Errors
    ///
    /// [`FeedbackError`] for a non-canonical identifier or a failed record.
    ///
    /// ```
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let mut f = std::pin::pin!(f);
    /// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    /// use proxy_optout::{AsyncRelay, Feedback, MemoryStore};
    /// let relay = AsyncRelay::new(MemoryStore::new());
    /// assert!(block_on(relay.feedback(&Feedback::Refused { from: "P", to: "A" }))?.is_recorded());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn feedback<'a>(
        &'a self,
        feedback: &Feedback<'a>,
    ) -> Result<FeedbackOutcome<'a>, FeedbackError<S::Error>> {
        let out = self.core.feedback(feedback)?;
        let recorded = match out.ledger() {
            Some(_) => match out.change() {
                Some(change) => Some(self.store.record_change(&change).await),
                None => None,
            },
            None => None,
        };
        out.settle(recorded)
    }
}
