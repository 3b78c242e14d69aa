//! SIGKILL mid-stream: a child process records opt-outs and prints each acknowledged one; the
//! parent kills it at 20 different points, reopens the file, and finds every acknowledged
//! opt-out.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use proxy_optout::{
    Change, ChangeSource, HistoryQuery, HistoryStore, LedgerKey, OptOutStore, OptState,
};
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

const HISTORY_CHILD: &str = "PROXY_OPTOUT_SQLITE_HISTORY_CRASH_CHILD";

/// The child of the history check: flips eight keys' states with their facts until killed.
#[test]
fn history_crash_child() {
    let Ok(path) = std::env::var(HISTORY_CHILD) else {
        return;
    };
    let store = SqliteStore::open(&path).unwrap();
    let stdout = std::io::stdout();
    for i in 0_u64.. {
        let who = format!("+1555000000{}", i % 8);
        let state = if (i / 8) % 2 == 0 {
            OptState::OptedOut
        } else {
            OptState::OptedIn
        };
        let change = Change::new(LedgerKey::new("+1P", &who), state, ChangeSource::Keyword)
            .with_keyword("STOP")
            .with_text("stop")
            .with_message_id("SM1");
        store.record_change(&change).unwrap();
        let mut out = stdout.lock();
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}

/// SIGKILL at 20 points that are not aligned with the writes (a delay after the last ack that
/// differs per point, so some kills land inside a statement): after each, every state has its
/// entry and every entry's key has a state, each key's last entry is the one behind its
/// state, and every acknowledged change is in the history.
#[test]
fn no_state_without_its_history_entry_after_sigkill_at_20_points() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for point in 0..20_u64 {
        let path = dir.path().join(format!("history-{point}.db"));
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "history_crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HISTORY_CHILD, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let kill_after = 3 + point * 5;
        let mut acked = 0;
        let mut line = String::new();
        while acked < kill_after {
            line.clear();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "the child stopped early"
            );
            if line.starts_with("ack ") {
                acked += 1;
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(point * 137 % 900));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let store = SqliteStore::open(&path).unwrap();
        let entries = store.history(&HistoryQuery::new().limit(10_000)).unwrap();
        assert!(
            entries.len() as u64 >= acked,
            "kill point {point}: {} entries for {acked} acknowledged changes",
            entries.len()
        );
        let orphans: (i64, i64, i64) = store
            .with_connection(|c| {
                c.query_row(
                    "SELECT
                       (SELECT count(*) FROM opt_out_ledger l WHERE NOT EXISTS (
                          SELECT 1 FROM opt_out_history h WHERE h.seq = l.history_seq
                            AND h.scope = l.scope AND h.participant = l.participant
                            AND h.state = l.state)),
                       (SELECT count(*) FROM opt_out_history h WHERE NOT EXISTS (
                          SELECT 1 FROM opt_out_ledger l
                          WHERE l.scope = h.scope AND l.participant = h.participant)),
                       (SELECT count(*) FROM opt_out_ledger l WHERE l.history_seq <> (
                          SELECT max(seq) FROM opt_out_history h
                          WHERE h.scope = l.scope AND h.participant = l.participant))",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
            })
            .unwrap();
        assert_eq!(
            orphans,
            (0, 0, 0),
            "kill point {point}: (states without their entry, entries without a state, states behind their key's last entry)"
        );
        for e in &entries {
            assert_eq!(e.keyword.as_deref(), Some("STOP"));
        }
    }
}
