//! One authenticated message, all the way: the backend decides it (claim, route, relay, ledger
//! write), then its effects are performed in order (the auto-reply into the answer, the
//! forward through the sender with a 21610 fed back into the ledger, the notices counted and
//! logged), and the answer is stored for redeliveries. Knows nothing of HTTP.

use std::sync::Arc;

use proxy_optout::{Effect, FeedbackError, Outcome};
use proxy_optout_twilio::{render, ForwardVia};

use crate::app::App;
use crate::backend::{DbError, DecideError, Decided};
use crate::inbound::Message;
use crate::sender::{Outgoing, SendError, Sent};

/// What handling one delivery came to.
#[derive(Debug)]
pub(crate) enum Handled {
    /// Decided and performed: this TwiML is the answer (and is stored for redeliveries).
    Answered(String),
    /// Handled before: the stored answer, nothing performed again.
    Replayed(String),
    /// Another request is handling the same message id now.
    InProgress,
}

/// Why a delivery could not be handled. Nothing stays claimed: the platform's retry is
/// handled in full.
#[derive(Debug)]
pub(crate) enum PipelineError {
    /// The decision failed (nothing was confirmed or forwarded).
    Decide(DecideError),
    /// The forward reached no verdict (timeouts or 5xx after the sender's retries).
    Send(SendError),
    /// The platform refused the forward with 21610 and the ledger could not record it.
    Feedback(FeedbackError<DbError>),
}

/// Handles one authenticated message. Runs in a task of its own (see the webhook handler), so
/// a caller that hangs up cannot cut the effects short or strand the claim.
pub(crate) async fn handle(app: &App, message: Message) -> Result<Handled, PipelineError> {
    let message = Arc::new(message);
    let decided = app
        .db()
        .backend()
        .decide(app.core().clone(), message.clone())
        .await
        .map_err(PipelineError::Decide)?;
    let outcome = match decided {
        Decided::Outcome(outcome) => outcome,
        Decided::Replay(answer) => {
            app.metrics().message("replayed");
            tracing::info!(
                message_sid = message.id(),
                "redelivered; answering as before"
            );
            return Ok(Handled::Replayed(answer));
        }
        Decided::InProgress => return Ok(Handled::InProgress),
    };
    match perform(app, &message, &outcome).await {
        Ok(answer) => {
            if let Some(id) = &message.sid {
                let (metrics, sid) = (app.shared_metrics(), id.clone());
                app.db()
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
            }
            Ok(Handled::Answered(answer))
        }
        Err(e) => {
            if let Some(id) = &message.sid {
                if let Err(r) = app.db().backend().release(id.clone()).await {
                    app.metrics().store_error("release");
                    tracing::error!(error = %r, message_sid = id, "could not release the claim; a retry waits for it to go stale");
                }
            }
            Err(e)
        }
    }
}

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

/// Performs a decided outcome's effects in order and renders the answer.
async fn perform(
    app: &App,
    message: &Message,
    outcome: &Outcome<'_>,
) -> Result<String, PipelineError> {
    let sid = message.id();
    let session = outcome.session().unwrap_or("");
    let metrics = app.metrics();
    if let (true, Some(category)) = (
        outcome.decision().is_dropped(),
        outcome.decision().category(),
    ) {
        metrics.keyword_drop(category.as_str());
    }
    let mut label = label(outcome);
    for effect in outcome.effects() {
        match effect {
            // Stored by the backend, durably, before anything below.
            Effect::Record { key, state } => {
                tracing::debug!(message_sid = sid, %key, %state, "ledger updated");
            }
            // Given back as TwiML in the answer.
            Effect::Reply(reply) => {
                tracing::debug!(message_sid = sid, to = reply.to(), "auto-reply");
            }
            Effect::Forward(out) => {
                let outgoing = Outgoing {
                    from: out.from().to_owned(),
                    to: out.to().to_owned(),
                    body: out.body().to_owned(),
                    idempotency_key: if sid.is_empty() {
                        uuid::Uuid::new_v4().to_string()
                    } else {
                        format!("{sid}-forward")
                    },
                };
                match app.sender().send(&outgoing).await {
                    Ok(Sent::Accepted { sid: sent }) => {
                        tracing::debug!(
                            message_sid = sid,
                            session,
                            to = out.to(),
                            sent_sid = sent.as_deref(),
                            "forwarded"
                        );
                    }
                    Ok(verdict) if verdict.is_unsubscribed() => {
                        label = "refused";
                        metrics.refusal("rest");
                        tracing::info!(
                            message_sid = sid,
                            session,
                            to = out.to(),
                            "the platform refused the forward with 21610; recording the opt-out"
                        );
                        app.db()
                            .backend()
                            .refused(
                                app.core().clone(),
                                out.from().to_owned(),
                                out.to().to_owned(),
                            )
                            .await
                            .map_err(PipelineError::Feedback)?;
                    }
                    Ok(verdict) => {
                        label = "send_refused";
                        tracing::warn!(
                            message_sid = sid,
                            session,
                            to = out.to(),
                            ?verdict,
                            "the platform refused the forward"
                        );
                    }
                    Err(e) => return Err(PipelineError::Send(e)),
                }
            }
            Effect::Refuse(out) => {
                metrics.refusal("ledger");
                tracing::debug!(
                    message_sid = sid,
                    session,
                    to = out.to(),
                    "not forwarded: the recipient opted out of this number (21610)"
                );
            }
            Effect::Notice(n) => {
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
        "message handled"
    );
    Ok(render(outcome, ForwardVia::Rest))
}

/// Records a 21610 a status callback reported.
pub(crate) async fn refused_later(
    app: &App,
    from: &str,
    to: &str,
) -> Result<(), FeedbackError<DbError>> {
    app.metrics().refusal("status_callback");
    app.db()
        .backend()
        .refused(app.core().clone(), from.to_owned(), to.to_owned())
        .await
}
