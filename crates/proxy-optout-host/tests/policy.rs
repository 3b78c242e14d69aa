//! The pipeline's [`Policy`]: the account flag and STOP filtering per proxy number asked
//! inside the decision's job, and the intercept hook asked after it, on SQLite and on
//! PostgreSQL. What a hook sees, what a block does (80909, nothing sent), and that no
//! policy un-drops a keyword unless the flag and the number's filtering say so (SPEC §6).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use proxy_optout::{Category, Intercept, OptState, StopFilterFlag, StopFiltering};
use proxy_optout_host::{
    BoxFuture, Intercepted, Ledger, MemorySender, Observer, Pipeline, Policy, Report, RouteResult,
    SessionRoute, SqliteLedger, WebhookRequest,
};
use proxy_optout_twilio::{sign, Form};

const TOKEN: &str = "auth-token";
const URL: &str = "https://rides.example.com";
const RIDER: &str = "+15551110001";
const DRIVER: &str = "+15552220002";

/// A policy with fixed settings whose hook answers `verdict` and remembers what it saw.
struct Hook {
    flag: StopFilterFlag,
    filtering: StopFiltering,
    verdict: Intercept,
    seen: Mutex<Vec<(String, String, Option<Category>)>>,
}

impl Policy for Hook {
    fn stop_filter_flag(&self) -> StopFilterFlag {
        self.flag
    }
    fn stop_filtering(&self, _number: &str) -> StopFiltering {
        self.filtering
    }
    fn intercept<'a>(&'a self, i: Intercepted<'a>) -> BoxFuture<'a, Intercept> {
        self.seen.lock().unwrap().push((
            i.message().body().to_owned(),
            i.session().to_owned(),
            i.decision().category(),
        ));
        Box::pin(async move { self.verdict })
    }
}

#[derive(Default)]
struct Reports(Mutex<Vec<Report>>, AtomicUsize);

impl Observer for Reports {
    fn handled(&self, r: Report) -> BoxFuture<'_, ()> {
        self.0.lock().unwrap().push(r);
        self.1.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    }
}

struct Rig {
    pipeline: Pipeline,
    sender: MemorySender,
    hook: Arc<Hook>,
    reports: Arc<Reports>,
    proxy: String,
}

impl Rig {
    async fn start(
        ledger: Ledger,
        proxy: &str,
        flag: StopFilterFlag,
        filtering: StopFiltering,
        verdict: Intercept,
    ) -> Rig {
        let hook = Arc::new(Hook {
            flag,
            filtering,
            verdict,
            seen: Mutex::new(Vec::new()),
        });
        let reports = Arc::new(Reports::default());
        let sender = MemorySender::new();
        let p = proxy.to_owned();
        let routing = move |from: &str, to: &str| -> RouteResult {
            let other = if from == RIDER { DRIVER } else { RIDER };
            Ok(Some(SessionRoute::new(
                "KCride1",
                from,
                to,
                Some((other, &p)),
            )?))
        };
        let pipeline = Pipeline::builder(ledger, routing, sender.clone())
            .auth_token(TOKEN)
            .public_url(URL)
            .policy(hook.clone())
            .observer(reports.clone())
            .start()
            .await
            .unwrap();
        Rig {
            pipeline,
            sender,
            hook,
            reports,
            proxy: proxy.to_owned(),
        }
    }

    /// Posts `body` from the rider; the report of it.
    async fn text(&self, body: &str) -> (String, Report) {
        // Unique across rigs: the PostgreSQL ledger remembers every message id it handled.
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let sid = format!("SM{}{n:08}", std::process::id());
        let text = format!(
            "MessageSid={sid}&From={}&To={}&Body={body}",
            RIDER.replace('+', "%2B"),
            self.proxy.replace('+', "%2B")
        );
        let form = Form::parse(text.as_bytes()).unwrap();
        let signature = sign(TOKEN, &format!("{URL}/twilio/sms"), &form);
        let before = self.reports.1.load(Ordering::SeqCst);
        let answer = self
            .pipeline
            .serve(
                WebhookRequest::new("POST", "/twilio/sms", text.as_bytes())
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .header("X-Twilio-Signature", &signature),
            )
            .await;
        assert_eq!(answer.status(), 200, "{}", answer.body());
        assert_eq!(self.reports.1.load(Ordering::SeqCst), before + 1);
        let report = self.reports.0.lock().unwrap().last().cloned().unwrap();
        (answer.body().to_owned(), report)
    }

