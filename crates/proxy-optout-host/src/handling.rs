//! One authenticated message, all the way: the backend decides it (claim, route, relay, ledger
//! write), then its effects are performed in order (the auto-reply into the answer or through
//! the sender, the forward through the sender with a 21610 fed back into the ledger, the
//! notices counted and logged), and the answer is stored for redeliveries. Knows nothing of
//! HTTP.
//!
//! Sends are at most once. The claim the backend stores before deciding is the durable
//! record that sends may follow; a send whose fate is unknown (a timeout, a reset, a 5xx, a
//! crash after the claim, a claim taken over from a handler that died) is sent again only
//! after the sender's [`lookup`](crate::Sender::lookup) found no such message.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proxy_optout::{Effect, FeedbackError, InputError, Outbound, Outcome};
use proxy_optout_twilio::{render, ForwardVia, EMPTY};

use crate::ledger::{DecideError, Decided, LedgerError, Routed};
use crate::message::Message;
use crate::observer::{Leg, LegStatus, Report};
use crate::pipeline::Inner;
use crate::policy::OutOfSession;
use crate::routing::RoutingError;
use crate::sender::{Outgoing, SendError, Sent};

/// How a message reached the pipeline.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Delivery {
    /// From the webhook, answered with TwiML: the auto-reply rides in the answer.
    Live,
    /// From the journal: the webhook was answered long ago, so the auto-reply is sent through
    /// the sender. `maybe_sent`: a send of it may have gone out before it was journaled.
    Replay {
        received_at: SystemTime,
        maybe_sent: bool,
    },
}

/// What handling one delivery came to.
#[derive(Debug)]
pub(crate) enum Handled {
    /// Decided and performed: this TwiML is the answer (and is stored for redeliveries).
    Answered(String),
    /// Handled before: the stored answer, nothing performed again.
    Replayed(String),
}

/// Why a delivery was not handled now. Nothing stays claimed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// It can be handled later: journal it (or keep it journaled) and try again.
    Later { maybe_sent: bool, cause: Later },
    /// It can never be handled: answer a refusal.
    Never(Never),
}

/// Why a delivery waits.
#[derive(Debug)]
pub(crate) enum Later {
    /// The database failed (nothing was confirmed or forwarded).
    Database(DecideError),
    /// The host's routing could not answer.
    Routing(RoutingError),
    /// Another request holds the message id now.
    Busy,
    /// A send reached no verdict.
    Send(SendError),
    /// The platform refused a send with 21610 and the ledger could not record it.
    Feedback(FeedbackError<LedgerError>),
}

/// Why a delivery can never be handled.
#[derive(Debug)]
pub(crate) enum Never {
    /// The host's routing returned a route the relay cannot use.
    BadRoute(RoutingError),
    /// The relay refused the message.
    Input(InputError),
}

impl Later {
    /// A short name for metrics.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Later::Database(_) | Later::Routing(_) => "database",
            Later::Busy => "busy",
            Later::Send(_) => "send",
            Later::Feedback(_) => "ledger",
        }
    }
}

impl std::fmt::Display for Later {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Later::Database(DecideError::Unavailable(e)) => {
                write!(f, "the database is unavailable: {e}")
            }
            Later::Database(DecideError::Ledger(e)) => write!(f, "the opt-out ledger failed: {e}"),
            Later::Database(e) => write!(f, "the decision failed: {e:?}"),
            Later::Routing(e) => write!(f, "{e}"),
            Later::Busy => f.write_str("another request is handling this message"),
            Later::Send(e) => write!(f, "a send reached no verdict: {e}"),
            Later::Feedback(e) => write!(f, "a 21610 could not be recorded: {e}"),
        }
    }
}

fn later(maybe_sent: bool, cause: Later) -> Failure {
    Failure::Later { maybe_sent, cause }
}

impl Failure {
    /// The same failure, knowing an earlier send of the message may have gone out.
    fn after_sending(self, sent_before: bool) -> Failure {
        match self {
            Failure::Later { maybe_sent, cause } => Failure::Later {
                maybe_sent: maybe_sent || sent_before,
                cause,
            },
            never => never,
        }
    }
}

