//! Proxy's opt-out rules for masking on Twilio Conversations: the route of a participant's
//! message (their binding, and the conversation as the one other party), the pre-event
//! answer Proxy would have given, what to do when the binding is not known, and a cache of
//! bindings filled from the participant webhooks.
//!
//! A conversation maps onto the relay's two-party model: the SMS participant texts their proxy
//! address, and the conversation is the counterpart (a chat party: no keyword handling, no
//! 21610 check). The relay then decides as Proxy did. A keyword it drops is rejected before
//! anyone sees it. Anything it would forward is published, after the intercept hook. The
//! ledger change, and in [`CarrierMode::Emulate`](proxy_optout::CarrierMode::Emulate) the
//! confirmation text, are effects for the host to perform.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use proxy_optout::{
    Channel, Classifier, Decision, Delivery, IdentifierError, Inbound, LedgerKey, OptState,
    Outcome, Participant, RelayCore, Route, Withheld,
};

use crate::conversations::{Binding, BindingKind, ConversationAdd, MessageAdd, PreEventAnswer};

/// The route of one participant's messages in one conversation.
///
/// # Example
///
/// ```
/// use proxy_optout::{MemoryStore, Relay};
/// use proxy_optout_twilio::{answer_for, Binding, ConversationRoute, ConversationsEvent, Form};
///
/// let relay = Relay::new(MemoryStore::new());
/// let form = Form::parse(b"EventType=onMessageAdd&ConversationSid=CH1&Author=%2B1A&Body=STOP&Source=SMS")?;
/// let ConversationsEvent::MessageAdd(m) = ConversationsEvent::from_form(&form)? else { panic!() };
/// // The binding comes from the cache the participant webhooks fill.
/// let binding = Binding { address: "+1A", proxy_address: Some("+1P"), projected_address: None, kind: None };
/// let route = ConversationRoute::new(m.conversation_sid, &binding)?;
/// let outcome = relay.handle_routed(&route.inbound(&m), Some(route.route()))?;
/// assert_eq!(answer_for(&outcome, 403).status(), 403); // STOP is never published
/// assert!(outcome.ledger().is_some()); // recorded for (+1P, +1A)
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationRoute {
    conversation_sid: String,
    author: Participant,
    conversation: Participant,
}

/// The relay's channel for a binding.
fn channel_of(binding: &Binding<'_>) -> Channel {
    match binding.kind {
        Some(BindingKind::Sms) => Channel::Sms,
        Some(BindingKind::WhatsApp) => Channel::WhatsApp,
        Some(BindingKind::Chat | BindingKind::Other(_)) => Channel::Chat,
        None if binding.is_sms() => Channel::Sms,
        None if binding.address.starts_with("whatsapp:") => Channel::WhatsApp,
        None => Channel::Chat,
    }
}

impl ConversationRoute {
    /// The route of the participant bound by `binding` in `conversation_sid`.
    ///
    /// # Errors
    ///
    /// An [`IdentifierError`] when the address, the proxy address or the conversation id is
    /// not canonical, or the binding has no proxy address (a projected group-MMS binding:
    /// there is no per-number ledger key; the field named is `proxy address`).
    ///
    /// ```
    /// use proxy_optout_twilio::{Binding, ConversationRoute};
    /// let projected = Binding { address: "+1A", proxy_address: None, projected_address: Some("+1G"), kind: None };
    /// assert!(ConversationRoute::new("CH1", &projected).is_err());
    /// ```
    pub fn new(conversation_sid: &str, binding: &Binding<'_>) -> Result<Self, IdentifierError> {
        let proxy = binding.proxy_address.unwrap_or("");
        proxy_optout::validate_identifier("proxy address", proxy)?;
        let route = ConversationRoute {
            conversation_sid: conversation_sid.to_owned(),
            author: Participant::new(binding.address, proxy)?.with_channel(channel_of(binding)),
            conversation: Participant::new(conversation_sid, proxy)?.with_channel(Channel::Chat),
        };
        // The conversation id was checked as the counterpart's identifier: a route over these
        // two participants is valid, which `route` relies on.
        Route::new(
            &route.conversation_sid,
            &route.author,
            Some(&route.conversation),
        )
        .map_err(|_| IdentifierError::Empty {
            field: "conversation sid",
        })?;
        Ok(route)
    }

