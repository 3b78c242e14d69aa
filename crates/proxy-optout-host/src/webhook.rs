//! A webhook request and its answer as plain values, for any HTTP framework, and the checks
//! every Twilio webhook passes before anything in it is believed: the content type, the
//! size, the form, and `X-Twilio-Signature`.

use proxy_optout_twilio::{Form, Validator, CONTENT_TYPE, MAX_FORM_BYTES};

use crate::error::Refusal;

/// The inbound-message webhook's default path.
///
/// ```
/// assert_eq!(proxy_optout_host::WEBHOOK_PATH, "/twilio/sms");
/// ```
pub const WEBHOOK_PATH: &str = "/twilio/sms";

/// The status callback's default path: where Twilio posts delivery updates (and a late
/// 21610).
///
/// ```
/// assert_eq!(proxy_optout_host::STATUS_CALLBACK_PATH, "/twilio/status");
/// ```
pub const STATUS_CALLBACK_PATH: &str = "/twilio/status";

/// The URL to configure as a number's messaging webhook (HTTP POST): `public_url` and
/// `path`, with Twilio's connection overrides asking for two retries on a connection
/// timeout, a read timeout or a 5xx, within a 14 s total (Twilio's budget is 15 s). Without
/// them Twilio retries nothing.
///
/// ```
/// assert_eq!(
///     proxy_optout_host::webhook_url("https://relay.example.com", proxy_optout_host::WEBHOOK_PATH),
///     "https://relay.example.com/twilio/sms#rc=2&rp=ct,rt,5xx&tt=14000",
/// );
/// ```
#[must_use]
pub fn webhook_url(public_url: &str, path: &str) -> String {
    format!("{public_url}{path}#rc=2&rp=ct,rt,5xx&tt=14000")
}

/// One HTTP request, as any framework hands it over: the method, the request target (path
/// and query, exactly as received), the two headers a webhook needs, and the body.
///
/// ```
/// use proxy_optout_host::WebhookRequest;
/// let request = WebhookRequest::new("POST", "/twilio/sms", b"From=%2B1A")
///     .header("Content-Type", "application/x-www-form-urlencoded")
///     .header("X-Twilio-Signature", "abc=");
/// assert_eq!(request.signature(), Some("abc="));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct WebhookRequest<'a> {
    method: &'a str,
    target: &'a str,
    content_type: Option<&'a str>,
    signature: Option<&'a str>,
    body: &'a [u8],
}

impl<'a> WebhookRequest<'a> {
    /// A request with no headers yet.
    ///
    /// ```
    /// let r = proxy_optout_host::WebhookRequest::new("POST", "/twilio/sms?x=1", b"");
    /// assert_eq!(r.target(), "/twilio/sms?x=1");
    /// ```
    #[must_use]
    pub fn new(method: &'a str, target: &'a str, body: &'a [u8]) -> Self {
        WebhookRequest {
            method,
            target,
            content_type: None,
            signature: None,
            body,
        }
    }

    /// Adds a header. Names are matched case-insensitively; only `Content-Type` and
    /// `X-Twilio-Signature` are kept, so a host can pass every header it has.
    ///
    /// ```
    /// let r = proxy_optout_host::WebhookRequest::new("POST", "/", b"").header("x-twilio-signature", "s").header("Accept", "*/*");
    /// assert_eq!(r.signature(), Some("s"));
    /// ```
    #[must_use]
    pub fn header(mut self, name: &str, value: &'a str) -> Self {
        if name.eq_ignore_ascii_case("content-type") {
            self.content_type = Some(value);
        } else if name.eq_ignore_ascii_case("x-twilio-signature") {
            self.signature = Some(value);
        }
        self
    }

