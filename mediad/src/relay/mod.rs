//! The pure core of the relay: no sockets, no clock reads. The shell feeds
//! each datagram with the time it arrived (`Call::on_rtp` / `on_rtcp`, in
//! a buffer with [`srtp::MAX_OVERHEAD`] bytes to spare after it) and sends
//! the bytes the answer says where it says, calls `Call::on_tick` now and
//! then, and drains `Call::poll_event`.
//!
//! RTP timeout rule: the timer of a call is armed by its first RTP packet
//! (from either leg) or by sipd's `established` mark, whichever comes first;
//! media before the answer (early media) therefore counts. Once armed, a leg
//! that has sent neither RTP nor RTCP for the timeout, counted from its last
//! packet or from the arming (whichever is later), fires one `RtpTimeout`;
//! a leg on hold never does. A leg that sends again can fire again later.
//!
//! Payload types: a leg's RTP is relayed only with a payload type both
//! legs' SDPs name (one leg's alone until the other's is known), or a
//! telephone-event type of either leg: a B2BUA passes numbering through,
//! yet RFC 3264 section 6.1 lets an answer number telephone-event
//! differently, and each side then sends with the other's number. Nothing
//! is relayed before sipd names any codec. Other types are dropped and
//! counted, so nothing the call did not negotiate reaches a phone or the
//! trunk. Which sources may send at all is [`latch`]'s business.
//!
//! Answering: from the first [`Call::play`] until the call ends, mediad is
//! the A-leg's endpoint rather than a relay. It sends the A-leg packets of
//! its own ([`player`]), at the latched address or the SDP's while
//! learning, relays nothing either way (a B-leg's packets are dropped) and,
//! when the Play asks, records what the A-leg says ([`voicemail`]). There
//! is no B-leg then, so only the A-leg can time out, and no leg is fed
//! music or announcements.
//!
//! Feeds (hold music, announcements): while one leg has the call on hold,
//! sipd asks for music to the other ([`Call::start_music`], a looped clip);
//! a leg about to be hung up (the phone that parked a call) may hear an
//! announcement once first ([`Call::start_clips`], not looped). That leg
//! then gets mediad's own stream ([`player`]) instead of what the other leg
//! sends, which is dropped; everything else (the other direction, RTCP,
//! recording, DTMF) goes on as relayed. [`Call::stop_feed`] ends either;
//! an announcement also ends by itself after its last packet, reported as
//! [`Event::PlayDone`] for that leg. Then the relay carries the other
//! leg's audio to it again.
//!
//! A fed leg must hear one stream throughout, or a phone drops what it
//! gets: baresip, for one, discards packets whose timestamp runs backwards
//! even under a new SSRC. So a feed continues the SSRC, numbering and
//! clock of what the leg was last sent (the clock advanced by the time
//! that passed), and relayed packets after it are renumbered to continue
//! the feed in turn (RFC 3550 section 5.1 allows any start; the marker bit
//! opens the talkspurt, RFC 3551 section 4.1). Until a leg has been fed
//! its packets pass untouched.
//!
//! SRTP (RFC 3711, keys by SDES, [`Call::set_crypto`]): each leg speaks
//! plain RTP or SRTP on its own, with one context for what it sends and
//! one for what it is sent (RFC 3711 section 3.2: the two directions keep
//! different state). What an SRTP leg sends is authenticated and decrypted
//! before anything else reads it, on the RTP port (SRTP, or SRTCP muxed
//! there, told apart by the clear header, RFC 5761 section 4) and on the
//! RTCP port (SRTCP): a packet failing the tag or the replay window is
//! dropped and counted, and never latches nor counts as the leg being
//! alive, so a forger can neither steer the media nor keep a dead call up.
//! Everything after (payload types, latching, DTMF, recording, voicemail)
//! sees plain RTP. What mediad sends an SRTP leg is encrypted last, after
//! any renumbering (the SRTP index follows the sequence number it goes out
//! with, RFC 3711 section 3.3.1): relayed RTP and RTCP, Play frames and
//! feeds. A relayed duplicate whose index the leg's key already sent is
//! dropped, as the same index twice would reuse keystream (RFC 3711
//! section 9.1). The same keys given again keep the contexts, so the
//! rollover counters, replay windows and sent indices survive a re-INVITE
//! that repeats them.

pub mod dtmf;
pub mod g711;
pub mod latch;
pub mod player;
pub mod pool;
pub mod resample;
pub mod rtp;
pub mod srtp;
pub mod stun;
pub mod transcode;
pub mod voicemail;
pub mod wav;
pub mod webrtc;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use latch::{Latch, RtcpLatch, Verdict};
use player::{Clip, G711, Player, Seed};
use proto::sdes::LegKeys;
use rtp::{Datagram, RecvStats};
use srtp::SrtpContext;
use voicemail::Voicemail;
use wav::{Codec, Recorder};

/// The RTP clock of G.711 and telephone-event.
pub const CLOCK_RATE: u32 = 8000;
/// The telephone-event payload type when the SDP does not say.
pub const DEFAULT_DTMF_PT: u8 = 101;
/// Comfort noise (RFC 3389): not audio samples, never recorded.
const CN_PT: u8 = 13;
/// A Play or feed packet with room for its SRTP tag.
const FRAME_BUF: usize = 12 + player::FRAME + srtp::MAX_OVERHEAD;

/// One side of a call: A = caller (port_a), B = callee (port_b).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegId {
    A = 0,
    B = 1,
}

impl LegId {
    pub fn other(self) -> Self {
        match self {
            LegId::A => LegId::B,
            LegId::B => LegId::A,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LegId::A => "a",
            LegId::B => "b",
        }
    }
}

/// Something sipd should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Dtmf {
        leg: LegId,
        digit: char,
    },
    RtpTimeout {
        leg: LegId,
        silent: Duration,
    },
    /// The items of the last Play to `leg` were all sent: the A-leg's
    /// (mediad answering it), or an announcement to a relayed leg.
    PlayDone {
        leg: LegId,
    },
    /// The voicemail stopped recording by itself: the longest message, or
    /// the caller's silence.
    RecordEnded(voicemail::Ended),
}

/// Why a Play cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayError {
    #[error("the leg's SDP names neither PCMU nor PCMA (UpdateLeg with its codecs comes first)")]
    NoCodec,
    /// A feed asked for in a call mediad answers itself.
    #[error("mediad answers this call itself: no leg is relayed to play to")]
    Answered,
}

/// Counters, latch and SRTP state of one leg.
#[derive(Debug)]
pub struct Leg {
    latch: Latch,
    rtcp: RtcpLatch,
    pub recv: RecvStats,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub rtcp_in: u64,
    pub rtcp_out: u64,
    /// Every dropped packet, whatever the reason (the two below included).
    pub dropped: u64,
    /// Dropped because its source may not send for this leg.
    pub dropped_foreign: u64,
    /// Dropped because its payload type was not negotiated.
    pub dropped_payload_type: u64,
    /// Dropped because it failed the SRTP/SRTCP tag or replay check.
    pub dropped_auth: u64,
    srtp: Option<LegSrtp>,
    /// A browser's leg: ICE-lite and DTLS make its SRTP keys.
    webrtc: Option<Box<webrtc::WebrtcState>>,
    /// A browser that speaks Opus: its edge turns it into G.711.
    transcode: Option<Box<transcode::Transcoder>>,
    dtmf: dtmf::DtmfDetector,
    dtmf_pt: u8,
    codecs: [Codec; 128],
    /// Payload types of the leg's SDP (bit n = type n); `None` until known.
    sdp_pts: Option<u128>,
    /// The telephone-event types among them.
    sdp_dtmf_pts: u128,
    /// The first of PCMU/PCMA the SDP names: what mediad plays in.
    play_codec: Option<(u8, G711)>,
    last_packet: Option<Instant>,
    hold: bool,
    timed_out: bool,
}

impl Default for Leg {
    fn default() -> Self {
        let mut codecs = [Codec::Other; 128];
        codecs[0] = Codec::Pcmu;
        codecs[8] = Codec::Pcma;
        Self {
            latch: Latch::default(),
            rtcp: RtcpLatch::default(),
            recv: RecvStats::default(),
            packets_out: 0,
            bytes_out: 0,
            rtcp_in: 0,
            rtcp_out: 0,
            dropped: 0,
            dropped_foreign: 0,
            dropped_payload_type: 0,
            dropped_auth: 0,
            srtp: None,
            webrtc: None,
            transcode: None,
            dtmf: dtmf::DtmfDetector::default(),
            dtmf_pt: DEFAULT_DTMF_PT,
            codecs,
            sdp_pts: None,
            sdp_dtmf_pts: 0,
            play_codec: None,
            last_packet: None,
            hold: false,
            timed_out: false,
        }
    }
}

impl Leg {
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latch.latched()
    }

    pub fn jitter_ms(&self) -> f64 {
        self.recv.jitter_ms(CLOCK_RATE)
    }

    /// The leg speaks SRTP.
    pub fn srtp(&self) -> bool {
        self.srtp.is_some()
    }

    /// A browser's leg, and whether its handshake gave it keys yet.
    pub fn webrtc(&self) -> Option<bool> {
        self.webrtc.as_ref().map(|_| self.srtp.is_some())
    }

    /// Why a browser's leg cannot carry media, if it cannot.
    pub fn webrtc_failed(&self) -> Option<&'static str> {
        self.webrtc.as_ref().and_then(|w| w.failed)
    }

    /// Authenticates and decrypts in place what the leg sent, when it
    /// speaks SRTP: the length of the plain packet, or `None` when it is
    /// dropped (and counted).
    fn open(&mut self, packet: &mut [u8], rtcp: bool) -> Option<usize> {
        let Some(s) = &mut self.srtp else {
            if self.webrtc.is_some() {
                // A browser's media before its handshake ended.
                self.dropped += 1;
                return None;
            }
            return Some(packet.len());
        };
        let opened = if rtcp {
            s.rx.unprotect_rtcp_in_place(packet)
        } else {
            s.rx.unprotect_in_place(packet)
        };
        match opened {
            Ok(len) => Some(len),
            Err(e) => {
                self.dropped += 1;
                if matches!(
                    e,
                    srtp::Error::AuthFailed | srtp::Error::Replay | srtp::Error::TooOld
                ) {
                    self.dropped_auth += 1;
                }
                None
            }
        }
    }

    /// Encrypts in place what goes to the leg, `buf[..len]`, when it speaks
    /// SRTP: the length to send, or `None` when it cannot go (counted
    /// dropped: no room, or an index the context refuses to reuse).
    fn seal(&mut self, buf: &mut [u8], len: usize, rtcp: bool) -> Option<usize> {
        let len = match &mut self.transcode {
            Some(t) if !rtcp => {
                let codecs = &self.codecs;
                let Some(n) = t.to_browser(buf, len, |pt| codecs[usize::from(pt)]) else {
                    self.dropped += 1;
                    return None;
                };
                n
            }
            _ => len,
        };
        let Some(s) = &mut self.srtp else {
            if self.webrtc.is_some() {
                // Nothing goes to a browser in the clear.
                self.dropped += 1;
                return None;
            }
            return Some(len);
        };
        let sealed = if rtcp {
            s.tx.protect_rtcp_in_place(buf, len)
        } else {
            s.tx.protect_in_place(buf, len)
        };
        match sealed {
            Ok(len) => Some(len),
            Err(_) => {
                self.dropped += 1;
                None
            }
        }
    }
}

/// A leg's SRTP: `rx` opens what it sends, `tx` seals what it is sent.
#[derive(Debug)]
struct LegSrtp {
    /// What the contexts were made from: the same keys again keep them
    /// (`None`: a DTLS handshake made them).
    keys: Option<LegKeys>,
    rx: SrtpContext,
    tx: SrtpContext,
}

impl LegSrtp {
    fn new(keys: LegKeys) -> Result<Self, srtp::Error> {
        Ok(LegSrtp {
            rx: SrtpContext::new(keys.suite, &keys.recv)?,
            tx: SrtpContext::new(keys.suite, &keys.send)?,
            keys: Some(keys),
        })
    }
}

