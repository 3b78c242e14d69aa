//! CPU time per message, by thread group, read from `/proc/self/task/*/schedstat` (the
//! nanoseconds each thread of this process ran). A closed loop saturates the machine only if
//! the server keeps up, so requests per second alone cannot say whether a faster database
//! could reach a target: the CPU each message costs, set against the cores there are, can.
//! The PostgreSQL server's processes on this machine (every process named `postgres`) are
//! counted too, as their own group: on one machine they share the cores with the relay.
//! Linux only; elsewhere the snapshot is empty and the table says so.

use std::collections::BTreeMap;
use std::time::Duration;

/// The thread names the load gives its runtimes (see `main`), and the SQLite ledger's.
pub const SERVER: &str = "relay-server";
pub const CLIENT: &str = "load-client";
/// `proxy-optout-sqlite`, as the kernel keeps it (15 bytes).
const DATABASE: &str = "proxy-optout-sq";

/// Nanoseconds on the CPU so far, per thread group.
#[derive(Clone, Debug, Default)]
pub struct Snapshot(BTreeMap<&'static str, u64>);

fn group(comm: &str) -> &'static str {
    match comm {
        SERVER => "server",
        CLIENT => "generator",
        DATABASE => "database",
        _ => "other",
    }
}

/// The CPU every thread of this process has used, by group. Threads that ended are not
/// counted, so take both snapshots while the servers run.
pub fn snapshot() -> Snapshot {
    let mut groups = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Snapshot(groups);
    };
    for task in tasks.flatten() {
        let path = task.path();
        if let Ok(comm) = std::fs::read_to_string(path.join("comm")) {
            *groups.entry(group(comm.trim_end())).or_insert(0) += ran(&path);
        }
    }
    // Backends that end between two snapshots take their time with them; the relay's pool
    // keeps its connections, so during a run they do not.
    if let Ok(processes) = std::fs::read_dir("/proc") {
        for process in processes.flatten() {
            let path = process.path();
            if std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim_end() == "postgres")
            {
                *groups.entry("postgres").or_insert(0) += ran(&path);
            }
        }
    }
    Snapshot(groups)
}

/// The nanoseconds a task (`/proc/<pid>` or `/proc/self/task/<tid>`) has run; 0 if it is gone.
fn ran(task: &std::path::Path) -> u64 {
    std::fs::read_to_string(task.join("schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What each group used between two snapshots, per message.
#[derive(Clone, Debug)]
pub struct PerMessage {
    pub server: Duration,
    pub generator: Duration,
    pub database: Duration,
    /// The PostgreSQL server's processes.
    pub postgres: Duration,
    pub other: Duration,
}

impl PerMessage {
    pub fn between(before: &Snapshot, after: &Snapshot, messages: usize) -> Option<PerMessage> {
        if after.0.is_empty() || messages == 0 {
            return None;
        }
        let used = |g: &str| {
            let ns = after
                .0
                .get(g)
                .copied()
                .unwrap_or(0)
                .saturating_sub(before.0.get(g).copied().unwrap_or(0));
            Duration::from_nanos(ns / messages as u64)
        };
        Some(PerMessage {
            server: used("server"),
            generator: used("generator"),
            database: used("database"),
            postgres: used("postgres"),
            other: used("other"),
        })
    }

    pub fn total(&self) -> Duration {
        self.server + self.generator + self.database + self.postgres + self.other
    }
}

/// The most CPU a message may use, all threads together, for `rps` messages a second on
/// `cores` cores.
pub fn budget(cores: usize, rps: f64) -> Duration {
    Duration::from_secs_f64(cores as f64 / rps.max(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_fall_into_their_groups() {
        assert_eq!(group("relay-server"), "server");
        assert_eq!(group("load-client"), "generator");
        assert_eq!(group("proxy-optout-sq"), "database");
        assert_eq!(group("load"), "other");
    }

    #[test]
    fn per_message_is_the_difference_divided() {
        let before = Snapshot(BTreeMap::from([("server", 1_000), ("database", 0)]));
        let after = Snapshot(BTreeMap::from([
            ("server", 41_000),
            ("database", 20_000),
            ("generator", 10_000),
            ("postgres", 30_000),
        ]));
        let m = PerMessage::between(&before, &after, 10).unwrap();
        assert_eq!(m.server, Duration::from_nanos(4_000));
        assert_eq!(m.database, Duration::from_nanos(2_000));
        assert_eq!(m.generator, Duration::from_nanos(1_000));
        assert_eq!(m.postgres, Duration::from_nanos(3_000));
        assert_eq!(m.total(), Duration::from_nanos(10_000));
        assert!(PerMessage::between(&before, &Snapshot::default(), 10).is_none());
        assert_eq!(budget(2, 20_000.0), Duration::from_micros(100));
    }
}
