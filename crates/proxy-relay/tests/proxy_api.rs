//! The Proxy API's rules over real HTTP on loopback, on SQLite and on PostgreSQL, beyond what
//! the official clients' scenarios walk through (`proxy_clients.rs`): authentication, number
//! selection, expiry, paging limits, removed participants, and two instances creating
//! sessions at once.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{config, on_each_database, TestDb, ACCOUNT_SID, AUTH_TOKEN};
use proxy_relay::{MemorySender, Sender, Server};
use serde_json::Value;

on_each_database!(
    wrong_or_missing_credentials_get_401_20003_and_change_nothing,
    numbers_are_picked_from_the_non_reserved_pool_sticky_or_not,
    a_session_past_its_ttl_or_date_expiry_is_closed_and_stops_routing,
    pages_are_capped_at_100_and_link_forward_on_the_public_url,
    a_removed_participant_stops_routing_and_cannot_come_back,
    bad_values_are_refused_naming_them,
    two_instances_creating_sessions_at_once_never_share_a_pair,
    status_callbacks_move_an_interactions_outbound_leg_forward_only,
);

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: server.url(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}/v1/{path}", self.base)
        };
        let mut req = self
            .http
            .request(method, url)
            .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN));
        if !form.is_empty() {
            req = req.form(form);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, form).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, &[]).await
    }

    async fn created(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let (status, v) = self.post(path, form).await;
        assert_eq!(status, 201, "{path} {form:?}: {v}");
        v
    }

    /// A service with `numbers` in its pool (`reserved` ones reserved).
    async fn service(
        &self,
        name: &str,
        numbers: &[&str],
        reserved: &[&str],
        extra: &[(&str, &str)],
    ) -> String {
        let mut form = vec![("UniqueName", name)];
        form.extend_from_slice(extra);
        let s = self.created("Services", &form).await;
        let sid = s["sid"].as_str().unwrap().to_owned();
        for n in numbers {
            let r = if reserved.contains(n) {
                "true"
            } else {
                "false"
            };
            self.created(
                &format!("Services/{sid}/PhoneNumbers"),
                &[("PhoneNumber", n), ("IsReserved", r)],
            )
            .await;
        }
        sid
    }

    /// Creates a session between `a` and `b`; returns (status, session or error, their proxy
    /// numbers).
    async fn session(
        &self,
        service: &str,
        a: &str,
        b: &str,
        extra: &[(&str, &str)],
    ) -> (u16, Value, Vec<String>) {
        let pa = serde_json::json!({"Identifier": a}).to_string();
        let pb = serde_json::json!({"Identifier": b}).to_string();
        let mut form = vec![("Participants", pa.as_str()), ("Participants", pb.as_str())];
        form.extend_from_slice(extra);
        let (status, v) = self
            .post(&format!("Services/{service}/Sessions"), &form)
            .await;
        if status != 201 {
            return (status, v, vec![]);
        }
        let sid = v["sid"].as_str().unwrap();
        let (_, parts) = self
            .get(&format!("Services/{service}/Sessions/{sid}/Participants"))
            .await;
        let numbers = parts["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["proxy_identifier"].as_str().unwrap().to_owned())
            .collect();
        (status, v, numbers)
    }
}

async fn start(db: &TestDb, extra: &[&str]) -> (Server, Arc<MemorySender>) {
    let sender = Arc::new(MemorySender::new());
    let server = Server::start(
        &config(&db.url(), extra),
        Some(sender.clone() as Arc<dyn Sender>),
    )
    .await
    .unwrap();
    (server, sender)
}

async fn counts(server: &Server) -> Vec<i64> {
    let mut out = Vec::new();
    for t in [
        "proxy_services",
        "proxy_phone_numbers",
        "proxy_sessions",
        "proxy_participants",
        "proxy_interactions",
    ] {
        out.push(
            server
                .app()
                .db()
                .scalar(&format!("SELECT count(*) FROM {t}"))
                .await
                .unwrap(),
        );
    }
    out
}

