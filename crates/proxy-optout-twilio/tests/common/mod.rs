//! Invariant checks over raw bytes, shared by the fuzz targets (`fuzz/fuzz_targets/twilio_*`)
//! and `tests/fuzz_checks.rs` (committed seeds and proptest inputs, on stable).

#![allow(dead_code)]

use proxy_optout_twilio::{
    sign, signed_string, ConversationsError, ConversationsEvent, Form, FormError, InboundMessage,
    SignatureError, Validator, MAX_FORM_BYTES,
};

/// The form parser never panics; what it accepts re-encodes to a body that parses to the same
/// pairs; its errors point inside the body.
pub fn form(data: &[u8]) {
    match Form::parse(data) {
        Ok(form) => {
            let again = form.encode();
            let reparsed = Form::parse(again.as_bytes()).expect("our own encoding parses");
            let a: Vec<_> = form.pairs().collect();
            let b: Vec<_> = reparsed.pairs().collect();
            assert_eq!(a, b, "round trip");
            // Everything the webhook reader does with it is total.
            if let Ok(m) = InboundMessage::from_form(&form) {
                let inbound = m.inbound();
                assert_eq!(inbound.from(), form.get("From").unwrap_or_default());
                let _ = inbound.validate();
            }
        }
        Err(FormError::TooLarge { len, max }) => {
            assert_eq!((len, max), (data.len(), MAX_FORM_BYTES));
        }
        Err(FormError::InvalidPercent { offset }) => {
            assert_eq!(data.get(offset), Some(&b'%'));
        }
        Err(FormError::InvalidUtf8 { offset }) => assert!(offset <= data.len()),
        Err(e) => panic!("unexpected {e}"),
    }
}

/// The validator never panics on any URL, header or body; a request we sign validates; the
/// same request with one byte of the body changed does not, unless the change leaves the signed
/// string the same (parameters are sorted and identical pairs de-duplicated, as Twilio's
/// helpers do); another token never validates.
pub fn validate(data: &[u8]) {
    let (split, rest) = match data.split_first() {
        Some((s, r)) => (usize::from(*s), r),
        None => return,
    };
    let cut = split.min(rest.len());
    let (url_bytes, body) = rest.split_at(cut);
    let url = format!(
        "https://relay.example/{}",
        String::from_utf8_lossy(url_bytes)
    );
    let v = Validator::new("fuzz-token");
    // Arbitrary headers never panic.
    if let Ok(form) = Form::parse(body) {
        let header = String::from_utf8_lossy(body);
        let _ = v.validate_form(&url, Some(&header), &form);
        let _ = v.validate_with_settings(&url, Some(&header), Some(&header), &form);
        let _ = v.validate_json(&url, Some(&header), body);
        let sig = sign("fuzz-token", &url, &form);
        assert_eq!(v.validate_form(&url, Some(&sig), &form), Ok(()), "{url}");
        // Any other token is refused.
        let wrong = sign("fuzz-token2", &url, &form);
        assert_eq!(
            v.validate_form(&url, Some(&wrong), &form),
            Err(SignatureError::Mismatch)
        );
        // A changed body that still parses to different pairs is refused.
        if let Some((i, b)) = body
            .iter()
            .enumerate()
            .find(|(_, b)| b.is_ascii_alphanumeric())
        {
            let mut tampered = body.to_vec();
            tampered[i] = if *b == b'z' { b'y' } else { b'z' };
            if let Ok(t) = Form::parse(&tampered) {
                // Order and repeats of identical pairs are not signed (the helpers sort and
                // de-duplicate), so only a change to what is signed must be refused.
                let differs = signed_string(&url, &t) != signed_string(&url, &form);
                if differs {
                    assert!(v.validate_form(&url, Some(&sig), &t).is_err());
                }
            }
        }
    }
}

/// The Conversations reader never panics; what it reads is what the form holds (field for
/// field); an error names a parameter the event needs, which is indeed absent or unreadable;
/// extra parameters Twilio may add change nothing.
pub fn conversations(data: &[u8]) {
    let Ok(form) = Form::parse(data) else {
        return;
    };
    let read = ConversationsEvent::from_form(&form);
    match &read {
        Ok(ConversationsEvent::MessageAdd(m)) => {
            assert_eq!(form.get("EventType"), Some("onMessageAdd"));
            assert_eq!(Some(m.conversation_sid), form.get("ConversationSid"));
            assert_eq!(Some(m.author), form.get("Author"));
            assert_eq!(m.body, form.get("Body").unwrap_or(""));
        }
        Ok(ConversationsEvent::DeliveryUpdated(d)) => {
            assert_eq!(Some(d.participant_sid), form.get("ParticipantSid"));
            assert_eq!(
                d.is_unsubscribed(),
                d.status.is_failure() && form.get("ErrorCode") == Some("21610")
            );
        }
        Ok(ConversationsEvent::ParticipantAdded(p) | ConversationsEvent::ParticipantRemoved(p)) => {
            assert_eq!(
                p.binding.map(|b| b.address),
                form.get("MessagingBinding.Address")
                    .filter(|a| !a.is_empty())
            );
        }
        Ok(_) => {}
        Err(ConversationsError::Missing { field }) => assert!(form.get(field).is_none(), "{field}"),
        Err(ConversationsError::Invalid { field, value, .. }) => {
            assert_eq!(form.get(field), Some(value.as_str()));
        }
        Err(e) => panic!("unexpected {e}"),
    }
    // An extra parameter (Twilio adds them without notice) reads the same.
    let mut pairs: Vec<(String, String)> = form
        .pairs()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    pairs.push(("SomethingNew".into(), "x".into()));
    let wider = Form::from_pairs(pairs);
    assert_eq!(ConversationsEvent::from_form(&wider), read);
}
