//! The inbound-message webhook (and the status callback) as typed values over a parsed form.

use proxy_optout::{Category, Feedback, Inbound};

use crate::form::Form;

/// A webhook form the relay cannot use. Each names the offending field and value. New variants
/// may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::{Form, InboundMessage, WebhookError};
/// let form = Form::parse(b"To=%2B1P&Body=hi")?;
/// assert_eq!(InboundMessage::from_form(&form).unwrap_err(), WebhookError::Missing { field: "From" });
/// # Ok::<(), proxy_optout_twilio::FormError>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// A required parameter is absent.
    #[error("the webhook has no {field} parameter")]
    Missing {
        /// The parameter's name.
        field: &'static str,
    },
    /// `NumMedia` (or `ErrorCode`) is not a number.
    #[error("the webhook's {field} {value:?} is not a number")]
    NotANumber {
        /// The parameter's name.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// `OptOutType` is none of STOP, START, HELP.
    #[error("the webhook's OptOutType {value:?} is not STOP, START or HELP")]
    OptOutType {
        /// Its value.
        value: String,
    },
}

impl WebhookError {
    /// The HTTP status to answer a webhook with: always 400 (a field Twilio always sends is missing or malformed).
    ///
    /// ```
    /// use proxy_optout_twilio::{Form, InboundMessage};
    /// let form = Form::parse(b"To=%2B1P&Body=hi")?;
    /// assert_eq!(InboundMessage::from_form(&form).unwrap_err().status(), 400);
    /// # Ok::<(), proxy_optout_twilio::FormError>(())
    /// ```
    #[must_use]
    pub fn status(&self) -> u16 {
        400
    }

    /// Whether the same request can succeed later: never, the request itself is wrong.
    ///
    /// ```
    /// use proxy_optout_twilio::{Form, InboundMessage};
    /// let form = Form::parse(b"To=%2B1P&Body=hi")?;
    /// assert!(!InboundMessage::from_form(&form).unwrap_err().is_retryable());
    /// # Ok::<(), proxy_optout_twilio::FormError>(())
    /// ```
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Twilio's inbound-message webhook: the parameters the relay
/// needs, borrowed from the form. Unknown parameters are ignored here but were signed, so
/// validate the signature over the whole [`Form`] first.
///
/// # Example
///
/// ```
/// use proxy_optout::Channel;
/// use proxy_optout_twilio::{Form, InboundMessage};
///
/// let raw = b"MessageSid=SM0123&From=whatsapp%3A%2B15551110001&To=whatsapp%3A%2B15550000100\
/// &Body=STOP&NumMedia=0&FromCity=&ProfileName=Ana";
/// let form = Form::parse(raw)?;
/// let msg = InboundMessage::from_form(&form)?;
/// let inbound = msg.inbound();
/// assert_eq!(inbound.channel(), Channel::WhatsApp);
/// assert_eq!(inbound.message_id(), Some("SM0123"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboundMessage<'f> {
    from: &'f str,
    to: &'f str,
    body: &'f str,
    message_sid: Option<&'f str>,
    account_sid: Option<&'f str>,
    num_media: u32,
    opt_out_type: Option<Category>,
}

fn number(form: &Form<'_>, field: &'static str) -> Result<Option<u32>, WebhookError> {
    form.get(field)
        .map(|v| {
            v.parse().map_err(|_| WebhookError::NotANumber {
                field,
                value: v.to_owned(),
            })
        })
        .transpose()
}

impl<'f> InboundMessage<'f> {
    /// Reads the webhook's parameters. `Body` may be absent (an MMS with media only) and is
    /// then empty; `From` and `To` are required.
    ///
    /// # Errors
    ///
    /// [`WebhookError`] naming the parameter.
    ///
    /// ```
    /// use proxy_optout_twilio::{Form, InboundMessage};
    /// let form = Form::parse(b"From=%2B1A&To=%2B1P&NumMedia=two")?;
    /// assert!(InboundMessage::from_form(&form).is_err());
    /// # Ok::<(), proxy_optout_twilio::FormError>(())
    /// ```
    pub fn from_form(form: &'f Form<'_>) -> Result<Self, WebhookError> {
        let from = form
            .get("From")
            .ok_or(WebhookError::Missing { field: "From" })?;
        let to = form
            .get("To")
            .ok_or(WebhookError::Missing { field: "To" })?;
        let opt_out_type = form
            .get("OptOutType")
            .filter(|v| !v.is_empty())
            .map(|v| {
                Category::from_opt_out_type(v).map_err(|_| WebhookError::OptOutType {
                    value: v.to_owned(),
                })
            })
            .transpose()?;
        Ok(InboundMessage {
            from,
            to,
            body: form.get("Body").unwrap_or(""),
            message_sid: form.get("MessageSid").or_else(|| form.get("SmsSid")),
            account_sid: form.get("AccountSid"),
            num_media: number(form, "NumMedia")?.unwrap_or(0),
            opt_out_type,
        })
    }

