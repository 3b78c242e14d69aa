//! A fake Twilio REST API on loopback (the one part of the system a test cannot reach), shared
//! by the relay's tests and, through `#[path]`, by `proxy-optout-host`'s.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use proxy_optout_twilio::Form;

use super::rfc2822;

pub const AUTH_TOKEN: &str = "test-auth-token-12345";
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const API_KEY: &str = "SK0123456789abcdef0123456789abcdef";
pub const API_SECRET: &str = "api-key-secret";

/// One create call the fake received and accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub sid: String,
    pub from: String,
    pub to: String,
    pub body: String,
    pub status_callback: Option<String>,
    pub created: std::time::SystemTime,
}

/// What the fake does to one create call, as a real network and a real Twilio can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 503 before accepting anything.
    FailBefore,
    /// Accept (the message exists), then answer only after the client gave up.
    AcceptThenTimeout,
    /// Accept, then cut the answer short (the connection dies mid-response).
    ResetAfterAccept,
}

#[derive(Default)]
pub struct FakeState {
    pub sent: Vec<Sent>,
    pub calls: usize,
    pub lookups: usize,
    pub refuse: Vec<String>,
    pub fail_next: usize,
    pub delay: Duration,
    /// Faults for the next create calls, in order.
    pub faults: std::collections::VecDeque<Fault>,
    /// While set, every create waits here until the test releases it.
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
    /// While set, an accepted create's answer waits here until the test releases it.
    pub answer_gate: Option<Arc<tokio::sync::Semaphore>>,
}

/// Twilio's Messages resource, as far as the relay uses it: Basic auth, form fields, 201 with
/// a sid, 400 with 21610 for a chosen recipient, 500 on demand, the faults above, and the
/// list (`GET`, filtered by `To` and `From`, newest first). Like Twilio, it does not
/// deduplicate: every accepted create is a text.
#[derive(Clone)]
pub struct FakeTwilio {
    pub url: String,
    pub state: Arc<Mutex<FakeState>>,
    /// How many creates have arrived (before the gate), for tests that wait on it.
    pub arrived: tokio::sync::watch::Receiver<usize>,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<FakeState>>,
    arrived: Arc<tokio::sync::watch::Sender<usize>>,
}

impl FakeTwilio {
    pub async fn start() -> FakeTwilio {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let (tx, arrived) = tokio::sync::watch::channel(0);
        let shared = Shared {
            state: state.clone(),
            arrived: Arc::new(tx),
        };
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Messages.json",
                post(create).get(list),
            )
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeTwilio {
            url,
            state,
            arrived,
        }
    }

    /// Holds every create at the door until [`release`](FakeTwilio::release).
    pub fn hold(&self) {
        self.state.lock().unwrap().gate = Some(Arc::new(tokio::sync::Semaphore::new(0)));
    }

    /// Lets held and later creates through.
    pub fn release(&self) {
        if let Some(gate) = self.state.lock().unwrap().gate.take() {
            gate.add_permits(1 << 20);
        }
    }

    /// Turns away every create held at the door, creating nothing.
    pub fn drop_held(&self) {
        if let Some(gate) = self.state.lock().unwrap().gate.take() {
            gate.close();
        }
    }

    /// Waits until `n` creates were accepted.
    pub async fn wait_sent(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.sent().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{n} creates within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Holds every accepted create's answer until [`release_answers`](FakeTwilio::release_answers).
    pub fn hold_answers(&self) {
        self.state.lock().unwrap().answer_gate = Some(Arc::new(tokio::sync::Semaphore::new(0)));
    }

    pub fn release_answers(&self) {
        if let Some(gate) = self.state.lock().unwrap().answer_gate.take() {
            gate.add_permits(1 << 20);
        }
    }

    /// Queues faults for the next create calls.
    pub fn faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    /// How many times each (from, to, body) was accepted.
    pub fn creates_of(&self, from: &str, to: &str, body: &str) -> usize {
        self.sent()
            .iter()
            .filter(|s| s.from == from && s.to == to && s.body == body)
            .count()
    }

    /// Waits until `n` creates have arrived (held or not).
    pub async fn wait_arrived(&self, n: usize) {
        let mut rx = self.arrived.clone();
        tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|c| *c >= n))
            .await
            .expect("the create arrived within 30 s")
            .unwrap();
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.state.lock().unwrap().sent.clone()
    }

    pub fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }

    pub fn refuse(&self, to: &str) {
        self.state.lock().unwrap().refuse.push(to.to_owned());
    }

    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    pub fn delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }
}

