//! The HTTP side of the Proxy API: paths, Basic authentication, form bodies, list envelopes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use proxy_optout_host::Outgoing;
use proxy_optout_twilio::Form;
use serde_json::{json, Value};

use super::error::ApiError;
use super::store::{self, Ctx, Fields, Page, PageReq};
use crate::app::App;
use crate::backend::sql::Tx;

/// Proxy's cap on a page.
const MAX_PAGE: i64 = 100;
/// The page size when `PageSize` is not given (the clients always send one when paging).
const DEFAULT_PAGE: i64 = 50;

type Answer = Result<Response, ApiError>;

/// The API's routes, behind Basic authentication.
pub(crate) fn routes(app: Arc<App>) -> Router<Arc<App>> {
    let s = "/v1/Services/{service}";
    let c = "/v1/Services/{service}/Sessions/{session}";
    let p = "/v1/Services/{service}/Sessions/{session}/Participants/{participant}";
    Router::new()
        .route("/v1/Services", get(list_services).post(create_service))
        .route(
            s,
            get(fetch_service)
                .post(update_service)
                .delete(delete_service),
        )
        .route(
            &format!("{s}/PhoneNumbers"),
            get(list_numbers).post(add_number),
        )
        .route(
            &format!("{s}/PhoneNumbers/{{number}}"),
            get(fetch_number).post(update_number).delete(remove_number),
        )
        .route(
            &format!("{s}/Sessions"),
            get(list_sessions).post(create_session),
        )
        .route(
            c,
            get(fetch_session)
                .post(update_session)
                .delete(delete_session),
        )
        .route(
            &format!("{c}/Participants"),
            get(list_participants).post(create_participant),
        )
        .route(p, get(fetch_participant).delete(delete_participant))
        .route(
            &format!("{p}/MessageInteractions"),
            get(list_messages).post(create_message),
        )
        .route(
            &format!("{p}/MessageInteractions/{{interaction}}"),
            get(fetch_message),
        )
        .route(&format!("{c}/Interactions"), get(list_interactions))
        .route(
            &format!("{c}/Interactions/{{interaction}}"),
            get(fetch_interaction).delete(delete_interaction),
        )
        .route("/v1/Alerts", get(super::alerts::list))
        .route("/v1/Alerts/{sid}", get(super::alerts::fetch))
        .route(
            "/v1/OptOuts",
            get(super::optouts::export)
                .post(super::optouts::import)
                .layer(axum::extract::DefaultBodyLimit::max(
                    super::optouts::MAX_IMPORT_BYTES,
                )),
        )
        .route_layer(middleware::from_fn_with_state(app, authenticate))
}

async fn authenticate(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    match app.proxy().credentials.check(header) {
        Ok(()) => next.run(request).await,
        Err(e) => {
            app.metrics().rejected("proxy_api_auth");
            e.into_response()
        }
    }
}

/// The query string's parameters.
pub(crate) fn query_fields(uri: &OriginalUri) -> Result<Fields, ApiError> {
    fields(uri.query().unwrap_or("").as_bytes())
}

fn fields(body: &[u8]) -> Result<Fields, ApiError> {
    let form = Form::parse(body).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(Fields(
        form.pairs()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    ))
}

/// Runs `f` in one transaction with the rendering context.
async fn with<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&mut dyn Tx, &Ctx) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let ctx = app.proxy().ctx.clone();
    app.proxy().sql.run(move |tx| f(tx, &ctx)).await
}

/// A service's URLs or a number's filtering changed: this instance applies it at once (the
/// others within `--settings-refresh-ms`).
async fn settings_changed(app: &App) {
    if let Err(e) = app.hooks().reload().await {
        tracing::warn!(error = %e, "could not re-read the callback and filtering settings");
    }
}

fn created(v: Value) -> Answer {
    Ok((StatusCode::CREATED, Json(v)).into_response())
}
fn ok(v: Value) -> Answer {
    Ok(Json(v).into_response())
}
fn deleted(_: ()) -> Answer {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The page asked for in the query.
pub(crate) fn page_req(query: Option<&str>) -> Result<PageReq, ApiError> {
    let form = Form::parse(query.unwrap_or("").as_bytes())
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let number = |name: &str, default: i64| -> Result<i64, ApiError> {
        form.get(name).map_or(Ok(default), |v| {
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::invalid(format!("{name} {v:?} is not a whole number")))
        })
    };
    let size = number("PageSize", DEFAULT_PAGE)?.clamp(1, MAX_PAGE);
    let after = form
        .get("PageToken")
        .map(|t| {
            t.strip_prefix("PT")
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid(format!("PageToken {t:?} is not one this server gave"))
                })
        })
        .transpose()?;
    Ok(PageReq {
        size,
        page: number("Page", 0)?,
        after,
    })
}

