//! The fuzz targets' invariant checks on stable: committed seeds and proptest inputs.

mod common;

use proptest::prelude::*;
use proxy_optout_twilio::Form;

const SEEDS: &[&[u8]] = &[
    b"",
    b"From=%2B15551110001&To=%2B15550000100&Body=STOP&MessageSid=SM1&NumMedia=0",
    b"\x10abc/def?x=1From=whatsapp%3A%2B1&To=whatsapp%3A%2B2&Body=%F0%9F%9B%91",
    b"a=%ZZ",
    b"a=%e9",
    b"&&&=&=%",
    b"Body=+Stop%0A&FromCity=&OptOutType=STOP",
    b"\x05:443?bodySHA256=abcdefBody=x",
];

/// Found by the fuzzer: a one-byte change that turns a pair into a duplicate of another and a
/// duplicate into a new pair leaves the signed string unchanged; the check now compares what
/// is signed.
#[test]
fn regression_dedup_reorder() {
    let data = include_bytes!("../../../fuzz/seeds/twilio/regression-dedup-reorder");
    common::form(data);
    common::validate(data);
}

#[test]
fn seeds() {
    for seed in SEEDS {
        common::form(seed);
        common::validate(seed);
        common::conversations(seed);
    }
    for seed in CONVERSATIONS_SEEDS {
        common::conversations(seed);
    }
}

const CONVERSATIONS_SEEDS: &[&[u8]] = &[
    b"EventType=onMessageAdd&ConversationSid=CH1&Author=%2B1A&Body=STOP&Source=SMS&RetryCount=0",
    b"EventType=onMessageAdd&ConversationSid=CH1&Body=x",
    b"EventType=onMessageAdd&ConversationSid=CH1&Author=a&RetryCount=many",
    b"EventType=onConversationAdd&MessageBody=STOP&MessagingBinding.Address=%2B1A",
    b"EventType=onParticipantAdded&ConversationSid=CH1&ParticipantSid=MB1&MessagingBinding.Address=",
    b"EventType=onDeliveryUpdated&ConversationSid=CH1&MessageSid=IM1&ParticipantSid=MB1&Status=FAILED&ErrorCode=21610",
    b"EventType=onDeliveryUpdated&ConversationSid=CH1&MessageSid=IM1&ParticipantSid=MB1&Status=failed&ErrorCode=x",
    b"EventType=onSomethingElse",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
        common::form(&data);
        common::validate(&data);
        common::conversations(&data);
    }

    #[test]
    fn conversations_shaped_input(
        event in prop::sample::select(vec!["onMessageAdd", "onConversationAdd", "onParticipantAdded",
            "onParticipantRemoved", "onDeliveryUpdated", "onOther"]),
        fields in prop::collection::vec((prop::sample::select(vec!["ConversationSid", "Author", "Body",
            "ParticipantSid", "Source", "RetryCount", "Media", "MessageBody", "MessagingBinding.Address",
            "MessagingBinding.ProxyAddress", "MessagingBinding.Type", "MessageSid", "Status", "ErrorCode",
            "Identity"]), "[ -~]{0,12}"), 0..10),
    ) {
        let mut pairs = vec![("EventType".to_owned(), event.to_owned())];
        pairs.extend(fields.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let body = Form::from_pairs(pairs).encode();
        common::conversations(body.as_bytes());
    }

    #[test]
    fn form_shaped_input(
        pairs in prop::collection::vec(("[A-Za-z%+&=0-9]{0,8}", "[ -~é🛑%+&=]{0,16}"), 0..12),
    ) {
        let body = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        common::form(body.as_bytes());
        let mut data = vec![7u8];
        data.extend_from_slice(body.as_bytes());
        common::validate(&data);
    }
}
