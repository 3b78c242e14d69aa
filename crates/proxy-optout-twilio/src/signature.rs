//! `X-Twilio-Signature`: the webhook's HMAC over the URL and the sorted POST parameters.
//!
//! We follow Twilio's official helper libraries (twilio-python's `RequestValidator`,
//! twilio-node's `validateRequest`): the URL is hashed exactly as received first, then with the
//! scheme's default port added (when it has none) or with its port removed (when it has one);
//! parameters are sorted by name and a repeated parameter's values are de-duplicated and sorted;
//! the comparison is constant-time. Where the two helpers differ we follow twilio-python:
//! names and values sort by code point (UTF-8 byte order), where twilio-node sorts by UTF-16
//! code unit. The two only disagree for characters outside the Basic Multilingual Plane in
//! parameter names, which Twilio does not send.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::form::Form;

/// A signature that does not authenticate the request. Each is a distinct answer: a host
/// answers 400 for [`Missing`](SignatureError::Missing) and 403 for the others (as twilio-node's
/// middleware does). New variants may be added in minor releases.
///
/// # Example
///
/// ```
/// use proxy_optout_twilio::{Form, SignatureError, Validator};
/// let v = Validator::new("12345");
/// let form = Form::parse(b"From=%2B1A")?;
/// let err = v.validate_form("https://example.com/sms", None, &form).unwrap_err();
/// assert_eq!(err, SignatureError::Missing);
/// assert_eq!(err.status(), 400);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request carries no `X-Twilio-Signature` header.
    #[error("the X-Twilio-Signature header is missing")]
    Missing,
    /// The header is not a base64 HMAC of the expected length.
    #[error("the X-Twilio-Signature header {value:?} is not a base64 HMAC")]
    Malformed {
        /// The header's value.
        value: String,
    },
    /// The signature is well-formed but does not match the URL and parameters under any
    /// configured key.
    #[error("the signature does not match the request under any configured key")]
    Mismatch,
    /// A JSON body's SHA-256 differs from the `bodySHA256` the (signed) URL carries.
    #[error("the body's SHA-256 does not match bodySHA256 {expected:?} in the URL")]
    BodyHash {
        /// The value in the URL.
        expected: String,
    },
    /// A JSON body arrived on a URL without a `bodySHA256` parameter.
    #[error("the URL has no bodySHA256 parameter for a JSON body")]
    MissingBodyHash,
    /// `X-Twilio-Webhooks-Signature-Settings` names a key that is not configured.
    #[error("the signature settings name the key {id:?}, which is not configured")]
    UnknownKey {
        /// The key id.
        id: String,
    },
    /// `X-Twilio-Webhooks-Signature-Settings` is malformed or names another algorithm.
    #[error(
        "the signature settings header {value:?} is malformed or names an unsupported algorithm"
    )]
    Settings {
        /// The header's value.
        value: String,
    },
}

impl SignatureError {
    /// The HTTP status to answer with: 400 for a missing header, 403 otherwise.
    ///
    /// ```
    /// assert_eq!(proxy_optout_twilio::SignatureError::Mismatch.status(), 403);
    /// ```
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            SignatureError::Missing => 400,
            _ => 403,
        }
    }
}

/// A key with its HMAC state already keyed (the padded key hashed once, at configuration),
/// cloned per request.
#[derive(Clone)]
enum Key {
    /// An account auth token: HMAC-SHA1 (the default).
    Token(Hmac<Sha1>),
    /// A customer shared key announced by the settings header: HMAC-SHA256.
    Shared { id: String, mac: Hmac<Sha256> },
}

fn sha1_key(secret: &[u8]) -> Hmac<Sha1> {
    // HMAC takes keys of any length: this cannot fail.
    <Hmac<Sha1> as hmac::digest::KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

fn sha256_key(secret: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

impl std::fmt::Debug for Key {
    // Secrets are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Token(_) => f.write_str("Token(..)"),
            Key::Shared { id, .. } => write!(f, "Shared({id:?})"),
        }
    }
}

/// Validates Twilio webhook signatures under one or more keys: the primary auth token, the
/// secondary during a rotation, and shared HMAC-SHA256 keys. Build once, share everywhere.
///
/// # Example
///
/// Twilio's published example (token `12345`):
///
/// ```
/// use proxy_optout_twilio::{Form, Validator};
///
/// let validator = Validator::new("12345");
/// let form = Form::from_pairs([
///     ("CallSid", "CA1234567890ABCDE"),
///     ("Caller", "+12349013030"),
///     ("Digits", "1234"),
///     ("From", "+12349013030"),
///     ("To", "+18005551212"),
/// ]);
/// let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
/// validator.validate_form(url, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ="), &form)?;
/// assert!(validator.validate_form(url, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ="), &Form::default()).is_err());
/// # Ok::<(), proxy_optout_twilio::SignatureError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Validator {
    keys: Vec<Key>,
}

