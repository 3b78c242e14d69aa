//! A masking service on Twilio Conversations with Proxy's opt-out rules: an axum server
//! answering the pre-event webhook (`onMessageAdd`, `onConversationAdd`) and the post-event
//! one (`onParticipantAdded`, `onParticipantRemoved`, `onDeliveryUpdated`), on a SQLite ledger.
//!
//! ```text
//! TWILIO_AUTH_TOKEN=… PUBLIC_URL=https://masking.example.com \
//!     cargo run -p proxy-optout-twilio --example conversations -- 127.0.0.1:8090 ledger.db
//! ```
//!
//! Then, in the Conversations service's webhook settings: pre-event URL
//! `<PUBLIC_URL>/conversations/pre` with the filters `onMessageAdd` and `onConversationAdd`;
//! post-event URL `<PUBLIC_URL>/conversations/post` with `onParticipantAdded`,
//! `onParticipantRemoved` and `onDeliveryUpdated`; method POST.

mod service;

use std::sync::Arc;

use proxy_optout::CarrierMode;
use proxy_optout_sqlite::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let database = args
        .next()
        .unwrap_or_else(|| "conversations-ledger.db".into());
    let token = std::env::var("TWILIO_AUTH_TOKEN").map_err(|_| "set TWILIO_AUTH_TOKEN")?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let public_url = std::env::var("PUBLIC_URL").unwrap_or_else(|_| format!("http://{listen}"));
    // Twilio still answers STOP at the Messaging layer of the proxy numbers: mirror it.
    let service = Arc::new(service::Service::new(
        SqliteStore::open(&database)?,
        &token,
        &public_url,
        CarrierMode::Mirror,
    ));
    println!("conversations masking service on http://{listen} (public URL {public_url})");
    axum::serve(listener, service::router(service)).await?;
    Ok(())
}
