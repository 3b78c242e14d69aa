//! `proxy-relay demo`: the server on a temporary SQLite file, a rider/driver conversation
//! through real signed webhooks over HTTP, one line per step. Also the client the tests use
//! to play Twilio.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use proxy_optout_twilio::{sign, Form};

use crate::config::{Config, SenderConfig};
use crate::db::Database;
use crate::sender::{MemorySender, Sender};
use crate::server::{Server, WEBHOOK_PATH};
use crate::sessions::Session;

/// Plays Twilio against a running server: signs and posts inbound-message webhooks, and
/// calls the admin API.
///
/// ```
/// let c = proxy_relay::demo::TwilioClient::new("http://127.0.0.1:8080", "http://127.0.0.1:8080", "token", "0123456789abcdef");
/// assert!(c.next_sid().starts_with("SM"));
/// ```
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
/// ```
/// let form = proxy_relay::demo::message_form("SM1", "+1A", "+1P", "hi");
/// assert_eq!(form.get("FromCity"), Some(""));
/// ```
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
/// ```
/// let a = proxy_relay::demo::Answer { status: 200, body: proxy_optout_twilio::EMPTY.into() };
/// assert!(a.reply().is_none());
/// ```
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
    /// ```
    /// let a = proxy_relay::demo::Answer { status: 200, body: "<Response><Message>hi &amp; bye</Message></Response>".into() };
    /// assert_eq!(a.reply().as_deref(), Some("hi & bye"));
    /// ```
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
    /// ```
    /// let c = proxy_relay::demo::TwilioClient::new("http://127.0.0.1:1", "https://relay.example.com", "t", "a");
    /// # let _ = c;
    /// ```
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
    /// ```
    /// # let c = proxy_relay::demo::TwilioClient::new("http://x", "http://x", "t", "a");
    /// assert_eq!(c.next_sid().len(), 34);
    /// ```
    #[must_use]
    pub fn next_sid(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let salt = uuid::Uuid::new_v4().as_u128() as u64;
        format!("SM{salt:016x}{n:016x}")
    }

    /// The form Twilio would post for a message `from` → `to`.
    ///
    /// ```
    /// # let c = proxy_relay::demo::TwilioClient::new("http://x", "http://x", "t", "a");
    /// let form = c.message_form("SM1", "+1A", "+1P", "hi");
    /// assert_eq!(form.get("Body"), Some("hi"));
    /// ```
    #[must_use]
    pub fn message_form(&self, sid: &str, from: &str, to: &str, body: &str) -> Form<'static> {
        message_form(sid, from, to, body)
    }

    /// Posts `form` to `path`, signed with `signature` (`None`: the right one for the form).
    ///
    /// # Errors
    ///
    /// The HTTP client's error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// # let server = proxy_relay::Server::start(&config, None).await?;
    /// # let c = proxy_relay::demo::TwilioClient::new(&server.url(), &server.url(), "t", "0123456789abcdef");
    /// let form = c.message_form(&c.next_sid(), "+1A", "+1P", "hi");
    /// assert_eq!(c.post_form(proxy_relay::WEBHOOK_PATH, &form, None).await?.status, 200);
    /// assert_eq!(c.post_form(proxy_relay::WEBHOOK_PATH, &form, Some("forged")).await?.status, 403);
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// # let server = proxy_relay::Server::start(&config, None).await?;
    /// # let c = proxy_relay::demo::TwilioClient::new(&server.url(), &server.url(), "t", "0123456789abcdef");
    /// let answer = c.message("+1A", "+1P", "STOP").await?;
    /// assert!(answer.reply().unwrap().contains("unsubscribed"));
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// # let server = proxy_relay::Server::start(&config, None).await?;
    /// # let c = proxy_relay::demo::TwilioClient::new(&server.url(), &server.url(), "t", "0123456789abcdef");
    /// let s = c.create_session("ride-1", "+1A", "+1B").await.map_err(|e| e.to_string())?;
    /// assert_eq!(s.participants.len(), 2);
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
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
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("r.db");
    /// # let cli = <proxy_relay::Cli as clap::Parser>::parse_from(["proxy-relay", "--listen", "127.0.0.1:0",
    /// #     "--database", db.to_str().unwrap(), "--auth-token", "t", "--admin-token", "0123456789abcdef"]);
    /// # let config = proxy_relay::Config::from_args(&cli.serve)?;
    /// # let server = proxy_relay::Server::start(&config, None).await?;
    /// # let c = proxy_relay::demo::TwilioClient::new(&server.url(), &server.url(), "t", "0123456789abcdef");
    /// let r = c.http().get(format!("{}/readyz", server.url())).send().await?;
    /// assert_eq!(r.status(), 200);
    /// # server.shutdown().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

