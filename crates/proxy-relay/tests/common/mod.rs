//! What the end-to-end tests share: a fake Twilio REST API on loopback, the databases every
//! scenario runs on (a temporary SQLite file, and a fresh database on the real PostgreSQL
//! server where `PROXY_OPTOUT_PG_URL` is set), and servers started in process.
#![allow(dead_code, unused_macros)]

#[path = "../../src/demo/client.rs"]
pub mod client;
#[path = "../../examples/load/generator.rs"]
pub mod load;
#[path = "../../../proxy-optout-host/src/rfc2822.rs"]
pub mod rfc2822;

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
    pub sid: String,
    pub from: String,
    pub to: String,
    pub body: String,
    pub status_callback: Option<String>,
    pub created: std::time::SystemTime,
}

/// What the fake does to one create call, as a real network and a real Twilio can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 503 before accepting anything.
    FailBefore,
    /// Accept (the message exists), then answer only after the client gave up.
    AcceptThenTimeout,
    /// Accept, then cut the answer short (the connection dies mid-response).
    ResetAfterAccept,
}

#[derive(Default)]
pub struct FakeState {
    pub sent: Vec<Sent>,
    pub calls: usize,
    pub lookups: usize,
    pub refuse: Vec<String>,
    pub fail_next: usize,
    pub delay: Duration,
    /// Faults for the next create calls, in order.
    pub faults: std::collections::VecDeque<Fault>,
    /// While set, every create waits here until the test releases it.
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
    /// While set, an accepted create's answer waits here until the test releases it.
    pub answer_gate: Option<Arc<tokio::sync::Semaphore>>,
}

/// Twilio's Messages resource, as far as the relay uses it: Basic auth, form fields, 201 with
/// a sid, 400 with 21610 for a chosen recipient, 500 on demand, the faults above, and the
/// list (`GET`, filtered by `To` and `From`, newest first). Like Twilio, it does not
/// deduplicate: every accepted create is a text.
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
            .route(
                "/2010-04-01/Accounts/{account}/Messages.json",
                post(create).get(list),
            )
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

    /// Turns away every create held at the door, creating nothing.
    pub fn drop_held(&self) {
        if let Some(gate) = self.state.lock().unwrap().gate.take() {
            gate.close();
        }
    }

    /// Waits until `n` creates were accepted.
    pub async fn wait_sent(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.sent().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{n} creates within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Holds every accepted create's answer until [`release_answers`](FakeTwilio::release_answers).
    pub fn hold_answers(&self) {
        self.state.lock().unwrap().answer_gate = Some(Arc::new(tokio::sync::Semaphore::new(0)));
    }

    pub fn release_answers(&self) {
        if let Some(gate) = self.state.lock().unwrap().answer_gate.take() {
            gate.add_permits(1 << 20);
        }
    }

    /// Queues faults for the next create calls.
    pub fn faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    /// How many times each (from, to, body) was accepted.
    pub fn creates_of(&self, from: &str, to: &str, body: &str) -> usize {
        self.sent()
            .iter()
            .filter(|s| s.from == from && s.to == to && s.body == body)
            .count()
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

fn authorized(account: &str, headers: &HeaderMap) -> bool {
    // The account's auth token, or an API key and its secret.
    let accepted = [(ACCOUNT_SID, AUTH_TOKEN), (API_KEY, API_SECRET)].map(|(user, pass)| {
        format!(
            "Basic {}",
            base64_encode(format!("{user}:{pass}").as_bytes())
        )
    });
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    account == ACCOUNT_SID && accepted.iter().any(|a| Some(a.as_str()) == given)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        r#"{"code": 20003, "status": 401}"#,
    )
        .into_response()
}

async fn create(
    State(shared): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&account, &headers) {
        return unauthorized();
    }
    let state = shared.state;
    shared.arrived.send_modify(|n| *n += 1);
    let (delay, gate) = {
        let s = state.lock().unwrap();
        (s.delay, s.gate.clone())
    };
    if let Some(gate) = gate {
        if gate.acquire().await.is_err() {
            // Dropped at the door: nothing was created.
            return (StatusCode::SERVICE_UNAVAILABLE, "dropped").into_response();
        }
    }
    tokio::time::sleep(delay).await;
    let form = Form::parse(&body).unwrap();
    let (fault, sid, answer_gate) = {
        let mut s = state.lock().unwrap();
        s.calls += 1;
        let fault = s.faults.pop_front();
        if fault == Some(Fault::FailBefore) {
            return (StatusCode::SERVICE_UNAVAILABLE, "upstream trouble").into_response();
        }
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
        let sid = format!("SM{:032x}", s.sent.len() + 1);
        s.sent.push(Sent {
            sid: sid.clone(),
            from: form.get("From").unwrap_or_default().to_owned(),
            to,
            body: form.get("Body").unwrap_or_default().to_owned(),
            status_callback: form.get("StatusCallback").map(str::to_owned),
            created: std::time::SystemTime::now(),
        });
        (fault, sid, s.answer_gate.clone())
    };
    if let Some(gate) = answer_gate {
        let _ = gate.acquire().await;
    }
    let body = format!(r#"{{"sid": "{sid}", "status": "queued"}}"#);
    match fault {
        Some(Fault::AcceptThenTimeout) => {
            // Longer than any client timeout the tests configure.
            tokio::time::sleep(Duration::from_secs(10)).await;
            (StatusCode::CREATED, body).into_response()
        }
        Some(Fault::ResetAfterAccept) => {
            let broken = futures_util_stream_error();
            (StatusCode::CREATED, axum::body::Body::from_stream(broken)).into_response()
        }
        _ => (StatusCode::CREATED, body).into_response(),
    }
}

/// A body that fails at once: hyper then cuts the connection after the status line.
fn futures_util_stream_error(
) -> impl futures_core::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Send {
    struct Broken;
    impl futures_core::Stream for Broken {
        type Item = Result<axum::body::Bytes, std::io::Error>;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(Some(Err(std::io::Error::other("reset"))))
        }
    }
    Broken
}

