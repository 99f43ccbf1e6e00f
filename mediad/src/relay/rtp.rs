//! RTP header parsing (RFC 3550 section 5.1) and the receiver statistics of
//! one stream: packets, bytes, loss from sequence gaps (appendix A.1/A.3)
//! and interarrival jitter (appendix A.8).

use std::time::Instant;

/// The fixed header plus where the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Byte offset of the payload.
    pub payload_start: usize,
    /// Byte offset one past the payload (padding removed).
    pub payload_end: usize,
}

impl RtpHeader {
    pub fn payload<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        &packet[self.payload_start..self.payload_end]
    }
}

/// What a datagram on an RTP port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    Rtp(RtpHeader),
    /// RTCP multiplexed on the RTP port (RFC 5761): relayed, not counted.
    Rtcp,
    /// Not RTP version 2, or truncated.
    Invalid,
}

/// Classifies and parses a datagram received on an RTP port.
pub fn parse(packet: &[u8]) -> Datagram {
    if is_muxed_rtcp(packet) {
        return Datagram::Rtcp;
    }
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return Datagram::Invalid;
    }
    let csrc_count = usize::from(packet[0] & 0x0f);
    let mut start = 12 + 4 * csrc_count;
    if packet[0] & 0x10 != 0 {
        // Header extension: 16-bit profile, 16-bit length in words.
        if packet.len() < start + 4 {
            return Datagram::Invalid;
        }
        let words = usize::from(u16::from_be_bytes([packet[start + 2], packet[start + 3]]));
        start += 4 + 4 * words;
    }
    let mut end = packet.len();
    if packet[0] & 0x20 != 0 {
        let pad = usize::from(packet[end - 1]);
        if pad == 0 || pad > end {
            return Datagram::Invalid;
        }
        end -= pad;
    }
    if start > end {
        return Datagram::Invalid;
    }
    Datagram::Rtp(RtpHeader {
        marker: packet[1] & 0x80 != 0,
        payload_type: packet[1] & 0x7f,
        seq: u16::from_be_bytes([packet[2], packet[3]]),
        timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        payload_start: start,
        payload_end: end,
    })
}

/// Whether a datagram on an RTP port is RTCP. It reads the first 8 bytes
/// only, which SRTCP leaves in the clear (RFC 3711 section 3.4), so it
/// sorts SRTP from SRTCP before either is decrypted.
pub fn is_muxed_rtcp(packet: &[u8]) -> bool {
    // RFC 5761 section 4: RTCP packet types 192..=223 collide with RTP
    // payload types 64..=95 with the marker bit; 200..=204 are RTCP's.
    packet.len() >= 8 && packet[0] >> 6 == 2 && (200..=204).contains(&packet[1])
}

/// A plausible RTCP compound packet: version 2 and an RTCP packet type.
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 8 && packet[0] >> 6 == 2 && (192..=223).contains(&packet[1])
}

/// Receive statistics of one leg, across SSRC changes.
#[derive(Debug, Clone, Default)]
pub struct RecvStats {
    pub packets: u64,
    pub bytes: u64,
    /// Loss of the streams that ended (SSRC changed).
    lost_before: u64,
    seq: Option<SeqState>,
    jitter: JitterState,
}

#[derive(Debug, Clone, Copy)]
struct SeqState {
    ssrc: u32,
    base: u64,
    /// Highest extended sequence number seen.
    max_ext: u64,
    received: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct JitterState {
    /// Last (arrival in clock units, RTP timestamp) pair.
    last: Option<(u64, u32)>,
    /// RFC 3550 J, scaled by 16 as in appendix A.8 to keep integer math.
    j16: u64,
}

impl RecvStats {
    /// Accounts one RTP packet arriving at `now`; `clock_start` anchors
    /// arrival times, `clock_rate` is the payload's RTP clock (8000 for
    /// G.711 and telephone-event).
    pub fn on_packet(
        &mut self,
        hdr: &RtpHeader,
        len: usize,
        now: Instant,
        clock_start: Instant,
        clock_rate: u32,
    ) {
        self.count(hdr, len);
        self.on_timing(hdr, now, clock_start, clock_rate);
    }

