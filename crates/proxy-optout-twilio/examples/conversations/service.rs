//! The Conversations masking service of the example: the pre-event and post-event webhooks,
//! answered with Proxy's opt-out rules, with the ledger and the participants' bindings in
//! one SQLite file. The example's `main` serves it;
//! the test `tests/conversations_service.rs` includes this file and drives it over loopback
//! with requests signed by twilio-python.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use proxy_optout::{CarrierMode, Relay, RelayCore};
use proxy_optout_sqlite::SqliteStore;
use proxy_optout_twilio::{
    answer_for, answer_without_binding, opted_out, Binding, BindingStore, CachedBinding,
    ConversationRoute, ConversationsEvent, Form, PreEventAnswer, Source, Validator,
};

/// Where Conversations posts the pre-event and post-event webhooks.
pub const PRE: &str = "/conversations/pre";
pub const POST: &str = "/conversations/post";

/// What the service did besides answering: the texts it would send through the REST API
/// (STOP/START confirmations, in Emulate mode) and the chat messages it flagged.
#[derive(Debug, Default)]
pub struct Effects {
    pub texts: Vec<(String, String, String)>,
    pub flagged: Vec<(String, Vec<String>)>,
}

/// A message handled: its text, and the status and body it was answered with.
type Handled = (String, u16, String);

pub struct Service {
    relay: Relay<SqliteStore>,
    /// The participants' bindings, in the same file as the ledger.
    bindings: SqliteStore,
    validator: Validator,
    public_url: String,
    /// The last message handled per (conversation, participant), with its answer: a pre-event
    /// redelivery (`RetryCount` > 0) of the same text gets the same answer, performed once.
    last: Mutex<HashMap<(String, String), Handled>>,
    pub effects: Mutex<Effects>,
}

impl Service {
    pub fn new(store: SqliteStore, auth_token: &str, public_url: &str, mode: CarrierMode) -> Self {
        Service {
            bindings: store.clone(),
            relay: Relay::new(store).with_core(RelayCore::new().with_mode(mode)),
            validator: Validator::new(auth_token),
            public_url: public_url.trim_end_matches('/').to_owned(),
            last: Mutex::default(),
            effects: Mutex::default(),
        }
    }

    pub fn store(&self) -> &SqliteStore {
        self.relay.store()
    }
}

pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route(PRE, post(pre))
        .route(POST, post(post_event))
        .with_state(service)
}

fn reply(answer: PreEventAnswer<'_>) -> Response {
    let status = StatusCode::from_u16(answer.status()).unwrap_or(StatusCode::FORBIDDEN);
    match answer.content_type() {
        Some(ct) => (status, [("content-type", ct)], answer.body()).into_response(),
        None => status.into_response(),
    }
}

/// Checks `X-Twilio-Signature` over the public URL and the form. (The refusal is returned as
/// the response itself; boxing it would cost an allocation per refused request for nothing.)
#[allow(clippy::result_large_err)]
fn authenticate<'b>(
    service: &Service,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &'b Bytes,
) -> Result<Form<'b>, Response> {
    let form =
        Form::parse(body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())?;
    let url = format!(
        "{}{}",
        service.public_url,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    service
        .validator
        .validate_form(&url, signature, &form)
        .map_err(|e| {
            (
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN),
                e.to_string(),
            )
                .into_response()
        })?;
    Ok(form)
}

/// One SMS (or WhatsApp) participant's message through the relay, its effects performed.
fn relay_message(
    service: &Service,
    route: &ConversationRoute,
    inbound: proxy_optout::Inbound<'_>,
) -> PreEventAnswer<'static> {
    match service.relay.handle_routed(&inbound, Some(route.route())) {
        Ok(out) => {
            for notice in out.notices() {
                // Conversations raises no debugger notice: the host logs Proxy's.
                tracing::info!(code = notice.code(), notice = notice.title(), "notice");
            }
            if let Some(text) = out.reply() {
                service.effects.lock().unwrap().texts.push((
                    text.from().to_owned(),
                    text.to().to_owned(),
                    text.body().to_owned(),
                ));
            }
            answer_for(&out, 403)
        }
        // The ledger failed: fail closed for keywords (reject), publish the rest unchanged.
        Err(e) => match e.outcome() {
            Some(out) => answer_for(out, 403),
            None => PreEventAnswer::Reject { status: 400 },
        },
    }
}