/// Handles one authenticated message. Runs in a task of its own (see `Pipeline::inbound`), so
/// a caller that hangs up cannot cut the effects short or strand the claim.
async fn decide(
    app: &Inner,
    message: &Arc<Message>,
    forced: Option<crate::SessionRoute>,
) -> Result<Result<(Outcome<'static>, bool), Handled>, Failure> {
    // A database that does not answer is as good as down: after the timeout the message is
    // journaled. The abandoned call may still claim it; the replay then waits for the claim
    // to go stale and takes it over, asking the provider before it sends.
    let timeout = app.database_timeout();
    let unanswered = || format!("no answer within {timeout:?}");
    // A routing that lives in the ledger's own database runs inside the decision's job (one
    // trip); any other is asked first.
    let route = match (forced, app.routing().colocated()) {
        (Some(route), _) => Routed::Resolved(Some(route)),
        (None, Some(c)) if app.ledger().backend().runs(&c.0) => Routed::Colocated(c.0),
        (None, _) => {
            match tokio::time::timeout(timeout, app.routing().route(&message.from, &message.to))
                .await
            {
                Ok(Ok(route)) => Routed::Resolved(route),
                Ok(Err(e)) if e.is_retryable() => return Err(later(false, Later::Routing(e))),
                Ok(Err(e)) => return Err(Failure::Never(Never::BadRoute(e))),
                Err(_) => {
                    return Err(later(
                        false,
                        Later::Routing(RoutingError::unavailable(unanswered())),
                    ))
                }
            }
        }
    };
    let decided = match tokio::time::timeout(
        timeout,
        app.ledger().backend().decide(
            app.policy()
                .core(&message.to)
                .unwrap_or_else(|| app.core().clone()),
            app.policy().clone(),
            message.clone(),
            route,
        ),
    )
    .await
    {
        Ok(decided) => decided,
        Err(_) => Err(DecideError::Unavailable(LedgerError::Task(unanswered()))),
    };
    let (outcome, resumed) = match decided {
        Ok(Decided::Outcome { outcome, resumed }) => {
            // The hook is asked here, after the database job and before any send: a web
            // call cannot run on the database thread, and its verdict can only withhold.
            (
                crate::policy::intercept(&**app.policy(), message, *outcome).await,
                resumed,
            )
        }
        Ok(Decided::Replay(answer)) => {
            app.metrics().message("replayed");
            tracing::info!(
                message_sid = message.id(),
                "redelivered; answering as before"
            );
            return Ok(Err(Handled::Replayed(answer)));
        }
        Ok(Decided::InProgress) => return Err(later(false, Later::Busy)),
        Err(DecideError::Route(e)) if e.is_retryable() => {
            return Err(later(false, Later::Routing(e)))
        }
        Err(DecideError::Route(e)) => return Err(Failure::Never(Never::BadRoute(e))),
        Err(DecideError::Input(e)) => return Err(Failure::Never(Never::Input(e))),
        Err(e) => return Err(later(false, Later::Database(e))),
    };
    Ok(Ok((outcome, resumed)))
}