/// The media state of one call.
pub struct Call {
    created: Instant,
    legs: [Leg; 2],
    armed_at: Option<Instant>,
    recorder: Option<Recorder>,
    events: VecDeque<Event>,
    /// Payload types relayed (bit n = type n; see the module docs).
    relayed_pts: u128,
    /// Set by the first Play: the call is the A-leg's endpoint.
    answer: Option<Answer>,
    /// What each leg is fed in place of the other leg's audio: hold music
    /// (looped) or an announcement (see the module docs).
    feeds: [Option<Player>; 2],
    /// The stream each leg is sent (see the module docs).
    out: [OutStream; 2],
    /// The Play or feed packet last handed out, sealed for its leg.
    frame: [u8; FRAME_BUF],
}

/// What one leg has been sent, to keep it one RTP stream across feeds.
#[derive(Debug, Default, Clone, Copy)]
struct OutStream {
    /// The last packet: SSRC, sequence number, timestamp, when it went.
    last: Option<(u32, u16, u32, Instant)>,
    /// How relayed packets are renumbered since the last feed ended.
    shift: Option<Shift>,
    /// A feed played since `shift` was set: the next relayed packet sets it
    /// afresh.
    resync: bool,
}

/// Relayed packets of SSRC `from` go out as SSRC `ssrc`, their sequence
/// numbers and timestamps moved by `seq` and `ts` (wrapping).
#[derive(Debug, Clone, Copy)]
struct Shift {
    from: u32,
    ssrc: u32,
    seq: u16,
    ts: u32,
}

impl OutStream {
    /// Where the stream goes on at `now`: the next sequence number and the
    /// timestamp advanced by the time since the last packet (one frame at
    /// least).
    fn next_at(&self, now: Instant) -> Option<(u32, u16, u32)> {
        let (ssrc, seq, ts, when) = self.last?;
        let gap =
            now.saturating_duration_since(when).as_micros() * u128::from(CLOCK_RATE) / 1_000_000;
        let gap = u32::try_from(gap)
            .unwrap_or(u32::MAX)
            .max(player::FRAME as u32);
        Some((ssrc, seq.wrapping_add(1), ts.wrapping_add(gap)))
    }

    /// A relayed packet `hdr` leaves at `now`: the (marker, seq, ts, SSRC)
    /// to give it, when it needs others than its own.
    fn relay(&mut self, now: Instant, hdr: &rtp::RtpHeader) -> Option<(bool, u16, u32, u32)> {
        let mut fresh = false;
        if self.resync || self.shift.is_some_and(|s| s.from != hdr.ssrc) {
            self.resync = false;
            if let Some((ssrc, seq, ts)) = self.next_at(now) {
                self.shift = Some(Shift {
                    from: hdr.ssrc,
                    ssrc,
                    seq: seq.wrapping_sub(hdr.seq),
                    ts: ts.wrapping_sub(hdr.timestamp),
                });
                fresh = true;
            }
        }
        let Some(s) = self.shift else {
            self.last = Some((hdr.ssrc, hdr.seq, hdr.timestamp, now));
            return None;
        };
        let (seq, ts) = (
            hdr.seq.wrapping_add(s.seq),
            hdr.timestamp.wrapping_add(s.ts),
        );
        self.last = Some((s.ssrc, seq, ts, now));
        Some((fresh, seq, ts, s.ssrc))
    }
}

/// mediad answering the A-leg (see the module docs).
struct Answer {
    player: Player,
    /// A Play is under way: its PlayDone is still owed.
    playing: bool,
    /// Record after the items, for at most this long.
    record_after: Option<voicemail::RecordLimits>,
    voicemail: Option<Voicemail>,
}

impl Call {
    pub fn new(now: Instant) -> Self {
        Self {
            created: now,
            legs: [Leg::default(), Leg::default()],
            armed_at: None,
            recorder: None,
            events: VecDeque::with_capacity(8),
            relayed_pts: 0,
            answer: None,
            feeds: [None, None],
            out: [OutStream::default(); 2],
            frame: [0; FRAME_BUF],
        }
    }

    pub fn leg(&self, id: LegId) -> &Leg {
        &self.legs[id as usize]
    }

