//! The Twilio webhooks: inbound messages (`/twilio/sms`) and status callbacks
//! (`/twilio/status`). Each is authenticated (content type, size, form, signature) before
//! anything is believed; an inbound message is then handled by the [`pipeline`](crate::pipeline)
//! in a task of its own.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use proxy_optout_twilio::{
    Form, InboundMessage, StatusCallback, Validator, CONTENT_TYPE, EMPTY, MAX_FORM_BYTES,
};

use crate::app::App;
use crate::http::error::{CallbackRefusal, WebhookRefusal};
use crate::inbound::Message;
use crate::pipeline::{self, Delivery, Failure, Handled};

/// The inbound-message webhook's path, relative to the public URL.
///
/// ```
/// assert_eq!(proxy_relay::WEBHOOK_PATH, "/twilio/sms");
/// ```
pub const WEBHOOK_PATH: &str = "/twilio/sms";

/// Where Twilio posts delivery updates (and a late 21610).
///
/// ```
/// assert_eq!(proxy_relay::STATUS_CALLBACK_PATH, "/twilio/status");
/// ```
pub const STATUS_CALLBACK_PATH: &str = "/twilio/status";

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(WEBHOOK_PATH, post(inbound))
        .route(STATUS_CALLBACK_PATH, post(status))
}

fn twiml(body: String) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// A Twilio webhook's checks, for any handler: the content type, the size (the body as axum
/// read it, under a [`MAX_FORM_BYTES`] limit), the form, and `X-Twilio-Signature` over
/// `public_url` followed by the path and query exactly as received. Returns the form once
/// every check passed.
pub(crate) fn authenticate<'b>(
    validator: &Validator,
    public_url: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &'b Result<Bytes, BytesRejection>,
) -> Result<Form<'b>, WebhookRefusal> {
    if !is_form(headers) {
        return Err(WebhookRefusal::ContentType);
    }
    let body = match body {
        Ok(b) => b,
        Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_))) => {
            return Err(WebhookRefusal::TooLarge {
                limit: MAX_FORM_BYTES,
            })
        }
        Err(e) => return Err(WebhookRefusal::Body(e.body_text())),
    };
    let form = Form::parse(body).map_err(WebhookRefusal::Form)?;
    // The URL Twilio signed: the configured public base, then the target exactly as received.
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{public_url}{target}");
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    match validator.validate_form(&url, signature, &form) {
        Ok(()) => Ok(form),
        Err(error) => Err(WebhookRefusal::Signature { url, error }),
    }
}

async fn inbound(
    State(app): State<Arc<App>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let message = {
        let form = match authenticate(app.validator(), app.public_url(), &uri, &headers, &body) {
            Ok(f) => f,
            Err(r) => return r.into_response(),
        };
        match InboundMessage::from_form(&form) {
            Ok(m) => Message::from_webhook(&m),
            Err(e) => return WebhookRefusal::Fields(e).into_response(),
        }
    };
    // The message is handled in its own task: if Twilio gives up and closes the connection,
    // hyper drops this handler, but the effects already begun (a ledger write, a send) still
    // finish and the answer is still stored for the retry. Shutdown waits for these tasks.
    let task = app.tasks().spawn({
        let app = app.clone();
        async move { handle(&app, message).await }
    });
    task.await
        .unwrap_or_else(|_| WebhookRefusal::Panicked.into_response())
}

/// Handles one authenticated message now, or journals it: while the journal holds anything,
/// new messages queue behind it, so a STOP that arrived during an outage is recorded before
/// any later message to that person is relayed.
async fn handle(app: &App, message: Message) -> Response {
    if app.journal().depth() > 0 {
        return journal(app, message, false, "behind").await;
    }
    match pipeline::handle(app, message.clone(), Delivery::Live).await {
        Ok(Handled::Answered(answer) | Handled::Replayed(answer)) => twiml(answer),
        Err(Failure::Never(error)) => WebhookRefusal::Never {
            message_sid: message.id().to_owned(),
            error,
        }
        .into_response(),
        Err(Failure::Later { maybe_sent, cause }) => {
            tracing::warn!(message_sid = message.id(), cause = %cause, "cannot handle the message now; journaling it");
            journal(app, message, maybe_sent, cause.label()).await
        }
    }
}

async fn journal(app: &App, message: Message, maybe_sent: bool, cause: &'static str) -> Response {
    match app.journal().append(&message, maybe_sent).await {
        Ok(()) => {
            app.metrics().journal(match cause {
                "database" => "journaled_database",
                "busy" => "journaled_busy",
                "send" => "journaled_send",
                "ledger" => "journaled_ledger",
                _ => "journaled_behind",
            });
            // Answered: Twilio is done with it. What the TwiML would have carried (the
            // auto-reply) goes through the sender when the journal is replayed.
            twiml(EMPTY.to_owned())
        }
        Err(error) => WebhookRefusal::Journal {
            message_sid: message.id().to_owned(),
            error,
        }
        .into_response(),
    }
}

async fn status(
    State(app): State<Arc<App>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let form = match authenticate(app.validator(), app.public_url(), &uri, &headers, &body) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let callback = match StatusCallback::from_form(&form) {
        Ok(c) => c,
        Err(e) => return WebhookRefusal::Fields(e).into_response(),
    };
    if let Some(proxy_optout::Feedback::Refused { from, to }) = callback.feedback() {
        if let Err(e) = pipeline::refused_later(&app, from, to).await {
            return CallbackRefusal::Ledger(e).into_response();
        }
        tracing::info!(
            message_sid = callback.message_sid(),
            "a status callback reported 21610; opt-out recorded"
        );
    }
    twiml(EMPTY.to_owned())
}

/// The webhook checks of the relay, as a function any axum handler can call: the load
/// example's floor server uses it, so the floor and the relay pay the same for them.
///
/// # Errors
///
/// The refusal as a response (415, 413, 400 or 403), in the server's words.
///
/// ```
/// use axum::http::{HeaderMap, Uri};
/// let validator = proxy_optout_twilio::Validator::new("token");
/// let headers = HeaderMap::new(); // no content type
/// let body = Ok(axum::body::Bytes::from_static(b"a=b"));
/// let refused = proxy_relay::check_webhook(&validator, "http://h", &Uri::from_static("/twilio/sms"), &headers, &body);
/// assert_eq!(refused.unwrap_err().status(), 415);
/// ```
#[allow(clippy::result_large_err)]
pub fn check_webhook<'b>(
    validator: &Validator,
    public_url: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &'b Result<Bytes, BytesRejection>,
) -> Result<Form<'b>, Response> {
    authenticate(validator, public_url, uri, headers, body).map_err(IntoResponse::into_response)
}
