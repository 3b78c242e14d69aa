//! The host's side of the Proxy decision as the pipeline asks it: the account flag and STOP
//! filtering per proxy number, answered from memory inside the decision's database job, and
//! the intercept hook, awaited after the decision and before anything is sent.
//!
//! The core's [`AsyncProxyPolicy`](proxy_optout::AsyncProxyPolicy) cannot be used as it is:
//! its `stop_filtering` is a future, and the decision runs on the SQLite ledger's thread (or
//! in one PostgreSQL statement) where nothing can be awaited; and a hook that speaks Proxy's
//! `InterceptCallbackUrl` needs the session and the message id, which the core's hook is not
//! given. The hook's power is the core's all the same: it is asked only for a message the
//! Proxy layer would forward, and it can only block it ([`Outcome::intercepted`]).

use proxy_optout::{Decision, Intercept, Outcome, StopFilterFlag, StopFiltering};

use crate::message::Message;
use crate::routing::BoxFuture;

/// What the intercept hook is asked about: the message, its session, the decision so far
/// (a keyword's category is there when the flag lets keywords through), and the leg the
/// relay would send.
///
/// ```
/// # fn see(i: &proxy_optout_host::Intercepted<'_>) {
/// println!("{} in {} -> {}", i.message().from(), i.session(), i.to());
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Intercepted<'a> {
    message: &'a Message,
    session: &'a str,
    decision: &'a Decision,
    from: &'a str,
    to: &'a str,
}

impl<'a> Intercepted<'a> {
    /// The message, as received.
    ///
    /// ```
    /// # fn see(i: &proxy_optout_host::Intercepted<'_>) { let _ = i.message().body(); }
    /// ```
    #[must_use]
    pub fn message(&self) -> &'a Message {
        self.message
    }

    /// The session the message belongs to.
    ///
    /// ```
    /// # fn see(i: &proxy_optout_host::Intercepted<'_>) { assert!(!i.session().is_empty()); }
    /// ```
    #[must_use]
    pub fn session(&self) -> &'a str {
        self.session
    }

    /// The decision before the hook: its category is the keyword's when the account flag is
    /// on and STOP filtering is off (SPEC §6), so a hook can do its own keyword handling.
    ///
    /// ```
    /// # fn see(i: &proxy_optout_host::Intercepted<'_>) { let _ = i.decision().category(); }
    /// ```
    pub fn decision(&self) -> &'a Decision {
        self.decision
    }

    /// The proxy number the forward would be sent from.
    ///
    /// ```
    /// # fn see(i: &proxy_optout_host::Intercepted<'_>) { assert!(i.from().starts_with('+')); }
    /// ```
    #[must_use]
    pub fn from(&self) -> &'a str {
        self.from
    }

    /// The recipient the forward would be sent to.
    ///
    /// ```
    /// # fn see(i: &proxy_optout_host::Intercepted<'_>) { assert!(i.to().starts_with('+')); }
    /// ```
    #[must_use]
    pub fn to(&self) -> &'a str {
        self.to
    }
}

/// What the host made of a message that reached a pool number outside any session
/// ([`Policy::out_of_session`]).
///
/// ```
/// let default = proxy_optout_host::OutOfSession::Default;
/// assert!(matches!(default, proxy_optout_host::OutOfSession::Default));
/// ```
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum OutOfSession {
    /// Nothing to add: the relay's own out-of-session handling (the message is withheld).
    Default,
    /// Answer the webhook with this TwiML instead (Proxy's out-of-session callback answered
    /// `application/xml`). The carrier layer's effects still happen (a HELP's reply is
    /// sent through the sender, since the answer is the host's).
    Answer(String),
    /// A session now exists for the sender (created by the host): the message is handled
    /// again in it, keyword rules and intercept hook included.
    Routed(crate::SessionRoute),
}