    fn forwards(&self) -> usize {
        self.sender.sent().iter().filter(|m| m.to == DRIVER).count()
    }

    async fn rider_state(&self) -> OptState {
        self.pipeline
            .ledger()
            .state(&self.proxy, RIDER)
            .await
            .unwrap()
    }
}

async fn scenarios(ledger: impl Fn() -> BoxFuture<'static, Ledger>, proxy: &str) {
    // Twilio's default: the hook blocks an ordinary message (80909, nothing sent, the report
    // has no outbound leg) and is never asked about STOP, which is dropped and recorded.
    let rig = Rig::start(
        ledger().await,
        &format!("{proxy}1"),
        StopFilterFlag::Ignore,
        StopFiltering::On,
        Intercept::Block,
    )
    .await;
    let (_, r) = rig.text("see you at 5").await;
    assert_eq!(r.outcome, "hook_blocked");
    assert_eq!(r.notices, vec![80909]);
    assert!(r.forward.is_none());
    assert_eq!(rig.forwards(), 0);
    let (answer, r) = rig.text("STOP").await;
    assert_eq!(r.notices, vec![80901]);
    assert!(answer.contains("unsubscribed"), "{answer}");
    assert_eq!(rig.rider_state().await, OptState::OptedOut);
    assert_eq!(
        rig.hook.seen.lock().unwrap().len(),
        1,
        "asked once, not for STOP"
    );
    assert_eq!(rig.hook.seen.lock().unwrap()[0].1, "KCride1");

    // Flag off, filtering off: Proxy still drops STOP (80901) but the carrier layer does
    // nothing (no ledger change, no reply). The hook is not asked.
    let rig = Rig::start(
        ledger().await,
        &format!("{proxy}2"),
        StopFilterFlag::Ignore,
        StopFiltering::Off,
        Intercept::Allow,
    )
    .await;
    let (answer, r) = rig.text("STOP").await;
    assert_eq!(r.notices, vec![80901]);
    assert!(!answer.contains("unsubscribed"), "{answer}");
    assert_eq!(rig.rider_state().await, OptState::OptedIn);
    assert!(rig.hook.seen.lock().unwrap().is_empty());
    assert_eq!(rig.forwards(), 0);

    // Flag on, filtering off: STOP reaches the hook with its category and, allowed, is
    // forwarded; nothing recorded.
    let rig = Rig::start(
        ledger().await,
        &format!("{proxy}3"),
        StopFilterFlag::Respect,
        StopFiltering::Off,
        Intercept::Allow,
    )
    .await;
    let (_, r) = rig.text("STOP").await;
    assert_eq!(r.outcome, "forwarded");
    assert!(r.notices.is_empty());
    assert_eq!(rig.forwards(), 1);
    assert_eq!(rig.rider_state().await, OptState::OptedIn);
    assert_eq!(
        rig.hook.seen.lock().unwrap()[0],
        (
            "STOP".to_owned(),
            "KCride1".to_owned(),
            Some(Category::OptOut)
        )
    );

    // Flag on, filtering on: STOP is dropped and recorded as by default; the hook's
    // willingness cannot un-drop it.
    let rig = Rig::start(
        ledger().await,
        &format!("{proxy}4"),
        StopFilterFlag::Respect,
        StopFiltering::On,
        Intercept::Allow,
    )
    .await;
    let (_, r) = rig.text("STOP").await;
    assert_eq!(r.notices, vec![80901]);
    assert_eq!(rig.forwards(), 0);
    assert_eq!(rig.rider_state().await, OptState::OptedOut);
    assert!(rig.hook.seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_on_sqlite() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let n = Arc::new(AtomicUsize::new(0));
    scenarios(
        move || {
            let (dir, n) = (dir.clone(), n.clone());
            Box::pin(async move {
                let i = n.fetch_add(1, Ordering::SeqCst);
                SqliteLedger::open(dir.path().join(format!("o{i}.db")))
                    .await
                    .unwrap()
                    .into()
            })
        },
        "+1555000010",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)"
)]
async fn the_policy_on_postgres() {
    let url = std::env::var("PROXY_OPTOUT_PG_URL").expect("PROXY_OPTOUT_PG_URL");
    // Numbers of this run only: the ledger is shared by every test on the server.
    let proxy = format!("+1{:09}", std::process::id() % 1_000_000_000);
    scenarios(
        move || {
            let url = url.clone();
            Box::pin(async move {
                proxy_optout_host::PgLedger::connect(&url, 4)
                    .await
                    .unwrap()
                    .into()
            })
        },
        &proxy,
    )
    .await;
}

