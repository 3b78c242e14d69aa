//! HTTP Basic as Twilio's clients send it: the account SID and an auth token, or an API key
//! SID and its secret. Compared as SHA-256 digests in constant time, so neither the length
//! nor a prefix of a secret shows in the timing; never logged.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// Who may call the API.
#[derive(Clone)]
pub(crate) struct Credentials {
    /// (username digest, password digest) pairs.
    accepted: Vec<([u8; 32], [u8; 32])>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} accepted)", self.accepted.len())
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Credentials {
    pub(crate) fn new(account: &str, tokens: &[String], api_keys: &[(String, String)]) -> Self {
        let mut accepted: Vec<_> = tokens
            .iter()
            .map(|t| (digest(account), digest(t)))
            .collect();
        accepted.extend(api_keys.iter().map(|(k, s)| (digest(k), digest(s))));
        Credentials { accepted }
    }

    /// Checks an `Authorization` header. Every pair is compared, so the time does not tell
    /// which one matched.
    pub(crate) fn check(&self, header: Option<&str>) -> Result<(), ApiError> {
        let refused = || ApiError::new(401, 20003, "Authenticate");
        let encoded = header
            .and_then(|h| {
                h.strip_prefix("Basic ")
                    .or_else(|| h.strip_prefix("basic "))
            })
            .ok_or_else(refused)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| refused())?;
        let text = String::from_utf8(decoded).map_err(|_| refused())?;
        let (user, password) = text.split_once(':').ok_or_else(refused)?;
        let (u, p) = (digest(user), digest(password));
        let mut ok = subtle::Choice::from(0);
        for (au, ap) in &self.accepted {
            ok |= au.ct_eq(&u) & ap.ct_eq(&p);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(refused())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn accepts_the_account_or_a_key_and_nothing_else() {
        let c = Credentials::new(
            "AC1",
            &["token".into(), "old".into()],
            &[("SK1".into(), "secret".into())],
        );
        assert!(c.check(Some(&basic("AC1", "token"))).is_ok());
        assert!(c.check(Some(&basic("AC1", "old"))).is_ok());
        assert!(c.check(Some(&basic("SK1", "secret"))).is_ok());
        for bad in [
            basic("AC1", "secret"),
            basic("SK1", "token"),
            basic("AC2", "token"),
            basic("AC1", ""),
            "Bearer token".into(),
            "Basic !!!".into(),
        ] {
            let e = c.check(Some(&bad)).unwrap_err();
            assert_eq!((e.status, e.code), (401, 20003), "{bad}");
        }
        assert_eq!(c.check(None).unwrap_err().code, 20003);
    }
}
