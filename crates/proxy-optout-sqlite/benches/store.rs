//! `cargo bench -p proxy-optout-sqlite --bench store`
//!
//! `record` and `state` through `SqliteStore` beside the same SQL issued directly through
//! rusqlite (`direct_*`), so the figure reads as our overhead. With `synchronous=FULL` (the
//! store's setting) and, as a labelled comparison only, `NORMAL`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use proxy_optout::{LedgerKey, OptOutStore, OptState};
use proxy_optout_sqlite::{Durability, Options, SqliteStore};
use rusqlite::{params, OptionalExtension};

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    for (label, durability) in [
        ("full", Durability::Full),
        ("normal_comparison_only", Durability::Normal),
    ] {
        let store = SqliteStore::open_with(
            dir.path().join(format!("{label}.db")),
            Options::default().durability(durability),
        )
        .unwrap();
        let direct =
            rusqlite::Connection::open(dir.path().join(format!("{label}-direct.db"))).unwrap();
        direct.pragma_update(None, "journal_mode", "WAL").unwrap();
        direct
            .pragma_update(
                None,
                "synchronous",
                if durability == Durability::Full {
                    "FULL"
                } else {
                    "NORMAL"
                },
            )
            .unwrap();
        direct.execute_batch(proxy_optout_sqlite::SCHEMA).unwrap();
        let keys: Vec<String> = (0..1000).map(|i| format!("+1555{i:07}")).collect();
        for k in &keys {
            store
                .record(LedgerKey::new("+1P", k), OptState::OptedOut)
                .unwrap();
            direct
                .execute(
                    "INSERT INTO opt_out_ledger VALUES ('+1P', ?1, 'opted_out', 0)",
                    [k],
                )
                .unwrap();
        }
        let mut g = c.benchmark_group(format!("sqlite_{label}"));
        let mut i = 0usize;
        g.bench_function("record", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                let s = if i % 2 == 0 {
                    OptState::OptedIn
                } else {
                    OptState::OptedOut
                };
                store
                    .record(LedgerKey::new("+1P", black_box(&keys[i])), s)
                    .unwrap();
            })
        });
        g.bench_function("direct_record", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                let s = if i % 2 == 0 { "opted_in" } else { "opted_out" };
                let mut stmt = direct
                    .prepare_cached(
                        "INSERT INTO opt_out_ledger (scope, participant, state, updated_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (scope, participant) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                    )
                    .unwrap();
                // The same values the store writes: a row whose bytes do not change is not
                // synced by SQLite, so a constant timestamp would flatter the direct path.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64;
                stmt.execute(params!["+1P", black_box(&keys[i]), s, now]).unwrap();
            })
        });
        g.bench_function("state", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                assert!(store
                    .state(LedgerKey::new("+1P", black_box(&keys[i])))
                    .is_ok());
            })
        });
        g.bench_function("direct_state", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                let mut stmt = direct
                    .prepare_cached(
                        "SELECT state FROM opt_out_ledger WHERE scope = ?1 AND participant = ?2",
                    )
                    .unwrap();
                let v: Option<String> = stmt
                    .query_row(params!["+1P", black_box(&keys[i])], |r| r.get(0))
                    .optional()
                    .unwrap();
                assert!(v.is_some());
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = group;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(group);
