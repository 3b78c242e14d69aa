//! A client that plays Twilio against a running server: it signs and posts inbound-message
//! webhooks and calls the Proxy API (HTTP Basic, as Twilio's clients do). The demo uses it; the tests and the load example include
//! this file (`#[path]`), so it is nobody's public API.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use proxy_optout_twilio::{sign, Form};

use proxy_relay::{Session, WEBHOOK_PATH};

/// Plays Twilio against a running server: signs and posts inbound-message webhooks, and
/// calls the Proxy API.
///
#[derive(Debug)]
pub struct TwilioClient {
    http: reqwest::Client,
    base: String,
    public_url: String,
    auth_token: String,
    account_sid: String,
    counter: AtomicU64,
}

/// The form Twilio posts for an inbound SMS `from` → `to` (the fields it always sends,
/// empty geo fields included).
///
#[must_use]
pub fn message_form(sid: &str, from: &str, to: &str, body: &str) -> Form<'static> {
    Form::from_pairs([
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("From", from),
        ("To", to),
        ("Body", body),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("FromCity", ""),
        ("ApiVersion", "2010-04-01"),
    ])
}

/// One webhook's answer.
///
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body (TwiML on success).
    pub body: String,
}

impl Answer {
    /// The text of the first `<Message>` in the TwiML, unescaped enough for display.
    ///
    #[must_use]
    pub fn reply(&self) -> Option<String> {
        let start = self.body.find("<Message")?;
        let open_end = start + self.body[start..].find('>')? + 1;
        let close = open_end + self.body[open_end..].find("</Message>")?;
        Some(
            self.body[open_end..close]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        )
    }
}

impl TwilioClient {
    /// A client for the server at `base` (where to connect) whose webhooks Twilio would sign
    /// for `public_url`; it calls the Proxy API as `account_sid` with `auth_token`.
    ///
    #[must_use]
    pub fn new(base: &str, public_url: &str, auth_token: &str, account_sid: &str) -> Self {
        TwilioClient {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            public_url: public_url.trim_end_matches('/').to_owned(),
            auth_token: auth_token.to_owned(),
            account_sid: account_sid.to_owned(),
            counter: AtomicU64::new(0),
        }
    }

    /// A fresh `MessageSid` (`SM` and 32 hex digits).
    ///
    #[must_use]
    pub fn next_sid(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let salt = uuid::Uuid::new_v4().as_u128() as u64;
        format!("SM{salt:016x}{n:016x}")
    }

    /// The form Twilio would post for a message `from` → `to`.
    ///
    #[must_use]
    pub fn message_form(&self, sid: &str, from: &str, to: &str, body: &str) -> Form<'static> {
        message_form(sid, from, to, body)
    }

    /// Posts `form` to `path`, signed with `signature` (`None`: the right one for the form).
    ///
    /// # Errors
    ///
    /// The HTTP client's error.
    pub async fn post_form(
        &self,
        path: &str,
        form: &Form<'_>,
        signature: Option<&str>,
    ) -> Result<Answer, reqwest::Error> {
        let url = format!("{}{path}", self.public_url);
        let signature = match signature {
            Some(s) => s.to_owned(),
            None => sign(&self.auth_token, &url, form),
        };
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(form.encode())
            .send()
            .await?;
        Ok(Answer {
            status: response.status().as_u16(),
            body: response.text().await?,
        })
    }

    /// Sends one message `from` → `to` as a signed webhook with a fresh `MessageSid`.
    ///
    /// # Errors
    ///
    /// The HTTP client's error.
    pub async fn message(
        &self,
        from: &str,
        to: &str,
        body: &str,
    ) -> Result<Answer, reqwest::Error> {
        let form = self.message_form(&self.next_sid(), from, to, body);
        self.post_form(WEBHOOK_PATH, &form, None).await
    }

    /// A Proxy API call: `method` on `/v1/{path}` with form `fields`, authenticated.
    ///
    /// # Errors
    ///
    /// The HTTP client's error, or the server's answer when it is not 2xx.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
        let request = self
            .http
            .request(method, format!("{}/v1/{path}", self.base))
            .basic_auth(&self.account_sid, Some(&self.auth_token));
        let request = if fields.is_empty() {
            request
        } else {
            request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Form::from_pairs(fields.iter().copied()).encode())
        };
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        if !(200..300).contains(&status) {
            return Err(format!("{path} answered {status}: {text}").into());
        }
        Ok(if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    /// Creates a session between `a` and `b` in the `default` service (the one
    /// `--proxy-numbers` seeds) through the Proxy API, and reads its participants back.
    ///
    /// # Errors
    ///
    /// The HTTP client's error, or the server's answer when it is not 2xx.
    pub async fn create_session(
        &self,
        unique_name: &str,
        a: &str,
        b: &str,
    ) -> Result<Session, Box<dyn std::error::Error + Send + Sync>> {
        let pa = serde_json::json!({"Identifier": a}).to_string();
        let pb = serde_json::json!({"Identifier": b}).to_string();
        let created = self
            .api(
                reqwest::Method::POST,
                "Services/default/Sessions",
                &[
                    ("UniqueName", unique_name),
                    ("Participants", &pa),
                    ("Participants", &pb),
                ],
            )
            .await?;
        let mut session: Session = serde_json::from_value(created.clone())?;
        let sid = created["sid"].as_str().unwrap_or_default();
        let listed = self
            .api(
                reqwest::Method::GET,
                &format!("Services/default/Sessions/{sid}/Participants"),
                &[],
            )
            .await?;
        session.participants = serde_json::from_value(listed["participants"].clone())?;
        Ok(session)
    }

    /// The HTTP client (for calls this type has no helper for).
    ///
    #[must_use]
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}
