//! SIGKILL mid-stream: a child process records opt-outs and prints each acknowledged one; the
//! parent kills it at 20 different points, reopens the file, and finds every acknowledged
//! opt-out.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use proxy_optout::{LedgerKey, OptOutStore, OptState};
use proxy_optout_sqlite::SqliteStore;

const CHILD: &str = "PROXY_OPTOUT_SQLITE_CRASH_CHILD";

/// The child: records until killed. Only does anything when the parent sets `CHILD`.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD) else {
        return;
    };
    let store = SqliteStore::open(&path).unwrap();
    let stdout = std::io::stdout();
    for i in 0.. {
        let who = format!("+1555{i:07}");
        store
            .record(LedgerKey::new("+1P", &who), OptState::OptedOut)
            .unwrap();
        // Acknowledged: only now may anyone be told.
        let mut out = stdout.lock();
        writeln!(out, "ack {who}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn every_acknowledged_opt_out_survives_sigkill_at_20_points() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut total = 0;
    for point in 0..20 {
        let path = dir.path().join(format!("crash-{point}.db"));
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reader = BufReader::new(child.stdout.take().unwrap());
        let kill_after = 5 + point * 7;
        let mut acked = Vec::new();
        for line in reader.lines() {
            let line = line.unwrap();
            if let Some(who) = line.strip_prefix("ack ") {
                acked.push(who.to_owned());
                if acked.len() >= kill_after {
                    child.kill().unwrap(); // SIGKILL
                    break;
                }
            }
        }
        child.wait().unwrap();
        assert_eq!(acked.len(), kill_after, "the child stopped early");
        let store = SqliteStore::open(&path).unwrap();
        for who in &acked {
            assert_eq!(
                store.state(LedgerKey::new("+1P", who)).unwrap(),
                OptState::OptedOut,
                "kill point {point}: acknowledged opt-out of {who} lost"
            );
        }
        total += acked.len();
    }
    assert!(total >= 20 * 5);
}
