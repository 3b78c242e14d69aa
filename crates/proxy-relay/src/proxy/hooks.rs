//! Proxy's callbacks and the account's STOP-filter flag: the pipeline's [`Policy`] (the flag,
//! STOP filtering per pool number, the `InterceptCallbackUrl`), the `CallbackUrl` after each
//! new interaction and each forward move of its outbound leg, and the debugger alerts every
//! notice becomes.
//!
//! The settings the decision needs are read inside the database job, so they are held in
//! memory: a snapshot of every service's URLs and every pool number's filtering, re-read
//! every `--settings-refresh-ms` and at once after a change through this instance's API.
//!
//! Every request is a form POST signed with `X-Twilio-Signature` over its URL with the
//! account's auth token, as Twilio signs its own webhooks, so a receiver's validation
//! middleware accepts it unchanged.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use proxy_optout::{CarrierMode, Intercept, RelayCore, StopFilterFlag, StopFiltering};
use proxy_optout_host::{
    BoxFuture, Intercepted, Message, Metrics, OutOfSession, Policy, SessionRoute,
};
use proxy_optout_twilio::{sign, Form};
use serde_json::Value;

use super::alerts::{Alert, Alerts};
use super::store::Ctx;
use crate::backend::sql::{Sql, Val};
use crate::config::HookConfig;

/// One service's callback URLs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Urls {
    pub(crate) callback: Option<String>,
    pub(crate) intercept: Option<String>,
    pub(crate) out_of_session: Option<String>,
    /// The relay core its extensions make, when it has any.
    pub(crate) core: Option<Arc<RelayCore>>,
}

/// What the decision and the callbacks read, from memory.
#[derive(Debug, Default)]
struct Snapshot {
    /// Pool number → (its service, its STOP filtering).
    numbers: HashMap<String, (String, StopFiltering)>,
    services: HashMap<String, Urls>,
}

/// A snapshot as read, before its cores are built: each service's extensions column.
#[derive(Debug, Default)]
struct Read {
    numbers: HashMap<String, (String, StopFiltering)>,
    services: HashMap<String, (Urls, Option<String>)>,
}

/// The callbacks, the flag and the snapshot behind them. Shared by the pipeline's policy, the
/// interaction log and the API.
pub(crate) struct Hooks {
    sql: Arc<Sql>,
    ctx: Ctx,
    token: String,
    config: HookConfig,
    snapshot: RwLock<Arc<Snapshot>>,
    mode: CarrierMode,
    /// Cores already built, by their settings' column: re-reading builds none again.
    cores: std::sync::Mutex<HashMap<String, Arc<RelayCore>>>,
    /// (session, identifier, proxy number) → participant SID, for the intercept's fields.
    participants: std::sync::Mutex<HashMap<(String, String, String), String>>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    pub(crate) alerts: Alerts,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The kinds of callback, as metrics and alerts name them.
const CALLBACK: &str = "callback";
const INTERCEPT: &str = "intercept";
const OUT_OF_SESSION: &str = "out_of_session";
/// How many participant SIDs the intercept remembers (then it starts over).
const PARTICIPANTS_KEPT: usize = 65_536;

impl Hooks {
    /// Loads the snapshot once; [`refresh`](Hooks::refresh) keeps it current.
    pub(crate) async fn start(
        sql: Arc<Sql>,
        ctx: Ctx,
        token: String,
        config: HookConfig,
        mode: CarrierMode,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Hooks>, crate::DbError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| crate::DbError::Task(format!("cannot build the HTTP client: {e}")))?;
        let alerts = Alerts::new(
            sql.clone(),
            ctx.clone(),
            token.clone(),
            config.debugger_webhook_url.clone(),
            http.clone(),
            metrics.clone(),
        );
        let hooks = Arc::new(Hooks {
            sql,
            ctx,
            token,
            config,
            snapshot: RwLock::default(),
            mode,
            cores: std::sync::Mutex::default(),
            participants: std::sync::Mutex::default(),
            http,
            metrics,
            alerts,
        });
        hooks.reload().await?;
        Ok(hooks)
    }