    /// Accounts a packet whose timestamp is not a sampling instant (an RFC
    /// 4733 event repeats its start timestamp): counted, not in the jitter.
    pub fn on_untimed_packet(&mut self, hdr: &RtpHeader, len: usize) {
        self.count(hdr, len);
    }

    fn count(&mut self, hdr: &RtpHeader, len: usize) {
        self.packets += 1;
        self.bytes += len as u64;
        match &mut self.seq {
            Some(s) if s.ssrc == hdr.ssrc => {
                // Extend the 16-bit number around the highest seen so far;
                // a step back of under half the space is a late packet.
                let max16 = s.max_ext as u16;
                let delta = hdr.seq.wrapping_sub(max16) as i16;
                let ext = (s.max_ext as i64 + i64::from(delta)).max(0) as u64;
                if ext > s.max_ext {
                    s.max_ext = ext;
                }
                s.received += 1;
            }
            _ => {
                self.lost_before += self.seq.map_or(0, |s| s.lost());
                self.seq = Some(SeqState {
                    ssrc: hdr.ssrc,
                    base: u64::from(hdr.seq) + (1 << 16),
                    max_ext: u64::from(hdr.seq) + (1 << 16),
                    received: 1,
                });
                self.jitter.last = None;
            }
        }
    }

    fn on_timing(&mut self, hdr: &RtpHeader, now: Instant, clock_start: Instant, clock_rate: u32) {
        let arrival = now.saturating_duration_since(clock_start).as_micros() as u64
            * u64::from(clock_rate)
            / 1_000_000;
        if let Some((prev_arrival, prev_ts)) = self.jitter.last {
            // D(i,j) = (Rj - Ri) - (Sj - Si), in timestamp units.
            let transit_diff = (arrival as i64 - prev_arrival as i64)
                - i64::from(hdr.timestamp.wrapping_sub(prev_ts) as i32);
            let d = transit_diff.unsigned_abs();
            // J += (|D| - J) / 16, with j16 = 16 J (RFC 3550 A.8).
            self.jitter.j16 = self.jitter.j16 + d - ((self.jitter.j16 + 8) >> 4);
        }
        self.jitter.last = Some((arrival, hdr.timestamp));
    }

    /// Packets lost, from sequence gaps (expected - received, never negative).
    pub fn lost(&self) -> u64 {
        self.lost_before + self.seq.map_or(0, |s| s.lost())
    }

