//! Against the real PostgreSQL server named by `PROXY_OPTOUT_PG_URL` (CI sets it). Without it
//! every test here is reported as ignored, with the reason. Each test works in its own schema,
//! created and dropped here, so runs can overlap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proxy_optout::{
    AsyncOptOutStore, AsyncRelay, Inbound, LedgerKey, OptState, Participant, RelayError, Route,
    Withheld,
};
use proxy_optout_conformance::{check_async_history, check_async_store, AsyncHarness, Fault};
use proxy_optout_postgres::{Claim, Options, PgStore, StoreError};

const SKIP: &str = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)";

fn url() -> String {
    std::env::var("PROXY_OPTOUT_PG_URL").expect("PROXY_OPTOUT_PG_URL")
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn schema_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "proxy_optout_test_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

async fn store(schema: &str, app: &str) -> PgStore {
    PgStore::connect_with(
        &url(),
        Options::default()
            .schema(schema)
            .application_name(app)
            .pool_size(8),
    )
    .await
    .unwrap_or_else(|e| panic!("PROXY_OPTOUT_PG_URL is set but the server cannot be used: {e}"))
}

async fn drop_schema(schema: &str) {
    let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
}

struct Schemas(Mutex<Vec<String>>);

impl AsyncHarness for Schemas {
    type Store = PgStore;
    async fn fresh(&self) -> PgStore {
        let schema = schema_name();
        self.0.lock().unwrap().push(schema.clone());
        store(&schema, "conformance").await
    }
    async fn corrupt(&self, store: &PgStore, scope: &str, participant: &str) -> bool {
        let client = store.pool().get().await.unwrap();
        client
            .execute(
                "INSERT INTO opt_out_ledger (scope, participant, state) VALUES ($1, $2, 'opted_sideways')
                 ON CONFLICT (scope, participant) DO UPDATE SET state = 'opted_sideways'",
                &[&scope, &participant],
            )
            .await
            .unwrap();
        true
    }
    async fn inject(&self, store: &PgStore, fault: Fault, on: bool) -> bool {
        let table = match fault {
            Fault::State => "opt_out_ledger",
            _ => "opt_out_history",
        };
        let client = store.pool().get().await.unwrap();
        let sql = if on {
            format!(
                "CREATE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$;
                 CREATE TRIGGER injected_fault BEFORE INSERT OR UPDATE ON {table}
                   FOR EACH ROW EXECUTE FUNCTION injected_fault();"
            )
        } else {
            format!("DROP TRIGGER injected_fault ON {table}; DROP FUNCTION injected_fault();")
        };
        client.batch_execute(&sql).await.unwrap();
        true
    }
}

#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_kit() {
    let _ = SKIP;
    let h = Schemas(Mutex::new(Vec::new()));
    check_async_store(&h).await;
    check_async_history(&h).await;
    let schemas = h.0.lock().unwrap().clone();
    for s in schemas {
        drop_schema(&s).await;
    }
}

#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_overlapping_pairs_end_at_each_keys_last_acknowledged_write() {
    let schema = schema_name();
    let a = store(&schema, "instance-a").await;
    let b = store(&schema, "instance-b").await; // a second pool: a second relay instance
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let (a, b) = (a.clone(), b.clone());
            tokio::spawn(async move {
                // Each task owns four keys; scopes are shared by all tasks, participants by pairs.
                let keys: Vec<(String, String)> = (0..4)
                    .map(|k| (format!("+1P{}", (t + k) % 3), format!("+1A{k}-{}", t % 8)))
                    .collect();
                let mut last = HashMap::new();
                for i in 0..60 {
                    let (s, p) = &keys[i % keys.len()];
                    let state = if (i + t) % 3 == 0 {
                        OptState::OptedIn
                    } else {
                        OptState::OptedOut
                    };
                    // Alternate instances: a write through one must be what the other reads.
                    let (w, r) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
                    w.record(LedgerKey::new(s, p), state).await.unwrap();
                    assert_eq!(r.state(LedgerKey::new(s, p)).await.unwrap(), state);
                    last.insert((s.clone(), p.clone()), state);
                }
                last
            })
        })
        .collect();
    let mut last = HashMap::new();
    for t in tasks {
        last.extend(t.await.unwrap());
    }
    assert_eq!(last.len(), 64);
    for ((s, p), state) in &last {
        assert_eq!(
            a.state(LedgerKey::new(s, p)).await.unwrap(),
            *state,
            "({s}, {p})"
        );
        assert_eq!(
            b.state(LedgerKey::new(s, p)).await.unwrap(),
            *state,
            "({s}, {p})"
        );
    }
    // A STOP through instance A makes instance B refuse the next message with 21610.
    let relay_a = AsyncRelay::new(a.clone());
    let relay_b = AsyncRelay::new(b.clone());
    let (rider, driver) = (
        Participant::new("+1R", "+1PX").unwrap(),
        Participant::new("+1D", "+1PX").unwrap(),
    );
    let out = relay_a
        .handle(
            &Inbound::sms("+1R", "+1PX", "STOP"),
            Some(Route::new("s", &rider, Some(&driver)).unwrap()),
        )
        .await
        .unwrap();
    assert!(out.is_recorded());
    let out = relay_b
        .handle(
            &Inbound::sms("+1D", "+1PX", "here"),
            Some(Route::new("s", &driver, Some(&rider)).unwrap()),
        )
        .await
        .unwrap();
    assert!(out.refused().is_some());
    drop_schema(&schema).await;
}

