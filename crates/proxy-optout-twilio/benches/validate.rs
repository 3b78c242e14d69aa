//! `cargo bench -p proxy-optout-twilio --bench validate`
//!
//! Validating a realistic 20-parameter inbound webhook (parse the raw body, check the
//! signature): `ours` beside `naive`, a validator written the straightforward way (decode into
//! a `BTreeMap`, concatenate a `String`, HMAC it, base64 it, compare the strings). Both must
//! accept the genuine request and reject a tampered one inside the timed loop.

mod naive;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hmac::{Hmac, Mac};
use proxy_optout_twilio::{sign, Form, Validator};
use sha1::Sha1;

const URL: &str = "https://relay.example.com/twilio/sms?tenant=acme";
const TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn webhook() -> String {
    let pairs = [
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", "SM4f1a2b3c4d5e6f708192a3b4c5d6e7f8"),
        ("NumMedia", "0"),
        ("ToCity", "SAN FRANCISCO"),
        ("FromZip", "94105"),
        ("SmsSid", "SM4f1a2b3c4d5e6f708192a3b4c5d6e7f8"),
        ("FromState", "CA"),
        ("SmsStatus", "received"),
        ("FromCity", "SAN FRANCISCO"),
        (
            "Body",
            "Hi! I'm at the blue door on 5th street, can you come down? Thanks :)",
        ),
        ("FromCountry", "US"),
        ("To", "+14155550100"),
        ("MessagingServiceSid", "MG0123456789abcdef0123456789abcdef"),
        ("ToZip", "94107"),
        ("NumSegments", "1"),
        ("MessageSid", "SM4f1a2b3c4d5e6f708192a3b4c5d6e7f8"),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", "+14155550111"),
        ("ApiVersion", "2010-04-01"),
    ];
    Form::from_pairs(pairs).encode()
}

/// The straightforward validator.
fn naive(url: &str, body: &str, signature: &str) -> bool {
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in body.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = naive::decode;
        params.entry(decode(k)).or_default().push(decode(v));
    }
    let mut data = url.to_string();
    for (k, mut vs) in params {
        vs.sort();
        vs.dedup();
        for v in vs {
            data = data + &k + &v;
        }
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(TOKEN.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes()) == signature
}

fn benches(c: &mut Criterion) {
    let body = webhook();
    let tampered = body.replace("blue", "blew");
    let signature = sign(TOKEN, URL, &Form::parse(body.as_bytes()).unwrap());
    let validator = Validator::new(TOKEN);
    let ours = |b: &str| {
        let form = Form::parse(black_box(b.as_bytes())).unwrap();
        validator
            .validate_form(URL, Some(&signature), &form)
            .is_ok()
    };
    assert!(ours(&body) && !ours(&tampered));
    assert!(naive(URL, &body, &signature) && !naive(URL, &tampered, &signature));

    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("ours", |b| b.iter(|| assert!(ours(&body))));
    g.bench_function("naive", |b| {
        b.iter(|| assert!(naive(URL, black_box(&body), &signature)))
    });
    g.bench_function("ours_tampered", |b| b.iter(|| assert!(!ours(&tampered))));
    g.finish();
}

criterion_group! {
    name = group;
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(group);