impl Validator {
    /// A validator for the account's (primary) auth token.
    ///
    /// ```
    /// let v = proxy_optout_twilio::Validator::new("your_auth_token");
    /// # let _ = v;
    /// ```
    pub fn new(auth_token: impl AsRef<[u8]>) -> Self {
        Validator {
            keys: vec![Key::Token(sha1_key(auth_token.as_ref()))],
        }
    }

    /// Also accepts signatures made with another auth token (the secondary token while the
    /// primary is being rotated).
    ///
    /// ```
    /// let v = proxy_optout_twilio::Validator::new("primary").with_token("secondary");
    /// # let _ = v;
    /// ```
    #[must_use]
    pub fn with_token(mut self, auth_token: impl AsRef<[u8]>) -> Self {
        self.keys.push(Key::Token(sha1_key(auth_token.as_ref())));
        self
    }

    /// Also accepts HMAC-SHA256 signatures made with the shared key `id`, used when the request
    /// carries `X-Twilio-Webhooks-Signature-Settings: key=<id>,algorithm=HMAC_SHA256`.
    ///
    /// ```
    /// let v = proxy_optout_twilio::Validator::new("token").with_shared_key("K1", "secret");
    /// # let _ = v;
    /// ```
    #[must_use]
    pub fn with_shared_key(mut self, id: impl Into<String>, secret: impl AsRef<[u8]>) -> Self {
        self.keys.push(Key::Shared {
            id: id.into(),
            mac: sha256_key(secret.as_ref()),
        });
        self
    }

