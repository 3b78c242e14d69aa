//! Twilio Proxy's v1 REST API (the messaging part): Services, their pool of PhoneNumbers,
//! Sessions, Participants, MessageInteractions and the Interaction log, with Proxy's paths,
//! fields, SID prefixes, dates, paging, error body and codes, so code written against
//! Proxy through Twilio's helper libraries runs here with its base URL changed.
//!
//! The resources live in the session tables beside the ledger; every relayed message
//! becomes an Interaction through the pipeline's [`Observer`], and a MessageInteraction is
//! sent through the pipeline, under the ledger's rules.

mod alerts;
mod api;
mod auth;
mod error;
mod extensions;
pub(crate) mod hooks;
mod optouts;
mod schema;
pub(crate) mod store;
pub(crate) mod time;

use std::sync::Arc;

use proxy_optout_host::{BoxFuture, Metrics, Observer, Report, StatusReport};

pub(crate) use api::routes;
pub(crate) use auth::Credentials;
pub use error::ApiError;
pub(crate) use schema::{postgres as pg_schema, sqlite as sqlite_schema, FROM_V2, ROUTE, VERSION};

use crate::backend::sql::Sql;
use hooks::Hooks;
use store::Relayed;

/// The service `--proxy-numbers` seeds, so the server relays without an API call first.
pub const DEFAULT_SERVICE: &str = "default";

/// One write for the Interaction log.
enum Entry {
    Relayed(Relayed),
    Status {
        /// The Interaction the callback's URL names, when it names one.
        interaction: Option<String>,
        message_sid: String,
        status: String,
    },
}

const BATCH: usize = 256;

/// The interaction log, written in batches off the webhook's path, and what follows each
/// write: the alerts of the notices, the CallbackUrl of each new or advanced interaction.
pub(crate) struct Interactions {
    queue: tokio::sync::mpsc::Sender<(Entry, tokio::sync::oneshot::Sender<()>)>,
    hooks: Arc<Hooks>,
}

