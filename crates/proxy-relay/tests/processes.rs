//! The `proxy-relay` binary as a process: SIGTERM finishes in-flight requests, SIGKILL loses no
//! acknowledged opt-out, and two processes share one PostgreSQL database.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::client::TwilioClient;
use common::{FakeTwilio, ACCOUNT_SID, AUTH_TOKEN};
use proxy_optout::{LedgerKey, OptOutStore, OptState};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct Proc {
    child: Child,
    url: String,
}

impl Proc {
    async fn spawn(database: &str, extra: &[&str]) -> Proc {
        Proc::spawn_with(&[], "127.0.0.1:0", database, extra).await
    }

    /// Starts the binary with `first` before the settings (a subcommand, say).
    async fn spawn_with(first: &[&str], listen: &str, database: &str, extra: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_proxy-relay"))
            .args(first)
            .args(["--listen", listen, "--database", database])
            .args([
                "--auth-token",
                AUTH_TOKEN,
                "--twilio-account-sid",
                ACCOUNT_SID,
            ])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the server printed its address")
            .unwrap()
            .expect("the server exited before listening");
        let url = line
            .strip_prefix("proxy-relay listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Proc { child, url }
    }

    fn client(&self) -> TwilioClient {
        TwilioClient::new(&self.url, &self.url, AUTH_TOKEN, ACCOUNT_SID)
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn twilio_args(fake: &FakeTwilio) -> Vec<String> {
    // The account SID is one of `Proc::spawn`'s own settings.
    ["--sender", "twilio", "--twilio-api-url", &fake.url]
        .map(str::to_owned)
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let fake = FakeTwilio::start().await;
    let args = twilio_args(&fake);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = Proc::spawn(db.to_str().unwrap(), &args).await;
    let c = p.client();
    let s = c
        .create_session("r", "+15551110001", "+15552220002")
        .await
        .unwrap();
    let proxy = s.participants[0].proxy_identifier.clone();
    // The request is held inside its send while SIGTERM arrives and the server stops
    // listening; only then is the send let through.
    fake.hold();
    let in_flight =
        tokio::spawn(async move { c.message("+15551110001", &proxy, "slow one").await });
    fake.wait_arrived(1).await;
    p.signal("-TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{}/healthz", p.url)).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still listening after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fake.release();
    let answer = in_flight
        .await
        .unwrap()
        .expect("the in-flight request was answered");
    assert_eq!(answer.status, 200);
    assert_eq!(fake.sent().len(), 1);
    let status = tokio::time::timeout(Duration::from_secs(10), p.child.wait())
        .await
        .expect("exited after the in-flight request")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        reqwest::get(format!("{}/healthz", p.url)).await.is_err(),
        "no longer listening"
    );
}

fn ledger_state(db: &Path, proxy: &str, participant: &str) -> OptState {
    let store = proxy_optout_sqlite::SqliteStore::open(db).unwrap();
    store.state(LedgerKey::new(proxy, participant)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_opt_out() {
    const PAIRS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let drivers: Vec<String> = (0..PAIRS).map(|k| format!("+1555222000{k}")).collect();
    let mut proxies = Vec::new();
    let mut acked: Vec<Option<OptState>> = vec![None; PAIRS];
    let mut total_acked = 0;
    let mut i = 0usize;
    for round in 0..4u64 {
        let mut p = Proc::spawn(db.to_str().unwrap(), &[]).await;
        let c = p.client();
        if round == 0 {
            for (k, d) in drivers.iter().enumerate() {
                let s = c
                    .create_session(&format!("ride-{k}"), &format!("+1555111000{k}"), d)
                    .await
                    .unwrap();
                proxies.push(s.participants[1].proxy_identifier.clone());
            }
        }
        // Everything acknowledged before this process started is still in force.
        let ready = c
            .http()
            .get(format!("{}/readyz", p.url))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status().as_u16(), 200);
        // Round r acknowledges 2 + r messages, then the process is killed with one more in
        // flight: counts, not sleeps, decide where the kill lands.
        for _ in 0..2 + round {
            let k = i % PAIRS;
            let (body, meant) = stop_or_start(i);
            let a = c.message(&drivers[k], &proxies[k], body).await.unwrap();
            assert_eq!(a.status, 200, "{a:?}");
            acked[k] = Some(meant);
            total_acked += 1;
            i += 1;
        }
        let k = i % PAIRS;
        let (body, meant) = stop_or_start(i);
        let in_flight = tokio::spawn({
            let (c, d, p) = (p.client(), drivers[k].clone(), proxies[k].clone());
            async move { c.message(&d, &p, body).await }
        });
        p.signal("-KILL");
        let in_flight = match in_flight.await.unwrap() {
            // Answered before the kill: acknowledged.
            Ok(a) if a.status == 200 => {
                acked[k] = Some(meant);
                None
            }
            Ok(a) => panic!("unexpected answer {a:?}"),
            // The connection died with the process: this message's fate is unknown.
            Err(_) => Some((k, meant)),
        };
        let _ = p.child.wait().await;
        for k in 0..PAIRS {
            let now = ledger_state(&db, &proxies[k], &drivers[k]);
            let expected = acked[k].unwrap_or(OptState::OptedIn);
            match in_flight {
                // The message in flight at the kill may or may not have been recorded.
                Some((f, meant)) if f == k => {
                    assert!(now == expected || now == meant, "pair {k}: {now:?}")
                }
                _ => assert_eq!(now, expected, "pair {k} after kill {round}"),
            }
            // Resynchronise on what the database says, for the next round's expectations.
            acked[k] = Some(now);
        }
        i += 1;
    }
    assert_eq!(total_acked, 2 + 3 + 4 + 5);
}

/// SIGKILL at each point between the durable claim (the record that a send may follow) and
/// the stored answer, then a restart and Twilio's retry of the webhook: one text, always.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_the_claim_and_the_stored_answer_still_texts_once() {
    for point in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db");
        let fake = FakeTwilio::start().await;
        let args = twilio_args(&fake);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut p = Proc::spawn(db.to_str().unwrap(), &args).await;
        let c = p.client();
        let s = c
            .create_session("r", "+15551110001", "+15552220002")
            .await
            .unwrap();
        let (rp, dp) = (
            s.participants[0].proxy_identifier.clone(),
            s.participants[1].proxy_identifier.clone(),
        );
        let body = format!("on my way ({point})");
        let form = c.message_form(&c.next_sid(), "+15551110001", &rp, &body);
        let post = |c: TwilioClient, form: proxy_optout_twilio::Form<'static>| {
            tokio::spawn(async move { c.post_form(proxy_relay::WEBHOOK_PATH, &form, None).await })
        };
        match point {
            // The send had not left: held at the provider's door, then turned away.
            0 => {
                fake.hold();
                let inflight = post(p.client(), form.clone());
                fake.wait_arrived(1).await;
                p.signal("-KILL");
                fake.drop_held();
                let _ = inflight.await;
            }
            // The provider accepted it; its answer never reached the server.
            1 => {
                fake.hold_answers();
                let inflight = post(p.client(), form.clone());
                fake.wait_sent(1).await;
                p.signal("-KILL");
                fake.release_answers();
                let _ = inflight.await;
            }
            // The answer came back; the kill lands while the server records it.
            _ => {
                fake.hold_answers();
                let inflight = post(p.client(), form.clone());
                fake.wait_sent(1).await;
                fake.release_answers();
                p.signal("-KILL");
                let _ = inflight.await;
            }
        }
        let _ = p.child.wait().await;
        let mut p = Proc::spawn(db.to_str().unwrap(), &args).await;
        // Twilio retries a webhook whose connection failed.
        let again = p
            .client()
            .post_form(proxy_relay::WEBHOOK_PATH, &form, None)
            .await
            .unwrap();
        assert_eq!(again.status, 200, "point {point}: {}", again.body);
        assert_eq!(
            fake.creates_of(&dp, "+15552220002", &body),
            1,
            "point {point}: one text: {:?}, {} lookups",
            fake.sent(),
            fake.state.lock().unwrap().lookups
        );
        p.signal("-TERM");
        assert!(p.child.wait().await.unwrap().success());
    }
}

