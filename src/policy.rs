//! The host's side of the Proxy decision (§§4, §6): the account flag, STOP filtering per
//! proxy number, and the intercept hook.

use core::fmt;
use core::future::{ready, Future};

use crate::decision::Decision;
use crate::message::Message;

/// The `ProxyRespectSmsStopFilterFlag` account flag.
///
/// # Example
///
/// ```
/// use proxy_optout::StopFilterFlag;
/// assert_eq!(StopFilterFlag::default(), StopFilterFlag::Ignore);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum StopFilterFlag {
    /// Flag off (Twilio's default): Proxy drops its keywords whatever STOP filtering says.
    #[default]
    Ignore,
    /// Flag on: Proxy follows the STOP filtering setting; with filtering off, keywords are
    /// forwarded to the intercept hook like any message.
    Respect,
}

/// Whether the carrier layer's STOP filtering is on for a proxy number.
///
/// # Example
///
/// ```
/// use proxy_optout::StopFiltering;
/// assert_eq!(StopFiltering::default(), StopFiltering::On);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum StopFiltering {
    /// The platform default for long codes: opt-outs are recorded and auto-replies sent.
    #[default]
    On,
    /// The carrier layer does nothing: no ledger change, no auto-replies, no 21610.
    Off,
}

/// What the intercept hook says about a message the Proxy layer would forward.
///
/// # Example
///
/// ```
/// use proxy_optout::Intercept;
/// assert_eq!(Intercept::default(), Intercept::Allow);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Intercept {
    /// Let it through.
    #[default]
    Allow,
    /// Refuse it: not forwarded, notice 80909.
    Block,
}

/// The host's policy: the account flag, STOP filtering per proxy number, and the intercept
/// hook. Every method has a default, and the defaults are exactly Twilio Proxy with
/// `ProxyRespectSmsStopFilterFlag` off. The trait is object-safe.
///
/// The hook's power is limited by construction: it is called only for messages the Proxy
/// layer would forward, and it can only block them. In default mode (and in flag mode with
/// filtering on) no policy can make a dropped keyword be forwarded.
///
/// # Example
///
/// Custom keyword handling the way Twilio documents it: turn the flag on, turn STOP
/// filtering off, and decide in the hook.
///
/// ```
/// use proxy_optout::{
///     Category, Classifier, Decision, Intercept, Message, ProxyPolicy, StopFilterFlag,
///     StopFiltering,
/// };
///
/// struct MyPolicy;
///
/// impl ProxyPolicy for MyPolicy {
///     fn stop_filter_flag(&self) -> StopFilterFlag {
///         StopFilterFlag::Respect
///     }
///     fn stop_filtering(&self, _proxy_number: Option<&str>) -> StopFiltering {
///         StopFiltering::Off
///     }
///     fn intercept(&self, _message: &Message<'_>, decision: &Decision) -> Intercept {
///         // Our own opt-out bookkeeping would go here; keep STOP from the other side.
///         match decision.category() {
///             Some(Category::OptOut) => Intercept::Block,
///             _ => Intercept::Allow,
///         }
///     }
/// }
///
/// let c = Classifier::default();
/// let d = c.decide(&Message::sms("STOP"), &MyPolicy);
/// assert!(d.is_blocked());
/// assert_eq!(d.notice().map(|n| n.code()), Some(80909));
/// assert_eq!(d.carrier(), None); // filtering is off: no ledger change
/// assert!(c.decide(&Message::sms("HELP"), &MyPolicy).is_forwarded());
/// ```
pub trait ProxyPolicy {
    /// The `ProxyRespectSmsStopFilterFlag` account flag. Default: [`StopFilterFlag::Ignore`].
    ///
    /// ```
    /// use proxy_optout::{ProxyPolicy, StopFilterFlag, TwilioProxy};
    /// assert_eq!(TwilioProxy.stop_filter_flag(), StopFilterFlag::Ignore);
    /// ```
    fn stop_filter_flag(&self) -> StopFilterFlag {
        StopFilterFlag::Ignore
    }

    /// Whether STOP filtering is on for `proxy_number` (`None` when the message does not
    /// say which number it was sent to). Default: [`StopFiltering::On`].
    ///
    /// ```
    /// use proxy_optout::{ProxyPolicy, StopFiltering, TwilioProxy};
    /// assert_eq!(TwilioProxy.stop_filtering(Some("+15550000000")), StopFiltering::On);
    /// ```
    fn stop_filtering(&self, proxy_number: Option<&str>) -> StopFiltering {
        let _ = proxy_number;
        StopFiltering::On
    }

