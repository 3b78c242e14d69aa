//! The synchronous driver: the core's two steps over an [`OptOutStore`], a [`ProxyPolicy`]
//! and (optionally) the in-memory [`Sessions`].

use crate::classifier::Classifier;
use crate::identifier::IdentifierError;
use crate::ledger::{LedgerScope, OptOutStore};
use crate::policy::{ProxyPolicy, TwilioProxy};
use crate::relay::core::{CarrierMode, RelayCore};
use crate::relay::error::{FeedbackError, RelayError};
use crate::relay::feedback::{Feedback, FeedbackOutcome};
use crate::relay::inbound::Inbound;
use crate::relay::outcome::Outcome;
use crate::relay::steps::{Answer, Step};
use crate::replies::AutoReplies;
use crate::session::{Route, Sessions};

/// The synchronous relay: a [`RelayCore`], the host's policy, an opt-out store and the
/// in-memory sessions. [`handle`](Relay::handle) turns one inbound message into one
/// [`Outcome`], having stored its ledger change; the host performs the rest of its
/// [`effects`](Outcome::effects). Hosts whose sessions live in their own database call
/// [`handle_routed`](Relay::handle_routed) with the [`Route`] they resolved.
///
/// # Example
///
/// ```
/// use proxy_optout::{Inbound, MemoryStore, Notice, Participant, Relay};
///
/// let mut relay = Relay::new(MemoryStore::new());
/// relay.sessions_mut().open(
///     "ride-1",
///     Participant::new("+1RIDER", "+1P1")?,
///     Participant::new("+1DRIVER", "+1P1")?,
/// )?;
///
/// // The rider opts out of +1P1: dropped, recorded, confirmed.
/// let out = relay.handle(&Inbound::sms("+1RIDER", "+1P1", "STOP"))?;
/// assert!(out.decision().is_dropped());
///
/// // The driver writes: the leg to the rider is refused with 21610.
/// let out = relay.handle(&Inbound::sms("+1DRIVER", "+1P1", "I'm here"))?;
/// assert_eq!(out.notices(), &[Notice::UnsubscribedRecipient]);
/// assert!(out.refused().is_some());
///
/// // The rider can still write to the driver.
/// let out = relay.handle(&Inbound::sms("+1RIDER", "+1P1", "coming down"))?;
/// assert_eq!(out.forwarded().unwrap().to(), "+1DRIVER");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Relay<S, P = TwilioProxy> {
    core: RelayCore,
    policy: P,
    store: S,
    sessions: Sessions,
}

impl<S: OptOutStore> Relay<S> {
    /// A relay with Twilio Proxy's defaults around `store`: the default core and policy, no
    /// sessions.
    ///
    /// ```
    /// let relay = proxy_optout::Relay::new(proxy_optout::MemoryStore::new());
    /// assert!(relay.sessions().is_empty());
    /// ```
    pub fn new(store: S) -> Self {
        Relay {
            core: RelayCore::default(),
            policy: TwilioProxy,
            store,
            sessions: Sessions::default(),
        }
    }
}

impl<S: OptOutStore, P: ProxyPolicy> Relay<S, P> {
    /// The same relay with another policy.
    ///
    /// ```
    /// use proxy_optout::{FixedPolicy, MemoryStore, Relay, StopFilterFlag, StopFiltering};
    /// let relay = Relay::new(MemoryStore::new())
    ///     .with_policy(FixedPolicy::new(StopFilterFlag::Respect, StopFiltering::Off));
    /// # let _ = relay;
    /// ```
    pub fn with_policy<Q: ProxyPolicy>(self, policy: Q) -> Relay<S, Q> {
        Relay {
            core: self.core,
            policy,
            store: self.store,
            sessions: self.sessions,
        }
    }

    /// The same relay with another core (classifier, replies, scope, carrier mode).
    ///
    /// ```
    /// use proxy_optout::{CarrierMode, MemoryStore, Relay, RelayCore};
    /// let relay = Relay::new(MemoryStore::new()).with_core(RelayCore::new().with_mode(CarrierMode::Mirror));
    /// assert_eq!(relay.core().mode(), CarrierMode::Mirror);
    /// ```
    #[must_use]
    pub fn with_core(mut self, core: RelayCore) -> Self {
        self.core = core;
        self
    }

    /// The same relay with another classifier (rule set, matching, extensions).
    ///
    /// ```
    /// use proxy_optout::{Classifier, Matching, MemoryStore, Relay};
    /// let c = Classifier::builder().matching(Matching::Lenient).build()?;
    /// let relay = Relay::new(MemoryStore::new()).with_classifier(c);
    /// assert_eq!(relay.classifier().matching(), Matching::Lenient);
    /// # Ok::<(), proxy_optout::ConfigError>(())
    /// ```
    #[must_use]
    pub fn with_classifier(mut self, classifier: Classifier) -> Self {
        self.core = self.core.with_classifier(classifier);
        self
    }

    /// The same relay with other auto-replies.
    ///
    /// ```
    /// use proxy_optout::{AutoReplies, Category, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new())
    ///     .with_replies(AutoReplies::default().with(Category::Help, "Acme support: acme.example"));
    /// # let _ = relay;
    /// ```
    #[must_use]
    pub fn with_replies(mut self, replies: AutoReplies) -> Self {
        self.core = self.core.with_replies(replies);
        self
    }

    /// The same relay in another carrier mode.
    ///
    /// ```
    /// use proxy_optout::{CarrierMode, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new()).with_mode(CarrierMode::Mirror);
    /// assert_eq!(relay.core().mode(), CarrierMode::Mirror);
    /// ```
    #[must_use]
    pub fn with_mode(mut self, mode: CarrierMode) -> Self {
        self.core = self.core.with_mode(mode);
        self
    }