    /// Re-reads the services' URLs and the numbers' filtering.
    pub(crate) async fn reload(&self) -> Result<(), crate::DbError> {
        // Reads only: no sync to wait for.
        let snapshot = self
            .sql
            .run_relaxed(|tx| {
                let mut s = Read::default();
                for r in tx.query(
                    "SELECT sid, callback_url, intercept_callback_url, out_of_session_callback_url, extensions FROM proxy_services",
                    &[],
                )? {
                    let t = |i: usize| r.get(i).and_then(Val::owned_text);
                    s.services.insert(
                        t(0).unwrap_or_default(),
                        (
                            Urls {
                                callback: t(1),
                                intercept: t(2),
                                out_of_session: t(3),
                                core: None,
                            },
                            t(4),
                        ),
                    );
                }
                for r in tx.query(
                    "SELECT phone_number, service_sid, stop_filtering FROM proxy_phone_numbers",
                    &[],
                )? {
                    let t = |i: usize| r.get(i).and_then(Val::owned_text).unwrap_or_default();
                    let filtering = if t(2) == "off" {
                        StopFiltering::Off
                    } else {
                        StopFiltering::On
                    };
                    s.numbers.insert(t(0), (t(1), filtering));
                }
                Ok::<_, crate::DbError>(s)
            })
            .await?;
        let snapshot = self.with_cores(snapshot);
        *self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snapshot);
        Ok(())
    }

    /// Builds (or reuses) each service's core from its extensions.
    fn with_cores(&self, read: Read) -> Snapshot {
        let mut cores = self
            .cores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let services = read
            .services
            .into_iter()
            .map(|(sid, (mut urls, column))| {
                if let Some(column) = column {
                    let built = cores.get(&column).cloned().or_else(|| {
                        let e = super::extensions::Extensions::from_column(Some(&column));
                        match e.core(self.mode) {
                            Ok(Some(core)) => {
                                let core = Arc::new(core);
                                cores.insert(column.clone(), core.clone());
                                Some(core)
                            }
                            Ok(None) => None,
                            Err(err) => {
                                tracing::error!(service = %sid, error = %err.message, "a service's extensions cannot be built; it runs without them");
                                None
                            }
                        }
                    });
                    urls.core = built;
                }
                (sid, urls)
            })
            .collect();
        Snapshot {
            numbers: read.numbers,
            services,
        }
    }

    /// Keeps the snapshot current and applies the alerts' retention, until `stop`.
    pub(crate) async fn refresh(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(self.config.settings_refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut purged = tokio::time::Instant::now() - Duration::from_secs(3600);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "could not re-read the callback and filtering settings");
            }
            if purged.elapsed() >= Duration::from_secs(3600) {
                purged = tokio::time::Instant::now();
                let before = super::time::now() - self.config.alert_retention.as_secs() as i64;
                match self.alerts.purge(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "alert retention applied"),
                    Err(e) => tracing::warn!(error = %e, "could not apply the alerts' retention"),
                }
            }
        }
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The service a pool number belongs to.
    pub(crate) fn service_of(&self, number: &str) -> Option<String> {
        self.snapshot().numbers.get(number).map(|(s, _)| s.clone())
    }

    /// A service's callback URLs.
    pub(crate) fn urls(&self, service: &str) -> Urls {
        self.snapshot()
            .services
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether a CallbackUrl may be due: the service of `number` has one, or (a status
    /// change, whose service is not known without a read) any service has one. Without one,
    /// an interaction costs no read-back.
    pub(crate) fn wants_callback(&self, number: Option<&str>) -> bool {
        let snapshot = self.snapshot();
        match number {
            Some(n) => snapshot
                .numbers
                .get(n)
                .and_then(|(service, _)| snapshot.services.get(service))
                .is_some_and(|u| u.callback.is_some()),
            None => snapshot.services.values().any(|u| u.callback.is_some()),
        }
    }

    fn intercept_url(&self, number: &str) -> Option<(String, String)> {
        let snapshot = self.snapshot();
        let (service, _) = snapshot.numbers.get(number)?;
        let url = snapshot.services.get(service)?.intercept.clone()?;
        Some((service.clone(), url))
    }

    /// The SID of the participant `from` on `to` in `session`. It is not in the route, and
    /// never changes while they are in the session, so it is read once and remembered: a
    /// hook's message pays the hook's round trip and, after the first, nothing more.
    async fn participant(&self, session: &str, from: &str, to: &str) -> Option<String> {
        let key = (session.to_owned(), from.to_owned(), to.to_owned());
        if let Some(sid) = self
            .participants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return Some(sid.clone());
        }
        let (s, f, t) = key.clone();
        let found = self
            .sql
            .run_relaxed(move |tx| {
                Ok::<_, crate::DbError>(
                    tx.row(
                        "SELECT sid FROM proxy_participants
                         WHERE session_sid = ?1 AND identifier = ?2 AND proxy_identifier = ?3 AND active = 1",
                        &[s.into(), f.into(), t.into()],
                    )?
                    .and_then(|r| r.first().and_then(Val::owned_text)),
                )
            })
            .await
            .ok()
            .flatten()?;
        let mut known = self
            .participants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() >= PARTICIPANTS_KEPT {
            known.clear();
        }
        known.insert(key, found.clone());
        Some(found)
    }

    /// Whether `from`'s latest session on `to` was closed by its Ttl or DateExpiry.
    pub(crate) async fn session_expired(&self, from: &str, to: &str) -> bool {
        let (f, t) = (from.to_owned(), to.to_owned());
        self.sql
            .run_relaxed(move |tx| {
                Ok::<_, crate::DbError>(
                    tx.row(
                        "SELECT s.closed_reason FROM proxy_participants p
                         JOIN proxy_sessions s ON s.sid = p.session_sid
                         WHERE p.identifier = ?1 AND p.proxy_identifier = ?2
                         ORDER BY p.seq DESC LIMIT 1",
                        &[f.into(), t.into()],
                    )?
                    .and_then(|r| r.first().and_then(Val::owned_text)),
                )
            })
            .await
            .ok()
            .flatten()
            .is_some_and(|reason| reason == "ttl" || reason == "expired")
    }

    /// Posts `form` to `url`, signed; the HTTP status, or why there was none.
    pub(crate) async fn post(
        &self,
        url: &str,
        form: &[(String, String)],
        timeout: Duration,
        idempotency: Option<&str>,
    ) -> Result<u16, String> {
        post_signed(&self.http, &self.token, url, form, timeout, idempotency).await
    }

    /// The `CallbackUrl` for interaction `sid`, if its service has one: read back as stored,
    /// sent with its `interaction…`, `inbound…` and `outbound…` parameters, retried on a
    /// transport failure or a 5xx (the callback is informational, so a repeat is harmless;
    /// its idempotency token says it is one). Off the webhook's path: spawned.
    pub(crate) fn interaction_changed(self: &Arc<Self>, sid: String) {
        let hooks = self.clone();
        tokio::spawn(async move {
            let ctx = hooks.ctx.clone();
            let found = {
                let sid = sid.clone();
                hooks
                    .sql
                    .run_relaxed(move |tx| super::store::interaction(tx, &ctx, &sid))
                    .await
            };
            let interaction = match found {
                Ok(Some(v)) => v,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, interaction = %sid, "cannot read the interaction for its callback");
                    return;
                }
            };
            let service = interaction["service_sid"].as_str().unwrap_or_default();
            let Some(url) = hooks.urls(service).callback else {
                return;
            };
            let form = callback_form(&interaction, true);
            let token = format!(
                "{sid}-{}",
                interaction["outbound_resource_status"]
                    .as_str()
                    .unwrap_or("none")
            );
            let mut wait = Duration::from_millis(500);
            let mut last = String::new();
            for attempt in 1..=hooks.config.callback_attempts {
                match hooks
                    .post(&url, &form, hooks.config.callback_timeout, Some(&token))
                    .await
                {
                    Ok(status) if status < 500 => {
                        hooks.metrics.callback(CALLBACK, "delivered");
                        tracing::debug!(interaction = %sid, status, attempt, "CallbackUrl delivered");
                        return;
                    }
                    Ok(status) => last = format!("answered HTTP {status}"),
                    Err(e) => last = e,
                }
                if attempt < hooks.config.callback_attempts {
                    hooks.metrics.callback(CALLBACK, "retried");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
            hooks.metrics.callback(CALLBACK, "failed");
            tracing::warn!(interaction = %sid, url = %url, reason = %last, "CallbackUrl failed");
            hooks.alerts.raise(
                Alert::new(80908, format!("CallbackUrl {url} failed: {last}"))
                    .resource(&sid)
                    .service(service)
                    .request("POST", &url, &form),
            );
        });
    }
}

