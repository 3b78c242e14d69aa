//! Property tests: any change to one parameter name or value, the URL, the token, or a dropped
//! parameter is rejected; TwiML renders every body as text an XML parser reads back exactly.

use proptest::prelude::*;
use proxy_optout::{Inbound, MemoryStore, Participant, Relay};
use proxy_optout_twilio::{render, sign, Form, ForwardVia, SignatureError, Validator};

fn params() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("[A-Za-z]{1,10}", "[ -~]{0,12}|\\PC{0,6}"), 1..20)
}

fn url() -> impl Strategy<Value = String> {
    (
        "(https|http)",
        "[a-z]{1,8}",
        "(:[0-9]{2,4})?",
        "/[a-z/]{0,10}",
        "(\\?[a-z]=[0-9])?",
    )
        .prop_map(|(s, h, p, path, q)| format!("{s}://{h}.example{p}{path}{q}"))
}

fn form(pairs: &[(String, String)]) -> Form<'static> {
    Form::from_pairs(pairs.iter().cloned())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn genuine_requests_pass(pairs in params(), url in url()) {
        let f = form(&pairs);
        let sig = sign("tok", &url, &f);
        prop_assert_eq!(Validator::new("tok").validate_form(&url, Some(&sig), &f), Ok(()));
        // The same request encoded and parsed back (as the server receives it) passes too.
        let encoded = f.encode();
        let parsed = Form::parse(encoded.as_bytes()).unwrap();
        prop_assert_eq!(Validator::new("tok").validate_form(&url, Some(&sig), &parsed), Ok(()));
    }

    #[test]
    fn a_changed_value_is_rejected(pairs in params(), url in url(), which in any::<prop::sample::Index>(), extra in "[a-z0-9]{1,3}") {
        let f = form(&pairs);
        let sig = sign("tok", &url, &f);
        let mut changed = pairs.clone();
        let i = which.index(changed.len());
        changed[i].1.push_str(&extra);
        // Skip the rare case where the change recreates a duplicate that de-duplication hides.
        prop_assume!(!pairs.iter().any(|p| *p == changed[i]));
        prop_assert_eq!(
            Validator::new("tok").validate_form(&url, Some(&sig), &form(&changed)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_changed_name_is_rejected(pairs in params(), url in url(), which in any::<prop::sample::Index>()) {
        let f = form(&pairs);
        let sig = sign("tok", &url, &f);
        let mut changed = pairs.clone();
        let i = which.index(changed.len());
        changed[i].0.push('X');
        prop_assume!(!pairs.iter().any(|p| *p == changed[i]));
        prop_assert!(Validator::new("tok").validate_form(&url, Some(&sig), &form(&changed)).is_err());
    }

    #[test]
    fn a_dropped_parameter_is_rejected(pairs in params(), url in url(), which in any::<prop::sample::Index>()) {
        let f = form(&pairs);
        let sig = sign("tok", &url, &f);
        let mut dropped = pairs.clone();
        let gone = dropped.remove(which.index(pairs.len()));
        prop_assume!(!dropped.contains(&gone)); // a duplicate's removal is invisible by design
        prop_assert!(Validator::new("tok").validate_form(&url, Some(&sig), &form(&dropped)).is_err());
    }

    #[test]
    fn another_url_or_token_is_rejected(pairs in params(), url in url(), other in url(), token in "[a-z]{1,8}") {
        let f = form(&pairs);
        let sig = sign("tok", &url, &f);
        let same_but_port = |a: &str, b: &str| {
            let strip = |u: &str| {
                let (scheme, rest) = u.split_once("://").unwrap();
                let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
                let host = rest[..host_end].split(':').next().unwrap().to_owned();
                (scheme.to_owned(), host, rest[host_end..].to_owned())
            };
            strip(a) == strip(b)
        };
        prop_assume!(!same_but_port(&url, &other));
        prop_assert!(Validator::new("tok").validate_form(&other, Some(&sig), &f).is_err());
        prop_assume!(token != "tok");
        prop_assert!(Validator::new(&token).validate_form(&url, Some(&sig), &f).is_err());
    }

    #[test]
    fn twiml_round_trips_every_body(body in "\\PC{0,40}|[\\x00-\\x7F]{0,40}|.*\\]\\]>.*") {
        let mut relay = Relay::new(MemoryStore::new());
        relay
            .sessions_mut()
            .open("r", Participant::new("+1A", "+1P").unwrap(), Participant::new("+1B \"&<\"", "+1Q").unwrap())
            .unwrap();
        let out = relay.handle(&Inbound::sms("+1A", "+1P", &body)).unwrap();
        prop_assume!(out.forwarded().is_some());
        let xml = render(&out, ForwardVia::Twiml);
        let parsed = parse_twiml(&xml);
        // What XML can carry comes back exactly; what XML 1.0 forbids became U+FFFD.
        let expected: String = body
            .chars()
            .map(|c| if (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}' { '\u{FFFD}' } else { c })
            .collect();
        prop_assert_eq!(parsed, vec![(Some("+1B \"&<\"".to_owned()), Some("+1Q".to_owned()), expected)]);
    }
}

/// The `<Message>` elements of a TwiML document: (to, from, text), by a real XML parser.
fn parse_twiml(xml: &str) -> Vec<(Option<String>, Option<String>, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut current: Option<(Option<String>, Option<String>, String)> = None;
    let mut root = None;
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) if root.is_none() => {
                root = Some(String::from_utf8(e.name().as_ref().to_vec()).unwrap());
            }
            Event::Start(e) if e.name().as_ref() == b"Message" => {
                let attr = |n: &[u8]| {
                    e.try_get_attribute(n)
                        .unwrap()
                        .map(|a| a.unescape_value().unwrap().into_owned())
                };
                current = Some((attr(b"to"), attr(b"from"), String::new()));
            }
            Event::Text(t) => {
                if let Some(c) = current.as_mut() {
                    c.2.push_str(&t.unescape().unwrap());
                }
            }
            Event::End(e) if e.name().as_ref() == b"Message" => out.extend(current.take()),
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(
        root.as_deref(),
        Some("Response"),
        "the root must be Response (12102)"
    );
    out
}

#[test]
fn empty_and_reply_only_responses_parse() {
    let relay = Relay::new(MemoryStore::new());
    let out = relay.handle(&Inbound::sms("+1A", "+1P", "hello")).unwrap();
    assert!(parse_twiml(&render(&out, ForwardVia::Twiml)).is_empty());
    let out = relay.handle(&Inbound::sms("+1A", "+1P", "STOP")).unwrap();
    let parsed = parse_twiml(&render(&out, ForwardVia::Twiml));
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].0, None, "the reply goes back to the sender");
    assert!(parsed[0]
        .2
        .starts_with("You have successfully been unsubscribed"));
}
