//! Twilio Proxy's v1 REST API (the messaging part): Services, their pool of PhoneNumbers,
//! Sessions, Participants, MessageInteractions and the Interaction log, with Proxy's paths,
//! fields, SID prefixes, dates, paging, error body and codes, so code written against
//! Proxy through Twilio's helper libraries runs here with its base URL changed.
//!
//! The resources live in the session tables beside the ledger; every relayed message
//! becomes an Interaction through the pipeline's [`Observer`], and a MessageInteraction is
//! sent through the pipeline, under the ledger's rules.

mod api;
mod auth;
mod error;
mod optouts;
mod schema;
pub(crate) mod store;
pub(crate) mod time;

use std::sync::Arc;

use proxy_optout_host::{BoxFuture, Metrics, Observer, Report, StatusReport};

pub(crate) use api::routes;
pub(crate) use auth::Credentials;
pub use error::ApiError;
pub(crate) use schema::{postgres as pg_schema, sqlite as sqlite_schema, ROUTE, VERSION};

use crate::backend::sql::Sql;
use store::Relayed;

/// The service `--proxy-numbers` seeds, so the server relays without an API call first.
pub const DEFAULT_SERVICE: &str = "default";

/// One write for the Interaction log.
enum Entry {
    Relayed(Relayed),
    Status { message_sid: String, status: String },
}

/// The most entries one transaction writes.
const BATCH: usize = 256;

/// Writes each relayed message as an Interaction and keeps its outbound leg's status current
/// from status callbacks. Writes are grouped: whatever arrived while the last transaction
/// ran goes in the next one, and each caller is answered once its entry is committed. So a
/// webhook's answer still follows its Interaction (a client reading the log after a text sees
/// it), while under load many messages share one transaction instead of paying one each.
pub(crate) struct Interactions {
    queue: tokio::sync::mpsc::Sender<(Entry, tokio::sync::oneshot::Sender<()>)>,
}

impl Interactions {
    /// Starts the writer on `sql`; it stops when the last handle is dropped.
    pub(crate) fn start(sql: Arc<Sql>, metrics: Arc<Metrics>) -> Interactions {
        let (queue, mut rx) =
            tokio::sync::mpsc::channel::<(Entry, tokio::sync::oneshot::Sender<()>)>(4 * BATCH);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (entries, waiting): (Vec<Entry>, Vec<_>) = batch.into_iter().unzip();
                let n = entries.len();
                let result = sql
                    .run_relaxed(move |tx| {
                        for e in &entries {
                            match e {
                                Entry::Relayed(r) => store::record_relayed(tx, r)?,
                                Entry::Status {
                                    message_sid,
                                    status,
                                } => {
                                    store::record_status(tx, message_sid, status)?;
                                }
                            }
                        }
                        Ok::<_, crate::backend::DbError>(())
                    })
                    .await;
                if let Err(e) = result {
                    metrics.store_error("interaction");
                    tracing::error!(error = %e, entries = n, "could not record interactions");
                }
                for w in waiting {
                    let _ = w.send(());
                }
            }
        });
        Interactions { queue }
    }

    async fn write(&self, entry: Entry) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.queue.send((entry, done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

impl Observer for Interactions {
    fn handled(&self, report: Report) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(session) = report.session.clone() else {
                return;
            };
            self.write(Entry::Relayed(Relayed {
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
                message_sid: status.message_sid,
                status: status.status,
            })
            .await;
        })
    }
}

/// Closes expired sessions every `every` until `stop`.
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
