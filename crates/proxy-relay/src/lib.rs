//! The reference masked-number relay server for [`proxy_optout`]: Twilio webhooks in, signature
//! checked, routed through sessions in the database, decided by the relay's core, effects
//! performed in order (ledger, auto-reply, forward, notices), TwiML out.
//!
//! SQLite by default (one host); PostgreSQL for several instances behind a load balancer.
//! Twilio Proxy's own v1 REST API for services, numbers, sessions, participants and the
//! interaction log (HTTP Basic, as Twilio's helper libraries send it, so code written for
//! Proxy runs here with its base URL changed), health and readiness, Prometheus metrics, and
//! a [`Sender`] for the forwarded leg (Twilio's REST API, or a log for running without an
//! account).
//!
//! ```text
//! cargo run -p proxy-relay -- demo     # a rider/driver conversation over real signed HTTP
//! cargo run -p proxy-relay             # serve on 127.0.0.1:8080 with ./proxy-relay.db
//! ```
//!
//! # Architecture
//!
//! A request walks one way: the HTTP side (`http/`: webhooks, operations; `proxy/`: the Proxy
//! API) extracts and authenticates it; Twilio's webhooks go to the [`Pipeline`] of `proxy-optout-host` (the
//! same library any existing service mounts), with this server's session tables as its
//! routing: it claims the message id, asks the routing for the session, runs the relay's
//! [steps](proxy_optout::Steps) with the ledger reads and writes they ask for in one job on
//! the database, performs the effects in order, and stores the answer; its observer writes
//! the Interaction. The Proxy API and its tables are this server's own; each of its
//! operations is one transaction written once for both databases (`backend/sql.rs`), and
//! nothing above the backend knows which one it talks to.
//!
//! The library half exists so tests (and hosts that embed the whole server) can start it in
//! process; a host with its own sessions uses `proxy-optout-host` directly:
//!
//! ```
//! use clap::Parser;
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = dir.path().join("relay.db");
//! let cli = proxy_relay::Cli::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
//!     "--database", db.to_str().unwrap(), "--auth-token", "secret"]);
//! let config = proxy_relay::Config::from_args(&cli.serve)?;
//! let server = proxy_relay::Server::start(&config, None).await?;
//! assert!(server.url().starts_with("http://127.0.0.1:"));
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod app;
mod backend;
mod config;
mod http;
mod optouts;
mod proxy;
mod server;
mod sessions;

pub use app::App;
pub use backend::{Database, Db, DbError, SESSION_SCHEMA_VERSION};
pub use config::{
    sender_for, Cli, Command, Config, ConfigError, HookConfig, ModeArg, OptoutsCommand, SenderArg,
    SenderConfig, ServeArgs,
};
pub use http::router;
pub use optouts::{
    export, format_time, import, parse_time, BadRow, ExportFilter, ExportFormat, ExportWhat,
    ImportReport, OptOutDb, OptOutsError, COLUMNS, MAX_REPORTED, PAGE,
};
// The pipeline is `proxy-optout-host`'s; these are its types the server's API shows.
pub use proxy::{ApiError, DEFAULT_SERVICE};
pub use proxy_optout_host::{
    JournalError, LogSender, MemorySender, Metrics, Outgoing, Pipeline, SendError, SendFuture,
    Sender, Sent, SessionRoute, TwilioSender, LATENCY_BUCKETS, ROUTES, SEND_ATTEMPTS, SEND_TIMEOUT,
    STATUS_CALLBACK_PATH, WEBHOOK_PATH,
};
pub use server::{webhook_urls, Server, StartError};
pub use sessions::{Session, SessionParticipant};

/// The crates whose types this one's API shows (`router` is axum's, `Cli` parses with clap,
/// the pipeline is `proxy-optout-host`'s), re-exported so an embedding host uses exactly the
/// versions it was built with.
pub mod reexports {
    pub use axum;
    pub use clap;
    pub use proxy_optout_host;
}