    /// The method.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::WebhookRequest::new("POST", "/", b"").method(), "POST");
    /// ```
    #[must_use]
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The path and query, exactly as received.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::WebhookRequest::new("POST", "/a?b", b"").target(), "/a?b");
    /// ```
    #[must_use]
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The path: the target up to its query.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::WebhookRequest::new("POST", "/a?b", b"").path(), "/a");
    /// ```
    #[must_use]
    pub fn path(&self) -> &'a str {
        self.target.split('?').next().unwrap_or(self.target)
    }

    /// `X-Twilio-Signature`, if given.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::WebhookRequest::new("POST", "/", b"").signature(), None);
    /// ```
    #[must_use]
    pub fn signature(&self) -> Option<&'a str> {
        self.signature
    }

    /// The body.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::WebhookRequest::new("POST", "/", b"a=b").body(), b"a=b");
    /// ```
    #[must_use]
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The checks of a Twilio webhook: the content type, the size, the form, and the
    /// signature over `public_url` followed by the target. Returns the form once every
    /// check passed. [`Pipeline::authenticate`](crate::Pipeline::authenticate) runs these
    /// with the pipeline's settings; this is for a handler with its own validator.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] to answer: 415, 413, 400 or 403.
    ///
    /// ```
    /// use proxy_optout_host::WebhookRequest;
    /// let validator = proxy_optout_twilio::Validator::new("token");
    /// let unsigned = WebhookRequest::new("POST", "/twilio/sms", b"a=b").header("Content-Type", "application/x-www-form-urlencoded");
    /// assert_eq!(unsigned.authenticate(&validator, "https://h").unwrap_err().status(), 400);
    /// ```
    pub fn authenticate(
        &self,
        validator: &Validator,
        public_url: &str,
    ) -> Result<Form<'a>, Refusal> {
        let is_form = self
            .content_type
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(Refusal::ContentType {
                content_type: self.content_type.map(str::to_owned),
            });
        }
        if self.body.len() > MAX_FORM_BYTES {
            return Err(Refusal::TooLarge {
                limit: MAX_FORM_BYTES,
            });
        }
        let form = Form::parse(self.body).map_err(Refusal::Form)?;
        // The URL Twilio signed: the configured public base, then the target exactly as
        // received.
        let url = format!("{public_url}{}", self.target);
        match validator.validate_form(&url, self.signature, &form) {
            Ok(()) => Ok(form),
            Err(error) => Err(Refusal::Signature { url, error }),
        }
    }
}

/// The answer to a webhook, as any framework sends it: a status, its headers, a body.
///
/// ```
/// use proxy_optout_host::WebhookResponse;
/// let ok = WebhookResponse::twiml("<Response/>".into());
/// assert_eq!(ok.status(), 200);
/// assert_eq!(ok.headers()[0], ("Content-Type", "text/xml; charset=utf-8".to_owned()));
/// assert_eq!(ok.body(), "<Response/>");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookResponse {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    refusal: Option<&'static str>,
}

impl WebhookResponse {
    /// 200 with a TwiML body.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::WebhookResponse::twiml(String::new()).status(), 200);
    /// ```
    #[must_use]
    pub fn twiml(body: String) -> Self {
        WebhookResponse {
            status: 200,
            headers: vec![("Content-Type", CONTENT_TYPE.to_owned())],
            body,
            refusal: None,
        }
    }

    /// The answer to a refusal: its status and words, `Retry-After: 1` with a 503.
    ///
    /// ```
    /// let r = proxy_optout_host::WebhookResponse::refused(&proxy_optout_host::Refusal::TooLarge { limit: 10 });
    /// assert_eq!(r.status(), 413);
    /// assert!(r.body().contains("10-byte limit"));
    /// ```
    #[must_use]
    pub fn refused(refusal: &Refusal) -> Self {
        let mut headers = vec![("Content-Type", "text/plain; charset=utf-8".to_owned())];
        if refusal.status() == 503 {
            headers.push(("Retry-After", "1".to_owned()));
        }
        WebhookResponse {
            status: refusal.status(),
            headers,
            body: refusal.body(),
            refusal: Some(refusal.label()),
        }
    }

    /// A plain-text answer for a path or method the pipeline does not serve.
    pub(crate) fn plain(status: u16, text: String, label: &'static str) -> Self {
        WebhookResponse {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".to_owned())],
            body: text + "\n",
            refusal: Some(label),
        }
    }

    /// The HTTP status.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::WebhookResponse::twiml(String::new()).status(), 200);
    /// ```
    #[must_use]
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers to send.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::WebhookResponse::twiml(String::new()).headers().len(), 1);
    /// ```
    #[must_use]
    pub fn headers(&self) -> &[(&'static str, String)] {
        &self.headers
    }

    /// The body.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::WebhookResponse::twiml("x".into()).body(), "x");
    /// ```
    #[must_use]
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The refusal's label, if it is one.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::WebhookResponse::twiml("x".into()).refusal(), None);
    /// ```
    #[must_use]
    pub fn refusal(&self) -> Option<&'static str> {
        self.refusal
    }

    /// The parts, to build the framework's own response without copying the body.
    ///
    /// ```
    /// let (status, _, body) = proxy_optout_host::WebhookResponse::twiml("x".into()).into_parts();
    /// assert_eq!((status, body.as_str()), (200, "x"));
    /// ```
    #[must_use]
    pub fn into_parts(self) -> (u16, Vec<(&'static str, String)>, String) {
        (self.status, self.headers, self.body)
    }
}
