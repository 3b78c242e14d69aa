//! What the end-to-end tests share: a fake Twilio REST API on loopback, the databases every
//! scenario runs on (a temporary SQLite file, and a fresh database on the real PostgreSQL
//! server where `PROXY_OPTOUT_PG_URL` is set), and servers started in process.
#![allow(dead_code, unused_macros)]

#[path = "../../src/demo/client.rs"]
pub mod client;
#[path = "../../examples/load/generator.rs"]
pub mod load;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use clap::Parser;
use client::TwilioClient;
use proxy_optout_twilio::Form;
use proxy_relay::{Config, Server};

pub const AUTH_TOKEN: &str = "test-auth-token-12345";
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const API_KEY: &str = "SK0123456789abcdef0123456789abcdef";
pub const API_SECRET: &str = "api-key-secret";

/// One create call the fake received and accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub from: String,
    pub to: String,
    pub body: String,
    pub status_callback: Option<String>,
    pub idempotency_key: String,
}

#[derive(Default)]
pub struct FakeState {
    pub sent: Vec<Sent>,
    pub calls: usize,
    pub refuse: Vec<String>,
    pub fail_next: usize,
    pub delay: Duration,
    pub keys: HashMap<String, String>,
    /// While set, every create waits here until the test releases it.
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
}

/// Twilio's Messages resource, as far as the relay uses it: Basic auth, form fields, 201 with
/// a sid, 400 with 21610 for a chosen recipient, 500 on demand, idempotent by the token header.
#[derive(Clone)]
pub struct FakeTwilio {
    pub url: String,
    pub state: Arc<Mutex<FakeState>>,
    /// How many creates have arrived (before the gate), for tests that wait on it.
    pub arrived: tokio::sync::watch::Receiver<usize>,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<FakeState>>,
    arrived: Arc<tokio::sync::watch::Sender<usize>>,
}

impl FakeTwilio {
    pub async fn start() -> FakeTwilio {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let (tx, arrived) = tokio::sync::watch::channel(0);
        let shared = Shared {
            state: state.clone(),
            arrived: Arc::new(tx),
        };
        let app = Router::new()
            .route("/2010-04-01/Accounts/{account}/Messages.json", post(create))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeTwilio {
            url,
            state,
            arrived,
        }
    }

    /// Holds every create at the door until [`release`](FakeTwilio::release).
    pub fn hold(&self) {
        self.state.lock().unwrap().gate = Some(Arc::new(tokio::sync::Semaphore::new(0)));
    }

    /// Lets held and later creates through.
    pub fn release(&self) {
        if let Some(gate) = self.state.lock().unwrap().gate.take() {
            gate.add_permits(1 << 20);
        }
    }

    /// Waits until `n` creates have arrived (held or not).
    pub async fn wait_arrived(&self, n: usize) {
        let mut rx = self.arrived.clone();
        tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|c| *c >= n))
            .await
            .expect("the create arrived within 30 s")
            .unwrap();
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.state.lock().unwrap().sent.clone()
    }

    pub fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }

    pub fn refuse(&self, to: &str) {
        self.state.lock().unwrap().refuse.push(to.to_owned());
    }

    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    pub fn delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }
}