async fn wrong_or_missing_credentials_get_401_20003_and_change_nothing(db: &TestDb) {
    let (server, _) = start(db, &[]).await;
    let api = Api::new(&server);
    let service = api.service("auth", &["+15550009001"], &[], &[]).await;
    let before = counts(&server).await;
    let basic = |u: &str, p: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    let headers = [
        None,
        Some(basic(ACCOUNT_SID, "wrong")),
        Some(basic(ACCOUNT_SID, &format!("{AUTH_TOKEN}x"))),
        Some(basic("AC00000000000000000000000000000001", AUTH_TOKEN)),
        Some(format!("Bearer {AUTH_TOKEN}")),
        Some("Basic not-base64!".into()),
    ];
    let b = &api.base;
    for h in &headers {
        let calls = [
            api.http
                .post(format!("{b}/v1/Services"))
                .form(&[("UniqueName", "x")]),
            api.http.get(format!("{b}/v1/Services")),
            api.http
                .post(format!("{b}/v1/Services/{service}"))
                .form(&[("DefaultTtl", "5")]),
            api.http.delete(format!("{b}/v1/Services/{service}")),
            api.http
                .post(format!("{b}/v1/Services/{service}/PhoneNumbers"))
                .form(&[("PhoneNumber", "+15550009002")]),
        ];
        for call in calls {
            let call = match h {
                Some(v) => call.header("authorization", v),
                None => call,
            };
            let r = call.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 401, "{h:?}");
            assert_eq!(
                r.headers()["www-authenticate"],
                "Basic realm=\"Twilio API\""
            );
            let text = r.text().await.unwrap();
            let e: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(e["code"], 20003);
            assert_eq!(e["status"], 401);
            assert!(!text.contains(AUTH_TOKEN), "the token is never echoed");
        }
    }
    assert_eq!(counts(&server).await, before);
    let (status, got) = api.get(&format!("Services/{service}")).await;
    assert_eq!((status, got["default_ttl"].as_i64()), (200, Some(0)));
    server.shutdown().await.unwrap();
}

async fn numbers_are_picked_from_the_non_reserved_pool_sticky_or_not(db: &TestDb) {
    let (server, _) = start(db, &[]).await;
    let api = Api::new(&server);
    let (p1, p2, p3) = ("+15550007001", "+15550007002", "+15550007003");
    let s = api.service("sticky", &[p1, p2, p3], &[p3], &[]).await;
    // Both participants of one session may share a number; a reserved one is never picked.
    let (st, first, nums) = api.session(&s, "+15551000001", "+15552000001", &[]).await;
    assert_eq!(st, 201, "{first}");
    assert_eq!(nums, [p1, p1]);
    // The same rider in a second session gets the next free number.
    let (_, second, nums) = api.session(&s, "+15551000001", "+15552000002", &[]).await;
    assert_eq!(nums, [p2, p1]);
    // A third: only the reserved number is left for the rider.
    let (st, e, _) = api.session(&s, "+15551000001", "+15552000003", &[]).await;
    assert_eq!((st, e["code"].as_u64()), (400, Some(80206)), "{e}");
    // Closing the first frees p1 for the rider; prefer-sticky gives back the number the rider
    // had last (p2 is still held, so p1).
    let sid = first["sid"].as_str().unwrap();
    api.post(
        &format!("Services/{s}/Sessions/{sid}"),
        &[("Status", "closed")],
    )
    .await;
    let (_, _, nums) = api.session(&s, "+15551000001", "+15552000004", &[]).await;
    assert_eq!(nums[0], p1);
    // Sticky across sessions: closing the second and opening again returns p2.
    let sid2 = second["sid"].as_str().unwrap();
    api.post(
        &format!("Services/{s}/Sessions/{sid2}"),
        &[("Status", "closed")],
    )
    .await;
    let (_, _, nums) = api.session(&s, "+15551000001", "+15552000005", &[]).await;
    assert_eq!(
        nums[0], p2,
        "prefer-sticky reuses the number the participant had last"
    );

    // avoid-sticky: a number never used with the participant first.
    let a = api
        .service(
            "avoid",
            &["+15550008001", "+15550008002"],
            &[],
            &[("NumberSelectionBehavior", "avoid-sticky")],
        )
        .await;
    let (_, s1, nums) = api.session(&a, "+15553000001", "+15554000001", &[]).await;
    assert_eq!(nums[0], "+15550008001");
    let sid = s1["sid"].as_str().unwrap();
    api.post(
        &format!("Services/{a}/Sessions/{sid}"),
        &[("Status", "closed")],
    )
    .await;
    let (_, _, nums) = api.session(&a, "+15553000001", "+15554000002", &[]).await;
    assert_eq!(
        nums[0], "+15550008002",
        "avoid-sticky avoids the number used before"
    );

    // Only reserved numbers: 80207; none at all: 80208; a number of another service: 80101.
    let r = api
        .service("reserved", &["+15550006001"], &["+15550006001"], &[])
        .await;
    let (st, e, _) = api.session(&r, "+15555000001", "+15556000001", &[]).await;
    assert_eq!((st, e["code"].as_u64()), (400, Some(80207)), "{e}");
    let empty = api.service("empty", &[], &[], &[]).await;
    let (_, e, _) = api
        .session(&empty, "+15555000001", "+15556000001", &[])
        .await;
    assert_eq!(e["code"], 80208, "{e}");
    let (st, e) = api
        .post(
            &format!("Services/{empty}/PhoneNumbers"),
            &[("PhoneNumber", p1)],
        )
        .await;
    assert_eq!((st, e["code"].as_u64()), (400, Some(80101)), "{e}");
    // A reserved number can be asked for by name.
    let pa = serde_json::json!({"Identifier": "+15555000001", "ProxyIdentifier": "+15550006001"})
        .to_string();
    let (st, v) = api
        .post(&format!("Services/{r}/Sessions"), &[("Participants", &pa)])
        .await;
    assert_eq!(st, 201, "{v}");
    server.shutdown().await.unwrap();
}

