//! `PROXY_OPTOUT_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p proxy-optout-postgres --bench store`
//!
//! `record` and `state` through `PgStore` beside the same prepared SQL issued directly through
//! tokio-postgres on one connection (`direct_*`), with 1 and 16 concurrent tasks. Without
//! `PROXY_OPTOUT_PG_URL` it says so and measures nothing.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use proxy_optout::{AsyncOptOutStore, LedgerKey, OptState};
use proxy_optout_postgres::{sql, Options, PgStore};

fn benches(c: &mut Criterion) {
    let Ok(url) = std::env::var("PROXY_OPTOUT_PG_URL") else {
        eprintln!("PROXY_OPTOUT_PG_URL is not set: no PostgreSQL benchmark");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let schema = format!("proxy_optout_bench_{}", std::process::id());
    let store = rt
        .block_on(PgStore::connect_with(
            &url,
            Options::default().schema(&schema).pool_size(16),
        ))
        .unwrap();
    let direct = rt.block_on(async {
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        config.options(format!("-c search_path={schema}"));
        let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    });
    let keys: Vec<String> = (0..1000).map(|i| format!("+1555{i:07}")).collect();
    for tasks in [1usize, 16] {
        let mut g = c.benchmark_group(format!("postgres_{tasks}_tasks"));
        g.bench_function("record", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (store, keys) = (store.clone(), keys.clone());
                async move {
                    let start = Instant::now();
                    let per = (iters as usize).div_ceil(tasks);
                    let handles: Vec<_> = (0..tasks)
                        .map(|t| {
                            let (store, keys) = (store.clone(), keys.clone());
                            tokio::spawn(async move {
                                for i in 0..per {
                                    let k = &keys[(t * 37 + i) % keys.len()];
                                    store
                                        .record(LedgerKey::new("+1P", k), OptState::OptedOut)
                                        .await
                                        .unwrap();
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.unwrap();
                    }
                    start.elapsed()
                }
            })
        });
        g.bench_function("state", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (store, keys) = (store.clone(), keys.clone());
                async move {
                    let start = Instant::now();
                    let per = (iters as usize).div_ceil(tasks);
                    let handles: Vec<_> = (0..tasks)
                        .map(|t| {
                            let (store, keys) = (store.clone(), keys.clone());
                            tokio::spawn(async move {
                                for i in 0..per {
                                    let k = &keys[(t * 37 + i) % keys.len()];
                                    assert!(store.state(LedgerKey::new("+1P", k)).await.is_ok());
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.unwrap();
                    }
                    start.elapsed()
                }
            })
        });
        if tasks == 1 {
            let record = rt.block_on(direct.prepare(sql::RECORD)).unwrap();
            let state = rt.block_on(direct.prepare(sql::STATE)).unwrap();
            // The same loop as `record` and `state` with tasks = 1, on one direct connection.
            let direct = &direct;
            g.bench_function("direct_record", |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let (keys, record) = (keys.clone(), record.clone());
                    async move {
                        let start = Instant::now();
                        for i in 0..iters as usize {
                            let k = &keys[(i * 37) % keys.len()];
                            direct
                                .execute(
                                    &record,
                                    &[
                                        &"+1P",
                                        k,
                                        &"opted_out",
                                        &"unspecified",
                                        &None::<&str>,
                                        &None::<&str>,
                                        &None::<&str>,
                                        &None::<&str>,
                                        &None::<i64>,
                                        &None::<i64>,
                                    ],
                                )
                                .await
                                .unwrap();
                        }
                        start.elapsed()
                    }
                })
            });
            g.bench_function("direct_state", |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let (keys, state) = (keys.clone(), state.clone());
                    async move {
                        let start = Instant::now();
                        for i in 0..iters as usize {
                            let k = &keys[(i * 37) % keys.len()];
                            assert!(direct.query_opt(&state, &[&"+1P", k]).await.is_ok());
                        }
                        start.elapsed()
                    }
                })
            });
        }
        g.finish();
    }
    rt.block_on(direct.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")))
        .unwrap();
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
