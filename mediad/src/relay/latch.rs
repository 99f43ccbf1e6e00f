//! Symmetric RTP latching (the "comedia" behaviour, RFC 4961 symmetric RTP)
//! without RTP bleed: the address a leg's SDP announces is often wrong
//! behind NAT, so mediad sends a leg's media to where that leg's packets
//! really come from, but only a source the call's signalling vouches for
//! may become that address. Otherwise anyone who guesses an RTP port could
//! latch onto it first, or take it over later, and hear the call.
//!
//! Rules, in order:
//! 1. Trusted IPs: the IP of the leg's SDP address and the IP its SIP
//!    signalling came from (sipd says; the NAT case: media from the
//!    public IP of the phone's router, on any port). Without either,
//!    nothing latches.
//! 2. Learning: until a packet latches, media towards the leg goes to the
//!    SDP address so early media is not lost.
//! 3. The first valid RTP packet from a trusted IP latches the leg to its
//!    source address. Packets from other IPs are dropped.
//! 4. While latched, packets from any other IP are dropped, even after the
//!    latched source fell silent: a call never moves to a foreign IP.
//!    Another port of the latched IP may take over only once the latched
//!    source has been silent for [`RELATCH_SILENCE`] (the NAT binding
//!    changed), never while it is talking. A new SSRC from the latched
//!    address is the same phone restarting its stream and is accepted.
//! 5. A new SDP address from sipd (re-INVITE), or a new signalling IP that
//!    no longer vouches for the latched IP, returns the leg to learning.
//!
//! RTCP obeys the same sources: it is accepted only from the latched RTP
//! IP (a trusted IP while learning) and sent to the RTCP source seen from
//! that IP, else to the SDP's RTCP address, else to the latched RTP port
//! plus one. Its port may follow the latest packet of that IP: reports
//! come seconds apart, so a silence rule would not tell rebinding from an
//! attack, and the IP is what keeps strangers out.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Silence of the latched source after which another port of its IP may
/// take over.
pub const RELATCH_SILENCE: Duration = Duration::from_secs(1);

/// Where a leg's media goes and who may send it.
#[derive(Debug, Clone, Default)]
pub struct Latch {
    hint: Option<SocketAddr>,
    signal_ip: Option<IpAddr>,
    latched: Option<Latched>,
}

#[derive(Debug, Clone, Copy)]
struct Latched {
    addr: SocketAddr,
    last_seen: Instant,
}

/// What to do with a packet from a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the latched source (or it just latched): relay and count it.
    Accept,
    /// From a source the leg does not trust now: drop it.
    Drop,
}

impl Latch {
    /// Sets the SDP address. A different address than before returns the
    /// leg to learning (rule 5).
    pub fn set_hint(&mut self, hint: SocketAddr) {
        let hint = canonical(hint);
        if self.hint != Some(hint) {
            self.hint = Some(hint);
            self.latched = None;
        }
    }

    /// Sets the IP the leg's signalling came from. If the latched IP is no
    /// longer trusted, the leg returns to learning (rule 5).
    pub fn set_signal_ip(&mut self, ip: IpAddr) {
        self.signal_ip = Some(ip.to_canonical());
        if let Some(l) = self.latched
            && !self.trusts(l.addr.ip())
        {
            self.latched = None;
        }
    }

