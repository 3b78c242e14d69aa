//! Feedback from the platform into the ledger: a send refused with 21610.

use crate::identifier::{validate_identifier, IdentifierError};
use crate::ledger::OptState;
use crate::notice::Notice;
use crate::relay::core::RelayCore;
use crate::relay::outcome::{Effect, LedgerChange};

/// What the platform told the host after the fact. New kinds may be added in minor releases.
///
/// (The other feedback input, an inbound webhook carrying the platform's `OptOutType`, is an
/// [`Inbound`](crate::Inbound) with [`with_opt_out_type`](crate::Inbound::with_opt_out_type):
/// it goes through [`RelayCore::plan`] like any message.)
///
/// # Example
///
/// ```
/// use proxy_optout::{Feedback, OptState, RelayCore};
/// let core = RelayCore::new();
/// // Twilio refused a send from +1P to +1A with 21610 (HTTP 400, or a status callback).
/// let out = core.feedback(&Feedback::Refused { from: "+1P", to: "+1A" })?;
/// let change = out.ledger().unwrap();
/// assert_eq!((change.key().scope(), change.key().participant()), ("+1P", "+1A"));
/// assert_eq!(change.state(), OptState::OptedOut);
/// # Ok::<(), proxy_optout::IdentifierError>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feedback<'a> {
    /// A send from the proxy identifier `from` to the participant `to` was refused with
    /// 21610 (the pair is opted out on the platform).
    Refused {
        /// The proxy identifier the message was sent from.
        from: &'a str,
        /// The participant it was sent to.
        to: &'a str,
    },
}

/// What one [`Feedback`] implies: the ledger change and its notice.
///
/// # Example
///
/// ```
/// use proxy_optout::{Effect, Feedback, RelayCore};
/// let core = RelayCore::new();
/// let out = core.feedback(&Feedback::Refused { from: "+1P", to: "+1A" })?;
/// let effects: Vec<Effect<'_>> = out.effects().collect();
/// assert!(matches!(effects[0], Effect::Record { .. }));
/// assert!(matches!(effects[1], Effect::Notice(n) if n.code() == 21610));
/// # Ok::<(), proxy_optout::IdentifierError>(())
/// ```
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FeedbackOutcome<'a> {
    pub(crate) ledger: Option<LedgerChange<'a>>,
    pub(crate) recorded: bool,
    pub(crate) notice: Notice,
}

