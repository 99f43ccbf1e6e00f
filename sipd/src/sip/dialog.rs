//! Requests sipd sends inside a dialog it keeps (RFC 3261 section 12.2.1):
//! the Request-URI and Route header from the remote target and the route
//! set (loose and strict routers), the CANCEL of a pending INVITE (section
//! 9.1), and the route set a message's Record-Route gives.

use super::method::Method;
use super::msg::{self, Raw, uri_of};

/// A request sipd sends inside a dialog.
pub struct Outgoing<'a> {
    pub method: Method,
    pub target: &'a str,
    pub transport: crate::sip::Transport,
    pub local: &'a str,
    pub branch: &'a str,
    /// Full From / To values, tags included.
    pub from: &'a str,
    pub to: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
    pub route: &'a [String],
    pub extra: &'a [(&'a str, String)],
    pub body: Option<(&'a str, &'a [u8])>,
}

/// The request `o` describes, routed by its route set.
pub fn build_request(o: &Outgoing) -> Vec<u8> {
    // A first route without `lr` is a strict router (RFC 3261 section
    // 12.2.1.1): it becomes the Request-URI, and the remote target goes
    // last in the Route set.
    let strict = o.route.first().filter(|r| {
        !uri_of(r).split(';').any(|p| {
            let p = p.trim().to_ascii_lowercase();
            p == "lr" || p.starts_with("lr=")
        })
    });
    let (target, route): (&str, Vec<String>) = match strict {
        Some(first) => (
            uri_of(first),
            o.route[1..]
                .iter()
                .cloned()
                .chain(std::iter::once(format!("<{}>", o.target)))
                .collect(),
        ),
        None => (o.target, o.route.to_vec()),
    };
    let mut s = format!(
        "{m} {target} SIP/2.0\r\nVia: SIP/2.0/{tr} {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
         From: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {m}\r\n",
        m = o.method,
        tr = o.transport.as_str().to_ascii_uppercase(),
        local = o.local,
        branch = o.branch,
        from = o.from,
        to = o.to,
        cid = o.call_id,
        cseq = o.cseq,
    );
    for r in &route {
        s.push_str(&format!("Route: {r}\r\n"));
    }
    for (n, v) in o.extra {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str("User-Agent: GoSIP\r\n");
    match o.body {
        Some((ct, b)) => {
            s.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                b.len()
            ));
            let mut out = s.into_bytes();
            out.extend_from_slice(b);
            out
        }
        None => {
            s.push_str("Content-Length: 0\r\n\r\n");
            s.into_bytes()
        }
    }
}

/// The Record-Route entries of a message, in order.
pub fn route_set(raw: &Raw) -> Vec<String> {
    raw.all("record-route")
        .flat_map(|v| msg::split_top_level(v, b','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// CANCEL for a pending INVITE: same Request-URI, Via, From, To, Call-ID,
/// CSeq number and Route (RFC 3261 section 9.1).
pub fn cancel_for(invite: &str) -> Vec<u8> {
    let first = invite.split("\r\n").next().unwrap_or_default();
    let uri = first.split(' ').nth(1).unwrap_or_default();
    let mut out = format!("CANCEL {uri} SIP/2.0\r\n");
    for line in invite.split("\r\n").skip(1) {
        let l = line.to_ascii_lowercase();
        if l.starts_with("via:")
            || l.starts_with("from:")
            || l.starts_with("to:")
            || l.starts_with("call-id:")
            || l.starts_with("max-forwards:")
            || l.starts_with("route:")
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if l.starts_with("cseq:") {
            out.push_str(&line.replace(Method::Invite.as_str(), Method::Cancel.as_str()));
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Transport;

    fn request(route: &[String]) -> String {
        let o = Outgoing {
            method: Method::Bye,
            target: "sip:bob@192.0.2.7:5062",
            transport: Transport::Udp,
            local: "198.51.100.1:5060",
            branch: "z9hG4bKx",
            from: "<sip:alice@pbx>;tag=a",
            to: "<sip:bob@pbx>;tag=b",
            call_id: "c1",
            cseq: 2,
            route,
            extra: &[],
            body: None,
        };
        String::from_utf8(build_request(&o)).unwrap()
    }

    #[test]
    fn a_loose_route_keeps_the_remote_target_as_request_uri() {
        let m = request(&["<sip:proxy.test;lr>".to_string()]);
        assert!(
            m.starts_with("BYE sip:bob@192.0.2.7:5062 SIP/2.0\r\n"),
            "{m}"
        );
        assert!(m.contains("Route: <sip:proxy.test;lr>\r\n"), "{m}");
        assert!(m.contains("CSeq: 2 BYE\r\n"), "{m}");
    }

    #[test]
    fn a_strict_router_becomes_the_request_uri_and_the_target_goes_last() {
        let m = request(&[
            "<sip:strict.test>".to_string(),
            "<sip:next.test;lr>".to_string(),
        ]);
        assert!(m.starts_with("BYE sip:strict.test SIP/2.0\r\n"), "{m}");
        let routes: Vec<&str> = m.lines().filter(|l| l.starts_with("Route:")).collect();
        assert_eq!(
            routes,
            [
                "Route: <sip:next.test;lr>",
                "Route: <sip:bob@192.0.2.7:5062>"
            ]
        );
    }

    #[test]
    fn a_cancel_copies_the_invites_request_uri_via_and_cseq_number() {
        let invite = "INVITE sip:bob@192.0.2.7 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                      From: <sip:a@p>;tag=1\r\nTo: <sip:b@p>\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\n\
                      Contact: <sip:a@h>\r\nContent-Length: 0\r\n\r\n";
        let c = String::from_utf8(cancel_for(invite)).unwrap();
        assert!(c.starts_with("CANCEL sip:bob@192.0.2.7 SIP/2.0\r\n"), "{c}");
        assert!(c.contains("Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"), "{c}");
        assert!(c.contains("CSeq: 7 CANCEL\r\n"), "{c}");
        assert!(!c.contains("Contact"), "{c}");
    }
}