#[derive(serde::Deserialize)]
struct ListQuery {
    #[serde(rename = "To")]
    to: Option<String>,
    #[serde(rename = "From")]
    from: Option<String>,
}

async fn list(
    State(shared): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Response {
    if !authorized(&account, &headers) {
        return unauthorized();
    }
    let mut s = shared.state.lock().unwrap();
    s.lookups += 1;
    let messages: Vec<serde_json::Value> = s
        .sent
        .iter()
        .rev()
        .filter(|m| q.to.as_ref().map_or(true, |t| *t == m.to))
        .filter(|m| q.from.as_ref().map_or(true, |f| *f == m.from))
        .take(50)
        .map(|m| {
            serde_json::json!({
                "sid": m.sid, "to": m.to, "from": m.from, "body": m.body,
                "date_created": rfc2822::format(m.created), "status": "queued",
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "messages": messages, "page": 0 })).into_response()
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

/// A journal file of its own for a server on PostgreSQL (a SQLite server's sits beside its
/// database): journals are exclusive to one instance.
pub fn journal_for(database: &str) -> Option<String> {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    if !database.starts_with("postgres") {
        return None;
    }
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let name = format!("{}.journal.db", database.rsplit('/').next().unwrap_or("pg"));
    Some(dir.path().join(name).to_string_lossy().into_owned())
}

pub fn config(database: &str, extra: &[&str]) -> Config {
    let journal = journal_for(database);
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
    if let (Some(j), false) = (&journal, extra.contains(&"--journal")) {
        args.extend_from_slice(&["--journal", j]);
    }
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
    ];
    if !extra.contains(&"--send-timeout-ms") {
        args.extend_from_slice(&["--send-timeout-ms", "2000"]);
    }
    args.extend_from_slice(extra);
    Server::start(&config(database, &args), None).await.unwrap()
}

pub fn client(server: &Server) -> TwilioClient {
    TwilioClient::new(&server.url(), &server.url(), AUTH_TOKEN, ADMIN_TOKEN)
}

/// A TCP proxy in front of the PostgreSQL server that can cut the database off: while cut it
/// drops every connection it carries and every new one at once, as a failover or a network
/// partition does.
pub struct Cut {
    pub port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    kill: tokio::sync::broadcast::Sender<()>,
}

impl Cut {
    pub async fn start(upstream: &str) -> Cut {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (kill, _) = tokio::sync::broadcast::channel::<()>(4);
        let (flag, killer, upstream) = (cut.clone(), kill.clone(), upstream.to_owned());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut dead = killer.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = dead.recv() => {}
                    }
                });
            }
        });
        Cut { port, cut, kill }
    }

    /// `url` with its host and port replaced by this proxy's.
    pub fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (auth, path) = rest.split_once('/').unwrap();
        let user = auth.rsplit_once('@').map_or("", |(u, _)| u);
        let at = if user.is_empty() { "" } else { "@" };
        format!("{scheme}://{user}{at}127.0.0.1:{}/{path}", self.port)
    }

    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.kill.send(());
    }

    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
