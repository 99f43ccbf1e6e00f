//! The trunk's termination address as the `twilio.termination_uri` setting
//! holds it: a host, `host:port`, or a SIP URI. webd checks it with
//! [`TrunkUri::parse`] before storing it and sipd reads it the same way, so
//! what the UI accepts is exactly what sipd dials.
//!
//! A secure trunk (Twilio's "secure trunking": TLS on 5061 and SRTP) is
//! written `sips:host` or `sip:host;transport=tls`. TCP is refused: sipd
//! reaches the trunk over UDP or TLS only.

/// How sipd reaches the trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkTransport {
    Udp,
    Tls,
}

impl TrunkTransport {
    /// The port used when the address names none (RFC 3263 section 4.2).
    pub fn default_port(self) -> u16 {
        match self {
            TrunkTransport::Udp => 5060,
            TrunkTransport::Tls => 5061,
        }
    }
}

/// A termination address, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkUri {
    /// The host: a DNS name, an IPv4 address or a bracketed IPv6 one.
    pub host: String,
    /// The port, when the address names one.
    pub port: Option<u16>,
    pub transport: TrunkTransport,
}

impl TrunkUri {
    /// The setting's value, parsed: `Ok(None)` when it is empty, else the
    /// address or why it cannot be used (for the UI, after the field name).
    pub fn parse(value: &str) -> Result<Option<TrunkUri>, &'static str> {
        let v = value.trim();
        if v.is_empty() {
            return Ok(None);
        }
        let lower = v.to_ascii_lowercase();
        let (mut transport, rest) = match lower.strip_prefix("sips:") {
            Some(r) => (TrunkTransport::Tls, r),
            None => (
                TrunkTransport::Udp,
                lower.strip_prefix("sip:").unwrap_or(&lower),
            ),
        };
        let rest = rest.rsplit('@').next().unwrap_or_default();
        if rest.contains('?') {
            return Err(BAD_SHAPE);
        }
        let mut parts = rest.split(';');
        let hostport = parts.next().unwrap_or_default();
        for p in parts {
            match p.strip_prefix("transport=") {
                Some("udp") if transport == TrunkTransport::Tls => {
                    return Err("must not ask for UDP in a sips: URI; use sip: for UDP");
                }
                Some("udp") => {}
                Some("tls") => transport = TrunkTransport::Tls,
                Some(_) => {
                    return Err(
                        "must use UDP or TLS (transport=tls): GoSIP does not reach the trunk over TCP",
                    );
                }
                None => {}
            }
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, Some(p)),
            _ => (hostport, None),
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(BAD_SHAPE),
            },
        };
        if !host_ok(host) {
            return Err(BAD_SHAPE);
        }
        Ok(Some(TrunkUri {
            host: host.to_string(),
            port,
            transport,
        }))
    }

    /// `host:port` with the port the transport implies when none is named,
    /// for resolving.
    pub fn socket_host(&self) -> String {
        format!(
            "{}:{}",
            self.host,
            self.port.unwrap_or(self.transport.default_port())
        )
    }

    /// The host and port as written (the port only when one was named),
    /// for the Request-URI.
    pub fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// The name the trunk's certificate must carry: the host without the
    /// brackets of an IPv6 address.
    pub fn tls_name(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

const BAD_SHAPE: &str = "must be a host, host:port or sip: URI such as example.pstn.twilio.com";

/// A DNS name, an IPv4 address or a bracketed IPv6 address.
fn host_ok(host: &str) -> bool {
    host.parse::<std::net::Ipv4Addr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
        || crate::ssrf::is_host_name(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: &str) -> TrunkUri {
        TrunkUri::parse(v).unwrap().unwrap()
    }

    #[test]
    fn plain_hosts_and_sip_uris_are_udp_on_5060_unless_a_port_is_named() {
        let t = ok("example.pstn.twilio.com");
        assert_eq!(t.transport, TrunkTransport::Udp);
        assert_eq!(t.socket_host(), "example.pstn.twilio.com:5060");
        assert_eq!(t.authority(), "example.pstn.twilio.com");
        let t = ok("sip:gosip@198.51.100.7:5080;transport=udp");
        assert_eq!((t.host.as_str(), t.port), ("198.51.100.7", Some(5080)));
        assert_eq!(t.authority(), "198.51.100.7:5080");
        assert_eq!(ok("[2001:db8::1]:5070").tls_name(), "2001:db8::1");
        assert_eq!(TrunkUri::parse("  "), Ok(None));
    }

    #[test]
    fn sips_or_transport_tls_is_a_secure_trunk_on_5061() {
        for v in [
            "sips:example.pstn.twilio.com",
            "sip:example.pstn.twilio.com;transport=tls",
            "SIP:Example.PSTN.twilio.com;Transport=TLS",
        ] {
            let t = ok(v);
            assert_eq!(t.transport, TrunkTransport::Tls, "{v}");
            assert_eq!(t.socket_host(), "example.pstn.twilio.com:5061", "{v}");
            assert_eq!(t.tls_name(), "example.pstn.twilio.com", "{v}");
        }
        assert_eq!(ok("sips:localhost:15061").socket_host(), "localhost:15061");
    }

    #[test]
    fn tcp_and_malformed_addresses_are_refused_with_the_reason() {
        let err = |v: &str| TrunkUri::parse(v).unwrap_err();
        assert!(err("sip:x.example;transport=tcp").contains("TCP"));
        assert!(err("sips:x.example;transport=udp").contains("sips:"));
        for bad in [
            "sip:",
            "bad host",
            "x.example:0",
            "x.example:99999",
            "sip:x.example?subject=1",
            "-x.example",
        ] {
            assert_eq!(err(bad), BAD_SHAPE, "{bad}");
        }
    }
}