struct Step<'a> {
    n: usize,
    sender: &'a MemorySender,
    before: usize,
}

impl Step<'_> {
    fn sent(&self) -> Vec<String> {
        self.sender.sent()[self.before..]
            .iter()
            .map(|m| format!("{} (from {})", m.to, m.from))
            .collect()
    }
}

fn check(ok: bool, n: usize, what: &str) -> Result<(), Box<dyn std::error::Error>> {
    if ok {
        Ok(())
    } else {
        Err(format!("step {n} did not go as expected: {what}").into())
    }
}

fn short(text: &str) -> String {
    let mut s: String = text.chars().take(48).collect();
    if text.chars().count() > 48 {
        s.push('…');
    }
    s
}

/// Runs the demo and prints one line per step.
///
/// # Errors
///
/// The first step that did not go as expected, or a start-up failure.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// proxy_relay::demo::run().await?; // prints one line per step
/// # Ok(()) }
/// ```
pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let auth_token = uuid::Uuid::new_v4().simple().to_string();
    let admin_token = uuid::Uuid::new_v4().simple().to_string();
    let mut config = crate::Config::from_args(&{
        use clap::Parser;
        crate::Cli::parse_from([
            "proxy-relay",
            "--listen",
            "127.0.0.1:0",
            "--auth-token",
            &auth_token,
            "--admin-token",
            &admin_token,
        ])
        .serve
    })?;
    config.database = Database::Sqlite(dir.path().join("demo.db"));
    config.sender = SenderConfig::Log;
    let sender = Arc::new(MemorySender::new());
    let server = Server::start(&config, Some(sender.clone() as Arc<dyn Sender>)).await?;
    play(&server, &config, &sender, &auth_token, &admin_token).await?;
    server.shutdown().await?;
    Ok(())
}

