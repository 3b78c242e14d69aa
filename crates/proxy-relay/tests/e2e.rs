//! The server over real HTTP on loopback, with a real SQLite file (and the real PostgreSQL
//! server where `PROXY_OPTOUT_PG_URL` is set), sending through a fake Twilio REST API.

mod common;

use std::time::Duration;

use common::client::TwilioClient;
use common::{
    client, config, on_each_database, start_with_twilio, FakeTwilio, TestDb, ACCOUNT_SID,
    AUTH_TOKEN,
};
use proxy_optout::OptState;
use proxy_optout_twilio::{sign, Form, EMPTY};
use proxy_relay::{Server, STATUS_CALLBACK_PATH, WEBHOOK_PATH};

const RIDER: &str = "+15551110001";
const DRIVER: &str = "+15552220002";

on_each_database!(
    conversation,
    a_redelivered_webhook_gets_the_same_answer_and_sends_nothing_twice,
    forged_tampered_unsigned_and_wrong_url_webhooks_change_nothing,
    oversized_and_mistyped_webhooks_are_refused_in_the_servers_words,
    a_store_outage_journals_and_confirms_and_forwards_nothing_until_it_is_back,
    sends_whose_fate_is_unknown_are_looked_up_and_journaled_when_they_run_out,
    every_forward_and_reply_is_created_once_under_provider_faults,
    a_full_sqlite_disk_journals_confirms_nothing_and_is_not_ready,
    health_readiness_and_metrics_answer_without_a_token,
    a_concurrent_redelivery_waits_for_the_first,
    a_small_bounded_load_run_answers_everything_and_keeps_the_last_stop_or_start,
    sends_can_authenticate_with_an_api_key,
    mirror_mode_never_replies_and_follows_the_platform_into_the_ledger,
    a_webhook_whose_caller_hangs_up_is_still_finished_and_answered_on_retry,
    a_restart_in_the_same_process_finds_everything,
);

async fn state(server: &Server, proxy: &str, participant: &str) -> OptState {
    server.app().db().state(proxy, participant).await.unwrap()
}

/// Rows in every table the webhook or the admin API could touch.
async fn snapshot(server: &Server) -> Vec<i64> {
    let mut counts = Vec::new();
    for q in [
        "SELECT count(*) FROM processed_messages",
        "SELECT count(*) FROM opt_out_ledger",
        "SELECT count(*) FROM proxy_services",
        "SELECT count(*) FROM proxy_sessions",
        "SELECT count(*) FROM proxy_sessions WHERE status IN ('open', 'in-progress')",
        "SELECT count(*) FROM proxy_participants WHERE active = 1",
    ] {
        counts.push(server.app().db().scalar(q).await.unwrap());
    }
    counts
}

async fn conversation(db: &TestDb) {
    let fake = FakeTwilio::start().await;
    let server = start_with_twilio(&db.url(), &fake, &[]).await;
    let c = client(&server);
    let session = c.create_session("ride-1", RIDER, DRIVER).await.unwrap();
    let rp = session.participants[0].proxy_identifier.clone();
    let dp = session.participants[1].proxy_identifier.clone();
    assert_eq!(rp, "+15550000100");

    // An ordinary message: forwarded through REST from the driver's proxy number; empty TwiML.
    let a = c
        .message(RIDER, &rp, "I'm at the north entrance")
        .await
        .unwrap();
    assert_eq!((a.status, a.body.as_str()), (200, EMPTY));
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].from.as_str(), sent[0].to.as_str()),
        (dp.as_str(), DRIVER)
    );
    assert_eq!(sent[0].body, "I'm at the north entrance");
    // The status callback URL names the send: the inbound message's SID and `-forward`.
    let callback = sent[0].status_callback.as_deref().unwrap();
    let attempt = callback
        .strip_prefix(&format!(
            "{}{STATUS_CALLBACK_PATH}?attempt=SM",
            server.url()
        ))
        .unwrap_or_else(|| panic!("{callback}"));
    assert!(
        attempt.len() == 32 + "-forward".len() && attempt.ends_with("-forward"),
        "{callback}"
    );

    // STOP: not forwarded, confirmed in TwiML, recorded for (driver's proxy, driver).
    let a = c.message(DRIVER, &dp, "STOP").await.unwrap();
    assert_eq!(a.status, 200);
    assert!(a.reply().unwrap().contains("unsubscribed"), "{}", a.body);
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(state(&server, &dp, DRIVER).await, OptState::OptedOut);

    // The rider again: refused with 21610 by the ledger; Twilio is not even called.
    let calls = fake.calls();
    let a = c.message(RIDER, &rp, "Are you close?").await.unwrap();
    assert_eq!((a.status, a.body.as_str()), (200, EMPTY));
    assert_eq!(fake.calls(), calls);
    assert_eq!(server.app().metrics().refusals("ledger"), 1);

    // HELP while opted out: passed on to the rider, no help text to an opted-out pair.
    let a = c.message(DRIVER, &dp, "HELP").await.unwrap();
    assert_eq!((a.status, a.reply()), (200, None));
    assert_eq!(fake.sent().last().unwrap().to, RIDER);
    assert_eq!(fake.sent().last().unwrap().body, "HELP");

    // START: confirmed, recorded, forwarded. A reply that a forward follows goes through
    // the sender, before the forward, so the order holds (TwiML would arrive after it).
    let before = fake.sent().len();
    let a = c.message(DRIVER, &dp, "START").await.unwrap();
    assert_eq!((a.status, a.body.as_str()), (200, EMPTY));
    let sent = fake.sent();
    assert_eq!(sent.len(), before + 2);
    assert_eq!(
        (sent[before].from.as_str(), sent[before].to.as_str()),
        (dp.as_str(), DRIVER)
    );
    assert!(
        sent[before].body.contains("re-subscribed"),
        "{}",
        sent[before].body
    );
    assert_eq!(
        (sent[before + 1].to.as_str(), sent[before + 1].body.as_str()),
        (RIDER, "START")
    );
    assert_eq!(state(&server, &dp, DRIVER).await, OptState::OptedIn);
    let a = c.message(RIDER, &rp, "See you soon").await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(fake.sent().last().unwrap().body, "See you soon");

    // The platform refuses a send with 21610 (the rider opted out at Twilio directly): the
    // ledger learns it, and the next message is refused without a call.
    fake.refuse(RIDER);
    let before = fake.sent().len();
    let a = c.message(DRIVER, &dp, "2 minutes away").await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(fake.sent().len(), before);
    assert_eq!(state(&server, &rp, RIDER).await, OptState::OptedOut);
    assert_eq!(server.app().metrics().refusals("rest"), 1);
    let calls = fake.calls();
    let a = c.message(DRIVER, &dp, "here now").await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(fake.calls(), calls);

    // A status callback carrying 21610 (a Messaging Service send failing later).
    let cb = Form::from_pairs([
        ("MessageSid", "SM00000000000000000000000000000099"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "21610"),
        ("From", dp.as_str()),
        ("To", DRIVER),
    ]);
    let a = c.post_form(STATUS_CALLBACK_PATH, &cb, None).await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(state(&server, &dp, DRIVER).await, OptState::OptedOut);
    assert_eq!(server.app().metrics().refusals("status_callback"), 1);

    // WhatsApp: keywords pass through as text.
    let wa = c
        .create_session("order-7", "whatsapp:+15553330003", "whatsapp:+15554440004")
        .await
        .unwrap();
    assert_eq!(wa.participants[0].proxy_identifier, "whatsapp:+15550000100");
    let a = c
        .message(
            "whatsapp:+15553330003",
            &wa.participants[0].proxy_identifier,
            "STOP",
        )
        .await
        .unwrap();
    assert_eq!((a.status, a.reply()), (200, None));
    let last = fake.sent().last().unwrap().clone();
    assert_eq!(
        (last.to.as_str(), last.body.as_str()),
        ("whatsapp:+15554440004", "STOP")
    );
    server.shutdown().await.unwrap();
}

