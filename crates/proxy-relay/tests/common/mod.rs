//! What the end-to-end tests share: a fake Twilio REST API on loopback, the databases every
//! scenario runs on (a temporary SQLite file, and a fresh database on the real PostgreSQL
//! server where `PROXY_OPTOUT_PG_URL` is set), and servers started in process.
#![allow(dead_code, unused_macros)]

#[path = "../../src/demo/client.rs"]
pub mod client;
pub mod fake_twilio;
#[path = "../../examples/load/generator.rs"]
pub mod load;
pub mod pg_database;
#[path = "../../../proxy-optout-host/src/rfc2822.rs"]
pub mod rfc2822;

pub use fake_twilio::*;
pub use pg_database::PgDatabase;

use std::sync::Arc;

use clap::Parser;
use client::TwilioClient;
use proxy_relay::{Config, Server};

/// A database a scenario runs on, gone when dropped: the SQLite directory always, the
/// PostgreSQL database when the test passed (a failed test's is kept for inspection, and the
/// next run drops it).
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(PgDatabase),
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
            TestDb::Postgres(db) => db.url().to_owned(),
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
/// running at once never share tables; dropped with the value when the test passes.
pub async fn fresh_pg_database(name: &str) -> Option<PgDatabase> {
    let url = pg_url()?;
    Some(PgDatabase::create(&url, "proxy_relay_", name).await)
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
        "--twilio-account-sid",
        ACCOUNT_SID,
    ];
    if let (Some(j), false) = (&journal, extra.contains(&"--journal")) {
        args.extend_from_slice(&["--journal", j]);
    }
    args.extend_from_slice(extra);
    Config::from_args(&proxy_relay::Cli::parse_from(args).serve).unwrap()
}

/// A server using the fake Twilio for sends.
pub async fn start_with_twilio(database: &str, fake: &FakeTwilio, extra: &[&str]) -> Server {
    let mut args = vec!["--sender", "twilio", "--twilio-api-url", &fake.url];
    if !extra.contains(&"--send-timeout-ms") {
        args.extend_from_slice(&["--send-timeout-ms", "2000"]);
    }
    args.extend_from_slice(extra);
    Server::start(&config(database, &args), None).await.unwrap()
}

pub fn client(server: &Server) -> TwilioClient {
    TwilioClient::new(&server.url(), &server.url(), AUTH_TOKEN, ACCOUNT_SID)
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
