//! The adoption trial, redone on the library: an existing ride-hailing service (the `rides`
//! example: its own table, its own `POST /rides`) with the relay mounted, served over real
//! HTTP on loopback against a fake Twilio REST API, on SQLite and on PostgreSQL. The same
//! scenario as the trial: forward, STOP confirmed, refusal, START, forged 403, redelivery
//! once, 21610 from a status callback. And the glue it took, counted.

#[path = "../../proxy-relay/tests/common/fake_twilio.rs"]
mod fake_twilio;
#[path = "../../proxy-relay/tests/common/pg_database.rs"]
mod pg_database;
#[path = "../src/rfc2822.rs"]
mod rfc2822;
#[path = "../examples/rides/service.rs"]
mod service;

use fake_twilio::{FakeTwilio, ACCOUNT_SID, AUTH_TOKEN};
use proxy_optout::OptState;
use proxy_optout_twilio::{sign, Form, EMPTY};

const RIDER: &str = "+15551110001";
const DRIVER: &str = "+15552220002";
const PROXY: &str = "+15550000100";

/// A database of its own on the PostgreSQL server of `PROXY_OPTOUT_PG_URL`, dropped when the
/// test passes.
async fn fresh_pg_database() -> pg_database::PgDatabase {
    let url = std::env::var("PROXY_OPTOUT_PG_URL").expect("PROXY_OPTOUT_PG_URL");
    pg_database::PgDatabase::create(&url, "proxy_optout_", "rides").await
}

struct Service {
    url: String,
    http: reqwest::Client,
    pipeline: proxy_optout_host::Pipeline,
    sid: std::sync::atomic::AtomicUsize,
}

impl Service {
    async fn start(database: &str, dir: &std::path::Path, twilio: &FakeTwilio) -> Service {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let config = service::Config {
            database: database.to_owned(),
            dir: dir.to_owned(),
            public_url: url.clone(),
            twilio_api_url: twilio.url.clone(),
            account_sid: ACCOUNT_SID.to_owned(),
            auth_token: AUTH_TOKEN.to_owned(),
        };
        let rides = service::Rides::open(&config.database, &config.dir)
            .await
            .unwrap();
        let pipeline = service::relay(rides.clone(), &config).await.unwrap();
        let app = service::app(rides, &pipeline);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Service {
            url,
            http: reqwest::Client::new(),
            pipeline,
            sid: 0.into(),
        }
    }

    fn next_sid(&self) -> String {
        let n = self.sid.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("SM{n:032}")
    }