    /// An RTP-port datagram `buf[..len]` from leg `from` arrived from
    /// `src`: returns where to send `buf[..n]` out of the other leg's port,
    /// and `n`, or `None` to drop it. The packet is decrypted, renumbered
    /// and encrypted in place (see the module docs), which may lengthen it
    /// by up to [`srtp::MAX_OVERHEAD`] bytes: `buf` must have them after
    /// `len`.
    pub fn on_rtp(
        &mut self,
        now: Instant,
        from: LegId,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Option<(SocketAddr, usize)> {
        let i = from as usize;
        if (self.answer.is_some() && from == LegId::B) || len > buf.len() {
            self.legs[i].dropped += 1;
            return None;
        }
        if self.legs[i].webrtc.is_some() {
            self.webrtc_in(now, from, src, &buf[..len])?;
        }
        let muxed = rtp::is_muxed_rtcp(&buf[..len]);
        let len = self.legs[i].open(&mut buf[..len], muxed)?;
        if muxed && self.legs[i].webrtc.is_some() {
            // A browser's RTCP ends here: its reports are about its hop.
            self.legs[i].rtcp_in += 1;
            self.legs[i].last_packet = Some(now);
            return None;
        }
        let len = match &mut self.legs[i].transcode {
            Some(t) if !muxed => {
                let Some(n) = t.from_browser(buf, len) else {
                    self.legs[i].dropped += 1;
                    return None;
                };
                n
            }
            _ => len,
        };
        let hdr = match rtp::parse(&buf[..len]) {
            Datagram::Rtp(h) => h,
            Datagram::Rtcp => return self.on_rtcp_muxed(now, from, src, buf, len),
            Datagram::Invalid => {
                self.legs[i].dropped += 1;
                return None;
            }
        };
        if !self.take_rtp(now, from, src, &hdr, &buf[..len]) {
            return None;
        }
        let o = from.other() as usize;
        if self.answer.is_some() || self.feeds[o].is_some() {
            return None;
        }
        let Some(dst) = self.legs[o].latch.target() else {
            self.legs[o].dropped += 1;
            return None;
        };
        if let Some((marker, seq, ts, ssrc)) = self.out[o].relay(now, &hdr) {
            rtp::renumber(&mut buf[..len], marker, seq, ts, ssrc);
        }
        let len = self.legs[o].seal(buf, len, false)?;
        Some((dst, len))
    }

    /// An RTCP-port datagram `buf[..len]` from leg `from` arrived from
    /// `src`: as [`Call::on_rtp`], towards the other leg's RTCP port.
    pub fn on_rtcp(
        &mut self,
        now: Instant,
        from: LegId,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Option<(SocketAddr, usize)> {
        let answered_b = self.answer.is_some() && from == LegId::B;
        let leg = &mut self.legs[from as usize];
        if answered_b || !buf.get(..len).is_some_and(rtp::is_rtcp) {
            leg.dropped += 1;
            return None;
        }
        let len = leg.open(&mut buf[..len], true)?;
        if leg.rtcp.on_rtcp(src, &leg.latch) == Verdict::Drop {
            leg.dropped += 1;
            leg.dropped_foreign += 1;
            return None;
        }
        leg.rtcp_in += 1;
        leg.last_packet = Some(now);
        leg.timed_out = false;
        if self.answer.is_some() {
            return None;
        }
        let to = &mut self.legs[from.other() as usize];
        if to.webrtc.is_some() {
            // A browser takes RTCP only on its media port, about its hop.
            return None;
        }
        let dst = to.rtcp.target(&to.latch)?;
        let len = to.seal(buf, len, true)?;
        Some((dst, len))
    }

    /// Takes in an RTP packet of leg `from` (plain by now): the payload
    /// type and source checks, stats, the timeout, DTMF, recording and
    /// voicemail. False when it is dropped.
    fn take_rtp(
        &mut self,
        now: Instant,
        from: LegId,
        src: SocketAddr,
        hdr: &rtp::RtpHeader,
        packet: &[u8],
    ) -> bool {
        let i = from as usize;
        let leg = &mut self.legs[i];
        if self.relayed_pts & (1u128 << hdr.payload_type) == 0 {
            leg.dropped += 1;
            leg.dropped_payload_type += 1;
            return false;
        }
        if leg.latch.on_rtp(now, src) == Verdict::Drop {
            leg.dropped += 1;
            leg.dropped_foreign += 1;
            return false;
        }
        if hdr.payload_type == leg.dtmf_pt {
            leg.recv.on_untimed_packet(hdr, packet.len());
        } else {
            leg.recv
                .on_packet(hdr, packet.len(), now, self.created, CLOCK_RATE);
        }
        leg.last_packet = Some(now);
        leg.timed_out = false;
        self.armed_at.get_or_insert(now);
        let payload = hdr.payload(packet);
        if hdr.payload_type == leg.dtmf_pt {
            if let Some(digit) = leg.dtmf.on_event(hdr.timestamp, payload) {
                self.events.push_back(Event::Dtmf { leg: from, digit });
            }
        } else if hdr.payload_type != CN_PT {
            let codec = leg.codecs[usize::from(hdr.payload_type)];
            if let Some(rec) = &mut self.recorder {
                rec.push(i, now, hdr.ssrc, hdr.timestamp, codec, payload);
            }
            if let Some(vm) = self.answer.as_mut().and_then(|a| a.voicemail.as_mut()) {
                vm.push(now, hdr.ssrc, hdr.timestamp, codec, payload);
            }
        }
        true
    }

    /// RTCP multiplexed on the RTP port goes to the peer's RTP address. It
    /// never latches: only the latched source (a trusted IP while
    /// learning) may send it.
    fn on_rtcp_muxed(
        &mut self,
        now: Instant,
        from: LegId,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Option<(SocketAddr, usize)> {
        let leg = &mut self.legs[from as usize];
        if !leg.latch.admits(src) {
            leg.dropped += 1;
            leg.dropped_foreign += 1;
            return None;
        }
        leg.rtcp_in += 1;
        leg.last_packet = Some(now);
        if self.answer.is_some() {
            return None;
        }
        let to = &mut self.legs[from.other() as usize];
        let dst = to.latch.target()?;
        let len = to.seal(buf, len, true)?;
        Some((dst, len))
    }

    /// The shell sent `len` bytes of RTP (or RTCP) to leg `to`.
    pub fn on_sent(&mut self, to: LegId, len: usize, rtcp: bool) {
        let leg = &mut self.legs[to as usize];
        if rtcp {
            leg.rtcp_out += 1;
        } else {
            leg.packets_out += 1;
            leg.bytes_out += len as u64;
        }
    }

    /// The shell could not send to leg `to`.
    pub fn on_send_failed(&mut self, to: LegId) {
        self.legs[to as usize].dropped += 1;
    }

    /// The SDP address of a leg (RTP, and RTCP if the SDP has a=rtcp).
    pub fn set_remote(&mut self, leg: LegId, rtp: SocketAddr, rtcp: Option<SocketAddr>) {
        let l = &mut self.legs[leg as usize];
        if l.webrtc.is_some() {
            // ICE says where a browser is, not its SDP.
            return;
        }
        l.latch.set_hint(rtp);
        if let Some(r) = rtcp {
            l.rtcp.set_hint(r);
        }
    }

    /// The IP the leg's SIP signalling came from: media from it may latch
    /// the leg (a phone behind NAT whose SDP names its private address).
    pub fn set_signal_ip(&mut self, leg: LegId, ip: IpAddr) {
        if self.legs[leg as usize].webrtc.is_some() {
            return;
        }
        self.legs[leg as usize].latch.set_signal_ip(ip);
    }

    /// The codecs of a leg's SDP: its payload types, which replace those
    /// of its previous SDP (an empty list leaves them), their encodings and
    /// the telephone-event type.
    pub fn set_codecs<'a>(&mut self, leg: LegId, codecs: impl IntoIterator<Item = (u8, &'a str)>) {
        let l = &mut self.legs[leg as usize];
        let (mut pts, mut dtmf_pts) = (0u128, 0u128);
        let mut play_codec = None;
        for (pt, name) in codecs {
            if pt >= 128 {
                continue;
            }
            pts |= 1 << pt;
            if name.eq_ignore_ascii_case("telephone-event") {
                l.dtmf_pt = pt;
                dtmf_pts |= 1 << pt;
            } else {
                let codec = Codec::from_name(name);
                l.codecs[usize::from(pt)] = codec;
                play_codec = play_codec.or(match codec {
                    Codec::Pcmu => Some((pt, G711::Pcmu)),
                    Codec::Pcma => Some((pt, G711::Pcma)),
                    Codec::Other => None,
                });
            }
        }
        if pts == 0 {
            return;
        }
        l.play_codec = play_codec;
        l.sdp_pts = Some(pts);
        l.sdp_dtmf_pts = dtmf_pts;
        let [a, b] = &self.legs;
        let audio = match (a.sdp_pts, b.sdp_pts) {
            (Some(x), Some(y)) => x & y,
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => 0,
        };
        self.relayed_pts = audio | a.sdp_dtmf_pts | b.sdp_dtmf_pts;
    }

    /// How leg `leg` speaks from now on: SRTP with `keys`, or plain RTP
    /// with `None`. The keys in force given again keep their contexts, and
    /// with them the rollover counters and replay windows (RFC 3711 section
    /// 3.2); other keys start afresh. An error (the cipher would not start)
    /// leaves the leg as it was.
    pub fn set_crypto(&mut self, leg: LegId, keys: Option<LegKeys>) -> Result<(), srtp::Error> {
        let l = &mut self.legs[leg as usize];
        match keys {
            None => l.srtp = None,
            Some(k) if l.srtp.as_ref().is_some_and(|s| s.keys.as_ref() == Some(&k)) => {}
            Some(k) => l.srtp = Some(LegSrtp::new(k)?),
        }
        // SDES keys or plain RTP: the leg is no browser's any more.
        l.webrtc = None;
        l.transcode = None;
        Ok(())
    }

    /// Makes leg `leg` a browser's: ICE-lite answers to its checks, then
    /// DTLS, then SRTP with the keys the handshake exports. The same
    /// parameters again (a re-INVITE) keep the running state; new ones
    /// start afresh, and nothing is relayed to or from the leg until its
    /// handshake is done. Its Opus bridge (see [`transcode`]) follows
    /// `params.opus` without touching the handshake: sipd learns it from
    /// the answer, after the leg's ICE and DTLS.
    pub fn set_webrtc(
        &mut self,
        now: Instant,
        leg: LegId,
        mut params: proto::webrtc::WebrtcLeg,
        id: &webrtc::Identity,
    ) -> Result<(), transcode::Error> {
        let opus = params.opus.take();
        let l = &mut self.legs[leg as usize];
        if !l.webrtc.as_ref().is_some_and(|w| w.params == params) {
            l.webrtc = Some(Box::new(webrtc::WebrtcState::new(params, id, now)));
            l.srtp = None;
        }
        if l.transcode.as_ref().map(|t| t.bridge()) != opus {
            l.transcode = None;
            if let Some(b) = opus {
                l.transcode = Some(Box::new(transcode::Transcoder::new(b)?));
            }
        }
        Ok(())
    }

    /// Datagrams a browser's leg is owed (ICE answers, DTLS flights):
    /// (leg, destination, datagram), sent out of that leg's RTP port.
    pub fn poll_transmit(&mut self) -> Option<(LegId, SocketAddr, Vec<u8>)> {
        for id in [LegId::A, LegId::B] {
            if let Some((to, d)) = self.legs[id as usize]
                .webrtc
                .as_mut()
                .and_then(|w| w.poll_transmit())
            {
                return Some((id, to, d));
            }
        }
        None
    }

    /// The call ends: browsers' legs say DTLS close_notify (drained with
    /// [`Call::poll_transmit`]).
    pub fn close_webrtc(&mut self) {
        for l in &mut self.legs {
            if let Some(w) = l.webrtc.as_mut() {
                w.close();
            }
        }
    }

    /// A datagram on a browser's leg: STUN and DTLS stay here, and the
    /// leg's keys and latch follow them; `Some(())` for media to relay.
    fn webrtc_in(&mut self, now: Instant, from: LegId, src: SocketAddr, data: &[u8]) -> Option<()> {
        let l = &mut self.legs[from as usize];
        let w = l.webrtc.as_mut()?;
        match w.on_datagram(now, src, data) {
            webrtc::Taken::Media => return Some(()),
            webrtc::Taken::Dropped { foreign } => {
                l.dropped += 1;
                l.dropped_foreign += u64::from(foreign);
                return None;
            }
            webrtc::Taken::Handled => {}
        }
        if let Some(to) = w.target()
            && l.latch.latched() != Some(to)
        {
            l.latch.pin(now, to);
        }
        if let Some(k) = w.take_keys() {
            tracing::debug!(leg = from.as_str(), profile = %k.profile, "browser leg keyed by DTLS");
            l.srtp = Some(LegSrtp {
                keys: None,
                rx: k.rx,
                tx: k.tx,
            });
        }
        l.last_packet = Some(now);
        None
    }

    /// sipd says the call is answered: the RTP timeout is armed from now on.
    pub fn set_established(&mut self, now: Instant) {
        self.armed_at.get_or_insert(now);
    }

    pub fn set_hold(&mut self, leg: LegId, hold: bool) {
        self.legs[leg as usize].hold = hold;
    }

    /// Periodic work: the voicemail's limit, RTP timeout detection.
    pub fn on_tick(&mut self, now: Instant, rtp_timeout: Duration) {
        for l in &mut self.legs {
            if let Some(w) = l.webrtc.as_mut() {
                w.on_tick(now);
            }
        }
        if let Some(vm) = self.answer.as_mut().and_then(|a| a.voicemail.as_mut())
            && let Some(ended) = vm.reach_end(now)
        {
            self.events.push_back(Event::RecordEnded(ended));
        }
        let Some(armed) = self.armed_at else { return };
        if rtp_timeout.is_zero() {
            return;
        }
        let answering = self.answer.is_some();
        for (i, leg) in self.legs.iter_mut().enumerate() {
            // An answered call has no B-leg that could fall silent.
            if leg.hold || leg.timed_out || (answering && i == LegId::B as usize) {
                continue;
            }
            let since = leg.last_packet.map_or(armed, |t| t.max(armed));
            let silent = now.saturating_duration_since(since);
            if silent >= rtp_timeout {
                leg.timed_out = true;
                let leg = if i == 0 { LegId::A } else { LegId::B };
                self.events.push_back(Event::RtpTimeout { leg, silent });
            }
        }
    }

    /// The last RTP or RTCP packet from either leg.
    pub fn last_packet(&self) -> Option<Instant> {
        self.legs.iter().filter_map(|l| l.last_packet).max()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Starts placing audio on a fresh recording timeline.
    pub fn start_recording(&mut self, now: Instant) {
        self.recorder = Some(Recorder::new(now));
    }

    /// Stops recording; the returned recorder still holds unwritten audio.
    pub fn stop_recording(&mut self) -> Option<Recorder> {
        self.recorder.take()
    }

    pub fn recorder_mut(&mut self) -> Option<&mut Recorder> {
        self.recorder.as_mut()
    }

    pub fn is_recording(&self) -> bool {
        self.recorder.is_some()
    }

    /// Plays `clips` to the A-leg, then records it for `record_after` if
    /// set; the call is the A-leg's endpoint from now on, and the feeds of
    /// both legs end (an announcement's PlayDone never comes). Replaces a
    /// Play under way (which never reports PlayDone) and ends a voicemail
    /// being recorded, whose rest is appended to `out` as by
    /// [`Call::finish_voicemail`]. `seed` starts the RTP stream of the
    /// call's first Play; later ones continue it.
    pub fn play(
        &mut self,
        clips: Vec<Clip>,
        record_after: Option<voicemail::RecordLimits>,
        seed: Seed,
        out: &mut Vec<u8>,
    ) -> Result<(), PlayError> {
        let (pt, codec) = self.legs[LegId::A as usize]
            .play_codec
            .ok_or(PlayError::NoCodec)?;
        let answer = self.answer.get_or_insert_with(|| Answer {
            player: Player::new(seed),
            playing: false,
            record_after: None,
            voicemail: None,
        });
        answer.player.play(codec, pt, clips);
        answer.playing = true;
        self.feeds = [None, None];
        answer.record_after = record_after;
        if let Some(mut vm) = answer.voicemail.take() {
            vm.finish(out);
        }
        Ok(())
    }

    /// A Play is under way: the shell calls [`Call::next_frame`] every
    /// 20 ms.
    pub fn is_playing(&self) -> bool {
        self.answer.as_ref().is_some_and(|a| a.playing)
    }

    /// The next 20 ms packet for the A-leg (SRTP if the leg speaks it) and
    /// where it goes. `None` when there is nothing to send: no address for
    /// the leg yet (the packet is counted dropped), or the items are done,
    /// one frame time after the last packet: then [`Event::PlayDone`], and
    /// the voicemail starts.
    pub fn next_frame(&mut self, now: Instant) -> Option<(SocketAddr, &[u8])> {
        let answer = self.answer.as_mut()?;
        if !answer.playing {
            return None;
        }
        let leg = &mut self.legs[LegId::A as usize];
        let Some(packet) = answer.player.next_packet() else {
            answer.playing = false;
            self.events.push_back(Event::PlayDone { leg: LegId::A });
            if let Some(limits) = answer.record_after.take() {
                answer.voicemail = Some(Voicemail::new(now, limits));
            }
            return None;
        };
        let Some(dst) = leg.latch.target() else {
            leg.dropped += 1;
            return None;
        };
        let len = seal_frame(&mut self.frame, leg, packet)?;
        Some((dst, &self.frame[..len]))
    }

    /// Plays `clip` over and over to leg `to` in place of what the other
    /// leg sends (hold music), as [`Call::start_clips`] does. Music already
    /// playing to `to` goes on; an announcement is replaced; a call mediad
    /// answers has no other leg and gets none.
    pub fn start_music(
        &mut self,
        now: Instant,
        to: LegId,
        clip: Clip,
        seed: Seed,
    ) -> Result<(), PlayError> {
        let playing = self.feeds[to as usize]
            .as_ref()
            .is_some_and(Player::is_looping);
        if self.answer.is_some() || playing {
            return Ok(());
        }
        self.start_clips(now, to, vec![clip], true, seed)
    }

    /// Feeds `clips` to leg `to` in place of what the other leg sends, in
    /// the first of PCMU/PCMA of `to`'s SDP: over and over when `looped`
    /// (hold music), else once (an announcement), after which comes
    /// [`Event::PlayDone`] for `to` and the leg hears the other again.
    /// Replaces whatever `to` was fed; a replaced announcement never
    /// reports PlayDone. `seed` starts the stream when the leg was never
    /// sent anything; otherwise the clips continue what it was sent.
    pub fn start_clips(
        &mut self,
        now: Instant,
        to: LegId,
        clips: Vec<Clip>,
        looped: bool,
        seed: Seed,
    ) -> Result<(), PlayError> {
        if self.answer.is_some() {
            return Err(PlayError::Answered);
        }
        let (pt, codec) = self.legs[to as usize]
            .play_codec
            .ok_or(PlayError::NoCodec)?;
        let seed = match self.out[to as usize].next_at(now) {
            Some((ssrc, seq, timestamp)) => Seed {
                ssrc,
                seq,
                timestamp,
            },
            None => seed,
        };
        let mut player = Player::new(seed);
        if looped {
            player.play_looped(codec, pt, clips);
        } else {
            player.play(codec, pt, clips);
        }
        self.feeds[to as usize] = Some(player);
        Ok(())
    }

    /// Ends the feed of leg `to` (hold music, or an announcement, which
    /// then reports no PlayDone): it hears the other leg again.
    pub fn stop_feed(&mut self, to: LegId) {
        if self.feeds[to as usize].take().is_some() {
            self.out[to as usize].resync = true;
        }
    }

    /// Some leg is fed (music or an announcement): the shell calls
    /// [`Call::next_feed_frame`] for each leg every 20 ms.
    pub fn has_feed(&self) -> bool {
        self.feeds.iter().any(Option::is_some)
    }

    /// The next 20 ms of leg `to`'s feed (SRTP if the leg speaks it) and
    /// where it goes; `None` without a feed or without an address for the
    /// leg (then counted dropped).
    /// An announcement ends one frame time after its last packet: then
    /// [`Event::PlayDone`], and the relay carries the other leg again.
    pub fn next_feed_frame(&mut self, now: Instant, to: LegId) -> Option<(SocketAddr, &[u8])> {
        let i = to as usize;
        if self.feeds[i]
            .as_ref()
            .is_some_and(|p| !p.is_looping() && !p.has_audio())
        {
            self.feeds[i] = None;
            self.out[i].resync = true;
            self.events.push_back(Event::PlayDone { leg: to });
            return None;
        }
        let player = self.feeds[i].as_mut()?;
        let leg = &mut self.legs[i];
        let packet = player.next_packet()?;
        if let Datagram::Rtp(h) = rtp::parse(packet) {
            self.out[i].last = Some((h.ssrc, h.seq, h.timestamp, now));
        }
        let Some(dst) = leg.latch.target() else {
            leg.dropped += 1;
            return None;
        };
        let len = seal_frame(&mut self.frame, leg, packet)?;
        Some((dst, &self.frame[..len]))
    }

    /// Appends the voicemail audio that is ready (mono 16-bit LE) to `out`.
    pub fn drain_voicemail(&mut self, now: Instant, out: &mut Vec<u8>) {
        if let Some(vm) = self.answer.as_mut().and_then(|a| a.voicemail.as_mut()) {
            vm.drain(now, out);
        }
    }

    /// Ends the voicemail recording and appends the rest of it to `out`.
    pub fn finish_voicemail(&mut self, out: &mut Vec<u8>) {
        if let Some(mut vm) = self.answer.as_mut().and_then(|a| a.voicemail.take()) {
            vm.finish(out);
        }
    }
}

/// Copies a Play or feed packet into `frame` and seals it there for `leg`
/// (the player's packet has no room for a tag): the length to send.
fn seal_frame(frame: &mut [u8; FRAME_BUF], leg: &mut Leg, packet: &[u8]) -> Option<usize> {
    let Some(plain) = frame.get_mut(..packet.len()) else {
        leg.dropped += 1;
        return None;
    };
    plain.copy_from_slice(packet);
    leg.seal(frame, packet.len(), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_from_anywhere_never_panic_the_relay(
            packets in proptest::collection::vec((any::<bool>(), any::<bool>(), 0u16..4, proptest::collection::vec(any::<u8>(), 0..300)), 1..40),
        ) {
            let t = Instant::now();
            let mut c = call(t);
            c.start_recording(t);
            for (i, (b_leg, rtcp, port, mut bytes)) in packets.into_iter().enumerate() {
                // Half the packets get a valid version so parsing goes deeper.
                if let Some(first) = bytes.first_mut() && i % 2 == 0 {
                    *first = 0x80 | (*first & 0x3f);
                }
                let now = t + Duration::from_millis(20 * i as u64);
                let leg = if b_leg { LegId::B } else { LegId::A };
                let src = addr(5000 + port);
                if rtcp {
                    c.relay_rtcp(now, leg, src, &bytes);
                } else {
                    c.relay_rtp(now, leg, src, &mut bytes.clone());
                }
                c.on_tick(now, Duration::from_secs(1));
                while c.poll_event().is_some() {}
            }
            let mut out = Vec::new();
            if let Some(mut r) = c.stop_recording() {
                r.finish(&mut out);
            }
            prop_assert_eq!(out.len() % 4, 0);
        }
    }

    /// The shell's way into the core, on a test's packets.
    trait Relay {
        /// [`Call::on_rtp`] on `p`, given room for a trailer; `p` is left
        /// holding what goes out.
        fn relay_rtp(
            &mut self,
            now: Instant,
            from: LegId,
            src: SocketAddr,
            p: &mut Vec<u8>,
        ) -> Option<SocketAddr>;

        /// [`Call::on_rtcp`] on a copy of `p`: where it goes and what.
        fn rtcp_out(
            &mut self,
            now: Instant,
            from: LegId,
            src: SocketAddr,
            p: &[u8],
        ) -> Option<(SocketAddr, Vec<u8>)>;

        fn relay_rtcp(
            &mut self,
            now: Instant,
            from: LegId,
            src: SocketAddr,
            p: &[u8],
        ) -> Option<SocketAddr> {
            self.rtcp_out(now, from, src, p).map(|(dst, _)| dst)
        }
    }

    impl Relay for Call {
        fn relay_rtp(
            &mut self,
            now: Instant,
            from: LegId,
            src: SocketAddr,
            p: &mut Vec<u8>,
        ) -> Option<SocketAddr> {
            let len = p.len();
            p.resize(len + srtp::MAX_OVERHEAD, 0);
            let out = self.on_rtp(now, from, src, p, len);
            p.truncate(out.map_or(len, |(_, n)| n));
            out.map(|(dst, _)| dst)
        }

        fn rtcp_out(
            &mut self,
            now: Instant,
            from: LegId,
            src: SocketAddr,
            p: &[u8],
        ) -> Option<(SocketAddr, Vec<u8>)> {
            let mut buf = p.to_vec();
            buf.resize(p.len() + srtp::MAX_OVERHEAD, 0);
            let (dst, n) = self.on_rtcp(now, from, src, &mut buf, p.len())?;
            buf.truncate(n);
            Some((dst, buf))
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn attacker(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 2], port))
    }

    /// A call whose legs both signalled from 127.0.0.1 and offered/answered
    /// PCMU, PCMA and telephone-event 101.
    fn call(t: Instant) -> Call {
        let mut c = Call::new(t);
        for leg in [LegId::A, LegId::B] {
            c.set_signal_ip(leg, addr(0).ip());
            c.set_codecs(leg, G711_DTMF);
        }
        c
    }

    const G711_DTMF: [(u8, &str); 3] = [(0, "PCMU"), (8, "PCMA"), (101, "telephone-event")];

    fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        rtp::write_header(&mut p, pt, false, seq, ts, ssrc);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn packets_flow_both_ways_once_each_side_latched() {
        let t = Instant::now();
        let mut c = call(t);
        // A speaks first: B's address is unknown, so the packet is dropped.
        assert_eq!(
            c.relay_rtp(t, LegId::A, addr(5000), &mut rtp(0, 1, 0, 1, &[0xff; 160])),
            None
        );
        assert_eq!(c.leg(LegId::B).dropped, 1);
        // B speaks: goes to A's latched source.
        assert_eq!(
            c.relay_rtp(t, LegId::B, addr(6000), &mut rtp(8, 1, 0, 2, &[0xd5; 160])),
            Some(addr(5000))
        );
        c.on_sent(LegId::A, 172, false);
        assert_eq!(
            c.relay_rtp(
                t,
                LegId::A,
                addr(5000),
                &mut rtp(0, 2, 160, 1, &[0xff; 160])
            ),
            Some(addr(6000))
        );
        c.on_sent(LegId::B, 172, false);
        assert_eq!(c.leg(LegId::A).recv.packets, 2);
        assert_eq!(c.leg(LegId::A).packets_out, 1);
        assert_eq!(c.leg(LegId::B).bytes_out, 172);
        assert_eq!(c.leg(LegId::A).latched(), Some(addr(5000)));
    }

    #[test]
    fn early_media_goes_to_the_sdp_hint_then_to_the_latched_source() {
        let t = Instant::now();
        let mut c = call(t);
        c.set_remote(LegId::A, addr(4000), None);
        assert_eq!(
            c.relay_rtp(t, LegId::B, addr(6000), &mut rtp(0, 1, 0, 2, &[0; 160])),
            Some(addr(4000))
        );
        c.relay_rtp(t, LegId::A, addr(4444), &mut rtp(0, 1, 0, 1, &[0; 160]));
        assert_eq!(
            c.relay_rtp(t, LegId::B, addr(6000), &mut rtp(0, 2, 160, 2, &[0; 160])),
            Some(addr(4444))
        );
    }

    #[test]
    fn garbage_and_foreign_sources_are_dropped_and_counted() {
        let t = Instant::now();
        let mut c = call(t);
        c.set_remote(LegId::B, addr(6000), None);
        assert_eq!(
            c.relay_rtp(t, LegId::A, addr(5000), &mut b"GET / HTTP/1.1\r\n".to_vec()),
            None
        );
        c.relay_rtp(t, LegId::A, addr(5000), &mut rtp(0, 1, 0, 1, &[0; 160]));
        assert_eq!(
            c.relay_rtp(t, LegId::A, addr(5001), &mut rtp(0, 2, 160, 1, &[0; 160])),
            None
        );
        assert_eq!(c.leg(LegId::A).dropped, 2);
        assert_eq!(c.leg(LegId::A).recv.packets, 1);
    }

    #[test]
    fn rtcp_is_relayed_to_the_peers_rtcp_port() {
        let t = Instant::now();
        let mut c = call(t);
        let rr = [0x81, 201, 0, 1, 0, 0, 0, 1];
        c.relay_rtp(t, LegId::A, addr(5000), &mut rtp(0, 1, 0, 1, &[0; 160]));
        c.relay_rtp(t, LegId::B, addr(6000), &mut rtp(0, 1, 0, 2, &[0; 160]));
        assert_eq!(c.relay_rtcp(t, LegId::A, addr(5001), &rr), Some(addr(6001)));
        assert_eq!(c.leg(LegId::A).rtcp_in, 1);
        assert_eq!(c.relay_rtcp(t, LegId::B, addr(6001), b"nonsense"), None);
        // Muxed RTCP on the RTP port follows the RTP path.
        assert_eq!(
            c.relay_rtp(t, LegId::B, addr(6000), &mut rr.to_vec()),
            Some(addr(5000))
        );
    }

    #[test]
    fn dtmf_events_are_reported_per_leg_and_not_recorded() {
        let t = Instant::now();
        let mut c = call(t);
        c.set_codecs(LegId::A, [(0u8, "PCMU"), (96, "telephone-event")]);
        c.set_codecs(LegId::B, [(0u8, "PCMU"), (96, "telephone-event")]);
        c.start_recording(t);
        for (seq, ev, end) in [
            (1u16, 10u8, false),
            (2, 10, true),
            (3, 10, true),
            (4, 1, false),
        ] {
            let ts = if ev == 10 { 800 } else { 2400 };
            c.relay_rtp(
                t,
                LegId::A,
                addr(5000),
                &mut rtp(96, seq, ts, 1, &dtmf::payload(ev, end, 160)),
            );
        }
        // PT 101 is no longer negotiated: not an event, not relayed.
        c.relay_rtp(
            t,
            LegId::A,
            addr(5000),
            &mut rtp(101, 5, 2400, 1, &dtmf::payload(2, false, 160)),
        );
        assert_eq!(c.leg(LegId::A).dropped_payload_type, 1);
        assert_eq!(
            c.leg(LegId::A).jitter_ms(),
            0.0,
            "events are not timing samples"
        );
        assert_eq!(
            c.poll_event(),
            Some(Event::Dtmf {
                leg: LegId::A,
                digit: '*'
            })
        );
        assert_eq!(
            c.poll_event(),
            Some(Event::Dtmf {
                leg: LegId::A,
                digit: '1'
            })
        );
        assert_eq!(c.poll_event(), None);
    }

    #[test]
    fn an_idle_call_times_out_only_after_it_is_armed() {
        let t = Instant::now();
        let timeout = Duration::from_secs(60);
        let mut c = call(t);
        c.on_tick(t + Duration::from_secs(600), timeout);
        assert_eq!(c.poll_event(), None, "ringing: not armed");
        let answered = t + Duration::from_secs(600);
        c.set_established(answered);
        c.on_tick(answered + Duration::from_secs(59), timeout);
        assert_eq!(c.poll_event(), None);
        c.on_tick(answered + Duration::from_secs(60), timeout);
        let mut legs = vec![];
        while let Some(Event::RtpTimeout { leg, silent }) = c.poll_event() {
            assert_eq!(silent, timeout);
            legs.push(leg);
        }
        assert_eq!(legs, vec![LegId::A, LegId::B]);
        c.on_tick(answered + Duration::from_secs(120), timeout);
        assert_eq!(c.poll_event(), None, "fires once");
    }

    #[test]
    fn a_vanished_phone_times_out_while_the_other_leg_talks_and_hold_suspends_the_timer() {
        let t = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut c = call(t);
        c.set_remote(LegId::A, addr(5000), None);
        c.set_remote(LegId::B, addr(6000), None);
        for i in 0..500u32 {
            let now = t + Duration::from_millis(20 * u64::from(i));
            // A stops after 1 s; B keeps talking.
            if i < 50 {
                c.relay_rtp(
                    now,
                    LegId::A,
                    addr(5000),
                    &mut rtp(0, i as u16, 160 * i, 1, &[0; 160]),
                );
            }
            c.relay_rtp(
                now,
                LegId::B,
                addr(6000),
                &mut rtp(0, i as u16, 160 * i, 2, &[0; 160]),
            );
            c.on_tick(now, timeout);
        }
        assert!(matches!(
            c.poll_event(),
            Some(Event::RtpTimeout { leg: LegId::A, .. })
        ));
        assert_eq!(c.poll_event(), None);

        let mut c = call(t);
        c.set_established(t);
        c.set_hold(LegId::B, true);
        for s in 0..10u64 {
            c.relay_rtcp(
                t + Duration::from_secs(s),
                LegId::A,
                addr(5001),
                &[0x81, 200, 0, 1, 0, 0, 0, 1],
            );
        }
        c.on_tick(t + Duration::from_secs(10), timeout);
        assert_eq!(c.poll_event(), None, "A sends RTCP, B is on hold");
    }

    #[test]
    fn recorded_audio_comes_from_the_legs_codec_maps() {
        let t = Instant::now();
        let mut c = call(t);
        for leg in [LegId::A, LegId::B] {
            c.set_codecs(leg, [(0u8, "PCMU"), (97u8, "PCMA"), (13, "CN")]);
        }
        c.start_recording(t);
        c.relay_rtp(
            t,
            LegId::A,
            addr(5000),
            &mut rtp(0, 1, 0, 1, &[g711::ulaw_encode(4000); 160]),
        );
        c.relay_rtp(
            t,
            LegId::B,
            addr(6000),
            &mut rtp(97, 1, 0, 2, &[g711::alaw_encode(-4000); 160]),
        );
        c.relay_rtp(t, LegId::B, addr(6000), &mut rtp(13, 2, 160, 2, &[40]));
        let mut rec = c.stop_recording().unwrap();
        assert!(!c.is_recording());
        let mut out = Vec::new();
        assert_eq!(rec.finish(&mut out), 160);
        assert_a_left_b_right(&out);
    }

    #[test]
    fn payload_types_the_sdps_did_not_name_are_dropped_and_counted() {
        let t = Instant::now();
        let mut c = call(t);
        c.set_remote(LegId::B, addr(6000), None);
        c.set_codecs(LegId::B, [(8u8, "PCMA"), (101, "telephone-event")]);
        // PCMU was offered by A but not answered by B; 96 nobody named.
        for (seq, pt) in [(1u16, 0u8), (2, 96), (3, 127)] {
            assert_eq!(
                c.relay_rtp(t, LegId::A, addr(5000), &mut rtp(pt, seq, 0, 1, &[0; 160])),
                None
            );
        }
        assert_eq!(c.leg(LegId::A).dropped_payload_type, 3);
        assert_eq!(c.leg(LegId::A).latched(), None, "junk does not latch");
        assert_eq!(
            c.relay_rtp(t, LegId::A, addr(5000), &mut rtp(8, 4, 0, 1, &[0; 160])),
            Some(addr(6000))
        );
        assert_eq!(
            c.relay_rtp(
                t,
                LegId::A,
                addr(5000),
                &mut rtp(101, 5, 0, 1, &dtmf::payload(1, false, 160))
            ),
            Some(addr(6000))
        );
        assert_eq!(c.leg(LegId::A).recv.packets, 2);
        assert_eq!(c.leg(LegId::A).dropped, 3);
    }

    #[test]
    fn a_telephone_event_type_either_leg_named_is_relayed_both_ways() {
        // RFC 3264 section 6.1 lets the answer renumber telephone-event; each
        // side then sends with the number the other side chose.
        let t = Instant::now();
        let mut c = call(t);
        c.set_codecs(LegId::B, [(0u8, "PCMU"), (96, "telephone-event")]);
        c.set_remote(LegId::A, addr(5000), None);
        c.set_remote(LegId::B, addr(6000), None);
        let ev = dtmf::payload(5, false, 160);
        assert_eq!(
            c.relay_rtp(t, LegId::A, addr(5000), &mut rtp(96, 1, 0, 1, &ev)),
            Some(addr(6000))
        );
        assert_eq!(
            c.relay_rtp(t, LegId::B, addr(6000), &mut rtp(101, 1, 0, 2, &ev)),
            Some(addr(5000))
        );
        assert_eq!(
            c.relay_rtp(t, LegId::B, addr(6000), &mut rtp(8, 2, 0, 2, &[0; 160])),
            None
        );
    }

    #[test]
    fn nothing_is_relayed_before_sipd_names_a_codec() {
        let t = Instant::now();
        let mut c = Call::new(t);
        c.set_remote(LegId::A, addr(5000), None);
        c.set_remote(LegId::B, addr(6000), None);
        assert_eq!(
            c.relay_rtp(t, LegId::A, addr(5000), &mut rtp(0, 1, 0, 1, &[0; 160])),
            None
        );
        assert_eq!(c.leg(LegId::A).dropped_payload_type, 1);
        c.set_codecs(LegId::A, [(0u8, "PCMU")]);
        assert_eq!(
            c.relay_rtp(t, LegId::A, addr(5000), &mut rtp(0, 2, 160, 1, &[0; 160])),
            Some(addr(6000))
        );
    }

    #[test]
    fn an_attacker_spraying_a_new_ssrc_in_order_neither_latches_nor_hears_anything() {
        let t = Instant::now();
        let mut c = call(t);
        c.set_remote(LegId::A, addr(5000), None);
        c.set_remote(LegId::B, addr(6000), None);
        let mut heard = [0u32; 2];
        for i in 0..200u16 {
            let now = t + Duration::from_millis(20 * u64::from(i));
            // Before the phones start, during the call and after A's silence.
            for leg in [LegId::A, LegId::B] {
                let p = rtp(0, 1000 + i, 160 * u32::from(i), 0xbad, &[0x55; 160]);
                assert_eq!(
                    c.relay_rtp(now, leg, attacker(40_000), &mut p.clone()),
                    None
                );
                let rr = [0x81, 201, 0, 1, 0, 0, 0x0b, 0xad];
                assert_eq!(
                    c.relay_rtp(now, leg, attacker(40_000), &mut rr.to_vec()),
                    None
                );
                assert_eq!(c.relay_rtcp(now, leg, attacker(40_001), &rr), None);
            }
            if (20..120).contains(&i) {
                let ts = 160 * u32::from(i);
                let a = c.relay_rtp(
                    now,
                    LegId::A,
                    addr(5000),
                    &mut rtp(0, i, ts, 0xa, &[1; 160]),
                );
                let b = c.relay_rtp(
                    now,
                    LegId::B,
                    addr(6000),
                    &mut rtp(0, i, ts, 0xb, &[2; 160]),
                );
                assert_eq!((a, b), (Some(addr(6000)), Some(addr(5000))), "packet {i}");
                heard[0] += 1;
                heard[1] += 1;
            }
        }
        assert_eq!(heard, [100, 100]);
        for leg in [LegId::A, LegId::B] {
            let l = c.leg(leg);
            assert_eq!(l.dropped_foreign, 600);
            assert_eq!(l.recv.packets, 100);
            assert_eq!(l.recv.lost(), 0);
        }
        assert_eq!(c.leg(LegId::A).latched(), Some(addr(5000)));
        assert_eq!(c.leg(LegId::B).latched(), Some(addr(6000)));
    }

    const SEED: Seed = Seed {
        ssrc: 0x5eed,
        seq: 100,
        timestamp: 1000,
    };

    fn header(p: &[u8]) -> rtp::RtpHeader {
        match rtp::parse(p) {
            Datagram::Rtp(h) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn play_speaks_the_first_g711_codec_of_the_a_legs_sdp_and_needs_one() {
        let t = Instant::now();
        let mut out = Vec::new();
        let clip = || vec![player::beep()];
        let mut c = Call::new(t);
        assert_eq!(
            c.play(clip(), None, SEED, &mut out),
            Err(PlayError::NoCodec)
        );
        c.set_codecs(LegId::A, [(101u8, "telephone-event"), (9, "G722")]);
        assert_eq!(
            c.play(clip(), None, SEED, &mut out),
            Err(PlayError::NoCodec)
        );
        assert!(!c.is_playing());
        c.set_remote(LegId::A, addr(4000), None);
        for (sdp, want) in [
            (vec![(9u8, "G722"), (8, "PCMA"), (0, "PCMU")], 8u8),
            (vec![(0u8, "PCMU"), (8, "PCMA")], 0),
            (vec![(97u8, "pcma"), (101, "telephone-event")], 97),
        ] {
            c.set_codecs(LegId::A, sdp);
            c.play(clip(), None, SEED, &mut out).unwrap();
            let (_, p) = c.next_frame(t).unwrap();
            assert_eq!(header(p).payload_type, want);
        }
    }

    #[test]
    fn an_answered_call_plays_to_a_then_records_it_and_relays_nothing() {
        let t = Instant::now();
        let mut c = call(t);
        c.set_remote(LegId::A, addr(4000), None);
        c.set_remote(LegId::B, addr(6000), None);
        c.set_established(t);
        let mut out = Vec::new();
        c.play(
            vec![player::beep()],
            Some(voicemail::RecordLimits {
                max: Duration::from_secs(1),
                silence: None,
            }),
            SEED,
            &mut out,
        )
        .unwrap();
        assert!(c.is_playing());
        let mut sent = Vec::new();
        let mut now = t;
        while c.is_playing() {
            if let Some((dst, p)) = c.next_frame(now) {
                sent.push((dst, header(p)));
                let len = p.len();
                c.on_sent(LegId::A, len, false);
            }
            // A talks from another port of the SDP's IP: it latches, its
            // packets go nowhere, and the player follows the latch.
            let seq = sent.len() as u16;
            let pkt = if seq == 5 {
                rtp(101, seq, 800, 0xa, &dtmf::payload(9, false, 160))
            } else {
                rtp(0, seq, 160 * u32::from(seq), 0xa, &[0x11; 160])
            };
            assert_eq!(
                c.relay_rtp(now, LegId::A, addr(4444), &mut pkt.clone()),
                None
            );
            assert_eq!(
                c.relay_rtp(now, LegId::B, addr(6000), &mut pkt.clone()),
                None
            );
            now += Duration::from_millis(20);
        }
        assert_eq!(sent.len(), 25, "0.5 s beep");
        assert_eq!(sent[0].0, addr(4000), "the SDP address while learning");
        assert!(sent[1..].iter().all(|(dst, _)| *dst == addr(4444)));
        assert!(sent[0].1.marker && !sent[1].1.marker);
        assert_eq!(sent[24].1.seq, 124);
        assert_eq!(sent[24].1.timestamp, 1000 + 24 * 160);
        let key = Event::Dtmf {
            leg: LegId::A,
            digit: '9',
        };
        assert_eq!(c.poll_event(), Some(key), "DTMF while playing");
        assert_eq!(c.poll_event(), Some(Event::PlayDone { leg: LegId::A }));
        assert_eq!(c.leg(LegId::A).packets_out, 25);
        assert_eq!(c.leg(LegId::B).dropped, 26, "B is not heard");
        assert_eq!(c.leg(LegId::B).packets_out, 0, "A is not relayed");

        // Recording: A's audio, until the limit.
        let voice = [g711::ulaw_encode(2500); 160];
        let start = now;
        for i in 0..60u32 {
            let at = start + Duration::from_millis(20 * u64::from(i));
            let pkt = rtp(0, 500 + i as u16, 90_000 + 160 * i, 0xa, &voice);
            c.relay_rtp(at, LegId::A, addr(4444), &mut pkt.clone());
            c.on_tick(at, Duration::from_secs(1));
            c.drain_voicemail(at, &mut out);
        }
        let limit = Event::RecordEnded(voicemail::Ended::Limit(Duration::from_secs(1)));
        assert_eq!(c.poll_event(), Some(limit));
        assert_eq!(c.poll_event(), None, "B never times out: there is no B");
        c.finish_voicemail(&mut out);
        assert_eq!(out.len(), 2 * 8000, "1 s of mono 16-bit");
        // The packet A sent as the beep ended opens the message.
        let at = |i: usize| i16::from_le_bytes([out[2 * i], out[2 * i + 1]]);
        assert_eq!(at(0), g711::ULAW_TO_LINEAR[0x11]);
        assert!((2400..2600).contains(&at(160)), "{}", at(160));
        // A falls silent: A times out.
        c.on_tick(start + Duration::from_secs(3), Duration::from_secs(1));
        assert!(matches!(
            c.poll_event(),
            Some(Event::RtpTimeout { leg: LegId::A, .. })
        ));
        assert_eq!(c.poll_event(), None);
    }

    #[test]
    fn a_new_play_replaces_the_running_one_and_hands_back_the_voicemail() {
        let t = Instant::now();
        let mut c = call(t);
        let mut out = Vec::new();
        let long: Clip = vec![0i16; 8000].into();
        c.play(
            vec![long.clone()],
            Some(voicemail::RecordLimits {
                max: Duration::from_secs(60),
                silence: None,
            }),
            SEED,
            &mut out,
        )
        .unwrap();
        assert_eq!(c.next_frame(t), None, "no address yet: dropped");
        assert_eq!(c.leg(LegId::A).dropped, 1);
        c.set_remote(LegId::A, addr(4000), None);
        c.play(
            vec![player::beep()],
            Some(voicemail::RecordLimits {
                max: Duration::from_secs(60),
                silence: None,
            }),
            SEED,
            &mut out,
        )
        .unwrap();
        let mut n = 0;
        while c.is_playing() {
            n += usize::from(c.next_frame(t).is_some());
        }
        assert_eq!(n, 25, "the beep alone");
        assert_eq!(c.poll_event(), Some(Event::PlayDone { leg: LegId::A }));
        assert_eq!(c.poll_event(), None, "the replaced Play never finished");
        c.relay_rtp(t, LegId::A, addr(4000), &mut rtp(0, 1, 0, 1, &[0x22; 160]));
        assert!(out.is_empty());
        c.play(vec![long], None, SEED, &mut out).unwrap();
        assert_eq!(
            out.len(),
            320,
            "the voicemail's one packet, ended by the Play"
        );
    }

    #[test]
    fn a_held_leg_hears_the_music_instead_of_the_holder_and_the_relay_comes_back() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut c = call(t);
        c.set_remote(LegId::A, addr(5000), None);
        c.set_remote(LegId::B, addr(6000), None);
        let ids = |p: &[u8]| match rtp::parse(p) {
            Datagram::Rtp(h) => (h.marker, h.seq, h.timestamp, h.ssrc),
            _ => panic!("not RTP"),
        };
        // B talks to A; the packets pass untouched.
        for i in 0..3u16 {
            let mut p = rtp(0, 1 + i, 160 * u32::from(i), 0xb, &[2; 160]);
            let sent = p.clone();
            assert_eq!(
                c.relay_rtp(ms(20 * u64::from(i)), LegId::B, addr(6000), &mut p),
                Some(addr(5000))
            );
            assert_eq!(p, sent);
        }
        assert!(c.next_feed_frame(ms(50), LegId::A).is_none());
        // B holds at 60 ms: A hears the music in its first G.711 codec,
        // going on from B's stream (SSRC, next number, the clock moved by
        // the 20 ms since), and nothing of B.
        c.start_music(ms(60), LegId::A, player::hold_melody(), SEED)
            .unwrap();
        assert!(c.has_feed());
        let mut p = rtp(0, 4, 480, 0xb, &[2; 160]);
        assert_eq!(c.relay_rtp(ms(60), LegId::B, addr(6000), &mut p), None);
        let mut music = Vec::new();
        for i in 0..5u64 {
            let (dst, packet) = c.next_feed_frame(ms(60 + 20 * i), LegId::A).unwrap();
            assert_eq!(dst, addr(5000));
            assert!(matches!(rtp::parse(packet), Datagram::Rtp(h) if h.payload_type == 0));
            music.push(ids(packet));
        }
        assert_eq!(music[0], (true, 4, 480, 0xb));
        assert_eq!(music[4], (false, 8, 480 + 4 * 160, 0xb));
        assert!(
            c.next_feed_frame(ms(60), LegId::B).is_none(),
            "B hears no music"
        );
        // A still reaches B, untouched; asking for music again changes
        // nothing.
        let mut p = rtp(0, 9, 0, 0xa, &[1; 160]);
        assert_eq!(
            c.relay_rtp(ms(100), LegId::A, addr(5000), &mut p),
            Some(addr(6000))
        );
        assert_eq!(ids(&p), (false, 9, 0, 0xa));
        c.start_music(ms(160), LegId::A, player::beep(), SEED)
            .unwrap();
        assert_eq!(ids(c.next_feed_frame(ms(160), LegId::A).unwrap().1).1, 9);
        // Unhold at 200 ms; B's next packet, 140 ms after the last music
        // one, continues the music's stream, marked; the one after follows.
        c.stop_feed(LegId::A);
        assert!(!c.has_feed());
        let mut p = rtp(0, 50, 9000, 0xb, &[2; 160]);
        assert_eq!(
            c.relay_rtp(ms(300), LegId::B, addr(6000), &mut p),
            Some(addr(5000))
        );
        assert_eq!(ids(&p), (true, 10, 1280 + 1120, 0xb));
        let mut p = rtp(0, 51, 9160, 0xb, &[2; 160]);
        c.relay_rtp(ms(320), LegId::B, addr(6000), &mut p);
        assert_eq!(ids(&p), (false, 11, 2400 + 160, 0xb));
        // B was sent A's packet: its music goes on from that.
        c.start_music(ms(400), LegId::B, player::hold_melody(), SEED)
            .unwrap();
        let first = ids(c.next_feed_frame(ms(400), LegId::B).unwrap().1);
        assert_eq!(first, (true, 10, 300 * 8, 0xa));
        // A leg never sent anything starts from the seed; one without a
        // G.711 codec gets no music.
        let mut c = call(t);
        c.set_remote(LegId::B, addr(6000), None);
        c.start_music(t, LegId::B, player::hold_melody(), SEED)
            .unwrap();
        let first = ids(c.next_feed_frame(t, LegId::B).unwrap().1);
        assert_eq!(first, (true, SEED.seq, SEED.timestamp, SEED.ssrc));
        let mut c = call(t);
        c.set_codecs(LegId::B, [(9u8, "G722")]);
        assert_eq!(
            c.start_music(t, LegId::B, player::hold_melody(), SEED),
            Err(PlayError::NoCodec)
        );
    }

    /// (marker, seq, timestamp, SSRC) of an RTP packet.
    /// The first stereo sample of a recording: A's +4000 on the left,
    /// B's -4000 on the right (G.711 rounds them a little).
    fn assert_a_left_b_right(out: &[u8]) {
        let l = i16::from_le_bytes([out[0], out[1]]);
        let r = i16::from_le_bytes([out[2], out[3]]);
        assert!((3800..4200).contains(&l), "{l}");
        assert!((-4200..-3800).contains(&r), "{r}");
    }

    fn ids(p: &[u8]) -> (bool, u16, u32, u32) {
        let h = header(p);
        (h.marker, h.seq, h.timestamp, h.ssrc)
    }

    /// A relayed call whose B-leg's SDP puts PCMA first.
    fn relayed(t: Instant) -> Call {
        let mut c = call(t);
        c.set_codecs(
            LegId::B,
            [(8u8, "PCMA"), (0, "PCMU"), (101, "telephone-event")],
        );
        c.set_remote(LegId::A, addr(5000), None);
        c.set_remote(LegId::B, addr(6000), None);
        c
    }

    #[test]
    fn an_announcement_plays_once_to_b_then_b_hears_a_again_in_one_stream() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut c = relayed(t);
        // A talks to B; the packets pass untouched.
        for i in 0..3u16 {
            let mut p = rtp(0, 1 + i, 160 * u32::from(i), 0xa, &[1; 160]);
            let at = ms(20 * u64::from(i));
            assert_eq!(
                c.relay_rtp(at, LegId::A, addr(5000), &mut p),
                Some(addr(6000))
            );
            assert_eq!(ids(&p), (false, 1 + i, 160 * u32::from(i), 0xa));
        }
        // At 60 ms B is announced the beep, in B's first G.711 codec, going
        // on from A's stream; A's packets reach B no more meanwhile.
        c.start_clips(ms(60), LegId::B, vec![player::beep()], false, SEED)
            .unwrap();
        assert!(c.has_feed());
        let mut sent = Vec::new();
        let mut now = ms(60);
        loop {
            let seq = 4 + sent.len() as u16;
            let mut p = rtp(0, seq, 160 * u32::from(seq), 0xa, &[1; 160]);
            assert_eq!(c.relay_rtp(now, LegId::A, addr(5000), &mut p), None);
            assert!(c.next_feed_frame(now, LegId::A).is_none(), "A is not fed");
            let Some((dst, packet)) = c.next_feed_frame(now, LegId::B) else {
                break;
            };
            assert_eq!(dst, addr(6000));
            assert_eq!(header(packet).payload_type, 8, "PCMA, B's first");
            sent.push(ids(packet));
            assert_eq!(c.poll_event(), None, "not done while sending");
            now += Duration::from_millis(20);
        }
        assert_eq!(sent.len(), 25, "the 0.5 s beep, once");
        assert_eq!(sent[0], (true, 4, 480, 0xa));
        assert_eq!(sent[24], (false, 28, 480 + 24 * 160, 0xa));
        assert_eq!(c.poll_event(), Some(Event::PlayDone { leg: LegId::B }));
        assert!(!c.has_feed());
        assert!(c.next_feed_frame(now, LegId::B).is_none());
        assert_eq!(c.poll_event(), None, "reported once");
        // The relay is back: A's next packet, 40 ms after the last of the
        // beep, continues its stream, marked; the one after follows.
        let mut p = rtp(0, 30, 4800, 0xa, &[1; 160]);
        assert_eq!(
            c.relay_rtp(ms(580), LegId::A, addr(5000), &mut p),
            Some(addr(6000))
        );
        assert_eq!(ids(&p), (true, 29, 4320 + 320, 0xa));
        let mut p = rtp(0, 31, 4960, 0xa, &[1; 160]);
        c.relay_rtp(ms(600), LegId::A, addr(5000), &mut p);
        assert_eq!(ids(&p), (false, 30, 4640 + 160, 0xa));
    }

    #[test]
    fn a_keeps_hearing_b_and_dtmf_rtcp_and_recording_go_on_during_an_announcement() {
        let t = Instant::now();
        let mut c = relayed(t);
        c.set_remote(LegId::B, addr(6000), Some(addr(6001)));
        c.start_recording(t);
        c.start_clips(t, LegId::B, vec![player::beep()], false, SEED)
            .unwrap();
        let mut p = rtp(0, 7, 1120, 0xb, &[0x22; 160]);
        let sent = p.clone();
        assert_eq!(
            c.relay_rtp(t, LegId::B, addr(6000), &mut p),
            Some(addr(5000))
        );
        assert_eq!(p, sent, "B reaches A untouched");
        let mut p = rtp(0, 1, 0, 0xa, &[0x11; 160]);
        assert_eq!(c.relay_rtp(t, LegId::A, addr(5000), &mut p), None);
        let key = rtp(101, 2, 160, 0xa, &dtmf::payload(4, false, 160));
        assert_eq!(c.relay_rtp(t, LegId::A, addr(5000), &mut key.clone()), None);
        let key = Event::Dtmf {
            leg: LegId::A,
            digit: '4',
        };
        assert_eq!(c.poll_event(), Some(key));
        let rr = [0x81, 201, 0, 1, 0, 0, 0, 0xa];
        assert_eq!(c.relay_rtcp(t, LegId::A, addr(5001), &rr), Some(addr(6001)));
        let mut out = Vec::new();
        c.stop_recording().unwrap().finish(&mut out);
        let l = i16::from_le_bytes([out[0], out[1]]);
        let r = i16::from_le_bytes([out[2], out[3]]);
        assert_eq!(
            (l, r),
            (g711::ULAW_TO_LINEAR[0x11], g711::ULAW_TO_LINEAR[0x22])
        );
        assert!(c.next_feed_frame(t, LegId::B).is_some(), "still announcing");
    }

    #[test]
    fn stopping_the_feed_ends_an_announcement_early_without_play_done() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut c = relayed(t);
        c.start_clips(t, LegId::B, vec![player::beep()], false, SEED)
            .unwrap();
        for i in 0..5u64 {
            assert!(c.next_feed_frame(ms(20 * i), LegId::B).is_some());
        }
        c.stop_feed(LegId::B);
        assert!(!c.has_feed());
        assert!(c.next_feed_frame(ms(100), LegId::B).is_none());
        assert_eq!(c.poll_event(), None, "no play_done");
        // A is heard at once, continuing the beep's stream.
        let mut p = rtp(0, 9, 0, 0xa, &[1; 160]);
        assert_eq!(
            c.relay_rtp(ms(100), LegId::A, addr(5000), &mut p),
            Some(addr(6000))
        );
        assert_eq!(
            ids(&p),
            (true, SEED.seq + 5, SEED.timestamp + 5 * 160, SEED.ssrc)
        );
    }