/// The pipeline's policy. Every method has a default, and the defaults are Twilio Proxy with
/// `ProxyRespectSmsStopFilterFlag` off: STOP filtering on everywhere, no hook.
///
/// `stop_filter_flag` and `stop_filtering` are asked inside the decision's database job for
/// every message: answer from memory (a snapshot of the host's settings), never block.
/// `intercept` is awaited after the decision for each message the Proxy layer would
/// forward; whatever time limit the hook has is the implementation's (the pipeline waits).
///
/// ```
/// use proxy_optout::{Category, Intercept, StopFilterFlag, StopFiltering};
/// use proxy_optout_host::{BoxFuture, Intercepted, Policy};
///
/// /// Flag on, filtering off: keywords reach the hook, which keeps STOP from the other side.
/// struct Custom;
/// impl Policy for Custom {
///     fn stop_filter_flag(&self) -> StopFilterFlag { StopFilterFlag::Respect }
///     fn stop_filtering(&self, _number: &str) -> StopFiltering { StopFiltering::Off }
///     fn intercept<'a>(&'a self, i: Intercepted<'a>) -> BoxFuture<'a, Intercept> {
///         let verdict = match i.decision().category() {
///             Some(Category::OptOut) => Intercept::Block,
///             _ => Intercept::Allow,
///         };
///         Box::pin(async move { verdict })
///     }
/// }
/// ```
pub trait Policy: Send + Sync + 'static {
    /// The `ProxyRespectSmsStopFilterFlag` account flag. Default:
    /// [`StopFilterFlag::Ignore`].
    ///
    /// ```
    /// use proxy_optout_host::Policy;
    /// assert_eq!(proxy_optout::TwilioProxy.stop_filter_flag(), proxy_optout::StopFilterFlag::Ignore);
    /// ```
    fn stop_filter_flag(&self) -> StopFilterFlag {
        StopFilterFlag::Ignore
    }

    /// STOP filtering on `proxy_number` (the Messaging side's setting). Default:
    /// [`StopFiltering::On`].
    ///
    /// ```
    /// use proxy_optout_host::Policy;
    /// assert_eq!(proxy_optout::TwilioProxy.stop_filtering("+15550000100"), proxy_optout::StopFiltering::On);
    /// ```
    fn stop_filtering(&self, proxy_number: &str) -> StopFiltering {
        let _ = proxy_number;
        StopFiltering::On
    }

    /// The relay core (keywords, rule set, matching, replies) for messages to `proxy_number`,
    /// when it is not the pipeline's own: for a host whose services each configure their
    /// keyword handling. Asked once per message, from memory. Default: `None`.
    ///
    /// ```
    /// use proxy_optout_host::Policy;
    /// assert!(proxy_optout::TwilioProxy.core("+15550000100").is_none());
    /// ```
    fn core(&self, proxy_number: &str) -> Option<std::sync::Arc<proxy_optout::RelayCore>> {
        let _ = proxy_number;
        None
    }

    /// Whether any message to `proxy_number` can meet a hook: `false` skips
    /// [`intercept`](Policy::intercept) (and its cost) altogether. Default: `true`.
    ///
    /// ```
    /// use proxy_optout_host::Policy;
    /// assert!(!proxy_optout::TwilioProxy.intercepts("+15550000100"));
    /// ```
    fn intercepts(&self, proxy_number: &str) -> bool {
        let _ = proxy_number;
        true
    }

    /// A message on `proxy_number` from someone with no session there, live (not from the
    /// journal, whose answer went long ago), that the relay would withhold: what the host
    /// does about it (Proxy's `OutOfSessionCallbackUrl`). Never asked about a keyword,
    /// which is dropped in or out of session. Default: [`OutOfSession::Default`].
    ///
    /// ```
    /// # async fn see(p: &dyn proxy_optout_host::Policy, m: &proxy_optout_host::Message) {
    /// let what = p.out_of_session(m).await;
    /// # let _ = what; }
    /// ```
    fn out_of_session<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, OutOfSession> {
        let _ = message;
        Box::pin(async { OutOfSession::Default })
    }

    /// The intercept hook's verdict. Default: [`Intercept::Allow`].
    ///
    /// ```
    /// # async fn see(p: &dyn proxy_optout_host::Policy, i: proxy_optout_host::Intercepted<'_>) {
    /// let verdict = p.intercept(i).await;
    /// # let _ = verdict; }
    /// ```
    fn intercept<'a>(&'a self, intercepted: Intercepted<'a>) -> BoxFuture<'a, Intercept> {
        let _ = intercepted;
        Box::pin(async { Intercept::Allow })
    }
}

impl Policy for proxy_optout::TwilioProxy {
    fn intercepts(&self, _proxy_number: &str) -> bool {
        false
    }
}

impl Policy for proxy_optout::FixedPolicy {
    fn stop_filter_flag(&self) -> StopFilterFlag {
        proxy_optout::ProxyPolicy::stop_filter_flag(self)
    }
    fn stop_filtering(&self, proxy_number: &str) -> StopFiltering {
        proxy_optout::ProxyPolicy::stop_filtering(self, Some(proxy_number))
    }
    fn intercepts(&self, _proxy_number: &str) -> bool {
        false
    }
}

/// Asks the hook about a decided outcome and applies its verdict: only for an outcome whose
/// hook the Proxy layer consults (one with a forward or a refused leg).
pub(crate) async fn intercept(
    policy: &dyn Policy,
    message: &Message,
    outcome: Outcome<'static>,
) -> Outcome<'static> {
    let leg = outcome.forwarded().or_else(|| outcome.refused());
    let (Some(leg), Some(session)) = (leg, outcome.session()) else {
        return outcome;
    };
    if !policy.intercepts(&message.to) {
        return outcome;
    }
    let verdict = policy
        .intercept(Intercepted {
            message,
            session,
            decision: outcome.decision(),
            from: leg.from(),
            to: leg.to(),
        })
        .await;
    outcome.intercepted(verdict)
}
