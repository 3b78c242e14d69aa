//! `proxy-relay demo`: the server on a temporary SQLite file, a rider/driver conversation
//! through real signed webhooks over HTTP, one line per step. Part of the binary, not of the
//! library's API.

use std::sync::Arc;

use proxy_relay::{Config, Database, MemorySender, Sender, SenderConfig, Server, WEBHOOK_PATH};

mod client;

use client::{Answer, TwilioClient};

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

/// Prints the debugger alerts the step raised (read back from the server's Monitor-shaped
/// `GET /v1/Alerts`, where they land a moment after the webhook is answered) and checks that
/// they are exactly `expected`.
async fn notices(
    client: &TwilioClient,
    seen: &mut usize,
    expected: &[&str],
    n: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut new = Vec::new();
    for _ in 0..40 {
        let page = client
            .api(reqwest::Method::GET, "Alerts?PageSize=100", &[])
            .await
            .map_err(|e| e.to_string())?;
        let alerts = page["alerts"].as_array().cloned().unwrap_or_default();
        new = alerts[..alerts.len().saturating_sub(*seen)].to_vec();
        if new.len() >= expected.len() {
            if expected.is_empty() {
                // Nothing expected: one short look is enough to catch a stray one.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    *seen += new.len();
    let codes: Vec<&str> = new
        .iter()
        .rev()
        .filter_map(|a| a["error_code"].as_str())
        .collect();
    for a in new.iter().rev() {
        println!(
            "    debugger: {} {}",
            a["error_code"].as_str().unwrap_or_default(),
            a["alert_text"].as_str().unwrap_or_default()
        );
    }
    check(
        codes == expected,
        n,
        &format!("notices {expected:?}, got {codes:?}"),
    )
}

/// Runs the demo and prints one line per step; the first step that did not go as expected
/// is the error.
pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let auth_token = uuid::Uuid::new_v4().simple().to_string();
    let account_sid = format!("AC{}", uuid::Uuid::new_v4().simple());
    let mut config = Config::from_args(&{
        use clap::Parser;
        proxy_relay::Cli::parse_from([
            "proxy-relay",
            "--listen",
            "127.0.0.1:0",
            "--auth-token",
            &auth_token,
            "--twilio-account-sid",
            &account_sid,
        ])
        .serve
    })?;
    config.database = Database::Sqlite(dir.path().join("demo.db"));
    config.sender = SenderConfig::Log;
    let sender = Arc::new(MemorySender::new());
    let server = Server::start(&config, Some(sender.clone() as Arc<dyn Sender>)).await?;
    play(&server, &config, &sender, &auth_token, &account_sid).await?;
    server.shutdown().await?;
    Ok(())
}

async fn play(
    server: &Server,
    config: &Config,
    sender: &MemorySender,
    auth_token: &str,
    account_sid: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let url = server.url();
    let client = TwilioClient::new(&url, &url, auth_token, account_sid);
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
    let mut seen = 0;
    let say = |who: &str, text: &str, answer: &Answer, step: &Step<'_>| {
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
    notices(&client, &mut seen, &[], n).await?;

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
    notices(&client, &mut seen, &["80901"], n).await?;

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
    notices(&client, &mut seen, &["21610"], n).await?;
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
    notices(&client, &mut seen, &[], n).await?;
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
    // A reply that a forward follows goes through the sender first, so it arrives first.
    let sends = sender.sent()[step.before..].to_vec();
    check(
        a.status == 200
            && sends.len() == 2
            && sends[0].to == driver
            && sends[0].body.contains("re-subscribed")
            && sends[1].body == "START",
        n,
        "START confirmed, then forwarded",
    )?;
    notices(&client, &mut seen, &[], n).await?;
    println!("    (the confirmation to the driver goes out before START reaches the rider)");

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