    /// Whether packets from `ip` may latch this leg (rule 1).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.hint.is_some_and(|h| h.ip() == ip) || self.signal_ip == Some(ip)
    }

    /// Latches the leg to `addr`, vouched for by other means than the
    /// SDP and the signalling (a browser's ICE check): media from it is
    /// accepted and media to the leg goes there.
    pub fn pin(&mut self, now: Instant, addr: SocketAddr) {
        let addr = canonical(addr);
        self.hint = Some(addr);
        self.signal_ip = Some(addr.ip());
        self.latched = Some(Latched {
            addr,
            last_seen: now,
        });
    }

    /// Where media towards this leg goes now.
    pub fn target(&self) -> Option<SocketAddr> {
        self.latched.map(|l| l.addr).or(self.hint)
    }

    /// The latched source, if any.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched.map(|l| l.addr)
    }

    /// Judges a valid RTP packet from `src`.
    pub fn on_rtp(&mut self, now: Instant, src: SocketAddr) -> Verdict {
        let src = canonical(src);
        let trusted = self.trusts(src.ip());
        match &mut self.latched {
            Some(cur) if cur.addr == src => {
                cur.last_seen = now;
                Verdict::Accept
            }
            Some(cur) if cur.addr.ip() != src.ip() => Verdict::Drop,
            Some(cur) => {
                if now.saturating_duration_since(cur.last_seen) >= RELATCH_SILENCE {
                    cur.addr = src;
                    cur.last_seen = now;
                    Verdict::Accept
                } else {
                    Verdict::Drop
                }
            }
            None if trusted => {
                self.latched = Some(Latched {
                    addr: src,
                    last_seen: now,
                });
                Verdict::Accept
            }
            None => Verdict::Drop,
        }
    }

    /// Whether a packet from `src` comes from where this leg's packets may
    /// come from now, without latching anything: the latched address once
    /// latched, a trusted IP before.
    pub fn admits(&self, src: SocketAddr) -> bool {
        let src = canonical(src);
        match self.latched {
            Some(l) => l.addr == src,
            None => self.trusts(src.ip()),
        }
    }

    /// Whether `ip` is the leg's media IP now: the latched one, or a
    /// trusted one while learning.
    fn owns_ip(&self, ip: IpAddr) -> bool {
        match self.latched {
            Some(l) => l.addr.ip() == ip.to_canonical(),
            None => self.trusts(ip),
        }
    }
}

/// RTCP addressing of one leg (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct RtcpLatch {
    hint: Option<SocketAddr>,
    seen: Option<SocketAddr>,
}

impl RtcpLatch {
    pub fn set_hint(&mut self, hint: SocketAddr) {
        self.hint = Some(canonical(hint));
    }

    /// Judges an RTCP packet from `src` given the leg's RTP latch.
    pub fn on_rtcp(&mut self, src: SocketAddr, rtp: &Latch) -> Verdict {
        if rtp.owns_ip(src.ip()) {
            self.seen = Some(canonical(src));
            Verdict::Accept
        } else {
            Verdict::Drop
        }
    }

