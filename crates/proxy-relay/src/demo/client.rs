//! A client that plays Twilio against a running server: it signs and posts inbound-message
//! webhooks and calls the admin API. The demo uses it; the tests and the load example include
//! this file (`#[path]`), so it is nobody's public API.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use proxy_optout_twilio::{sign, Form};

use proxy_relay::{Session, WEBHOOK_PATH};

/// Plays Twilio against a running server: signs and posts inbound-message webhooks, and
/// calls the admin API.
///
#[derive(Debug)]
pub struct TwilioClient {
    http: reqwest::Client,
    base: String,
    public_url: String,
    auth_token: String,
    admin_token: String,
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
    /// for `public_url`.
    ///
    #[must_use]
    pub fn new(base: &str, public_url: &str, auth_token: &str, admin_token: &str) -> Self {
        TwilioClient {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            public_url: public_url.trim_end_matches('/').to_owned(),
            auth_token: auth_token.to_owned(),
            admin_token: admin_token.to_owned(),
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

    /// Creates a session between `a` and `b` through the admin API.
    ///
    /// # Errors
    ///
    /// The HTTP client's error, or the server's answer when it is not 201.
    pub async fn create_session(
        &self,
        unique_name: &str,
        a: &str,
        b: &str,
    ) -> Result<Session, Box<dyn std::error::Error + Send + Sync>> {
        let response = self
            .http
            .post(format!("{}/v1/sessions", self.base))
            .bearer_auth(&self.admin_token)
            .json(&serde_json::json!({
                "unique_name": unique_name,
                "participants": [{"identifier": a}, {"identifier": b}],
            }))
            .send()
            .await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        if status != 201 {
            return Err(format!("creating the session answered {status}: {text}").into());
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// The HTTP client (for calls this type has no helper for).
    ///
    #[must_use]
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}