pub(crate) async fn handle(
    app: &Inner,
    message: Message,
    delivery: Delivery,
) -> Result<Handled, Failure> {
    let message = Arc::new(message);
    let mut decided = decide(app, &message, None).await?;
    // Out of session, live: the host may answer instead, or open a session for the sender
    // and have the message handled again in it (Proxy's OutOfSessionCallbackUrl).
    let mut answer_instead = None;
    if let (Ok((outcome, _)), Delivery::Live) = (&decided, delivery) {
        if outcome.is_out_of_session() {
            match app.policy().out_of_session(&message).await {
                OutOfSession::Answer(twiml) => answer_instead = Some(twiml),
                OutOfSession::Routed(route) => {
                    // Nothing was performed for it: give the claim back and decide again.
                    if let Some(id) = &message.sid {
                        if let Err(e) = app.ledger().backend().release(id.clone()).await {
                            app.metrics().store_error("release");
                            return Err(later(false, Later::Database(DecideError::Unavailable(e))));
                        }
                    }
                    decided = decide(app, &message, Some(route)).await?;
                }
                _ => {}
            }
        }
    }
    let (outcome, resumed) = match decided {
        Ok(decided) => decided,
        Err(handled) => return Ok(handled),
    };
    // Before sending anything, ask the provider whether an earlier attempt got through: when
    // the claim was taken over from a handler that died, or the journal says so.
    let check = match (resumed, delivery) {
        (true, _) => Some(SystemTime::now() - RESUMED_WINDOW),
        (
            false,
            Delivery::Replay {
                received_at,
                maybe_sent: true,
            },
        ) => Some(received_at - CLOCK_SKEW),
        _ => None,
    };
    match perform(
        app,
        &message,
        &outcome,
        delivery,
        check,
        answer_instead.is_some(),
    )
    .await
    {
        Ok(Performed {
            answer,
            label,
            forward,
            notices,
        }) => {
            let answer = answer_instead.unwrap_or(answer);
            let observed = async {
                if let Some(observer) = app.observer() {
                    observer
                        .handled(Report {
                            message_sid: message.sid.clone(),
                            from: message.from.clone(),
                            to: message.to.clone(),
                            body: message.body.clone(),
                            session: outcome.session().map(str::to_owned),
                            outcome: label,
                            notices,
                            forward,
                            revocation_hint: outcome
                                .decision()
                                .revocation_hint()
                                .map(|h| h.phrase()),
                        })
                        .await;
                }
            };
            let completed = async {
                let Some(id) = &message.sid else { return };
                let (metrics, sid) = (app.shared_metrics(), id.clone());
                app.ledger()
                    .backend()
                    .complete(
                        id.clone(),
                        answer.clone(),
                        Box::new(move |e| {
                            // Everything was performed; only redelivery protection is missing.
                            metrics.store_error("complete");
                            tracing::error!(error = %e, message_sid = sid, "could not store the answer");
                        }),
                    )
                    .await;
            };
            tokio::join!(observed, completed);
            Ok(Handled::Answered(answer))
        }
        // Without a journal the platform's retry is the only second chance: a claim whose
        // sends may have gone out is kept, so the retry waits for it to go stale and asks the
        // provider before sending, instead of sending blind.
        Err(
            failure @ Failure::Later {
                maybe_sent: true, ..
            },
        ) if !app.has_journal() => Err(failure),
        Err(failure) => {
            if let Some(id) = &message.sid {
                if let Err(r) = app.ledger().backend().release(id.clone()).await {
                    app.metrics().store_error("release");
                    tracing::error!(error = %r, message_sid = id, "could not release the claim; its retry waits for it to go stale");
                }
            }
            Err(failure)
        }
    }
}