async fn a_session_past_its_ttl_or_date_expiry_is_closed_and_stops_routing(db: &TestDb) {
    let (server, sender) = start(db, &["--session-sweep-ms", "100"]).await;
    let api = Api::new(&server);
    let s = api.service("ttl", &["+15550005001"], &[], &[]).await;
    let (_, by_ttl, nums) = api
        .session(&s, "+15557000001", "+15558000001", &[("Ttl", "1")])
        .await;
    let past = "2001-01-01T00:00:00Z";
    let (_, by_date, _) = api
        .session(&s, "+15557000002", "+15558000002", &[("DateExpiry", past)])
        .await;
    let (_, forever, _) = api.session(&s, "+15557000003", "+15558000003", &[]).await;
    let t = closed(&api, &s, by_ttl)
        .await
        .expect("the Ttl session closes");
    assert_eq!(t["closed_reason"], "ttl");
    assert!(t["date_ended"].is_string());
    let d = closed(&api, &s, by_date)
        .await
        .expect("the DateExpiry session closes");
    assert_eq!(d["closed_reason"], "expired");
    let sid = forever["sid"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("Services/{s}/Sessions/{sid}")).await.1["status"],
        "open"
    );
    // The closed session no longer routes: nothing is forwarded.
    let c = common::client(&server);
    let a = c
        .message("+15557000001", &nums[0], "still there?")
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert!(sender.sent().is_empty(), "{:?}", sender.sent());
    server.shutdown().await.unwrap();
}

