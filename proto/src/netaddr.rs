//! This host's own network addresses, for the daemons that must name an
//! address others can reach (sipd's SDP and Via; webd's "SIP server" shown
//! when adding a phone). Never the host name: phones rarely resolve it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The networks of this host's interfaces (address, prefix length).
pub fn local_networks() -> Vec<(IpAddr, u8)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in addrs {
        let (Some(addr), Some(mask)) = (a.address, a.netmask) else {
            continue;
        };
        if let (Some(ip), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
            let prefix = u8::try_from(m.ip().to_bits().count_ones()).unwrap_or(32);
            out.push((IpAddr::V4(ip.ip()), prefix));
        } else if let (Some(ip), Some(m)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
            let prefix = u8::try_from(m.ip().to_bits().count_ones()).unwrap_or(128);
            out.push((IpAddr::V6(ip.ip()), prefix));
        }
    }
    out
}

/// The address to name when a peer's own packets do not tell: `bound` when
/// it is a specific address, else the first non-loopback IPv4 address of
/// this host, else loopback.
pub fn default_address(bound: IpAddr, nets: &[(IpAddr, u8)]) -> IpAddr {
    if !bound.is_unspecified() {
        return bound;
    }
    nets.iter()
        .map(|(ip, _)| *ip)
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// This host's address on the path to `dst`, from the routing table (a
/// connected UDP socket sends nothing). `None` when there is no route.
pub fn route_local(dst: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = if dst.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect(dst).ok()?;
    s.local_addr()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_specific_bind_wins_and_loopback_is_never_chosen_over_a_real_address() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let lan: IpAddr = "192.0.2.10".parse().unwrap();
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(default_address(lan, &[]), lan);
        assert_eq!(default_address(any, &[(lo, 8), (lan, 24)]), lan);
        assert_eq!(default_address(any, &[(lo, 8)]), lo);
        // This host always has loopback, with its /8.
        assert!(local_networks().contains(&(lo, 8)));
        assert_eq!(route_local("127.0.0.1:9".parse().unwrap()), Some(lo));
    }
}
