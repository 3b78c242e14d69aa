//! Operations: liveness, readiness and Prometheus metrics, without a token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::App;
use crate::http::error::{plain, Counted};

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.is_draining() {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down", None);
    }
    let depth = app.journal_depth();
    match app.db().ping().await {
        Ok(()) if depth == 0 => plain(StatusCode::OK, "ready", None),
        // Catching up: what arrives now would queue behind the journal anyway.
        Ok(()) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {depth} journaled messages are being handled"),
            None,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: the database is unavailable; {depth} messages journaled"),
                Some(Counted::Store("ping")),
            )
        }
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut text = app.metrics().render();
    text.push_str(&format!(
        "# HELP proxy_relay_journal_depth Webhooks waiting in the local journal.\n# TYPE proxy_relay_journal_depth gauge\nproxy_relay_journal_depth {}\n",
        app.journal_depth()
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
