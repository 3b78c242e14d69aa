//! The pipeline mounted three ways, over real HTTP on loopback where there is a server: a
//! plain hyper server calling the framework-free `serve`, the axum router nested in a host's
//! app, and a host's own axum handler with the `TwilioWebhook` extractor.

#[allow(dead_code)]
#[path = "../examples/hyper_host.rs"]
mod hyper_host;

use std::sync::Arc;

use proxy_optout::OptState;
use proxy_optout_host::{MemorySender, Pipeline, SessionRoute, SqliteLedger, TwilioWebhook};
use proxy_optout_twilio::{sign, Form, EMPTY};

const TOKEN: &str = "auth-token";

async fn pipeline(dir: &std::path::Path, url: &str, sender: MemorySender) -> Pipeline {
    let ledger = SqliteLedger::open(dir.join("optout.db")).await.unwrap();
    let routing = |from: &str, to: &str| {
        let other = if from == "+1A" { "+1B" } else { "+1A" };
        Ok(Some(SessionRoute::new("s1", from, to, Some((other, to)))?))
    };
    Pipeline::builder(ledger, routing, sender)
        .auth_token(TOKEN)
        .public_url(url)
        .start()
        .await
        .unwrap()
}

async fn post(url: &str, path: &str, body: &str, signed_for: &str) -> (u16, String) {
    let form = Form::parse(body.as_bytes()).unwrap();
    let r = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sign(TOKEN, signed_for, &form))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_hyper_server_serves_the_pipeline_through_the_framework_free_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sender = MemorySender::new();
    let p = pipeline(dir.path(), &url, sender.clone()).await;
    tokio::spawn(hyper_host::serve(p.clone(), listener));
    let sms = format!("{url}/twilio/sms");

    let (status, body) = post(
        &url,
        "/twilio/sms",
        "MessageSid=SM1&From=%2B1A&To=%2B1P&Body=hi",
        &sms,
    )
    .await;
    assert_eq!((status, body.as_str()), (200, EMPTY));
    assert_eq!(sender.sent()[0].to, "+1B");

    let (status, body) = post(
        &url,
        "/twilio/sms",
        "MessageSid=SM2&From=%2B1B&To=%2B1P&Body=STOP",
        &sms,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("unsubscribed"), "{body}");
    assert_eq!(
        p.ledger().state("+1P", "+1B").await.unwrap(),
        OptState::OptedOut
    );

    // Signed for another URL: 403 in the pipeline's words; unknown path 404; GET 405.
    let (status, body) = post(
        &url,
        "/twilio/sms",
        "MessageSid=SM3&From=%2B1B&To=%2B1P&Body=START",
        "http://elsewhere/twilio/sms",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        p.ledger().state("+1P", "+1B").await.unwrap(),
        OptState::OptedOut
    );
    assert_eq!(post(&url, "/nowhere", "a=b", &sms).await.0, 404);
    let get = reqwest::get(&sms).await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    // Over the size limit: 413.
    let big = format!("Body={}", "x".repeat(proxy_optout_twilio::MAX_FORM_BYTES));
    let too_large = reqwest::Client::new()
        .post(&sms)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status().as_u16(), 413);
    assert_eq!(p.metrics().messages("forwarded"), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_nests_under_a_prefix_and_signatures_cover_the_whole_path() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sender = MemorySender::new();
    // The public URL is the origin: the prefix arrives in the path Twilio posts to.
    let p = pipeline(dir.path(), &base, sender.clone()).await;
    let app = axum::Router::new()
        .route("/rides", axum::routing::get(|| async { "the host's own" }))
        .nest("/hooks", p.router());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let nested = format!("{base}/hooks/twilio/sms");
    let body = "MessageSid=SM1&From=%2B1A&To=%2B1P&Body=hello";
    assert_eq!(post(&base, "/hooks/twilio/sms", body, &nested).await.0, 200);
    assert_eq!(sender.sent().len(), 1);
    // Signed without the prefix: not what Twilio signs for this URL.
    let (status, _) = post(
        &base,
        "/hooks/twilio/sms",
        body,
        &format!("{base}/twilio/sms"),
    )
    .await;
    assert_eq!(status, 403);
    let own = reqwest::get(format!("{base}/rides")).await.unwrap();
    assert_eq!(own.text().await.unwrap(), "the host's own");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extractor_gives_a_hosts_own_handler_a_checked_message() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sender = MemorySender::new();
    let p = pipeline(dir.path(), &base, sender.clone()).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let handler = {
        let seen = seen.clone();
        move |axum::extract::State(p): axum::extract::State<Pipeline>,
              TwilioWebhook(m): TwilioWebhook| async move {
            seen.lock().unwrap().push(m.body().to_owned());
            p.handle(m).await
        }
    };
    let app = axum::Router::new()
        .route("/own/sms", axum::routing::post(handler))
        .with_state(p.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let own = format!("{base}/own/sms");
    let body = "MessageSid=SM1&From=%2B1A&To=%2B1P&Body=again";
    assert_eq!(post(&base, "/own/sms", body, &own).await.0, 200);
    assert_eq!(*seen.lock().unwrap(), ["again"]);
    assert_eq!(sender.sent().len(), 1);
    // A forged one never reaches the handler.
    assert_eq!(
        post(&base, "/own/sms", body, "http://forged/own/sms")
            .await
            .0,
        403
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    p.shutdown().await;
}

#[tokio::test]
async fn the_router_refuses_an_oversized_body_with_413_before_reading_it_all() {
    use tower::ServiceExt as _;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "https://h", MemorySender::new()).await;
    let big = vec![b'x'; proxy_optout_twilio::MAX_FORM_BYTES + 1];
    for path in ["/twilio/sms", "/twilio/status"] {
        let request = axum::http::Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(big.clone()))
            .unwrap();
        let answer = p.router::<()>().oneshot(request).await.unwrap();
        assert_eq!(answer.status().as_u16(), 413, "{path}");
    }
    p.shutdown().await;
}