    pub fn target(&self, rtp: &Latch) -> Option<SocketAddr> {
        if let Some(seen) = self.seen
            && rtp.owns_ip(seen.ip())
        {
            return Some(seen);
        }
        if let Some(h) = self.hint
            && rtp.latched().is_none_or(|l| l.ip() == h.ip())
        {
            return Some(h);
        }
        rtp.target()
            .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
    }
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry, so a
/// dual-stack socket and an IPv4 SDP name the same phone alike.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn foreign(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 2], port))
    }

    fn public(port: u16) -> SocketAddr {
        SocketAddr::from(([203, 0, 113, 7], port))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn media_goes_to_the_sdp_hint_until_the_first_packet_latches_its_source() {
        let t = Instant::now();
        let mut l = Latch::default();
        assert_eq!(l.target(), None);
        l.set_hint(addr(4000));
        assert_eq!(l.target(), Some(addr(4000)));
        assert_eq!(l.on_rtp(t, addr(5555)), Verdict::Accept);
        assert_eq!(l.target(), Some(addr(5555)));
        assert_eq!(l.latched(), Some(addr(5555)));
    }

    #[test]
    fn without_a_known_ip_nothing_latches() {
        let t = Instant::now();
        let mut l = Latch::default();
        assert_eq!(l.on_rtp(t, addr(5555)), Verdict::Drop);
        assert_eq!(l.latched(), None);
    }

    #[test]
    fn a_packet_from_an_ip_neither_the_sdp_nor_the_signalling_named_never_latches() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.set_hint(addr(4000));
        l.set_signal_ip(public(5060).ip());
        for seq in 0..10u64 {
            assert_eq!(l.on_rtp(t + ms(20 * seq), foreign(4000)), Verdict::Drop);
        }
        assert_eq!(l.latched(), None);
        assert_eq!(l.target(), Some(addr(4000)), "the phone still gets media");
        assert_eq!(l.on_rtp(t + ms(400), addr(4000)), Verdict::Accept);
    }

    #[test]
    fn a_phone_behind_nat_latches_from_its_signalling_ip_on_any_port() {
        let t = Instant::now();
        let mut l = Latch::default();
        // The SDP names the phone's private address; its packets come from
        // the router's public address, which its REGISTER/INVITE came from.
        l.set_hint(SocketAddr::from(([192, 168, 1, 50], 4000)));
        l.set_signal_ip(public(5060).ip());
        assert_eq!(l.on_rtp(t, public(31_337)), Verdict::Accept);
        assert_eq!(l.target(), Some(public(31_337)));
    }

    #[test]
    fn a_foreign_ip_is_dropped_while_the_latched_source_talks_and_after_it_falls_silent() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.set_hint(addr(4000));
        l.on_rtp(t, addr(5555));
        for i in 1..50u64 {
            let now = t + ms(20 * i);
            assert_eq!(l.on_rtp(now, addr(5555)), Verdict::Accept);
            assert_eq!(l.on_rtp(now, foreign(5555)), Verdict::Drop);
        }
        let silent = t + ms(980) + RELATCH_SILENCE * 10;
        assert_eq!(l.on_rtp(silent, foreign(5555)), Verdict::Drop);
        assert_eq!(l.on_rtp(silent, foreign(4000)), Verdict::Drop);
        assert_eq!(l.target(), Some(addr(5555)));
    }

    #[test]
    fn a_new_port_of_the_latched_ip_takes_over_only_after_the_latched_source_fell_silent() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.set_hint(addr(4000));
        l.on_rtp(t, addr(5555));
        let soon = t + RELATCH_SILENCE - ms(1);
        assert_eq!(l.on_rtp(soon, addr(7777)), Verdict::Drop);
        // The latched source keeps talking: the new port stays out.
        assert_eq!(l.on_rtp(soon, addr(5555)), Verdict::Accept);
        assert_eq!(l.on_rtp(soon + ms(999), addr(7777)), Verdict::Drop);
        let rebound = soon + RELATCH_SILENCE;
        assert_eq!(l.on_rtp(rebound, addr(7777)), Verdict::Accept);
        assert_eq!(l.target(), Some(addr(7777)));
        assert_eq!(l.on_rtp(rebound, addr(5555)), Verdict::Drop);
    }

    #[test]
    fn the_latched_source_may_change_its_stream_without_losing_the_latch() {
        // The latch does not look at SSRCs: a phone that restarts its stream
        // keeps sending from the same address; a stranger cannot use a new
        // SSRC to get in.
        let t = Instant::now();
        let mut l = Latch::default();
        l.set_hint(addr(4000));
        assert_eq!(l.on_rtp(t, addr(4000)), Verdict::Accept);
        for i in 1..10 {
            assert_eq!(l.on_rtp(t + ms(20 * i), addr(4000)), Verdict::Accept);
            assert_eq!(l.on_rtp(t + ms(20 * i), foreign(4000)), Verdict::Drop);
        }
    }

    #[test]
    fn a_new_sdp_address_returns_the_leg_to_learning() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.set_hint(addr(4000));
        l.on_rtp(t, addr(5555));
        l.set_hint(addr(4000));
        assert_eq!(l.target(), Some(addr(5555)), "same hint keeps the latch");
        let moved = SocketAddr::from(([198, 51, 100, 9], 4100));
        l.set_hint(moved);
        assert_eq!(l.target(), Some(moved));
        assert_eq!(l.on_rtp(t, addr(5555)), Verdict::Drop, "the old IP is out");
        let from = SocketAddr::from(([198, 51, 100, 9], 9999));
        assert_eq!(l.on_rtp(t, from), Verdict::Accept);
        assert_eq!(l.target(), Some(from));
    }

    #[test]
    fn a_new_signalling_ip_that_no_longer_vouches_for_the_latched_ip_unlatches() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.set_hint(SocketAddr::from(([192, 168, 1, 50], 4000)));
        l.set_signal_ip(public(0).ip());
        l.on_rtp(t, public(31_337));
        l.set_signal_ip(public(0).ip());
        assert_eq!(l.latched(), Some(public(31_337)), "same IP keeps it");
        let lte = SocketAddr::from(([198, 51, 100, 20], 0));
        l.set_signal_ip(lte.ip());
        assert_eq!(l.latched(), None);
        assert_eq!(l.on_rtp(t, public(31_337)), Verdict::Drop);
        let from = SocketAddr::from(([198, 51, 100, 20], 40_000));
        assert_eq!(l.on_rtp(t, from), Verdict::Accept);
    }

    #[test]
    fn ipv4_mapped_ipv6_names_the_same_phone() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.set_signal_ip("::ffff:203.0.113.7".parse().unwrap());
        assert!(l.trusts(public(0).ip()));
        assert_eq!(l.on_rtp(t, public(4000)), Verdict::Accept);
        let mapped: SocketAddr = "[::ffff:203.0.113.7]:4000".parse().unwrap();
        assert_eq!(l.on_rtp(t, mapped), Verdict::Accept);
    }

    #[test]
    fn rtcp_follows_the_rtp_latch_and_is_refused_from_foreign_ips() {
        let t = Instant::now();
        let mut rtp = Latch::default();
        let mut rtcp = RtcpLatch::default();
        assert_eq!(rtcp.target(&rtp), None);
        assert_eq!(
            rtcp.on_rtcp(addr(5555), &rtp),
            Verdict::Drop,
            "nothing trusted"
        );
        rtp.set_hint(addr(4000));
        assert_eq!(rtcp.target(&rtp), Some(addr(4001)));
        // Before any RTP, a stranger's RTCP must not steer reports to it.
        assert_eq!(rtcp.on_rtcp(foreign(4001), &rtp), Verdict::Drop);
        assert_eq!(rtcp.target(&rtp), Some(addr(4001)));
        rtcp.set_hint(addr(4005));
        assert_eq!(rtcp.target(&rtp), Some(addr(4005)));
        rtp.on_rtp(t, addr(5554));
        assert_eq!(rtcp.on_rtcp(addr(5555), &rtp), Verdict::Accept);
        assert_eq!(rtcp.target(&rtp), Some(addr(5555)));
        assert_eq!(rtcp.on_rtcp(foreign(5555), &rtp), Verdict::Drop);
        assert_eq!(rtcp.target(&rtp), Some(addr(5555)));
    }

    #[test]
    fn rtcp_from_the_other_trusted_ip_is_refused_once_rtp_latched_elsewhere() {
        let t = Instant::now();
        let mut rtp = Latch::default();
        let mut rtcp = RtcpLatch::default();
        let private = SocketAddr::from(([192, 168, 1, 50], 4001));
        rtp.set_hint(SocketAddr::from(([192, 168, 1, 50], 4000)));
        rtp.set_signal_ip(public(0).ip());
        assert_eq!(rtcp.on_rtcp(private, &rtp), Verdict::Accept);
        rtp.on_rtp(t, public(31_337));
        assert_eq!(
            rtcp.target(&rtp),
            Some(public(31_338)),
            "not the private seen"
        );
        assert_eq!(rtcp.on_rtcp(private, &rtp), Verdict::Drop);
    }
}