/// The fields of the sender's latest session on this number (closed now, or there would be
/// no callback): `session…`, `inboundParticipant…` (the sender), `outboundParticipant…`.
fn previous_session(
    tx: &mut dyn crate::backend::sql::Tx,
    from: &str,
    to: &str,
) -> Result<Vec<(String, String)>, crate::DbError> {
    let Some(row) = tx.row(
        "SELECT s.sid, s.unique_name, s.status, s.closed_reason, s.date_created, s.date_ended,
                p.sid, p.identifier, p.proxy_identifier, o.sid, o.identifier, o.proxy_identifier
         FROM proxy_participants p
         JOIN proxy_sessions s ON s.sid = p.session_sid
         LEFT JOIN proxy_participants o ON o.session_sid = p.session_sid AND o.sid <> p.sid
         WHERE p.identifier = ?1 AND p.proxy_identifier = ?2
         ORDER BY p.seq DESC LIMIT 1",
        &[from.into(), to.into()],
    )?
    else {
        return Ok(Vec::new());
    };
    let t = |i: usize| row.get(i).and_then(Val::owned_text);
    let d = |i: usize| row.get(i).and_then(Val::int).map(super::time::format);
    let fields = [
        ("sessionSid", t(0)),
        ("sessionUniqueName", t(1)),
        ("sessionStatus", t(2)),
        ("sessionClosedReason", t(3)),
        ("sessionDateCreated", d(4)),
        ("sessionDateEnded", d(5)),
        ("inboundParticipantSid", t(6)),
        ("inboundParticipantIdentifier", t(7)),
        ("inboundParticipantProxyIdentifier", t(8)),
        ("outboundParticipantSid", t(9)),
        ("outboundParticipantIdentifier", t(10)),
        ("outboundParticipantProxyIdentifier", t(11)),
    ];
    Ok(fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect())
}