    /// The intercept hook (Proxy's `InterceptCallbackUrl`), called for every message the
    /// Proxy layer would forward, with the decision so far (including any keyword
    /// category). Default: [`Intercept::Allow`].
    ///
    /// ```
    /// use proxy_optout::{classify, Intercept, Message, ProxyPolicy, TwilioProxy};
    /// let m = Message::sms("hi");
    /// assert_eq!(TwilioProxy.intercept(&m, &classify(&m)), Intercept::Allow);
    /// ```
    fn intercept(&self, message: &Message<'_>, decision: &Decision) -> Intercept {
        let _ = (message, decision);
        Intercept::Allow
    }
}

/// Twilio Proxy's defaults: flag off, STOP filtering on, no intercept hook.
///
/// # Example
///
/// ```
/// use proxy_optout::{Classifier, Message, TwilioProxy};
/// let c = Classifier::default();
/// let m = Message::sms("stop");
/// assert_eq!(c.decide(&m, &TwilioProxy), c.classify(&m));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TwilioProxy;

impl ProxyPolicy for TwilioProxy {}

/// A policy with fixed settings and no intercept hook: for tests, tools, and hosts whose
/// settings do not vary per number.
///
/// # Example
///
/// ```
/// use proxy_optout::{Classifier, FixedPolicy, Message, StopFilterFlag, StopFiltering};
///
/// let flag_on_filter_off = FixedPolicy::new(StopFilterFlag::Respect, StopFiltering::Off);
/// let d = Classifier::default().decide(&Message::sms("STOP"), &flag_on_filter_off);
/// assert!(d.is_forwarded());
/// assert_eq!(d.keyword(), Some("STOP"));
/// assert_eq!(d.carrier(), None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FixedPolicy {
    flag: StopFilterFlag,
    filtering: StopFiltering,
}

impl FixedPolicy {
    /// A policy with this flag and this STOP filtering setting for every number.
    ///
    /// ```
    /// use proxy_optout::{FixedPolicy, ProxyPolicy, StopFilterFlag, StopFiltering};
    /// let p = FixedPolicy::new(StopFilterFlag::Respect, StopFiltering::On);
    /// assert_eq!(p.stop_filter_flag(), StopFilterFlag::Respect);
    /// ```
    #[must_use]
    pub const fn new(flag: StopFilterFlag, filtering: StopFiltering) -> Self {
        FixedPolicy { flag, filtering }
    }
}

impl ProxyPolicy for FixedPolicy {
    fn stop_filter_flag(&self) -> StopFilterFlag {
        self.flag
    }

    fn stop_filtering(&self, _proxy_number: Option<&str>) -> StopFiltering {
        self.filtering
    }
}

macro_rules! forward_policy {
    ($($ty:ty),*) => {$(
        impl<P: ProxyPolicy + ?Sized> ProxyPolicy for $ty {
            fn stop_filter_flag(&self) -> StopFilterFlag {
                (**self).stop_filter_flag()
            }
            fn stop_filtering(&self, proxy_number: Option<&str>) -> StopFiltering {
                (**self).stop_filtering(proxy_number)
            }
            fn intercept(&self, message: &Message<'_>, decision: &Decision) -> Intercept {
                (**self).intercept(message, decision)
            }
        }
    )*};
}

forward_policy!(&P, alloc::boxed::Box<P>, alloc::sync::Arc<P>);

impl fmt::Display for StopFilterFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopFilterFlag::Ignore => "ignore",
            StopFilterFlag::Respect => "respect",
        })
    }
}

impl fmt::Display for StopFiltering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopFiltering::On => "on",
            StopFiltering::Off => "off",
        })
    }
}

/// The host's policy, answered asynchronously: for hosts whose per-number STOP filtering or
/// intercept hook needs their database or a web call. Every method has a default (Twilio
/// Proxy with the flag off); every future is `Send`, so [`AsyncRelay`](crate::AsyncRelay)'s
/// future can be awaited in a multi-threaded runtime's handler. A synchronous
/// [`ProxyPolicy`] is adapted with [`SyncPolicy`]; [`TwilioProxy`] and [`FixedPolicy`]
/// implement both traits.
///
/// # Example
///
/// ```
/// use std::future::Future;
/// use proxy_optout::{AsyncProxyPolicy, Decision, Intercept, Message, StopFiltering};
///
/// struct FromDatabase;
///
/// impl AsyncProxyPolicy for FromDatabase {
///     fn stop_filtering(&self, proxy: Option<&str>) -> impl Future<Output = StopFiltering> + Send {
///         let off = proxy == Some("+1SHORTCODE");
///         async move {
///             // SELECT stop_filtering FROM numbers WHERE number = $1 ...
///             if off { StopFiltering::Off } else { StopFiltering::On }
///         }
///     }
///     fn intercept(&self, _m: &Message<'_>, _d: &Decision) -> impl Future<Output = Intercept> + Send {
///         async { Intercept::Allow }
///     }
/// }
/// # let _ = FromDatabase;
/// ```
pub trait AsyncProxyPolicy: Sync {
    /// The `ProxyRespectSmsStopFilterFlag` account flag (an account setting, known without
    /// a lookup). Default: [`StopFilterFlag::Ignore`].
    ///
    /// ```
    /// use proxy_optout::{AsyncProxyPolicy, StopFilterFlag, TwilioProxy};
    /// assert_eq!(AsyncProxyPolicy::stop_filter_flag(&TwilioProxy), StopFilterFlag::Ignore);
    /// ```
    fn stop_filter_flag(&self) -> StopFilterFlag {
        StopFilterFlag::Ignore
    }