#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_mid_query_fails_closed_and_the_pool_recovers() {
    let schema = schema_name();
    let app = format!("victim-{schema}");
    let store = store(&schema, &app).await;
    let relay = Arc::new(AsyncRelay::new(store.clone()));
    let (admin, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // Hold the row's lock so the relay's upsert waits inside the server.
    admin
        .batch_execute(&format!(
            "SET search_path = {schema};
             INSERT INTO opt_out_ledger (scope, participant, state) VALUES ('+1P', '+1A', 'opted_in');
             BEGIN;
             SELECT * FROM opt_out_ledger WHERE scope = '+1P' AND participant = '+1A' FOR UPDATE;"
        ))
        .await
        .unwrap();
    let handle = {
        let relay = Arc::clone(&relay);
        tokio::spawn(async move {
            relay
                .handle(&Inbound::sms("+1A", "+1P", "STOP"), None)
                .await
                .map(proxy_optout::Outcome::into_owned)
        })
    };
    // Wait until the relay's query is blocked on the lock, then kill that backend.
    let mut killed = 0i64;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (killer, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let row = killer
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&app],
            )
            .await
            .unwrap();
        killed = row.get(0);
        if killed > 0 {
            break;
        }
    }
    assert_eq!(killed, 1, "the relay's query never waited on the lock");
    let result = handle.await.unwrap();
    admin.batch_execute("ROLLBACK").await.unwrap();
    match result {
        Err(RelayError::Record {
            source: StoreError::Postgres(_),
            outcome,
            ..
        }) => {
            assert!(
                outcome.reply().is_none(),
                "no confirmation of an unstored opt-out"
            );
        }
        other => panic!("{other:?}"),
    }
    // The pool drops the dead connection: the next message goes through.
    let out = relay
        .handle(&Inbound::sms("+1A", "+1P", "STOP"), None)
        .await
        .unwrap();
    assert!(out.is_recorded() && out.reply().is_some());
    assert_eq!(
        store.state(LedgerKey::new("+1P", "+1A")).await.unwrap(),
        OptState::OptedOut
    );
    // An unreadable recipient state withholds the forward.
    let (a, b) = (
        Participant::new("+1B", "+1P").unwrap(),
        Participant::new("+1A", "+1P").unwrap(),
    );
    admin
        .execute(
            &format!("UPDATE {schema}.opt_out_ledger SET state = 'opted_sideways' WHERE participant = '+1A'"),
            &[],
        )
        .await
        .unwrap();
    match relay
        .handle(
            &Inbound::sms("+1B", "+1P", "hi"),
            Some(Route::new("s", &a, Some(&b)).unwrap()),
        )
        .await
    {
        Err(RelayError::Lookup { outcome, .. }) => {
            assert_eq!(outcome.withheld(), Some(Withheld::RecipientStatusUnknown))
        }
        other => panic!("{other:?}"),
    }
    drop_schema(&schema).await;
}