    /// Interarrival jitter in milliseconds for `clock_rate`.
    pub fn jitter_ms(&self, clock_rate: u32) -> f64 {
        (self.jitter.j16 as f64 / 16.0) * 1000.0 / f64::from(clock_rate)
    }
}

impl SeqState {
    fn lost(&self) -> u64 {
        let expected = self.max_ext - self.base + 1;
        expected.saturating_sub(self.received)
    }
}

/// Writes a 12-byte RTP header (tests and the benchmark build packets).
/// Gives a parsed RTP packet another sequence number, timestamp and SSRC,
/// and sets its marker bit when `marker` (payload type, CSRCs, extensions
/// and payload stay).
pub fn renumber(packet: &mut [u8], marker: bool, seq: u16, ts: u32, ssrc: u32) {
    if packet.len() < 12 {
        return;
    }
    if marker {
        packet[1] |= 0x80;
    }
    packet[2..4].copy_from_slice(&seq.to_be_bytes());
    packet[4..8].copy_from_slice(&ts.to_be_bytes());
    packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

pub fn write_header(buf: &mut [u8], pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) {
    buf[0] = 0x80;
    buf[1] = pt | if marker { 0x80 } else { 0 };
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: usize) -> Vec<u8> {
        let mut p = vec![0u8; 12 + payload];
        write_header(&mut p, pt, false, seq, ts, ssrc);
        p
    }

    fn hdr(p: &[u8]) -> RtpHeader {
        match parse(p) {
            Datagram::Rtp(h) => h,
            other => panic!("not RTP: {other:?}"),
        }
    }

    #[test]
    fn parses_fixed_header_csrcs_extension_and_padding() {
        let mut p = packet(0, 0x1234, 0xdead_beef, 0x0102_0304, 160);
        let h = hdr(&p);
        assert_eq!(
            (h.payload_type, h.seq, h.timestamp, h.ssrc),
            (0, 0x1234, 0xdead_beef, 0x0102_0304)
        );
        assert_eq!(h.payload(&p).len(), 160);

        // 1 CSRC, a one-word extension, 4 bytes of padding.
        p[0] = 0x80 | 0x20 | 0x10 | 1;
        p[1] = 8 | 0x80;
        p[16..20].copy_from_slice(&[0xbe, 0xde, 0, 1]);
        let last = p.len() - 1;
        p[last] = 4;
        let h = hdr(&p);
        assert!(h.marker);
        assert_eq!(h.payload_type, 8);
        assert_eq!(h.payload_start, 12 + 4 + 4 + 4);
        assert_eq!(h.payload_end, p.len() - 4);
    }

    #[test]
    fn rejects_garbage_and_recognises_muxed_rtcp() {
        assert_eq!(parse(b"hello world!"), Datagram::Invalid);
        assert_eq!(parse(&[0x80; 5]), Datagram::Invalid);
        let mut p = packet(0, 1, 1, 1, 0);
        p[0] |= 0x10; // extension flag without room for it
        assert_eq!(parse(&p), Datagram::Invalid);
        let rr = [0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse(&rr), Datagram::Rtcp);
        assert!(is_rtcp(&rr));
        assert!(!is_rtcp(&packet(0, 1, 1, 1, 160)));
    }

    #[test]
    fn loss_counts_sequence_gaps_across_wraparound_and_ignores_reordering() {
        let t0 = Instant::now();
        let mut s = RecvStats::default();
        let seqs: Vec<u16> = vec![65530, 65531, 65533, 65532, 65535, 0, 1, 5, 6];
        for (i, seq) in seqs.iter().enumerate() {
            let p = packet(0, *seq, 160 * i as u32, 7, 160);
            s.on_packet(
                &hdr(&p),
                p.len(),
                t0 + Duration::from_millis(20 * i as u64),
                t0,
                8000,
            );
        }
        // 65530..=6 spans 13 numbers; 9 arrived; 65534, 2, 3, 4 are lost.
        assert_eq!(s.lost(), 4);
        assert_eq!(s.packets, 9);
        assert_eq!(s.bytes, 9 * 172);
    }

    #[test]
    fn duplicates_never_make_loss_negative_and_ssrc_change_keeps_old_loss() {
        let t0 = Instant::now();
        let mut s = RecvStats::default();
        for seq in [10u16, 10, 10, 12] {
            let p = packet(0, seq, 0, 1, 10);
            s.on_packet(&hdr(&p), p.len(), t0, t0, 8000);
        }
        assert_eq!(s.lost(), 0, "3 expected, 4 received");
        let mut s = RecvStats::default();
        for (seq, ssrc) in [(1u16, 1u32), (3, 1), (500, 2), (502, 2)] {
            let p = packet(0, seq, 0, ssrc, 10);
            s.on_packet(&hdr(&p), p.len(), t0, t0, 8000);
        }
        assert_eq!(s.lost(), 2, "one lost in each stream");
    }

    #[test]
    fn jitter_is_zero_for_perfect_pacing_and_follows_rfc3550_for_alternating_delay() {
        let t0 = Instant::now();
        let mut s = RecvStats::default();
        for i in 0..100u32 {
            let p = packet(0, i as u16, 160 * i, 1, 160);
            s.on_packet(
                &hdr(&p),
                p.len(),
                t0 + Duration::from_millis(20 * u64::from(i)),
                t0,
                8000,
            );
        }
        assert_eq!(s.jitter_ms(8000), 0.0);

        // Every other packet 4 ms late: |D| = 32 timestamp units each time,
        // so J converges to 32 units = 4 ms.
        let mut s = RecvStats::default();
        for i in 0..1000u32 {
            let late = if i % 2 == 1 { 4 } else { 0 };
            let p = packet(0, i as u16, 160 * i, 1, 160);
            let at = t0 + Duration::from_millis(20 * u64::from(i) + late);
            s.on_packet(&hdr(&p), p.len(), at, t0, 8000);
        }
        let j = s.jitter_ms(8000);
        assert!((j - 4.0).abs() < 0.1, "jitter {j} ms");
    }
}