async fn server_on(db: &TestDb, fake: &FakeTwilio) -> (Server, TwilioClient) {
    let server = start_with_twilio(&db.url(), fake, &[]).await;
    let c = client(&server);
    (server, c)
}

async fn a_redelivered_webhook_gets_the_same_answer_and_sends_nothing_twice(db: &TestDb) {
    let fake = FakeTwilio::start().await;
    let (server, c) = server_on(db, &fake).await;
    let s = c.create_session("r", RIDER, DRIVER).await.unwrap();
    let (rp, dp) = (
        &s.participants[0].proxy_identifier,
        &s.participants[1].proxy_identifier,
    );
    for body in ["on my way", "STOP", "START"] {
        let (from, to) = if body == "on my way" {
            (RIDER, rp)
        } else {
            (DRIVER, dp)
        };
        let form = c.message_form(&c.next_sid(), from, to, body);
        let first = c.post_form(WEBHOOK_PATH, &form, None).await.unwrap();
        let sends = fake.sent().len();
        let before = snapshot(&server).await;
        for _ in 0..3 {
            let again = c.post_form(WEBHOOK_PATH, &form, None).await.unwrap();
            assert_eq!(again, first, "{body}");
        }
        assert_eq!(fake.sent().len(), sends, "{body}");
        assert_eq!(snapshot(&server).await, before, "{body}");
    }
    assert_eq!(
        fake.sent().len(),
        3,
        "the message, START's confirmation and START were each sent once"
    );
    assert_eq!(server.app().metrics().messages("replayed"), 9);
    server.shutdown().await.unwrap();
}

async fn forged_tampered_unsigned_and_wrong_url_webhooks_change_nothing(db: &TestDb) {
    let fake = FakeTwilio::start().await;
    let (server, c) = server_on(db, &fake).await;
    let s = c.create_session("r", RIDER, DRIVER).await.unwrap();
    let dp = s.participants[1].proxy_identifier.clone();
    let before = snapshot(&server).await;
    let form = c.message_form(&c.next_sid(), DRIVER, &dp, "STOP");
    let url = format!("{}{WEBHOOK_PATH}", server.url());
    let good = sign(AUTH_TOKEN, &url, &form);

    // Forged: a signature made with another token.
    let forged = sign("not-the-token", &url, &form);
    assert_eq!(
        c.post_form(WEBHOOK_PATH, &form, Some(&forged))
            .await
            .unwrap()
            .status,
        403
    );
    // Tampered: signed, then the body changed.
    let tampered = c.message_form(form.get("MessageSid").unwrap(), DRIVER, &dp, "STOP ALL");
    assert_eq!(
        c.post_form(WEBHOOK_PATH, &tampered, Some(&good))
            .await
            .unwrap()
            .status,
        403
    );
    // Wrong URL: signed for another host.
    let elsewhere = sign(AUTH_TOKEN, "https://evil.example/twilio/sms", &form);
    assert_eq!(
        c.post_form(WEBHOOK_PATH, &form, Some(&elsewhere))
            .await
            .unwrap()
            .status,
        403
    );
    // Missing header: 400.
    let r = c
        .http()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.encode())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // The status callback is checked the same way.
    let cb = Form::from_pairs([
        ("MessageStatus", "failed"),
        ("ErrorCode", "21610"),
        ("From", dp.as_str()),
        ("To", DRIVER),
    ]);
    assert_eq!(
        c.post_form(STATUS_CALLBACK_PATH, &cb, Some(&forged))
            .await
            .unwrap()
            .status,
        403
    );

    assert_eq!(snapshot(&server).await, before);
    assert_eq!(state(&server, &dp, DRIVER).await, OptState::OptedIn);
    assert!(fake.sent().is_empty());
    // The genuine one still works afterwards.
    assert_eq!(
        c.post_form(WEBHOOK_PATH, &form, Some(&good))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(state(&server, &dp, DRIVER).await, OptState::OptedOut);
    server.shutdown().await.unwrap();
}