    /// The relay's route: the author, and the conversation as the one other party.
    ///
    /// ```
    /// # use proxy_optout_twilio::{Binding, ConversationRoute};
    /// let b = Binding { address: "+1A", proxy_address: Some("+1P"), projected_address: None, kind: None };
    /// let route = ConversationRoute::new("CH1", &b)?;
    /// assert_eq!(route.route().recipient().unwrap().identifier(), "CH1");
    /// # Ok::<(), proxy_optout::IdentifierError>(())
    /// ```
    #[must_use]
    pub fn route(&self) -> Route<'_> {
        // Checked in `new`: these participants always make a valid route.
        Route::new(
            &self.conversation_sid,
            &self.author,
            Some(&self.conversation),
        )
        .expect("checked when the route was made")
    }

    /// The message as the relay sees it: from the author's address to their proxy address,
    /// an MMS when it carries media.
    ///
    /// ```
    /// # use proxy_optout_twilio::{Binding, ConversationRoute, ConversationsEvent, Form};
    /// # let b = Binding { address: "+1A", proxy_address: Some("+1P"), projected_address: None, kind: None };
    /// let route = ConversationRoute::new("CH1", &b)?;
    /// let form = Form::parse(b"EventType=onMessageAdd&ConversationSid=CH1&Author=%2B1A&Body=hi")?;
    /// let ConversationsEvent::MessageAdd(m) = ConversationsEvent::from_form(&form)? else { panic!() };
    /// assert_eq!(route.inbound(&m).to(), "+1P");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn inbound<'a>(&'a self, message: &MessageAdd<'a>) -> Inbound<'a> {
        self.inbound_of(message.body, message.has_media())
    }

    /// The first message of an auto-created conversation, as the relay sees it.
    ///
    /// ```
    /// # use proxy_optout_twilio::{Binding, ConversationRoute, ConversationsEvent, Form};
    /// let form = Form::parse(b"EventType=onConversationAdd&MessageBody=STOP&MessagingBinding.Address=%2B1A&MessagingBinding.ProxyAddress=%2B1P")?;
    /// let ConversationsEvent::ConversationAdd(c) = ConversationsEvent::from_form(&form)? else { panic!() };
    /// let route = ConversationRoute::new("new-conversation", &c.binding.unwrap())?;
    /// assert_eq!(route.first_message(&c).body(), "STOP");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn first_message<'a>(&'a self, event: &ConversationAdd<'a>) -> Inbound<'a> {
        self.inbound_of(event.message_body.unwrap_or(""), false)
    }

    fn inbound_of<'a>(&'a self, body: &'a str, media: bool) -> Inbound<'a> {
        Inbound::new(
            self.author.identifier(),
            self.author.proxy_identifier(),
            body,
        )
        .with_channel(self.author.channel())
        .with_media(u32::from(media))
    }
}