    /// Posts a form to `path`, signed with `token` as Twilio signs it.
    async fn post(&self, path: &str, pairs: &[(&str, &str)], token: &str) -> (u16, String) {
        let form = Form::from_pairs(pairs.iter().copied());
        let signature = sign(token, &format!("{}{path}", self.url), &form);
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(form.encode())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn text(&self, sid: &str, from: &str, body: &str) -> (u16, String) {
        let pairs = [
            ("MessageSid", sid),
            ("From", from),
            ("To", PROXY),
            ("Body", body),
        ];
        self.post("/twilio/sms", &pairs, AUTH_TOKEN).await
    }

    async fn state(&self, participant: &str) -> OptState {
        self.pipeline
            .ledger()
            .state(PROXY, participant)
            .await
            .unwrap()
    }
}

async fn the_trial(database: &str, dir: &std::path::Path) {
    let twilio = FakeTwilio::start().await;
    let s = Service::start(database, dir, &twilio).await;
    // The service's own API books the ride: the relay reads it from the rides table.
    let booked = s
        .http
        .post(format!("{}/rides", s.url))
        .json(&serde_json::json!({"id": "ride-42", "rider": RIDER, "driver": DRIVER, "proxy_number": PROXY}))
        .send()
        .await
        .unwrap();
    assert_eq!(booked.status().as_u16(), 201);

    // Forward: from the proxy number to the driver, empty TwiML.
    let first = s.next_sid();
    let a = s.text(&first, RIDER, "I'm at the north entrance").await;
    assert_eq!(a, (200, EMPTY.to_owned()));
    let sent = twilio.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].from.as_str(), sent[0].to.as_str()),
        (PROXY, DRIVER)
    );
    assert_eq!(
        sent[0].status_callback.as_deref(),
        Some(format!("{}/twilio/status?attempt={first}-forward", s.url).as_str())
    );

    // STOP: confirmed in the TwiML, never forwarded, recorded.
    let (status, body) = s.text(&s.next_sid(), DRIVER, "STOP").await;
    assert_eq!(status, 200);
    assert!(body.contains("unsubscribed"), "{body}");
    assert_eq!(twilio.sent().len(), 1);
    assert_eq!(s.state(DRIVER).await, OptState::OptedOut);

    // Refusal: the rider's next text is refused by the ledger; Twilio is not called.
    let calls = twilio.calls();
    let a = s.text(&s.next_sid(), RIDER, "Are you close?").await;
    assert_eq!(a, (200, EMPTY.to_owned()));
    assert_eq!(twilio.calls(), calls);

    // START: confirmed and forwarded, the confirmation first, both through REST.
    let a = s.text(&s.next_sid(), DRIVER, "START").await;
    assert_eq!(a, (200, EMPTY.to_owned()));
    let sent = twilio.sent();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[1].to, DRIVER);
    assert!(sent[1].body.contains("re-subscribed"), "{}", sent[1].body);
    assert_eq!(
        (sent[2].to.as_str(), sent[2].body.as_str()),
        (RIDER, "START")
    );
    assert_eq!(s.state(DRIVER).await, OptState::OptedIn);

    // Forged: signed with another token: 403, nothing done.
    let calls = twilio.calls();
    let pairs = [
        ("MessageSid", "SMforged"),
        ("From", DRIVER),
        ("To", PROXY),
        ("Body", "STOP"),
    ];
    let (status, _) = s.post("/twilio/sms", &pairs, "not-the-token").await;
    assert_eq!(status, 403);
    assert_eq!(twilio.calls(), calls);
    assert_eq!(s.state(DRIVER).await, OptState::OptedIn);

    // Redelivery: the same MessageSid three times is one text and one answer.
    let sid = s.next_sid();
    let first = s.text(&sid, RIDER, "2 minutes").await;
    for _ in 0..2 {
        assert_eq!(s.text(&sid, RIDER, "2 minutes").await, first);
    }
    assert_eq!(twilio.creates_of(PROXY, DRIVER, "2 minutes"), 1);
    assert_eq!(s.pipeline.metrics().messages("replayed"), 2);

    // A status callback reports 21610 for the rider, for the START forwarded to them,
    // posted to the URL that send gave Twilio (its query names the send, and is signed):
    // the ledger learns it, and the driver's next text is refused without a call.
    let cb = [
        ("MessageSid", "SM00000000000000000000000000000099"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "21610"),
        ("From", PROXY),
        ("To", RIDER),
    ];
    let named = sent[2].status_callback.as_deref().unwrap();
    let named = named.strip_prefix(&s.url).unwrap();
    assert!(named.starts_with("/twilio/status?attempt=SM"), "{named}");
    assert_eq!(s.post(named, &cb, AUTH_TOKEN).await.0, 200);
    assert_eq!(s.state(RIDER).await, OptState::OptedOut);
    let calls = twilio.calls();
    let a = s.text(&s.next_sid(), DRIVER, "here now").await;
    assert_eq!(a, (200, EMPTY.to_owned()));
    assert_eq!(twilio.calls(), calls);
    assert_eq!(s.pipeline.metrics().refusals("status_callback"), 1);

    // The service's own routes still answer as before; an unknown one is still its 404.
    let missing = s
        .http
        .get(format!("{}/nowhere", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    assert!(
        s.pipeline
            .shutdown_within(std::time::Duration::from_secs(10))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rides_service_relays_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    the_trial("rides.db", dir.path()).await;
}

#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rides_service_relays_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_pg_database().await;
    the_trial(db.url(), dir.path()).await;
}

/// The glue: lines of code (not blank, not comments) between the example's `glue` markers,
/// and the lines marked `// glue` on their own. The README quotes this count.
fn glue_lines(source: &str) -> usize {
    let mut inside = false;
    let mut count = 0;
    for line in source.lines() {
        let code = line.trim();
        if code.contains("--- glue: begin") {
            inside = true;
        } else if code.contains("--- glue: end") {
            inside = false;
        } else if (inside && !code.is_empty() && !code.starts_with("//"))
            || (!inside && code.ends_with("// glue"))
        {
            count += 1;
        }
    }
    count
}

#[test]
fn the_rides_service_needed_at_most_40_lines_of_glue() {
    let service = include_str!("../examples/rides/service.rs");
    let main = include_str!("../examples/rides/main.rs");
    let glue = glue_lines(service) + glue_lines(main);
    println!("glue: {glue} lines");
    assert!(glue <= 40, "{glue} lines of glue");
    // The count is of something: the routing, the relay and the mount are all marked.
    assert!(glue >= 20, "{glue}");
    assert_eq!(
        glue_lines("// --- glue: begin\nlet a = 1;\n\n// c\n// --- glue: end\nb(); // glue\n"),
        2
    );
}
