//! Mounting the pipeline in an axum app: a router of its two webhooks, and an extractor for
//! hosts that write their own handler.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequest, OriginalUri, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use proxy_optout_twilio::MAX_FORM_BYTES;

use crate::error::Refusal;
use crate::message::Message;
use crate::pipeline::Pipeline;
use crate::webhook::{WebhookRequest, WebhookResponse};

impl IntoResponse for WebhookResponse {
    fn into_response(self) -> Response {
        let (status, headers, body) = self.into_parts();
        let mut response = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        )
            .into_response();
        for (name, value) in headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(lower(name)), value);
            }
        }
        response
    }
}

/// The response headers' names, as `HeaderName::from_static` wants them.
fn lower(name: &'static str) -> &'static str {
    match name {
        "Content-Type" => "content-type",
        "Retry-After" => "retry-after",
        other => other,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        WebhookResponse::refused(&self).into_response()
    }
}

/// The request as the pipeline reads it: the method, the target as received (before any
/// `nest` stripped a prefix), the headers and the body. A body over the limit is a 413.
async fn read(request: Request) -> Result<(String, String, HeaderMap, Bytes), Refusal> {
    let (parts, body) = request.into_parts();
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |o| &o.0);
    let target = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    let body = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|e| body_error(&e))?;
    Ok((
        parts.method.as_str().to_owned(),
        target,
        parts.headers,
        body,
    ))
}

/// Over the limit (413), or the body could not be read (400: the client went away, say).
fn body_error(e: &axum::Error) -> Refusal {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return Refusal::TooLarge {
                limit: MAX_FORM_BYTES,
            };
        }
        cause = c.source();
    }
    Refusal::Body {
        reason: e.to_string(),
    }
}

fn webhook_request<'a>(
    method: &'a str,
    target: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
) -> WebhookRequest<'a> {
    headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .fold(WebhookRequest::new(method, target, body), |r, (n, v)| {
            r.header(n, v)
        })
}

impl Pipeline {
    /// The pipeline's two webhooks as an axum router, to `merge` into the host's app or to
    /// `nest` under a prefix: signatures are checked against the
    /// [public URL](crate::PipelineBuilder::public_url) followed by the whole path as Twilio
    /// posted it, prefix included.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
    /// let pipeline = proxy_optout_host::Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
    ///     .auth_token("t").public_url("https://rides.example.com").start().await?;
    /// let app: axum::Router = axum::Router::new()
    ///     .route("/rides", axum::routing::get(|| async { "the host's own routes" }))
    ///     .merge(pipeline.router());
    /// # let _ = app;
    /// # Ok(()) }
    /// ```
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let (sms, status) = self.paths();
        let (inbound, callback) = (self.clone(), self.clone());
        Router::new()
            .route(
                sms,
                post(move |request: Request| async move {
                    match read(request).await {
                        Ok((method, target, headers, body)) => inbound
                            .inbound(webhook_request(&method, &target, &headers, &body))
                            .await
                            .into_response(),
                        Err(refusal) => refusal.into_response(),
                    }
                }),
            )
            .route(
                status,
                post(move |request: Request| async move {
                    match read(request).await {
                        Ok((method, target, headers, body)) => callback
                            .status_callback(webhook_request(&method, &target, &headers, &body))
                            .await
                            .into_response(),
                        Err(refusal) => refusal.into_response(),
                    }
                }),
            )
            .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
    }
}

/// An inbound-message webhook whose content type, size and signature were checked and
/// whose form was parsed, for a host's own axum handler. The state must give a
/// [`Pipeline`] (`FromRef`); a failed check answers the [`Refusal`].
///
/// ```
/// use axum::extract::State;
/// use proxy_optout_host::{Pipeline, TwilioWebhook, WebhookResponse};
///
/// async fn sms(State(pipeline): State<Pipeline>, TwilioWebhook(message): TwilioWebhook) -> WebhookResponse {
///     tracing::info!(from = message.from(), "a text came in");
///     pipeline.handle(message).await
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let ledger = proxy_optout_host::SqliteLedger::open(dir.path().join("o.db")).await?;
/// # let pipeline = Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), proxy_optout_host::LogSender)
/// #     .auth_token("t").public_url("https://rides.example.com").start().await?;
/// let app: axum::Router = axum::Router::new().route("/sms", axum::routing::post(sms)).with_state(pipeline);
/// # let _ = app;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TwilioWebhook(pub Message);

impl<S> FromRequest<S> for TwilioWebhook
where
    Pipeline: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refusal;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let pipeline = Pipeline::from_ref(state);
        let (method, target, headers, body) = read(request).await?;
        pipeline
            .authenticate(&webhook_request(&method, &target, &headers, &body))
            .map(TwilioWebhook)
    }
}
