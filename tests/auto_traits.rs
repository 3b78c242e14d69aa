//! Every public type is `Send + Sync + Unpin + UnwindSafe + RefUnwindSafe`, so it can be
//! shared across threads and held across `catch_unwind`.

use std::panic::{RefUnwindSafe, UnwindSafe};

fn assert_auto<T: Send + Sync + Unpin + UnwindSafe + RefUnwindSafe>() {}

#[test]
fn public_types_are_send_sync_and_unwind_safe() {
    use proxy_optout::*;
    assert_auto::<Action>();
    assert_auto::<Category>();
    assert_auto::<Channel>();
    assert_auto::<Classifier>();
    assert_auto::<ClassifierBuilder>();
    assert_auto::<ConfigError>();
    assert_auto::<Decision>();
    assert_auto::<FixedPolicy>();
    assert_auto::<Intercept>();
    assert_auto::<Keyword>();
    assert_auto::<LanguagePack>();
    assert_auto::<Level>();
    assert_auto::<Matching>();
    assert_auto::<Message<'static>>();
    assert_auto::<Notice>();
    assert_auto::<ParseError>();
    assert_auto::<RevocationHint>();
    assert_auto::<RuleSet>();
    assert_auto::<StopFilterFlag>();
    assert_auto::<StopFiltering>();
    assert_auto::<TwilioProxy>();
    assert_auto::<Utf8Error>();
    assert_auto::<AutoReplies>();
    assert_auto::<Delivery>();
    assert_auto::<Inbound<'static>>();
    assert_auto::<LedgerChange>();
    assert_auto::<LedgerKey<'static>>();
    assert_auto::<LedgerScope>();
    assert_auto::<MemoryStore>();
    assert_auto::<OptState>();
    assert_auto::<Outbound>();
    assert_auto::<Outcome>();
    assert_auto::<OwnedLedgerKey>();
    assert_auto::<Participant>();
    assert_auto::<Relay<MemoryStore>>();
    assert_auto::<RelayError<std::convert::Infallible>>();
    assert_auto::<Route<'static>>();
    assert_auto::<SessionError>();
    assert_auto::<Sessions>();
    assert_auto::<Withheld>();
    assert_auto::<Answers>();
    assert_auto::<AsyncRelay<MemoryStore>>();
    assert_auto::<CarrierMode>();
    assert_auto::<Effect<'static>>();
    assert_auto::<Feedback<'static>>();
    assert_auto::<FeedbackError<std::convert::Infallible>>();
    assert_auto::<FeedbackOutcome<'static>>();
    assert_auto::<IdentifierError>();
    assert_auto::<InputError>();
    assert_auto::<Plan<'static>>();
    assert_auto::<RelayCore>();
    assert_auto::<Settings>();
    assert_auto::<SyncPolicy<TwilioProxy>>();
}

#[test]
fn the_async_drivers_futures_are_send() {
    use proxy_optout::*;
    fn send<F: std::future::Future + Send>(_: F) {}
    let relay = AsyncRelay::new(MemoryStore::new());
    let inbound = Inbound::sms("A", "P", "hi");
    send(relay.handle(&inbound, None));
    send(relay.feedback(&Feedback::Refused { from: "P", to: "A" }));
    let shared = std::sync::Arc::new(AsyncRelay::new(std::sync::Arc::new(MemoryStore::new())));
    send(async move {
        shared
            .handle(&Inbound::sms("A", "P", "hi"), None)
            .await
            .is_ok()
    });
}

#[test]
fn errors_are_std_errors_with_static_lifetime() {
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    is_error::<proxy_optout::ConfigError>();
    is_error::<proxy_optout::ParseError>();
    is_error::<proxy_optout::Utf8Error>();
    is_error::<proxy_optout::SessionError>();
    is_error::<proxy_optout::RelayError<std::io::Error>>();
    is_error::<proxy_optout::FeedbackError<std::io::Error>>();
    is_error::<proxy_optout::IdentifierError>();
    is_error::<proxy_optout::InputError>();
}
