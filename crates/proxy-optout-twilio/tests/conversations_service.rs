//! The example's Conversations masking service over real HTTP on loopback, on a SQLite
//! ledger, with every request signed by twilio-python's `RequestValidator` (a real client of
//! Twilio's scheme, from PyPI, pinned in `tools/python/requirements.txt`).

#[path = "../examples/conversations/service.rs"]
mod service;

use std::sync::Arc;

use proxy_optout::{CarrierMode, LedgerKey, OptOutStore, OptState};
use proxy_optout_sqlite::SqliteStore;
use proxy_optout_twilio::Form;

const TOKEN: &str = "conversations-test-token";
const RIDER: &str = "+16505551111";
const PROXY: &str = "+15550000100";
const CH: &str = "CH0123456789abcdef0123456789abcdef";

/// What twilio-python's RequestValidator computes for this URL and these parameters.
fn python_signature(url: &str, params: &[(&str, &str)]) -> String {
    let python = std::env::var("PROXY_OPTOUT_PYTHON").expect("PROXY_OPTOUT_PYTHON is set");
    let map: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
        .collect();
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys\nfrom twilio.request_validator import RequestValidator\n\
             print(RequestValidator(sys.argv[1]).compute_signature(sys.argv[2], json.loads(sys.argv[3])))",
            TOKEN,
            url,
            &serde_json::Value::Object(map).to_string(),
        ])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn post(&self, path: &str, params: &[(&str, &str)], forged: bool) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let mut signature = python_signature(&url, params);
        if forged {
            signature = python_signature(&format!("{url}?other"), params);
        }
        let r = self
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(Form::from_pairs(params.iter().copied()).encode())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn message(
        &self,
        participant: &str,
        author: &str,
        body: &str,
        source: &str,
        retry: &str,
    ) -> (u16, String) {
        let params = [
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("Attributes", "{}"),
            ("Author", author),
            ("Body", body),
            ("ConversationSid", CH),
            ("EventType", "onMessageAdd"),
            ("ParticipantSid", participant),
            ("RetryCount", retry),
            ("Source", source),
        ];
        self.post(service::PRE, &params, false).await
    }
}

#[cfg_attr(
    not(python_tests),
    ignore = "twilio-python tests skipped: set PROXY_OPTOUT_PYTHON to a Python with tools/python/requirements.txt installed (.ci/run does)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_masking_service_answers_conversations_as_proxy_would() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("ledger.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let svc = Arc::new(service::Service::new(
        store.clone(),
        TOKEN,
        &base,
        CarrierMode::Emulate,
    ));
    tokio::spawn({
        let router = service::router(svc.clone());
        async move { axum::serve(listener, router).await }
    });
    let c = Client {
        http: reqwest::Client::new(),
        base,
    };
    let key = LedgerKey::new(PROXY, RIDER);

    // The participants join: the post-event webhook fills the binding cache.
    let (status, _) = c
        .post(
            service::POST,
            &[
                ("ConversationSid", CH),
                ("EventType", "onParticipantAdded"),
                ("MessagingBinding.Address", RIDER),
                ("MessagingBinding.ProxyAddress", PROXY),
                ("MessagingBinding.Type", "sms"),
                ("ParticipantSid", "MB1"),
            ],
            false,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .post(
            service::POST,
            &[
                ("ConversationSid", CH),
                ("EventType", "onParticipantAdded"),
                ("Identity", "driver-7"),
                ("ParticipantSid", "MB2"),
            ],
            false,
        )
        .await;
    assert_eq!(status, 200);

    // STOP from the SMS participant: rejected (nobody sees it), recorded, confirmed once.
    let (status, body) = c.message("MB1", RIDER, "STOP", "SMS", "0").await;
    assert_eq!((status, body.as_str()), (403, ""));
    assert_eq!(store.state(key).unwrap(), OptState::OptedOut);
    assert_eq!(svc.effects.lock().unwrap().texts.len(), 1);
    let (from, to, text) = svc.effects.lock().unwrap().texts[0].clone();
    assert_eq!((from.as_str(), to.as_str()), (PROXY, RIDER));
    assert!(text.contains("unsubscribed"));
    // Conversations redelivers it (RetryCount 1): the same answer, confirmed no second time.
    let (status, _) = c.message("MB1", RIDER, "STOP", "SMS", "1").await;
    assert_eq!(status, 403);
    assert_eq!(svc.effects.lock().unwrap().texts.len(), 1);

    // The driver (a chat author) writes: published, and flagged before it goes out.
    let (status, body) = c
        .message("MB2", "driver-7", "I'm outside", "SDK", "0")
        .await;
    assert_eq!((status, body.as_str()), (200, "{}"));
    assert_eq!(
        svc.effects.lock().unwrap().flagged,
        vec![("driver-7".to_owned(), vec![RIDER.to_owned()])]
    );

    // START: published (Proxy passes it on), recorded, confirmed.
    let (status, _) = c.message("MB1", RIDER, "START", "SMS", "0").await;
    assert_eq!(status, 200);
    assert_eq!(store.state(key).unwrap(), OptState::OptedIn);
    assert_eq!(svc.effects.lock().unwrap().texts.len(), 2);
    let (status, _) = c.message("MB2", "driver-7", "see you", "SDK", "0").await;
    assert_eq!(status, 200);
    assert_eq!(
        svc.effects.lock().unwrap().flagged.len(),
        1,
        "nobody to flag now"
    );

    // A delivery receipt with 21610 (the rider opted out at the carrier): recorded.
    let (status, _) = c
        .post(
            service::POST,
            &[
                ("ChannelMessageSid", "SM1"),
                ("ConversationSid", CH),
                ("ErrorCode", "21610"),
                ("EventType", "onDeliveryUpdated"),
                ("MessageSid", "IM1"),
                ("ParticipantSid", "MB1"),
                ("Status", "undelivered"),
            ],
            false,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(store.state(key).unwrap(), OptState::OptedOut);

    // A request signed for another URL is refused, and changes nothing.
    let before = svc.effects.lock().unwrap().texts.len();
    let (status, _) = c
        .post(
            service::PRE,
            &[
                ("Author", RIDER),
                ("Body", "START"),
                ("ConversationSid", CH),
                ("EventType", "onMessageAdd"),
                ("ParticipantSid", "MB1"),
                ("Source", "SMS"),
            ],
            true,
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(store.state(key).unwrap(), OptState::OptedOut);
    assert_eq!(svc.effects.lock().unwrap().texts.len(), before);
}