    /// Validates a form-encoded POST: `url` exactly as Twilio requested it (scheme, host,
    /// port, path, query; behind a TLS-terminating proxy, the public URL from configuration,
    /// never one rebuilt from the request), `signature` the `X-Twilio-Signature` header, and
    /// every parameter of the body.
    ///
    /// # Errors
    ///
    /// [`SignatureError`]: missing, malformed or not matching.
    ///
    /// ```
    /// use proxy_optout_twilio::{sign, Form, Validator};
    /// let form = Form::parse(b"From=%2B1A&To=%2B1P&Body=STOP")?;
    /// let sig = sign("token", "https://relay.example/sms", &form);
    /// Validator::new("token").validate_form("https://relay.example/sms", Some(&sig), &form)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn validate_form(
        &self,
        url: &str,
        signature: Option<&str>,
        form: &Form<'_>,
    ) -> Result<(), SignatureError> {
        self.validate_with_settings(url, signature, None, form)
    }

    /// [`validate_form`](Validator::validate_form) with the
    /// `X-Twilio-Webhooks-Signature-Settings` header, if the request has one: it selects the
    /// shared key and HMAC-SHA256.
    ///
    /// # Errors
    ///
    /// [`SignatureError`].
    ///
    /// ```
    /// use proxy_optout_twilio::{sign_sha256, Form, Validator};
    /// let form = Form::parse(b"From=%2B1A")?;
    /// let url = "https://relay.example/sms";
    /// let sig = sign_sha256("s3cr3t", url, &form);
    /// let v = Validator::new("token").with_shared_key("K1", "s3cr3t");
    /// v.validate_with_settings(url, Some(&sig), Some("key=K1,algorithm=HMAC_SHA256"), &form)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn validate_with_settings(
        &self,
        url: &str,
        signature: Option<&str>,
        settings: Option<&str>,
        form: &Form<'_>,
    ) -> Result<(), SignatureError> {
        let params = sorted_params(form);
        self.check(url, signature, settings, &params)
    }

    /// Validates a request with a JSON body: the URL carries `bodySHA256=<hex SHA-256 of the
    /// raw body>`, the signature covers the URL alone, and the body's hash is compared in
    /// constant time.
    ///
    /// # Errors
    ///
    /// [`SignatureError`], including [`MissingBodyHash`](SignatureError::MissingBodyHash) and
    /// [`BodyHash`](SignatureError::BodyHash).
    ///
    /// ```
    /// use proxy_optout_twilio::Validator;
    /// let body = br#"{"property": "value", "boolean": true}"#;
    /// let url = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    /// Validator::new("12345").validate_json(url, Some("a9nBmqA0ju/hNViExpshrM61xv4="), body)?;
    /// # Ok::<(), proxy_optout_twilio::SignatureError>(())
    /// ```
    pub fn validate_json(
        &self,
        url: &str,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        self.check(url, signature, None, &[])?;
        let expected = query_param(url, "bodySHA256").ok_or(SignatureError::MissingBodyHash)?;
        let actual = hex_lower(&Sha256::digest(body));
        if constant_time_eq(actual.as_bytes(), expected.to_ascii_lowercase().as_bytes()) {
            Ok(())
        } else {
            Err(SignatureError::BodyHash {
                expected: expected.to_owned(),
            })
        }
    }

    /// Validates a GET request (the parameters are in the URL, nothing is appended).
    ///
    /// # Errors
    ///
    /// [`SignatureError`].
    ///
    /// ```
    /// use proxy_optout_twilio::{Form, Validator};
    /// let v = Validator::new("12345");
    /// assert!(v.validate_get("https://example.com/sms?From=%2B1A", Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA=")).is_err());
    /// ```
    pub fn validate_get(&self, url: &str, signature: Option<&str>) -> Result<(), SignatureError> {
        self.check(url, signature, None, &[])
    }

    fn check(
        &self,
        url: &str,
        signature: Option<&str>,
        settings: Option<&str>,
        params: &[(&str, &str)],
    ) -> Result<(), SignatureError> {
        let header = signature.ok_or(SignatureError::Missing)?;
        let malformed = || SignatureError::Malformed {
            value: header.to_owned(),
        };
        let provided = STANDARD.decode(header.trim()).map_err(|_| malformed())?;
        let candidates: Vec<&Key> = match settings {
            None => self
                .keys
                .iter()
                .filter(|k| matches!(k, Key::Token(_)))
                .collect(),
            Some(value) => {
                let id = shared_key_id(value).ok_or_else(|| SignatureError::Settings {
                    value: value.to_owned(),
                })?;
                let keys: Vec<&Key> = self
                    .keys
                    .iter()
                    .filter(|k| matches!(k, Key::Shared { id: i, .. } if i == id))
                    .collect();
                if keys.is_empty() {
                    return Err(SignatureError::UnknownKey { id: id.to_owned() });
                }
                keys
            }
        };
        let expected_len = match candidates.first() {
            Some(Key::Shared { .. }) => 32,
            _ => 20,
        };
        if provided.len() != expected_len {
            return Err(malformed());
        }
        // The URL as received first; the port variants only when it does not match.
        if candidates.iter().any(|k| verify(k, url, params, &provided)) {
            return Ok(());
        }
        for variant in [with_default_port(url), without_port(url)]
            .into_iter()
            .flatten()
        {
            for key in &candidates {
                if verify(key, &variant, params, &provided) {
                    return Ok(());
                }
            }
        }
        Err(SignatureError::Mismatch)
    }
}

fn verify(key: &Key, url: &str, params: &[(&str, &str)], provided: &[u8]) -> bool {
    fn feed<M: Mac>(mut mac: M, url: &str, params: &[(&str, &str)], provided: &[u8]) -> bool {
        mac.update(url.as_bytes());
        for (n, v) in params {
            mac.update(n.as_bytes());
            mac.update(v.as_bytes());
        }
        // `verify_slice` compares in constant time.
        mac.verify_slice(provided).is_ok()
    }
    match key {
        Key::Token(mac) => feed(mac.clone(), url, params, provided),
        Key::Shared { mac, .. } => feed(mac.clone(), url, params, provided),
    }
}

/// The parameters as the helpers sign them: sorted by name, each name's values de-duplicated
/// and sorted.
fn sorted_params<'f>(form: &'f Form<'_>) -> Vec<(&'f str, &'f str)> {
    let mut params: Vec<(&str, &str)> = form.pairs().collect();
    params.sort_unstable();
    params.dedup();
    params
}

/// The string Twilio signs: the URL, then each sorted parameter's name and value.
///
/// ```
/// use proxy_optout_twilio::{signed_string, Form};
/// let form = Form::from_pairs([("b", "2"), ("a", "1"), ("a", "0")]);
/// assert_eq!(signed_string("https://x.example/", &form), "https://x.example/a0a1b2");
/// ```
#[must_use]
pub fn signed_string(url: &str, form: &Form<'_>) -> String {
    let mut s = url.to_owned();
    for (n, v) in sorted_params(form) {
        s.push_str(n);
        s.push_str(v);
    }
    s
}