/// Proxy's list envelope: the records under `key`, and `meta` with absolute URLs on the
/// public base (the clients follow `next_page_url` verbatim).
pub(crate) fn envelope(
    app: &App,
    uri: &axum::http::Uri,
    key: &str,
    req: PageReq,
    page: Page,
) -> Answer {
    let base = format!("{}{}", app.proxy().ctx.base, uri.path());
    let url_for = |n: i64, token: Option<i64>| {
        let mut u = format!("{base}?PageSize={}&Page={n}", req.size);
        if let Some(t) = token {
            u.push_str(&format!("&PageToken=PT{t}"));
        }
        u
    };
    let meta = json!({
        "page": req.page,
        "page_size": req.size,
        "first_page_url": url_for(0, None),
        // Pages are index ranges after a token; only forward links are kept.
        "previous_page_url": Value::Null,
        "next_page_url": page.next.map(|t| url_for(req.page + 1, Some(t))),
        "url": url_for(req.page, req.after),
        "key": key,
    });
    Ok(Json(json!({ key: page.rows, "meta": meta })).into_response())
}

/// A list endpoint: the page asked for, in Proxy's envelope under `key`.
async fn list(
    app: &App,
    uri: &OriginalUri,
    key: &str,
    f: impl FnOnce(&mut dyn Tx, &Ctx, PageReq) -> Result<Page, ApiError> + Send + 'static,
) -> Answer {
    let req = page_req(uri.query())?;
    let page = with(app, move |tx, ctx| f(tx, ctx, req)).await?;
    envelope(app, uri, key, req, page)
}

async fn list_services(State(app): State<Arc<App>>, uri: OriginalUri) -> Answer {
    list(&app, &uri, "services", move |tx, ctx, req| {
        store::list_services(tx, ctx, req)
    })
    .await
}

async fn create_service(State(app): State<Arc<App>>, body: Bytes) -> Answer {
    let f = fields(&body)?;
    let v = with(&app, move |tx, ctx| store::create_service(tx, ctx, &f)).await?;
    settings_changed(&app).await;
    created(v)
}

async fn fetch_service(State(app): State<Arc<App>>, Path(s): Path<String>) -> Answer {
    ok(with(&app, move |tx, ctx| store::fetch_service(tx, ctx, &s)).await?)
}

async fn update_service(State(app): State<Arc<App>>, Path(s): Path<String>, body: Bytes) -> Answer {
    let f = fields(&body)?;
    let v = with(&app, move |tx, ctx| store::update_service(tx, ctx, &s, &f)).await?;
    settings_changed(&app).await;
    ok(v)
}

async fn delete_service(State(app): State<Arc<App>>, Path(s): Path<String>) -> Answer {
    with(&app, move |tx, _| store::delete_service(tx, &s)).await?;
    settings_changed(&app).await;
    deleted(())
}

async fn list_numbers(
    State(app): State<Arc<App>>,
    Path(s): Path<String>,
    uri: OriginalUri,
) -> Answer {
    list(&app, &uri, "phone_numbers", move |tx, ctx, req| {
        store::list_numbers(tx, ctx, &s, req)
    })
    .await
}

async fn add_number(State(app): State<Arc<App>>, Path(s): Path<String>, body: Bytes) -> Answer {
    let f = fields(&body)?;
    let v = with(&app, move |tx, ctx| store::add_number(tx, ctx, &s, &f)).await?;
    settings_changed(&app).await;
    created(v)
}

async fn fetch_number(State(app): State<Arc<App>>, Path((s, n)): Path<(String, String)>) -> Answer {
    ok(with(&app, move |tx, ctx| store::fetch_number(tx, ctx, &s, &n)).await?)
}