/// 3,000 connections that each send half a request head and then nothing: signed webhooks are
/// still answered fast while they are open, and the server closes every one of them when
/// the header timeout runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_hold_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SLOW: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut p = Proc::spawn(db.to_str().unwrap(), &["--header-timeout-ms", "2000"]).await;
    let c = p.client();
    let s = c
        .create_session("r", "+15551110001", "+15552220002")
        .await
        .unwrap();
    let rp = s.participants[0].proxy_identifier.clone();
    let addr = p.url.trim_start_matches("http://").to_owned();
    let opened = std::time::Instant::now();
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        conn.write_all(b"POST /twilio/sms HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: applica")
            .await
            .unwrap();
        slow.push(conn);
    }
    // While they hang: 200 signed webhooks at 100 a second, each timed from its slot.
    let start = tokio::time::Instant::now();
    let mut latencies = Vec::new();
    for i in 0..200u64 {
        let at = start + Duration::from_millis(10 * i);
        tokio::time::sleep_until(at).await;
        let a = c
            .message("+15551110001", &rp, &format!("m{i}"))
            .await
            .unwrap();
        assert_eq!(a.status, 200);
        latencies.push(at.elapsed());
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    // A server the slow connections held would answer after the header timeout (2 s) or not
    // at all, so the bound is half of it. Alone, this measures a p99 of about 4 ms (the
    // README's figure), but SQLite's automatic WAL checkpoint runs on the database thread
    // and, on this VM under load, stalls every message for 130–320 ms when it falls inside
    // the window (it did in 2 of 6 runs; none in 7 with the checkpoint turned off): a
    // 100 ms bound measured the disk, not the slow clients.
    assert!(
        p99 < Duration::from_millis(1000),
        "p99 {p99:?} with {SLOW} slow connections open"
    );
    // Every slow connection is closed by the server within the timeout (and a margin).
    let deadline = opened + Duration::from_secs(2) + Duration::from_secs(5);
    let mut closed = 0;
    for mut conn in slow {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut buf = [0u8; 256];
        // EOF, a reset, or an error answer: the server let go of it.
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => closed += 1,
            Ok(Ok(_)) => {
                // An answer (408); the close follows.
                if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(left, conn.read(&mut buf)).await {
                    closed += 1;
                }
            }
            Err(_) => {}
        }
    }
    assert_eq!(
        closed, SLOW,
        "slow connections closed within the header timeout"
    );
    eprintln!(
        "slow clients: {SLOW} held open, webhook p99 {p99:?}, all closed within {:?}",
        opened.elapsed()
    );
    p.signal("-TERM");
    assert!(p.child.wait().await.unwrap().success());
}