    /// Whether STOP filtering is on for `proxy_number`. Default: [`StopFiltering::On`].
    ///
    /// ```
    /// use proxy_optout::{AsyncProxyPolicy, StopFiltering, TwilioProxy};
    /// let f = AsyncProxyPolicy::stop_filtering(&TwilioProxy, Some("+1P"));
    /// # let _ = f;
    /// ```
    fn stop_filtering(
        &self,
        proxy_number: Option<&str>,
    ) -> impl Future<Output = StopFiltering> + Send {
        let _ = proxy_number;
        ready(StopFiltering::On)
    }

    /// The intercept hook, for a message the Proxy layer would forward in session. Default:
    /// [`Intercept::Allow`].
    ///
    /// ```
    /// use proxy_optout::{classify, AsyncProxyPolicy, Message, TwilioProxy};
    /// let m = Message::sms("hi");
    /// let d = classify(&m);
    /// let f = AsyncProxyPolicy::intercept(&TwilioProxy, &m, &d);
    /// # let _ = f;
    /// ```
    fn intercept(
        &self,
        message: &Message<'_>,
        decision: &Decision,
    ) -> impl Future<Output = Intercept> + Send {
        let _ = (message, decision);
        ready(Intercept::Allow)
    }
}

/// Adapts a synchronous [`ProxyPolicy`] (one that answers from memory, without blocking) to
/// [`AsyncProxyPolicy`].
///
/// # Example
///
/// ```
/// use proxy_optout::{AsyncRelay, MemoryStore, ProxyPolicy, SyncPolicy};
/// struct Mine;
/// impl ProxyPolicy for Mine {}
/// let relay = AsyncRelay::new(MemoryStore::new()).with_policy(SyncPolicy(Mine));
/// # let _ = relay;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SyncPolicy<P>(pub P);

impl<P: ProxyPolicy + Sync> AsyncProxyPolicy for SyncPolicy<P> {
    fn stop_filter_flag(&self) -> StopFilterFlag {
        self.0.stop_filter_flag()
    }
    fn stop_filtering(
        &self,
        proxy_number: Option<&str>,
    ) -> impl Future<Output = StopFiltering> + Send {
        ready(self.0.stop_filtering(proxy_number))
    }
    fn intercept(
        &self,
        message: &Message<'_>,
        decision: &Decision,
    ) -> impl Future<Output = Intercept> + Send {
        ready(self.0.intercept(message, decision))
    }
}

impl AsyncProxyPolicy for TwilioProxy {}

impl AsyncProxyPolicy for FixedPolicy {
    fn stop_filter_flag(&self) -> StopFilterFlag {
        self.flag
    }
    fn stop_filtering(
        &self,
        _proxy_number: Option<&str>,
    ) -> impl Future<Output = StopFiltering> + Send {
        ready(self.filtering)
    }
}

macro_rules! forward_async_policy {
    ($($ty:ty),*) => {$(
        impl<P: AsyncProxyPolicy + ?Sized + Send> AsyncProxyPolicy for $ty {
            fn stop_filter_flag(&self) -> StopFilterFlag {
                (**self).stop_filter_flag()
            }
            fn stop_filtering(&self, proxy_number: Option<&str>) -> impl Future<Output = StopFiltering> + Send {
                (**self).stop_filtering(proxy_number)
            }
            fn intercept(&self, message: &Message<'_>, decision: &Decision) -> impl Future<Output = Intercept> + Send {
                (**self).intercept(message, decision)
            }
        }
    )*};
}

forward_async_policy!(&P, alloc::boxed::Box<P>, alloc::sync::Arc<P>);

// Object safety is part of the contract: this fails to compile if it is lost.
const _: Option<&dyn ProxyPolicy> = None;