/// Opens the session an out-of-session callback's JSON answer asks for: the sender on the
/// number they texted, and `participantIdentifier` (on `participantProxyIdentifier` or one
/// picked from the pool). The route for the message, or why not.
fn open_session(
    tx: &mut dyn crate::backend::sql::Tx,
    ctx: &Ctx,
    service: &str,
    message: (&str, &str),
    answer: &Value,
) -> Result<SessionRoute, super::ApiError> {
    let (from, to) = message;
    let get = |k: &str| {
        answer.get(k).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let other = get("participantIdentifier")
        .ok_or_else(|| super::ApiError::invalid("participantIdentifier is required"))?;
    let mut b = serde_json::json!({ "Identifier": other });
    if let Some(p) = get("participantProxyIdentifier") {
        b["ProxyIdentifier"] = Value::String(p);
    }
    let a = serde_json::json!({ "Identifier": from, "ProxyIdentifier": to });
    let mut f = vec![
        ("Participants".to_owned(), a.to_string()),
        ("Participants".to_owned(), b.to_string()),
    ];
    for (k, name) in [
        ("uniqueName", "UniqueName"),
        ("mode", "Mode"),
        ("ttl", "Ttl"),
        ("dateExpiry", "DateExpiry"),
    ] {
        if let Some(v) = get(k) {
            f.push((name.to_owned(), v));
        }
    }
    let session = super::store::create_session(tx, ctx, service, &super::store::Fields(f))?;
    let sid = session["sid"].as_str().unwrap_or_default().to_owned();
    let row = tx
        .row(
            "SELECT identifier, proxy_identifier FROM proxy_participants
             WHERE session_sid = ?1 AND identifier = ?2 AND active = 1",
            &[sid.as_str().into(), other.as_str().into()],
        )?
        .ok_or_else(|| super::ApiError::invalid("the session has no second participant"))?;
    let t = |i: usize| row.get(i).and_then(Val::owned_text).unwrap_or_default();
    let (oi, op) = (t(0), t(1));
    SessionRoute::new(sid, from, to, Some((&oi, &op)))
        .map_err(|e| super::ApiError::invalid(e.to_string()))
}

/// Posts a signed form. Redirects are not followed (Twilio does not follow them either).
pub(crate) async fn post_signed(
    http: &reqwest::Client,
    token: &str,
    url: &str,
    form: &[(String, String)],
    timeout: Duration,
    idempotency: Option<&str>,
) -> Result<u16, String> {
    let body = Form::from_pairs(form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let signature = sign(token, url, &body);
    let mut request = http
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .header(
            "user-agent",
            concat!("proxy-relay/", env!("CARGO_PKG_VERSION")),
        )
        .body(body.encode());
    if let Some(t) = idempotency {
        request = request.header("i-twilio-idempotency-token", t);
    }
    match request.send().await {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) if e.is_timeout() => Err(format!("no answer within {timeout:?}")),
        Err(e) => Err(format!("cannot reach it: {e}")),
    }
}

/// An interaction's fields as Proxy's callbacks name them: `interactionSid`, …,
/// `inboundResourceUrl`, and (for the CallbackUrl) the `outbound…` five. Absent values are
/// left out.
pub(crate) fn callback_form(interaction: &Value, outbound: bool) -> Vec<(String, String)> {
    let mut form = Vec::with_capacity(18);
    let mut put = |name: &str, value: &Value| match value {
        Value::String(s) => form.push((name.to_owned(), s.clone())),
        Value::Number(n) => form.push((name.to_owned(), n.to_string())),
        _ => {}
    };
    let v = interaction;
    for (name, field) in [
        ("interactionSid", "sid"),
        ("interactionSessionSid", "session_sid"),
        ("interactionServiceSid", "service_sid"),
        ("interactionAccountSid", "account_sid"),
        ("interactionData", "data"),
        ("interactionType", "type"),
        ("interactionDateCreated", "date_created"),
        ("interactionDateUpdated", "date_updated"),
    ] {
        put(name, &v[field]);
    }
    let legs: &[&str] = if outbound {
        &["inbound", "outbound"]
    } else {
        &["inbound"]
    };
    for leg in legs {
        for (suffix, field) in [
            ("ParticipantSid", "participant_sid"),
            ("ResourceSid", "resource_sid"),
            ("ResourceStatus", "resource_status"),
            ("ResourceType", "resource_type"),
            ("ResourceUrl", "resource_url"),
        ] {
            put(&format!("{leg}{suffix}"), &v[format!("{leg}_{field}")]);
        }
    }
    form
}

/// The interaction a relayed message becomes, named before it is stored so the intercept
/// hook and the log agree: `KI` and the inbound message SID's 32 hex digits, so a
/// redelivered or replayed message names the same one.
pub(crate) fn interaction_sid(message_sid: Option<&str>) -> String {
    match message_sid {
        Some(m) if is_twilio_sid(m) => format!("KI{}", &m[2..]),
        _ => super::store::new_sid("KI"),
    }
}

/// Whether `sid` is 34 ASCII characters, as Twilio's SIDs are: only such a
/// message's Interaction is named after it.
fn is_twilio_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.is_ascii()
}

