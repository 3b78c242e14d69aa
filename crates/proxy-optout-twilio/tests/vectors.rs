//! Every published test value of Twilio's signature scheme (Twilio's documentation and the official helper libraries' tests), one named test each.

use proxy_optout_twilio::{Form, SignatureError, Validator};

const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

fn docs_params() -> Form<'static> {
    Form::from_pairs([
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ])
}

fn helper_params() -> Form<'static> {
    Form::from_pairs([
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ])
}

fn ok(url: &str, sig: &str, form: &Form<'_>) {
    assert_eq!(
        Validator::new("12345").validate_form(url, Some(sig), form),
        Ok(()),
        "{url} {sig}"
    );
}

#[test]
fn twilio_documentation_example() {
    ok(URL, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", &docs_params());
}

#[test]
fn helper_example_as_is_and_with_any_port_removed() {
    ok(URL, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", &helper_params());
    ok(
        "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
        "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        &helper_params(),
    );
}

#[test]
fn signed_with_443_valid_without_the_port() {
    ok(URL, "kvajT1Ptam85bY51eRf/AJRuM3w=", &helper_params());
    ok(
        "https://mycompany.com:443/myapp.php?foo=1&bar=2",
        "kvajT1Ptam85bY51eRf/AJRuM3w=",
        &helper_params(),
    );
}

#[test]
fn signed_with_80_on_http() {
    ok(
        "http://mycompany.com/myapp.php?foo=1&bar=2",
        "0ZXoZLH/DfblKGATFgpif+LLRf4=",
        &helper_params(),
    );
    ok(
        "http://mycompany.com:80/myapp.php?foo=1&bar=2",
        "0ZXoZLH/DfblKGATFgpif+LLRf4=",
        &helper_params(),
    );
}

#[test]
fn signed_with_a_custom_port() {
    ok(
        "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
        "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
        &helper_params(),
    );
}

#[test]
fn userinfo_in_the_url() {
    ok(
        "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
        "CukzLTc1tT5dXEDIHm/tKBanW10=",
        &helper_params(),
    );
    ok(
        "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
        "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=",
        &helper_params(),
    );
    ok(
        "https://user@mycompany.com/myapp.php?foo=1&bar=2",
        "2YRLlVAflCqxaNicjMpJcSTgzSs=",
        &helper_params(),
    );
}

#[test]
fn repeated_parameters_are_deduplicated_and_sorted() {
    let form = Form::from_pairs([
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]);
    ok(URL, "IK+Dwps556ElfBT0I3Rgjkr1wJU=", &form);
}

#[test]
fn array_parameters_in_either_order() {
    for order in [
        ["+1325xxxxxxx", "+1415xxxxxxx"],
        ["+1415xxxxxxx", "+1325xxxxxxx"],
    ] {
        let form = Form::from_pairs(order.map(|v| ("MessagingBinding.Address", v)));
        ok(URL, "83O6e2vORAoJHUNzJjDWN1jz+BA=", &form);
    }
}

const BODY: &[u8] = br#"{"property": "value", "boolean": true}"#;
const BODY_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";

#[test]
fn json_body_with_query_parameters() {
    let url = format!("{URL}&bodySHA256={BODY_HASH}");
    let v = Validator::new("12345");
    assert_eq!(
        v.validate_json(&url, Some("a9nBmqA0ju/hNViExpshrM61xv4="), BODY),
        Ok(())
    );
    assert!(matches!(
        v.validate_json(
            &url,
            Some("a9nBmqA0ju/hNViExpshrM61xv4="),
            b"{\"property\": \"other\"}"
        ),
        Err(SignatureError::BodyHash { .. })
    ));
}

#[test]
fn json_body_alone() {
    let url = format!("https://mycompany.com/myapp.php?bodySHA256={BODY_HASH}");
    assert_eq!(
        Validator::new("12345").validate_json(&url, Some("y77kIzt2vzLz71DgmJGsen2scGs="), BODY),
        Ok(())
    );
}

#[test]
fn empty_json_body_matches_only_the_443_form() {
    let hash = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    let url = format!("{URL}&bodySHA256={hash}");
    let v = Validator::new("12345");
    // Signed over the :443 form: valid for the URL without a port (the :443 variant is tried)...
    assert_eq!(
        v.validate_json(&url, Some("Ldidvp12m26NI7eqEvxnEpkd9Hc="), b"{}"),
        Ok(())
    );
    // ...and for the :443 URL itself, but not for another port.
    let with_port = format!("https://mycompany.com:443/myapp.php?foo=1&bar=2&bodySHA256={hash}");
    assert_eq!(
        v.validate_json(&with_port, Some("Ldidvp12m26NI7eqEvxnEpkd9Hc="), b"{}"),
        Ok(())
    );
    let other = format!("https://mycompany.com:8443/myapp.php?foo=1&bar=2&bodySHA256={hash}");
    assert!(v
        .validate_json(&other, Some("Ldidvp12m26NI7eqEvxnEpkd9Hc="), b"{}")
        .is_err());
    let http = format!("http://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={hash}");
    assert!(v
        .validate_json(&http, Some("Ldidvp12m26NI7eqEvxnEpkd9Hc="), b"{}")
        .is_err());
    assert!(v
        .validate_json(&other, Some("Ldidvp12m26NI7eqEvxnEpkd9Hc="), b"{}")
        .is_err());
}

#[test]
fn json_body_without_a_hash_in_the_url() {
    let v = Validator::new("12345");
    // Signed over the bare URL, but nothing binds the body: refused.
    let sig = proxy_optout_twilio::sign("12345", URL, &Form::default());
    assert_eq!(
        v.validate_json(URL, Some(&sig), BODY),
        Err(SignatureError::MissingBodyHash)
    );
}

#[test]
fn twilio_node_port_and_quote_cases() {
    let v = Validator::new("s3cr3t");
    let empty = Form::default();
    let sig =
        proxy_optout_twilio::sign("s3cr3t", "https://example.com:443/path?test=param", &empty);
    assert_eq!(
        v.validate_form("https://example.com/path?test=param", Some(&sig), &empty),
        Ok(())
    );
    let sig = proxy_optout_twilio::sign("s3cr3t", "https://example.com/path?test=param", &empty);
    assert_eq!(
        v.validate_form(
            "https://example.com:443/path?test=param",
            Some(&sig),
            &empty
        ),
        Ok(())
    );
    // The URL is hashed as received: a quote and its escape are different URLs to the HMAC,
    // but the helpers accept both spellings; we do as long as the host passes the URL it got.
    let quote = "https://example.com/path?test=param'WithQuote";
    let escaped = "https://example.com/path?test=param%27WithQuote";
    let sig = proxy_optout_twilio::sign("s3cr3t", quote, &empty);
    assert_eq!(v.validate_form(quote, Some(&sig), &empty), Ok(()));
    let sig = proxy_optout_twilio::sign("s3cr3t", escaped, &empty);
    assert_eq!(v.validate_form(escaped, Some(&sig), &empty), Ok(()));
    let sig = proxy_optout_twilio::sign("s3cr3t", "https://example.com/path?test=param", &empty);
    assert_eq!(
        v.validate_form("https://example.com/path?test=param2", Some(&sig), &empty),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn missing_malformed_and_wrong_are_distinct() {
    let v = Validator::new("12345");
    let form = docs_params();
    assert_eq!(
        v.validate_form(URL, None, &form),
        Err(SignatureError::Missing)
    );
    for bad in [
        "",
        "not base64!",
        "AAAA",
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ=AAAA",
    ] {
        assert!(
            matches!(
                v.validate_form(URL, Some(bad), &form),
                Err(SignatureError::Malformed { .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        v.validate_form(URL, Some("1/KCTR6DLpKmkAf8muzZqo1nDgQ="), &form),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        Validator::new("54321").validate_form(URL, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ="), &form),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn secondary_token_during_rotation() {
    let v = Validator::new("new-token").with_token("12345");
    assert_eq!(
        v.validate_form(URL, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ="), &docs_params()),
        Ok(())
    );
}

#[test]
fn shared_key_hmac_sha256() {
    let form = docs_params();
    let sig = proxy_optout_twilio::sign_sha256("shared-secret", URL, &form);
    let v = Validator::new("12345").with_shared_key("KS1", "shared-secret");
    let settings = Some("key=KS1,algorithm=HMAC_SHA256");
    assert_eq!(
        v.validate_with_settings(URL, Some(&sig), settings, &form),
        Ok(())
    );
    // Without the settings header the SHA-256 signature is not an auth-token signature.
    assert!(v.validate_form(URL, Some(&sig), &form).is_err());
    assert_eq!(
        v.validate_with_settings(
            URL,
            Some(&sig),
            Some("key=KS2,algorithm=HMAC_SHA256"),
            &form
        ),
        Err(SignatureError::UnknownKey { id: "KS2".into() })
    );
    assert!(matches!(
        v.validate_with_settings(URL, Some(&sig), Some("key=KS1,algorithm=MD5"), &form),
        Err(SignatureError::Settings { .. })
    ));
    // The auth token's SHA-1 signature does not pass as the shared key's.
    assert!(v
        .validate_with_settings(URL, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ="), settings, &form)
        .is_err());
}