/// The session once a sweep closed it, polling for up to 5 s.
async fn closed(api: &Api, service: &str, v: Value) -> Option<Value> {
    let sid = v["sid"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        let (_, got) = api.get(&format!("Services/{service}/Sessions/{sid}")).await;
        if got["status"] == "closed" {
            return Some(got);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn pages_are_capped_at_100_and_link_forward_on_the_public_url(db: &TestDb) {
    let (server, _) = start(db, &[]).await;
    let api = Api::new(&server);
    let s = api.service("pages", &["+15550004001"], &[], &[]).await;
    for k in 0..105 {
        let (st, v, _) = api
            .session(&s, &format!("+1559{k:07}"), &format!("+1558{k:07}"), &[])
            .await;
        assert_eq!(st, 201, "{v}");
    }
    let (st, page) = api
        .get(&format!("Services/{s}/Sessions?PageSize=500"))
        .await;
    assert_eq!(st, 200);
    assert_eq!(page["sessions"].as_array().unwrap().len(), 100);
    assert_eq!(page["meta"]["page_size"], 100);
    assert_eq!(page["meta"]["key"], "sessions");
    let next = page["meta"]["next_page_url"].as_str().unwrap().to_owned();
    assert!(
        next.starts_with(&format!("{}/v1/Services/{s}/Sessions?", server.url())),
        "{next}"
    );
    let (st, rest) = api.get(&next).await;
    assert_eq!(st, 200);
    assert_eq!(rest["sessions"].as_array().unwrap().len(), 5);
    assert!(rest["meta"]["next_page_url"].is_null());
    assert_eq!(rest["meta"]["page"], 1);
    let mut seen: Vec<String> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["sessions"].as_array().unwrap())
        .map(|v| v["sid"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 105, "every session exactly once");
    let (st, e) = api
        .get(&format!("Services/{s}/Sessions?PageToken=bogus"))
        .await;
    assert_eq!((st, e["code"].as_u64()), (400, Some(20001)));
    server.shutdown().await.unwrap();
}

async fn a_removed_participant_stops_routing_and_cannot_come_back(db: &TestDb) {
    let (server, sender) = start(db, &[]).await;
    let api = Api::new(&server);
    let s = api.service("remove", &["+15550003001"], &[], &[]).await;
    let (_, v, nums) = api.session(&s, "+15551230001", "+15551230002", &[]).await;
    let c = common::client(&server);
    let sid = v["sid"].as_str().unwrap();
    let (_, parts) = api
        .get(&format!("Services/{s}/Sessions/{sid}/Participants"))
        .await;
    let driver = parts["participants"][1]["sid"].as_str().unwrap().to_owned();
    let (st, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("Services/{s}/Sessions/{sid}/Participants/{driver}"),
            &[],
        )
        .await;
    assert!((200..300).contains(&st));
    c.message("+15551230001", &nums[0], "hello?").await.unwrap();
    assert!(
        sender.sent().is_empty(),
        "nothing goes to a removed participant"
    );
    let (_, got) = api
        .get(&format!(
            "Services/{s}/Sessions/{sid}/Participants/{driver}"
        ))
        .await;
    assert!(got["date_deleted"].is_string(), "{got}");
    let (st, e) = api
        .post(
            &format!("Services/{s}/Sessions/{sid}/Participants"),
            &[("Identifier", "+15551230002")],
        )
        .await;
    assert_eq!((st, e["code"].as_u64()), (400, Some(80612)), "{e}");
    // A new participant takes the free place.
    let (st, p) = api
        .post(
            &format!("Services/{s}/Sessions/{sid}/Participants"),
            &[("Identifier", "+15551230003")],
        )
        .await;
    assert_eq!(st, 201, "{p}");
    let (st, e) = api
        .post(
            &format!("Services/{s}/Sessions/{sid}/Participants"),
            &[("Identifier", "+15551230004")],
        )
        .await;
    assert_eq!((st, e["code"].as_u64()), (400, Some(80609)), "{e}");
    c.message("+15551230001", &nums[0], "hello again")
        .await
        .unwrap();
    assert_eq!(sender.sent().len(), 1);
    assert_eq!(sender.sent()[0].to, "+15551230003");
    server.shutdown().await.unwrap();
}

async fn bad_values_are_refused_naming_them(db: &TestDb) {
    let (server, _) = start(db, &[]).await;
    let api = Api::new(&server);
    let before = counts(&server).await;
    for (form, needle) in [
        (vec![], "UniqueName is required"),
        (
            vec![("UniqueName", "x"), ("DefaultTtl", "soon")],
            "\"soon\"",
        ),
        (
            vec![("UniqueName", "x"), ("NumberSelectionBehavior", "random")],
            "\"random\"",
        ),
        (
            vec![("UniqueName", "x"), ("GeoMatchLevel", "planet")],
            "\"planet\"",
        ),
        (
            vec![("UniqueName", "x"), ("CallbackUrl", "ftp://x")],
            "\"ftp://x\"",
        ),
    ] {
        let (st, e) = api.post("Services", &form).await;
        assert_eq!(st, 400, "{form:?}");
        assert_eq!(e["code"], 20001);
        assert!(e["message"].as_str().unwrap().contains(needle), "{e}");
        assert_eq!(e["more_info"], "https://www.twilio.com/docs/errors/20001");
        assert!(e.get("type").is_none() && e.get("title").is_none());
    }
    let s = api.service("bad", &["+15550002001"], &[], &[]).await;
    let before_sessions = counts(&server).await;
    for (form, needle) in [
        (vec![("Participants", "not json")], "Participants[0]"),
        (
            vec![("Participants", "{\"FriendlyName\": \"x\"}")],
            "Identifier is required",
        ),
        (vec![("DateExpiry", "tomorrow")], "\"tomorrow\""),
        (vec![("Mode", "fax")], "\"fax\""),
    ] {
        let (st, e) = api.post(&format!("Services/{s}/Sessions"), &form).await;
        assert_eq!(st, 400, "{form:?}");
        assert!(e["message"].as_str().unwrap().contains(needle), "{e}");
    }
    let (st, e) = api
        .post(
            &format!("Services/{s}/PhoneNumbers"),
            &[("PhoneNumber", "555-1234")],
        )
        .await;
    assert_eq!(st, 400);
    assert!(e["message"].as_str().unwrap().contains("\"555-1234\""));
    assert_eq!(counts(&server).await, before_sessions);
    assert_eq!(before_sessions[0], before[0] + 1);
    let (st, e) = api.get("Services/KSnope").await;
    assert_eq!((st, e["code"].as_u64()), (404, Some(20404)));
    assert!(e["message"].as_str().unwrap().contains("KSnope"));
    server.shutdown().await.unwrap();
}

async fn two_instances_creating_sessions_at_once_never_share_a_pair(db: &TestDb) {
    if db.is_sqlite() {
        // One SQLite file has one server; the PostgreSQL run is the one with two instances.
        return;
    }
    let (a, _) = start(db, &["--journal", &format!("{}/a.journal", tempdir())]).await;
    let (b, _) = start(db, &["--journal", &format!("{}/b.journal", tempdir())]).await;
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let s = api_a
        .service(
            "race",
            &["+15550001001", "+15550001002", "+15550001003"],
            &[],
            &[],
        )
        .await;
    // The same rider, 8 sessions at once across two instances, 3 numbers: exactly 3 succeed,
    // each on a different number.
    let tasks: Vec<_> = (0..8)
        .map(|k| {
            let api = if k % 2 == 0 { &api_a } else { &api_b };
            let s = s.clone();
            async move {
                api.session(&s, "+15552220000", &format!("+1555333{k:04}"), &[])
                    .await
            }
        })
        .collect();
    let results = futures_join(tasks).await;
    let ok: Vec<&Vec<String>> = results
        .iter()
        .filter(|r| r.0 == 201)
        .map(|r| &r.2)
        .collect();
    assert_eq!(ok.len(), 3, "{results:?}");
    let mut numbers: Vec<&String> = ok.iter().map(|n| &n[0]).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 3);
    for r in results.iter().filter(|r| r.0 != 201) {
        assert_eq!(r.1["code"], 80206, "{r:?}");
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

fn tempdir() -> String {
    let dir = tempfile::tempdir().unwrap().keep();
    dir.to_string_lossy().into_owned()
}

async fn futures_join<F: std::future::Future>(tasks: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(tasks.len());
    let handles: Vec<_> = tasks.into_iter().map(Box::pin).collect();
    // Poll them together: each request waits on the network, so they overlap.
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(results.into_iter().map(Option::unwrap));
    out
}

async fn status_callbacks_move_an_interactions_outbound_leg_forward_only(db: &TestDb) {
    // The real sender against a fake Twilio: each callback goes to the URL the send gave
    // Twilio, as Twilio posts it, signed over that URL with its query.
    let fake = common::FakeTwilio::start().await;
    let server = common::start_with_twilio(&db.url(), &fake, &[]).await;
    let api = Api::new(&server);
    let s = api.service("status", &["+15550001501"], &[], &[]).await;
    let (_, v, nums) = api.session(&s, "+15551500001", "+15551500002", &[]).await;
    let sid = v["sid"].as_str().unwrap();
    let c = common::client(&server);
    c.message("+15551500001", &nums[0], "on my way")
        .await
        .unwrap();
    let log = format!("Services/{s}/Sessions/{sid}/Interactions");
    let legs = || async {
        let (_, v) = api.get(&log).await;
        v["interactions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["outbound_resource_sid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    i["outbound_resource_status"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let (message_sid, queued) = legs().await.remove(0);
    assert!(message_sid.starts_with("SM"), "{message_sid}");
    assert_eq!(queued, "queued");
    let sent = fake.sent();
    let named = sent[0].status_callback.clone().unwrap();
    let named = named.strip_prefix(&server.url()).unwrap().to_owned();
    assert!(
        named.starts_with(&format!("{}?attempt=SM", proxy_relay::STATUS_CALLBACK_PATH)),
        "{named}"
    );
    let callback = |message_sid: &str, status: &str| {
        proxy_optout_twilio::Form::from_pairs([
            ("MessageSid", message_sid.to_owned()),
            ("MessageStatus", status.to_owned()),
            ("AccountSid", ACCOUNT_SID.to_owned()),
            ("From", sent[0].from.clone()),
            ("To", sent[0].to.clone()),
        ])
    };
    let post = |path: String, form: proxy_optout_twilio::Form<'static>| {
        let c = &c;
        async move {
            let a = c.post_form(&path, &form, None).await.unwrap();
            assert_eq!(a.status, 200, "{path}: {}", a.body);
        }
    };
    // 10,001 later Interactions (of another session): this one is now older than the
    // latest 10,000, where a callback that names no Interaction is looked for, so an
    // unnamed callback for it moves nothing, and a named one still finds it.
    server
        .app()
        .db()
        .execute(
            "INSERT INTO proxy_interactions (sid, session_sid, service_sid, type, date_created, date_updated)
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10001)
             SELECT 'KIpad' || i, 'KCpad', 'KSpad', 'message', 0, 0 FROM n",
        )
        .await
        .unwrap();
    post(
        proxy_relay::STATUS_CALLBACK_PATH.to_owned(),
        callback(&message_sid, "sent"),
    )
    .await;
    assert_eq!(legs().await[0].1, "queued");
    // The URL names this Interaction; a callback for another message SID under that name
    // moves nothing (a name is checked against the leg it names).
    post(
        named.clone(),
        callback("SM00000000000000000000000000000099", "delivered"),
    )
    .await;
    assert_eq!(legs().await[0].1, "queued");
    for (status, expected) in [
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("sent", "delivered"),
        ("queued", "delivered"),
    ] {
        post(named.clone(), callback(&message_sid, status)).await;
        assert_eq!(legs().await[0].1, expected, "after {status}");
    }

    // A callback for a send made before the URL carried a name is matched by its message
    // SID among the latest Interactions.
    c.message("+15551500002", &nums[1], "see you")
        .await
        .unwrap();
    let (second, _) = legs()
        .await
        .into_iter()
        .find(|(m, _)| *m != message_sid)
        .unwrap();
    post(
        proxy_relay::STATUS_CALLBACK_PATH.to_owned(),
        callback(&second, "delivered"),
    )
    .await;
    assert!(legs()
        .await
        .contains(&(second.clone(), "delivered".to_owned())));

    // A MessageInteraction's send names the MessageInteraction itself.
    let (_, parts) = api
        .get(&format!("Services/{s}/Sessions/{sid}/Participants"))
        .await;
    let participant = parts["participants"][0]["sid"].as_str().unwrap();
    let mi = api
        .created(
            &format!("Services/{s}/Sessions/{sid}/Participants/{participant}/MessageInteractions"),
            &[("Body", "your driver is here")],
        )
        .await;
    let mi_sid = mi["sid"].as_str().unwrap();
    let mi_message = mi["outbound_resource_sid"].as_str().unwrap().to_owned();
    let sent = fake.sent();
    let url = sent.last().unwrap().status_callback.clone().unwrap();
    assert!(url.ends_with(&format!("?attempt={mi_sid}")), "{url}");
    post(
        url.strip_prefix(&server.url()).unwrap().to_owned(),
        callback(&mi_message, "delivered"),
    )
    .await;
    assert!(legs().await.contains(&(mi_message, "delivered".to_owned())));
    server.shutdown().await.unwrap();
}