/// The Interaction a send belongs to, from the send's attempt (which a status callback's URL
/// carries back): a relayed message's forward (`SM…-forward`) belongs to the Interaction
/// named after its inbound message, a MessageInteraction's send (`KI…`) to itself. An
/// auto-reply (`-reply`) or a message without a `MessageSid` belongs to none.
pub(crate) fn interaction_of_attempt(attempt: &str) -> Option<String> {
    // Any other inbound id got a random Interaction SID.
    match attempt.strip_suffix("-forward") {
        Some(inbound) if is_twilio_sid(inbound) => Some(interaction_sid(Some(inbound))),
        Some(_) => None,
        None if is_twilio_sid(attempt) && attempt.starts_with("KI") => Some(attempt.to_owned()),
        None => None,
    }
}

/// The pipeline's policy over the hooks.
pub(crate) struct HookPolicy(pub(crate) Arc<Hooks>);

impl Policy for HookPolicy {
    fn stop_filter_flag(&self) -> StopFilterFlag {
        if self.0.config.respect_stop_filter_flag {
            StopFilterFlag::Respect
        } else {
            StopFilterFlag::Ignore
        }
    }

    fn stop_filtering(&self, proxy_number: &str) -> StopFiltering {
        self.0
            .snapshot()
            .numbers
            .get(proxy_number)
            .map_or(StopFiltering::On, |(_, f)| *f)
    }

