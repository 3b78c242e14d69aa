//! The relay's questions, one at a time. [`Steps`] names the next thing it needs to know (a
//! STOP-filtering setting, a ledger state, the intercept hook's verdict, whether a ledger
//! change was stored), takes the answer, and keeps the fail-closed bookkeeping itself, so every
//! driver (sync, async, a host's own over its database) is the same short loop and no rule is
//! written twice.

use crate::decision::Decision;
use crate::history::Change;
use crate::ledger::{LedgerKey, OptState};
use crate::message::{Channel, Message};
use crate::policy::{Intercept, StopFilterFlag, StopFiltering};
use crate::relay::core::{check, other_number, Answers, InputError, Plan, RelayCore, Settings};
use crate::relay::error::{settle, RelayError};
use crate::relay::inbound::Inbound;
use crate::relay::outcome::Outcome;
use crate::session::{Participant, Route};

/// One question [`Steps`] asks. New kinds may be added in minor releases: a driver that meets
/// one it does not know answers [`Answer::Unavailable`], and the relay fails closed.
///
/// # Example
///
/// ```
/// use proxy_optout::{Answer, Inbound, OptState, RelayCore, Step, StopFilterFlag};
/// let core = RelayCore::new();
/// let mut steps = core.steps::<()>(&Inbound::sms("+1A", "+1P", "STOP"), None, StopFilterFlag::Ignore)?;
/// assert_eq!(steps.next(), Some(Step::Filtering("+1P")));
/// # Ok::<(), proxy_optout::InputError>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Is STOP filtering on for this proxy number? (The policy's
    /// [`stop_filtering`](crate::ProxyPolicy::stop_filtering).) Answer
    /// [`Answer::Filtering`].
    Filtering(&'a str),
    /// The latest state of this ledger key. Answer [`Answer::State`].
    State(LedgerKey<'a>),
    /// The intercept hook's verdict on this message and decision. Answer
    /// [`Answer::Intercept`].
    Intercept(Message<'a>, Decision),
    /// Store this ledger change, durably, before anything is sent. Answer
    /// [`Answer::Recorded`].
    Record(LedgerKey<'a>, OptState),
}

/// The answer to the [`Step`] [`Steps::next`] returned. An answer of another kind than the
/// step asked for counts as [`Unavailable`](Answer::Unavailable).
///
/// # Example
///
/// ```
/// use proxy_optout::{Answer, StopFiltering};
/// let a: Answer<std::io::Error> = Answer::Filtering(StopFiltering::On);
/// # let _ = a;
/// ```
#[non_exhaustive]
#[derive(Debug)]
pub enum Answer<E> {
    /// STOP filtering on the number [`Step::Filtering`] named.
    Filtering(StopFiltering),
    /// The state [`Step::State`] asked for, or the store's error (the relay fails closed and
    /// [`Steps::finish`] reports a [`RelayError::Lookup`]).
    State(Result<OptState, E>),
    /// The hook's verdict.
    Intercept(Intercept),
    /// Whether [`Step::Record`]'s change was stored (an error: no confirmation is sent, and
    /// [`Steps::finish`] reports a [`RelayError::Record`]).
    Recorded(Result<(), E>),
    /// The driver cannot answer: filtering counts as on, a state as unknown (no HELP reply,
    /// no forward to that recipient), the hook as blocking, and a change as not stored (the
    /// outcome then lists [`Effect::Record`](crate::Effect::Record) for the host to perform).
    Unavailable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Filtering,
    RecipientFiltering,
    Sender,
    Recipient,
    Intercept,
    Record,
    Done,
}

/// One message's way through the relay, as a loop of questions: ask [`next`](Steps::next),
/// answer with [`answer`](Steps::answer), and when `next` says `None`, [`finish`](Steps::finish).
/// Built by [`RelayCore::steps`]. Allocates nothing; every driver of this crate is this loop.
///
/// # Example
///
/// A driver over a store and a policy of the host's own:
///
/// ```
/// use proxy_optout::{
///     Answer, Inbound, Intercept, MemoryStore, OptOutStore, Participant, RelayCore, Route, Step,
///     StopFilterFlag, StopFiltering,
/// };
///
/// let core = RelayCore::new();
/// let store = MemoryStore::new();
/// let (rider, driver) = (Participant::new("+1R", "+1P")?, Participant::new("+1D", "+1P")?);
/// let route = Route::new("ride-1", &rider, Some(&driver))?;
/// let inbound = Inbound::sms("+1R", "+1P", "on my way");
///
/// let mut steps = core.steps(&inbound, Some(route), StopFilterFlag::Ignore)?;
/// while let Some(step) = steps.next() {
///     let answer = match step {
///         Step::Filtering(_) => Answer::Filtering(StopFiltering::On),
///         Step::State(key) => Answer::State(store.state(key)),
///         Step::Intercept(_, _) => Answer::Intercept(Intercept::Allow),
///         // The change's facts (keyword, text, message id) go into the store's history.
///         Step::Record(_, _) => match steps.change() {
///             Some(change) => Answer::Recorded(store.record_change(&change)),
///             None => Answer::Unavailable,
///         },
///         _ => Answer::Unavailable,
///     };
///     steps.answer(answer);
/// }
/// let outcome = steps.finish()?;
/// assert_eq!(outcome.forwarded().unwrap().to(), "+1D");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
#[derive(Debug)]
pub struct Steps<'a, E> {
    core: &'a RelayCore,
    inbound: Inbound<'a>,
    route: Option<Route<'a>>,
    channel: Channel,
    flag: StopFilterFlag,
    filtering: StopFiltering,
    recipient_filtering: Option<StopFiltering>,
    plan: Option<Plan<'a>>,
    answers: Answers,
    stage: Stage,
    /// The first lookup that failed, reported by `finish`.
    failed: Option<(LedgerKey<'a>, E)>,
    /// The recipient's state could not be read: the hook need not be asked.
    recipient_unknown: bool,
    outcome: Option<Outcome<'a>>,
    record: Option<Result<(), E>>,
}

impl RelayCore {
    /// Starts one message's [`Steps`]: checks it (as [`plan`](RelayCore::plan) does) and
    /// readies the first question. `route` is where the host's sessions say the message goes
    /// (`None`: out of session); `flag` is the account's `ProxyRespectSmsStopFilterFlag`.
    ///
    /// # Errors
    ///
    /// [`InputError`] for a non-canonical identifier or a route that is not the message's.
    ///
    /// ```
    /// use proxy_optout::{Inbound, RelayCore, Step, StopFilterFlag};
    /// let core = RelayCore::new();
    /// let steps = core.steps::<()>(&Inbound::sms("+1A", "+1P", "hi"), None, StopFilterFlag::Ignore)?;
    /// # let _ = steps;
    /// assert!(core.steps::<()>(&Inbound::sms("", "+1P", "hi"), None, StopFilterFlag::Ignore).is_err());
    /// # Ok::<(), proxy_optout::InputError>(())
    /// ```
    #[inline]
    pub fn steps<'a, E>(
        &'a self,
        inbound: &Inbound<'a>,
        route: Option<Route<'a>>,
        flag: StopFilterFlag,
    ) -> Result<Steps<'a, E>, InputError> {
        let channel = check(inbound, route)?;
        Ok(Steps {
            core: self,
            inbound: *inbound,
            route,
            channel,
            flag,
            filtering: StopFiltering::On,
            recipient_filtering: None,
            plan: None,
            answers: Answers::new(),
            stage: Stage::Filtering,
            failed: None,
            recipient_unknown: false,
            outcome: None,
            record: None,
        })
    }
}

impl<'a, E> Steps<'a, E> {
    /// The next question, or `None` when every answer is in. Asking again before answering
    /// gives the same question.
    ///
    /// ```
    /// use proxy_optout::{Answer, Inbound, RelayCore, Step, StopFilterFlag, StopFiltering};
    /// let core = RelayCore::new();
    /// let mut steps = core.steps::<()>(&Inbound::sms("+1A", "+1P", "hello"), None, StopFilterFlag::Ignore)?;
    /// assert_eq!(steps.next(), Some(Step::Filtering("+1P")));
    /// steps.answer(Answer::Filtering(StopFiltering::On));
    /// assert_eq!(steps.next(), None); // out of session: nothing to look up, nothing to record
    /// # Ok::<(), proxy_optout::InputError>(())
    /// ```
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Step<'a>> {
        loop {
            match self.stage {
                Stage::Filtering => return Some(Step::Filtering(self.inbound.to)),
                Stage::RecipientFiltering => match self.recipient_number() {
                    Some(number) => return Some(Step::Filtering(number)),
                    None => self.stage = Stage::Sender,
                },
                Stage::Sender => match self.plan().sender_key() {
                    Some(key) => return Some(Step::State(key)),
                    None => self.stage = Stage::Recipient,
                },
                Stage::Recipient => match self.plan().recipient_key() {
                    Some(key) => return Some(Step::State(key)),
                    None => self.stage = Stage::Intercept,
                },
                Stage::Intercept => match self.plan().intercept() {
                    Some((message, decision)) if !self.recipient_unknown => {
                        return Some(Step::Intercept(message, decision))
                    }
                    _ => self.stage = Stage::Record,
                },
                Stage::Record => match self.pending() {
                    Some((key, state)) => return Some(Step::Record(key, state)),
                    None => self.stage = Stage::Done,
                },
                Stage::Done => return None,
            }
        }
    }

    /// Takes the answer to the question [`next`](Steps::next) returned. An answer given when
    /// nothing was asked is ignored.
    ///
    /// ```
    /// use proxy_optout::{Answer, Inbound, OptState, RelayCore, Step, StopFilterFlag, StopFiltering};
    /// let core = RelayCore::new();
    /// let mut steps = core.steps::<()>(&Inbound::sms("+1A", "+1P", "STOP"), None, StopFilterFlag::Ignore)?;
    /// steps.answer(Answer::Filtering(StopFiltering::On));
    /// assert!(matches!(steps.next(), Some(Step::Record(_, OptState::OptedOut))));
    /// steps.answer(Answer::Recorded(Ok(())));
    /// assert!(steps.finish().unwrap().is_recorded());
    /// # Ok::<(), proxy_optout::InputError>(())
    /// ```
    pub fn answer(&mut self, answer: Answer<E>) {
        if self.next().is_none() {
            return;
        }
        match (self.stage, answer) {
            (Stage::Filtering, answer) => {
                if let Answer::Filtering(f) = answer {
                    self.filtering = f;
                }
                self.stage = Stage::RecipientFiltering;
            }
            (Stage::RecipientFiltering, answer) => {
                self.recipient_filtering = Some(match answer {
                    Answer::Filtering(f) => f,
                    _ => StopFiltering::On,
                });
                self.stage = Stage::Sender;
            }
            (Stage::Sender, answer) => {
                match answer {
                    Answer::State(Ok(state)) => self.answers = self.answers.sender_state(state),
                    Answer::State(Err(e)) => {
                        let key = self.plan().sender_key();
                        self.fail(key, e);
                    }
                    _ => {}
                }
                self.stage = Stage::Recipient;
            }
            (Stage::Recipient, answer) => {
                match answer {
                    Answer::State(Ok(state)) => {
                        self.answers = self.answers.recipient_state(state);
                    }
                    Answer::State(Err(e)) => {
                        self.recipient_unknown = true;
                        let key = self.plan().recipient_key();
                        self.fail(key, e);
                    }
                    _ => self.recipient_unknown = true,
                }
                self.stage = Stage::Intercept;
            }
            (Stage::Intercept, answer) => {
                if let Answer::Intercept(verdict) = answer {
                    self.answers = self.answers.intercept(verdict);
                }
                self.stage = Stage::Record;
            }
            (Stage::Record, answer) => {
                if let Answer::Recorded(result) = answer {
                    self.record = Some(result);
                }
                self.stage = Stage::Done;
            }
            (Stage::Done, _) => {}
        }
    }

    /// The outcome. Questions left unanswered count as [`Answer::Unavailable`].
    ///
    /// # Errors
    ///
    /// [`RelayError::Record`] or [`RelayError::Lookup`] when an answer was the store's error:
    /// the relay failed closed, and the error carries that outcome.
    ///
    /// ```
    /// use proxy_optout::{Inbound, RelayCore, StopFilterFlag};
    /// let core = RelayCore::new();
    /// let steps = core.steps::<()>(&Inbound::sms("+1A", "+1P", "STOP"), None, StopFilterFlag::Ignore)?;
    /// let out = steps.finish().unwrap(); // nothing answered: the host performs the record itself
    /// assert!(!out.is_recorded() && out.ledger().is_some());
    /// # Ok::<(), proxy_optout::InputError>(())
    /// ```
    pub fn finish(mut self) -> Result<Outcome<'a>, RelayError<E>> {
        let outcome = self.outcome_now();
        settle(outcome, self.failed, self.record)
    }

    /// The facts of the ledger change the pending [`Step::Record`] asks to store, for
    /// [`OptOutStore::record_change`](crate::OptOutStore::record_change): the key and state
    /// the step names, what caused it (the keyword, or the platform's verdict when the relay
    /// mirrors it), the keyword, the body as received, the message id and the rule set.
    /// `None` when no record is pending. Allocates nothing.
    ///
    /// ```
    /// use proxy_optout::{Answer, ChangeSource, Inbound, RelayCore, Step, StopFilterFlag, StopFiltering};
    /// let core = RelayCore::new();
    /// let inbound = Inbound::sms("+1A", "+1P", " Stop ").with_message_id("SM1");
    /// let mut steps = core.steps::<()>(&inbound, None, StopFilterFlag::Ignore)?;
    /// assert_eq!(steps.change(), None);
    /// steps.answer(Answer::Filtering(StopFiltering::On));
    /// let Some(Step::Record(key, state)) = steps.next() else { panic!("no record") };
    /// let change = steps.change().unwrap();
    /// assert_eq!((change.key(), change.state()), (key, state));
    /// assert_eq!(change.source(), ChangeSource::Keyword);
    /// assert_eq!(change.keyword(), Some("STOP"));
    /// assert_eq!(change.text(), Some(" Stop "));
    /// assert_eq!(change.message_id(), Some("SM1"));
    /// # Ok::<(), proxy_optout::InputError>(())
    /// ```
    #[must_use]
    pub fn change(&self) -> Option<Change<'a>> {
        if self.stage != Stage::Record {
            return None;
        }
        let state = self.outcome.as_ref()?.ledger()?.state();
        Some(self.plan?.change(state))
    }

    /// The outcome as the answers so far make it, once only the record's is missing (at a
    /// [`Step::Record`], and after): what will be replied, forwarded and noticed if the
    /// record succeeds. `None` before. Allocates nothing.
    ///
    /// ```
    /// use proxy_optout::{Answer, Inbound, RelayCore, Step, StopFilterFlag, StopFiltering};
    /// let core = RelayCore::new();
    /// let mut steps = core.steps::<()>(&Inbound::sms("+1A", "+1P", "STOP"), None, StopFilterFlag::Ignore)?;
    /// assert!(steps.outcome().is_none());
    /// steps.answer(Answer::Filtering(StopFiltering::On));
    /// assert!(matches!(steps.next(), Some(Step::Record(..))));
    /// assert!(steps.outcome().unwrap().reply().is_some());
    /// # Ok::<(), proxy_optout::InputError>(())
    /// ```
    #[must_use]
    pub fn outcome(&self) -> Option<&Outcome<'a>> {
        self.outcome.as_ref()
    }

    fn recipient_number(&self) -> Option<&'a str> {
        let recipient = self
            .route
            .and_then(|r| r.recipient())
            .map(Participant::proxy_identifier);
        other_number(self.inbound.to, recipient)
    }

    /// The plan, made once the settings are known.
    fn plan(&mut self) -> Plan<'a> {
        if let Some(plan) = self.plan {
            return plan;
        }
        let settings = Settings::new(self.flag, self.filtering)
            .with_recipient_filtering(self.recipient_filtering.unwrap_or(self.filtering));
        let plan = self
            .core
            .plan_checked(&self.inbound, self.route, self.channel, settings);
        self.plan = Some(plan);
        plan
    }

    fn outcome_now(&mut self) -> Outcome<'a> {
        if let Some(outcome) = self.outcome.take() {
            return outcome;
        }
        let plan = self.plan();
        plan.finish(self.answers)
    }

    /// The ledger change to store, once every other answer is in.
    fn pending(&mut self) -> Option<(LedgerKey<'a>, OptState)> {
        let outcome = self.outcome_now();
        let change = outcome.ledger().map(|c| (self.plan().sender(), c.state()));
        self.outcome = Some(outcome);
        change
    }

    fn fail(&mut self, key: Option<LedgerKey<'a>>, error: E) {
        if let (None, Some(key)) = (&self.failed, key) {
            self.failed = Some((key, error));
        }
    }
}