/// How far back a taken-over claim's sends may lie: its first handler's start is not known.
const RESUMED_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The provider's clock against ours.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// What an outcome is called in metrics and logs.
fn label(outcome: &Outcome<'_>) -> &'static str {
    if outcome.forwarded().is_some() {
        "forwarded"
    } else if outcome.refused().is_some() {
        "refused"
    } else {
        outcome.withheld().map_or("other", |w| w.as_str())
    }
}

fn outgoing(message: &Message, out: &Outbound<'_>, kind: &str) -> Outgoing {
    Outgoing {
        from: out.from().to_owned(),
        to: out.to().to_owned(),
        body: out.body().to_owned(),
        attempt: match &message.sid {
            Some(sid) => format!("{sid}-{kind}"),
            None => format!("{}-{kind}", uuid::Uuid::new_v4().simple()),
        },
    }
}

/// What performing an outcome came to: the answer, and what the observer is told.
struct Performed {
    answer: String,
    label: &'static str,
    forward: Option<Leg>,
    notices: Vec<u32>,
}

fn leg(out: &Outbound<'_>, sid: Option<String>, status: LegStatus) -> Leg {
    Leg {
        from: out.from().to_owned(),
        to: out.to().to_owned(),
        body: out.body().to_owned(),
        sid,
        status,
    }
}

/// Performs a decided outcome's effects in order and renders the answer.
async fn perform(
    app: &Inner,
    message: &Message,
    outcome: &Outcome<'_>,
    delivery: Delivery,
    check: Option<SystemTime>,
    answered_by_host: bool,
) -> Result<Performed, Failure> {
    let sid = message.id();
    let session = outcome.session().unwrap_or("");
    let metrics = app.metrics();
    if let (true, Some(category)) = (
        outcome.decision().is_dropped(),
        outcome.decision().category(),
    ) {
        metrics.keyword_drop(category.as_str());
    }
    let replay = matches!(delivery, Delivery::Replay { .. });
    // The auto-reply rides in the TwiML answer only when it is the only message: when a
    // forward follows it, TwiML would deliver it after the forward the REST API already sent,
    // so both go through the sender, the reply first (the documented effect order).
    let forwards = outcome.forwarded().is_some();
    // The host's own answer (out of session) leaves no room for the reply either.
    let reply_via_sender = replay || forwards || answered_by_host;
    let mut replied = false;
    let mut label = label(outcome);
    // Once a send of this message was tried, a later failure follows a send that may have
    // gone out: the journal must know, so the replay asks before sending.
    let mut tried = false;
    let mut forward = None;
    let mut notices = Vec::new();
    for effect in outcome.effects() {
        match effect {
            // Stored by the backend, durably, before anything below.
            Effect::Record { key, state } => {
                tracing::debug!(message_sid = sid, %key, %state, "ledger updated");
            }
            // Alone and live: given back as TwiML in the answer. Before a forward, or replayed
            // (the answer went long ago): through the sender.
            Effect::Reply(reply) if reply_via_sender => {
                let out = outgoing(message, reply, "reply");
                let delivered = deliver(app, &out, check).await;
                tried = true;
                replied = true;
                match delivered? {
                    Ok(_) => {
                        confirmed(app, outcome);
                        tracing::debug!(message_sid = sid, to = reply.to(), "auto-reply sent");
                    }
                    Err(verdict) => {
                        tracing::warn!(message_sid = sid, to = reply.to(), %verdict, "the platform refused the auto-reply");
                    }
                }
            }
            Effect::Reply(reply) => {
                // Handed to Twilio in this webhook's answer, which follows; a dropped
                // keyword's record carried the time already.
                if crate::message::confirmed_later(outcome, replay) {
                    confirmed(app, outcome);
                }
                tracing::debug!(
                    message_sid = sid,
                    to = reply.to(),
                    "auto-reply in the answer"
                );
            }
            Effect::Forward(out) => {
                let sending = outgoing(message, out, "forward");
                let delivered = deliver(app, &sending, check)
                    .await
                    .map_err(|f| f.after_sending(tried));
                tried = true;
                match delivered? {
                    Ok(sent) => {
                        forward = Some(leg(out, sent.clone(), LegStatus::Accepted));
                        tracing::debug!(
                            message_sid = sid,
                            session,
                            to = out.to(),
                            sent_sid = sent.as_deref(),
                            "forwarded"
                        );
                    }
                    Err(verdict) if verdict.is_unsubscribed() => {
                        forward = Some(leg(out, None, verdict.status()));
                        label = "refused";
                        metrics.refusal("rest");
                        tracing::info!(
                            message_sid = sid,
                            session,
                            to = out.to(),
                            "the platform refused the forward with 21610; recording the opt-out"
                        );
                        app.ledger()
                            .backend()
                            .refused(
                                app.core().clone(),
                                out.from().to_owned(),
                                out.to().to_owned(),
                            )
                            .await
                            .map_err(|e| later(tried, Later::Feedback(e)))?;
                    }
                    Err(verdict) => {
                        forward = Some(leg(out, None, verdict.status()));
                        label = "send_refused";
                        tracing::warn!(message_sid = sid, session, to = out.to(), %verdict, "the platform refused the forward");
                    }
                }
            }
            Effect::Refuse(out) => {
                forward = Some(leg(
                    out,
                    None,
                    LegStatus::Refused {
                        code: proxy_optout_twilio::UNSUBSCRIBED_RECIPIENT,
                    },
                ));
                metrics.refusal("ledger");
                tracing::debug!(
                    message_sid = sid,
                    session,
                    to = out.to(),
                    "not forwarded: the recipient opted out of this number (21610)"
                );
            }
            Effect::Notice(n) => {
                notices.push(n.code());
                metrics.notice(match n.code() {
                    80901 => "80901",
                    80909 => "80909",
                    21610 => "21610",
                    _ => "other",
                });
                tracing::debug!(
                    message_sid = sid,
                    session,
                    code = n.code(),
                    notice = n.title(),
                    "notice"
                );
            }
            _ => {}
        }
    }
    metrics.message(label);
    // One line per message at info: who and what happened, never the text.
    tracing::info!(
        message_sid = sid,
        session,
        outcome = label,
        keyword = outcome.decision().keyword(),
        ledger = outcome.ledger().map(|c| c.state().as_str()),
        replayed = replay,
        "message handled"
    );
    let answer = if replied || replay {
        EMPTY.to_owned()
    } else {
        render(outcome, ForwardVia::Rest)
    };
    Ok(Performed {
        answer,
        label,
        forward,
        notices,
    })
}

/// Notes a STOP or START confirmation as sent, in the history entry of the change it
/// confirms. Off the answer's path: the note is evidence, not a condition of the answer, and a
/// failure to write it is logged.
fn confirmed(app: &Inner, outcome: &Outcome<'_>) {
    let Some(change) = outcome.ledger() else {
        return;
    };
    let (ledger, state, at) = (
        app.ledger().clone(),
        change.state(),
        crate::message::now_ms(),
    );
    let (scope, participant) = (
        change.key().scope().to_owned(),
        change.key().participant().to_owned(),
    );
    tokio::spawn(async move {
        if let Err(e) = ledger.confirmed(&scope, &participant, state, at).await {
            tracing::warn!(error = %e, %scope, %participant, "could not note the confirmation as sent");
        }
    });
}

/// A provider's refusal of a send: the verdict, or a client error that retrying cannot fix.
#[derive(Debug)]
enum Refusal {
    Code(u32),
    Status(u16),
}

impl Refusal {
    fn status(&self) -> LegStatus {
        match *self {
            Refusal::Code(code) => LegStatus::Refused { code },
            Refusal::Status(status) => LegStatus::Rejected { status },
        }
    }

    fn is_unsubscribed(&self) -> bool {
        matches!(self, Refusal::Code(code) if *code == proxy_optout_twilio::UNSUBSCRIBED_RECIPIENT)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Code(c) => write!(f, "error {c}"),
            Refusal::Status(s) => write!(f, "HTTP {s}"),
        }
    }
}