    /// The sender (`From`), with its channel prefix.
    ///
    /// ```
    /// # use proxy_optout_twilio::{Form, InboundMessage};
    /// let form = Form::parse(b"From=%2B1A&To=%2B1P")?;
    /// assert_eq!(InboundMessage::from_form(&form)?.from(), "+1A");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn from(&self) -> &'f str {
        self.from
    }

    /// The proxy number (`To`).
    ///
    /// ```
    /// # use proxy_optout_twilio::{Form, InboundMessage};
    /// let form = Form::parse(b"From=%2B1A&To=%2B1P")?;
    /// assert_eq!(InboundMessage::from_form(&form)?.to(), "+1P");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn to(&self) -> &'f str {
        self.to
    }

    /// The text, exactly as sent (never trimmed).
    ///
    /// ```
    /// # use proxy_optout_twilio::{Form, InboundMessage};
    /// let form = Form::parse(b"From=%2B1A&To=%2B1P&Body=+Stop%0A")?;
    /// assert_eq!(InboundMessage::from_form(&form)?.body(), " Stop\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn body(&self) -> &'f str {
        self.body
    }

    /// `MessageSid` (or the deprecated `SmsSid`).
    ///
    /// ```
    /// # use proxy_optout_twilio::{Form, InboundMessage};
    /// let form = Form::parse(b"From=%2B1A&To=%2B1P&SmsSid=SM1")?;
    /// assert_eq!(InboundMessage::from_form(&form)?.message_sid(), Some("SM1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn message_sid(&self) -> Option<&'f str> {
        self.message_sid
    }

    /// `AccountSid`.
    ///
    /// ```
    /// # use proxy_optout_twilio::{Form, InboundMessage};
    /// let form = Form::parse(b"From=%2B1A&To=%2B1P&AccountSid=AC1")?;
    /// assert_eq!(InboundMessage::from_form(&form)?.account_sid(), Some("AC1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn account_sid(&self) -> Option<&'f str> {
        self.account_sid
    }

    /// `NumMedia` (0 when absent).
    ///
    /// ```
    /// # use proxy_optout_twilio::{Form, InboundMessage};
    /// let form = Form::parse(b"From=%2B1A&To=%2B1P&NumMedia=2")?;
    /// assert_eq!(InboundMessage::from_form(&form)?.num_media(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn num_media(&self) -> u32 {
        self.num_media
    }

    /// The platform's `OptOutType` verdict (Advanced Opt-Out), if present.
    ///
    /// ```
    /// # use proxy_optout::Category;
    /// # use proxy_optout_twilio::{Form, InboundMessage};
    /// let form = Form::parse(b"From=%2B1A&To=%2B1P&Body=BASTA&OptOutType=STOP")?;
    /// assert_eq!(InboundMessage::from_form(&form)?.opt_out_type(), Some(Category::OptOut));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn opt_out_type(&self) -> Option<Category> {
        self.opt_out_type
    }

    /// The message for the relay: channel from the address prefix, MMS when it has media,
    /// with the message id and the platform's verdict.
    ///
    /// ```
    /// use proxy_optout::Channel;
    /// use proxy_optout_twilio::{Form, InboundMessage};
    /// let form = Form::parse(b"From=%2B1A&To=%2B1P&Body=stop&NumMedia=1&MessageSid=MM1")?;
    /// let inbound = InboundMessage::from_form(&form)?.inbound();
    /// assert_eq!(inbound.channel(), Channel::Mms);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn inbound(&self) -> Inbound<'f> {
        let mut inbound = Inbound::new(self.from, self.to, self.body).with_media(self.num_media);
        if let Some(id) = self.message_sid {
            inbound = inbound.with_message_id(id);
        }
        if let Some(verdict) = self.opt_out_type {
            inbound = inbound.with_opt_out_type(verdict);
        }
        inbound
    }
}

