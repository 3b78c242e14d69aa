//! What the pipeline answers when something behind the webhook fails, with and without a
//! journal: the host's routing down, a route the relay cannot use, a send whose fate is
//! unknown. Through the framework-free entry point, with real SQLite ledgers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use proxy_optout::OptState;
use proxy_optout_host::{
    Outgoing, Pipeline, RouteResult, RoutingError, SendError, SendFuture, Sender, Sent,
    SessionRoute, SqliteLedger, WebhookRequest, WebhookResponse,
};
use proxy_optout_twilio::{sign, Form, EMPTY};

const TOKEN: &str = "auth-token";
const URL: &str = "https://rides.example.com";

/// A send that always times out after the request left, and a provider that cannot say
/// whether it has the message: the worst case for at-most-once.
#[derive(Default)]
struct Unknowable {
    sends: AtomicUsize,
}

impl Sender for Unknowable {
    fn send<'a>(&'a self, _: &'a Outgoing) -> SendFuture<'a, Sent> {
        self.sends.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Err(SendError::Unknown {
                reason: "timed out after the request was written".into(),
            })
        })
    }

    fn lookup<'a>(&'a self, _: &'a Outgoing, _: SystemTime) -> SendFuture<'a, Option<String>> {
        Box::pin(async {
            Err(SendError::Unknown {
                reason: "the provider's list is unreachable".into(),
            })
        })
    }

    fn name(&self) -> &'static str {
        "unknowable"
    }
}

fn webhook(sid: &str, from: &str, body: &str) -> (String, String) {
    let text = format!(
        "MessageSid={sid}&From={}&To=%2B1P&Body={body}",
        from.replace('+', "%2B")
    );
    let form = Form::parse(text.as_bytes()).unwrap();
    let signature = sign(TOKEN, &format!("{URL}/twilio/sms"), &form);
    (text, signature)
}

async fn post(p: &Pipeline, sid: &str, from: &str, body: &str) -> WebhookResponse {
    let (text, signature) = webhook(sid, from, body);
    p.serve(
        WebhookRequest::new("POST", "/twilio/sms", text.as_bytes())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", &signature),
    )
    .await
}

fn pair(from: &str, to: &str) -> RouteResult {
    let other = if from == "+1A" { "+1B" } else { "+1A" };
    Ok(Some(SessionRoute::new("s1", from, to, Some((other, to)))?))
}

/// A routing whose database is down until the flag is cleared.
fn switchable() -> (
    Arc<AtomicBool>,
    impl Fn(&str, &str) -> RouteResult + Send + Sync + 'static,
) {
    let down = Arc::new(AtomicBool::new(true));
    let flag = down.clone();
    let routing = move |from: &str, to: &str| {
        if flag.load(Ordering::SeqCst) {
            return Err(RoutingError::unavailable("the rides database is down"));
        }
        pair(from, to)
    };
    (down, routing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_journal_a_routing_outage_is_a_503_and_the_retry_is_handled_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let (down, routing) = switchable();
    let sender = proxy_optout_host::MemorySender::new();
    let ledger = SqliteLedger::open(dir.path().join("o.db")).await.unwrap();
    let p = Pipeline::builder(ledger, routing, sender.clone())
        .auth_token(TOKEN)
        .public_url(URL)
        .start()
        .await
        .unwrap();

    let a = post(&p, "SM1", "+1A", "STOP").await;
    assert_eq!(a.status(), 503);
    assert!(a
        .headers()
        .iter()
        .any(|(n, v)| *n == "Retry-After" && v == "1"));
    assert!(a.body().contains("SM1"), "{}", a.body());
    // Nothing was stored: the STOP is not half-recorded.
    assert_eq!(
        p.ledger().state("+1P", "+1A").await.unwrap(),
        OptState::OptedIn
    );

    // Twilio retries (the URL's connection overrides): handled in full.
    down.store(false, Ordering::SeqCst);
    let a = post(&p, "SM1", "+1A", "STOP").await;
    assert_eq!(a.status(), 200);
    assert!(a.body().contains("unsubscribed"), "{}", a.body());
    assert_eq!(
        p.ledger().state("+1P", "+1A").await.unwrap(),
        OptState::OptedOut
    );
    assert!(sender.sent().is_empty());
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_journal_a_routing_outage_is_kept_and_handled_once_the_routing_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (down, routing) = switchable();
    let sender = proxy_optout_host::MemorySender::new();
    let ledger = SqliteLedger::open(dir.path().join("o.db")).await.unwrap();
    let p = Pipeline::builder(ledger, routing, sender.clone())
        .auth_token(TOKEN)
        .public_url(URL)
        .journal(dir.path().join("journal.db"))
        .start()
        .await
        .unwrap();

    // Answered 200 with empty TwiML: Twilio is done with it; the journal has it.
    let a = post(&p, "SM1", "+1A", "on my way").await;
    assert_eq!((a.status(), a.body()), (200, EMPTY));
    assert_eq!(p.journal_depth(), 1);
    // Later messages queue behind it, in order.
    let a = post(&p, "SM2", "+1A", "here").await;
    assert_eq!((a.status(), a.body()), (200, EMPTY));
    assert!(sender.sent().is_empty());

    down.store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while p.journal_depth() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the journal was not replayed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let bodies: Vec<String> = sender.sent().into_iter().map(|m| m.body).collect();
    assert_eq!(bodies, ["on my way", "here"]);
    assert_eq!(p.metrics().journal_events("replayed"), 2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_the_relay_cannot_use_is_the_hosts_bug_and_says_nothing_about_it() {
    let dir = tempfile::tempdir().unwrap();
    // The routing hands back another pair's route: a bug in the host's query.
    let routing = |_: &str, to: &str| Ok(Some(SessionRoute::new("s1", "+1Z", to, None)?));
    let sender = proxy_optout_host::MemorySender::new();
    let ledger = SqliteLedger::open(dir.path().join("o.db")).await.unwrap();
    let p = Pipeline::builder(ledger, routing, sender.clone())
        .auth_token(TOKEN)
        .public_url(URL)
        .start()
        .await
        .unwrap();
    let a = post(&p, "SM1", "+1A", "STOP").await;
    assert_eq!(a.status(), 500);
    assert_eq!(a.body(), "internal error\n", "the details go to the log");
    assert_eq!(
        p.ledger().state("+1P", "+1A").await.unwrap(),
        OptState::OptedIn
    );
    assert!(sender.sent().is_empty());
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_journal_a_send_of_unknown_fate_keeps_its_claim_and_is_never_sent_blind() {
    let dir = tempfile::tempdir().unwrap();
    let sender = Arc::new(Unknowable::default());
    let ledger = SqliteLedger::open(dir.path().join("o.db")).await.unwrap();
    let p = Pipeline::builder_shared(ledger.into(), Arc::new(pair), sender.clone())
        .auth_token(TOKEN)
        .public_url(URL)
        .start()
        .await
        .unwrap();

    let a = post(&p, "SM1", "+1A", "on my way").await;
    assert_eq!(a.status(), 503, "{}", a.body());
    // One attempt, and no second one: the provider could not say whether it has it.
    assert_eq!(sender.sends.load(Ordering::SeqCst), 1);
    // Twilio's retry finds the claim still held: 503 again, and nothing is sent.
    for _ in 0..3 {
        assert_eq!(post(&p, "SM1", "+1A", "on my way").await.status(), 503);
    }
    assert_eq!(sender.sends.load(Ordering::SeqCst), 1);
    p.shutdown().await;
}
