//! Proxy's callbacks, the STOP-filter flag and the debugger feed over real HTTP on loopback,
//! on SQLite and on PostgreSQL: receivers in the test for the CallbackUrl, the
//! InterceptCallbackUrl and the debugger webhook; a conversation with an ordinary message,
//! a STOP (no callback of any kind, 80901), an intercept 403 (80909, not relayed, no
//! CallbackUrl), an intercept 500 and an intercept timeout (both relayed, 80908), a status
//! callback (the CallbackUrl again); the alerts read back; the flag table of SPEC §6 over the
//! API. The signatures are checked with twilio-python's `RequestValidator` and twilio-node's
//! `validateRequest`, and the alerts read with twilio-python's Monitor client, where those
//! are installed (`.ci/run` installs them).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use common::{config, on_each_database, TestDb, ACCOUNT_SID, AUTH_TOKEN};
use proxy_relay::{MemorySender, Sender, Server};
use serde_json::Value;

on_each_database!(
    callbacks_intercepts_and_alerts_over_real_http,
    the_stop_filter_flag_table_over_http,
    out_of_session_answers_twiml_or_opens_a_session,
    version_2_tables_are_migrated_in_place,
    a_services_extensions_change_its_keywords_only,
    a_message_after_the_session_expired_is_80904,
);

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Received {
    url: String,
    signature: String,
    idempotency: Option<String>,
    params: Vec<(String, String)>,
}

impl Received {
    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn body(&self) -> String {
        let data: Value =
            serde_json::from_str(self.get("interactionData").unwrap_or("{}")).unwrap();
        data["body"].as_str().unwrap_or_default().to_owned()
    }
}

/// Receivers for `/callback`, `/intercept` and `/debugger` on one loopback port. The
/// intercept answers by the message's text: "block" 403, "fail" 500, "slow" after 1.5 s
/// (past the server's limit), anything else 200.
#[derive(Clone)]
struct Receiver {
    base: String,
    got: Arc<Mutex<Vec<(String, Received)>>>,
}

