//! SIP URI comparison (RFC 3261 section 19.1.4), for the question digest
//! authentication asks: was this answer made for this request? Phones write
//! the same URI differently (case of the host, an explicit default port, a
//! `transport` parameter, `%`-escapes), and some (sipp among them) put only
//! the server's address in the digest `uri` of a request to `user@server`.

/// A `sip:`/`sips:` URI taken apart for comparison: escapes resolved, the
/// case-insensitive parts lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SipUri {
    secure: bool,
    /// `user[:password]`, compared case-sensitively.
    userinfo: Option<String>,
    host: String,
    port: Option<u16>,
    params: Vec<(String, Option<String>)>,
    headers: Vec<(String, String)>,
}

/// The parameters that never match when only one URI carries them
/// (RFC 3261 section 19.1.4); others in only one URI are ignored.
const BINDING_PARAMS: [&str; 4] = ["user", "ttl", "method", "maddr"];

impl SipUri {
    fn parse(s: &str) -> Option<SipUri> {
        let s = s.trim();
        let (scheme, rest) = s.split_once(':')?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "sip" => false,
            "sips" => true,
            _ => return None,
        };
        // A raw '@' can only end the userinfo: user, password, parameters
        // and headers must escape it.
        let (userinfo, rest) = match rest.split_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(unescape(u)?), r),
            Some(_) => return None,
            None => (None, rest),
        };
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, Some(h)),
            None => (rest, None),
        };
        let mut parts = rest.split(';');
        let hostport = parts.next().unwrap_or_default();
        let (host, port) = split_host_port(hostport)?;
        let mut params = Vec::new();
        for p in parts.filter(|p| !p.is_empty()) {
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n, Some(unescape(v)?.to_ascii_lowercase())),
                None => (p, None),
            };
            params.push((unescape(name)?.to_ascii_lowercase(), value));
        }
        let mut hdrs = Vec::new();
        for h in headers.into_iter().flat_map(|h| h.split('&')) {
            let (n, v) = h.split_once('=').unwrap_or((h, ""));
            hdrs.push((unescape(n)?.to_ascii_lowercase(), unescape(v)?));
        }
        hdrs.sort();
        Some(SipUri {
            secure,
            userinfo,
            host,
            port,
            params,
            headers: hdrs,
        })
    }

    fn param(&self, name: &str) -> Option<&Option<String>> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.secure { 5061 } else { 5060 })
    }

    /// RFC 3261 section 19.1.4, with one leniency: an omitted port equals
    /// the scheme's default port, since phones add or drop `:5060` freely
    /// and both name the same server.
    fn equivalent(&self, other: &SipUri) -> bool {
        if self.secure != other.secure
            || self.userinfo != other.userinfo
            || self.host != other.host
            || self.port_or_default() != other.port_or_default()
            || self.headers != other.headers
        {
            return false;
        }
        let (a, b) = (self, other);
        let in_both_agree = a
            .params
            .iter()
            .all(|(n, v)| b.param(n).is_none_or(|w| w == v));
        let binding_in_one = BINDING_PARAMS
            .iter()
            .any(|n| a.param(n).is_some() != b.param(n).is_some());
        in_both_agree && !binding_in_one
    }

    /// This URI without its user: the server the request was sent to.
    fn server(&self) -> SipUri {
        SipUri {
            userinfo: None,
            params: self
                .params
                .iter()
                .filter(|(n, _)| n != "user")
                .cloned()
                .collect(),
            ..self.clone()
        }
    }
}

/// Whether a digest answer whose `uri` parameter is `digest_uri` was made
/// for a request to `request_uri` (RFC 2617 section 3.2.2.5). True when the
/// two are equivalent SIP URIs, or when `digest_uri` has no user part and
/// names the very server of `request_uri` (same scheme, host and port), as
/// sipp and some phones write it. A URI naming another user, host or port
/// never matches. Non-SIP URIs must match ignoring case.
pub fn digest_uri_matches(digest_uri: &str, request_uri: &str) -> bool {
    match (SipUri::parse(digest_uri), SipUri::parse(request_uri)) {
        (Some(d), Some(r)) => {
            d.equivalent(&r) || (d.userinfo.is_none() && d.equivalent(&r.server()))
        }
        _ => digest_uri.trim().eq_ignore_ascii_case(request_uri.trim()),
    }
}