async fn update_number(
    State(app): State<Arc<App>>,
    Path((s, n)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let f = fields(&body)?;
    let v = with(&app, move |tx, ctx| {
        store::update_number(tx, ctx, &s, &n, &f)
    })
    .await?;
    settings_changed(&app).await;
    ok(v)
}

async fn remove_number(
    State(app): State<Arc<App>>,
    Path((s, n)): Path<(String, String)>,
) -> Answer {
    with(&app, move |tx, _| store::remove_number(tx, &s, &n)).await?;
    settings_changed(&app).await;
    deleted(())
}

async fn list_sessions(
    State(app): State<Arc<App>>,
    Path(s): Path<String>,
    uri: OriginalUri,
) -> Answer {
    list(&app, &uri, "sessions", move |tx, ctx, req| {
        store::list_sessions(tx, ctx, &s, req)
    })
    .await
}

async fn create_session(State(app): State<Arc<App>>, Path(s): Path<String>, body: Bytes) -> Answer {
    let f = fields(&body)?;
    created(with(&app, move |tx, ctx| store::create_session(tx, ctx, &s, &f)).await?)
}

async fn fetch_session(
    State(app): State<Arc<App>>,
    Path((s, c)): Path<(String, String)>,
) -> Answer {
    ok(with(&app, move |tx, ctx| store::fetch_session(tx, ctx, &s, &c)).await?)
}

async fn update_session(
    State(app): State<Arc<App>>,
    Path((s, c)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let f = fields(&body)?;
    ok(with(&app, move |tx, ctx| {
        store::update_session(tx, ctx, &s, &c, &f)
    })
    .await?)
}

async fn delete_session(
    State(app): State<Arc<App>>,
    Path((s, c)): Path<(String, String)>,
) -> Answer {
    deleted(with(&app, move |tx, _| store::delete_session(tx, &s, &c)).await?)
}

async fn list_participants(
    State(app): State<Arc<App>>,
    Path((s, c)): Path<(String, String)>,
    uri: OriginalUri,
) -> Answer {
    list(&app, &uri, "participants", move |tx, ctx, req| {
        store::list_participants(tx, ctx, &s, &c, req)
    })
    .await
}

async fn create_participant(
    State(app): State<Arc<App>>,
    Path((s, c)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let f = fields(&body)?;
    created(
        with(&app, move |tx, ctx| {
            store::create_participant(tx, ctx, &s, &c, &f)
        })
        .await?,
    )
}

async fn fetch_participant(
    State(app): State<Arc<App>>,
    Path((s, c, p)): Path<(String, String, String)>,
) -> Answer {
    ok(with(&app, move |tx, ctx| {
        store::fetch_participant(tx, ctx, &s, &c, &p)
    })
    .await?)
}

async fn delete_participant(
    State(app): State<Arc<App>>,
    Path((s, c, p)): Path<(String, String, String)>,
) -> Answer {
    deleted(with(&app, move |tx, _| store::delete_participant(tx, &s, &c, &p)).await?)
}

async fn list_interactions(
    State(app): State<Arc<App>>,
    Path((s, c)): Path<(String, String)>,
    uri: OriginalUri,
) -> Answer {
    list(&app, &uri, "interactions", move |tx, ctx, req| {
        store::list_interactions(tx, ctx, &s, &c, req)
    })
    .await
}

async fn fetch_interaction(
    State(app): State<Arc<App>>,
    Path((s, c, i)): Path<(String, String, String)>,
) -> Answer {
    ok(with(&app, move |tx, ctx| {
        store::fetch_interaction(tx, ctx, &s, &c, &i)
    })
    .await?)
}

async fn delete_interaction(
    State(app): State<Arc<App>>,
    Path((s, c, i)): Path<(String, String, String)>,
) -> Answer {
    deleted(with(&app, move |tx, _| store::delete_interaction(tx, &s, &c, &i)).await?)
}

async fn list_messages(
    State(app): State<Arc<App>>,
    Path((s, c, p)): Path<(String, String, String)>,
    uri: OriginalUri,
) -> Answer {
    list(&app, &uri, "interactions", move |tx, ctx, req| {
        store::list_messages(tx, ctx, &s, &c, &p, req)
    })
    .await
}

async fn fetch_message(
    State(app): State<Arc<App>>,
    Path((s, c, p, i)): Path<(String, String, String, String)>,
) -> Answer {
    ok(with(&app, move |tx, ctx| {
        store::fetch_message(tx, ctx, &s, &c, &p, &i)
    })
    .await?)
}

/// A MessageInteraction: written as `queued`, sent through the pipeline (so a participant
/// who opted out of their proxy number is refused with 21610 and never texted), then its
/// outcome stored. A send without a verdict stays `unknown` rather than being retried: the
/// Messages API has no idempotency key, and a second try could text the person twice.
async fn create_message(
    State(app): State<Arc<App>>,
    Path((s, c, p)): Path<(String, String, String)>,
    body: Bytes,
) -> Answer {
    let f = fields(&body)?;
    let (service, session, participant) = (s.clone(), c.clone(), p.clone());
    let planned = with(&app, move |tx, _| {
        store::plan_message(tx, &service, &session, &participant, &f)
    })
    .await?;
    let out = Outgoing {
        from: planned.from.clone(),
        to: planned.to.clone(),
        body: planned.body.clone(),
        attempt: planned.sid.clone(),
    };
    let (message_sid, status, failure) = match app.pipeline().send(&out).await {
        Ok(leg) => (leg.sid, leg.status.as_str(), None),
        Err(proxy_optout_host::SendFailure::Ledger(e)) => {
            tracing::error!(error = %e, interaction = planned.sid, "the ledger could not be read; not sent");
            (
                None,
                "failed",
                Some(ApiError::new(
                    503,
                    20503,
                    "the opt-out ledger is unavailable; nothing was sent",
                )),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, interaction = planned.sid, "a MessageInteraction's send reached no verdict");
            (None, "unknown", None)
        }
    };
    let sid = planned.sid.clone();
    with(&app, move |tx, _| {
        Ok(store::finish_message(
            tx,
            &sid,
            message_sid.as_deref(),
            status,
        )?)
    })
    .await?;
    if let Some(e) = failure {
        return Err(e);
    }
    let sid = planned.sid;
    created(
        with(&app, move |tx, ctx| {
            store::fetch_message(tx, ctx, &s, &c, &p, &sid)
        })
        .await?,
    )
}