/// The pre-event answer Proxy would have given for a relayed outcome: publish what the relay
/// forwards; reject (with `status`) a keyword it drops and a message the intercept hook
/// blocked.
///
/// ```
/// use proxy_optout::{MemoryStore, Relay};
/// use proxy_optout_twilio::{answer_for, Binding, ConversationRoute, ConversationsEvent, Form, PreEventAnswer};
/// # let b = Binding { address: "+1A", proxy_address: Some("+1P"), projected_address: None, kind: None };
/// # let route = ConversationRoute::new("CH1", &b)?;
/// let relay = Relay::new(MemoryStore::new());
/// let form = Form::parse(b"EventType=onMessageAdd&ConversationSid=CH1&Author=%2B1A&Body=START")?;
/// let ConversationsEvent::MessageAdd(m) = ConversationsEvent::from_form(&form)? else { panic!() };
/// let out = relay.handle_routed(&route.inbound(&m), Some(route.route()))?;
/// assert_eq!(answer_for(&out, 403), PreEventAnswer::Publish); // Proxy passes START on
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn answer_for(outcome: &Outcome<'_>, status: u16) -> PreEventAnswer<'static> {
    match outcome.delivery() {
        Delivery::Withheld(Withheld::KeywordDropped | Withheld::HookBlocked) => {
            PreEventAnswer::Reject { status }
        }
        _ => PreEventAnswer::Publish,
    }
}

/// The answer when the author's binding is not known in time (a cache miss with no time to
/// fetch the participant within Conversations' 5-second budget), failing closed: an SMS
/// author's body that Proxy would drop is rejected even though its pair is unknown. Nothing
/// can be recorded without the pair. The host looks the participant up afterwards and
/// records the change the decision names ([`Decision::carrier`]).
///
/// ```
/// use proxy_optout::Classifier;
/// use proxy_optout_twilio::{answer_without_binding, ConversationsEvent, Form, PreEventAnswer};
/// let form = Form::parse(b"EventType=onMessageAdd&ConversationSid=CH1&Author=%2B1A&Body=Stop&Source=SMS")?;
/// let ConversationsEvent::MessageAdd(m) = ConversationsEvent::from_form(&form)? else { panic!() };
/// let (answer, decision) = answer_without_binding(&Classifier::default(), &m, 403);
/// assert_eq!(answer, PreEventAnswer::Reject { status: 403 });
/// assert!(decision.is_dropped());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn answer_without_binding(
    classifier: &Classifier,
    message: &MessageAdd<'_>,
    status: u16,
) -> (PreEventAnswer<'static>, Decision) {
    let channel = match message.source {
        crate::conversations::Source::Sms if message.has_media() => Channel::Mms,
        crate::conversations::Source::Sms => Channel::Sms,
        crate::conversations::Source::WhatsApp => Channel::WhatsApp,
        _ => Channel::Chat,
    };
    let decision = classifier.classify(&proxy_optout::Message::new(message.body, channel));
    let answer = if decision.is_dropped() {
        PreEventAnswer::Reject { status }
    } else {
        PreEventAnswer::Publish
    };
    (answer, decision)
}

/// The SMS participants among `bindings` who opted out of their proxy address: a chat
/// author's message will not reach them (each delivery would fail with 21610), so the host
/// can tell the author before publishing. `state` reads the ledger.
///
/// # Errors
///
/// The first error `state` returns.
///
/// ```
/// use proxy_optout::{LedgerKey, MemoryStore, OptOutStore, OptState, RelayCore};
/// use proxy_optout_twilio::{opted_out, Binding};
/// let store = MemoryStore::new();
/// store.record(LedgerKey::new("+1P", "+1A"), OptState::OptedOut)?;
/// let sms = Binding { address: "+1A", proxy_address: Some("+1P"), projected_address: None, kind: None };
/// let other = Binding { address: "+1B", ..sms };
/// let out = opted_out(&RelayCore::new(), &[sms, other], |k| store.state(k))?;
/// assert_eq!(out, vec![sms]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn opted_out<'b, E>(
    core: &RelayCore,
    bindings: &[Binding<'b>],
    mut state: impl FnMut(LedgerKey<'_>) -> Result<OptState, E>,
) -> Result<Vec<Binding<'b>>, E> {
    let mut out = Vec::new();
    for b in bindings.iter().filter(|b| b.is_sms()) {
        if let Some(proxy) = b.proxy_address {
            if state(core.key(proxy, b.address))? == OptState::OptedOut {
                out.push(*b);
            }
        }
    }
    Ok(out)
}

/// A binding the cache keeps (owned).
///
/// ```
/// use proxy_optout_twilio::{Binding, BindingKind, CachedBinding};
/// let b = Binding { address: "+1A", proxy_address: Some("+1P"), projected_address: None, kind: Some(BindingKind::Sms) };
/// let kept = CachedBinding::from(&b);
/// assert_eq!(kept.as_binding(), b);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CachedBinding {
    /// The participant's own address.
    pub address: String,
    /// The proxy address they text.
    pub proxy_address: Option<String>,
    /// `MessagingBinding.Type` as sent (`sms`, `whatsapp`, …), if it was.
    pub kind: Option<String>,
}