async fn play(
    server: &Server,
    config: &Config,
    sender: &MemorySender,
    auth_token: &str,
    admin_token: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let url = server.url();
    let client = TwilioClient::new(&url, &url, auth_token, admin_token);
    println!(
        "proxy-relay demo: server on {url}, database {}",
        config.database.redacted()
    );
    let (rider, driver) = ("+15551110001", "+15552220002");
    let session = client
        .create_session("ride-1042", rider, driver)
        .await
        .map_err(|e| e.to_string())?;
    let rider_proxy = session.participants[0].proxy_identifier.clone();
    let driver_proxy = session.participants[1].proxy_identifier.clone();
    println!(
        " 1. session {} (ride-1042): rider {rider} texts {rider_proxy}, driver {driver} texts {driver_proxy}",
        session.sid
    );
    let mut n = 1;
    let say = |who: &str, text: &str, answer: &crate::demo::Answer, step: &Step<'_>| {
        let sent = step.sent();
        let reply = answer.reply().map_or(String::new(), |r| {
            format!("; auto-reply to {who}: \"{}\"", short(&r))
        });
        let forwarded = if sent.is_empty() {
            "not forwarded".to_owned()
        } else {
            format!("forwarded to {}", sent.join(", "))
        };
        println!(
            "{:>2}. {who} → \"{text}\": HTTP {}, {forwarded}{reply}",
            step.n, answer.status
        );
    };

    // 2. An ordinary message is forwarded.
    n += 1;
    let step = Step {
        n,
        sender,
        before: sender.sent().len(),
    };
    let a = client
        .message(rider, &rider_proxy, "I'm at the north entrance")
        .await?;
    say("rider", "I'm at the north entrance", &a, &step);
    check(
        a.status == 200 && step.sent().len() == 1,
        n,
        "forwarded to the driver",
    )?;

    // 3. The driver texts STOP: not forwarded, confirmed, recorded.
    n += 1;
    let step = Step {
        n,
        sender,
        before: sender.sent().len(),
    };
    let a = client.message(driver, &driver_proxy, "STOP").await?;
    say("driver", "STOP", &a, &step);
    check(
        a.status == 200 && step.sent().is_empty() && a.reply().is_some(),
        n,
        "STOP dropped and confirmed",
    )?;

    // 4. The rider writes again: refused with 21610, nothing sent.
    n += 1;
    let step = Step {
        n,
        sender,
        before: sender.sent().len(),
    };
    let refusals = server.app().metrics().refusals("ledger");
    let a = client
        .message(rider, &rider_proxy, "Are you close?")
        .await?;
    say("rider", "Are you close?", &a, &step);
    let refused = server.app().metrics().refusals("ledger") == refusals + 1;
    check(
        a.status == 200 && step.sent().is_empty() && refused,
        n,
        "refused with 21610",
    )?;
    println!("    (the driver opted out of {driver_proxy}: the relay refused the send with 21610)");

    // 5. HELP while opted out: Proxy passes it on; the carrier layer does not answer an
    //    opted-out pair (BEHAVIOUR.md §5).
    n += 1;
    let step = Step {
        n,
        sender,
        before: sender.sent().len(),
    };
    let a = client.message(driver, &driver_proxy, "HELP").await?;
    say("driver", "HELP", &a, &step);
    check(
        a.status == 200 && a.reply().is_none() && step.sent().len() == 1,
        n,
        "HELP passed on, not answered",
    )?;
    println!("    (HELP is passed on to the rider; no help text goes to an opted-out pair)");

    // 6. START: opted back in.
    n += 1;
    let step = Step {
        n,
        sender,
        before: sender.sent().len(),
    };
    let a = client.message(driver, &driver_proxy, "START").await?;
    say("driver", "START", &a, &step);
    check(a.status == 200 && a.reply().is_some(), n, "START confirmed")?;

    // 7. The rider gets through again.
    n += 1;
    let step = Step {
        n,
        sender,
        before: sender.sent().len(),
    };
    let form = client.message_form(
        &client.next_sid(),
        rider,
        &rider_proxy,
        "See you in 2 minutes",
    );
    let a = client.post_form(WEBHOOK_PATH, &form, None).await?;
    say("rider", "See you in 2 minutes", &a, &step);
    check(
        a.status == 200 && step.sent().len() == 1,
        n,
        "forwarded after START",
    )?;

    // 8. Twilio redelivers the same webhook: same answer, nothing sent twice.
    n += 1;
    let step = Step {
        n,
        sender,
        before: sender.sent().len(),
    };
    let again = client.post_form(WEBHOOK_PATH, &form, None).await?;
    println!(
        "{n:>2}. Twilio redelivers step {} (same MessageSid): HTTP {}, {}",
        n - 1,
        again.status,
        if step.sent().is_empty() && again == a {
            "same TwiML, nothing sent again"
        } else {
            "ANSWERED DIFFERENTLY"
        }
    );
    check(
        again == a && step.sent().is_empty(),
        n,
        "redelivery is harmless",
    )?;

    // 9. WhatsApp: keywords are ordinary text there (Proxy filters SMS only).
    n += 1;
    let (wa_rider, wa_driver) = ("whatsapp:+15553330003", "whatsapp:+15554440004");
    let wa = client
        .create_session("order-77", wa_rider, wa_driver)
        .await
        .map_err(|e| e.to_string())?;
    let step = Step {
        n,
        sender,
        before: sender.sent().len(),
    };
    let a = client
        .message(wa_rider, &wa.participants[0].proxy_identifier, "stop")
        .await?;
    say("WhatsApp customer", "stop", &a, &step);
    check(
        a.status == 200 && step.sent().len() == 1 && a.reply().is_none(),
        n,
        "WhatsApp passes keywords through",
    )?;

    // 10. A forged webhook: refused, nothing happens.
    n += 1;
    let step = Step {
        n,
        sender,
        before: sender.sent().len(),
    };
    let form = client.message_form(&client.next_sid(), rider, &rider_proxy, "send me your code");
    let a = client
        .post_form(WEBHOOK_PATH, &form, Some("Zm9yZ2VkIHNpZ25hdHVyZSEhISE="))
        .await?;
    println!(
        "{n:>2}. forged webhook (bad X-Twilio-Signature): HTTP {}, {}",
        a.status,
        if step.sent().is_empty() {
            "nothing forwarded"
        } else {
            "FORWARDED"
        }
    );
    check(
        a.status == 403 && step.sent().is_empty(),
        n,
        "forged request refused",
    )?;

    println!("demo finished: {n} steps as expected");
    Ok(())
}
