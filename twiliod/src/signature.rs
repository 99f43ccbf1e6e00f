//! `X-Twilio-Signature` (CONTRACT.md §1), pure: no I/O, no clock.
//!
//! Form webhooks: base64(HMAC-SHA1(auth_token, url + sorted(name+value)...)).
//! JSON webhooks: the URL carries `bodySHA256=<hex sha256 of the raw body>`
//! and only the URL is signed. Twilio is inconsistent about the port in the
//! signed URL, so a signature is accepted over the URL with the port removed
//! or with the scheme's default port added (twilio-node/-go/-php behaviour).
//!
//! The URL must be the *public* one Twilio requested (built from the
//! `system.public_url` setting), never the internal Host webd forwarded to.
//! URL surgery is done on strings: `url::Url` would lowercase the host and
//! re-encode the query, and Twilio signs exactly what it was configured with.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Computes the signature Twilio sends for a form POST to `url` with `params`.
/// Parameters are sorted by name, then value (repeated keys keep every value).
pub fn compute(url: &str, params: &[(String, String)], auth_token: &str) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(&b.1)));
    let mut data = String::with_capacity(url.len() + 64 * sorted.len());
    data.push_str(url);
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    hmac_b64(auth_token, &data)
}

/// True when `signature` matches the form POST to `url` with `params`, with
/// or without the URL's port.
pub fn validate(url: &str, params: &[(String, String)], signature: &str, auth_token: &str) -> bool {
    if auth_token.is_empty() || signature.is_empty() {
        return false;
    }
    url_variants(url)
        .iter()
        .any(|u| constant_time_eq(&compute(u, params, auth_token), signature))
}

/// True when `signature` matches a JSON-body webhook: `url` must carry
/// `bodySHA256` equal to the SHA-256 hex of `body`, and the signature is over
/// the URL alone (either port form).
pub fn validate_json(url: &str, body: &[u8], signature: &str, auth_token: &str) -> bool {
    let Some(expected) = query_param(url, "bodySHA256") else {
        return false;
    };
    let actual = hex::encode(Sha256::digest(body));
    if !constant_time_eq(&actual, &expected.to_ascii_lowercase()) {
        return false;
    }
    validate(url, &[], signature, auth_token)
}

/// The URL with the port removed and with the default port added (or as
/// given when it already has one). Both forms are what Twilio may have signed.
pub fn url_variants(url: &str) -> [String; 2] {
    [without_port(url), with_port(url)]
}

/// `https://h:443/p` -> `https://h/p`; unchanged when there is no port.
pub fn without_port(url: &str) -> String {
    match split_authority(url) {
        Some((scheme, userinfo, host, Some(_port), rest)) => {
            format!("{scheme}://{userinfo}{host}{rest}")
        }
        _ => url.to_owned(),
    }
}

/// `https://h/p` -> `https://h:443/p` (`:80` for http); unchanged when a port
/// is present or the scheme is unknown.
pub fn with_port(url: &str) -> String {
    match split_authority(url) {
        Some((scheme, userinfo, host, None, rest)) => {
            let port = match scheme.to_ascii_lowercase().as_str() {
                "https" => "443",
                "http" => "80",
                _ => return url.to_owned(),
            };
            format!("{scheme}://{userinfo}{host}:{port}{rest}")
        }
        _ => url.to_owned(),
    }
}