    /// The same relay with another ledger scope (an explicit service-wide scope, say).
    ///
    /// # Errors
    ///
    /// An [`IdentifierError`] when a service id is not canonical.
    ///
    /// ```
    /// use proxy_optout::{LedgerScope, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new()).with_scope(LedgerScope::Service("KS1".into()))?;
    /// # let _ = relay;
    /// # Ok::<(), proxy_optout::IdentifierError>(())
    /// ```
    pub fn with_scope(mut self, scope: LedgerScope) -> Result<Self, IdentifierError> {
        self.core = self.core.with_scope(scope)?;
        Ok(self)
    }

    /// The core.
    ///
    /// ```
    /// let relay = proxy_optout::Relay::new(proxy_optout::MemoryStore::new());
    /// assert_eq!(relay.core().mode(), proxy_optout::CarrierMode::Emulate);
    /// ```
    pub fn core(&self) -> &RelayCore {
        &self.core
    }

    /// The classifier.
    ///
    /// ```
    /// let relay = proxy_optout::Relay::new(proxy_optout::MemoryStore::new());
    /// assert_eq!(relay.classifier().rules(), proxy_optout::RuleSet::Proxy2025);
    /// ```
    pub fn classifier(&self) -> &Classifier {
        self.core.classifier()
    }

    /// The policy.
    ///
    /// ```
    /// let relay = proxy_optout::Relay::new(proxy_optout::MemoryStore::new());
    /// assert_eq!(relay.policy(), &proxy_optout::TwilioProxy);
    /// ```
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The store.
    ///
    /// ```
    /// let relay = proxy_optout::Relay::new(proxy_optout::MemoryStore::new());
    /// assert!(relay.store().is_empty());
    /// ```
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The in-memory sessions.
    ///
    /// ```
    /// let relay = proxy_optout::Relay::new(proxy_optout::MemoryStore::new());
    /// assert_eq!(relay.sessions().len(), 0);
    /// ```
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The in-memory sessions, to open, fill and close them. Hosts that share one relay
    /// between threads keep sessions elsewhere and use [`handle_routed`](Relay::handle_routed).
    ///
    /// ```
    /// use proxy_optout::{MemoryStore, Participant, Relay};
    /// let mut relay = Relay::new(MemoryStore::new());
    /// relay.sessions_mut().open("r", Participant::new("A", "P")?, Participant::new("B", "P")?)?;
    /// # Ok::<(), proxy_optout::SessionError>(())
    /// ```
    pub fn sessions_mut(&mut self) -> &mut Sessions {
        &mut self.sessions
    }

    /// Handles one inbound message routed by the in-memory sessions: see
    /// [`handle_routed`](Relay::handle_routed).
    ///
    /// # Errors
    ///
    /// See [`handle_routed`](Relay::handle_routed).
    ///
    /// ```
    /// use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.handle(&Inbound::sms("A", "P", "hello"))?;
    /// assert!(out.is_out_of_session());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle<'a>(
        &'a self,
        inbound: &Inbound<'a>,
    ) -> Result<Outcome<'a>, RelayError<S::Error>> {
        self.handle_routed(inbound, self.sessions.route(inbound.from, inbound.to))
    }

    /// Handles one inbound message whose route the host resolved (`None`: out of session):
    /// plans it, reads the states the plan asks for, asks the policy's intercept hook if
    /// told to, and stores the ledger change. The returned outcome
    /// [`is_recorded`](Outcome::is_recorded); the host performs its other effects in order.
    ///
    /// # Errors
    ///
    /// [`RelayError::Input`] for a message with a non-canonical identifier or a route that is
    /// not its own. [`RelayError::Record`] or [`RelayError::Lookup`] when the store fails: the
    /// relay failed closed and the error carries that outcome (see [`RelayError`] for what
    /// to retry).
    ///
    /// ```
    /// use proxy_optout::{Inbound, MemoryStore, Participant, Relay, Route};
    /// let relay = Relay::new(MemoryStore::new());
    /// let (a, b) = (Participant::new("A", "P")?, Participant::new("B", "P")?);
    /// let route = Route::new("from-my-db", &a, Some(&b))?;
    /// let out = relay.handle_routed(&Inbound::sms("A", "P", "hi"), Some(route))?;
    /// assert_eq!(out.forwarded().unwrap().to(), "B");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle_routed<'a>(
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
                    Answer::Filtering(self.policy.stop_filtering(Some(number)))
                }
                Step::State(key) => Answer::State(self.store.state(key)),
                Step::Intercept(message, decision) => {
                    Answer::Intercept(self.policy.intercept(&message, &decision))
                }
                Step::Record(key, state) => Answer::Recorded(match steps.change() {
                    Some(change) => self.store.record_change(&change),
                    None => self.store.record(key, state),
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
    /// use proxy_optout::{Feedback, LedgerKey, MemoryStore, OptOutStore, OptState, Relay};
    /// let relay = Relay::new(MemoryStore::new());
    /// let out = relay.feedback(&Feedback::Refused { from: "P", to: "A" })?;
    /// assert!(out.is_recorded());
    /// assert_eq!(relay.store().state(LedgerKey::new("P", "A"))?, OptState::OptedOut);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn feedback<'a>(
        &'a self,
        feedback: &Feedback<'a>,
    ) -> Result<FeedbackOutcome<'a>, FeedbackError<S::Error>> {
        let out = self.core.feedback(feedback)?;
        let recorded = out.change().map(|c| self.store.record_change(&c));
        out.settle(recorded)
    }
}

// The relay is shared between threads as-is: this fails to compile if that is lost.
#[cfg(feature = "std")]
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Relay<crate::MemoryStore>>();
    shared::<RelayCore>();
};