/// `host[:port]`, the host lowercased (IPv6 references keep brackets).
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{h}]"), port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if host.is_empty() || host.contains(['%', ' ', '\t']) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// Resolves `%XX` escapes; `None` for a malformed escape or non-UTF-8.
pub(crate) fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_3261_equivalent_pairs_match() {
        // RFC 3261 section 19.1.4's examples of equivalent URIs.
        for (a, b) in [
            (
                "sip:%61lice@atlanta.com;transport=TCP",
                "sip:alice@AtLanTa.CoM;Transport=tcp",
            ),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
            ),
            (
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
            ),
        ] {
            assert!(digest_uri_matches(a, b), "{a} vs {b}");
            assert!(digest_uri_matches(b, a), "{b} vs {a}");
        }
    }

    #[test]
    fn the_rfc_3261_different_pairs_do_not_match() {
        // RFC 3261 section 19.1.4's examples of URIs that differ.
        for (a, b) in [
            (
                "SIP:ALICE@AtLanTa.CoM;Transport=udp",
                "sip:alice@AtLanTa.CoM;Transport=UDP",
            ),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;user=phone"),
            (
                "sip:bob@biloxi.com:6000;transport=tcp",
                "sip:bob@biloxi.com",
            ),
            (
                "sip:carol@chicago.com",
                "sip:carol@chicago.com?Subject=next%20meeting",
            ),
            ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
            ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
        ] {
            assert!(!digest_uri_matches(a, b), "{a} vs {b}");
        }
    }

    #[test]
    fn an_explicit_default_port_names_the_same_server() {
        assert!(digest_uri_matches("sip:pbx.test:5060", "sip:pbx.test"));
        assert!(digest_uri_matches("sips:pbx.test", "sips:pbx.test:5061"));
        assert!(!digest_uri_matches("sips:pbx.test:5060", "sips:pbx.test"));
        assert!(digest_uri_matches(
            "sip:[2001:db8::1]",
            "sip:[2001:DB8::1]:5060"
        ));
    }

    #[test]
    fn the_servers_own_address_answers_for_a_request_to_one_of_its_users() {
        // What sipp puts in the digest uri of an INVITE to 202@server.
        assert!(digest_uri_matches(
            "sip:127.0.0.1:5070",
            "sip:202@127.0.0.1:5070"
        ));
        assert!(digest_uri_matches(
            "sip:127.0.0.1:5070",
            "sip:202@127.0.0.1:5070;user=phone;transport=udp"
        ));
        // ... but not for another server, port or scheme.
        assert!(!digest_uri_matches(
            "sip:127.0.0.1:5071",
            "sip:202@127.0.0.1:5070"
        ));
        assert!(!digest_uri_matches(
            "sip:192.0.2.1:5070",
            "sip:202@127.0.0.1:5070"
        ));
        assert!(!digest_uri_matches(
            "sips:127.0.0.1:5070",
            "sip:202@127.0.0.1:5070"
        ));
    }

    #[test]
    fn a_uri_naming_another_user_never_matches() {
        assert!(!digest_uri_matches(
            "sip:203@127.0.0.1",
            "sip:202@127.0.0.1"
        ));
        assert!(!digest_uri_matches(
            "sip:Alice@pbx.test",
            "sip:alice@pbx.test"
        ));
        // A user in the digest uri does not answer for the bare server.
        assert!(!digest_uri_matches("sip:202@pbx.test", "sip:pbx.test"));
        assert!(!digest_uri_matches(
            "sip:202@pbx.test",
            "sip:202@pbx.test;maddr=192.0.2.9"
        ));
    }

    #[test]
    fn malformed_uris_fall_back_to_a_case_insensitive_comparison() {
        assert!(digest_uri_matches("tel:+15551234567", "TEL:+15551234567"));
        assert!(!digest_uri_matches("sip:%zz@pbx.test", "sip:pbx.test"));
        assert!(!digest_uri_matches("sip:pbx.test:99999", "sip:pbx.test"));
    }
}