/// Signs a form the way Twilio does (HMAC-SHA1 with the auth token, base64): for tests, and
/// for clients that replay webhooks.
///
/// ```
/// use proxy_optout_twilio::{sign, Form};
/// let form = Form::from_pairs([("Digits", "1234")]);
/// assert_eq!(sign("12345", "https://x.example/", &form).len(), 28);
/// ```
#[must_use]
pub fn sign(auth_token: &str, url: &str, form: &Form<'_>) -> String {
    let mut mac = sha1_key(auth_token.as_bytes());
    mac.update(signed_string(url, form).as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Signs a form with a shared key and HMAC-SHA256 (the shared-key mode).
///
/// ```
/// use proxy_optout_twilio::{sign_sha256, Form};
/// assert_eq!(sign_sha256("k", "https://x.example/", &Form::default()).len(), 44);
/// ```
#[must_use]
pub fn sign_sha256(secret: &str, url: &str, form: &Form<'_>) -> String {
    let mut mac = sha256_key(secret.as_bytes());
    mac.update(signed_string(url, form).as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// `key=<id>,algorithm=HMAC_SHA256` → the id.
fn shared_key_id(settings: &str) -> Option<&str> {
    let (mut id, mut algorithm) = (None, None);
    for part in settings.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "key" => id = Some(v.trim()),
            "algorithm" => algorithm = Some(v.trim()),
            _ => {}
        }
    }
    match (id, algorithm) {
        (Some(id), Some("HMAC_SHA256")) if !id.is_empty() => Some(id),
        _ => None,
    }
}

/// The URL split where the authority is: `(scheme, "://", authority, rest)`.
fn split_authority(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    Some((scheme, &after[..end], &after[end..]))
}

/// The authority's port, if it has one: after the last `:` that follows the userinfo and any
/// IPv6 literal.
fn port_span(authority: &str) -> Option<usize> {
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host = &authority[host_start..];
    let after_literal = host.rfind(']').map_or(0, |i| i + 1);
    host[after_literal..]
        .rfind(':')
        .map(|i| host_start + after_literal + i)
}

/// The URL with the scheme's default port added (https 443, http 80), if it has no port.
fn with_default_port(url: &str) -> Option<String> {
    let (scheme, authority, rest) = split_authority(url)?;
    if port_span(authority).is_some() {
        return None;
    }
    let port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    Some(format!("{scheme}://{authority}:{port}{rest}"))
}

/// The URL without its port, if it has one.
fn without_port(url: &str) -> Option<String> {
    let (scheme, authority, rest) = split_authority(url)?;
    let colon = port_span(authority)?;
    Some(format!("{scheme}://{}{rest}", &authority[..colon]))
}

/// The raw value of the first query parameter `name` (no decoding: `bodySHA256` is hex).
fn query_param<'u>(url: &'u str, name: &str) -> Option<&'u str> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_variants() {
        let cases = [
            (
                "https://a.example/p?q=1",
                Some("https://a.example:443/p?q=1"),
                None,
            ),
            ("http://a.example", Some("http://a.example:80"), None),
            (
                "https://a.example:8443/p",
                None,
                Some("https://a.example/p"),
            ),
            (
                "https://u:p@a.example/p",
                Some("https://u:p@a.example:443/p"),
                None,
            ),
            (
                "https://u:p@a.example:1/p",
                None,
                Some("https://u:p@a.example/p"),
            ),
            ("https://[::1]:8080/p", None, Some("https://[::1]/p")),
            ("https://[::1]/p", Some("https://[::1]:443/p"), None),
            (
                "https://a.example?x=a:b",
                Some("https://a.example:443?x=a:b"),
                None,
            ),
        ];
        for (url, add, remove) in cases {
            assert_eq!(with_default_port(url).as_deref(), add, "{url}");
            assert_eq!(without_port(url).as_deref(), remove, "{url}");
        }
    }

    #[test]
    fn settings_header() {
        assert_eq!(shared_key_id("key=K1,algorithm=HMAC_SHA256"), Some("K1"));
        assert_eq!(
            shared_key_id(" algorithm=HMAC_SHA256 , key=K1 "),
            Some("K1")
        );
        assert_eq!(shared_key_id("key=K1,algorithm=HMAC_SHA1"), None);
        assert_eq!(shared_key_id("key=K1"), None);
        assert_eq!(shared_key_id("garbage"), None);
    }
}
