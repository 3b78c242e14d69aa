//! Twilio on the wire for [`proxy_optout`]: webhook signature validation, inbound parsing,
//! TwiML responses and 21610 feedback. No I/O and no HTTP framework: hand it the raw URL,
//! headers and body from axum, actix, hyper or a Lambda.
//!
//! ```
//! use proxy_optout::{Inbound, MemoryStore, Relay};
//! use proxy_optout_twilio::{render, sign, Form, ForwardVia, InboundMessage, Validator};
//!
//! // What Twilio sends (signed here the way Twilio signs).
//! let url = "https://relay.example/twilio/sms";
//! let raw = b"MessageSid=SM1&From=%2B15551110001&To=%2B15550000100&Body=STOP&NumMedia=0";
//! let signature = sign("auth_token", url, &Form::parse(raw)?);
//!
//! // The handler: validate, parse, relay, answer.
//! let validator = Validator::new("auth_token");
//! let relay = Relay::new(MemoryStore::new());
//! let form = Form::parse(raw)?;
//! validator.validate_form(url, Some(&signature), &form)?;
//! let message = InboundMessage::from_form(&form)?;
//! let outcome = relay.handle(&message.inbound())?;
//! let twiml = render(&outcome, ForwardVia::Rest);
//! assert!(twiml.contains("You have successfully been unsubscribed"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod conversations;
mod form;
mod masking;
mod rest;
mod signature;
mod twiml;
mod webhook;

pub use conversations::{
    Binding, BindingKind, ConversationAdd, ConversationsError, ConversationsEvent, DeliveryStatus,
    DeliveryUpdated, MessageAdd, ParticipantEvent, PreEventAnswer, Source,
};
pub use form::{Form, FormError, MAX_FORM_BYTES};
pub use masking::{
    answer_for, answer_without_binding, opted_out, AsyncBindingStore, BindingCache, BindingStore,
    CachedBinding, ConversationRoute,
};
pub use rest::{feedback_from_send, RestError, SendRequest, UNSUBSCRIBED_RECIPIENT};
pub use signature::{sign, sign_sha256, signed_string, SignatureError, Validator};
pub use twiml::{escape_into, render, render_messages, ForwardVia, CONTENT_TYPE, EMPTY};
pub use webhook::{InboundMessage, StatusCallback, WebhookError};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
