//! Symmetric RTP latching (the "comedia" behaviour, RFC 4961 symmetric RTP):
//! the address a leg's SDP announces is often wrong behind NAT, so mediad
//! sends a leg's media to where that leg's packets really come from.
//!
//! Rules, in order:
//! 1. Learning: until a valid RTP packet arrives, media towards the leg goes
//!    to the SDP hint (if sipd gave one) so early media is not lost.
//! 2. The first valid RTP packet latches the leg to its source address and
//!    SSRC.
//! 3. While latched, packets from any other address are dropped (nobody
//!    can hijack a call by spraying packets at the port) unless:
//!    a. the latched source has been silent for [`RELATCH_SILENCE`]: the
//!    phone changed address (new NAT binding, Wi-Fi to LTE); the next
//!    valid packet from elsewhere latches, or
//!    b. a new source sends [`PROBATION`] packets of one new SSRC in
//!    sequence order: a new stream replaced the old one (a media server
//!    switch on the trunk side) even though stragglers of the old
//!    stream still arrive.
//! 4. A new SDP address from sipd (re-INVITE) returns the leg to learning.
//!
//! RTCP follows the RTP latch: it is sent to the RTCP source seen from the
//! latched IP, else to the hint, else to the latched RTP port + 1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Silence of the latched source after which another source may take over.
pub const RELATCH_SILENCE: Duration = Duration::from_secs(1);
/// In-sequence packets of a new SSRC from a new source that take over.
pub const PROBATION: u32 = 3;

/// Where a leg's media goes and why.
#[derive(Debug, Clone, Default)]
pub struct Latch {
    hint: Option<SocketAddr>,
    latched: Option<Latched>,
    candidate: Option<Candidate>,
}

#[derive(Debug, Clone, Copy)]
struct Latched {
    addr: SocketAddr,
    ssrc: u32,
    last_seen: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    addr: SocketAddr,
    ssrc: u32,
    next_seq: u16,
    count: u32,
}

/// What to do with an RTP packet from a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the latched source (or it just latched): relay and count it.
    Accept,
    /// From a foreign source: drop it.
    Drop,
}

impl Latch {
    /// Sets the SDP address. A different address than before returns the
    /// leg to learning (rule 4).
    pub fn set_hint(&mut self, hint: SocketAddr) {
        if self.hint != Some(hint) {
            self.hint = Some(hint);
            self.latched = None;
            self.candidate = None;
        }
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
    pub fn on_rtp(&mut self, now: Instant, src: SocketAddr, ssrc: u32, seq: u16) -> Verdict {
        let Some(cur) = &mut self.latched else {
            self.latch(now, src, ssrc);
            return Verdict::Accept;
        };
        if cur.addr == src {
            cur.ssrc = ssrc;
            cur.last_seen = now;
            return Verdict::Accept;
        }
        if now.saturating_duration_since(cur.last_seen) >= RELATCH_SILENCE {
            self.latch(now, src, ssrc);
            return Verdict::Accept;
        }
        if ssrc == cur.ssrc {
            return Verdict::Drop;
        }
        let promoted = match &mut self.candidate {
            Some(c) if c.addr == src && c.ssrc == ssrc && c.next_seq == seq => {
                c.count += 1;
                c.next_seq = seq.wrapping_add(1);
                c.count >= PROBATION
            }
            _ => {
                self.candidate = Some(Candidate {
                    addr: src,
                    ssrc,
                    next_seq: seq.wrapping_add(1),
                    count: 1,
                });
                PROBATION <= 1
            }
        };
        if promoted {
            self.latch(now, src, ssrc);
            Verdict::Accept
        } else {
            Verdict::Drop
        }
    }

    fn latch(&mut self, now: Instant, addr: SocketAddr, ssrc: u32) {
        self.latched = Some(Latched {
            addr,
            ssrc,
            last_seen: now,
        });
        self.candidate = None;
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
        self.hint = Some(hint);
    }

    /// Judges an RTCP packet from `src` given the leg's RTP latch.
    pub fn on_rtcp(&mut self, src: SocketAddr, rtp: &Latch) -> Verdict {
        match rtp.latched() {
            Some(l) if l.ip() != src.ip() => Verdict::Drop,
            _ => {
                self.seen = Some(src);
                Verdict::Accept
            }
        }
    }

    pub fn target(&self, rtp: &Latch) -> Option<SocketAddr> {
        if let Some(seen) = self.seen
            && rtp.latched().is_none_or(|l| l.ip() == seen.ip())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn media_goes_to_the_sdp_hint_until_the_first_packet_latches_its_source() {
        let t = Instant::now();
        let mut l = Latch::default();
        assert_eq!(l.target(), None);
        l.set_hint(addr(4000));
        assert_eq!(l.target(), Some(addr(4000)));
        assert_eq!(l.on_rtp(t, addr(5555), 1, 0), Verdict::Accept);
        assert_eq!(l.target(), Some(addr(5555)));
        assert_eq!(l.latched(), Some(addr(5555)));
    }

    #[test]
    fn a_foreign_source_is_dropped_while_the_latched_one_is_alive() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.on_rtp(t, addr(5555), 1, 0);
        for i in 1..50u16 {
            let now = t + Duration::from_millis(20 * u64::from(i));
            assert_eq!(l.on_rtp(now, addr(5555), 1, i), Verdict::Accept);
            // Same SSRC from elsewhere (a spoofer copying it) never latches.
            assert_eq!(l.on_rtp(now, addr(6666), 1, i), Verdict::Drop);
        }
        assert_eq!(l.target(), Some(addr(5555)));
    }

    #[test]
    fn silence_of_the_latched_source_lets_a_new_address_take_over() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.on_rtp(t, addr(5555), 1, 0);
        let soon = t + RELATCH_SILENCE - Duration::from_millis(1);
        assert_eq!(l.on_rtp(soon, addr(7777), 1, 1), Verdict::Drop);
        let later = t + RELATCH_SILENCE;
        assert_eq!(l.on_rtp(later, addr(7777), 1, 2), Verdict::Accept);
        assert_eq!(l.target(), Some(addr(7777)));
        assert_eq!(l.on_rtp(later, addr(5555), 1, 3), Verdict::Drop);
    }

