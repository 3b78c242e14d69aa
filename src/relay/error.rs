//! What the drivers report when the store fails or the input is refused.

use alloc::boxed::Box;

use crate::identifier::IdentifierError;
use crate::ledger::{LedgerKey, OptState, OwnedLedgerKey};
use crate::relay::core::InputError;
use crate::relay::outcome::Outcome;

/// A driver ([`Relay`](crate::Relay), [`AsyncRelay`](crate::AsyncRelay)) could not handle a
/// message completely. For store failures the relay failed closed, and the error carries the
/// [`Outcome`] computed without the failed step.
///
/// What a host does with each (see also the README's "Retries and redelivery"):
///
/// - [`Input`](RelayError::Input) with [`InputError::Identifier`]: the webhook is malformed.
///   Answer 400 and perform nothing; retrying cannot help.
/// - [`Input`](RelayError::Input) with [`InputError::RouteMismatch`]: the host's routing handed
///   the relay another pair's route. That is a bug in the host, not a bad webhook: answer 500
///   and alert, never a 400 the platform would not retry ([`InputError::is_host_bug`]).
/// - [`Record`](RelayError::Record) and [`Lookup`](RelayError::Lookup): the store failed.
///   Either answer 5xx, perform nothing and let the platform redeliver (the whole message is
///   handled again, and nothing was confirmed or forwarded the first time), or perform the
///   carried outcome's effects: it never holds a confirmation of an unstored change nor a
///   forward to a recipient whose state is unknown, and it keeps the forward that did not
///   depend on the failed write. Never do both: that is how a forward gets sent twice.
///
/// # Example
///
/// ```
/// use proxy_optout::{Inbound, LedgerKey, OptOutStore, OptState, Relay, RelayError};
///
/// #[derive(Debug)]
/// struct Down;
/// impl std::fmt::Display for Down {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("database unreachable")
///     }
/// }
/// impl std::error::Error for Down {}
///
/// struct Broken;
/// impl OptOutStore for Broken {
///     type Error = Down;
///     fn record(&self, _: LedgerKey<'_>, _: OptState) -> Result<(), Down> { Err(Down) }
///     fn state(&self, _: LedgerKey<'_>) -> Result<OptState, Down> { Err(Down) }
/// }
///
/// let err = Relay::new(Broken).handle(&Inbound::sms("A", "P", "STOP")).unwrap_err();
/// assert!(matches!(err, RelayError::Record { .. }));
/// assert!(err.is_retryable());
/// assert_eq!(
///     err.to_string(),
///     "the opt-out store failed to record opted_out for (P, A): database unreachable",
/// );
/// let outcome = err.outcome().unwrap();
/// assert!(outcome.decision().is_dropped()); // the keyword is still not forwarded
/// assert!(outcome.reply().is_none()); // and nothing claims the opt-out happened
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RelayError<E> {
    /// The message was refused before anything was decided.
    #[error("the inbound message was refused: {0}")]
    Input(#[from] InputError),
    /// Recording an opt-out or opt-in failed: no reply is sent and the ledger is unchanged.
    #[error("the opt-out store failed to record {state} for {key}: {source}")]
    Record {
        /// The pair whose state was being recorded.
        key: OwnedLedgerKey,
        /// The state being recorded.
        state: OptState,
        /// The store's error.
        #[source]
        source: E,
        /// What the relay decided without the failed step.
        outcome: Box<Outcome<'static>>,
    },
    /// Reading a pair's state failed: no HELP reply to the sender, or no forward to the
    /// recipient ([`Withheld::RecipientStatusUnknown`](crate::Withheld::RecipientStatusUnknown)).
    #[error("the opt-out store could not tell whether {key} opted out: {source}")]
    Lookup {
        /// The pair whose state was asked.
        key: OwnedLedgerKey,
        /// The store's error.
        #[source]
        source: E,
        /// What the relay decided without the failed step.
        outcome: Box<Outcome<'static>>,
    },
}

impl<E> RelayError<E> {
    /// The outcome computed without the failed step (fail closed); `None` for refused input.
    ///
    /// ```
    /// use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let err = Relay::new(MemoryStore::new()).handle(&Inbound::sms("", "P", "hi")).unwrap_err();
    /// assert!(err.outcome().is_none());
    /// ```
    #[must_use]
    pub fn outcome(&self) -> Option<&Outcome<'static>> {
        match self {
            RelayError::Record { outcome, .. } | RelayError::Lookup { outcome, .. } => {
                Some(outcome)
            }
            RelayError::Input(_) => None,
        }
    }

    /// The outcome, by value.
    ///
    /// ```
    /// use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let err = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", " P", "hi")).unwrap_err();
    /// assert!(err.into_outcome().is_none());
    /// ```
    #[must_use]
    pub fn into_outcome(self) -> Option<Outcome<'static>> {
        match self {
            RelayError::Record { outcome, .. } | RelayError::Lookup { outcome, .. } => {
                Some(*outcome)
            }
            RelayError::Input(_) => None,
        }
    }

    /// The store's error, if the store failed.
    ///
    /// ```
    /// use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let err = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "", "hi")).unwrap_err();
    /// assert!(err.store_error().is_none());
    /// ```
    #[must_use]
    pub fn store_error(&self) -> Option<&E> {
        match self {
            RelayError::Record { source, .. } | RelayError::Lookup { source, .. } => Some(source),
            RelayError::Input(_) => None,
        }
    }

    /// Whether handling the same message again may succeed: true for store failures, false
    /// for refused input.
    ///
    /// ```
    /// use proxy_optout::{Inbound, MemoryStore, Relay};
    /// let err = Relay::new(MemoryStore::new()).handle(&Inbound::sms("A", "", "hi")).unwrap_err();
    /// assert!(!err.is_retryable());
    /// ```
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        !matches!(self, RelayError::Input(_))
    }
}

