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

/// Writes each relayed message as an Interaction and keeps its outbound leg's status current
/// from status callbacks.
pub(crate) struct Interactions {
    pub(crate) sql: Arc<Sql>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Observer for Interactions {
    fn handled(&self, report: Report) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(session) = report.session.clone() else {
                return;
            };
            let relayed = Relayed {
                session,
                from: report.from,
                to: report.to,
                body: report.body,
                message_sid: report.message_sid,
                outbound: report.forward.map(|leg| (leg.sid, leg.status.as_str())),
            };
            let result = self
                .sql
                .run_relaxed(move |tx| store::record_relayed(tx, &relayed))
                .await;
            if let Err(e) = result {
                self.metrics.store_error("interaction");
                tracing::error!(error = %e, "could not record the interaction");
            }
        })
    }

    fn status(&self, status: StatusReport) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let result = self
                .sql
                .run_relaxed(move |tx| {
                    store::record_status(tx, &status.message_sid, &status.status)
                })
                .await;
            if let Err(e) = result {
                self.metrics.store_error("interaction_status");
                tracing::error!(error = %e, "could not record a status callback's status");
            }
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