/// A message status callback (`MessageStatus`, `ErrorCode`, `From`, `To`, `MessageSid`).
/// Through a Messaging Service, a send to an opted-out pair may be accepted and fail later with
/// `ErrorCode=21610` here.
///
/// # Example
///
/// ```
/// use proxy_optout::Feedback;
/// use proxy_optout_twilio::{Form, StatusCallback};
/// let form = Form::parse(b"MessageSid=SM9&MessageStatus=undelivered&ErrorCode=21610&From=%2B1P&To=%2B1A")?;
/// let cb = StatusCallback::from_form(&form)?;
/// assert_eq!(cb.feedback(), Some(Feedback::Refused { from: "+1P", to: "+1A" }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusCallback<'f> {
    message_sid: Option<&'f str>,
    status: &'f str,
    error_code: Option<u32>,
    from: Option<&'f str>,
    to: Option<&'f str>,
}

impl<'f> StatusCallback<'f> {
    /// Reads a status callback.
    ///
    /// # Errors
    ///
    /// [`WebhookError`] when `MessageStatus` is absent or `ErrorCode` is not a number.
    ///
    /// ```
    /// use proxy_optout_twilio::{Form, StatusCallback};
    /// let form = Form::parse(b"MessageStatus=delivered")?;
    /// assert_eq!(StatusCallback::from_form(&form)?.status(), "delivered");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_form(form: &'f Form<'_>) -> Result<Self, WebhookError> {
        let status = form
            .get("MessageStatus")
            .or_else(|| form.get("SmsStatus"))
            .ok_or(WebhookError::Missing {
                field: "MessageStatus",
            })?;
        let error_code = match form.get("ErrorCode").filter(|v| !v.is_empty()) {
            Some(_) => number(form, "ErrorCode")?,
            None => None,
        };
        Ok(StatusCallback {
            message_sid: form.get("MessageSid"),
            status,
            error_code,
            from: form.get("From"),
            to: form.get("To"),
        })
    }

    /// `MessageStatus`.
    ///
    /// ```
    /// # use proxy_optout_twilio::{Form, StatusCallback};
    /// let form = Form::parse(b"MessageStatus=failed")?;
    /// assert_eq!(StatusCallback::from_form(&form)?.status(), "failed");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn status(&self) -> &'f str {
        self.status
    }

    /// `ErrorCode`, if any.
    ///
    /// ```
    /// # use proxy_optout_twilio::{Form, StatusCallback};
    /// let form = Form::parse(b"MessageStatus=failed&ErrorCode=30003")?;
    /// assert_eq!(StatusCallback::from_form(&form)?.error_code(), Some(30003));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn error_code(&self) -> Option<u32> {
        self.error_code
    }

    /// `MessageSid`, if any.
    ///
    /// ```
    /// # use proxy_optout_twilio::{Form, StatusCallback};
    /// let form = Form::parse(b"MessageStatus=sent&MessageSid=SM1")?;
    /// assert_eq!(StatusCallback::from_form(&form)?.message_sid(), Some("SM1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn message_sid(&self) -> Option<&'f str> {
        self.message_sid
    }

    /// The ledger feedback this callback carries: a `failed` or `undelivered` send with error
    /// 21610 means the pair (`From`, `To`) is opted out on the platform.
    ///
    /// ```
    /// # use proxy_optout_twilio::{Form, StatusCallback};
    /// let form = Form::parse(b"MessageStatus=failed&ErrorCode=30003&From=%2B1P&To=%2B1A")?;
    /// assert_eq!(StatusCallback::from_form(&form)?.feedback(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn feedback(&self) -> Option<Feedback<'f>> {
        let failed = matches!(self.status, "failed" | "undelivered");
        match (failed, self.error_code, self.from, self.to) {
            (true, Some(crate::rest::UNSUBSCRIBED_RECIPIENT), Some(from), Some(to)) => {
                Some(Feedback::Refused { from, to })
            }
            _ => None,
        }
    }
}
