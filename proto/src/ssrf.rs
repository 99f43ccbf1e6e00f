//! Which addresses outgoing notifications (a user's Gotify server, an admin's
//! webhook endpoints) may reach. Those URLs are typed by people who should
//! not be able to make GoSIP talk to the machine it runs on or to the LAN
//! behind it, so loopback, private, link-local, unique-local and similar
//! addresses are refused unless the admin names the host in
//! `notify.allowed_private_hosts` (a self-hosted Gotify on the LAN is real).
//!
//! webd checks a URL when it is saved; notifyd checks the addresses it is
//! about to connect to, after resolving the name itself, so a name that
//! resolves to a public address at save time and to 127.0.0.1 later (DNS
//! rebinding) is still refused.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The setting naming hosts that may be private.
pub const ALLOW_KEY: &str = "notify.allowed_private_hosts";

/// Host names and IP addresses an admin allows even though they are
/// private (the `notify.allowed_private_hosts` setting, comma-separated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    names: Vec<String>,
    ips: Vec<IpAddr>,
}

impl AllowList {
    /// Parses `a.lan, 192.168.1.5, [fd00::5]`; blanks are skipped, names
    /// compare without case and without a trailing dot.
    pub fn parse(v: &str) -> Self {
        let mut list = Self::default();
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bare = item.trim_start_matches('[').trim_end_matches(']');
            match bare.parse::<IpAddr>() {
                Ok(ip) => list.ips.push(canonical(ip)),
                Err(_) => list.names.push(normal_name(item)),
            }
        }
        list
    }

    /// Whether the URL host `host` (a name or an IP literal, IPv6 with or
    /// without brackets) is on the list.
    pub fn allows_host(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.ips.contains(&canonical(ip)),
            Err(_) => self.names.contains(&normal_name(host)),
        }
    }

    /// The entries that are neither an IP address nor a plausible host
    /// name (for the admin's settings form).
    pub fn invalid_entries(v: &str) -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .filter(|s| {
                let bare = s.trim_start_matches('[').trim_end_matches(']');
                bare.parse::<IpAddr>().is_err() && !is_host_name(s)
            })
            .map(str::to_owned)
            .collect()
    }
}

/// Why a target was refused. The texts are short on purpose: they reach
/// the user and must not become a probe of the internal network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The host is, or resolves to, an address GoSIP does not send to.
    #[error(
        "{host} is a private or local address; an admin can allow it in notify.allowed_private_hosts"
    )]
    Private { host: String },
    /// The name resolved to no address at all.
    #[error("{host} does not resolve")]
    Unresolved { host: String },
}

/// Whether `ip` is an ordinary internet address. Refused: loopback,
/// unspecified and "this network" (0.0.0.0/8 reaches the local host on
/// Linux), RFC 1918 private, RFC 6598 shared (carrier-grade NAT),
/// link-local (IPv4 169.254/16 holds the cloud metadata services, IPv6
/// fe80::/10), unique-local fc00::/7 (RFC 4193), the deprecated site-local
/// fec0::/10, multicast, broadcast and the reserved 240/4. IPv4-mapped
/// and NAT64 (64:ff9b::/96, RFC 6052) IPv6 addresses are judged by the IPv4
/// address inside them.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let o = v6.octets();
                return public_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0)
        }
    }
}

/// Keeps the addresses of `host` GoSIP may connect to: all of them when the
/// admin allows the host, else the public ones. None left is a refusal.
pub fn vet(
    host: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
    allow: &AllowList,
) -> Result<Vec<SocketAddr>, Refused> {
    let all: Vec<SocketAddr> = addrs.into_iter().collect();
    if all.is_empty() {
        return Err(Refused::Unresolved {
            host: host.to_owned(),
        });
    }
    if allow.allows_host(host) {
        return Ok(all);
    }
    let kept: Vec<SocketAddr> = all
        .into_iter()
        .filter(|a| is_public(a.ip()) || allow.ips.contains(&canonical(a.ip())))
        .collect();
    if kept.is_empty() {
        Err(Refused::Private {
            host: host.to_owned(),
        })
    } else {
        Ok(kept)
    }
}

/// Resolves `host` (a name or IP literal) and vets the result, for a check
/// when a URL is saved. A name that does not resolve now is `Unresolved`.
pub async fn resolve_and_vet(
    host: &str,
    port: u16,
    allow: &AllowList,
) -> Result<Vec<SocketAddr>, Refused> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return vet(host, [SocketAddr::new(ip, port)], allow);
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map(|it| it.collect())
        .unwrap_or_default();
    vet(host, found, allow)
}

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) as the IPv4 address
/// it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn public_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_multicast()
        || v4.is_broadcast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        || o[0] >= 240)
}

fn normal_name(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A DNS host name: dot-separated labels of letters, digits and inner
/// hyphens (a trailing dot allowed).
pub(crate) fn is_host_name(s: &str) -> bool {
    let n = s.trim_end_matches('.');
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn local_and_private_addresses_are_not_public() {
        for s in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(ip(s)), "{s} must not be public");
        }
    }

    #[test]
    fn internet_addresses_are_public() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "198.51.100.7",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(s)), "{s} must be public");
        }
    }

    #[test]
    fn an_allowed_name_may_resolve_anywhere_and_others_keep_public_addresses_only() {
        let allow = AllowList::parse(" Gotify.LAN. , 192.168.1.5,[fd00::5]");
        let lan: SocketAddr = "192.168.1.9:80".parse().unwrap();
        let public: SocketAddr = "198.51.100.7:80".parse().unwrap();
        assert_eq!(vet("gotify.lan", [lan], &allow), Ok(vec![lan]));
        assert_eq!(
            vet("other.lan", [lan], &allow),
            Err(Refused::Private {
                host: "other.lan".into()
            })
        );
        assert_eq!(
            vet("mixed.example", [lan, public], &allow),
            Ok(vec![public])
        );
        let allowed_ip: SocketAddr = "192.168.1.5:80".parse().unwrap();
        assert_eq!(vet("any.name", [allowed_ip], &allow), Ok(vec![allowed_ip]));
        assert!(allow.allows_host("[fd00::5]"));
        assert!(allow.allows_host("fd00::5"));
        assert!(!allow.allows_host("127.0.0.1"));
        assert_eq!(
            vet("nothing.example", [], &allow),
            Err(Refused::Unresolved {
                host: "nothing.example".into()
            })
        );
    }

    #[test]
    fn entries_that_are_neither_addresses_nor_names_are_reported() {
        assert_eq!(
            AllowList::invalid_entries("gotify.lan, 10.0.0.5, http://x, a b"),
            vec!["http://x".to_owned(), "a b".to_owned()]
        );
        assert!(AllowList::invalid_entries("").is_empty());
    }

    #[tokio::test]
    async fn localhost_is_refused_unless_allowed() {
        let none = AllowList::default();
        assert!(matches!(
            resolve_and_vet("localhost", 80, &none).await,
            Err(Refused::Private { .. })
        ));
        assert!(matches!(
            resolve_and_vet("127.0.0.1", 80, &none).await,
            Err(Refused::Private { .. })
        ));
        let allow = AllowList::parse("localhost");
        assert!(resolve_and_vet("localhost", 80, &allow).await.is_ok());
    }
}