impl Interactions {
    pub(crate) fn start(sql: Arc<Sql>, metrics: Arc<Metrics>, hooks: Arc<Hooks>) -> Interactions {
        let (queue, mut rx) =
            tokio::sync::mpsc::channel::<(Entry, tokio::sync::oneshot::Sender<()>)>(4 * BATCH);
        let callbacks = hooks.clone();
        let writer = hooks.clone();
        tokio::spawn(async move {
            // What has queued while the last group was written, up to BATCH, waiting for
            // at least one.
            let mut queued = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut queued, BATCH).await > 0 {
                let batch = std::mem::take(&mut queued);
                let (entries, waiting): (Vec<Entry>, Vec<_>) = batch.into_iter().unzip();
                let n = entries.len();
                let hooks = writer.clone();
                let result = sql
                    .run_relaxed(move |tx| {
                        // The interactions whose CallbackUrl fires: new ones with an
                        // outbound leg, and those whose leg's status moved forward.
                        let mut changed = Vec::new();
                        let relayed: Vec<&Relayed> = entries
                            .iter()
                            .filter_map(|e| match e {
                                Entry::Relayed(r) => Some(r),
                                Entry::Status { .. } => None,
                            })
                            .collect();
                        let stored = store::record_relayed_group(tx, &relayed)?;
                        for (r, new) in relayed.iter().zip(stored) {
                            if new && r.outbound.is_some() && hooks.wants_callback(Some(&r.to)) {
                                changed.push(r.sid.clone());
                            }
                        }
                        // After the group's inserts: a status that arrived with its message
                        // finds the interaction it moves.
                        for e in &entries {
                            if let Entry::Status {
                                interaction,
                                message_sid,
                                status,
                            } = e
                            {
                                let moved = store::record_status(
                                    tx,
                                    interaction.as_deref(),
                                    message_sid,
                                    status,
                                )?;
                                if hooks.wants_callback(None) {
                                    changed.extend(moved);
                                }
                            }
                        }
                        Ok::<_, crate::backend::DbError>(changed)
                    })
                    .await;
                match result {
                    Ok(changed) => {
                        for sid in changed {
                            callbacks.interaction_changed(sid);
                        }
                    }
                    Err(e) => {
                        metrics.store_error("interaction");
                        tracing::error!(error = %e, entries = n, "could not record interactions");
                    }
                }
                for w in waiting {
                    let _ = w.send(());
                }
            }
        });
        Interactions { queue, hooks }
    }

    async fn write(&self, entry: Entry) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.queue.send((entry, done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// The alerts a handled message raises: each notice, and an out-of-session message.
    fn alert(&self, report: &Report) {
        let codes: Vec<u32> = report
            .notices
            .iter()
            .copied()
            .chain(match report.outcome {
                "out_of_session" => Some(80902),
                "no_counterpart" => Some(80614),
                _ => None,
            })
            .collect();
        if codes.is_empty() && report.revocation_hint.is_none() {
            return;
        }
        let service = self.hooks.service_of(&report.to).unwrap_or_default();
        let mut request = vec![
            ("From".to_owned(), report.from.clone()),
            ("To".to_owned(), report.to.clone()),
        ];
        if let Some(m) = &report.message_sid {
            request.insert(0, ("MessageSid".to_owned(), m.clone()));
        }
        if let Some(phrase) = report.revocation_hint {
            // FCC 2025: consent may be revoked in any reasonable way. A hint, for review.
            self.hooks.alerts.raise(
                alerts::Alert::hint(format!(
                    "{} wrote {phrase:?} to {}: it may revoke consent; the message was relayed",
                    report.from, report.to
                ))
                .resource(report.message_sid.as_deref().unwrap_or_default())
                .service(&service)
                .request("POST", crate::WEBHOOK_PATH, &request),
            );
        }
        for code in codes {
            if code == 80902 {
                // Out of session: 80904 when the sender's session on this number expired (a
                // Ttl or DateExpiry closed it), which one read off the answer's path tells.
                let hooks = self.hooks.clone();
                let (from, to) = (report.from.clone(), report.to.clone());
                let alert = |code: u32, text: String| {
                    alerts::Alert::new(code, text)
                        .resource(report.message_sid.as_deref().unwrap_or_default())
                        .service(&service)
                        .request("POST", crate::WEBHOOK_PATH, &request)
                };
                let (expired, fresh) = (
                    alert(80904, format!("{from}'s session on {to} has expired")),
                    alert(80902, format!("{from} has no active session on {to}")),
                );
                tokio::spawn(async move {
                    let was_expired = hooks.session_expired(&from, &to).await;
                    hooks
                        .alerts
                        .raise(if was_expired { expired } else { fresh });
                });
                continue;
            }
            let text = match code {
                80901 => "the keyword was not relayed".to_owned(),
                80909 => {
                    "the InterceptCallbackUrl answered 403; the message was not relayed".to_owned()
                }
                21610 => format!(
                    "{} opted out of this number; the message was not relayed",
                    report
                        .forward
                        .as_ref()
                        .map_or("the recipient", |l| l.to.as_str())
                ),
                80614 => "the session has no other participant".to_owned(),
                _ => report.outcome.to_owned(),
            };
            self.hooks.alerts.raise(
                alerts::Alert::new(code, text)
                    .resource(report.message_sid.as_deref().unwrap_or_default())
                    .service(&service)
                    .request("POST", crate::WEBHOOK_PATH, &request),
            );
        }
    }
}

impl Observer for Interactions {
    fn handled(&self, report: Report) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.alert(&report);
            let Some(session) = report.session.clone() else {
                return;
            };
            self.write(Entry::Relayed(Relayed {
                sid: hooks::interaction_sid(report.message_sid.as_deref()),
                session,
                from: report.from,
                to: report.to,
                body: report.body,
                message_sid: report.message_sid,
                outbound: report.forward.map(|leg| (leg.sid, leg.status.as_str())),
            }))
            .await;
        })
    }

    fn status(&self, status: StatusReport) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.write(Entry::Status {
                interaction: status
                    .attempt
                    .as_deref()
                    .and_then(hooks::interaction_of_attempt),
                message_sid: status.message_sid,
                status: status.status,
            })
            .await;
        })
    }
}

pub(crate) async fn sweep(
    sql: Arc<Sql>,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        match sql.run(|tx| store::sweep(tx, time::now())).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(closed = n, "closed expired sessions"),
            Err(e) => tracing::warn!(error = %e, "closing expired sessions failed"),
        }
    }
}
