//! A PostgreSQL database of one test's own on the server of `PROXY_OPTOUT_PG_URL`: dropped when
//! the test passes, kept for inspection when it fails. Each database is named for its test
//! and its process, so test processes running at once never share one, and carries a comment
//! naming that process; the first database a process creates sweeps away those whose process
//! has ended (kept by a failed run, or left by a run that was killed), so repeated runs do not
//! pile up databases. Only databases with that comment are ever swept: a database of the
//! server's own users never is, whatever its name.
//!
//! Shared by the relay's tests and `proxy-optout-host`'s `rides` test (by `#[path]`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};

/// A test's database; dropping it drops the database unless the thread is panicking.
pub struct PgDatabase {
    /// The configured URL: where the database is created and dropped from.
    server: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// Creates `{prefix}{test}_{pid}` on `server` (the first 40 characters of `test`: names
    /// are at most 63 bytes), after sweeping the test databases of ended processes.
    pub async fn create(server: &str, prefix: &str, test: &str) -> PgDatabase {
        let client = connect(server).await;
        sweep(&client).await;
        let short: String = test.chars().take(40).collect();
        let pid = std::process::id();
        let name = format!("{prefix}{short}_{pid}");
        // One statement per query: PostgreSQL runs a query of several in a transaction, and
        // neither DROP DATABASE nor CREATE DATABASE may run in one.
        for statement in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
            format!("COMMENT ON DATABASE {name} IS '{MARK}{pid}'"),
        ] {
            client.batch_execute(&statement).await.unwrap();
        }
        let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
        PgDatabase {
            server: server.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// The database's own URL (what `--database` takes).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "the failed test's PostgreSQL database is kept for inspection: {} (the next run drops it)",
                self.url
            );
            return;
        }
        // Drop runs inside the test's runtime, which cannot block on a future: the drop gets a
        // thread and a runtime of its own, and is waited for, so the test ends with it gone.
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(async {
                    connect(&server)
                        .await
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await
                        .map_err(|e| e.to_string())
                })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop the test database {}: {e}", self.name),
            Err(_) => eprintln!("dropping the test database {} panicked", self.name),
        }
    }
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// What a test database's comment starts with; the owning process's id follows.
const MARK: &str = "proxy-optout test database of process ";

/// The process a test database belongs to, from its comment.
pub fn owner(comment: &str) -> Option<u32> {
    comment.strip_prefix(MARK)?.parse().ok()
}

/// [`sweep_ended`], once per process.
async fn sweep(client: &tokio_postgres::Client) {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if !SWEPT.swap(true, Ordering::SeqCst) {
        sweep_ended(client).await;
    }
}

/// Drops the test databases whose process has ended. Where there is no `/proc` to ask,
/// nothing is swept: a database of a live process must never be dropped.
pub async fn sweep_ended(client: &tokio_postgres::Client) {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let rows = client
        .query(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database",
            &[],
        )
        .await
        .unwrap();
    for row in rows {
        let name: String = row.get(0);
        let comment: Option<String> = row.get(1);
        let Some(pid) = comment.as_deref().and_then(owner) else {
            continue;
        };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // Another process sweeping at the same time may have dropped it first.
        let _ = client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
    }
}