fn stop_or_start(i: usize) -> (&'static str, OptState) {
    if (i / 4) % 2 == 0 {
        ("STOP", OptState::OptedOut)
    } else {
        ("START", OptState::OptedIn)
    }
}

#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_postgres_database() {
    let db = common::fresh_pg_database("two_instances").await.unwrap();
    let url = db.url().to_owned();
    let fake = FakeTwilio::start().await;
    let args = twilio_args(&fake);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Both start (and migrate) at once.
    // Each instance keeps its own journal.
    let dir = tempfile::tempdir().unwrap();
    let (ja, jb) = (
        dir.path().join("a.journal.db"),
        dir.path().join("b.journal.db"),
    );
    let mut args_a = args.clone();
    args_a.extend(["--journal", ja.to_str().unwrap()]);
    let mut args_b = args.clone();
    args_b.extend(["--journal", jb.to_str().unwrap()]);
    let (a, b) = tokio::join!(Proc::spawn(&url, &args_a), Proc::spawn(&url, &args_b));
    let (ca, cb) = (a.client(), b.client());

    // A STOP through A makes B refuse the next message to that driver with 21610.
    let s = ca
        .create_session("ride-1", "+15551110001", "+15552220002")
        .await
        .unwrap();
    let (rp, dp) = (
        s.participants[0].proxy_identifier.clone(),
        s.participants[1].proxy_identifier.clone(),
    );
    let stop = ca.message("+15552220002", &dp, "STOP").await.unwrap();
    assert!(stop.status == 200 && stop.reply().is_some());
    let calls = fake.calls();
    let refused = cb
        .message("+15551110001", &rp, "are you there?")
        .await
        .unwrap();
    assert_eq!(refused.status, 200);
    assert_eq!(
        fake.calls(),
        calls,
        "B did not try to send to the opted-out driver"
    );
    let metrics = cb
        .http()
        .get(format!("{}/metrics", b.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("proxy_relay_refusals_21610_total{source=\"ledger\"} 1"),
        "{metrics}"
    );

    // A webhook redelivered to the other instance gets the first answer.
    let form = ca.message_form(&ca.next_sid(), "+15552220002", &dp, "START");
    let first = ca
        .post_form(proxy_relay::WEBHOOK_PATH, &form, None)
        .await
        .unwrap();
    let again = cb
        .post_form(proxy_relay::WEBHOOK_PATH, &form, None)
        .await
        .unwrap();
    assert_eq!(first, again);
    // START in a session: its confirmation and the forward, each once, through the sender.
    let sent = fake.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0].body.contains("re-subscribed"), "{sent:?}");
    assert_eq!(sent[1].body, "START", "START was forwarded once");

    // Concurrent STOP/START streams, each pair alternating between the instances: every pair
    // ends in the state of its last acknowledged message.
    const PAIRS: usize = 6;
    let mut sessions = Vec::new();
    for k in 0..PAIRS {
        let s = cb
            .create_session(
                &format!("stream-{k}"),
                &format!("+1555333000{k}"),
                &format!("+1555444000{k}"),
            )
            .await
            .unwrap();
        sessions.push((
            format!("+1555444000{k}"),
            s.participants[1].proxy_identifier.clone(),
        ));
    }
    let mut tasks = Vec::new();
    for (k, (driver, proxy)) in sessions.iter().cloned().enumerate() {
        let (ua, ub) = (a.url.clone(), b.url.clone());
        tasks.push(tokio::spawn(async move {
            let clients = [
                TwilioClient::new(&ua, &ua, AUTH_TOKEN, ACCOUNT_SID),
                TwilioClient::new(&ub, &ub, AUTH_TOKEN, ACCOUNT_SID),
            ];
            let mut last = OptState::OptedIn;
            for n in 0..12usize {
                // A different pattern per pair, so pairs end in different states.
                let stop = (n * 7 + k * 3) % 5 < 2;
                let body = if stop { "STOP" } else { "START" };
                let answer = clients[(n + k) % 2]
                    .message(&driver, &proxy, body)
                    .await
                    .unwrap();
                assert_eq!(answer.status, 200);
                last = if stop {
                    OptState::OptedOut
                } else {
                    OptState::OptedIn
                };
            }
            (driver, proxy, last)
        }));
    }
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for t in tasks {
        let (driver, proxy, last) = t.await.unwrap();
        let row = client
            .query_opt(
                "SELECT state FROM opt_out_ledger WHERE scope = $1 AND participant = $2",
                &[&proxy, &driver],
            )
            .await
            .unwrap();
        let stored: String = row.map_or("opted_in".into(), |r| r.get(0));
        assert_eq!(stored, last.as_str(), "{driver} via {proxy}");
    }
}

