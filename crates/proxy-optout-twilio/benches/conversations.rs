//! `cargo bench -p proxy-optout-twilio --bench conversations`
//!
//! One `onMessageAdd` pre-event webhook, end to end the way the adapter answers it: parse
//! the raw body, check the signature, read the event, classify the body with the
//! participant's binding as the route (the relay's steps, the ledger answered from memory),
//! and render the answer. `ours` beside `naive`, the same job written the straightforward way
//! (a `BTreeMap` of decoded parameters, a concatenated `String` HMAC-ed and base64-ed, an
//! upper-cased body looked up in a keyword list). Both must reject the STOP and publish an
//! ordinary message inside the timed loop. Conversations waits 5 seconds for the answer.

mod naive;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hmac::{Hmac, Mac};
use proxy_optout::{Answer, OptState, RelayCore, Step, StopFilterFlag, StopFiltering};
use proxy_optout_twilio::{
    answer_for, sign, Binding, BindingKind, ConversationRoute, ConversationsEvent, Form, Validator,
};
use sha1::Sha1;

const URL: &str = "https://masking.example.com/conversations/pre";
const TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn webhook(body: &str) -> String {
    Form::from_pairs([
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("Attributes", "{}"),
        ("Author", "+16505551111"),
        ("Body", body),
        ("ChatServiceSid", "IS0123456789abcdef0123456789abcdef"),
        ("ConversationSid", "CH0123456789abcdef0123456789abcdef"),
        ("EventType", "onMessageAdd"),
        ("ParticipantSid", "MB0123456789abcdef0123456789abcdef"),
        ("RetryCount", "0"),
        ("Source", "SMS"),
    ])
    .encode()
}

const BINDING: Binding<'static> = Binding {
    address: "+16505551111",
    proxy_address: Some("+15550000100"),
    projected_address: None,
    kind: Some(BindingKind::Sms),
};

/// The straightforward handler: true when the message is published.
fn naive(body: &str, signature: &str) -> Option<bool> {
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for pair in body.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = naive::decode;
        params.insert(decode(k), decode(v));
    }
    let mut data = URL.to_string();
    for (k, v) in &params {
        data = data + k + v;
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(TOKEN.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    if STANDARD.encode(mac.finalize().into_bytes()) != signature {
        return None;
    }
    if params.get("EventType")? != "onMessageAdd" || params.get("Source")? != "SMS" {
        return Some(true);
    }
    let dropped = [
        "STOP",
        "REVOKE",
        "OPTOUT",
        "UNSUBSCRIBE",
        "END",
        "CANCEL",
        "QUIT",
        "STOPALL",
        "ARRETT",
        "ARRET",
        "ARRETE",
        "UNSTOP",
    ];
    let word = params.get("Body")?.trim().to_uppercase();
    Some(!dropped.contains(&word.as_str()))
}

fn benches(c: &mut Criterion) {
    let validator = Validator::new(TOKEN);
    let core = RelayCore::new();
    let ours = |raw: &str, signature: &str| -> u16 {
        let form = Form::parse(black_box(raw.as_bytes())).unwrap();
        validator
            .validate_form(URL, Some(signature), &form)
            .unwrap();
        let ConversationsEvent::MessageAdd(m) = ConversationsEvent::from_form(&form).unwrap()
        else {
            unreachable!()
        };
        let route = ConversationRoute::new(m.conversation_sid, &BINDING).unwrap();
        let inbound = route.inbound(&m);
        let mut steps = core
            .steps::<()>(&inbound, Some(route.route()), StopFilterFlag::Ignore)
            .unwrap();
        while let Some(step) = steps.next() {
            steps.answer(match step {
                Step::Filtering(_) => Answer::Filtering(StopFiltering::On),
                Step::State(_) => Answer::State(Ok(OptState::OptedIn)),
                Step::Intercept(..) => Answer::Intercept(proxy_optout::Intercept::Allow),
                Step::Record(..) => Answer::Recorded(Ok(())),
                _ => Answer::Unavailable,
            });
        }
        let outcome = steps.finish().unwrap();
        let answer = answer_for(&outcome, 403);
        black_box(answer.body());
        answer.status()
    };
    let (stop, hello) = (webhook("STOP"), webhook("I'm by the blue door, 2 minutes"));
    let sig = |raw: &str| sign(TOKEN, URL, &Form::parse(raw.as_bytes()).unwrap());
    let (stop_sig, hello_sig) = (sig(&stop), sig(&hello));
    assert_eq!(
        (ours(&stop, &stop_sig), ours(&hello, &hello_sig)),
        (403, 200)
    );
    assert_eq!(
        (naive(&stop, &stop_sig), naive(&hello, &hello_sig)),
        (Some(false), Some(true))
    );

    let mut g = c.benchmark_group("conversations");
    g.throughput(Throughput::Bytes(hello.len() as u64));
    g.bench_function("ours", |b| {
        b.iter(|| assert_eq!(ours(&hello, &hello_sig), 200))
    });
    g.bench_function("naive", |b| {
        b.iter(|| assert_eq!(naive(black_box(&hello), &hello_sig), Some(true)))
    });
    g.bench_function("ours_stop", |b| {
        b.iter(|| assert_eq!(ours(&stop, &stop_sig), 403))
    });
    g.bench_function("naive_stop", |b| {
        b.iter(|| assert_eq!(naive(black_box(&stop), &stop_sig), Some(false)))
    });
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