/// Posts `body` from the rider as message `sid`; the webhook's status.
async fn post(rig: &Rig, sid: &str, body: &str) -> u16 {
    let text = format!(
        "MessageSid={sid}&From={}&To={}&Body={body}",
        RIDER.replace('+', "%2B"),
        rig.proxy.replace('+', "%2B")
    );
    let form = Form::parse(text.as_bytes()).unwrap();
    let signature = sign(TOKEN, &format!("{URL}/twilio/sms"), &form);
    rig.pipeline
        .serve(
            WebhookRequest::new("POST", "/twilio/sms", text.as_bytes())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("X-Twilio-Signature", &signature),
        )
        .await
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pg_tests),
    ignore = "PostgreSQL tests skipped: set PROXY_OPTOUT_PG_URL (CI sets it)"
)]
async fn on_postgres_a_decision_is_acted_on_only_once_its_flush_succeeded() {
    use proxy_optout_postgres::{Options, PgStore};
    let url = std::env::var("PROXY_OPTOUT_PG_URL").expect("PROXY_OPTOUT_PG_URL");
    let schema = format!("proxy_optout_host_flush_{}", std::process::id());
    let store = PgStore::connect_with(&url, Options::default().schema(&schema))
        .await
        .unwrap();
    let ledger = proxy_optout_host::PgLedger::from_store(store.clone())
        .await
        .unwrap();
    let rig = Rig::start(
        ledger.into(),
        "+15550009999",
        StopFilterFlag::Ignore,
        StopFiltering::On,
        Intercept::Allow,
    )
    .await;
    let client = store.pool().get().await.unwrap();
    let flushes = || async {
        client
            .query_one(
                "SELECT COALESCE(SUM(n), 0)::BIGINT FROM proxy_optout_host_flush",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let sid = |n: u32| format!("SM{}flush{n}", std::process::id());
    assert_eq!(post(&rig, &sid(1), "on my way").await, 200);
    assert_eq!(rig.forwards(), 1);
    assert!(flushes().await >= 1, "the decision waited for a flush");

    // The flush fails: nothing is sent, the platform is told to retry, the claim is given
    // back; once the database flushes again, the retry is handled in full.
    client
        .batch_execute(
            "CREATE FUNCTION refuse_flush() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'disk gone'; END $$;
             CREATE TRIGGER refuse_flush BEFORE INSERT OR UPDATE ON proxy_optout_host_flush
               FOR EACH ROW EXECUTE FUNCTION refuse_flush();",
        )
        .await
        .unwrap();
    assert_eq!(post(&rig, &sid(2), "five minutes").await, 503);
    assert_eq!(rig.forwards(), 1, "not sent before it was on disk");
    client
        .batch_execute("DROP TRIGGER refuse_flush ON proxy_optout_host_flush")
        .await
        .unwrap();
    assert_eq!(post(&rig, &sid(2), "five minutes").await, 200);
    assert_eq!(rig.forwards(), 2);
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