impl<'a> FeedbackOutcome<'a> {
    /// The ledger change.
    ///
    /// ```
    /// use proxy_optout::{Feedback, RelayCore};
    /// let core = RelayCore::new();
    /// assert!(core.feedback(&Feedback::Refused { from: "P", to: "A" })?.ledger().is_some());
    /// # Ok::<(), proxy_optout::IdentifierError>(())
    /// ```
    #[must_use]
    pub fn ledger(&self) -> Option<&LedgerChange<'a>> {
        self.ledger.as_ref()
    }

    /// The ledger change with its facts, for
    /// [`OptOutStore::record_change`](crate::OptOutStore::record_change): source
    /// [`Refusal`](crate::ChangeSource::Refusal).
    ///
    /// ```
    /// use proxy_optout::{ChangeSource, Feedback, RelayCore};
    /// let core = RelayCore::new();
    /// let out = core.feedback(&Feedback::Refused { from: "P", to: "A" })?;
    /// assert_eq!(out.change().unwrap().source(), ChangeSource::Refusal);
    /// # Ok::<(), proxy_optout::IdentifierError>(())
    /// ```
    #[must_use]
    pub fn change(&self) -> Option<crate::history::Change<'_>> {
        self.ledger.as_ref().map(|c| {
            crate::history::Change::new(c.key(), c.state(), crate::history::ChangeSource::Refusal)
        })
    }

    /// Whether a driver already stored the change.
    ///
    /// ```
    /// use proxy_optout::{Feedback, RelayCore};
    /// let core = RelayCore::new();
    /// assert!(!core.feedback(&Feedback::Refused { from: "P", to: "A" })?.is_recorded());
    /// # Ok::<(), proxy_optout::IdentifierError>(())
    /// ```
    #[must_use]
    pub fn is_recorded(&self) -> bool {
        self.recorded
    }

    /// Folds a driver's attempt to store [`ledger`](FeedbackOutcome::ledger) into the result:
    /// `Some(Ok(()))` marks it recorded, `Some(Err(_))` is the error naming the change, `None`
    /// (nothing was tried) leaves it for the host's effects.
    ///
    /// # Errors
    ///
    /// [`FeedbackError::Record`](crate::FeedbackError::Record) when the attempt failed.
    ///
    /// ```
    /// use proxy_optout::{Feedback, RelayCore};
    /// let core = RelayCore::new();
    /// let out = core.feedback(&Feedback::Refused { from: "P", to: "A" })?;
    /// assert!(out.settle::<()>(Some(Ok(()))).unwrap().is_recorded());
    /// let out = core.feedback(&Feedback::Refused { from: "P", to: "A" })?;
    /// assert_eq!(out.settle(Some(Err("down"))).unwrap_err().to_string(),
    ///     "the opt-out store failed to record opted_out for (P, A): down");
    /// # Ok::<(), proxy_optout::IdentifierError>(())
    /// ```
    pub fn settle<E>(
        mut self,
        recorded: Option<Result<(), E>>,
    ) -> Result<Self, crate::relay::error::FeedbackError<E>> {
        match (recorded, &self.ledger) {
            (Some(Err(source)), Some(change)) => Err(crate::relay::error::FeedbackError::Record {
                key: change.key().to_owned(),
                state: change.state(),
                source,
            }),
            (Some(Ok(())), Some(_)) => {
                self.recorded = true;
                Ok(self)
            }
            _ => Ok(self),
        }
    }

    /// The effects, in order: the record (unless a driver stored it), then the notice.
    ///
    /// ```
    /// use proxy_optout::{Feedback, RelayCore};
    /// let core = RelayCore::new();
    /// assert_eq!(core.feedback(&Feedback::Refused { from: "P", to: "A" })?.effects().count(), 2);
    /// # Ok::<(), proxy_optout::IdentifierError>(())
    /// ```
    pub fn effects(&self) -> impl Iterator<Item = Effect<'_>> + '_ {
        let record = match (&self.ledger, self.recorded) {
            (Some(c), false) => Some(Effect::Record {
                key: c.key(),
                state: c.state(),
            }),
            _ => None,
        };
        record
            .into_iter()
            .chain(core::iter::once(Effect::Notice(self.notice)))
    }
}

impl RelayCore {
    /// The feedback step: what a platform report implies for the ledger. Pure, like
    /// [`plan`](RelayCore::plan); the drivers store the change.
    ///
    /// # Errors
    ///
    /// An [`IdentifierError`] naming `from` or `to` when one is not canonical.
    ///
    /// ```
    /// use proxy_optout::{Feedback, RelayCore};
    /// let err = RelayCore::new().feedback(&Feedback::Refused { from: "P", to: "" }).unwrap_err();
    /// assert_eq!(err.to_string(), "to is empty");
    /// ```
    pub fn feedback<'a>(
        &'a self,
        feedback: &Feedback<'a>,
    ) -> Result<FeedbackOutcome<'a>, IdentifierError> {
        match *feedback {
            Feedback::Refused { from, to } => {
                validate_identifier("from", from)?;
                validate_identifier("to", to)?;
                Ok(FeedbackOutcome {
                    ledger: Some(LedgerChange::borrowed(
                        self.key(from, to),
                        OptState::OptedOut,
                    )),
                    recorded: false,
                    notice: Notice::UnsubscribedRecipient,
                })
            }
        }
    }
}
