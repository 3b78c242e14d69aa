//! The host's seam: which session a (From, To) pair belongs to. The pipeline asks it once per
//! inbound message, before anything is claimed or stored; the host answers from its own
//! tables (rides, orders, conversations), sync or async.

use std::future::Future;
use std::pin::Pin;

use proxy_optout::{Participant, Route, SessionError};

/// A boxed, `Send` future: what [`Routing::route`] returns, so the pipeline can hold any
/// routing as `Arc<dyn Routing>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What [`Routing::route`] answers: the session, none, or why there is no answer.
///
/// ```
/// let none: proxy_optout_host::RouteResult = Ok(None);
/// assert!(none.unwrap().is_none());
/// ```
pub type RouteResult = Result<Option<SessionRoute>, RoutingError>;

/// The session of one (sender, proxy number) pair, owned: the sender as the host stores it,
/// and the other participant if the session still has one.
///
/// ```
/// use proxy_optout_host::SessionRoute;
/// let route = SessionRoute::new("ride-42", "+15551110001", "+15550000100", Some(("+15552220002", "+15550000100")))?;
/// assert_eq!(route.route()?.recipient().unwrap().identifier(), "+15552220002");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRoute {
    session: String,
    sender: Participant,
    recipient: Option<Participant>,
}

impl SessionRoute {
    /// The route of session `session`: `from` texting through `proxy`, and the other
    /// participant (`identifier`, `proxy identifier`) if there still is one.
    ///
    /// # Errors
    ///
    /// [`RoutingError::Invalid`] naming the session when an address is not in canonical form
    /// (a stored row the relay cannot use): answered 500, since it is the host's data, not
    /// the webhook, that is wrong.
    ///
    /// ```
    /// use proxy_optout_host::SessionRoute;
    /// let alone = SessionRoute::new("ride-7", "+15551110001", "+15550000100", None)?;
    /// assert!(alone.recipient().is_none());
    /// let bad = SessionRoute::new("ride-8", "+1555\t", "+15550000100", None).unwrap_err();
    /// assert!(bad.to_string().contains("ride-8"));
    /// # Ok::<(), proxy_optout_host::RoutingError>(())
    /// ```
    pub fn new(
        session: impl Into<String>,
        from: &str,
        proxy: &str,
        recipient: Option<(&str, &str)>,
    ) -> Result<SessionRoute, RoutingError> {
        let session = session.into();
        let participant = |identifier: &str, proxy: &str| {
            Participant::new(identifier, proxy).map_err(|e| RoutingError::Invalid {
                session: session.clone(),
                reason: e.to_string(),
            })
        };
        let sender = participant(from, proxy)?;
        let recipient = recipient.map(|(i, p)| participant(i, p)).transpose()?;
        SessionRoute::from_participants(session, sender, recipient)
    }

    /// The route from participants the host already built.
    ///
    /// # Errors
    ///
    /// [`RoutingError::Invalid`] when the core refuses the pair (an empty session id, say).
    ///
    /// ```
    /// use proxy_optout::Participant;
    /// use proxy_optout_host::SessionRoute;
    /// let rider = Participant::new("+15551110001", "+15550000100")?;
    /// let route = SessionRoute::from_participants("ride-1", rider, None)?;
    /// assert_eq!(route.session(), "ride-1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_participants(
        session: impl Into<String>,
        sender: Participant,
        recipient: Option<Participant>,
    ) -> Result<SessionRoute, RoutingError> {
        let route = SessionRoute {
            session: session.into(),
            sender,
            recipient,
        };
        route.route().map_err(|e| RoutingError::Invalid {
            session: route.session.clone(),
            reason: e.to_string(),
        })?;
        Ok(route)
    }

    /// The session id (logged with every message of the session).
    ///
    /// ```
    /// # let route = proxy_optout_host::SessionRoute::new("ride-1", "+1A", "+1P", None)?;
    /// assert_eq!(route.session(), "ride-1");
    /// # Ok::<(), proxy_optout_host::RoutingError>(())
    /// ```
    #[must_use]
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The sender, as stored.
    ///
    /// ```
    /// # let route = proxy_optout_host::SessionRoute::new("ride-1", "+1A", "+1P", None)?;
    /// assert_eq!(route.sender().proxy_identifier(), "+1P");
    /// # Ok::<(), proxy_optout_host::RoutingError>(())
    /// ```
    #[must_use]
    pub fn sender(&self) -> &Participant {
        &self.sender
    }

    /// The other participant, if the session still has one.
    ///
    /// ```
    /// # let route = proxy_optout_host::SessionRoute::new("ride-1", "+1A", "+1P", Some(("+1B", "+1Q")))?;
    /// assert_eq!(route.recipient().unwrap().proxy_identifier(), "+1Q");
    /// # Ok::<(), proxy_optout_host::RoutingError>(())
    /// ```
    #[must_use]
    pub fn recipient(&self) -> Option<&Participant> {
        self.recipient.as_ref()
    }

    /// The relay core's borrowed view.
    ///
    /// # Errors
    ///
    /// The core's [`SessionError`]; never for a route built by [`new`](SessionRoute::new),
    /// which checked it.
    ///
    /// ```
    /// # let route = proxy_optout_host::SessionRoute::new("ride-1", "+1A", "+1P", None)?;
    /// assert_eq!(route.route().unwrap().session(), "ride-1");
    /// # Ok::<(), proxy_optout_host::RoutingError>(())
    /// ```
    pub fn route(&self) -> Result<Route<'_>, SessionError> {
        Route::new(&self.session, &self.sender, self.recipient.as_ref())
    }
}