async fn create(
    State(shared): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // The account's auth token, or an API key and its secret.
    let accepted = [(ACCOUNT_SID, AUTH_TOKEN), (API_KEY, API_SECRET)].map(|(user, pass)| {
        format!(
            "Basic {}",
            base64_encode(format!("{user}:{pass}").as_bytes())
        )
    });
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    if account != ACCOUNT_SID || !accepted.iter().any(|a| Some(a.as_str()) == given) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"code": 20003, "status": 401}"#,
        )
            .into_response();
    }
    let state = shared.state;
    shared.arrived.send_modify(|n| *n += 1);
    let (delay, gate) = {
        let s = state.lock().unwrap();
        (s.delay, s.gate.clone())
    };
    if let Some(gate) = gate {
        let _ = gate.acquire().await;
    }
    tokio::time::sleep(delay).await;
    let form = Form::parse(&body).unwrap();
    let key = headers
        .get("i-twilio-idempotency-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut s = state.lock().unwrap();
    s.calls += 1;
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream trouble").into_response();
    }
    let to = form.get("To").unwrap_or_default().to_owned();
    if s.refuse.contains(&to) {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"code": 21610, "message": "Attempt to send to unsubscribed recipient", "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}"#,
        )
            .into_response();
    }
    if let Some(sid) = s.keys.get(&key) {
        let body = format!(r#"{{"sid": "{sid}", "status": "queued"}}"#);
        return (StatusCode::CREATED, body).into_response();
    }
    let sid = format!("SM{:032x}", s.sent.len() + 1);
    s.keys.insert(key.clone(), sid.clone());
    s.sent.push(Sent {
        from: form.get("From").unwrap_or_default().to_owned(),
        to,
        body: form.get("Body").unwrap_or_default().to_owned(),
        status_callback: form.get("StatusCallback").map(str::to_owned),
        idempotency_key: key,
    });
    (
        StatusCode::CREATED,
        format!(r#"{{"sid": "{sid}", "status": "queued"}}"#),
    )
        .into_response()
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A database a scenario runs on, gone when dropped (the SQLite directory) or left for
/// inspection (the PostgreSQL database, dropped by the next run of the same test).
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().unwrap())
    }

    pub async fn postgres(name: &str) -> TestDb {
        TestDb::Postgres(
            fresh_pg_database(name)
                .await
                .expect("PROXY_OPTOUT_PG_URL is set"),
        )
    }

    /// What `--database` takes.
    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => dir.path().join("r.db").to_string_lossy().into_owned(),
            TestDb::Postgres(url) => url.clone(),
        }
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self, TestDb::Sqlite(_))
    }
}

/// Runs each named scenario (`async fn name(db: &TestDb)`) once per database: `name::sqlite`
/// always, `name::postgres` where `PROXY_OPTOUT_PG_URL` is set (ignored, with the reason,
/// where it is not).
macro_rules! on_each_database {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let db = crate::common::TestDb::sqlite();
                    super::$scenario(&db).await;
                }

                #[cfg_attr(
                    not(pg_tests),
                    ignore = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)"
                )]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let db = crate::common::TestDb::postgres(stringify!($scenario)).await;
                    super::$scenario(&db).await;
                }
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use on_each_database;

/// The PostgreSQL URL when the PostgreSQL tests are on.
pub fn pg_url() -> Option<String> {
    std::env::var("PROXY_OPTOUT_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A fresh PostgreSQL database for one test (created from the configured one), so tests
/// running at once never share tables.
pub async fn fresh_pg_database(name: &str) -> Option<String> {
    let url = pg_url()?;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // Database names are at most 63 bytes.
    let short: String = name.chars().take(40).collect();
    let db = format!("proxy_relay_{short}_{}", std::process::id());
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await
        .unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    Some(format!("{base}/{db}"))
}

pub fn config(database: &str, extra: &[&str]) -> Config {
    let mut args = vec![
        "proxy-relay",
        "--listen",
        "127.0.0.1:0",
        "--database",
        database,
        "--auth-token",
        AUTH_TOKEN,
        "--admin-token",
        ADMIN_TOKEN,
    ];
    args.extend_from_slice(extra);
    Config::from_args(&proxy_relay::Cli::parse_from(args).serve).unwrap()
}

/// A server using the fake Twilio for sends.
pub async fn start_with_twilio(database: &str, fake: &FakeTwilio, extra: &[&str]) -> Server {
    let mut args = vec![
        "--sender",
        "twilio",
        "--twilio-account-sid",
        ACCOUNT_SID,
        "--twilio-api-url",
        &fake.url,
        "--send-timeout-ms",
        "2000",
    ];
    args.extend_from_slice(extra);
    Server::start(&config(database, &args), None).await.unwrap()
}

pub fn client(server: &Server) -> TwilioClient {
    TwilioClient::new(&server.url(), &server.url(), AUTH_TOKEN, ADMIN_TOKEN)
}