impl From<&Binding<'_>> for CachedBinding {
    fn from(b: &Binding<'_>) -> Self {
        CachedBinding {
            address: b.address.to_owned(),
            proxy_address: b.proxy_address.map(str::to_owned),
            kind: b.kind.map(|k| {
                match k {
                    BindingKind::Sms => "sms",
                    BindingKind::WhatsApp => "whatsapp",
                    BindingKind::Chat => "chat",
                    BindingKind::Other(other) => other,
                }
                .to_owned()
            }),
        }
    }
}

impl CachedBinding {
    /// The borrowed form the adapter's functions take.
    ///
    /// ```
    /// # use proxy_optout_twilio::CachedBinding;
    /// let c = CachedBinding { address: "+1A".into(), proxy_address: Some("+1P".into()), kind: Some("sms".into()) };
    /// assert!(c.as_binding().is_sms());
    /// ```
    #[must_use]
    pub fn as_binding(&self) -> Binding<'_> {
        Binding {
            address: &self.address,
            proxy_address: self.proxy_address.as_deref(),
            projected_address: None,
            kind: self.kind.as_deref().map(BindingKind::parse),
        }
    }
}

/// Where a host keeps the bindings of each conversation's participants, filled from
/// `onParticipantAdded` and emptied by `onParticipantRemoved`. `onMessageAdd` names only the
/// participant; this gives its binding (the ledger key) without a REST call.
/// [`BindingCache`] keeps them in memory; `proxy-optout-sqlite` (feature `conversations`)
/// keeps them in its file; [`AsyncBindingStore`] is the same for async stores
/// (`proxy-optout-postgres`, feature `conversations`, shared by every instance).
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::{BindingCache, BindingStore, CachedBinding};
/// let cache = BindingCache::new();
/// let b = CachedBinding { address: "+1A".into(), proxy_address: Some("+1P".into()), kind: Some("sms".into()) };
/// cache.added("CH1", "MB1", &b)?;
/// assert_eq!(cache.binding("CH1", "MB1")?, Some(b));
/// # Ok::<(), std::convert::Infallible>(())
/// ```
pub trait BindingStore {
    /// What went wrong.
    type Error;
    /// A participant joined (`onParticipantAdded`); a second call for the same participant
    /// replaces the binding.
    ///
    /// # Errors
    ///
    /// The store's.
    fn added(
        &self,
        conversation_sid: &str,
        participant_sid: &str,
        binding: &CachedBinding,
    ) -> Result<(), Self::Error>;
    /// A participant left (`onParticipantRemoved`).
    ///
    /// # Errors
    ///
    /// The store's.
    fn removed(&self, conversation_sid: &str, participant_sid: &str) -> Result<(), Self::Error>;
    /// One participant's binding.
    ///
    /// # Errors
    ///
    /// The store's.
    fn binding(
        &self,
        conversation_sid: &str,
        participant_sid: &str,
    ) -> Result<Option<CachedBinding>, Self::Error>;
    /// Every participant's binding in a conversation (for a chat author's message).
    ///
    /// # Errors
    ///
    /// The store's.
    fn bindings(&self, conversation_sid: &str) -> Result<Vec<CachedBinding>, Self::Error>;
}