/// Why the host could not route a message.
///
/// ```
/// use proxy_optout_host::RoutingError;
/// let down = RoutingError::unavailable(std::io::Error::other("rides database down"));
/// assert!(down.is_retryable());
/// assert!(!RoutingError::Invalid { session: "r1".into(), reason: "bad".into() }.is_retryable());
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// The host's tables could not be read now: the message is journaled (or answered 503)
    /// and handled later, nothing stored or sent.
    #[error("the routing tables are unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored session the relay cannot use (a malformed address): answered 500, never
    /// retried into a different result.
    #[error("stored session {session} is not valid: {reason}")]
    Invalid {
        /// The session.
        session: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A failure of the host's tables is [`RoutingError::Unavailable`], so a routing can use `?`
/// on its own queries.
///
/// ```
/// let e: Box<dyn std::error::Error + Send + Sync> = "connection reset".into();
/// assert!(proxy_optout_host::RoutingError::from(e).is_retryable());
/// ```
impl From<Box<dyn std::error::Error + Send + Sync>> for RoutingError {
    fn from(error: Box<dyn std::error::Error + Send + Sync>) -> Self {
        RoutingError::Unavailable(error)
    }
}

impl RoutingError {
    /// The host's tables failed with `error`.
    ///
    /// ```
    /// let e = proxy_optout_host::RoutingError::unavailable(std::io::Error::other("timeout"));
    /// assert_eq!(e.to_string(), "the routing tables are unavailable: timeout");
    /// ```
    pub fn unavailable(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        RoutingError::Unavailable(error.into())
    }

    /// Whether asking again later can succeed.
    ///
    /// ```
    /// # use proxy_optout_host::RoutingError;
    /// assert!(RoutingError::unavailable("down").is_retryable());
    /// ```
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, RoutingError::Unavailable(_))
    }
}

/// Finds the session of a (From, To) pair in the host's own tables.
///
/// `Ok(None)` means no open session: the relay withholds the message as Proxy does for a
/// number outside any session. Implement it with an `async` block for an async driver; a
/// plain function or closure of type `Fn(&str, &str) -> Result<Option<SessionRoute>,
/// RoutingError>` is a routing already (for lookups that do not block, such as a map held
/// in memory), and [`blocking`] wraps one that does (a rusqlite query).
///
/// ```
/// use proxy_optout_host::{BoxFuture, RouteResult, Routing, SessionRoute};
///
/// struct Rides(std::collections::HashMap<(String, String), SessionRoute>);
///
/// impl Routing for Rides {
///     fn route<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, RouteResult> {
///         Box::pin(async move { Ok(self.0.get(&(from.to_owned(), to.to_owned())).cloned()) })
///     }
/// }
/// # let rides = Rides(Default::default());
/// # let found = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(rides.route("+1A", "+1P"));
/// # assert!(found.unwrap().is_none());
/// ```
pub trait Routing: Send + Sync + 'static {
    /// The session `from` reaches by texting `to`, if any.
    ///
    /// # Errors
    ///
    /// [`RoutingError`]: unavailable (handled later) or invalid (a host bug, 500).
    ///
    /// ```
    /// use proxy_optout_host::{Routing, SessionRoute};
    /// let one = |from: &str, to: &str| Ok((from == "+1A").then(|| SessionRoute::new("s1", from, to, None)).transpose()?);
    /// let found = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(one.route("+1A", "+1P"));
    /// assert_eq!(found.unwrap().unwrap().session(), "s1");
    /// ```
    fn route<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, RouteResult>;

    /// A routing built by [`SqliteLedger::routing`](crate::SqliteLedger::routing) or
    /// [`PgLedger::routing`](crate::PgLedger::routing) says so here, so the pipeline runs it
    /// inside the ledger's decision job instead of calling `route` first. Not for other
    /// implementations.
    #[doc(hidden)]
    fn colocated(&self) -> Option<crate::ledger::Colocated> {
        None
    }
}

impl<F> Routing for F
where
    F: Fn(&str, &str) -> RouteResult + Send + Sync + 'static,
{
    fn route<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, RouteResult> {
        let found = self(from, to);
        Box::pin(std::future::ready(found))
    }
}

/// A routing that blocks (a rusqlite or other synchronous query), run on tokio's blocking
/// pool so it never stalls the runtime's workers.
///
/// ```
/// use proxy_optout_host::{blocking, Routing, SessionRoute};
/// let routing = blocking(|from: &str, to: &str| Ok(Some(SessionRoute::new("s1", from, to, None)?)));
/// let found = tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(routing.route("+1A", "+1P"));
/// assert_eq!(found.unwrap().unwrap().session(), "s1");
/// ```
pub fn blocking<F>(f: F) -> Blocking<F>
where
    F: Fn(&str, &str) -> RouteResult + Send + Sync + 'static,
{
    Blocking(std::sync::Arc::new(f))
}

/// What [`blocking`] returns.
///
/// ```
/// let routing = proxy_optout_host::blocking(|_: &str, _: &str| Ok(None));
/// let _ = format!("{routing:?}");
/// ```
pub struct Blocking<F>(std::sync::Arc<F>);

impl<F> std::fmt::Debug for Blocking<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Blocking")
    }
}

impl<F> Routing for Blocking<F>
where
    F: Fn(&str, &str) -> RouteResult + Send + Sync + 'static,
{
    fn route<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, RouteResult> {
        let (f, from, to) = (self.0.clone(), from.to_owned(), to.to_owned());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&from, &to))
                .await
                .map_err(|e| RoutingError::unavailable(format!("the routing task failed: {e}")))?
        })
    }
}