    #[test]
    fn music_and_a_second_announcement_replace_an_announcement_which_never_reports() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut c = relayed(t);
        let long: Clip = vec![0i16; 8000].into();
        c.start_clips(t, LegId::B, vec![long.clone()], false, SEED)
            .unwrap();
        c.next_feed_frame(t, LegId::B).unwrap();
        // Hold music replaces it, continuing the stream, and plays on.
        c.start_music(ms(20), LegId::B, player::hold_melody(), SEED)
            .unwrap();
        let first = ids(c.next_feed_frame(ms(20), LegId::B).unwrap().1);
        assert_eq!(first, (true, SEED.seq + 1, SEED.timestamp + 160, SEED.ssrc));
        for i in 2..200u64 {
            assert!(c.next_feed_frame(ms(20 * i), LegId::B).is_some(), "{i}");
        }
        // An announcement replaces the music, a second one the first.
        c.start_clips(ms(4000), LegId::B, vec![long], false, SEED)
            .unwrap();
        c.next_feed_frame(ms(4000), LegId::B).unwrap();
        c.start_clips(ms(4020), LegId::B, vec![player::beep()], false, SEED)
            .unwrap();
        let mut n = 0;
        while c.next_feed_frame(ms(4020), LegId::B).is_some() {
            n += 1;
        }
        assert_eq!(n, 25, "the beep alone");
        assert_eq!(c.poll_event(), Some(Event::PlayDone { leg: LegId::B }));
        assert_eq!(c.poll_event(), None, "the replaced ones never finished");
        assert!(!c.has_feed(), "the music went with the announcement");
    }

    #[test]
    fn a_call_mediad_answers_feeds_no_leg_and_a_play_to_a_ends_the_feeds() {
        let t = Instant::now();
        let mut c = relayed(t);
        c.start_clips(t, LegId::B, vec![player::beep()], false, SEED)
            .unwrap();
        c.start_music(t, LegId::A, player::hold_melody(), SEED)
            .unwrap();
        let mut out = Vec::new();
        c.play(vec![player::beep()], None, SEED, &mut out).unwrap();
        assert!(!c.has_feed());
        assert_eq!(
            c.start_clips(t, LegId::B, vec![player::beep()], false, SEED),
            Err(PlayError::Answered)
        );
        assert_eq!(
            c.start_music(t, LegId::B, player::hold_melody(), SEED),
            Ok(())
        );
        assert!(!c.has_feed());
        // And a leg without a G.711 codec gets no announcement.
        let mut c = call(t);
        c.set_codecs(LegId::B, [(9u8, "G722")]);
        assert_eq!(
            c.start_clips(t, LegId::B, vec![player::beep()], false, SEED),
            Err(PlayError::NoCodec)
        );
    }

    /// Master key and salt number `n` of a test.
    fn master(n: u8) -> srtp::MasterKey {
        srtp::MasterKey::new([n; 16], [n ^ 0x5a; 14])
    }

    /// The phone at the end of an SRTP leg: it encrypts with the key mediad
    /// decrypts with, and decrypts with the key mediad encrypts with.
    struct Phone {
        tx: SrtpContext,
        rx: SrtpContext,
    }

    /// The keys mediad is given for an SRTP leg (`n` numbers them).
    fn leg_keys(n: u8, suite: srtp::Suite) -> LegKeys {
        LegKeys {
            suite,
            send: master(n),
            recv: master(n + 1),
        }
    }

    impl Phone {
        fn of(keys: &LegKeys) -> Self {
            Phone {
                tx: SrtpContext::new(keys.suite, &keys.recv).unwrap(),
                rx: SrtpContext::new(keys.suite, &keys.send).unwrap(),
            }
        }
    }

    /// Makes `leg` an SRTP leg of `c` and returns its phone.
    fn srtp_leg(c: &mut Call, leg: LegId, n: u8, suite: srtp::Suite) -> Phone {
        let keys = leg_keys(n, suite);
        c.set_crypto(leg, Some(keys.clone())).unwrap();
        Phone::of(&keys)
    }

    const SHA1_80: srtp::Suite = srtp::Suite::AesCm128HmacSha1_80;
    const SHA1_32: srtp::Suite = srtp::Suite::AesCm128HmacSha1_32;

    /// An RTCP receiver report from `ssrc` with one report block.
    fn report(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x81, 201, 0, 7];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend((0..24).map(|i| i as u8));
        p
    }

    #[test]
    fn an_srtp_a_leg_and_a_plain_b_leg_hear_each_other() {
        let t = Instant::now();
        let mut c = relayed(t);
        let mut a = srtp_leg(&mut c, LegId::A, 1, SHA1_80);
        for i in 0..5u16 {
            let ts = 160 * u32::from(i);
            let said = rtp(0, 100 + i, ts, 0xa, &[0x10 + i as u8; 160]);
            let mut p = a.tx.protect(&said).unwrap();
            assert_ne!(p[12..172], said[12..], "A's payload is encrypted");
            assert_eq!(
                c.relay_rtp(t, LegId::A, addr(5000), &mut p),
                Some(addr(6000))
            );
            assert_eq!(p, said, "B gets A's audio in the clear");
            let said = rtp(8, 200 + i, ts, 0xb, &[0x40 + i as u8; 160]);
            let mut p = said.clone();
            assert_eq!(
                c.relay_rtp(t, LegId::B, addr(6000), &mut p),
                Some(addr(5000))
            );
            assert_eq!(p.len(), said.len() + 10, "an 80-bit tag");
            assert_ne!(p[12..172], said[12..], "B's payload is encrypted");
            assert_eq!(a.rx.unprotect(&p).unwrap(), said, "A decrypts B");
        }
        let (la, lb) = (c.leg(LegId::A), c.leg(LegId::B));
        assert!(la.srtp() && !lb.srtp());
        assert_eq!((la.recv.packets, la.recv.bytes), (5, 5 * 172));
        assert_eq!((la.dropped, lb.dropped, la.dropped_auth), (0, 0, 0));
    }

    #[test]
    fn two_srtp_legs_with_different_keys_and_suites_hear_each_other() {
        let t = Instant::now();
        let mut c = relayed(t);
        let mut a = srtp_leg(&mut c, LegId::A, 1, SHA1_80);
        let mut b = srtp_leg(&mut c, LegId::B, 7, SHA1_32);
        for i in 0..5u16 {
            let ts = 160 * u32::from(i);
            let said = rtp(0, i, ts, 0xa, &[0x11; 160]);
            let mut p = a.tx.protect(&said).unwrap();
            assert_eq!(
                c.relay_rtp(t, LegId::A, addr(5000), &mut p),
                Some(addr(6000))
            );
            assert_eq!(p.len(), said.len() + 4, "B's suite: a 32-bit tag");
            assert_eq!(b.rx.unprotect(&p).unwrap(), said);
            let said = rtp(8, 60_000 + i, ts, 0xb, &[0x22; 160]);
            let mut p = b.tx.protect(&said).unwrap();
            assert_eq!(
                c.relay_rtp(t, LegId::B, addr(6000), &mut p),
                Some(addr(5000))
            );
            assert_eq!(p.len(), said.len() + 10, "A's suite: an 80-bit tag");
            assert_eq!(a.rx.unprotect(&p).unwrap(), said);
        }
        // A packet in A's key is not B's: dropped on B's side.
        let mut p = a.tx.protect(&rtp(8, 9, 0, 0xb, &[0; 160])).unwrap();
        assert_eq!(c.relay_rtp(t, LegId::B, addr(6000), &mut p), None);
        assert_eq!(c.leg(LegId::B).dropped_auth, 1);
    }

    #[test]
    fn forged_tampered_and_replayed_srtp_is_dropped_counted_and_never_latches() {
        let t = Instant::now();
        let s = |n: u64| t + Duration::from_secs(n);
        let mut c = relayed(t);
        let mut a = srtp_leg(&mut c, LegId::A, 1, SHA1_80);
        let mut forger = SrtpContext::new(SHA1_80, &master(99)).unwrap();
        // From a new source, in the wrong key, or not encrypted at all:
        // nothing latches and nothing counts as the leg alive.
        let mut forged = forger.protect(&rtp(0, 1, 0, 0xa, &[1; 160])).unwrap();
        assert_eq!(c.relay_rtp(t, LegId::A, addr(5002), &mut forged), None);
        let mut plain = rtp(0, 1, 0, 0xa, &[1; 160]);
        assert_eq!(c.relay_rtp(t, LegId::A, addr(5002), &mut plain), None);
        let mut muxed = forger.protect_rtcp(&report(0xa)).unwrap();
        assert_eq!(c.relay_rtp(t, LegId::A, addr(5002), &mut muxed), None);
        let forged_rtcp = forger.protect_rtcp(&report(0xa)).unwrap();
        assert_eq!(c.relay_rtcp(t, LegId::A, addr(5003), &forged_rtcp), None);
        assert_eq!(c.leg(LegId::A).latched(), None);
        assert_eq!(c.last_packet(), None, "no timeout refreshed");
        assert_eq!(c.leg(LegId::A).dropped_auth, 4);
        // The phone latches; its packet again is a replay.
        let first = a.tx.protect(&rtp(0, 1, 0, 0xa, &[1; 160])).unwrap();
        let mut p = first.clone();
        assert_eq!(
            c.relay_rtp(t, LegId::A, addr(5000), &mut p),
            Some(addr(6000))
        );
        assert_eq!(c.leg(LegId::A).latched(), Some(addr(5000)));
        assert_eq!(
            c.relay_rtp(s(1), LegId::A, addr(5000), &mut first.clone()),
            None
        );
        // A flipped payload bit fails; the genuine packet still passes.
        let second = a.tx.protect(&rtp(0, 2, 160, 0xa, &[2; 160])).unwrap();
        let mut bad = second.clone();
        bad[40] ^= 1;
        assert_eq!(c.relay_rtp(s(2), LegId::A, addr(5000), &mut bad), None);
        let mut p = second.clone();
        assert_eq!(
            c.relay_rtp(s(2), LegId::A, addr(5000), &mut p),
            Some(addr(6000))
        );
        let l = c.leg(LegId::A);
        assert_eq!((l.dropped_auth, l.dropped), (6, 6));
        assert_eq!((l.recv.packets, l.dropped_foreign), (2, 0));
        // Forgeries from the latched source do not keep A alive.
        for i in 3..=8 {
            let mut f = forger.protect(&rtp(0, i, 0, 0xa, &[1; 160])).unwrap();
            c.relay_rtp(s(u64::from(i)), LegId::A, addr(5000), &mut f);
        }
        c.on_tick(s(8), Duration::from_secs(5));
        let mut timed_out = Vec::new();
        while let Some(ev) = c.poll_event() {
            if let Event::RtpTimeout { leg, .. } = ev {
                timed_out.push(leg);
            }
        }
        assert!(timed_out.contains(&LegId::A), "{timed_out:?}");
        assert_eq!(c.leg(LegId::A).dropped_auth, 12);
    }

    #[test]
    fn srtcp_and_rtcp_cross_between_an_srtp_and_a_plain_leg_on_both_ports() {
        let t = Instant::now();
        let mut c = relayed(t);
        c.set_remote(LegId::A, addr(5000), Some(addr(5001)));
        c.set_remote(LegId::B, addr(6000), Some(addr(6001)));
        let mut a = srtp_leg(&mut c, LegId::A, 1, SHA1_32);
        // RTCP port: A's SRTCP reaches B as RTCP, B's RTCP reaches A as
        // SRTCP (80-bit tag whatever the suite).
        let sent = a.tx.protect_rtcp(&report(0xa)).unwrap();
        let (dst, out) = c.rtcp_out(t, LegId::A, addr(5001), &sent).unwrap();
        assert_eq!((dst, out), (addr(6001), report(0xa)));
        let (dst, out) = c.rtcp_out(t, LegId::B, addr(6001), &report(0xb)).unwrap();
        assert_eq!(dst, addr(5001));
        assert_eq!(out.len(), report(0xb).len() + 14);
        assert_eq!(a.rx.unprotect_rtcp(&out).unwrap(), report(0xb));
        assert_eq!(c.relay_rtcp(t, LegId::A, addr(5001), &sent), None, "replay");
        assert_eq!(c.leg(LegId::A).dropped_auth, 1);
        // RTP port (rtcp-mux): the same, to the RTP addresses.
        let mut p = a.tx.protect_rtcp(&report(0xa)).unwrap();
        assert_eq!(
            c.relay_rtp(t, LegId::A, addr(5000), &mut p),
            Some(addr(6000))
        );
        assert_eq!(p, report(0xa));
        let mut p = report(0xb);
        assert_eq!(
            c.relay_rtp(t, LegId::B, addr(6000), &mut p),
            Some(addr(5000))
        );
        assert_eq!(a.rx.unprotect_rtcp(&p).unwrap(), report(0xb));
        assert_eq!((c.leg(LegId::A).rtcp_in, c.leg(LegId::B).rtcp_in), (2, 2));
    }

    #[test]
    fn the_same_keys_again_keep_the_srtp_state_and_none_returns_to_plain() {
        let t = Instant::now();
        let mut c = relayed(t);
        let keys = leg_keys(1, SHA1_80);
        c.set_crypto(LegId::A, Some(keys.clone())).unwrap();
        let mut a = Phone::of(&keys);
        let first = a.tx.protect(&rtp(0, 1, 0, 0xa, &[1; 160])).unwrap();
        assert!(
            c.relay_rtp(t, LegId::A, addr(5000), &mut first.clone())
                .is_some()
        );
        let to_a = rtp(0, 1, 0, 0xb, &[2; 160]);
        let mut p = to_a.clone();
        assert!(c.relay_rtp(t, LegId::B, addr(6000), &mut p).is_some());
        a.rx.unprotect(&p).unwrap();
        // A re-INVITE repeats the keys: both contexts go on.
        c.set_crypto(LegId::A, Some(keys.clone())).unwrap();
        assert_eq!(
            c.relay_rtp(t, LegId::A, addr(5000), &mut first.clone()),
            None
        );
        assert_eq!(c.leg(LegId::A).dropped_auth, 1, "still a replay");
        let mut p = a.tx.protect(&rtp(0, 2, 160, 0xa, &[3; 160])).unwrap();
        assert_eq!(
            c.relay_rtp(t, LegId::A, addr(5000), &mut p),
            Some(addr(6000))
        );
        assert_eq!(p, rtp(0, 2, 160, 0xa, &[3; 160]));
        // B's duplicate would reuse an index of A's key: not sent.
        assert_eq!(
            c.relay_rtp(t, LegId::B, addr(6000), &mut to_a.clone()),
            None
        );
        let mut p = rtp(0, 2, 160, 0xb, &[4; 160]);
        assert!(c.relay_rtp(t, LegId::B, addr(6000), &mut p).is_some());
        assert_eq!(a.rx.unprotect(&p).unwrap(), rtp(0, 2, 160, 0xb, &[4; 160]));
        // New keys: the old ones are refused, the new ones start afresh.
        let new = leg_keys(5, SHA1_32);
        c.set_crypto(LegId::A, Some(new.clone())).unwrap();
        let mut old = a.tx.protect(&rtp(0, 3, 320, 0xa, &[5; 160])).unwrap();
        assert_eq!(c.relay_rtp(t, LegId::A, addr(5000), &mut old), None);
        let mut a = Phone::of(&new);
        let mut p = a.tx.protect(&rtp(0, 1, 0, 0xa, &[6; 160])).unwrap();
        assert!(c.relay_rtp(t, LegId::A, addr(5000), &mut p).is_some());
        // Plain again: both ways in the clear.
        c.set_crypto(LegId::A, None).unwrap();
        assert!(!c.leg(LegId::A).srtp());
        let plain = rtp(0, 4, 480, 0xa, &[7; 160]);
        let mut p = plain.clone();
        assert_eq!(
            c.relay_rtp(t, LegId::A, addr(5000), &mut p),
            Some(addr(6000))
        );
        assert_eq!(p, plain);
        let plain = rtp(0, 3, 320, 0xb, &[8; 160]);
        let mut p = plain.clone();
        assert!(c.relay_rtp(t, LegId::B, addr(6000), &mut p).is_some());
        assert_eq!(p, plain);
    }

    #[test]
    fn the_recording_of_srtp_legs_holds_their_decrypted_audio() {
        let t = Instant::now();
        let mut c = relayed(t);
        let mut a = srtp_leg(&mut c, LegId::A, 1, SHA1_80);
        let mut b = srtp_leg(&mut c, LegId::B, 3, SHA1_32);
        c.start_recording(t);
        let said = rtp(0, 1, 0, 0xa, &[g711::ulaw_encode(4000); 160]);
        c.relay_rtp(t, LegId::A, addr(5000), &mut a.tx.protect(&said).unwrap());
        let said = rtp(8, 1, 0, 0xb, &[g711::alaw_encode(-4000); 160]);
        c.relay_rtp(t, LegId::B, addr(6000), &mut b.tx.protect(&said).unwrap());
        let mut out = Vec::new();
        assert_eq!(c.stop_recording().unwrap().finish(&mut out), 160);
        assert_a_left_b_right(&out);
    }

    #[test]
    fn music_and_announcements_to_srtp_legs_are_srtp_their_phones_decrypt() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        // The same feeds to a plain call give the frames expected.
        let mut plain = relayed(t);
        let mut c = relayed(t);
        let mut a = srtp_leg(&mut c, LegId::A, 1, SHA1_80);
        let mut b = srtp_leg(&mut c, LegId::B, 3, SHA1_32);
        for call in [&mut plain, &mut c] {
            call.start_music(t, LegId::A, player::hold_melody(), SEED)
                .unwrap();
            call.start_clips(t, LegId::B, vec![player::beep()], false, SEED)
                .unwrap();
        }
        for i in 0..25u64 {
            for (leg, phone, tag) in [(LegId::A, &mut a, 10), (LegId::B, &mut b, 4)] {
                let (dst, sent) = c.next_feed_frame(ms(20 * i), leg).unwrap();
                let sent = sent.to_vec();
                let (want_dst, want) = plain.next_feed_frame(ms(20 * i), leg).unwrap();
                assert_eq!(dst, want_dst);
                assert_eq!(sent.len(), want.len() + tag, "{leg:?} {i}");
                assert_ne!(sent[12..172], want[12..], "encrypted");
                assert_eq!(phone.rx.unprotect(&sent).unwrap(), want, "{leg:?} {i}");
            }
        }
        assert!(c.next_feed_frame(ms(500), LegId::B).is_none());
        assert_eq!(c.poll_event(), Some(Event::PlayDone { leg: LegId::B }));
        // The relay that follows the announcement continues its stream
        // under the same key.
        let mut p = rtp(0, 9, 0, 0xa, &[1; 160]);
        let mut sealed = a.tx.protect(&p).unwrap();
        assert!(
            c.relay_rtp(ms(520), LegId::A, addr(5000), &mut sealed)
                .is_some()
        );
        p = b.rx.unprotect(&sealed).unwrap();
        assert_eq!(
            ids(&p),
            (true, SEED.seq + 25, SEED.timestamp + 26 * 160, SEED.ssrc)
        );
    }

    #[test]
    fn play_frames_to_an_srtp_a_leg_decrypt_and_its_voicemail_is_plain_audio() {
        let t = Instant::now();
        let mut out = Vec::new();
        let limits = Some(voicemail::RecordLimits {
            max: Duration::from_secs(1),
            silence: None,
        });
        let mut plain = call(t);
        let mut c = call(t);
        let mut a = srtp_leg(&mut c, LegId::A, 1, SHA1_80);
        for call in [&mut plain, &mut c] {
            call.set_remote(LegId::A, addr(4000), None);
            call.play(vec![player::beep()], limits, SEED, &mut out)
                .unwrap();
        }
        let mut frames = 0;
        while let Some((dst, sent)) = c.next_frame(t) {
            let sent = sent.to_vec();
            let (_, want) = plain.next_frame(t).unwrap();
            assert_eq!(dst, addr(4000));
            assert_eq!(a.rx.unprotect(&sent).unwrap(), want, "frame {frames}");
            frames += 1;
        }
        assert_eq!(frames, 25, "the 0.5 s beep");
        assert_eq!(c.poll_event(), Some(Event::PlayDone { leg: LegId::A }));
        let voice = [g711::ulaw_encode(2500); 160];
        for i in 0..10u16 {
            let at = t + Duration::from_millis(20 * u64::from(i));
            let said = rtp(0, i, 160 * u32::from(i), 0xa, &voice);
            let mut p = a.tx.protect(&said).unwrap();
            assert_eq!(c.relay_rtp(at, LegId::A, addr(4000), &mut p), None);
        }
        c.finish_voicemail(&mut out);
        let loud = out
            .chunks_exact(2)
            .map(|s| i16::from_le_bytes([s[0], s[1]]))
            .filter(|s| (2400..2600).contains(s))
            .count();
        assert_eq!(loud, 10 * 160, "A's decrypted voice, all of it");
    }

    proptest! {
        #[test]
        fn any_bytes_to_srtp_legs_never_panic_the_relay(
            packets in proptest::collection::vec(
                (any::<bool>(), 0u8..4, 0u16..3, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)),
                1..40,
            ),
        ) {
            let t = Instant::now();
            let mut c = relayed(t);
            let mut phones = [
                srtp_leg(&mut c, LegId::A, 1, SHA1_80),
                srtp_leg(&mut c, LegId::B, 3, SHA1_32),
            ];
            c.start_recording(t);
            c.start_music(t, LegId::B, player::hold_melody(), SEED).unwrap();
            for (i, (b_leg, kind, port, room, bytes)) in packets.into_iter().enumerate() {
                let now = t + Duration::from_millis(20 * i as u64);
                let leg = if b_leg { LegId::B } else { LegId::A };
                let phone = &mut phones[leg as usize];
                // Raw bytes, genuine SRTP or SRTCP around them, or either
                // with one bit flipped.
                let mut p = match kind % 2 {
                    0 => bytes.clone(),
                    _ if bytes.first().is_some_and(|b| b & 1 == 0) => {
                        phone.tx.protect_rtcp(&[&report(0xa)[..], &bytes].concat()).unwrap_or(bytes.clone())
                    }
                    _ => phone.tx.protect(&rtp(0, i as u16, 0, 0xa, &bytes)).unwrap_or(bytes.clone()),
                };
                if kind >= 2 && !p.is_empty() {
                    let at = usize::from(bytes.first().copied().unwrap_or(0)) % p.len();
                    p[at] ^= 1 << (i % 8);
                }
                let len = p.len();
                p.resize(len + if room { srtp::MAX_OVERHEAD } else { 0 }, 0);
                let src = addr(5000 + port);
                let out = if port == 1 {
                    c.on_rtcp(now, leg, src, &mut p, len)
                } else {
                    c.on_rtp(now, leg, src, &mut p, len)
                };
                if let Some((_, n)) = out {
                    prop_assert!(n <= p.len());
                }
                c.next_feed_frame(now, LegId::B);
                c.on_tick(now, Duration::from_secs(1));
                while c.poll_event().is_some() {}
            }
            for leg in [LegId::A, LegId::B] {
                let l = c.leg(leg);
                prop_assert!(l.dropped_auth <= l.dropped);
            }
            let mut out = Vec::new();
            if let Some(mut r) = c.stop_recording() {
                r.finish(&mut out);
            }
            prop_assert_eq!(out.len() % 4, 0);
        }
    }
}