    fn core(&self, proxy_number: &str) -> Option<Arc<RelayCore>> {
        let snapshot = self.0.snapshot();
        let (service, _) = snapshot.numbers.get(proxy_number)?;
        snapshot.services.get(service)?.core.clone()
    }

    fn intercepts(&self, proxy_number: &str) -> bool {
        self.0.intercept_url(proxy_number).is_some()
    }

    fn out_of_session<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, OutOfSession> {
        Box::pin(async move {
            let hooks = &self.0;
            let Some(service) = hooks.service_of(message.to()) else {
                return OutOfSession::Default;
            };
            let Some(url) = hooks.urls(&service).out_of_session else {
                return OutOfSession::Default;
            };
            let mut form: Vec<(String, String)> = Vec::with_capacity(20);
            if let Some(m) = message.sid() {
                form.push(("MessageSid".into(), m.to_owned()));
                form.push(("SmsMessageSid".into(), m.to_owned()));
            }
            form.extend([
                ("AccountSid".into(), hooks.ctx.account.clone()),
                ("From".into(), message.from().to_owned()),
                ("To".into(), message.to().to_owned()),
                ("Body".into(), message.body().to_owned()),
                ("NumMedia".into(), message.num_media().to_string()),
                ("ApiVersion".into(), "2010-04-01".into()),
            ]);
            let (from, to) = (message.from().to_owned(), message.to().to_owned());
            match hooks
                .sql
                .run_relaxed(move |tx| previous_session(tx, &from, &to))
                .await
            {
                Ok(previous) => form.extend(previous),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the previous session for the out-of-session callback")
                }
            }
            let body = Form::from_pairs(form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let answered = hooks
                .http
                .post(&url)
                .timeout(hooks.config.callback_timeout)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-twilio-signature", sign(&hooks.token, &url, &body))
                .body(body.encode())
                .send()
                .await;
            let fail = |reason: String| {
                hooks.metrics.callback(OUT_OF_SESSION, "failed");
                tracing::warn!(url = %url, reason = %reason, "OutOfSessionCallbackUrl failed");
                hooks.alerts.raise(
                    Alert::new(80913, format!("OutOfSessionCallbackUrl {url} {reason}"))
                        .resource(message.sid().unwrap_or_default())
                        .service(&service)
                        .request("POST", &url, &form),
                );
                OutOfSession::Default
            };
            let response = match answered {
                Ok(r) => r,
                Err(e) if e.is_timeout() => {
                    return fail(format!(
                        "gave no answer within {:?}",
                        hooks.config.callback_timeout
                    ))
                }
                Err(e) => return fail(format!("cannot be reached: {e}")),
            };
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                return fail(format!("answered HTTP {status}"));
            }
            let kind = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_ascii_lowercase();
            let text = response.text().await.unwrap_or_default();
            if kind.starts_with("application/json") {
                let answer: Value = match serde_json::from_str(&text) {
                    Ok(v) => v,
                    Err(e) => return fail(format!("answered JSON that does not parse: {e}")),
                };
                let ctx = hooks.ctx.clone();
                let (svc, from, to) = (
                    service.clone(),
                    message.from().to_owned(),
                    message.to().to_owned(),
                );
                match hooks
                    .sql
                    .run(move |tx| open_session(tx, &ctx, &svc, (&from, &to), &answer))
                    .await
                {
                    Ok(route) => {
                        hooks.metrics.callback(OUT_OF_SESSION, "session");
                        OutOfSession::Routed(route)
                    }
                    Err(e) => fail(format!(
                        "answered a session that cannot be opened: {} ({})",
                        e.message, e.code
                    )),
                }
            } else if kind.contains("xml") {
                hooks.metrics.callback(OUT_OF_SESSION, "twiml");
                OutOfSession::Answer(text)
            } else {
                hooks.metrics.callback(OUT_OF_SESSION, "ignored");
                OutOfSession::Default
            }
        })
    }

    fn intercept<'a>(&'a self, i: Intercepted<'a>) -> BoxFuture<'a, Intercept> {
        Box::pin(async move {
            let hooks = &self.0;
            let message = i.message();
            let Some((service, url)) = hooks.intercept_url(message.to()) else {
                return Intercept::Allow;
            };
            let participant = hooks
                .participant(i.session(), message.from(), message.to())
                .await;
            let now = super::time::format(super::time::now());
            let sid = interaction_sid(message.sid());
            let data = serde_json::json!({ "body": message.body() }).to_string();
            let mut form: Vec<(String, String)> = vec![
                ("interactionSid".into(), sid.clone()),
                ("interactionSessionSid".into(), i.session().to_owned()),
                ("interactionServiceSid".into(), service.clone()),
                ("interactionAccountSid".into(), hooks.ctx.account.clone()),
                ("interactionData".into(), data),
                ("interactionType".into(), "message".into()),
                ("interactionDateCreated".into(), now.clone()),
                ("interactionDateUpdated".into(), now),
            ];
            if let Some(p) = participant {
                form.push(("inboundParticipantSid".into(), p));
            }
            if let Some(m) = message.sid() {
                form.push(("inboundResourceSid".into(), m.to_owned()));
                form.push(("inboundResourceUrl".into(), hooks.ctx.message_url(m)));
            }
            form.push(("inboundResourceStatus".into(), "delivered".into()));
            form.push(("inboundResourceType".into(), "Message".into()));
            // Beyond Proxy: what the library made of a keyword the flag let through.
            if let Some(category) = i.decision().category() {
                form.push(("keywordCategory".into(), category.as_str().into()));
            }
            if let Some(keyword) = i.decision().keyword() {
                form.push(("keyword".into(), keyword.into()));
            }
            match hooks
                .post(&url, &form, hooks.config.intercept_timeout, Some(&sid))
                .await
            {
                Ok(403) => {
                    hooks.metrics.callback(INTERCEPT, "blocked");
                    Intercept::Block
                }
                Ok(status) if (200..300).contains(&status) => {
                    hooks.metrics.callback(INTERCEPT, "allowed");
                    Intercept::Allow
                }
                answered => {
                    let reason = match answered {
                        Ok(status) => format!("answered HTTP {status}"),
                        Err(e) => e,
                    };
                    hooks.metrics.callback(INTERCEPT, "failed");
                    tracing::warn!(url = %url, reason = %reason, "InterceptCallbackUrl failed; letting the message through");
                    hooks.alerts.raise(
                        Alert::new(
                            80908,
                            format!("InterceptCallbackUrl {url} {reason}; the message was relayed"),
                        )
                        .resource(message.sid().unwrap_or_default())
                        .service(&service)
                        .request("POST", &url, &form),
                    );
                    Intercept::Allow
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::interaction_of_attempt;

    #[test]
    fn a_sends_attempt_names_its_interaction() {
        let sm = "SM0123456789abcdef0123456789abcdef";
        let ki = "KI0123456789abcdef0123456789abcdef";
        for (attempt, interaction) in [
            // A relayed message's forward: the Interaction named after the inbound message.
            (format!("{sm}-forward"), Some(ki)),
            (
                "MM0123456789abcdef0123456789abcdef-forward".to_owned(),
                Some(ki),
            ),
            // A MessageInteraction's send: itself.
            (ki.to_owned(), Some(ki)),
            // An auto-reply has no Interaction leg; an inbound id of another length got a
            // random Interaction SID; anything else names nothing.
            (format!("{sm}-reply"), None),
            ("SM1-forward".to_owned(), None),
            ("KI1".to_owned(), None),
            (sm.to_owned(), None),
            ("-forward".to_owned(), None),
            (String::new(), None),
            // 34 bytes, not ASCII.
            ("SM0123456789abcdef0123456789abcdé-forward".to_owned(), None),
        ] {
            assert_eq!(
                interaction_of_attempt(&attempt).as_deref(),
                interaction,
                "{attempt}"
            );
        }
    }
}
