//! Bounded loopback load: the relay (SQLite, and PostgreSQL when a URL is given) beside the
//! floor server, for ordinary messages and for STOP/START (durable writes). Stops by itself.
//!
//! ```text
//! cargo run --release -p proxy-relay --example load -- \
//!     [--requests 20000] [--concurrency 32] [--rate 500] [--steady 5000] [--postgres URL]
//! ```
//!
//! The servers run on their own 2-worker runtime, the load generator on a 1-worker runtime,
//! all in this process on loopback: on a 2-core machine they share the cores, as a server and
//! a colocated proxy would. Requests are signed before the clock starts.
//!
//! After the tables it prints the CPU one ordinary message used in each closed loop, by thread
//! group (`cpu.rs`), beside the most a message may use for each throughput target on this
//! machine's cores.

use std::sync::Arc;

#[path = "../../src/demo/client.rs"]
mod client;
mod cpu;
mod generator;

use generator::{closed_loop, floor_router, open_loop, prepare, Stats};
use proxy_relay::{Config, Server};

const AUTH: &str = "load-test-auth-token";
const ACCOUNT: &str = "AC00000000000000000000000000000000";

struct Args {
    requests: usize,
    concurrency: usize,
    rate: u32,
    steady: usize,
    postgres: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        requests: 20_000,
        concurrency: 32,
        rate: 500,
        steady: 5_000,
        postgres: std::env::var("PROXY_OPTOUT_PG_URL")
            .ok()
            .filter(|v| !v.is_empty()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let num = || {
            value
                .parse::<usize>()
                .unwrap_or_else(|_| panic!("{flag}: {value:?} is not a number"))
        };
        match flag.as_str() {
            "--requests" => a.requests = num(),
            "--concurrency" => a.concurrency = num(),
            "--rate" => a.rate = u32::try_from(num()).expect("--rate fits u32"),
            "--steady" => a.steady = num(),
            "--postgres" => {
                a.postgres = Some(value.clone()).filter(|v| !v.is_empty() && v != "none")
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Logs as [`proxy_relay::LogSender`] does, and answers each send with a random `SM` SID, as
/// Twilio's Messages API does: the relay stores it on the Interaction's outbound leg, which a
/// sender reporting no SID would leave empty.
struct Accepting;

impl proxy_relay::Sender for Accepting {
    fn send<'a>(
        &'a self,
        message: &'a proxy_relay::Outgoing,
    ) -> proxy_relay::SendFuture<'a, proxy_relay::Sent> {
        Box::pin(async move {
            let _ = proxy_relay::LogSender.send(message).await?;
            Ok(proxy_relay::Sent::Accepted {
                sid: Some(format!("SM{}", uuid::Uuid::new_v4().simple())),
            })
        })
    }

    fn name(&self) -> &'static str {
        "accepting"
    }
}

fn ms(d: std::time::Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn row(target: &str, workload: &str, s: &Stats) {
    println!(
        "| {target} | {workload} | {} | {:.0} | {} | {} | {} | {} |",
        s.requests,
        s.rps(),
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
        s.errors
    );
}

fn main() {
    let a = args();
    // The server logs as it would in production (one info line per message), into a sink.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .init();
    // Named, so the CPU table can tell the server's threads from the generator's.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(cpu::SERVER)
        .enable_all()
        .build()
        .unwrap();
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(cpu::CLIENT)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{} requests per closed-loop run at concurrency {}, {} at a steady {} requests/s",
        a.requests, a.concurrency, a.steady, a.rate
    );
    println!("\n| server | workload | requests | requests/s | p50 ms | p99 ms | max ms | errors |\n|---|---|---|---|---|---|---|---|");

    // The floor.
    let listener = servers
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let floor_url = format!("http://{}", listener.local_addr().unwrap());
    let router = floor_router(AUTH, &floor_url);
    servers.spawn(async move { axum::serve(listener, router).await });
    let pairs = pairs(50);
    let ordinary = |url: &str, n| {
        Arc::new(prepare(
            url,
            AUTH,
            &pairs.riders,
            &["on my way, 5 minutes"],
            n,
        ))
    };
    let floor = load.block_on(async {
        closed_loop(&floor_url, ordinary(&floor_url, 1000), a.concurrency).await;
        let requests = ordinary(&floor_url, a.requests);
        let before = cpu::snapshot();
        let s = closed_loop(&floor_url, requests, a.concurrency).await;
        let used = cpu::PerMessage::between(&before, &cpu::snapshot(), s.requests);
        row("floor", "ordinary, closed loop", &s);
        let steady = open_loop(&floor_url, ordinary(&floor_url, a.steady), a.rate).await;
        row("floor", &format!("ordinary, {} rps", a.rate), &steady);
        (s, used)
    });
    let (floor, floor_cpu) = floor;
    let mut cpu_rows = vec![("floor", floor.rps(), floor_cpu)];

    let dir = tempfile::tempdir().unwrap();
    let mut targets = vec![(
        "SQLite",
        dir.path().join("load.db").to_string_lossy().into_owned(),
    )];
    if let Some(url) = &a.postgres {
        targets.push(("PostgreSQL", servers.block_on(fresh_database(url))));
    }
    let mut verdicts = Vec::new();
    for (name, database) in targets {
        let config = config(&database, &dir.path().join(format!("{name}.journal.db")));
        let server = servers
            .block_on(Server::start(&config, Some(Arc::new(Accepting))))
            .unwrap();
        let url = server.url();
        load.block_on(async {
            let c = client::TwilioClient::new(&url, &url, AUTH, ACCOUNT);
            let mut riders = Vec::new();
            let mut drivers = Vec::new();
            for (k, ((rider, _), (driver, _))) in pairs.riders.iter().zip(&pairs.drivers).enumerate() {
                let s = c.create_session(&format!("load-{k}"), rider, driver).await.unwrap();
                riders.push((rider.clone(), s.participants[0].proxy_identifier.clone()));
                drivers.push((driver.clone(), s.participants[1].proxy_identifier.clone()));
            }
            let msgs = |n| Arc::new(prepare(&url, AUTH, &riders, &["on my way, 5 minutes"], n));
            let stops = |n| Arc::new(prepare(&url, AUTH, &drivers, &["STOP", "START"], n));
            closed_loop(&url, msgs(1000), a.concurrency).await;
            let requests = msgs(a.requests);
            let before = cpu::snapshot();
            let s = closed_loop(&url, requests, a.concurrency).await;
            let used = cpu::PerMessage::between(&before, &cpu::snapshot(), s.requests);
            cpu_rows.push((name, s.rps(), used));
            row(name, "ordinary, closed loop", &s);
            let steady = open_loop(&url, msgs(a.steady), a.rate).await;
            row(name, &format!("ordinary, {} rps", a.rate), &steady);
            let stop = closed_loop(&url, stops(a.requests / 4), a.concurrency).await;
            row(name, "STOP/START, closed loop", &stop);
            let stop_steady = open_loop(&url, stops(a.steady), a.rate).await;
            row(name, &format!("STOP/START, {} rps", a.rate), &stop_steady);
            // The same ordinary messages with an InterceptCallbackUrl on the service: a hook
            // on loopback that answers 200 at once, so the row shows what the relay adds.
            let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let hook_url = format!("http://{}/intercept", hook.local_addr().unwrap());
            let ok = axum::Router::new().route("/intercept", axum::routing::post(|| async { "" }));
            tokio::spawn(async move { axum::serve(hook, ok).await });
            c.api(
                reqwest::Method::POST,
                &format!("Services/{}", proxy_relay::DEFAULT_SERVICE),
                &[("InterceptCallbackUrl", hook_url.as_str())],
            )
            .await
            .unwrap();
            closed_loop(&url, msgs(1000), a.concurrency).await;
            let hooked = closed_loop(&url, msgs(a.requests), a.concurrency).await;
            row(name, "ordinary, intercept hook, closed loop", &hooked);
            let hooked_steady = open_loop(&url, msgs(a.steady), a.rate).await;
            row(name, &format!("ordinary, intercept hook, {} rps", a.rate), &hooked_steady);
            c.api(
                reqwest::Method::POST,
                &format!("Services/{}", proxy_relay::DEFAULT_SERVICE),
                &[("InterceptCallbackUrl", "")],
            )
            .await
            .unwrap();
            // The foundation's targets: SQLite at least half the floor, PostgreSQL a quarter
            // (every message crosses the network to the database).
            let floor_share = if name == "SQLite" { 0.5 } else { 0.25 };
            verdicts.push(format!(
                "{name}: ordinary at {:.2}x the floor's requests/s (target {floor_share}x: {}); p99 {} ms at {} rps (target < 10 ms: {}); errors {}",
                s.rps() / floor.rps(),
                if s.rps() >= floor_share * floor.rps() { "met" } else { "NOT met" },
                ms(steady.p99),
                a.rate,
                if steady.p99.as_millis() < 10 { "met" } else { "NOT met" },
                s.errors + steady.errors + stop.errors + stop_steady.errors,
            ));
        });
        servers.block_on(server.shutdown()).unwrap();
    }
    cpu_table(&cpu_rows, floor.rps());
    println!();
    for v in verdicts {
        println!("{v}");
    }
}

/// CPU per message in each ordinary closed loop, by thread group, against what a message may
/// use for the relay to reach each target's share of the floor on this machine's cores.
fn cpu_table(rows: &[(&str, f64, Option<cpu::PerMessage>)], floor_rps: f64) {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let us = |d: std::time::Duration| format!("{:.1}", d.as_secs_f64() * 1e6);
    println!(
        "\nCPU per message, ordinary closed loop (µs): this process's threads, and the \
         PostgreSQL server's processes on this machine:\n\n| server | requests/s | server \
         threads | load generator | SQLite's thread | PostgreSQL's processes | other | total \
         |\n|---|---|---|---|---|---|---|---|"
    );
    for (name, rps, used) in rows {
        match used {
            Some(m) => println!(
                "| {name} | {rps:.0} | {} | {} | {} | {} | {} | {} |",
                us(m.server),
                us(m.generator),
                us(m.database),
                us(m.postgres),
                us(m.other),
                us(m.total())
            ),
            None => println!("| {name} | {rps:.0} | (no /proc/self/task here) | | | | | |"),
        }
    }
    for (share, target) in [(0.5, "SQLite"), (0.25, "PostgreSQL")] {
        println!(
            "At {share}x the floor ({:.0} requests/s, the {target} target) on {cores} cores, a \
             message may use at most {} µs of CPU, all threads together.",
            floor_rps * share,
            us(cpu::budget(cores, floor_rps * share))
        );
    }
}

struct Pairs {
    riders: Vec<(String, String)>,
    drivers: Vec<(String, String)>,
}

fn pairs(n: usize) -> Pairs {
    Pairs {
        riders: (0..n)
            .map(|k| (format!("+1555100{k:04}"), "+15550000100".to_owned()))
            .collect(),
        drivers: (0..n)
            .map(|k| (format!("+1555200{k:04}"), "+15550000100".to_owned()))
            .collect(),
    }
}

fn config(database: &str, journal: &std::path::Path) -> Config {
    use clap::Parser;
    let cli = proxy_relay::Cli::parse_from([
        "proxy-relay",
        "--listen",
        "127.0.0.1:0",
        "--database",
        database,
        "--journal",
        journal.to_str().unwrap(),
        "--auth-token",
        AUTH,
        "--twilio-account-sid",
        ACCOUNT,
    ]);
    Config::from_args(&cli.serve).unwrap()
}

async fn fresh_database(url: &str) -> String {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute("DROP DATABASE IF EXISTS proxy_relay_load WITH (FORCE)")
        .await
        .unwrap();
    client
        .batch_execute("CREATE DATABASE proxy_relay_load")
        .await
        .unwrap();
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    format!("{base}/proxy_relay_load")
}