/// Splits `scheme://[userinfo@]host[:port]rest` without normalising case.
fn split_authority(url: &str) -> Option<(&str, &str, &str, Option<&str>, &str)> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    // IPv6 literal: the port colon comes after the closing bracket.
    let port_colon = if hostport.starts_with('[') {
        hostport
            .find(']')
            .and_then(|i| hostport[i..].find(':').map(|j| i + j))
    } else {
        hostport.rfind(':')
    };
    match port_colon {
        Some(i) if hostport[i + 1..].bytes().all(|b| b.is_ascii_digit()) => Some((
            scheme,
            userinfo,
            &hostport[..i],
            Some(&hostport[i + 1..]),
            rest,
        )),
        _ => Some((scheme, userinfo, hostport, None, rest)),
    }
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn hmac_b64(key: &str, data: &str) -> String {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let mut mac = match Hmac::<Sha1>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn the_documented_example_signature_is_reproduced() {
        // twilio.com/docs/usage/webhooks/webhooks-security and every helper
        // library's test suite use this exact request and signature.
        assert_eq!(
            compute(URL, &params(), TOKEN),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(validate(
            URL,
            &params(),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
            TOKEN
        ));
    }

    #[test]
    fn a_wrong_token_param_or_url_fails() {
        let sig = compute(URL, &params(), TOKEN);
        assert!(!validate(URL, &params(), &sig, "54321"));
        let mut p = params();
        p[0].1.push('X');
        assert!(!validate(URL, &p, &sig, TOKEN));
        assert!(!validate(
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &params(),
            &sig,
            TOKEN
        ));
        assert!(!validate(URL, &params(), "", TOKEN));
        assert!(!validate(URL, &params(), &sig, ""));
    }

    #[test]
    fn parameter_order_does_not_matter_and_empty_values_count() {
        let mut p = params();
        p.reverse();
        p.push(("CallerName".into(), String::new()));
        let sig = compute(URL, &p, TOKEN);
        let mut sorted = p.clone();
        sorted.sort();
        assert_eq!(compute(URL, &sorted, TOKEN), sig);
        assert_ne!(compute(URL, &params(), TOKEN), sig);
    }

    #[test]
    fn repeated_keys_are_sorted_by_value_too() {
        let a = vec![
            ("MediaUrl".to_string(), "b".to_string()),
            ("MediaUrl".to_string(), "a".to_string()),
        ];
        let b = vec![
            ("MediaUrl".to_string(), "a".to_string()),
            ("MediaUrl".to_string(), "b".to_string()),
        ];
        assert_eq!(compute(URL, &a, TOKEN), compute(URL, &b, TOKEN));
    }

    #[test]
    fn a_signature_made_without_the_port_validates_against_a_url_with_it() {
        let sig = compute(URL, &params(), TOKEN);
        assert!(validate(
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &params(),
            &sig,
            TOKEN
        ));
    }

    #[test]
    fn a_signature_made_with_the_default_port_validates_against_a_url_without_it() {
        let sig = compute(
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &params(),
            TOKEN,
        );
        assert!(validate(URL, &params(), &sig, TOKEN));
        let http_sig = compute("http://mycompany.com:80/x", &params(), TOKEN);
        assert!(validate(
            "http://mycompany.com/x",
            &params(),
            &http_sig,
            TOKEN
        ));
    }

    #[test]
    fn a_non_default_port_is_kept_or_removed_but_never_swapped() {
        let sig = compute("https://mycompany.com:8443/x", &params(), TOKEN);
        assert!(validate(
            "https://mycompany.com:8443/x",
            &params(),
            &sig,
            TOKEN
        ));
        assert!(!validate(
            "https://mycompany.com:9443/x",
            &params(),
            &sig,
            TOKEN
        ));
    }

    #[test]
    fn host_case_and_userinfo_are_preserved() {
        let upper = "https://user:pass@MyCompany.com/myapp.php?foo=1&bar=2";
        let sig = compute(upper, &params(), TOKEN);
        assert!(validate(upper, &params(), &sig, TOKEN));
        assert!(!validate(
            "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
            &params(),
            &sig,
            TOKEN
        ));
        assert_eq!(
            with_port(upper),
            "https://user:pass@MyCompany.com:443/myapp.php?foo=1&bar=2"
        );
        assert_eq!(
            without_port("https://user:pass@MyCompany.com:443/a?b=c:1"),
            "https://user:pass@MyCompany.com/a?b=c:1"
        );
    }

    #[test]
    fn json_bodies_are_checked_by_body_sha256_and_url_signature() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let hash = hex::encode(Sha256::digest(body));
        let url = format!("https://mycompany.com/myapp?bodySHA256={hash}");
        let sig = compute(&url, &[], TOKEN);
        assert!(validate_json(&url, body, &sig, TOKEN));
        let with_port_url = format!("https://mycompany.com:443/myapp?bodySHA256={hash}");
        assert!(validate_json(&with_port_url, body, &sig, TOKEN));
        assert!(!validate_json(&url, b"{}", &sig, TOKEN));
        let bare = "https://mycompany.com/myapp";
        assert!(!validate_json(
            bare,
            body,
            &compute(bare, &[], TOKEN),
            TOKEN
        ));
    }
}
