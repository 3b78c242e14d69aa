//! The Twilio webhook pipeline of [`proxy_optout`], as a library to mount in an existing
//! service.
//!
//! A masked-number service already has its sessions (rides, orders, deliveries) in its own
//! tables. It gives the [`Pipeline`] three things: a [`Ledger`] (a SQLite file or the
//! PostgreSQL database), its [`Routing`] (a (From, To) pair to its session, over its own
//! tables, sync or async), and a [`Sender`] ([`TwilioSender`] for Twilio's REST API). The
//! pipeline does the rest, for each inbound message:
//!
//! 1. the webhook's checks: content type, size, form, `X-Twilio-Signature`;
//! 2. the claim of its `MessageSid`: a redelivery gets the first answer, nothing again;
//! 3. the route, from the host's [`Routing`];
//! 4. the relay's decision, with the opt-out ledger read and written in one job on the
//!    database (STOP and its kin never forwarded, either way);
//! 5. the effects in order: the auto-reply, then the forward through the sender (at most
//!    once: a send whose fate is unknown is only sent again after the provider says it has
//!    no such message), a 21610 refusal fed back into the ledger;
//! 6. the answer, stored for redeliveries and returned as TwiML.
//!
//! Each message runs in a task of its own, so Twilio hanging up cannot strand its claim. With
//! a [journal](PipelineBuilder::journal), a message that cannot be handled now is kept on
//! local disk and handled later in arrival order, so a database outage loses nothing. Status
//! callbacks record a late 21610. [`Metrics`] count it all; every refusal is a typed
//! [`Refusal`] that knows its HTTP status.
//!
//! # Mounting it
//!
//! In axum, [`Pipeline::router`] gives the two webhooks to `merge` into the host's app, and
//! [`TwilioWebhook`] is an extractor for a handler of the host's own. Anywhere else,
//! [`Pipeline::serve`] takes a [`WebhookRequest`] (method, target, headers, body) and gives a
//! [`WebhookResponse`] (status, headers, body):
//!
//! ```
//! use proxy_optout_host::{MemorySender, Pipeline, SessionRoute, SqliteLedger, WebhookRequest};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let ledger = SqliteLedger::open(dir.path().join("optout.db")).await?;
//! // The host's routing: here one ride between a rider and a driver on one proxy number.
//! let routing = |from: &str, to: &str| {
//!     let other = match from { "+15551110001" => "+15552220002", _ => "+15551110001" };
//!     Ok(Some(SessionRoute::new("ride-1", from, to, Some((other, to)))?))
//! };
//! let sender = MemorySender::new();
//! let pipeline = Pipeline::builder(ledger, routing, sender.clone())
//!     .auth_token("twilio-auth-token")
//!     .public_url("https://rides.example.com")
//!     .start()
//!     .await?;
//!
//! // What a framework hands over: method, target, headers, body.
//! let post = |body: &'static [u8]| {
//!     let form = proxy_optout_twilio::Form::parse(body).unwrap();
//!     let signature = proxy_optout_twilio::sign("twilio-auth-token", "https://rides.example.com/twilio/sms", &form);
//!     (body, signature)
//! };
//! let (body, signature) = post(b"MessageSid=SM1&From=%2B15551110001&To=%2B15550000100&Body=STOP");
//! let answer = pipeline.serve(WebhookRequest::new("POST", "/twilio/sms", body)
//!     .header("Content-Type", "application/x-www-form-urlencoded")
//!     .header("X-Twilio-Signature", &signature)).await;
//! assert_eq!(answer.status(), 200);
//! assert!(answer.body().contains("unsubscribed")); // the STOP confirmation, in the TwiML
//! assert!(sender.sent().is_empty());               // and the STOP is not forwarded
//!
//! let (body, signature) = post(b"MessageSid=SM2&From=%2B15552220002&To=%2B15550000100&Body=here");
//! let answer = pipeline.serve(WebhookRequest::new("POST", "/twilio/sms", body)
//!     .header("Content-Type", "application/x-www-form-urlencoded")
//!     .header("X-Twilio-Signature", &signature)).await;
//! assert_eq!(answer.status(), 200);
//! assert!(sender.sent().is_empty()); // the rider opted out of this number: refused, 21610
//! pipeline.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # The reply's path
//!
//! The auto-reply (a STOP or START confirmation, the HELP text) goes in the TwiML answer
//! when it is the message's only outbound text. When a forward follows it (a START or HELP
//! inside a session, which Proxy forwards), both go through the sender, the reply first:
//! TwiML is delivered after the webhook returns, which would put the reply after the forward
//! the REST API already sent. A message replayed from the journal sends its reply through
//! the sender too (its webhook was answered long ago).
//!
//! # One trip to the database
//!
//! The decision (claim, ledger reads, ledger write) is one job: one hand-off to the SQLite
//! ledger's thread, or one statement on PostgreSQL. A routing over tables in the ledger's own
//! database can run inside that job too ([`SqliteLedger::routing`], [`PgLedger::routing`]);
//! any other routing is asked first, in a trip of its own.
//!
//! # Where things are written
//!
//! The claim and the ledger change are written in the decision's one job, before anything
//! is sent. The answer is stored after the effects, in the same task. The processed message
//! id therefore marks "sends may follow", not "done": a crash in between is recovered by
//! asking the provider, never by sending blind.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "axum")]
mod axum;
mod error;
mod handling;
mod journal;
mod ledger;
mod message;
mod metrics;
mod observer;
mod pipeline;
mod policy;
mod rfc2822;
mod routing;
mod sender;
mod webhook;

#[cfg(feature = "axum")]
pub use crate::axum::TwilioWebhook;
pub use error::Refusal;
pub use handling::SendFailure;
pub use journal::JournalError;
pub use ledger::{
    Colocated, Ledger, LedgerError, PgLedger, PgRouting, SqliteLedger, SqliteRouting,
};
pub use message::Message;
pub use metrics::{Metrics, LATENCY_BUCKETS, ROUTES};
pub use observer::{Leg, LegStatus, Observer, Report, StatusReport};
pub use pipeline::{BuildError, Pipeline, PipelineBuilder, DATABASE_TIMEOUT};
pub use policy::{Intercepted, OutOfSession, Policy};
pub use routing::{
    blocking, Blocking, BoxFuture, RouteResult, Routing, RoutingError, SessionRoute,
};
pub use sender::{
    ClientError, LogSender, MemorySender, Outgoing, SendError, SendFuture, Sender, Sent,
    TwilioSender, ATTEMPT_PARAMETER, SEND_ATTEMPTS, SEND_TIMEOUT,
};
pub use webhook::{
    webhook_url, WebhookRequest, WebhookResponse, STATUS_CALLBACK_PATH, WEBHOOK_PATH,
};

/// The crates whose types this one's API shows, re-exported so a host uses exactly the
/// versions it was built with.
pub mod reexports {
    #[cfg(feature = "axum")]
    pub use ::axum;
    pub use proxy_optout;
    pub use proxy_optout_postgres;
    pub use proxy_optout_sqlite;
    pub use proxy_optout_twilio;
}

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