/// Sends `out` at most once. `check`: an earlier attempt may have gone out, at or after this
/// time, so ask the provider first. A send that provably never left is tried again freely; one
/// whose fate is unknown only after the provider says it has no such message. `Ok(Ok(sid))`:
/// the provider has it; `Ok(Err(refusal))`: it refused; `Err`: no verdict, try later.
async fn deliver(
    app: &Inner,
    out: &Outgoing,
    check: Option<SystemTime>,
) -> Result<Result<Option<String>, Refusal>, Failure> {
    let sender = app.sender();
    let mut since = check;
    let mut last = None;
    for attempt in 0..app.send_attempts() {
        if attempt > 0 {
            // 100 ms, 200 ms, 400 ms…: a brief outage passes, and the provider's list has a
            // moment to show a message it just accepted.
            tokio::time::sleep(Duration::from_millis(100 << (attempt - 1).min(5))).await;
        }
        if let Some(t) = since {
            match sender.lookup(out, t).await {
                Ok(Some(sid)) => {
                    app.metrics().send_found();
                    tracing::info!(attempt = %out.attempt, sid = %sid, "an earlier attempt got through; not sending again");
                    return Ok(Ok(Some(sid)));
                }
                Ok(None) => {}
                Err(e) => {
                    // Cannot tell: sending could text the person twice.
                    tracing::warn!(attempt = %out.attempt, error = %e, "could not ask the provider whether an earlier attempt got through");
                    last = Some(e);
                    continue;
                }
            }
        }
        let started = SystemTime::now();
        match sender.send(out).await {
            Ok(Sent::Accepted { sid }) => return Ok(Ok(sid)),
            Ok(Sent::Refused { code }) => return Ok(Err(Refusal::Code(code))),
            Err(SendError::Rejected { status }) => return Ok(Err(Refusal::Status(status))),
            Err(e) => {
                app.metrics().send_error(sender.name());
                tracing::warn!(attempt = %out.attempt, error = %e, "send reached no verdict");
                if e.may_have_been_sent() {
                    since =
                        Some(since.map_or(started - CLOCK_SKEW, |t| t.min(started - CLOCK_SKEW)));
                }
                last = Some(e);
            }
        }
    }
    let maybe_sent = since.is_some();
    Err(later(
        maybe_sent,
        Later::Send(last.unwrap_or(SendError::Unknown {
            reason: "no attempt was made".into(),
        })),
    ))
}

