//! Which address sipd is known by to each peer (Via, Contact, SDP): the
//! settings, what the peer's own packets show, and what the trunk or STUN
//! told about the public side. Pure: the shell supplies the interface list
//! and the packets' local addresses.

use std::net::IpAddr;

use super::Peer;
use super::core::CoreConfig;

/// Where an address sipd uses came from (shown in the system status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrSource {
    /// Typed by the admin (`sip.local_address` / `sip.public_address`).
    Setting,
    /// The destination address of the peer's own packets.
    Packet,
    /// `received` in the Via of the trunk's answer to our OPTIONS.
    TrunkVia,
    /// A STUN binding response (`sip.stun_server`).
    Stun,
    /// The bound address, or the routing table's choice.
    Default,
}

impl AddrSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AddrSource::Setting => "setting",
            AddrSource::Packet => "phone_packet",
            AddrSource::TrunkVia => "trunk_via",
            AddrSource::Stun => "stun",
            AddrSource::Default => "default",
        }
    }
}

/// Addresses that are never reached across the internet: RFC 1918, shared
/// address space (RFC 6598), the benchmarking range (RFC 2544), link-local
/// and unique-local IPv6. A peer there is on someone's LAN.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_link_local()
                || in_net(ip, IpAddr::V4([100, 64, 0, 0].into()), 10)
                || in_net(ip, IpAddr::V4([198, 18, 0, 0].into()), 15)
        }
        IpAddr::V6(v6) => {
            v6.to_ipv4_mapped()
                .is_some_and(|m| is_private(IpAddr::V4(m)))
                || in_net(ip, "fc00::".parse().unwrap_or(ip), 7)
                || in_net(ip, "fe80::".parse().unwrap_or(ip), 10)
        }
    }
}

/// True when `ip` lies in `net`/`prefix`.
pub fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let p = u32::from(prefix.min(32));
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let p = u32::from(prefix.min(128));
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The addresses sipd is known by: the settings' part of [`CoreConfig`]
/// plus what was learned at run time. Kept apart from the calls so the
/// B2BUA can ask it while it holds a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrBook {
    local_host: Option<String>,
    public_host: Option<String>,
    sip_port: u16,
    sips_port: u16,
    default_host: String,
    local_nets: Vec<(IpAddr, u8)>,
    trunk: Option<std::net::SocketAddr>,
    trunk_ips: Vec<IpAddr>,
    learned: Option<(IpAddr, AddrSource)>,
}

impl AddrBook {
    /// Records a public address learned outside the core (STUN). Returns
    /// true when it changed.
    pub fn learn_public(&mut self, ip: IpAddr, source: AddrSource) -> bool {
        let changed = self.learned.map(|(a, _)| a) != Some(ip);
        if changed {
            tracing::info!(address = %ip, source = source.as_str(), "public address learned");
        }
        self.learned = Some((ip, source));
        changed
    }

    /// Takes the settings' part of the addresses; keeps what was learned
    /// unless it came from a trunk that is no longer the trunk.
    pub(crate) fn configure(&mut self, cfg: &CoreConfig) {
        let old_trunk = self.trunk;
        *self = Self::new(cfg, self.learned);
        if old_trunk != self.trunk {
            self.learned = self.learned.filter(|(_, src)| *src != AddrSource::TrunkVia);
        }
    }

    pub(crate) fn new(cfg: &CoreConfig, learned: Option<(IpAddr, AddrSource)>) -> Self {
        Self {
            local_host: cfg.local_host.clone(),
            public_host: cfg.public_host.clone(),
            sip_port: cfg.sip_port,
            sips_port: cfg.sips_port,
            default_host: cfg.default_host.clone(),
            local_nets: cfg.local_nets.clone(),
            trunk: cfg.termination.as_ref().map(|t| t.addr),
            trunk_ips: cfg.trunk_ips.clone(),
            learned,
        }
    }

    /// The public address towards the trunk and remote phones, and where it
    /// came from: the setting, else what the trunk or STUN told us.
    pub fn public_host(&self) -> Option<(String, AddrSource)> {
        if let Some(h) = &self.public_host {
            return Some((h.clone(), AddrSource::Setting));
        }
        self.learned.map(|(ip, src)| (ip.to_string(), src))
    }

    /// True when `peer` is the trunk: the termination address or one of
    /// `sip.trunk_source_ips`.
    fn is_trunk_peer(&self, peer: &Peer) -> bool {
        self.trunk.is_some_and(|t| t.ip() == peer.addr.ip())
            || self.trunk_ips.contains(&peer.addr.ip())
    }

    /// True when `peer` sits on one of this host's own networks (or is this
    /// host), so it reaches the local address directly.
    fn on_link(&self, peer: &Peer) -> bool {
        let ip = peer.addr.ip();
        ip.is_loopback()
            || peer.local == Some(ip)
            || self
                .local_nets
                .iter()
                .any(|(net, prefix)| in_net(ip, *net, *prefix))
    }

