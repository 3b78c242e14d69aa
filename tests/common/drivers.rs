//! One scenario, three drivers: the pure steps answered by hand, the sync `Relay` and the
//! async `AsyncRelay`, all over the same store, sessions and policy. Every outcome each
//! driver produced is logged, so a test can check that the three agree.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use proxy_optout::{
    Answers, AsyncRelay, Decision, Delivery, Effect, Inbound, LedgerChange, LedgerKey, MemoryStore,
    Notice, OptOutStore, OptState, Outbound, Outcome, ProxyPolicy, Relay, RelayCore, RelayError,
    Sessions, Settings, SyncPolicy, TwilioProxy,
};

/// Which driver handles the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Steps,
    Sync,
    Async,
}

pub const DRIVERS: [Driver; 3] = [Driver::Steps, Driver::Sync, Driver::Async];

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Polls a future that never waits (the in-memory store's futures are ready at once).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Everything an outcome says, detached, without the driver-specific `is_recorded`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub decision: Decision,
    pub session: Option<String>,
    pub delivery: Delivery<'static>,
    pub reply: Option<Outbound<'static>>,
    pub ledger: Option<LedgerChange<'static>>,
    pub notices: Vec<Notice>,
    pub callback: bool,
    pub hook: bool,
}

pub fn view(o: &Outcome<'_>) -> View {
    assert_eq!(o.intercept_called(), o.decision().calls_intercept());
    assert_eq!(
        o.fires_status_callback(),
        o.decision().fires_status_callback()
    );
    View {
        decision: *o.decision(),
        session: o.session().map(String::from),
        delivery: o.clone().into_owned().delivery().clone(),
        reply: o.reply().cloned().map(Outbound::into_owned),
        ledger: o.ledger().cloned().map(LedgerChange::into_owned),
        notices: o.notices().to_vec(),
        callback: o.fires_status_callback(),
        hook: o.intercept_called(),
    }
}

pub struct World {
    pub driver: Driver,
    pub core: RelayCore,
    pub policy: Box<dyn ProxyPolicy + Send + Sync>,
    pub store: MemoryStore,
    pub sessions: Sessions,
    pub log: Vec<View>,
}

impl World {
    pub fn new(driver: Driver) -> Self {
        World {
            driver,
            core: RelayCore::default(),
            policy: Box::new(TwilioProxy),
            store: MemoryStore::new(),
            sessions: Sessions::new(),
            log: Vec::new(),
        }
    }

    pub fn with_policy(mut self, policy: impl ProxyPolicy + Send + Sync + 'static) -> Self {
        self.policy = Box::new(policy);
        self
    }

    pub fn with_core(mut self, core: RelayCore) -> Self {
        self.core = core;
        self
    }

    /// Handles one message with this world's driver, performs its ledger effect, logs it.
    pub fn handle(&mut self, inbound: Inbound<'_>) -> Outcome<'static> {
        let out = self.try_handle(inbound).unwrap_or_else(|e| panic!("{e}"));
        self.log.push(view(&out));
        out
    }

    pub fn try_handle(
        &self,
        inbound: Inbound<'_>,
    ) -> Result<Outcome<'static>, RelayError<std::convert::Infallible>> {
        let route = self.sessions.route(inbound.from(), inbound.to());
        let policy: &(dyn ProxyPolicy + Send + Sync) = &*self.policy;
        match self.driver {
            Driver::Steps => {
                let recipient = route
                    .and_then(|r| r.recipient())
                    .map(|p| p.proxy_identifier());
                let settings = Settings::from_policy(policy, inbound.to(), recipient);
                let plan = self.core.plan(&inbound, route, settings)?;
                let mut answers = Answers::new();
                if let Some(k) = plan.sender_key() {
                    answers = answers.sender_state(self.store.state(k).unwrap());
                }
                if let Some(k) = plan.recipient_key() {
                    answers = answers.recipient_state(self.store.state(k).unwrap());
                }
                if let Some((m, d)) = plan.intercept() {
                    answers = answers.intercept(policy.intercept(&m, &d));
                }
                let out = plan.finish(answers);
                for effect in out.effects() {
                    if let Effect::Record { key, state } = effect {
                        self.store.record(key, state).unwrap();
                    }
                }
                Ok(out.into_owned())
            }
            Driver::Sync => {
                let relay = Relay::new(&self.store)
                    .with_core(self.core.clone())
                    .with_policy(policy);
                let out = relay.handle_routed(&inbound, route)?;
                assert!(out.ledger().is_none() || out.is_recorded());
                Ok(out.into_owned())
            }
            Driver::Async => {
                let relay = AsyncRelay::new(&self.store)
                    .with_core(self.core.clone())
                    .with_policy(SyncPolicy(policy));
                let out = block_on(relay.handle(&inbound, route))?;
                assert!(out.ledger().is_none() || out.is_recorded());
                Ok(out.into_owned())
            }
        }
    }

    pub fn opted_out(&self, proxy: &str, who: &str) -> bool {
        self.store.state(LedgerKey::new(proxy, who)).unwrap() == OptState::OptedOut
    }
}

/// Runs `scenario` once per driver and checks that every driver produced the same outcomes.
pub fn each_driver(scenario: impl Fn(&mut World)) {
    let mut logs = Vec::new();
    for driver in DRIVERS {
        let mut w = World::new(driver);
        scenario(&mut w);
        logs.push((driver, w.log));
    }
    let (first, reference) = &logs[0];
    assert!(!reference.is_empty(), "the scenario handled no message");
    for (driver, log) in &logs[1..] {
        assert_eq!(log, reference, "{driver:?} disagrees with {first:?}");
    }
}