/// Records a 21610 a status callback reported.
pub(crate) async fn refused_later(
    app: &Inner,
    from: &str,
    to: &str,
) -> Result<(), FeedbackError<LedgerError>> {
    app.metrics().refusal("status_callback");
    app.ledger()
        .backend()
        .refused(app.core().clone(), from.to_owned(), to.to_owned())
        .await
}

/// Why a send the host asked for ([`Pipeline::send`](crate::Pipeline::send)) reached no
/// verdict. Nothing was recorded as sent.
///
/// ```
/// let e = proxy_optout_host::SendFailure::Send(proxy_optout_host::SendError::Unknown { reason: "timeout".into() });
/// assert!(e.to_string().starts_with("the send reached no verdict"));
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SendFailure {
    /// The ledger could not be read: whether the recipient opted out is unknown, so nothing
    /// was sent.
    #[error("the opt-out ledger could not be read: {0}")]
    Ledger(#[from] LedgerError),
    /// The provider gave no verdict; the send may have gone out.
    #[error("the send reached no verdict: {0}")]
    Send(SendError),
    /// The provider refused with 21610 and the ledger could not record it.
    #[error("a 21610 could not be recorded: {0}")]
    Feedback(FeedbackError<LedgerError>),
}

/// Sends a host-initiated message (Proxy's MessageInteraction) under the ledger's rules: to a
/// recipient who opted out of `out.from` it is refused with 21610 and never sent; a 21610
/// from the provider is recorded.
pub(crate) async fn send(app: &Inner, out: &Outgoing) -> Result<Leg, SendFailure> {
    let key = app.core().key(&out.from, &out.to);
    let state = app.ledger().state(key.scope(), key.participant()).await?;
    let make = |sid, status| Leg {
        from: out.from.clone(),
        to: out.to.clone(),
        body: out.body.clone(),
        sid,
        status,
    };
    if state == proxy_optout::OptState::OptedOut {
        app.metrics().refusal("ledger");
        return Ok(make(
            None,
            LegStatus::Refused {
                code: proxy_optout_twilio::UNSUBSCRIBED_RECIPIENT,
            },
        ));
    }
    match deliver(app, out, None).await {
        Ok(Ok(sid)) => Ok(make(sid, LegStatus::Accepted)),
        Ok(Err(refusal)) => {
            if refusal.is_unsubscribed() {
                app.metrics().refusal("rest");
                app.ledger()
                    .backend()
                    .refused(app.core().clone(), out.from.clone(), out.to.clone())
                    .await
                    .map_err(SendFailure::Feedback)?;
            }
            Ok(make(None, refusal.status()))
        }
        Err(Failure::Later {
            cause: Later::Send(e),
            ..
        }) => Err(SendFailure::Send(e)),
        Err(other) => Err(SendFailure::Send(SendError::Unknown {
            reason: format!("{other:?}"),
        })),
    }
}