    /// The address this host is known by to `peer`, for the Via, Contact
    /// and SDP sent there, and where it came from:
    /// - the trunk, and peers on public addresses beyond a router, get the
    ///   public address when one is known (a home router forwards it here;
    ///   the LAN address would not get through);
    /// - everyone else (our own networks, and private networks beyond a
    ///   router, such as the LAN in front of a container's published ports)
    ///   gets `sip.local_address`, else the address their packets arrived
    ///   on, else the default.
    ///
    /// Never a host name unless the admin typed one.
    pub fn address_for(&self, peer: &Peer) -> (String, AddrSource) {
        let ip = peer.addr.ip();
        let remote = self.is_trunk_peer(peer) || (!self.on_link(peer) && !is_private(ip));
        if remote && let Some(p) = self.public_host() {
            return p;
        }
        if let Some(h) = &self.local_host {
            return (h.clone(), AddrSource::Setting);
        }
        match peer.local {
            Some(ip) if !ip.is_unspecified() => (ip.to_string(), AddrSource::Packet),
            _ => (self.default_host.clone(), AddrSource::Default),
        }
    }

    /// `sip.local_address`, when the admin typed one.
    pub fn local_host(&self) -> Option<&str> {
        self.local_host.as_deref()
    }

    /// The address used when nothing better is known.
    pub fn default_host(&self) -> &str {
        &self.default_host
    }

    /// The host put in SDP `o=`/`c=` towards `peer`.
    pub(crate) fn media_host(&self, peer: &Peer) -> String {
        self.address_for(peer).0
    }

