//! The opt-out records over the admin API, beside Proxy's resources and behind the same Basic
//! authentication: `GET /v1/OptOuts` streams an export, `POST /v1/OptOuts` imports a CSV list.
//! An extension: Twilio has no such API.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::ApiError;
use crate::app::App;
use crate::optouts::{query_for, render_header, render_page, OptOutDb, OptOutsError, PAGE};
use crate::{parse_time, ExportFilter, ExportFormat, ExportWhat};

/// The largest import body: about 5 million rows of a number, a proxy number and a time.
pub(crate) const MAX_IMPORT_BYTES: usize = 256 * 1024 * 1024;

fn invalid_time(name: &str, value: &str) -> ApiError {
    ApiError::invalid(format!(
        "{name} {value:?} is not a date, an ISO 8601 UTC time or Unix milliseconds"
    ))
}

fn failed(e: OptOutsError) -> ApiError {
    match e {
        OptOutsError::Rows(_) | OptOutsError::Header(_) | OptOutsError::Filter(_) => {
            ApiError::invalid(e.to_string())
        }
        other => {
            tracing::error!(error = %other, "the opt-out records' database call failed");
            ApiError::new(503, 20503, "the database is unavailable; try again")
        }
    }
}

/// `GET /v1/OptOuts?What=optouts|history&Format=csv|jsonl&Scope=&Participant=&Since=&Until=&State=`:
/// the export, a page of entries at a time, so memory does not grow with its size.
pub(crate) async fn export(
    State(app): State<Arc<App>>,
    uri: OriginalUri,
) -> Result<Response, ApiError> {
    let f = super::api::query_fields(&uri)?;
    let what = match f.get("What") {
        None | Some("optouts") => ExportWhat::Optouts,
        Some("history") => ExportWhat::History,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "What {other:?} is not optouts or history"
            )))
        }
    };
    let format = match f.get("Format") {
        None | Some("csv") => ExportFormat::Csv,
        Some("jsonl") => ExportFormat::Jsonl,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Format {other:?} is not csv or jsonl"
            )))
        }
    };
    let time = |name: &str| match f.get(name) {
        None => Ok(None),
        Some(t) => parse_time(t).map(Some).ok_or_else(|| invalid_time(name, t)),
    };
    let state = match f.get("State") {
        None => None,
        Some(s) => Some(
            s.parse()
                .map_err(|e: proxy_optout::ParseError| ApiError::invalid(format!("State: {e}")))?,
        ),
    };
    let filter = ExportFilter {
        scope: f.get("Scope").map(Into::into),
        participant: f.get("Participant").map(Into::into),
        since: time("Since")?,
        until: time("Until")?,
        state,
    };
    let db = OptOutDb::of(app.db());
    // The first page is read before answering, so a database failure is an error status,
    // not a truncated body.
    let first = db.page(&query_for(what, &filter)).await.map_err(failed)?;
    let mut head = render_header(format).map_err(failed)?;
    head.extend(render_page(format, &first).map_err(failed)?);
    let next = (first.len() == PAGE).then(|| first.last().map_or(0, |e| e.seq));
    let pages = futures_util::stream::unfold(next, move |after| {
        let (db, filter) = (db.clone(), filter.clone());
        async move {
            let after = after?;
            let page = match db.page(&query_for(what, &filter).after(after)).await {
                Ok(p) => p,
                Err(e) => {
                    // The answer has started: all that can be done is to end it early.
                    tracing::error!(error = %e, "an opt-out export failed part-way");
                    return Some((Err(std::io::Error::other(e.to_string())), None));
                }
            };
            let next = (page.len() == PAGE).then(|| page.last().map_or(after, |e| e.seq));
            let bytes =
                render_page(format, &page).map_err(|e| std::io::Error::other(e.to_string()));
            Some((bytes.map(Bytes::from), next))
        }
    });
    let body = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) }),
        pages,
    );
    let content_type = match format {
        ExportFormat::Csv => "text/csv; charset=utf-8",
        _ => "application/x-ndjson",
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response())
}

/// `POST /v1/OptOuts[?Scope=]` with a CSV body: the import, answered with its report.
pub(crate) async fn import(
    State(app): State<Arc<App>>,
    uri: OriginalUri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = super::api::query_fields(&uri)?;
    let db = OptOutDb::of(app.db());
    let report = crate::import(&db, &body[..], f.get("Scope"))
        .await
        .map_err(failed)?;
    Ok(Json(json!({
        "rows": report.rows,
        "recorded": report.recorded,
        "unchanged": report.unchanged,
    }))
    .into_response())
}
