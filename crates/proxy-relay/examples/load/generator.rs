//! A bounded loopback load generator and the floor server it compares against. Used by the
//! load example (the figures in the README) and, with small counts, by the tests, which
//! include this file (`#[path]`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use proxy_optout_twilio::{sign, Validator, CONTENT_TYPE, EMPTY, MAX_FORM_BYTES};

use proxy_optout_host::WebhookRequest;
use proxy_relay::WEBHOOK_PATH;

struct Floor {
    validator: Validator,
    public_url: String,
}

/// The floor: the same stack (axum, tokio, the same signature check and form parser) that
/// only validates, parses and answers empty TwiML. What the relay costs is the difference.
///
pub fn floor_router(auth_token: &str, public_url: &str) -> Router {
    let state = Arc::new(Floor {
        validator: Validator::new(auth_token),
        public_url: public_url.trim_end_matches('/').to_owned(),
    });
    Router::new()
        .route(WEBHOOK_PATH, post(floor_webhook))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(state)
}

async fn floor_webhook(
    State(floor): State<Arc<Floor>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let request = headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
        .fold(WebhookRequest::new("POST", target, &body), |r, (n, v)| {
            r.header(n, v)
        });
    match request.authenticate(&floor.validator, &floor.public_url) {
        Ok(_) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], EMPTY).into_response(),
        Err(r) => r.into_response(),
    }
}

/// One prepared webhook: the encoded form and its signature, made before the clock starts.
///
#[derive(Clone, Debug)]
pub struct Prepared {
    body: Bytes,
    signature: String,
}

/// Signs `count` messages cycling over `(from, to)` pairs, with bodies from `bodies` in turn
/// (one body per pass over the pairs) and a fresh random `MessageSid` each, as Twilio's are:
/// numbered ones would go in at the right edge of the ledger's and the log's indexes and
/// understate what a message costs the database.
///
#[must_use]
pub fn prepare(
    public_url: &str,
    auth_token: &str,
    pairs: &[(String, String)],
    bodies: &[&str],
    count: usize,
) -> Vec<Prepared> {
    let url = format!("{}{WEBHOOK_PATH}", public_url.trim_end_matches('/'));
    (0..count)
        .map(|i| {
            let (from, to) = &pairs[i % pairs.len()];
            let body = bodies[(i / pairs.len()) % bodies.len()];
            let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
            let form = super::client::message_form(&sid, from, to, body);
            Prepared {
                signature: sign(auth_token, &url, &form),
                body: Bytes::from(form.encode()),
            }
        })
        .collect()
}

/// What a run measured.
///
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// Requests sent.
    pub requests: usize,
    /// Requests that did not get a 200.
    pub errors: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Slowest request.
    pub max: Duration,
}

impl Stats {
    /// Requests per second.
    ///
    #[must_use]
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn from(mut latencies: Vec<Duration>, errors: usize, elapsed: Duration) -> Stats {
        latencies.sort_unstable();
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or_default()
        };
        Stats {
            requests: latencies.len(),
            errors,
            elapsed,
            p50: at(0.50),
            p99: at(0.99),
            max: latencies.last().copied().unwrap_or_default(),
        }
    }
}

async fn post_one(client: &reqwest::Client, url: &str, p: &Prepared) -> bool {
    let sent = client
        .post(url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("x-twilio-signature", &p.signature)
        .body(p.body.clone())
        .send()
        .await;
    match sent {
        Ok(r) => {
            let ok = r.status().as_u16() == 200;
            ok && r.bytes().await.is_ok()
        }
        Err(_) => false,
    }
}

/// Sends every prepared request as fast as `concurrency` connections allow.
///
pub async fn closed_loop(base: &str, requests: Arc<Vec<Prepared>>, concurrency: usize) -> Stats {
    let url = format!("{}{WEBHOOK_PATH}", base.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, url, next, requests) =
            (client.clone(), url.clone(), next.clone(), requests.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = requests.get(i) else { break };
                let t = Instant::now();
                if !post_one(&client, &url, p).await {
                    errors += 1;
                }
                lat.push(t.elapsed());
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::with_capacity(requests.len()), 0);
    for t in tasks {
        if let Ok((lat, e)) = t.await {
            all.extend(lat);
            errors += e;
        }
    }
    Stats::from(all, errors, start.elapsed())
}

/// Sends the prepared requests at a steady `rate` per second, whether or not earlier ones
/// were answered; latency counts from each request's scheduled time, so a stall shows.
///
pub async fn open_loop(base: &str, requests: Arc<Vec<Prepared>>, rate: u32) -> Stats {
    let url = Arc::new(format!("{}{WEBHOOK_PATH}", base.trim_end_matches('/')));
    let client = reqwest::Client::new();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(requests.len());
    for i in 0..requests.len() {
        let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        let (client, url, requests) = (client.clone(), url.clone(), requests.clone());
        tasks.push(tokio::spawn(async move {
            let ok = post_one(&client, &url, &requests[i]).await;
            (due.elapsed(), ok)
        }));
    }
    let (mut all, mut errors) = (Vec::with_capacity(requests.len()), 0);
    for t in tasks {
        if let Ok((lat, ok)) = t.await {
            all.push(lat);
            errors += usize::from(!ok);
        }
    }
    Stats::from(all, errors, start.elapsed())
}