async fn pre(
    State(service): State<Arc<Service>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match authenticate(&service, &uri, &headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let event = match ConversationsEvent::from_form(&form) {
        Ok(e) => e,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let answer = match event {
        ConversationsEvent::MessageAdd(m) => {
            let participant = m.participant_sid.unwrap_or(m.author).to_owned();
            let key = (m.conversation_sid.to_owned(), participant.clone());
            if m.retry_count > 0 {
                if let Some((body, status, payload)) = service.last.lock().unwrap().get(&key) {
                    if body == m.body {
                        // The same request again: the same answer, nothing performed twice.
                        return (
                            StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
                            payload.clone(),
                        )
                            .into_response();
                    }
                }
            }
            let answer = match m.source {
                Source::Sms | Source::WhatsApp => {
                    match service
                        .bindings
                        .binding(m.conversation_sid, &participant)
                        .ok()
                        .flatten()
                    {
                        Some(kept) => {
                            match ConversationRoute::new(m.conversation_sid, &kept.as_binding()) {
                                Ok(route) => relay_message(&service, &route, route.inbound(&m)),
                                Err(_) => {
                                    answer_without_binding(service.relay.classifier(), &m, 403).0
                                }
                            }
                        }
                        // Not known in time: fail closed for keywords.
                        None => answer_without_binding(service.relay.classifier(), &m, 403).0,
                    }
                }
                _ => {
                    // A chat author: learn before publishing whom the message cannot reach.
                    let kept = service
                        .bindings
                        .bindings(m.conversation_sid)
                        .unwrap_or_default();
                    let bindings: Vec<Binding<'_>> =
                        kept.iter().map(CachedBinding::as_binding).collect();
                    let store = service.relay.store();
                    if let Ok(out) = opted_out(service.relay.core(), &bindings, |k| {
                        proxy_optout::OptOutStore::state(store, k)
                    }) {
                        if !out.is_empty() {
                            service.effects.lock().unwrap().flagged.push((
                                m.author.to_owned(),
                                out.iter().map(|b| b.address.to_owned()).collect(),
                            ));
                        }
                    }
                    PreEventAnswer::Publish
                }
            };
            service
                .last
                .lock()
                .unwrap()
                .insert(key, (m.body.to_owned(), answer.status(), answer.body()));
            answer
        }
        ConversationsEvent::ConversationAdd(c) => match c.binding {
            Some(b) => match ConversationRoute::new("new-conversation", &b) {
                Ok(route) => relay_message(&service, &route, route.first_message(&c)),
                Err(_) => PreEventAnswer::Publish,
            },
            None => PreEventAnswer::Publish,
        },
        _ => PreEventAnswer::Publish,
    };
    reply(answer)
}

async fn post_event(
    State(service): State<Arc<Service>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match authenticate(&service, &uri, &headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match ConversationsEvent::from_form(&form) {
        Ok(ConversationsEvent::ParticipantAdded(p)) => {
            if let Some(b) = p.binding {
                let _ = service.bindings.added(
                    p.conversation_sid,
                    p.participant_sid,
                    &CachedBinding::from(&b),
                );
            }
        }
        Ok(ConversationsEvent::ParticipantRemoved(p)) => {
            let _ = service
                .bindings
                .removed(p.conversation_sid, p.participant_sid);
        }
        Ok(ConversationsEvent::DeliveryUpdated(d)) => {
            if let Ok(Some(kept)) = service
                .bindings
                .binding(d.conversation_sid, d.participant_sid)
            {
                if let Some(feedback) = d.feedback(&kept.as_binding()) {
                    if let Err(e) = service.relay.feedback(&feedback) {
                        // Conversations retries post-event webhooks that fail.
                        return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
                    }
                }
            }
        }
        Ok(_) => {}
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
    StatusCode::OK.into_response()
}