fn authorized(account: &str, headers: &HeaderMap) -> bool {
    // The account's auth token, or an API key and its secret.
    let accepted = [(ACCOUNT_SID, AUTH_TOKEN), (API_KEY, API_SECRET)].map(|(user, pass)| {
        format!(
            "Basic {}",
            base64_encode(format!("{user}:{pass}").as_bytes())
        )
    });
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    account == ACCOUNT_SID && accepted.iter().any(|a| Some(a.as_str()) == given)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        r#"{"code": 20003, "status": 401}"#,
    )
        .into_response()
}

async fn create(
    State(shared): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&account, &headers) {
        return unauthorized();
    }
    let state = shared.state;
    shared.arrived.send_modify(|n| *n += 1);
    let (delay, gate) = {
        let s = state.lock().unwrap();
        (s.delay, s.gate.clone())
    };
    if let Some(gate) = gate {
        if gate.acquire().await.is_err() {
            // Dropped at the door: nothing was created.
            return (StatusCode::SERVICE_UNAVAILABLE, "dropped").into_response();
        }
    }
    tokio::time::sleep(delay).await;
    let form = Form::parse(&body).unwrap();
    let (fault, sid, answer_gate) = {
        let mut s = state.lock().unwrap();
        s.calls += 1;
        let fault = s.faults.pop_front();
        if fault == Some(Fault::FailBefore) {
            return (StatusCode::SERVICE_UNAVAILABLE, "upstream trouble").into_response();
        }
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, "upstream trouble").into_response();
        }
        let to = form.get("To").unwrap_or_default().to_owned();
        if s.refuse.contains(&to) {
            return (
                StatusCode::BAD_REQUEST,
                r#"{"code": 21610, "message": "Attempt to send to unsubscribed recipient", "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}"#,
            )
                .into_response();
        }
        let sid = format!("SM{:032x}", s.sent.len() + 1);
        s.sent.push(Sent {
            sid: sid.clone(),
            from: form.get("From").unwrap_or_default().to_owned(),
            to,
            body: form.get("Body").unwrap_or_default().to_owned(),
            status_callback: form.get("StatusCallback").map(str::to_owned),
            created: std::time::SystemTime::now(),
        });
        (fault, sid, s.answer_gate.clone())
    };
    if let Some(gate) = answer_gate {
        let _ = gate.acquire().await;
    }
    let body = format!(r#"{{"sid": "{sid}", "status": "queued"}}"#);
    match fault {
        Some(Fault::AcceptThenTimeout) => {
            // Longer than any client timeout the tests configure.
            tokio::time::sleep(Duration::from_secs(10)).await;
            (StatusCode::CREATED, body).into_response()
        }
        Some(Fault::ResetAfterAccept) => {
            let broken = futures_util_stream_error();
            (StatusCode::CREATED, axum::body::Body::from_stream(broken)).into_response()
        }
        _ => (StatusCode::CREATED, body).into_response(),
    }
}

/// A body that fails at once: hyper then cuts the connection after the status line.
fn futures_util_stream_error(
) -> impl futures_core::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Send {
    struct Broken;
    impl futures_core::Stream for Broken {
        type Item = Result<axum::body::Bytes, std::io::Error>;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(Some(Err(std::io::Error::other("reset"))))
        }
    }
    Broken
}

#[derive(serde::Deserialize)]
struct ListQuery {
    #[serde(rename = "To")]
    to: Option<String>,
    #[serde(rename = "From")]
    from: Option<String>,
}

async fn list(
    State(shared): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Response {
    if !authorized(&account, &headers) {
        return unauthorized();
    }
    let mut s = shared.state.lock().unwrap();
    s.lookups += 1;
    let messages: Vec<serde_json::Value> = s
        .sent
        .iter()
        .rev()
        .filter(|m| q.to.as_ref().map_or(true, |t| *t == m.to))
        .filter(|m| q.from.as_ref().map_or(true, |f| *f == m.from))
        .take(50)
        .map(|m| {
            serde_json::json!({
                "sid": m.sid, "to": m.to, "from": m.from, "body": m.body,
                "date_created": rfc2822::format(m.created), "status": "queued",
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "messages": messages, "page": 0 })).into_response()
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
