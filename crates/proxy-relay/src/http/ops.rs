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
    match app.db().ping().await {
        Ok(()) => plain(StatusCode::OK, "ready", None),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
                Some(Counted::Store("ping")),
            )
        }
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics().render(),
    )
        .into_response()
}
