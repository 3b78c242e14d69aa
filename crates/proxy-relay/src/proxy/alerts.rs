//! The debugger feed: every notice the relay raises as an alert in the shape of Twilio's
//! Monitor API (`GET /v1/Alerts[/{Sid}]`, `LogLevel`, `StartDate`, `EndDate`, paging; list
//! key `alerts`), so twilio-python's `client.monitor` pointed at this server reads them; and,
//! when configured, each alert posted to a debugger webhook as it is raised.
//!
//! Alerts are evidence, not part of a message's handling: they are written off the webhook's
//! path, and a failure to write one is logged and counted, never answered to Twilio.

use std::sync::Arc;

use axum::extract::{OriginalUri, Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use proxy_optout_host::Metrics;
use serde_json::{json, Value};

use super::error::ApiError;
use super::store::{new_sid, Ctx};
use super::time;
use crate::app::App;
use crate::backend::sql::{Row, Sql, Val};

/// The error code of a revocation hint (not Twilio's: Twilio raises none for it).
pub(crate) const REVOCATION_HINT: &str = "revocation-hint";

/// One alert to raise.
#[derive(Clone, Debug)]
pub(crate) struct Alert {
    /// 0: a revocation hint.
    code: u32,
    text: String,
    resource: Option<String>,
    service: Option<String>,
    request: Option<(String, String, String)>,
}

impl Alert {
    pub(crate) fn new(code: u32, text: impl Into<String>) -> Alert {
        Alert {
            code,
            text: text.into(),
            resource: None,
            service: None,
            request: None,
        }
    }

    /// A revocation hint: level `notice`, code `revocation-hint`.
    pub(crate) fn hint(text: impl Into<String>) -> Alert {
        Alert::new(0, text)
    }

    fn code_text(&self) -> String {
        match self.code {
            0 => REVOCATION_HINT.to_owned(),
            c => c.to_string(),
        }
    }

    pub(crate) fn resource(mut self, sid: &str) -> Alert {
        self.resource = Some(sid.to_owned()).filter(|s| !s.is_empty());
        self
    }

    pub(crate) fn service(mut self, sid: &str) -> Alert {
        self.service = Some(sid.to_owned()).filter(|s| !s.is_empty());
        self
    }

    /// The request the alert is about: its method, URL and form (encoded as Twilio shows
    /// `request_variables`).
    pub(crate) fn request(mut self, method: &str, url: &str, form: &[(String, String)]) -> Alert {
        let vars = proxy_optout_twilio::Form::from_pairs(
            form.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .encode();
        self.request = Some((method.to_owned(), url.to_owned(), vars));
        self
    }
}

/// Twilio's level for a code: what withholds on purpose is a warning; what failed, an error.
pub(crate) fn level(code: u32) -> &'static str {
    if code == 0 {
        return "notice";
    }
    match proxy_optout::Notice::from_code(code) {
        Some(n) => n.level().as_str(),
        None => match code {
            80908 | 80913 => "error",
            _ => "warning",
        },
    }
}

/// What each code means, as the alert's text starts.
pub(crate) fn title(code: u32) -> &'static str {
    match code {
        80901 => "Message matched a STOP or START word, not proxying",
        80902 => "No active session",
        80904 => "Expired session",
        80908 => "Error on callback",
        80909 => "Intercept callback answered 403, interaction blocked",
        80913 => "Out-of-session callback answered non-2xx",
        80614 => "No partner participant",
        0 => "Possible revocation of consent",
        21610 => "Attempt to send to unsubscribed recipient",
        _ => "Notice",
    }
}

/// Alerts written per transaction, at most.
const BATCH: usize = 256;

/// Stores a batch of alerts in one transaction.
fn store(
    tx: &mut dyn crate::backend::sql::Tx,
    batch: &[(String, i64, Alert)],
) -> Result<(), crate::DbError> {
    for (sid, now, a) in batch {
        let (method, url, vars) = match &a.request {
            Some((m, u, v)) => (Some(m.clone()), Some(u.clone()), Some(v.clone())),
            None => (None, None, None),
        };
        tx.execute(
            "INSERT INTO proxy_alerts (sid, error_code, log_level, alert_text, request_method,
                 request_url, request_variables, resource_sid, service_sid, date_created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            &[
                sid.as_str().into(),
                a.code_text().into(),
                level(a.code).into(),
                format!("{}: {}", title(a.code), a.text).into(),
                method.into(),
                url.into(),
                vars.into(),
                a.resource.clone().into(),
                a.service.clone().into(),
                (*now).into(),
            ],
        )?;
    }
    Ok(())
}

