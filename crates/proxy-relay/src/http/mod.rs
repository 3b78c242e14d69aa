//! The HTTP side: one router merging the surfaces (Twilio's webhooks, served by the
//! pipeline's own router; the Proxy API; operations), and the middleware that times every
//! request and counts what its response asks to be counted.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use proxy_optout_twilio::MAX_FORM_BYTES;

use crate::app::App;

pub(crate) mod error;
pub(crate) mod ops;

/// The service's routes, to serve or to mount under a host's own axum app.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let db = dir.path().join("r.db");
/// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
/// #     "--database", db.to_str().unwrap(), "--auth-token", "t"]);
/// # let config = proxy_relay::Config::from_args(&cli.serve)?;
/// let server = proxy_relay::Server::start(&config, None).await?;
/// let routes: axum::Router = proxy_relay::router(server.app().clone());
/// # let _ = routes;
/// # server.shutdown().await?;
/// # Ok(()) }
/// ```
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .merge(app.pipeline().router())
        .merge(crate::proxy::routes(app.clone()))
        .merge(ops::routes())
        .fallback(|request: Request| async move {
            error::not_found(request.method().as_str(), request.uri().path())
        })
        .method_not_allowed_fallback(|request: Request| async move {
            error::method_not_allowed(request.method().as_str(), request.uri().path())
        })
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(middleware::from_fn_with_state(app.clone(), bound))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// The route label of a request, for the latency histogram.
fn route_label(path: Option<&str>) -> &'static str {
    match path {
        Some(crate::WEBHOOK_PATH) => "webhook",
        Some(crate::STATUS_CALLBACK_PATH) => "status_callback",
        Some("/healthz" | "/readyz") => "health",
        Some("/metrics") => "metrics",
        Some(p) if p.starts_with("/v1/") => "admin",
        _ => "other",
    }
}

/// At most `--max-in-flight` requests at once (health and metrics aside, so an overloaded
/// server can still say so): the rest are answered 503 with Retry-After at once.
async fn bound(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    match app.in_flight_slot() {
        Some(slot) => {
            let response = next.run(request).await;
            drop(slot);
            response
        }
        None => error::plain(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the server is at capacity; retry",
            Some(error::Counted::Rejected("in_flight")),
        ),
    }
}

async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = route_label(
        request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let start = Instant::now();
    let response = next.run(request).await;
    app.metrics().observe(route, start.elapsed());
    if let Some(counted) = response.extensions().get::<error::Counted>() {
        counted.count(app.metrics());
    }
    response
}
