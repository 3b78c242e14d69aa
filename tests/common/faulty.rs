//! An opt-out store that fails or delays on chosen calls, for fault-injection tests and the
//! relay fuzz target.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use proxy_optout::{LedgerKey, MemoryStore, OptOutStore, OptState};

#[derive(Debug, PartialEq, Eq)]
pub struct StoreDown {
    pub call: usize,
}

impl std::fmt::Display for StoreDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store unavailable on call {}", self.call)
    }
}

impl std::error::Error for StoreDown {}

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    Fail,
    Delay(Duration),
}

/// A MemoryStore whose `n`th call (record or state, counted together) misbehaves.
#[derive(Default)]
pub struct Faulty {
    pub inner: MemoryStore,
    pub calls: AtomicUsize,
    pub plan: HashMap<usize, Fault>,
    /// Fail the next call, whatever its number.
    pub fail_next: AtomicBool,
}

impl Faulty {
    pub fn failing_at(call: usize) -> Self {
        Faulty {
            plan: HashMap::from([(call, Fault::Fail)]),
            ..Faulty::default()
        }
    }

    fn before(&self) -> Result<(), StoreDown> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(StoreDown { call });
        }
        match self.plan.get(&call) {
            Some(Fault::Fail) => Err(StoreDown { call }),
            Some(Fault::Delay(d)) => {
                std::thread::sleep(*d);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl OptOutStore for Faulty {
    type Error = StoreDown;

    fn record(&self, key: LedgerKey<'_>, state: OptState) -> Result<(), StoreDown> {
        self.before()?;
        self.inner.record(key, state).map_err(|e| match e {})
    }

    fn state(&self, key: LedgerKey<'_>) -> Result<OptState, StoreDown> {
        self.before()?;
        self.inner.state(key).map_err(|e| match e {})
    }
}