impl<E> FeedbackError<E> {
    /// Whether applying the same feedback again may succeed: true when the store failed,
    /// false for a non-canonical identifier.
    ///
    /// ```
    /// use proxy_optout::{Feedback, MemoryStore, Relay};
    /// let err = Relay::new(MemoryStore::new())
    ///     .feedback(&Feedback::Refused { from: "P", to: "" })
    ///     .unwrap_err();
    /// assert!(!err.is_retryable());
    /// ```
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, FeedbackError::Record { .. })
    }
}

/// Feedback could not be applied. New variants may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout::{Feedback, FeedbackError, MemoryStore, Relay};
/// let err = Relay::new(MemoryStore::new())
///     .feedback(&Feedback::Refused { from: "P", to: "" })
///     .unwrap_err();
/// assert!(matches!(err, FeedbackError::Input(_)));
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError<E> {
    /// An identifier of the feedback is not canonical.
    #[error("the feedback was refused: {0}")]
    Input(#[from] IdentifierError),
    /// The store could not record the change; report the feedback again later.
    #[error("the opt-out store failed to record {state} for {key}: {source}")]
    Record {
        /// The pair.
        key: OwnedLedgerKey,
        /// The state being recorded.
        state: OptState,
        /// The store's error.
        #[source]
        source: E,
    },
}

/// Folds the store's answers into the driver's result: a failed record takes the change and
/// its confirmation out of the outcome; a failed lookup was already failed closed by
/// [`Plan::finish`](crate::Plan::finish).
pub(crate) fn settle<'a, E>(
    mut outcome: Outcome<'a>,
    lookup: Option<(LedgerKey<'_>, E)>,
    record: Option<Result<(), E>>,
) -> Result<Outcome<'a>, RelayError<E>> {
    match (record, &outcome.ledger) {
        (Some(Err(source)), Some(change)) => {
            let (key, state) = (change.key().to_owned(), change.state());
            return Err(RelayError::Record {
                key,
                state,
                source,
                outcome: Box::new(outcome.without_ledger().into_owned()),
            });
        }
        (Some(Ok(())), Some(_)) => outcome.recorded = true,
        _ => {}
    }
    match lookup {
        Some((key, source)) => Err(RelayError::Lookup {
            key: key.to_owned(),
            source,
            outcome: Box::new(outcome.into_owned()),
        }),
        None => Ok(outcome),
    }
}
