//! A status callback names the send it reports on: the `attempt` in its URL's query (which a
//! `TwilioSender` adds to every `StatusCallback`) reaches the observer as
//! `StatusReport::attempt`, covered by the signature like the rest of the URL.

use std::sync::{Arc, Mutex};

use proxy_optout_host::{
    BoxFuture, MemorySender, Observer, Pipeline, Report, SqliteLedger, StatusReport, WebhookRequest,
};
use proxy_optout_twilio::{sign, Form};

const TOKEN: &str = "auth-token";
const URL: &str = "https://rides.example.com";

#[derive(Default)]
struct Statuses(Mutex<Vec<StatusReport>>);

impl Observer for Statuses {
    fn handled(&self, _: Report) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn status(&self, status: StatusReport) -> BoxFuture<'_, ()> {
        self.0.lock().unwrap().push(status);
        Box::pin(async {})
    }
}

const CALLBACK: &[u8] = b"MessageSid=SM1&MessageStatus=delivered&From=%2B1P&To=%2B1B";

/// Posts the callback to `target`, signed over `signed` (a target too).
async fn post(pipeline: &Pipeline, target: &str, signed: &str) -> u16 {
    let form = Form::parse(CALLBACK).unwrap();
    let signature = sign(TOKEN, &format!("{URL}{signed}"), &form);
    pipeline
        .serve(
            WebhookRequest::new("POST", target, CALLBACK)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("X-Twilio-Signature", &signature),
        )
        .await
        .status()
}

#[tokio::test]
async fn the_attempt_in_a_status_callbacks_url_reaches_the_observer() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open(dir.path().join("o.db")).await.unwrap();
    let statuses = Arc::new(Statuses::default());
    let pipeline = Pipeline::builder(ledger, |_: &str, _: &str| Ok(None), MemorySender::new())
        .auth_token(TOKEN)
        .public_url(URL)
        .observer(statuses.clone())
        .start()
        .await
        .unwrap();

    for (target, attempt) in [
        ("/twilio/status?attempt=SM0-forward", Some("SM0-forward")),
        ("/twilio/status?attempt=KI%2D1&x=y", Some("KI-1")),
        ("/twilio/status?x=y&attempt=KI2", Some("KI2")),
        ("/twilio/status", None),
        ("/twilio/status?attempt=", None),
        ("/twilio/status?other=1", None),
    ] {
        assert_eq!(post(&pipeline, target, target).await, 200, "{target}");
        let last = statuses.0.lock().unwrap().pop().unwrap();
        assert_eq!(last.attempt.as_deref(), attempt, "{target}");
        assert_eq!(
            (last.message_sid.as_str(), last.status.as_str()),
            ("SM1", "delivered")
        );
    }

    // The query is part of what Twilio signed: a name added to (or changed in) a signed URL
    // is a forgery, refused before the observer hears of it.
    assert_eq!(
        post(&pipeline, "/twilio/status?attempt=KI9", "/twilio/status").await,
        403
    );
    assert_eq!(
        post(
            &pipeline,
            "/twilio/status?attempt=KI9",
            "/twilio/status?attempt=KI8"
        )
        .await,
        403
    );
    assert!(statuses.0.lock().unwrap().is_empty());
    pipeline.shutdown().await;
}