    #[test]
    fn a_new_ssrc_in_sequence_from_a_new_source_relatches_after_probation() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.on_rtp(t, addr(5555), 1, 100);
        let mut now = t;
        for i in 0..PROBATION {
            now += Duration::from_millis(20);
            l.on_rtp(now, addr(5555), 1, 101 + i as u16);
            let v = l.on_rtp(now, addr(8888), 2, 9000 + i as u16);
            let expect = if i + 1 == PROBATION {
                Verdict::Accept
            } else {
                Verdict::Drop
            };
            assert_eq!(v, expect, "packet {i} of the new stream");
        }
        assert_eq!(l.target(), Some(addr(8888)));
    }

    #[test]
    fn out_of_sequence_packets_of_a_new_ssrc_do_not_pass_probation() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.on_rtp(t, addr(5555), 1, 100);
        for seq in [9000u16, 9005, 9001, 9010, 9100] {
            assert_eq!(l.on_rtp(t, addr(8888), 2, seq), Verdict::Drop);
        }
        assert_eq!(l.target(), Some(addr(5555)));
    }

    #[test]
    fn a_new_sdp_address_returns_the_leg_to_learning() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.set_hint(addr(4000));
        l.on_rtp(t, addr(5555), 1, 0);
        l.set_hint(addr(4000));
        assert_eq!(l.target(), Some(addr(5555)), "same hint keeps the latch");
        l.set_hint(addr(4100));
        assert_eq!(l.target(), Some(addr(4100)));
        assert_eq!(l.on_rtp(t, addr(9999), 5, 0), Verdict::Accept);
        assert_eq!(l.target(), Some(addr(9999)));
    }

    #[test]
    fn rtcp_follows_the_rtp_latch() {
        let t = Instant::now();
        let mut rtp = Latch::default();
        let mut rtcp = RtcpLatch::default();
        assert_eq!(rtcp.target(&rtp), None);
        rtp.set_hint(addr(4000));
        assert_eq!(rtcp.target(&rtp), Some(addr(4001)));
        rtcp.set_hint(addr(4005));
        assert_eq!(rtcp.target(&rtp), Some(addr(4005)));
        rtp.on_rtp(t, addr(5554), 1, 0);
        assert_eq!(rtcp.on_rtcp(addr(5555), &rtp), Verdict::Accept);
        assert_eq!(rtcp.target(&rtp), Some(addr(5555)));
        let other = SocketAddr::from(([127, 0, 0, 2], 5555));
        assert_eq!(rtcp.on_rtcp(other, &rtp), Verdict::Drop);
    }
}
