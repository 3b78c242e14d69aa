//! The `serde` feature: stable lowercase names, the classify tool's field names for
//! `Decision`, and round trips for the value types.
#![cfg(feature = "serde")]

use proxy_optout::{
    classify, Action, Category, Channel, Inbound, LanguagePack, Level, Matching, MemoryStore,
    Message, Notice, OptState, Participant, Relay, RuleSet, StopFilterFlag, StopFiltering,
    Withheld,
};
use serde_json::{json, Value};

fn round_trip<T>(value: T, expected: Value)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let v = serde_json::to_value(&value).unwrap();
    assert_eq!(v, expected, "{value:?}");
    assert_eq!(serde_json::from_value::<T>(v).unwrap(), value);
}

#[test]
fn value_types_use_stable_names() {
    round_trip(Action::Drop, json!("drop"));
    round_trip(Category::OptOut, json!("opt_out"));
    round_trip(Channel::WhatsApp, json!("whatsapp"));
    round_trip(RuleSet::Proxy2020, json!("proxy-2020"));
    round_trip(Matching::Lenient, json!("lenient"));
    round_trip(LanguagePack::French, json!("french"));
    round_trip(Level::Warning, json!("warning"));
    round_trip(Notice::UnsubscribedRecipient, json!(21610));
    round_trip(OptState::OptedOut, json!("opted_out"));
    round_trip(StopFilterFlag::Respect, json!("respect"));
    round_trip(StopFiltering::Off, json!("off"));
    round_trip(Withheld::OutOfSession, json!("out_of_session"));
    assert!(serde_json::from_value::<Notice>(json!(30007)).is_err());
}

#[test]
fn decision_has_the_classify_tool_fields() {
    let v = serde_json::to_value(classify(&Message::sms("UNSTOP"))).unwrap();
    assert_eq!(
        v,
        json!({
            "action": "drop", "category": "opt_in", "keyword": "UNSTOP", "notice": 80901,
            "carrier": "opt_in", "callbacks": false, "opt_out_type": "START", "hint": null
        })
    );
    let v = serde_json::to_value(classify(&Message::sms("hello"))).unwrap();
    assert_eq!(v["category"], "none");
    assert_eq!(v["keyword"], Value::Null);
}

#[test]
fn outcome_serializes_for_logging() {
    let mut relay = Relay::new(MemoryStore::new());
    relay
        .sessions_mut()
        .open(
            "r",
            Participant::new("A", "P").unwrap(),
            Participant::new("B", "P").unwrap(),
        )
        .unwrap();
    let out = relay.handle(&Inbound::sms("A", "P", "STOP")).unwrap();
    let v = serde_json::to_value(&out).unwrap();
    assert_eq!(v["decision"]["action"], "drop");
    assert_eq!(v["session"], "r");
    assert_eq!(v["delivery"], json!({"withheld": "keyword_dropped"}));
    assert_eq!(v["ledger"]["state"], "opted_out");
    assert_eq!(
        v["ledger"],
        json!({"scope": "P", "participant": "A", "state": "opted_out"})
    );
    assert_eq!(v["message_id"], Value::Null);
    assert_eq!(v["reply"]["to"], "A");
    assert_eq!(v["notices"], json!([80901]));
    assert_eq!(v["status_callback"], false);
    let out = relay.handle(&Inbound::sms("B", "P", "hi")).unwrap();
    let v = serde_json::to_value(&out).unwrap();
    assert_eq!(v["delivery"]["refused"]["to"], "A");
    assert_eq!(v["notices"], json!([21610]));
}