#[test]
fn a_bad_configuration_fails_at_start_with_one_line_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let db = db.to_str().unwrap();
    let cases: [(&[&str], &str); 10] = [
        (&["--listen", "nowhere"], "--listen: "),
        (&["--listen", "no-such-host.invalid:8080"], "--listen: "),
        (
            &["--public-url", "ftp://relay.example.com"],
            "--public-url: ",
        ),
        (
            &["--public-url", "https://relay.example.com/?x=1"],
            "--public-url: ",
        ),
        (
            &["--twilio-api-key", "nope", "--twilio-api-secret", "s"],
            "--twilio-api-key: ",
        ),
        (
            &["--proxy-numbers", "+15550001,+15550001"],
            "--proxy-numbers: ",
        ),
        (&["--sender", "twilio"], "--twilio-account-sid: "),
        (
            &["--sender", "twilio", "--twilio-account-sid", "nope"],
            "--twilio-account-sid: ",
        ),
        (&["--database", "/nonexistent-dir/sub/r.db"], "--database: "),
        (&["--journal", "/nonexistent-dir/j.db"], "--journal: "),
    ];
    for (args, prefix) in cases {
        // Good settings through the environment; the flag under test overrides one.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_proxy-relay"))
            .env("PROXY_RELAY_LISTEN", "127.0.0.1:0")
            .env("PROXY_RELAY_DATABASE", db)
            .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
            .env("RUST_LOG", "off")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = exited_within(out, Duration::from_secs(30), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(
            lines[0].starts_with(&format!("proxy-relay: {prefix}")),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains(AUTH_TOKEN), "no secret in {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_reads_as_people_expect() {
    // --help opens with one line saying what the program is, and no code.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_proxy-relay"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("A masked-number SMS relay"), "{first}");
    assert!(
        !text.contains("```") && !text.contains("parse_from"),
        "{text}"
    );
    assert!(text.contains("--listen <LISTEN>") && text.contains("[env: PROXY_RELAY_LISTEN="));
    // Settings after the subcommand, and a host name to listen on.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut p = Proc::spawn_with(&["serve"], "localhost:0", db.to_str().unwrap(), &[]).await;
    assert!(
        p.url.starts_with("http://127.0.0.1:") || p.url.starts_with("http://[::1]:"),
        "{}",
        p.url
    );
    let ready = reqwest::get(format!("{}/readyz", p.url)).await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    p.signal("-TERM");
    assert!(p.child.wait().await.unwrap().success());
}

/// Waits for a child that should exit by itself; kills it and fails the test if it serves.
fn exited_within(
    mut child: std::process::Child,
    limit: Duration,
    what: &[&str],
) -> std::process::Output {
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what:?} started serving instead of failing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