/// Writes alerts and posts them to the debugger webhook.
pub(crate) struct Alerts {
    sql: Arc<Sql>,
    /// To the writer, which stores what arrives while a transaction runs in the next one.
    queue: tokio::sync::mpsc::Sender<(String, i64, Alert)>,
    ctx: Ctx,
    token: String,
    webhook: Option<String>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl Alerts {
    pub(crate) fn new(
        sql: Arc<Sql>,
        ctx: Ctx,
        token: String,
        webhook: Option<String>,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Alerts {
        let (queue, mut rx) = tokio::sync::mpsc::channel::<(String, i64, Alert)>(16 * BATCH);
        let (writer, counted) = (sql.clone(), metrics.clone());
        tokio::spawn(async move {
            // What has queued while the last group was written, up to BATCH, waiting for
            // at least one.
            let mut queued = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut queued, BATCH).await > 0 {
                let batch = std::mem::take(&mut queued);
                let n = batch.len();
                if let Err(e) = writer.run_relaxed(move |tx| store(tx, &batch)).await {
                    counted.store_error("alert");
                    tracing::warn!(error = %e, alerts = n, "could not store alerts");
                }
            }
        });
        Alerts {
            queue,
            sql,
            ctx,
            token,
            webhook,
            http,
            metrics,
        }
    }

    /// Stores `alert` and posts it to the debugger webhook, off the caller's path.
    pub(crate) fn raise(&self, alert: Alert) {
        let metrics = self.metrics.clone();
        let webhook = self.webhook.clone().map(|url| {
            (
                url,
                self.http.clone(),
                self.token.clone(),
                self.ctx.account.clone(),
            )
        });
        let sid = new_sid("NO");
        let now = time::now();
        // Evidence, not part of the message's handling: a full queue (the database far
        // behind) drops the alert, counted and logged, rather than hold up the webhook.
        if let Err(e) = self.queue.try_send((sid.clone(), now, alert.clone())) {
            metrics.store_error("alert");
            tracing::warn!(code = alert.code, reason = %e, "an alert was not stored");
        }
        let Some((url, http, token, account)) = webhook else {
            return;
        };
        tokio::spawn(async move {
            // Twilio's debugger webhook: the event's fields, its detail as JSON in Payload.
            let payload = json!({
                "resource_sid": alert.resource,
                "service_sid": alert.service,
                "error_code": alert.code_text(),
                "more_info": more_info(alert.code),
                "alert_text": alert.text,
            });
            let form = vec![
                ("AccountSid".to_owned(), account),
                ("Sid".to_owned(), sid.clone()),
                ("Level".to_owned(), level(alert.code).to_uppercase()),
                ("Timestamp".to_owned(), time::format(now)),
                ("PayloadType".to_owned(), "application/json".to_owned()),
                ("Payload".to_owned(), payload.to_string()),
            ];
            let outcome = match super::hooks::post_signed(
                &http,
                &token,
                &url,
                &form,
                std::time::Duration::from_secs(5),
                Some(&sid),
            )
            .await
            {
                Ok(s) if (200..300).contains(&s) => "delivered",
                Ok(s) => {
                    tracing::warn!(url = %url, status = s, "the debugger webhook refused an alert");
                    "failed"
                }
                Err(e) => {
                    tracing::warn!(url = %url, reason = %e, "the debugger webhook failed");
                    "failed"
                }
            };
            metrics.callback("debugger", outcome);
        });
    }

    /// Deletes alerts raised before `before` (unix seconds).
    pub(crate) async fn purge(&self, before: i64) -> Result<u64, crate::DbError> {
        self.sql
            .run_relaxed(move |tx| {
                tx.execute(
                    "DELETE FROM proxy_alerts WHERE date_created < ?1",
                    &[before.into()],
                )
            })
            .await
    }
}

fn more_info(code: u32) -> String {
    format!("https://www.twilio.com/docs/errors/{code}")
}

const ALERT: &str =
    "SELECT seq, sid, error_code, log_level, alert_text, request_method, request_url,
    request_variables, resource_sid, service_sid, date_created FROM proxy_alerts";

fn alert_json(ctx: &Ctx, r: &Row) -> Value {
    let t = |i: usize| r.get(i).and_then(Val::owned_text);
    let o = |i: usize| t(i).map_or(Value::Null, Value::String);
    let date = r
        .get(10)
        .and_then(Val::int)
        .map_or(Value::Null, |s| Value::String(time::format(s)));
    let sid = t(1).unwrap_or_default();
    let code = t(2).unwrap_or_default();
    json!({
        "sid": sid,
        "account_sid": ctx.account,
        "alert_text": o(4),
        "api_version": "2010-04-01",
        "date_created": date,
        "date_generated": date,
        "date_updated": date,
        "error_code": code,
        "log_level": o(3),
        "more_info": more_info(code.parse().unwrap_or(0)),
        "request_method": o(5),
        "request_url": o(6),
        "request_variables": o(7),
        "resource_sid": o(8),
        "response_body": Value::Null,
        "response_headers": Value::Null,
        "request_headers": Value::Null,
        "service_sid": o(9),
        "url": ctx.url(&format!("Alerts/{sid}")),
    })
}

/// A Monitor date filter: `YYYY-MM-DD` or `YYYY-MM-DDThh:mm:ssZ`.
fn date_filter(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(v) = value else { return Ok(None) };
    let full = if v.len() == 10 {
        format!("{v}T00:00:00Z")
    } else {
        v.to_owned()
    };
    time::parse(&full).map(Some).ok_or_else(|| {
        ApiError::invalid(format!(
            "{name} {v:?} is not a date (YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ)"
        ))
    })
}

/// `GET /v1/Alerts`: newest first, filtered by `LogLevel`, `StartDate`, `EndDate`.
pub(crate) async fn list(State(app): State<Arc<App>>, uri: OriginalUri) -> Response {
    match list_page(&app, &uri).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn list_page(app: &App, uri: &OriginalUri) -> Result<Response, ApiError> {
    let q = super::api::query_fields(uri)?;
    let req = super::api::page_req(uri.query())?;
    let level = q.get("LogLevel").map(str::to_owned);
    if let Some(l) = &level {
        if !["error", "warning", "notice", "debug"].contains(&l.as_str()) {
            return Err(ApiError::invalid(format!(
                "LogLevel {l:?} is not one of error, warning, notice, debug"
            )));
        }
    }
    let start = date_filter("StartDate", q.get("StartDate"))?.unwrap_or(i64::MIN);
    // An end date alone means the whole day.
    let end = match q.get("EndDate") {
        Some(v) if v.len() == 10 => date_filter("EndDate", Some(v))?.map(|d| d + 86_400),
        v => date_filter("EndDate", v)?.map(|d| d + 1),
    }
    .unwrap_or(i64::MAX);
    let ctx = app.proxy().ctx.clone();
    let page = app
        .proxy()
        .sql
        .run_relaxed(move |tx| {
            let after = req.after.unwrap_or(i64::MAX);
            let mut rows = tx.query(
                &format!(
                    "{ALERT} WHERE (?1 = '' OR log_level = ?1) AND date_created >= ?2 AND date_created < ?3
                     AND seq < ?4 ORDER BY seq DESC LIMIT ?5"
                ),
                &[
                    level.unwrap_or_default().into(),
                    start.into(),
                    end.into(),
                    after.into(),
                    (req.size + 1).into(),
                ],
            )?;
            let next = if rows.len() as i64 > req.size {
                rows.truncate(req.size as usize);
                rows.last().and_then(|r| r.first().and_then(Val::int))
            } else {
                None
            };
            Ok::<_, ApiError>(super::store::Page {
                rows: rows.iter().map(|r| alert_json(&ctx, r)).collect(),
                next,
            })
        })
        .await?;
    super::api::envelope(app, uri, "alerts", req, page)
}

/// `GET /v1/Alerts/{Sid}`.
pub(crate) async fn fetch(State(app): State<Arc<App>>, Path(sid): Path<String>) -> Response {
    let ctx = app.proxy().ctx.clone();
    let found = app
        .proxy()
        .sql
        .run_relaxed(move |tx| {
            let row = tx.row(&format!("{ALERT} WHERE sid = ?1"), &[sid.as_str().into()])?;
            row.map(|r| alert_json(&ctx, &r))
                .ok_or_else(|| ApiError::not_found(&format!("/Alerts/{sid}")))
        })
        .await;
    match found {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