    /// The `host:port` put in Via and Contact towards `peer`.
    pub(crate) fn via_host(&self, peer: &Peer) -> String {
        let h = self.address_for(peer).0;
        let port = match peer.transport {
            crate::sip::Transport::Tls => self.sips_port,
            _ => self.sip_port,
        };
        if h.contains(':') && !h.starts_with('[') {
            format!("[{h}]:{port}")
        } else {
            format!("{h}:{port}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::core::Termination;

    /// sipd at home: 192.0.2.10/24 on the LAN, bound to the wildcard.
    fn home(public: Option<&str>) -> AddrBook {
        let cfg = CoreConfig {
            default_host: "192.0.2.10".into(),
            local_nets: vec![
                ("127.0.0.1".parse().unwrap(), 8),
                ("192.0.2.10".parse().unwrap(), 24),
            ],
            public_host: public.map(str::to_string),
            termination: Some(Termination {
                transport: crate::sip::Transport::Udp,
                host: "gosip.pstn.twilio.com".into(),
                addr: "198.51.100.20:5060".parse().unwrap(),
                username: "u".into(),
                password: "p".into(),
                local: Some("192.0.2.10".parse().unwrap()),
            }),
            ..CoreConfig::default()
        };
        AddrBook::new(&cfg, None)
    }

    fn peer(addr: &str, local: Option<&str>) -> Peer {
        Peer::udp(addr.parse().unwrap()).with_local(local.map(|l| l.parse().unwrap()))
    }

    #[test]
    fn a_lan_phone_gets_the_address_its_packets_arrived_on() {
        let a = home(None);
        let p = peer("192.0.2.21:5062", Some("192.0.2.10"));
        assert_eq!(a.address_for(&p), ("192.0.2.10".into(), AddrSource::Packet));
        assert_eq!(a.via_host(&p), "192.0.2.10:5060");
        // Loopback phones get loopback, not the LAN address or a host name.
        let lo = peer("127.0.0.1:5070", Some("127.0.0.1"));
        assert_eq!(a.media_host(&lo), "127.0.0.1");
    }

    #[test]
    fn the_trunk_and_remote_phones_get_the_public_address_once_known() {
        let mut a = home(None);
        let trunk = peer("198.51.100.20:5060", Some("192.0.2.10"));
        let remote = peer("203.0.113.50:40000", Some("192.0.2.10"));
        let lan = peer("192.0.2.21:5062", Some("192.0.2.10"));
        // Nothing learned yet: the local address is all there is.
        assert_eq!(a.media_host(&trunk), "192.0.2.10");
        assert!(a.learn_public("203.0.113.2".parse().unwrap(), AddrSource::TrunkVia));
        assert_eq!(
            a.address_for(&trunk),
            ("203.0.113.2".into(), AddrSource::TrunkVia)
        );
        assert_eq!(a.media_host(&remote), "203.0.113.2");
        // The LAN phone in the same call still gets the LAN address.
        assert_eq!(a.media_host(&lan), "192.0.2.10");
        assert!(!a.learn_public("203.0.113.2".parse().unwrap(), AddrSource::TrunkVia));
    }

    #[test]
    fn typed_addresses_win_and_a_new_trunk_forgets_what_the_old_one_said() {
        let mut a = home(Some("pbx.example.net"));
        a.learn_public("203.0.113.2".parse().unwrap(), AddrSource::Stun);
        let trunk = peer("198.51.100.20:5060", None);
        assert_eq!(
            a.address_for(&trunk),
            ("pbx.example.net".into(), AddrSource::Setting)
        );
        let mut cfg = CoreConfig {
            local_host: Some("192.0.2.11".into()),
            local_nets: vec![("192.0.2.10".parse().unwrap(), 24)],
            ..CoreConfig::default()
        };
        a.configure(&cfg);
        let lan = peer("192.0.2.21:5062", Some("192.0.2.10"));
        assert_eq!(
            a.address_for(&lan),
            ("192.0.2.11".into(), AddrSource::Setting)
        );
        // A STUN answer survives a settings change; a trunk's does not
        // survive a change of trunk.
        assert_eq!(a.public_host().map(|p| p.1), Some(AddrSource::Stun));
        a.learn_public("203.0.113.3".parse().unwrap(), AddrSource::TrunkVia);
        cfg.termination = Some(Termination {
            transport: crate::sip::Transport::Udp,
            host: "other".into(),
            addr: "198.51.100.99:5060".parse().unwrap(),
            username: String::new(),
            password: String::new(),
            local: None,
        });
        a.configure(&cfg);
        assert_eq!(a.public_host(), None);
    }

    #[test]
    fn an_unknown_local_side_falls_back_to_the_default_never_a_name() {
        let a = home(None);
        let p = peer("192.0.2.30:5060", None);
        assert_eq!(
            a.address_for(&p),
            ("192.0.2.10".into(), AddrSource::Default)
        );
        assert!(in_net(
            "10.1.2.3".parse().unwrap(),
            "10.0.0.0".parse().unwrap(),
            8
        ));
        assert!(!in_net(
            "11.1.2.3".parse().unwrap(),
            "10.0.0.0".parse().unwrap(),
            8
        ));
        assert!(in_net(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::".parse().unwrap(),
            32
        ));
    }

    #[test]
    fn the_trunks_answer_to_our_options_tells_the_public_address_and_nobody_elses_does() {
        use crate::sip::core::Core;
        let cfg = CoreConfig {
            termination: Some(Termination {
                transport: crate::sip::Transport::Udp,
                host: "gosip.pstn.twilio.com".into(),
                addr: "198.51.100.20:5060".parse().unwrap(),
                username: "u".into(),
                password: "p".into(),
                local: Some("192.0.2.10".parse().unwrap()),
            }),
            ..CoreConfig::default()
        };
        let mut core = Core::new(cfg, [3; 32]);
        core.handle_timeout(1_000);
        let ping = std::iter::from_fn(|| core.poll_transmit())
            .find(|t| t.data.starts_with(b"OPTIONS sip:gosip.pstn.twilio.com"))
            .expect("an OPTIONS to the trunk");
        let text = String::from_utf8(ping.data).unwrap();
        let via = text
            .lines()
            .find(|l| l.starts_with("Via:"))
            .unwrap()
            .trim_start_matches("Via:")
            .trim()
            .to_string();
        let header = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .to_string()
        };
        let answer = format!(
            "SIP/2.0 200 OK\r\nVia: {via};received=203.0.113.2;rport=31000\r\n{}\r\n{};tag=t\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
            header("From:"),
            header("To:"),
            header("Call-ID:"),
            header("CSeq:"),
        );
        // A stranger sending the same answer teaches nothing.
        core.handle_message(1_010, peer("203.0.113.66:5060", None), answer.as_bytes());
        assert_eq!(core.addresses().public_host(), None);
        core.handle_message(1_020, peer("198.51.100.20:5060", None), answer.as_bytes());
        assert_eq!(
            core.addresses().public_host(),
            Some(("203.0.113.2".into(), AddrSource::TrunkVia))
        );
    }

    #[test]
    fn a_lan_phone_in_front_of_published_ports_gets_the_typed_local_address() {
        // sipd in a container at 198.18.100.2; the phones' LAN (198.18.0.0/24)
        // is beyond the container's router, the trunk on the internet.
        let cfg = CoreConfig {
            local_host: Some("198.18.0.2".into()),
            public_host: Some("203.0.113.2".into()),
            local_nets: vec![("198.18.100.2".parse().unwrap(), 24)],
            ..CoreConfig::default()
        };
        let a = AddrBook::new(&cfg, None);
        let lan = peer("198.18.0.21:5062", Some("198.18.100.2"));
        let remote = peer("203.0.113.50:5062", Some("198.18.100.2"));
        assert_eq!(a.media_host(&lan), "198.18.0.2");
        assert_eq!(a.media_host(&remote), "203.0.113.2");
        assert!(is_private("10.1.2.3".parse().unwrap()));
        assert!(is_private("100.100.1.1".parse().unwrap()));
        assert!(!is_private("203.0.113.50".parse().unwrap()));
        assert!(is_private("fd00::1".parse().unwrap()));
    }
}