#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_across_instances_gives_one_forward_and_one_reply() {
    let schema = schema_name();
    let a = store(&schema, "instance-a").await;
    let b = store(&schema, "instance-b").await;
    let relay_a = Arc::new(AsyncRelay::new(a.clone()));
    let relay_b = Arc::new(AsyncRelay::new(b.clone()));
    let performed = Arc::new(Mutex::new((0, 0)));
    let deliver = |store: PgStore, relay: Arc<AsyncRelay<PgStore>>, id: &'static str| {
        let performed = Arc::clone(&performed);
        async move {
            match store.claim(id).await.unwrap() {
                Claim::New => {
                    let (r, d) = (
                        Participant::new("+1R", "+1P").unwrap(),
                        Participant::new("+1D", "+1P").unwrap(),
                    );
                    let route = Route::new("s", &r, Some(&d)).unwrap();
                    let out = relay
                        .handle(
                            &Inbound::sms("+1R", "+1P", "START").with_message_id(id),
                            Some(route),
                        )
                        .await
                        .unwrap();
                    {
                        let mut p = performed.lock().unwrap();
                        p.0 += usize::from(out.forwarded().is_some());
                        p.1 += usize::from(out.reply().is_some());
                    }
                    store.complete(id, "answer").await.unwrap();
                    Some("answer".to_owned())
                }
                Claim::Answered(a) => Some(a),
                Claim::InProgress => None,
                _ => unreachable!(),
            }
        }
    };
    // Sequential, through both instances.
    assert_eq!(
        deliver(a.clone(), relay_a.clone(), "SM1").await.as_deref(),
        Some("answer")
    );
    assert_eq!(
        deliver(b.clone(), relay_b.clone(), "SM1").await.as_deref(),
        Some("answer")
    );
    assert_eq!(*performed.lock().unwrap(), (1, 1));
    // Concurrent.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (s, r) = if i % 2 == 0 {
                (a.clone(), relay_a.clone())
            } else {
                (b.clone(), relay_b.clone())
            };
            tokio::spawn(deliver(s, r, "SM2"))
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*performed.lock().unwrap(), (2, 2));
    assert_eq!(
        a.claim("SM2").await.unwrap(),
        Claim::Answered("answer".into())
    );
    assert_eq!(a.purge_processed(Duration::ZERO).await.unwrap(), 2);
    drop_schema(&schema).await;
}

#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let schema = schema_name();
    let s = store(&schema, "migrate").await;
    let client = s.pool().get().await.unwrap();
    client
        .execute("INSERT INTO proxy_optout_schema (version) VALUES (99)", &[])
        .await
        .unwrap();
    drop(client);
    let err = PgStore::connect_with(&url(), Options::default().schema(&schema))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
    let err = PgStore::connect_with(&url(), Options::default().schema("bad; DROP"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    drop_schema(&schema).await;
}

#[cfg(feature = "conversations")]
#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_bindings_are_shared_by_every_instance() {
    use proxy_optout_twilio::{AsyncBindingStore, CachedBinding};
    let schema = format!("bindings_{}", std::process::id());
    drop_schema(&schema).await;
    let (a, b) = (store(&schema, "a").await, store(&schema, "b").await);
    let rider = CachedBinding {
        address: "+16505551111".into(),
        proxy_address: Some("+15550000100".into()),
        kind: Some("sms".into()),
    };
    let driver = CachedBinding {
        address: "+16505552222".into(),
        ..rider.clone()
    };
    a.added("CH1", "MB1", &rider).await.unwrap();
    a.added("CH1", "MB2", &driver).await.unwrap();
    a.added("CH2", "MB3", &driver).await.unwrap();
    // What one instance learnt from onParticipantAdded, the other reads.
    assert_eq!(b.binding("CH1", "MB1").await.unwrap(), Some(rider.clone()));
    assert_eq!(
        b.bindings("CH1").await.unwrap(),
        vec![rider.clone(), driver.clone()]
    );
    // Added again (a redelivered webhook): replaced, not doubled.
    let moved = CachedBinding {
        proxy_address: Some("+15550000101".into()),
        ..rider.clone()
    };
    b.added("CH1", "MB1", &moved).await.unwrap();
    assert_eq!(
        a.bindings("CH1").await.unwrap(),
        vec![moved, driver.clone()]
    );
    b.removed("CH1", "MB1").await.unwrap();
    assert_eq!(a.binding("CH1", "MB1").await.unwrap(), None);
    assert_eq!(a.bindings("CH2").await.unwrap(), vec![driver]);
    drop_schema(&schema).await;
}

#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_stored_in_a_group_are_each_given_back_to_their_redelivery() {
    let schema = schema_name();
    let s = store(&schema, "complete-many").await;
    for id in ["SM1", "SM2", "SM3"] {
        assert_eq!(s.claim(id).await.unwrap(), Claim::New);
    }
    // SM2 twice: its last answer stands (one statement cannot upsert a row twice).
    s.complete_many(&[
        ("SM1", "one"),
        ("SM2", "two"),
        ("SM2", "two again"),
        ("SM4", "four"),
    ])
    .await
    .unwrap();
    assert_eq!(s.claim("SM1").await.unwrap(), Claim::Answered("one".into()));
    assert_eq!(
        s.claim("SM2").await.unwrap(),
        Claim::Answered("two again".into())
    );
    assert_eq!(s.claim("SM3").await.unwrap(), Claim::InProgress);
    assert_eq!(
        s.claim("SM4").await.unwrap(),
        Claim::Answered("four".into())
    );
    s.complete_many(&[]).await.unwrap();
    drop_schema(&schema).await;
}