async fn oversized_and_mistyped_webhooks_are_refused_in_the_servers_words(db: &TestDb) {
    let fake = FakeTwilio::start().await;
    let (server, c) = server_on(db, &fake).await;
    let url = format!("{}{WEBHOOK_PATH}", server.url());
    let before = snapshot(&server).await;
    let big = format!("Body={}", "a".repeat(70 * 1024));
    let r = c
        .http()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", "x")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(
        r.text().await.unwrap(),
        "the body is over the 65536-byte limit of a Twilio webhook\n",
        "the server's own words, not the framework's"
    );
    let r = c
        .http()
        .post(&url)
        .header("content-type", "application/json")
        .header("x-twilio-signature", "x")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let r = c
        .http()
        .post(&url)
        .header("x-twilio-signature", "x")
        .body("From=%2B1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // Signed but missing From: 400.
    let form = Form::from_pairs([("MessageSid", "SM1"), ("To", "+1P"), ("Body", "hi")]);
    assert_eq!(
        c.post_form(WEBHOOK_PATH, &form, None).await.unwrap().status,
        400
    );
    // Not even a form: 400.
    let r = c
        .http()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", "x")
        .body("%zz=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(snapshot(&server).await, before);
    // Unknown routes.
    let r = c
        .http()
        .get(format!("{}/nothing-here", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(
        r.text().await.unwrap(),
        "no such endpoint: GET /nothing-here\n"
    );
    let r = c.http().get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.text().await.unwrap(), "/twilio/sms does not take GET\n");
    // The Proxy API refuses an oversized body too, and creates nothing.
    let r = c
        .http()
        .post(format!("{}/v1/Services", server.url()))
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("UniqueName={}", "a".repeat(70 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(snapshot(&server).await, before);
    server.shutdown().await.unwrap();
}

/// Waits until the journal is empty again (the replay backs off up to 5 s between tries).
async fn journal_drained(server: &Server) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while server.app().journal_depth() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the journal did not drain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn readiness(server: &Server) -> (u16, String) {
    let r = reqwest::get(format!("{}/readyz", server.url()))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn a_store_outage_journals_and_confirms_and_forwards_nothing_until_it_is_back(db: &TestDb) {
    let fake = FakeTwilio::start().await;
    let (server, c) = server_on(db, &fake).await;
    let s = c.create_session("r", RIDER, DRIVER).await.unwrap();
    let (rp, dp) = (
        s.participants[0].proxy_identifier.clone(),
        s.participants[1].proxy_identifier.clone(),
    );
    // The ledger's tables disappear (a restored backup without them, an operator's mistake).
    // Both: SQLite rewrites the history's trigger to follow a renamed ledger table.
    let db = server.app().db().clone();
    for sql in [
        "ALTER TABLE opt_out_ledger RENAME TO ledger_away",
        "ALTER TABLE opt_out_history RENAME TO history_away",
    ] {
        db.execute(sql).await.unwrap();
    }
    // Both are answered 200 (Twilio does not retry a 5xx): journaled, nothing confirmed.
    let stop = c.message_form(&c.next_sid(), DRIVER, &dp, "STOP");
    let a = c.post_form(WEBHOOK_PATH, &stop, None).await.unwrap();
    assert_eq!((a.status, a.body.as_str()), (200, EMPTY));
    let msg = c.message_form(&c.next_sid(), RIDER, &rp, "hello");
    let a = c.post_form(WEBHOOK_PATH, &msg, None).await.unwrap();
    assert_eq!((a.status, a.body.as_str()), (200, EMPTY));
    assert_eq!(server.app().journal_depth(), 2);
    let (status, text) = readiness(&server).await;
    assert_eq!(status, 503);
    assert!(
        text.contains("2 journaled") || text.contains("2 messages journaled"),
        "{text}"
    );
    assert!(
        fake.sent().is_empty(),
        "nothing forwarded while the recipient's state is unknown"
    );
    let metrics = server.app().metrics().render();
    assert!(
        metrics.contains("proxy_relay_journal_events_total{event=\"journaled_database\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("proxy_relay_journal_events_total{event=\"journaled_behind\"} 1"),
        "{metrics}"
    );
    // The store comes back: the journal is handled in arrival order. The STOP is recorded
    // and confirmed through the REST API (its webhook was answered long ago), then the
    // rider's message is refused: the driver opted out first.
    for sql in [
        "ALTER TABLE ledger_away RENAME TO opt_out_ledger",
        "ALTER TABLE history_away RENAME TO opt_out_history",
    ] {
        db.execute(sql).await.unwrap();
    }
    journal_drained(&server).await;
    assert_eq!(state(&server, &dp, DRIVER).await, OptState::OptedOut);
    let sent = fake.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (sent[0].from.as_str(), sent[0].to.as_str()),
        (dp.as_str(), DRIVER)
    );
    assert!(sent[0].body.contains("unsubscribed"));
    assert_eq!(server.app().metrics().refusals("ledger"), 1);
    assert_eq!(server.app().metrics().journal_events("replayed"), 2);
    assert_eq!(readiness(&server).await.0, 200);
    // Twilio's redelivery of either changes nothing.
    assert_eq!(
        c.post_form(WEBHOOK_PATH, &stop, None).await.unwrap().body,
        EMPTY
    );
    assert_eq!(fake.sent().len(), 1);
    server.shutdown().await.unwrap();
}

async fn sends_whose_fate_is_unknown_are_looked_up_and_journaled_when_they_run_out(db: &TestDb) {
    let fake = FakeTwilio::start().await;
    let (server, c) = server_on(db, &fake).await;
    let s = c.create_session("r", RIDER, DRIVER).await.unwrap();
    let (rp, dp) = (
        s.participants[0].proxy_identifier.clone(),
        s.participants[1].proxy_identifier.clone(),
    );
    // Two 500s, then the create goes through: asked about before each new try, sent once.
    fake.fail_next(2);
    let a = c.message(RIDER, &rp, "first").await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!((fake.calls(), fake.sent().len()), (3, 1));
    assert!(
        fake.state.lock().unwrap().lookups >= 2,
        "a 5xx is looked up before sending again"
    );

    // The provider is down for good: every attempt fails, the message is journaled (200),
    // and sent once when the provider is back.
    fake.fail_next(1_000);
    let form = c.message_form(&c.next_sid(), RIDER, &rp, "second");
    let a = c.post_form(WEBHOOK_PATH, &form, None).await.unwrap();
    assert_eq!((a.status, a.body.as_str()), (200, EMPTY));
    assert_eq!(fake.sent().len(), 1);
    assert!(server.app().journal_depth() >= 1);
    fake.fail_next(0);
    journal_drained(&server).await;
    assert_eq!(fake.creates_of(&dp, DRIVER, "second"), 1);
    assert_eq!(fake.sent().len(), 2);
    assert!(server
        .app()
        .metrics()
        .render()
        .contains("proxy_relay_send_errors_total{sender=\"twilio\"}"));
    server.shutdown().await.unwrap();
}

async fn every_forward_and_reply_is_created_once_under_provider_faults(db: &TestDb) {
    use common::Fault;
    let fake = FakeTwilio::start().await;
    // A short client timeout, so an accepted-then-silent create is given up on quickly.
    let server = start_with_twilio(&db.url(), &fake, &["--send-timeout-ms", "300"]).await;
    let c = client(&server);
    let mut pairs = Vec::new();
    for k in 0..4 {
        let (r, d) = (format!("+155510000{k}"), format!("+155520000{k}"));
        let s = c.create_session(&format!("f{k}"), &r, &d).await.unwrap();
        pairs.push((
            (r, s.participants[0].proxy_identifier.clone()),
            (d, s.participants[1].proxy_identifier.clone()),
        ));
    }
    // Faults in a fixed pattern: one create in three meets one of them.
    let pattern = [
        Fault::AcceptThenTimeout,
        Fault::ResetAfterAccept,
        Fault::FailBefore,
    ];
    let mut expected = Vec::new();
    for i in 0..210usize {
        let ((r, rp), (d, dp)) = &pairs[i % pairs.len()];
        if i % 3 == 0 {
            fake.faults([pattern[(i / 3) % 3]]);
        }
        let body = format!("message {i}");
        let a = c.message(r, rp, &body).await.unwrap();
        assert_eq!(a.status, 200, "{i}");
        expected.push((dp.clone(), d.clone(), body));
    }
    journal_drained(&server).await;
    for (from, to, body) in &expected {
        assert_eq!(fake.creates_of(from, to, body), 1, "{body}");
    }
    assert_eq!(fake.sent().len(), expected.len());
    // 70 faults: 24 accepted-then-silent and 23 accepted-then-reset were found by the lookup
    // (not sent again); the 23 refused before accepting were looked up, not found, and sent.
    assert_eq!(server.app().metrics().sends_found(), 47);
    server.shutdown().await.unwrap();
}

async fn a_full_sqlite_disk_journals_confirms_nothing_and_is_not_ready(db: &TestDb) {
    if !db.is_sqlite() {
        return; // PostgreSQL's disk is the database server's; SQLite's is ours.
    }
    let fake = FakeTwilio::start().await;
    let (server, c) = server_on(db, &fake).await;
    let s = c.create_session("r", RIDER, DRIVER).await.unwrap();
    let dp = s.participants[1].proxy_identifier.clone();
    // The file may not grow: every new row fails with SQLITE_FULL, as on a full disk.
    let db = server.app().db().clone();
    let pages = db.scalar("PRAGMA page_count").await.unwrap();
    db.execute(&format!("PRAGMA max_page_count = {pages}"))
        .await
        .unwrap();
    let mut stops = Vec::new();
    for _ in 0..40 {
        let form = c.message_form(&c.next_sid(), DRIVER, &dp, "STOP");
        let a = c.post_form(WEBHOOK_PATH, &form, None).await.unwrap();
        if a.body != EMPTY {
            // Written before the file was full: confirmed, and so stored.
            assert!(a.reply().is_some());
            continue;
        }
        stops.push(form);
    }
    assert!(!stops.is_empty(), "the file filled up");
    assert_eq!(
        fake.sent().len(),
        0,
        "no confirmation of an opt-out that was not stored"
    );
    let (status, text) = readiness(&server).await;
    assert_eq!(status, 503, "{text}");
    // Room again: the journal is handled, each STOP confirmed once.
    db.execute("PRAGMA max_page_count = 1073741823")
        .await
        .unwrap();
    journal_drained(&server).await;
    assert_eq!(state(&server, &dp, DRIVER).await, OptState::OptedOut);
    assert_eq!(fake.sent().len(), stops.len());
    assert_eq!(readiness(&server).await.0, 200);
    server.shutdown().await.unwrap();
}

async fn health_readiness_and_metrics_answer_without_a_token(db: &TestDb) {
    let fake = FakeTwilio::start().await;
    let (server, c) = server_on(db, &fake).await;
    let s = c.create_session("r", RIDER, DRIVER).await.unwrap();
    c.message(DRIVER, &s.participants[1].proxy_identifier, "STOP")
        .await
        .unwrap();
    c.message(RIDER, &s.participants[0].proxy_identifier, "hi")
        .await
        .unwrap();
    let get = |p: &str| c.http().get(format!("{}{p}", server.url())).send();
    assert_eq!(get("/healthz").await.unwrap().status().as_u16(), 200);
    assert_eq!(get("/readyz").await.unwrap().status().as_u16(), 200);
    let m = get("/metrics").await.unwrap();
    assert!(m.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = m.text().await.unwrap();
    for line in [
        "proxy_relay_messages_total{outcome=\"keyword_dropped\"} 1",
        "proxy_relay_messages_total{outcome=\"refused\"} 1",
        "proxy_relay_keyword_drops_total{category=\"opt_out\"} 1",
        "proxy_relay_refusals_21610_total{source=\"ledger\"} 1",
        "proxy_relay_notices_total{code=\"80901\"} 1",
        "proxy_relay_request_duration_seconds_count{route=\"webhook\"} 2",
        "proxy_relay_request_duration_seconds_count{route=\"admin\"} 2",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    // Bodies never reach the metrics.
    assert!(!text.contains("STOP") && !text.contains("hi\""));
    server.shutdown().await.unwrap();
}

async fn a_concurrent_redelivery_waits_for_the_first(db: &TestDb) {
    let fake = FakeTwilio::start().await;
    let (server, c) = server_on(db, &fake).await;
    let s = c.create_session("r", RIDER, DRIVER).await.unwrap();
    let form = c.message_form(
        &c.next_sid(),
        RIDER,
        &s.participants[0].proxy_identifier,
        "hi",
    );
    // The first delivery is held inside its send, so it is certainly in progress when the
    // second arrives: no sleep decides the order.
    fake.hold();
    let first = tokio::spawn({
        let (c, form) = (client(&server), form.clone());
        async move { c.post_form(WEBHOOK_PATH, &form, None).await }
    });
    fake.wait_arrived(1).await;
    // Answered (a 5xx would not be retried): journaled behind the first.
    let b = c.post_form(WEBHOOK_PATH, &form, None).await.unwrap();
    assert_eq!((b.status, b.body.as_str()), (200, EMPTY));
    assert_eq!(server.app().metrics().journal_events("journaled_busy"), 1);
    fake.release();
    assert_eq!(first.await.unwrap().unwrap().status, 200);
    journal_drained(&server).await;
    assert_eq!(
        fake.sent().len(),
        1,
        "the duplicate found the first's answer"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_sqlite_file_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let first = Server::start(&config(db.to_str().unwrap(), &[]), None)
        .await
        .unwrap();
    let err = Server::start(&config(db.to_str().unwrap(), &[]), None)
        .await
        .unwrap_err();
    let line = err.to_string();
    assert!(
        line.starts_with("--database: ") && line.contains("locked"),
        "{line}"
    );
    assert!(!line.contains('\n'));
    first.shutdown().await.unwrap();
    // Once the first is gone, the file opens again with everything in it.
    let again = Server::start(&config(db.to_str().unwrap(), &[]), None)
        .await
        .unwrap();
    again.shutdown().await.unwrap();
}

async fn a_small_bounded_load_run_answers_everything_and_keeps_the_last_stop_or_start(db: &TestDb) {
    use common::load::{closed_loop, open_loop, prepare};
    use std::sync::Arc;
    let server = Server::start(&config(&db.url(), &[]), None).await.unwrap();
    let url = server.url();
    let c = client(&server);
    let mut riders = Vec::new();
    let mut drivers = Vec::new();
    for k in 0..5 {
        let (r, d) = (format!("+155510000{k}"), format!("+155520000{k}"));
        let s = c.create_session(&format!("l{k}"), &r, &d).await.unwrap();
        riders.push((r, s.participants[0].proxy_identifier.clone()));
        drivers.push((d, s.participants[1].proxy_identifier.clone()));
    }
    let msgs = Arc::new(prepare(&url, AUTH_TOKEN, &riders, &["on my way"], 200));
    let s = closed_loop(&url, msgs, 8).await;
    assert_eq!((s.requests, s.errors), (200, 0));
    assert!(s.p50 <= s.p99 && s.p99 <= s.max && s.rps() > 0.0);
    // 3 passes over the drivers: STOP, START, STOP.
    let stops = Arc::new(prepare(&url, AUTH_TOKEN, &drivers, &["STOP", "START"], 15));
    let s = open_loop(&url, stops, 200).await;
    assert_eq!((s.requests, s.errors), (15, 0));
    for (d, p) in &drivers {
        assert_eq!(state(&server, p, d).await, OptState::OptedOut, "{d}");
    }
    // Every ordinary message, and each START (Proxy passes opt-in words on).
    assert_eq!(server.app().metrics().messages("forwarded"), 205);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_server_checks_signatures_like_the_relay() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = common::load::floor_router(AUTH_TOKEN, &url);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let c = TwilioClient::new(&url, &url, AUTH_TOKEN, ACCOUNT_SID);
    let a = c.message("+1A", "+1P", "STOP").await.unwrap();
    assert_eq!((a.status, a.body.as_str()), (200, EMPTY));
    let form = c.message_form("SM1", "+1A", "+1P", "hi");
    assert_eq!(
        c.post_form(WEBHOOK_PATH, &form, Some("bad"))
            .await
            .unwrap()
            .status,
        403
    );
}

async fn sends_can_authenticate_with_an_api_key(db: &TestDb) {
    use common::{API_KEY, API_SECRET};
    let fake = FakeTwilio::start().await;
    let key = [
        "--twilio-api-key",
        API_KEY,
        "--twilio-api-secret",
        API_SECRET,
    ];
    let good = start_with_twilio(&db.url(), &fake, &key).await;
    let c = client(&good);
    let s = c.create_session("r", RIDER, DRIVER).await.unwrap();
    let rp = s.participants[0].proxy_identifier.clone();
    assert_eq!(c.message(RIDER, &rp, "hi").await.unwrap().status, 200);
    assert_eq!(fake.sent().len(), 1);
    good.shutdown().await.unwrap();

    // A wrong secret: Twilio answers 401, which sending again cannot fix: answered, counted,
    // not sent, not journaled.
    let wrong = ["--twilio-api-key", API_KEY, "--twilio-api-secret", "wrong"];
    let bad = start_with_twilio(&db.url(), &fake, &wrong).await;
    let c = client(&bad);
    assert_eq!(c.message(RIDER, &rp, "hi").await.unwrap().status, 200);
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(bad.app().metrics().messages("send_refused"), 1);
    assert_eq!(bad.app().journal_depth(), 0);
    bad.shutdown().await.unwrap();
}

async fn mirror_mode_never_replies_and_follows_the_platform_into_the_ledger(db: &TestDb) {
    let fake = FakeTwilio::start().await;
    let server = start_with_twilio(&db.url(), &fake, &["--mode", "mirror"]).await;
    let c = client(&server);
    let s = c.create_session("r", RIDER, DRIVER).await.unwrap();
    let (rp, dp) = (
        s.participants[0].proxy_identifier.clone(),
        s.participants[1].proxy_identifier.clone(),
    );
    // Twilio answers STOP itself: no second confirmation from us, but the ledger follows.
    let a = c.message(DRIVER, &dp, "STOP").await.unwrap();
    assert_eq!((a.status, a.body.as_str()), (200, EMPTY));
    assert_eq!(state(&server, &dp, DRIVER).await, OptState::OptedOut);
    // A send Twilio would refuse with 21610 is not attempted.
    let a = c.message(RIDER, &rp, "hello?").await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(fake.calls(), 0);
    // Advanced Opt-Out: the platform's verdict on a custom keyword decides the ledger.
    let sid = c.next_sid();
    let mut pairs: Vec<(String, String)> = c
        .message_form(&sid, DRIVER, &dp, "resume please")
        .pairs()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    pairs.push(("OptOutType".into(), "START".into()));
    let form = Form::from_pairs(pairs);
    let a = c.post_form(WEBHOOK_PATH, &form, None).await.unwrap();
    assert_eq!((a.status, a.body.as_str()), (200, EMPTY));
    assert_eq!(state(&server, &dp, DRIVER).await, OptState::OptedIn);
    server.shutdown().await.unwrap();
}

async fn a_webhook_whose_caller_hangs_up_is_still_finished_and_answered_on_retry(db: &TestDb) {
    let fake = FakeTwilio::start().await;
    let (server, c) = server_on(db, &fake).await;
    let s = c.create_session("r", RIDER, DRIVER).await.unwrap();
    let form = c.message_form(
        &c.next_sid(),
        RIDER,
        &s.participants[0].proxy_identifier,
        "hi",
    );
    // Twilio gives up on us mid-send (it waits 15 s): the request is dropped while its send
    // is held inside the fake.
    fake.hold();
    let gave_up = tokio::spawn({
        let (c, form) = (client(&server), form.clone());
        async move { c.post_form(WEBHOOK_PATH, &form, None).await }
    });
    fake.wait_arrived(1).await;
    gave_up.abort();
    assert!(gave_up.await.unwrap_err().is_cancelled());
    fake.release();
    // The send begun is finished, and its answer stored: the retry gets it and sends nothing
    // again.
    let answered = format!(
        "SELECT count(*) FROM processed_messages WHERE message_id = '{}' AND answer IS NOT NULL",
        form.get("MessageSid").unwrap()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.app().db().scalar(&answered).await.unwrap() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the answer was stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = c.post_form(WEBHOOK_PATH, &form, None).await.unwrap();
    assert_eq!((again.status, again.body.as_str()), (200, EMPTY));
    assert_eq!(fake.sent().len(), 1, "the send begun was finished, once");
    assert_eq!(server.app().metrics().messages("replayed"), 1);
    server.shutdown().await.unwrap();
}

async fn a_restart_in_the_same_process_finds_everything(db: &TestDb) {
    let fake = FakeTwilio::start().await;
    let (server, c) = server_on(db, &fake).await;
    let s = c.create_session("r", RIDER, DRIVER).await.unwrap();
    let (rp, dp) = (
        s.participants[0].proxy_identifier.clone(),
        s.participants[1].proxy_identifier.clone(),
    );
    let stop = c.message_form(&c.next_sid(), DRIVER, &dp, "STOP");
    let first = c.post_form(WEBHOOK_PATH, &stop, None).await.unwrap();
    assert!(first.reply().is_some());
    server.shutdown().await.unwrap();
    // At once, in the same process: shutdown released the database before it returned.
    let (server, c) = server_on(db, &fake).await;
    assert_eq!(state(&server, &dp, DRIVER).await, OptState::OptedOut);
    assert_eq!(c.post_form(WEBHOOK_PATH, &stop, None).await.unwrap(), first);
    let calls = fake.calls();
    assert_eq!(
        c.message(RIDER, &rp, "still there?").await.unwrap().status,
        200
    );
    assert_eq!(
        fake.calls(),
        calls,
        "refused by the ledger kept across the restart"
    );
    server.shutdown().await.unwrap();
}

/// The database is cut off for 30 s while 1,000 signed webhooks stream in at a steady rate:
/// every one is answered 200, and once the database is back each is performed exactly once,
/// in order, against a model of the stream.
#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_cut_mid_stream_loses_nothing_and_performs_each_message_once() {
    use std::collections::HashMap;
    const MESSAGES: usize = 1_000;
    const PAIRS: usize = 10;
    let db = common::fresh_pg_database("cut").await.unwrap();
    let url = db.url().to_owned();
    let upstream = {
        let rest = url.split_once("://").unwrap().1;
        let host = rest.split_once('/').unwrap().0;
        host.rsplit_once('@').map_or(host, |(_, h)| h).to_owned()
    };
    let cut = common::Cut::start(&upstream).await;
    let fake = FakeTwilio::start().await;
    let server = start_with_twilio(&cut.url(&url), &fake, &["--database-timeout-ms", "2000"]).await;
    let c = client(&server);
    let mut pairs = Vec::new();
    for k in 0..PAIRS {
        let (r, d) = (format!("+15551{k:06}"), format!("+15552{k:06}"));
        let s = c.create_session(&format!("cut-{k}"), &r, &d).await.unwrap();
        pairs.push((
            (r, s.participants[0].proxy_identifier.clone()),
            (d, s.participants[1].proxy_identifier.clone()),
        ));
    }
    // The stream: drivers send STOP and START now and then, riders write to them.
    let stream: Vec<(usize, &str, String)> = (0..MESSAGES)
        .map(|i| {
            let k = i % PAIRS;
            match (i / PAIRS) % 5 {
                2 => (k, "driver", "STOP".to_owned()),
                4 => (k, "driver", "START".to_owned()),
                _ => (k, "rider", format!("message {i}")),
            }
        })
        .collect();
    // 25 a second for 40 s; the database is away from 5 s to 35 s.
    let start = tokio::time::Instant::now();
    let mut answers = Vec::new();
    let mut cut_done = (false, false);
    for (i, (k, who, body)) in stream.iter().enumerate() {
        tokio::time::sleep_until(start + Duration::from_millis(40 * i as u64)).await;
        let elapsed = start.elapsed();
        if !cut_done.0 && elapsed >= Duration::from_secs(5) {
            cut.cut();
            cut_done.0 = true;
        }
        if !cut_done.1 && elapsed >= Duration::from_secs(35) {
            cut.restore();
            cut_done.1 = true;
        }
        let ((r, rp), (d, dp)) = &pairs[*k];
        let (from, to) = if *who == "driver" { (d, dp) } else { (r, rp) };
        let a = c.message(from, to, body).await.unwrap();
        assert_eq!(a.status, 200, "message {i} at {elapsed:?}: {}", a.body);
        answers.push(a);
    }
    assert!(cut_done.0 && cut_done.1);
    let journaled = server.app().metrics().journal_events("journaled_database")
        + server.app().metrics().journal_events("journaled_behind");
    assert!(journaled >= 500, "the cut journaled {journaled} messages");
    journal_drained(&server).await;

    // The model: the ledger after each message, the forwards and confirmations it implies.
    let mut opted_out = [false; PAIRS];
    let mut expected_forwards = Vec::new();
    let mut refused = 0;
    let mut confirmations = 0;
    for (k, who, body) in &stream {
        match (*who, body.as_str()) {
            ("driver", "STOP") => {
                opted_out[*k] = true;
                confirmations += 1;
            }
            ("driver", _) => {
                opted_out[*k] = false;
                confirmations += 1;
            }
            _ if opted_out[*k] => refused += 1,
            _ => expected_forwards.push((*k, body.clone())),
        }
    }
    // Every forward the model allows was created once; none to a pair that had opted out.
    let sent = fake.sent();
    let mut creates: HashMap<(String, String, String), usize> = HashMap::new();
    for s in &sent {
        *creates
            .entry((s.from.clone(), s.to.clone(), s.body.clone()))
            .or_default() += 1;
    }
    for (k, body) in &expected_forwards {
        let ((_, _), (d, dp)) = &pairs[*k];
        assert_eq!(
            creates.get(&(dp.clone(), d.clone(), body.clone())),
            Some(&1),
            "{body}"
        );
    }
    let forwards = sent
        .iter()
        .filter(|s| s.body.starts_with("message "))
        .count();
    assert_eq!(forwards, expected_forwards.len(), "no other forward");
    // Proxy passes START on to the other participant (the riders never opt out): once each.
    let starts = stream.iter().filter(|(_, _, b)| b == "START").count();
    assert_eq!(sent.iter().filter(|s| s.body == "START").count(), starts);
    // Each STOP and START confirmed once: in its TwiML when it is the only text, by REST when
    // a forward follows it (START in a session) or when replayed.
    let in_twiml = answers.iter().filter(|a| a.reply().is_some()).count();
    let by_rest = sent
        .iter()
        .filter(|s| s.body.contains("subscribed"))
        .count();
    assert_eq!(in_twiml + by_rest, confirmations, "{in_twiml} + {by_rest}");
    assert!(by_rest > 0 && in_twiml > 0);
    // The ledger equals the model's last state of every pair.
    for (k, ((_, _), (d, dp))) in pairs.iter().enumerate() {
        let want = if opted_out[k] {
            OptState::OptedOut
        } else {
            OptState::OptedIn
        };
        assert_eq!(state(&server, dp, d).await, want, "pair {k}");
    }
    assert_eq!(server.app().metrics().refusals("ledger") as usize, refused);
    eprintln!(
        "cut: {MESSAGES} webhooks, {journaled} journaled during the cut, {} forwards, {confirmations} confirmations ({in_twiml} in TwiML, {by_rest} by REST), {refused} refused; drained {:?} after the stream",
        expected_forwards.len(),
        start.elapsed().saturating_sub(Duration::from_secs(40)),
    );
    server.shutdown().await.unwrap();
}

#[test]
fn a_test_database_belongs_to_the_process_its_comment_names() {
    for (comment, pid) in [
        ("proxy-optout test database of process 13278", Some(13278)),
        ("proxy-optout test database of process ", None),
        ("proxy-optout test database of process 12x", None),
        // A database of the server's own users: never swept, whatever its name.
        ("nightly backup of process 4242", None),
        ("", None),
    ] {
        assert_eq!(common::pg_database::owner(comment), pid, "{comment:?}");
    }
}

#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_databases_go_when_passed_stay_when_failed_and_are_swept_once_their_process_ends() {
    use common::pg_database::{connect, sweep_ended, PgDatabase};
    let server = common::pg_url().unwrap();
    let admin = connect(&server).await;
    let exists = |name: String| {
        let admin = &admin;
        async move {
            admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .unwrap()
                .is_some()
        }
    };
    // Passed: gone with the value.
    let passed = PgDatabase::create(&server, "proxy_relay_", "probe_passed").await;
    let name = passed.name().to_owned();
    assert!(exists(name.clone()).await);
    drop(passed);
    assert!(!exists(name).await, "a passed test's database is dropped");
    // Failed: kept for inspection.
    let failed = {
        let server = server.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let db = PgDatabase::create(&server, "proxy_relay_", "probe_failed").await;
                panic!("the probe fails on purpose, holding {}", db.name());
            })
        })
        .join()
        .unwrap_err()
    };
    let message = failed.downcast_ref::<String>().unwrap();
    let kept = message.rsplit(' ').next().unwrap().to_owned();
    assert!(
        exists(kept.clone()).await,
        "a failed test's database is kept"
    );
    // Swept once its process has ended: only databases that carry the test comment, and only
    // those of ended processes.
    let ended = std::process::Command::new("true")
        .spawn()
        .and_then(|mut c| c.wait().map(|_| c.id()))
        .unwrap();
    let users_own = format!("proxy_relay_probe_users_own_{ended}");
    for (name, comment) in [
        (
            "proxy_relay_probe_ended",
            Some(format!("proxy-optout test database of process {ended}")),
        ),
        (
            "proxy_relay_probe_live",
            Some(format!(
                "proxy-optout test database of process {}",
                std::process::id()
            )),
        ),
        // Named as a test database of the ended process would be, but without the comment.
        (users_own.as_str(), None),
    ] {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        if let Some(c) = comment {
            admin
                .batch_execute(&format!("COMMENT ON DATABASE {name} IS '{c}'"))
                .await
                .unwrap();
        }
    }
    // The failed probe's database belongs to this (live) process: kept by the sweep too.
    sweep_ended(&admin).await;
    assert!(
        !exists("proxy_relay_probe_ended".into()).await,
        "an ended process's database is swept"
    );
    assert!(
        exists("proxy_relay_probe_live".into()).await,
        "a live process's database is not"
    );
    assert!(
        exists(users_own.clone()).await,
        "a database without the comment is not"
    );
    assert!(exists(kept.clone()).await);
    for name in ["proxy_relay_probe_live", users_own.as_str(), kept.as_str()] {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
    }
}
