//! Bounded scale run of the opt-out records: import a generated list of `--import` rows, grow
//! the history to `--history` entries, export all of it as CSV, and print the time and the
//! peak memory of each step. On SQLite (a temporary file), and on PostgreSQL when a URL is
//! given (in a schema of its own, dropped first).
//!
//! ```text
//! cargo run --release -p proxy-relay --example optouts_scale -- \
//!     [--import 100000] [--history 1000000] [--postgres URL]
//! ```
//!
//! Peak memory is the process's resident high-water mark (`VmHWM`), reset before each step
//! through `/proc/self/clear_refs`, so each figure is that step's own peak.

use std::io::Write;
use std::time::Instant;

use proxy_optout::{Change, ChangeSource, LedgerKey, OptState};
use proxy_optout_postgres::{Options, PgStore};
use proxy_relay::{export, import, ExportFilter, ExportFormat, ExportWhat, OptOutDb};

struct Args {
    import: usize,
    history: usize,
    postgres: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        import: 100_000,
        history: 1_000_000,
        postgres: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--import" => a.import = value.parse().expect("--import: a count"),
            "--history" => a.history = value.parse().expect("--history: a count"),
            "--postgres" => a.postgres = Some(value),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        a.history >= a.import,
        "--history counts the imported entries too"
    );
    a
}

/// This process's resident high-water mark in MiB, from `/proc/self/status`.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Resets the high-water mark to the current resident size (Linux 4.0 and later).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Counts what is written, keeping nothing.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn participant(i: usize) -> String {
    format!("+1555{i:07}")
}

async fn run(name: &str, db: &OptOutDb, a: &Args) {
    // The list to import: one proxy number, `import` participants, a time for each.
    let mut csv = String::from("phone_number,proxy_number,opted_out_at\n");
    for i in 0..a.import {
        csv.push_str(&format!(
            "{},+15550000100,2025-03-14T09:30:00Z\n",
            participant(i)
        ));
    }
    reset_peak();
    let start = Instant::now();
    let report = import(db, csv.as_bytes(), None).await.expect("import");
    let import_time = start.elapsed();
    let import_peak = peak_mib();
    assert_eq!(report.recorded as usize, a.import, "every row is new");
    drop(csv);

    // Grow the history: the first 10,000 imported pairs opt in and out again, a batch at a
    // time, each batch one transaction.
    let batch = a.import.clamp(1, 10_000);
    let keys: Vec<String> = (0..batch).map(participant).collect();
    let mut entries = a.import;
    let mut round = 0;
    while entries < a.history {
        let state = if round % 2 == 0 {
            OptState::OptedIn
        } else {
            OptState::OptedOut
        };
        let n = batch.min(a.history - entries);
        let changes: Vec<Change<'_>> = keys[..n]
            .iter()
            .map(|p| {
                Change::new(
                    LedgerKey::new("+15550000100", p),
                    state,
                    ChangeSource::Operator,
                )
            })
            .collect();
        let recorded = match db {
            OptOutDb::Sqlite(s) => s.record_changes(&changes).expect("record") as u64,
            OptOutDb::Postgres(p) => p.record_changes(&changes).await.expect("record"),
            _ => unreachable!("the example opens SQLite or PostgreSQL"),
        };
        assert_eq!(recorded as usize, n);
        entries += n;
        round += 1;
    }

    reset_peak();
    let start = Instant::now();
    let mut out = Counter(0);
    let exported = export(
        db,
        ExportWhat::History,
        &ExportFilter::default(),
        ExportFormat::Csv,
        &mut out,
    )
    .await
    .expect("export");
    let export_time = start.elapsed();
    let export_peak = peak_mib();
    assert_eq!(exported as usize, a.history, "the export holds every entry");
    println!(
        "{name}: import of {} rows in {:.2} s (peak {import_peak:.0} MiB); \
         export of {exported} entries ({:.0} MiB of CSV) in {:.2} s (peak {export_peak:.0} MiB)",
        a.import,
        import_time.as_secs_f64(),
        out.0 as f64 / 1_048_576.0,
        export_time.as_secs_f64(),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("scale.db");
    let db = OptOutDb::open(path.to_str().expect("a UTF-8 path"))
        .await
        .expect("SQLite");
    run("SQLite", &db, &a).await;
    if let Some(url) = &a.postgres {
        let schema = "proxy_optout_scale";
        let (client, conn) = proxy_optout_postgres::tokio_postgres::connect(
            url,
            proxy_optout_postgres::tokio_postgres::NoTls,
        )
        .await
        .expect("PostgreSQL");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .expect("drop the schema");
        let store = PgStore::connect_with(url, Options::default().schema(schema))
            .await
            .expect("PostgreSQL");
        run("PostgreSQL", &OptOutDb::Postgres(store), &a).await;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .expect("drop the schema");
    }
}