async fn receive(
    State(r): State<Receiver>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let form = proxy_optout_twilio::Form::parse(&body).unwrap();
    let got = Received {
        url: format!("{}{}", r.base, uri.0),
        signature: headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        idempotency: headers
            .get("i-twilio-idempotency-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        params: form
            .pairs()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    };
    let path = uri.0.path().to_owned();
    let text = match path.as_str() {
        "/oos" => got.get("Body").unwrap_or_default().to_owned(),
        _ => got.body(),
    };
    r.got.lock().unwrap().push((path.clone(), got));
    match path.as_str() {
        "/intercept" if text.contains("block") => StatusCode::FORBIDDEN.into_response(),
        "/intercept" | "/oos" if text.contains("fail") => {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        "/intercept" if text.contains("slow") => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            StatusCode::OK.into_response()
        }
        "/oos" if text.contains("twiml") => (
            [("content-type", "application/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>That ride has ended.</Message></Response>",
        )
            .into_response(),
        "/oos" if text.contains("json") => axum::Json(serde_json::json!({
            "participantIdentifier": OTHER,
            "uniqueName": "reopened-by-callback",
            "ttl": 3600,
        }))
        .into_response(),
        _ => StatusCode::OK.into_response(),
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            base: format!("http://{}", listener.local_addr().unwrap()),
            got: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    fn at(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Waits until `path` got `n` requests, and a moment more to see that no others follow.
    async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        for _ in 0..200 {
            if self.at(path).len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.at(path)
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.base))
            .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN));
        if !form.is_empty() {
            req = req.form(form);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let v = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path} {form:?}: {status} {v}");
        v
    }
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        self.call(reqwest::Method::POST, path, form).await
    }
    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, &[]).await
    }

    /// The error codes of the alerts, newest first, once `n` are there.
    async fn alerts(&self, n: usize) -> Vec<String> {
        let mut codes = Vec::new();
        for _ in 0..200 {
            let v = self.get("Alerts?PageSize=100").await;
            codes = v["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["error_code"].as_str().unwrap().to_owned())
                .collect();
            if codes.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        codes
    }
}

struct Rig {
    server: Server,
    sender: Arc<MemorySender>,
    api: Api,
    receiver: Receiver,
    service: String,
    session: String,
    proxy: String,
}

const RIDER: &str = "+15551900001";
const DRIVER: &str = "+15551900002";
const STRANGER: &str = "+15551900003";
const OTHER: &str = "+15551900004";

async fn rig(db: &TestDb, extra: &[&str], service_form: &[(&str, &str)]) -> Rig {
    let receiver = Receiver::start().await;
    let debugger = format!("{}/debugger", receiver.base);
    let mut args = vec![
        "--intercept-timeout-ms",
        "300",
        "--debugger-webhook-url",
        &debugger,
        "--callback-attempts",
        "2",
    ];
    args.extend_from_slice(extra);
    let sender = Arc::new(MemorySender::new());
    let server = Server::start(
        &config(&db.url(), &args),
        Some(sender.clone() as Arc<dyn Sender>),
    )
    .await
    .unwrap();
    let api = Api {
        http: reqwest::Client::new(),
        base: server.url(),
    };
    let mut form = vec![("UniqueName", "callbacks")];
    form.extend_from_slice(service_form);
    let service = api.post("Services", &form).await["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    api.post(
        &format!("Services/{service}/PhoneNumbers"),
        &[("PhoneNumber", "+15550001901")],
    )
    .await;
    let pa = serde_json::json!({"Identifier": RIDER}).to_string();
    let pb = serde_json::json!({"Identifier": DRIVER}).to_string();
    let session = api
        .post(
            &format!("Services/{service}/Sessions"),
            &[("Participants", &pa), ("Participants", &pb)],
        )
        .await;
    let participants = api
        .get(&format!(
            "Services/{service}/Sessions/{}/Participants",
            session["sid"].as_str().unwrap()
        ))
        .await;
    let proxy = participants["participants"][0]["proxy_identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    Rig {
        session: session["sid"].as_str().unwrap().to_owned(),
        server,
        sender,
        api,
        receiver,
        service,
        proxy,
    }
}

impl Rig {
    async fn text(&self, from: &str, body: &str) -> common::client::Answer {
        let a = common::client(&self.server)
            .message(from, &self.proxy, body)
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{body}: {}", a.body);
        a
    }

    fn sent(&self, body: &str) -> bool {
        self.sender.sent().iter().any(|m| m.body == body)
    }
}

/// The conversation; returns the rig for the client-library checks.
async fn conversation(db: &TestDb) -> Rig {
    let rig = rig(db, &[], &[]).await;
    let (callback, intercept) = (
        format!("{}/callback", rig.receiver.base),
        format!("{}/intercept", rig.receiver.base),
    );
    rig.api
        .post(
            &format!("Services/{}", rig.service),
            &[
                ("CallbackUrl", &callback),
                ("InterceptCallbackUrl", &intercept),
            ],
        )
        .await;

    // An ordinary message: the hook is asked first, then the CallbackUrl tells of it.
    rig.text(RIDER, "on my way").await;
    assert!(rig.sent("on my way"));
    let hooked = rig.receiver.wait_for("/intercept", 1).await;
    let first = &hooked[0];
    assert_eq!(
        first.get("interactionSessionSid"),
        Some(rig.session.as_str())
    );
    assert_eq!(
        first.get("interactionServiceSid"),
        Some(rig.service.as_str())
    );
    assert_eq!(first.get("interactionAccountSid"), Some(ACCOUNT_SID));
    assert_eq!(first.get("interactionType"), Some("message"));
    assert!(first
        .get("inboundParticipantSid")
        .unwrap()
        .starts_with("KP"));
    assert!(first.get("inboundResourceSid").unwrap().starts_with("SM"));
    assert_eq!(
        first.get("outboundResourceSid"),
        None,
        "the intercept has no outbound leg"
    );
    let called = rig.receiver.wait_for("/callback", 1).await;
    assert_eq!(called.len(), 1);
    let c = &called[0];
    assert_eq!(c.get("interactionSid"), first.get("interactionSid"));
    assert_eq!(c.body(), "on my way");
    assert_eq!(c.get("inboundResourceStatus"), Some("delivered"));
    assert_eq!(c.get("outboundResourceStatus"), Some("queued"));
    assert!(c.get("outboundParticipantSid").unwrap().starts_with("KP"));
    assert!(c
        .get("outboundResourceUrl")
        .unwrap()
        .contains("/Messages/SM"));
    assert!(c.idempotency.as_deref().unwrap().ends_with("-queued"));
    let validator = proxy_optout_twilio::Validator::new(AUTH_TOKEN);
    for r in [first, c] {
        let form = proxy_optout_twilio::Form::from_pairs(
            r.params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        validator
            .validate_form(&r.url, Some(&r.signature), &form)
            .unwrap();
    }

    // The hook answers 403: not relayed, no CallbackUrl, 80909; the Interaction has only
    // its inbound leg.
    rig.text(RIDER, "please block this").await;
    assert!(!rig.sent("please block this"));

    // The hook fails (500) and times out: relayed both times, 80908 each time.
    rig.text(RIDER, "fail, then go").await;
    rig.text(RIDER, "slow, then go").await;
    assert!(rig.sent("fail, then go") && rig.sent("slow, then go"));
    let hooked = rig.receiver.wait_for("/intercept", 4).await;
    let bodies: Vec<String> = hooked.iter().map(Received::body).collect();
    assert_eq!(
        bodies,
        [
            "on my way",
            "please block this",
            "fail, then go",
            "slow, then go"
        ],
        "the hook is never asked about STOP"
    );
    // STOP: dropped, no callback of any kind, 80901.
    let a = rig.text(DRIVER, "STOP").await;
    assert!(a.body.contains("unsubscribed"), "{}", a.body);
    assert!(!rig.sent("STOP"));

    // Refused with 21610: the rider texts the driver, who opted out; the CallbackUrl fires
    // for it (a failed outbound leg is still an interaction), the hook was asked first.
    rig.text(RIDER, "are you there?").await;
    assert!(!rig.sent("are you there?"));
    let called = rig.receiver.wait_for("/callback", 4).await;
    let told: Vec<(String, Option<String>)> = called
        .iter()
        .map(|c| (c.body(), c.get("outboundResourceStatus").map(str::to_owned)))
        .collect();
    assert_eq!(
        told,
        [
            ("on my way".into(), Some("queued".into())),
            ("fail, then go".into(), Some("queued".into())),
            ("slow, then go".into(), Some("queued".into())),
            ("are you there?".into(), Some("failed".into())),
        ]
    );

    // A status callback moves the first leg forward: the CallbackUrl again, once per move.
    let log = rig
        .api
        .get(&format!(
            "Services/{}/Sessions/{}/Interactions?PageSize=100",
            rig.service, rig.session
        ))
        .await;
    let interactions = log["interactions"].as_array().unwrap();
    let blocked = interactions
        .iter()
        .find(|i| i["data"].as_str().unwrap().contains("please block"))
        .unwrap();
    assert!(blocked["outbound_resource_sid"].is_null());
    assert!(blocked["outbound_resource_status"].is_null());
    assert_eq!(blocked["inbound_resource_status"], "delivered");
    // A dropped keyword is logged (inbound leg only) but told to no callback.
    let stop = interactions
        .iter()
        .find(|i| i["data"].as_str().unwrap().contains("STOP"))
        .unwrap();
    assert!(stop["outbound_resource_status"].is_null());
    let first_leg = c.get("outboundResourceSid").unwrap().to_owned();
    let sent = rig.sender.sent();
    let out = sent.iter().find(|m| m.body == "on my way").unwrap();
    for status in ["sent", "delivered", "sent"] {
        let form = proxy_optout_twilio::Form::from_pairs([
            ("MessageSid", first_leg.as_str()),
            ("MessageStatus", status),
            ("AccountSid", ACCOUNT_SID),
            ("From", out.from.as_str()),
            ("To", out.to.as_str()),
        ]);
        let a = common::client(&rig.server)
            .post_form(proxy_relay::STATUS_CALLBACK_PATH, &form, None)
            .await
            .unwrap();
        assert_eq!(a.status, 200);
    }
    let called = rig.receiver.wait_for("/callback", 6).await;
    let moves: Vec<Option<&str>> = called[4..]
        .iter()
        .map(|c| c.get("outboundResourceStatus"))
        .collect();
    assert_eq!(
        moves,
        [Some("sent"), Some("delivered")],
        "a move backwards is no change"
    );

    // The alerts: 80901, 80909, 80908 twice, 21610, newest first.
    let mut codes = rig.api.alerts(5).await;
    codes.sort();
    assert_eq!(codes, ["21610", "80901", "80908", "80908", "80909"]);
    let warnings = rig.api.get("Alerts?LogLevel=warning").await;
    let mut w: Vec<&str> = warnings["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error_code"].as_str().unwrap())
        .collect();
    w.sort_unstable();
    assert_eq!(w, ["80901", "80909"]);
    let future = rig.api.get("Alerts?StartDate=2999-01-01").await;
    assert!(future["alerts"].as_array().unwrap().is_empty());
    let all = rig.api.get("Alerts?PageSize=1").await;
    assert_eq!(all["meta"]["key"], "alerts");
    assert!(all["meta"]["next_page_url"]
        .as_str()
        .unwrap()
        .starts_with(&rig.server.url()));
    let one = &all["alerts"][0];
    let fetched = rig
        .api
        .get(&format!("Alerts/{}", one["sid"].as_str().unwrap()))
        .await;
    assert_eq!(&fetched, one);
    assert!(one["sid"].as_str().unwrap().starts_with("NO"));
    assert_eq!(one["account_sid"], ACCOUNT_SID);
    // The debugger webhook got each, signed.
    let debugged = rig.receiver.wait_for("/debugger", 5).await;
    assert_eq!(debugged.len(), 5);
    let payload: Value = serde_json::from_str(debugged[0].get("Payload").unwrap()).unwrap();
    assert!(
        payload["error_code"].as_str().unwrap().starts_with('8')
            || payload["error_code"] == "21610"
    );
    let m = rig.server.app().metrics();
    assert_eq!(m.callbacks("intercept", "blocked"), 1);
    assert_eq!(m.callbacks("intercept", "failed"), 2);
    assert_eq!(m.callbacks("callback", "delivered"), 6);
    rig
}

async fn callbacks_intercepts_and_alerts_over_real_http(db: &TestDb) {
    conversation(db).await.server.shutdown().await.unwrap();
}

/// SPEC §6 over HTTP: the account flag (a server setting) × the number's STOP filtering
/// (PhoneNumbers' `StopFiltering`), for a STOP from the rider.
async fn the_stop_filter_flag_table_over_http(db: &TestDb) {
    for (flag, filtering, relayed, recorded) in [
        (false, "on", false, true),
        (false, "off", false, false),
        (true, "on", false, true),
        (true, "off", true, false),
    ] {
        let extra: &[&str] = if flag {
            &["--respect-stop-filter-flag"]
        } else {
            &[]
        };
        let sub = match db {
            TestDb::Sqlite(_) => TestDb::sqlite(),
            TestDb::Postgres(_) => {
                TestDb::postgres(&format!("flag_table_{flag}_{filtering}")).await
            }
        };
        let rig = rig(&sub, extra, &[]).await;
        let intercept = format!("{}/intercept", rig.receiver.base);
        rig.api
            .post(
                &format!("Services/{}", rig.service),
                &[("InterceptCallbackUrl", &intercept)],
            )
            .await;
        let number = rig
            .api
            .post(
                &format!("Services/{}/PhoneNumbers/{}", rig.service, rig.proxy),
                &[("StopFiltering", filtering)],
            )
            .await;
        assert_eq!(number["stop_filtering"], filtering);
        let a = rig.text(RIDER, "STOP").await;
        let case = format!("flag {flag}, filtering {filtering}");
        assert_eq!(rig.sent("STOP"), relayed, "{case}");
        assert_eq!(
            a.body.contains("unsubscribed"),
            recorded,
            "{case}: {}",
            a.body
        );
        let state = rig
            .server
            .app()
            .db()
            .state(&rig.proxy, RIDER)
            .await
            .unwrap();
        assert_eq!(
            state == proxy_optout::OptState::OptedOut,
            recorded,
            "{case}"
        );
        let hooked = rig
            .receiver
            .wait_for("/intercept", usize::from(relayed))
            .await;
        if relayed {
            // The hook sees what the library made of it, to do its own keyword handling.
            assert_eq!(hooked.len(), 1, "{case}");
            assert_eq!(hooked[0].get("keywordCategory"), Some("opt_out"), "{case}");
            assert_eq!(hooked[0].get("keyword"), Some("STOP"), "{case}");
        } else {
            assert!(hooked.is_empty(), "{case}");
        }
        rig.server.shutdown().await.unwrap();
    }
}

async fn sessions(rig: &Rig) -> usize {
    let path = format!("Services/{}/Sessions", rig.service);
    rig.api.get(&path).await["sessions"]
        .as_array()
        .unwrap()
        .len()
}

/// The OutOfSessionCallbackUrl: TwiML is the webhook's answer; JSON opens a session and the
/// message is relayed in it; a 500 is 80913; a keyword never reaches it.
async fn out_of_session_answers_twiml_or_opens_a_session(db: &TestDb) {
    let rig = rig(db, &[], &[]).await;
    let oos = format!("{}/oos", rig.receiver.base);
    rig.api
        .post(
            &format!("Services/{}", rig.service),
            &[("OutOfSessionCallbackUrl", &oos)],
        )
        .await;
    assert_eq!(sessions(&rig).await, 1);

    let a = rig.text(STRANGER, "twiml please").await;
    assert!(a.body.contains("That ride has ended."), "{}", a.body);
    assert!(!rig.sent("twiml please"));
    let asked = rig.receiver.wait_for("/oos", 1).await;
    assert_eq!(asked[0].get("From"), Some(STRANGER));
    assert_eq!(asked[0].get("To"), Some(rig.proxy.as_str()));
    assert_eq!(asked[0].get("Body"), Some("twiml please"));
    assert_eq!(asked[0].get("AccountSid"), Some(ACCOUNT_SID));
    assert_eq!(asked[0].get("sessionSid"), None, "no previous session");
    let form = proxy_optout_twilio::Form::from_pairs(
        asked[0]
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    proxy_optout_twilio::Validator::new(AUTH_TOKEN)
        .validate_form(&asked[0].url, Some(&asked[0].signature), &form)
        .unwrap();

    // A dropped keyword is dropped out of session too: the callback is not asked. (START is
    // not dropped, so it would be.)
    rig.text("+15551900006", "STOP").await;
    assert_eq!(rig.receiver.wait_for("/oos", 1).await.len(), 1);

    // JSON: a session with OTHER, and the message relayed in it.
    rig.text(STRANGER, "json please").await;
    assert_eq!(sessions(&rig).await, 2);
    let sent = rig.sender.sent();
    let relayed = sent.iter().find(|m| m.body == "json please").unwrap();
    assert_eq!(relayed.to, OTHER);
    // In session now: the next message goes straight through.
    rig.text(STRANGER, "and again").await;
    assert!(rig.sent("and again"));
    assert_eq!(rig.receiver.wait_for("/oos", 2).await.len(), 2);

    // 500: 80913, nothing relayed.
    rig.text("+15551900005", "fail me").await;
    assert!(!rig.sent("fail me"));
    // 80902 for "twiml please" and "fail me", 80901 for STOP, 80913 for the 500.
    let mut codes = rig.api.alerts(4).await;
    codes.sort();
    assert_eq!(codes, ["80901", "80902", "80902", "80913"]);
    let m = rig.server.app().metrics();
    assert_eq!(m.callbacks("out_of_session", "twiml"), 1);
    assert_eq!(m.callbacks("out_of_session", "session"), 1);
    assert_eq!(m.callbacks("out_of_session", "failed"), 1);
    rig.server.shutdown().await.unwrap();
}

/// A database left by the previous build (session tables version 2: no alerts, no filtering
/// per number, the outbound SID's index) is migrated at start: its numbers filter STOP,
/// alerts are kept, the index is gone.
async fn version_2_tables_are_migrated_in_place(db: &TestDb) {
    let rig = rig(db, &[], &[]).await;
    rig.server.shutdown().await.unwrap();
    let downgrade = "ALTER TABLE proxy_phone_numbers DROP COLUMN stop_filtering;
        ALTER TABLE proxy_services DROP COLUMN extensions;
        DROP TABLE proxy_alerts;
        CREATE INDEX proxy_interactions_by_outbound ON proxy_interactions (outbound_resource_sid)
            WHERE outbound_resource_sid IS NOT NULL;
        DELETE FROM proxy_relay_schema;
        INSERT INTO proxy_relay_schema (version) VALUES (2);";
    match db {
        TestDb::Sqlite(_) => {
            let c = rusqlite::Connection::open(db.url()).unwrap();
            c.execute_batch(downgrade).unwrap();
        }
        TestDb::Postgres(pg) => {
            let (c, conn) = tokio_postgres::connect(pg.url(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            c.batch_execute(downgrade).await.unwrap();
        }
    }
    let sender = Arc::new(MemorySender::new());
    let server = Server::start(
        &config(&db.url(), &[]),
        Some(sender.clone() as Arc<dyn Sender>),
    )
    .await
    .unwrap();
    let api = Api {
        http: reqwest::Client::new(),
        base: server.url(),
    };
    let number = api
        .get(&format!(
            "Services/{}/PhoneNumbers/{}",
            rig.service, rig.proxy
        ))
        .await;
    assert_eq!(number["stop_filtering"], "on");
    let index = match db {
        TestDb::Sqlite(_) => {
            "SELECT count(*) FROM sqlite_master WHERE name = 'proxy_interactions_by_outbound'"
        }
        TestDb::Postgres(_) => {
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'proxy_interactions_by_outbound'"
        }
    };
    assert_eq!(server.app().db().scalar(index).await.unwrap(), 0);
    let a = common::client(&server)
        .message(RIDER, &rig.proxy, "STOP")
        .await
        .unwrap();
    assert!(a.body.contains("unsubscribed"), "{}", a.body);
    assert_eq!(api.alerts(1).await, ["80901"]);
    server.shutdown().await.unwrap();
}

/// The library's extensions as one service's settings: the French pack, a custom keyword,
/// its own STOP reply, revocation hints as alerts. Another service keeps Proxy's rules.
async fn a_services_extensions_change_its_keywords_only(db: &TestDb) {
    let rig = rig(db, &[], &[]).await;
    let (status, err) = {
        let r = rig
            .api
            .http
            .post(format!("{}/v1/Services/{}", rig.server.url(), rig.service))
            .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
            .form(&[("RuleSet", "proxy-1999")])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 400);
    assert_eq!(err["code"], 20001);
    assert!(
        err["message"].as_str().unwrap().contains("proxy-1999"),
        "{err}"
    );
    let updated = rig
        .api
        .post(
            &format!("Services/{}", rig.service),
            &[
                ("LanguagePacks", "french"),
                ("Keywords", r#"{"PAUSE": "opt_out"}"#),
                (
                    "Replies",
                    r#"{"opt_out": "Acme: you will get no more texts. Reply START to resume."}"#,
                ),
                ("RevocationHints", "true"),
            ],
        )
        .await;
    assert_eq!(updated["extensions"]["language_packs"][0], "french");
    assert_eq!(updated["extensions"]["keywords"]["PAUSE"], "opt_out");
    // Another service, Proxy's rules.
    let other = rig.api.post("Services", &[("UniqueName", "plain")]).await["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    rig.api
        .post(
            &format!("Services/{other}/PhoneNumbers"),
            &[("PhoneNumber", "+15550001902")],
        )
        .await;
    let (pa, pb) = (
        serde_json::json!({"Identifier": "+15551900011"}).to_string(),
        serde_json::json!({"Identifier": "+15551900012"}).to_string(),
    );
    rig.api
        .post(
            &format!("Services/{other}/Sessions"),
            &[("Participants", &pa), ("Participants", &pb)],
        )
        .await;

    let a = rig.text(RIDER, "ARRÊT").await;
    assert!(
        a.body.contains("Acme: you will get no more texts."),
        "{}",
        a.body
    );
    assert!(!rig.sent("ARRÊT"));
    let a = rig.text(DRIVER, "pause").await;
    assert!(a.body.contains("Acme"), "{}", a.body);
    assert!(!rig.sent("pause"));
    let c = common::client(&rig.server);
    let a = c
        .message("+15551900011", "+15550001902", "ARRÊT")
        .await
        .unwrap();
    assert!(!a.body.contains("Acme"), "{}", a.body);
    assert!(rig.sent("ARRÊT"), "the plain service relays it");
    // A revocation hint: relayed, and an alert for review.
    rig.text(DRIVER, "START").await;
    rig.text(RIDER, "START").await;
    rig.text(RIDER, "please stop texting me").await;
    assert!(rig.sent("please stop texting me"));
    let mut codes = Vec::new();
    for _ in 0..100 {
        let v = rig.api.get("Alerts?LogLevel=notice").await;
        codes = v["alerts"].as_array().unwrap().to_vec();
        if !codes.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(codes.len(), 1, "{codes:?}");
    assert_eq!(codes[0]["error_code"], "revocation-hint");
    assert!(codes[0]["alert_text"]
        .as_str()
        .unwrap()
        .contains("stop texting"));
    rig.server.shutdown().await.unwrap();
}

/// Out of session because the session's Ttl ran out: 80904, not 80902.
async fn a_message_after_the_session_expired_is_80904(db: &TestDb) {
    let rig = rig(db, &["--session-sweep-ms", "50"], &[]).await;
    let (pa, pb) = (
        serde_json::json!({"Identifier": STRANGER}).to_string(),
        serde_json::json!({"Identifier": OTHER}).to_string(),
    );
    let session = rig
        .api
        .post(
            &format!("Services/{}/Sessions", rig.service),
            &[("Participants", &pa), ("Participants", &pb), ("Ttl", "1")],
        )
        .await;
    let path = format!(
        "Services/{}/Sessions/{}",
        rig.service,
        session["sid"].as_str().unwrap()
    );
    for _ in 0..200 {
        if rig.api.get(&path).await["status"] == "closed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(rig.api.get(&path).await["closed_reason"], "ttl");
    rig.text(STRANGER, "are you still there?").await;
    // And one who never had a session: 80902.
    rig.text("+15551900007", "hello?").await;
    let mut codes = rig.api.alerts(2).await;
    codes.sort();
    assert_eq!(codes, ["80902", "80904"]);
    rig.server.shutdown().await.unwrap();
}

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The callbacks the receivers got, for a client library's validator, with one forged.
fn signed_requests(rig: &Rig) -> (Value, usize) {
    let mut requests: Vec<Value> = rig
        .receiver
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r)| serde_json::json!({"url": r.url, "params": r.params, "signature": r.signature}))
        .collect();
    let n = requests.len();
    let mut forged = requests[0].clone();
    forged["params"][0][1] = Value::String("KIforged".into());
    requests.push(forged);
    (Value::Array(requests), n)
}

/// The validator's verdicts: the `n` genuine callbacks valid, the forged one (last) not.
fn every_genuine_one_validates(out: &Value, n: usize) {
    let valid: Vec<bool> = serde_json::from_value(out["valid"].clone()).unwrap();
    assert_eq!(valid.len(), n + 1);
    assert!(valid[..n].iter().all(|v| *v), "{valid:?}");
    assert!(!valid[n], "a forged callback must not validate");
}

async fn run(program: &str, script: &str, input: Value) -> Value {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
        .arg(repo().join(script))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{script}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[cfg_attr(
    not(python_tests),
    ignore = "twilio-python tests skipped: set PROXY_OPTOUT_PYTHON to a Python with tools/python/requirements.txt installed (.ci/run does)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_python_validates_the_callbacks_and_reads_the_alerts() {
    let python = std::env::var("PROXY_OPTOUT_PYTHON").expect("PROXY_OPTOUT_PYTHON is set");
    let db = TestDb::sqlite();
    let rig = conversation(&db).await;
    let (requests, n) = signed_requests(&rig);
    let out = run(
        &python,
        "tools/python/callbacks_check.py",
        serde_json::json!({
            "token": AUTH_TOKEN,
            "requests": requests,
            "monitor": {"base": rig.server.url(), "account": ACCOUNT_SID, "token": AUTH_TOKEN},
        }),
    )
    .await;
    every_genuine_one_validates(&out, n);
    let alerts = out["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 5, "all pages followed: {out}");
    assert!(alerts
        .iter()
        .all(|a| a["date_created_is_datetime"] == true && a["account_sid"] == ACCOUNT_SID));
    let mut warnings: Vec<&str> = out["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error_code"].as_str().unwrap())
        .collect();
    warnings.sort_unstable();
    assert_eq!(warnings, ["80901", "80909"]);
    assert_eq!(out["ranged"], 5);
    assert_eq!(out["future"], 0);
    assert_eq!(out["fetched"]["sid"], alerts[0]["sid"]);
    rig.server.shutdown().await.unwrap();
}

#[cfg_attr(
    not(node_tests),
    ignore = "twilio-node tests skipped: set PROXY_OPTOUT_NODE to a Node with tools/node installed by npm ci (.ci/run does)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_node_validates_the_callbacks() {
    let node = std::env::var("PROXY_OPTOUT_NODE").expect("PROXY_OPTOUT_NODE is set");
    let db = TestDb::sqlite();
    let rig = conversation(&db).await;
    let (requests, n) = signed_requests(&rig);
    let out = run(
        &node,
        "tools/node/validate_signature.js",
        serde_json::json!({"token": AUTH_TOKEN, "requests": requests}),
    )
    .await;
    every_genuine_one_validates(&out, n);
    rig.server.shutdown().await.unwrap();
}