/// [`BindingStore`] for async stores: the same calls, awaited; the futures are `Send`.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::{AsyncBindingStore, BindingCache, CachedBinding};
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// let cache = BindingCache::new();
/// let b = CachedBinding { address: "+1A".into(), proxy_address: Some("+1P".into()), kind: None };
/// block_on(AsyncBindingStore::added(&cache, "CH1", "MB1", &b))?;
/// assert_eq!(block_on(AsyncBindingStore::bindings(&cache, "CH1"))?, vec![b]);
/// # Ok::<(), std::convert::Infallible>(())
/// ```
pub trait AsyncBindingStore: Sync {
    /// What went wrong.
    type Error;
    /// See [`BindingStore::added`].
    fn added(
        &self,
        conversation_sid: &str,
        participant_sid: &str,
        binding: &CachedBinding,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;
    /// See [`BindingStore::removed`].
    fn removed(
        &self,
        conversation_sid: &str,
        participant_sid: &str,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;
    /// See [`BindingStore::binding`].
    fn binding(
        &self,
        conversation_sid: &str,
        participant_sid: &str,
    ) -> impl std::future::Future<Output = Result<Option<CachedBinding>, Self::Error>> + Send;
    /// See [`BindingStore::bindings`].
    fn bindings(
        &self,
        conversation_sid: &str,
    ) -> impl std::future::Future<Output = Result<Vec<CachedBinding>, Self::Error>> + Send;
}

type Conversations = HashMap<String, HashMap<String, CachedBinding>>;

/// The bindings in this process's memory: for one instance, or as a cache in front of a
/// shared store.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::{BindingCache, BindingStore, CachedBinding};
/// let cache = BindingCache::new();
/// let b = CachedBinding { address: "+1A".into(), proxy_address: Some("+1P".into()), kind: None };
/// cache.added("CH1", "MB1", &b)?;
/// cache.removed("CH1", "MB1")?;
/// assert!(cache.bindings("CH1")?.is_empty());
/// # Ok::<(), std::convert::Infallible>(())
/// ```
#[derive(Debug, Default)]
pub struct BindingCache {
    conversations: Mutex<Conversations>,
}

impl BindingCache {
    /// An empty cache.
    ///
    /// ```
    /// assert!(proxy_optout_twilio::BindingCache::new().is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        BindingCache::default()
    }

    /// Whether it holds nothing.
    ///
    /// ```
    /// assert!(proxy_optout_twilio::BindingCache::default().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Conversations> {
        self.conversations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl BindingStore for BindingCache {
    type Error = std::convert::Infallible;

    fn added(
        &self,
        conversation_sid: &str,
        participant_sid: &str,
        binding: &CachedBinding,
    ) -> Result<(), Self::Error> {
        self.lock()
            .entry(conversation_sid.to_owned())
            .or_default()
            .insert(participant_sid.to_owned(), binding.clone());
        Ok(())
    }

    fn removed(&self, conversation_sid: &str, participant_sid: &str) -> Result<(), Self::Error> {
        let mut all = self.lock();
        if let Some(c) = all.get_mut(conversation_sid) {
            c.remove(participant_sid);
            if c.is_empty() {
                all.remove(conversation_sid);
            }
        }
        Ok(())
    }

    fn binding(
        &self,
        conversation_sid: &str,
        participant_sid: &str,
    ) -> Result<Option<CachedBinding>, Self::Error> {
        Ok(self
            .lock()
            .get(conversation_sid)
            .and_then(|c| c.get(participant_sid))
            .cloned())
    }

    fn bindings(&self, conversation_sid: &str) -> Result<Vec<CachedBinding>, Self::Error> {
        let mut out: Vec<CachedBinding> = self
            .lock()
            .get(conversation_sid)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default();
        // A stable order, as a database's ORDER BY gives.
        out.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(out)
    }
}

impl AsyncBindingStore for BindingCache {
    type Error = std::convert::Infallible;

    fn added(
        &self,
        conversation_sid: &str,
        participant_sid: &str,
        binding: &CachedBinding,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send {
        std::future::ready(BindingStore::added(
            self,
            conversation_sid,
            participant_sid,
            binding,
        ))
    }

    fn removed(
        &self,
        conversation_sid: &str,
        participant_sid: &str,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send {
        std::future::ready(BindingStore::removed(
            self,
            conversation_sid,
            participant_sid,
        ))
    }

    fn binding(
        &self,
        conversation_sid: &str,
        participant_sid: &str,
    ) -> impl std::future::Future<Output = Result<Option<CachedBinding>, Self::Error>> + Send {
        std::future::ready(BindingStore::binding(
            self,
            conversation_sid,
            participant_sid,
        ))
    }

    fn bindings(
        &self,
        conversation_sid: &str,
    ) -> impl std::future::Future<Output = Result<Vec<CachedBinding>, Self::Error>> + Send {
        std::future::ready(BindingStore::bindings(self, conversation_sid))
    }
}
