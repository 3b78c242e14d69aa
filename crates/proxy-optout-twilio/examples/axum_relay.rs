//! A complete axum handler: raw Twilio webhook in, TwiML out.
//!
//! ```text
//! PUBLIC_BASE_URL=https://relay.example.com TWILIO_AUTH_TOKEN=... \
//!     cargo run -p proxy-optout-twilio --example axum_relay
//! ```
//!
//! Behind a TLS-terminating proxy the app sees `http://10.0.0.7:3000/...`, but Twilio signed
//! `https://relay.example.com/...`. So the URL to validate is the configured public base
//! (scheme, host and port as Twilio was told) followed by the path and query exactly as they
//! arrived (never decoded and re-encoded).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use proxy_optout::{AsyncRelay, CarrierMode, MemoryStore, RelayError};
use proxy_optout_twilio::{render, Form, ForwardVia, InboundMessage, Validator, CONTENT_TYPE};

/// Everything the handler shares: immutable, so no lock.
pub struct App {
    /// `https://relay.example.com`, as configured in the Twilio console.
    pub public_base_url: String,
    /// The auth token(s).
    pub validator: Validator,
    /// The relay; a real host uses a database store and routes from its session table.
    pub relay: AsyncRelay<MemoryStore>,
}

/// The router: `POST /twilio/sms`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/twilio/sms", post(inbound_sms))
        .with_state(app)
}

fn twiml(body: String) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

async fn inbound_sms(
    State(app): State<Arc<App>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // 1. The URL Twilio signed: public base + the request target as received.
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{}{}", app.public_base_url.trim_end_matches('/'), target);
    // 2. Parse the raw body, then validate the signature over every parameter.
    let form = match Form::parse(&body) {
        Ok(form) => form,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = app.validator.validate_form(&url, signature, &form) {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
        return (status, e.to_string()).into_response();
    }
    // 3. The message, and the relay's decision (route: `None` here; look it up in your
    //    session table and pass `Some(Route::new(..)?)`).
    let message = match InboundMessage::from_form(&form) {
        Ok(m) => m,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match app.relay.handle(&message.inbound(), None).await {
        // 4. Answer with TwiML: the auto-reply (forwards go out through the REST API).
        Ok(outcome) => twiml(render(&outcome, ForwardVia::Rest)),
        Err(RelayError::Input(e)) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        // The store failed: nothing was confirmed or forwarded; 503 makes Twilio retry.
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Arc::new(App {
        public_base_url: std::env::var("PUBLIC_BASE_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:3000".into()),
        validator: Validator::new(std::env::var("TWILIO_AUTH_TOKEN").unwrap_or_default()),
        relay: AsyncRelay::new(MemoryStore::new()).with_mode(CarrierMode::Mirror),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router(app)).await
}
