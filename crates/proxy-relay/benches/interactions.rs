//! A page of 100 Interactions from a session with 100,000 of them, through the Proxy API over
//! real HTTP on loopback: the first page, and the last one (following `PageToken`, an index
//! range). Beside them, the naive way to the last page: `OFFSET 99,900`, which reads and
//! skips every row before it. SQLite always; PostgreSQL too where `PROXY_OPTOUT_PG_URL` is
//! set.
//!
//! ```text
//! cargo bench -p proxy-relay --bench interactions
//! ```

use std::sync::Arc;

use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion};
use proxy_relay::{Config, MemorySender, Sender, Server};

const ACCOUNT: &str = "AC00000000000000000000000000000000";
const TOKEN: &str = "bench-token";
const ROWS: i64 = 100_000;

struct Fixture {
    server: Server,
    http: reqwest::Client,
    service: String,
    session: String,
    /// The token of the row just before the last page.
    last_page: String,
}

async fn fixture(database: &str, journal: &std::path::Path) -> Fixture {
    let cli = proxy_relay::Cli::parse_from([
        "proxy-relay",
        "--listen",
        "127.0.0.1:0",
        "--database",
        database,
        "--journal",
        journal.to_str().unwrap(),
        "--auth-token",
        TOKEN,
        "--twilio-account-sid",
        ACCOUNT,
    ]);
    let config = Config::from_args(&cli.serve).unwrap();
    let server = Server::start(
        &config,
        Some(Arc::new(MemorySender::new()) as Arc<dyn Sender>),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str, form: Vec<(&'static str, String)>| {
        http.post(format!("{}/v1/{path}", server.url()))
            .basic_auth(ACCOUNT, Some(TOKEN))
            .form(&form)
    };
    let session: serde_json::Value = post(
        "Services/default/Sessions",
        vec![
            ("Participants", r#"{"Identifier": "+15551110001"}"#.into()),
            ("Participants", r#"{"Identifier": "+15552220002"}"#.into()),
        ],
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let sid = session["sid"].as_str().unwrap().to_owned();
    let service = session["service_sid"].as_str().unwrap().to_owned();
    let db = server.app().db();
    db.execute(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
         INSERT INTO proxy_interactions (sid, session_sid, service_sid, data, type,
             inbound_resource_status, inbound_resource_type, date_created, date_updated)
         SELECT 'KIbench' || i, '{sid}', '{service}', '{{\"body\": \"hello\"}}', 'message',
             'delivered', 'Message', 1796215500 + i, 1796215500 + i FROM n"
    ))
    .await
    .unwrap();
    let first = db
        .scalar(&format!(
            "SELECT min(seq) FROM proxy_interactions WHERE session_sid = '{sid}'"
        ))
        .await
        .unwrap();
    Fixture {
        server,
        http,
        service,
        session: sid,
        // Newest first: the last page holds the 100 oldest rows, after the 101st oldest.
        last_page: format!("PT{}", first + 100),
    }
}

impl Fixture {
    async fn page(&self, token: Option<&str>) -> usize {
        let mut url = format!(
            "{}/v1/Services/{}/Sessions/{}/Interactions?PageSize=100",
            self.server.url(),
            self.service,
            self.session
        );
        if let Some(t) = token {
            url.push_str(&format!("&PageToken={t}"));
        }
        let page: serde_json::Value = self
            .http
            .get(url)
            .basic_auth(ACCOUNT, Some(TOKEN))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["interactions"].as_array().map_or(0, Vec::len)
    }

    async fn offset(&self) -> i64 {
        self.server
            .app()
            .db()
            .scalar(&format!(
                "SELECT count(*) FROM (SELECT sid, data FROM proxy_interactions
                 WHERE session_sid = '{}' ORDER BY seq DESC LIMIT 100 OFFSET {}) page",
                self.session,
                ROWS - 100
            ))
            .await
            .unwrap()
    }
}

fn run(c: &mut Criterion, name: &str, database: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = database.replace("{dir}", dir.path().to_str().unwrap());
    let f = rt.block_on(fixture(&database, &dir.path().join("journal.db")));
    let mut group = c.benchmark_group(format!("interactions_page_{name}"));
    group.sample_size(20);
    group.bench_function("first_page", |b| {
        b.iter(|| assert_eq!(rt.block_on(f.page(None)), 100));
    });
    group.bench_function("last_page_by_token", |b| {
        b.iter(|| assert_eq!(rt.block_on(f.page(Some(&f.last_page))), 100));
    });
    group.bench_function("naive_offset_last_page", |b| {
        b.iter(|| assert_eq!(rt.block_on(f.offset()), 100));
    });
    group.finish();
    rt.block_on(f.server.shutdown()).unwrap();
}

fn benches(c: &mut Criterion) {
    run(c, "sqlite", "{dir}/bench.db");
    if let Ok(url) = std::env::var("PROXY_OPTOUT_PG_URL") {
        if !url.is_empty() {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let fresh = rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                for statement in [
                    "DROP DATABASE IF EXISTS proxy_relay_bench WITH (FORCE)",
                    "CREATE DATABASE proxy_relay_bench",
                ] {
                    client.batch_execute(statement).await.unwrap();
                }
                let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
                format!("{base}/proxy_relay_bench")
            });
            run(c, "postgres", &fresh);
        }
    }
}

criterion_group!(interactions, benches);
criterion_main!(interactions);
