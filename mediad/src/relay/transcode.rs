//! Opus <-> G.711 on the edge of a browser's leg (`LegDtls.opus`): a
//! browser that speaks Opus and no G.711 (it offered or answered only
//! Opus) is heard by the rest of the call as if it spoke G.711, as SRTP is
//! taken off at the same edge. What it sends is decoded and G.711-encoded
//! right after SRTP opens it, so latching, payload-type checks, DTMF,
//! recording and voicemail see a G.711 leg; what goes to it (relayed
//! audio, hold music, prompts) is Opus-encoded right before SRTP seals it.
//!
//! libopus converts sample rates itself: its decoder gives 8 kHz, its
//! encoder takes 8 kHz (RFC 7587 section 4: the RTP clock stays 48 kHz
//! whatever the audio bandwidth, so timestamps are scaled by 6). One packet
//! in is one packet out, so sequence numbers stay as they are.
//! telephone-event (RFC 4733) moves between its 48 kHz type on the
//! browser's side and its 8 kHz type on the other, its duration scaled
//! with the clock. Comfort noise is not sent to a browser (it did not
//! offer it with Opus).

use opus::{Application, Bitrate, Channels};
use proto::webrtc::{G711, OpusBridge};

use super::g711;
use super::rtp;
use super::wav::Codec;

/// Opus's RTP clock over G.711's.
const SCALE: u32 = 6;
/// The most 8 kHz samples one Opus packet holds (120 ms).
const MAX_SAMPLES: usize = 960;
/// What mediad's Opus encoder spends: narrowband speech needs no more
/// (RFC 7587 section 3.1.1 gives 8-12 kbit/s for it; a little above
/// leaves room for in-band FEC).
const BITRATE: i32 = 24_000;
/// The largest Opus packet mediad writes (RFC 6716: 1275 bytes a frame).
const MAX_PACKET: usize = 400;
/// Frame lengths at 8 kHz an Opus encoder takes: 2.5 to 60 ms.
const FRAME_SIZES: [usize; 6] = [20, 40, 80, 160, 320, 480];

/// Why a bridge could not start.
#[derive(Debug, thiserror::Error)]
#[error("libopus: {0}")]
pub struct Error(#[from] opus::Error);

/// One browser leg's codec bridge.
pub struct Transcoder {
    bridge: OpusBridge,
    decoder: opus::Decoder,
    encoder: opus::Encoder,
    /// The first browser timestamp and the G.711 timestamp it became: the
    /// 48 kHz clock is scaled as a signed distance from it, which stays
    /// continuous across the 32-bit wrap.
    rx_base: Option<(u32, u32)>,
    pcm: Box<[i16; MAX_SAMPLES]>,
    coded: Box<[u8; MAX_PACKET]>,
    /// Browser packets libopus refused.
    pub undecodable: u64,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("bridge", &self.bridge)
            .finish_non_exhaustive()
    }
}

impl Transcoder {
    pub fn new(bridge: OpusBridge) -> Result<Self, Error> {
        let mut encoder = opus::Encoder::new(8000, Channels::Mono, Application::Voip)?;
        encoder.set_bitrate(Bitrate::Bits(BITRATE))?;
        encoder.set_inband_fec(true)?;
        Ok(Self {
            bridge,
            decoder: opus::Decoder::new(8000, Channels::Mono)?,
            encoder,
            rx_base: None,
            pcm: Box::new([0; MAX_SAMPLES]),
            coded: Box::new([0; MAX_PACKET]),
            undecodable: 0,
        })
    }

    pub fn bridge(&self) -> OpusBridge {
        self.bridge
    }

    /// The browser's plain RTP packet `buf[..len]` becomes, in place, the
    /// G.711 side's: its new length, or `None` when libopus refuses it (or
    /// `buf` has no room for the G.711 audio). A payload type other than
    /// the bridge's passes untouched (the payload-type check counts it).
    pub fn from_browser(&mut self, buf: &mut [u8], len: usize) -> Option<usize> {
        let rtp::Datagram::Rtp(h) = rtp::parse(&buf[..len]) else {
            return Some(len);
        };
        let b = self.bridge;
        let (base48, base8) = *self
            .rx_base
            .get_or_insert((h.timestamp, h.timestamp / SCALE));
        let ts = base8.wrapping_add_signed(h.timestamp.wrapping_sub(base48) as i32 / SCALE as i32);
        if h.payload_type == b.opus_pt {
            let samples = match self
                .decoder
                .decode(h.payload(buf), &mut self.pcm[..], false)
            {
                Ok(n) => n,
                Err(_) => {
                    self.undecodable += 1;
                    return None;
                }
            };
            let end = h.payload_start + samples;
            let out = buf.get_mut(h.payload_start..end)?;
            let encode = match b.g711 {
                G711::Pcmu => g711::ulaw_encode,
                G711::Pcma => g711::alaw_encode,
            };
            for (o, s) in out.iter_mut().zip(&self.pcm[..samples]) {
                *o = encode(*s);
            }
            retype(buf, b.g711_pt, ts);
            return Some(end);
        }
        if Some(h.payload_type) == b.opus_dtmf_pt {
            let pt = b.dtmf_pt?;
            scale_event_duration(&mut buf[h.payload_start..h.payload_end], |d| d / SCALE);
            retype(buf, pt, ts);
            return Some(h.payload_end);
        }
        Some(len)
    }

    /// A G.711-side RTP packet `buf[..len]` goes to the browser: in place,
    /// its Opus packet; `codec` names the law of a payload type. `None`
    /// drops it (no Opus for it: comfort noise, an odd frame length, DTMF
    /// the browser did not offer, a type the call does not speak).
    pub fn to_browser(
        &mut self,
        buf: &mut [u8],
        len: usize,
        codec: impl Fn(u8) -> Codec,
    ) -> Option<usize> {
        let rtp::Datagram::Rtp(h) = rtp::parse(&buf[..len]) else {
            return None;
        };
        let ts = h.timestamp.wrapping_mul(SCALE);
        if Some(h.payload_type) == self.bridge.dtmf_pt {
            let pt = self.bridge.opus_dtmf_pt?;
            scale_event_duration(&mut buf[h.payload_start..h.payload_end], |d| {
                d.saturating_mul(SCALE)
            });
            retype(buf, pt, ts);
            return Some(h.payload_end);
        }
        let table = match codec(h.payload_type) {
            Codec::Pcmu => &g711::ULAW_TO_LINEAR,
            Codec::Pcma => &g711::ALAW_TO_LINEAR,
            Codec::Other => return None,
        };
        let payload = h.payload(buf);
        if !FRAME_SIZES.contains(&payload.len()) {
            return None;
        }
        for (s, b) in self.pcm.iter_mut().zip(payload) {
            *s = table[usize::from(*b)];
        }
        let room = buf
            .len()
            .saturating_sub(h.payload_start + super::srtp::MAX_OVERHEAD)
            .min(MAX_PACKET);
        let n = self
            .encoder
            .encode(&self.pcm[..payload.len()], &mut self.coded[..room])
            .ok()?;
        buf[h.payload_start..h.payload_start + n].copy_from_slice(&self.coded[..n]);
        retype(buf, self.bridge.opus_pt, ts);
        Some(h.payload_start + n)
    }
}

/// Sets a packet's payload type and timestamp and clears its padding bit
/// (the payload was rewritten without it).
fn retype(buf: &mut [u8], pt: u8, ts: u32) {
    buf[0] &= !0x20;
    buf[1] = (buf[1] & 0x80) | pt;
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
}

/// An RFC 4733 event's duration (bytes 2-3, in RTP clock units) through
/// `f`.
fn scale_event_duration(payload: &mut [u8], f: impl Fn(u32) -> u32) {
    if let Some(d) = payload.get_mut(2..4) {
        let v = f(u32::from(u16::from_be_bytes([d[0], d[1]])));
        d.copy_from_slice(&u16::try_from(v).unwrap_or(u16::MAX).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::resample::tests::goertzel;

    const BRIDGE: OpusBridge = OpusBridge {
        opus_pt: 111,
        opus_dtmf_pt: Some(110),
        g711_pt: 0,
        g711: G711::Pcmu,
        dtmf_pt: Some(101),
    };

    fn law(pt: u8) -> Codec {
        match pt {
            0 => Codec::Pcmu,
            8 => Codec::Pcma,
            _ => Codec::Other,
        }
    }

    fn packet(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        rtp::write_header(&mut p, pt, false, seq, ts, 0x1234_5678);
        p.extend_from_slice(payload);
        p.resize(p.len() + 1500, 0);
        p
    }

    /// 20 ms of a `hz` tone at 8 kHz, G.711 mu-law.
    fn tone_ulaw(hz: f64, frame: usize) -> Vec<u8> {
        (0..160)
            .map(|i| {
                let t = (frame * 160 + i) as f64 / 8000.0;
                g711::ulaw_encode((8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16)
            })
            .collect()
    }

    /// The strongest of `candidates` in `pcm` (8 kHz).
    fn loudest(pcm: &[i16], candidates: &[f64]) -> f64 {
        *candidates
            .iter()
            .max_by(|a, b| goertzel(pcm, **a, 8000.0).total_cmp(&goertzel(pcm, **b, 8000.0)))
            .unwrap()
    }

    #[test]
    fn a_tone_crosses_to_the_browser_in_opus_and_comes_back_in_g711_at_its_frequency() {
        let mut to = Transcoder::new(BRIDGE).unwrap();
        let mut back = Transcoder::new(BRIDGE).unwrap();
        let mut heard = Vec::new();
        for frame in 0..50u16 {
            let ts8 = 1000 + u32::from(frame) * 160;
            let mut p = packet(0, frame, ts8, &tone_ulaw(1000.0, frame.into()));
            let n = to.to_browser(&mut p, 12 + 160, law).expect("encoded");
            let rtp::Datagram::Rtp(h) = rtp::parse(&p[..n]) else {
                panic!("not RTP")
            };
            assert_eq!((h.payload_type, h.seq, h.timestamp), (111, frame, ts8 * 6));
            assert!(n - 12 < 160, "Opus is smaller than G.711: {}", n - 12);
            // The browser's Opus, as its own stream, back to G.711.
            let n = back.from_browser(&mut p, n).expect("decoded");
            let rtp::Datagram::Rtp(h) = rtp::parse(&p[..n]) else {
                panic!("not RTP")
            };
            assert_eq!((h.payload_type, n - 12), (0, 160));
            if frame >= 10 {
                heard.extend(
                    h.payload(&p)
                        .iter()
                        .map(|b| g711::ULAW_TO_LINEAR[*b as usize]),
                );
            }
        }
        assert_eq!(loudest(&heard, &[440.0, 1000.0, 2000.0]), 1000.0);
    }

    #[test]
    fn browser_timestamps_scale_down_continuously_across_the_wrap() {
        let mut t = Transcoder::new(BRIDGE).unwrap();
        let mut enc = opus::Encoder::new(8000, Channels::Mono, Application::Voip).unwrap();
        let silence = enc.encode_vec(&[0i16; 160], 400).unwrap();
        let mut last = None;
        for k in 0..4u32 {
            let ts48 = (u32::MAX - 960).wrapping_add(k * 960);
            let mut p = packet(111, k as u16, ts48, &silence);
            let n = t.from_browser(&mut p, 12 + silence.len()).unwrap();
            let rtp::Datagram::Rtp(h) = rtp::parse(&p[..n]) else {
                panic!()
            };
            if let Some(prev) = last {
                assert_eq!(h.timestamp.wrapping_sub(prev), 160, "step {k}");
            }
            last = Some(h.timestamp);
        }
    }

    #[test]
    fn dtmf_changes_type_and_clock_and_what_has_no_opus_form_is_dropped() {
        let mut t = Transcoder::new(BRIDGE).unwrap();
        // '5', end bit, volume 10, 1,600 ticks at 8 kHz.
        let event = [5u8, 0x8a, 0x06, 0x40];
        let mut p = packet(101, 7, 800, &event);
        let n = t.to_browser(&mut p, 16, law).unwrap();
        let rtp::Datagram::Rtp(h) = rtp::parse(&p[..n]) else {
            panic!()
        };
        assert_eq!((h.payload_type, h.timestamp), (110, 4800));
        assert_eq!(
            h.payload(&p),
            &[5, 0x8a, 0x25, 0x80],
            "9,600 ticks at 48 kHz"
        );
        let n = t.from_browser(&mut p, n).unwrap();
        let rtp::Datagram::Rtp(h) = rtp::parse(&p[..n]) else {
            panic!()
        };
        assert_eq!(h.payload_type, 101);
        assert_eq!(h.payload(&p), &event);
        // Comfort noise, a 30 ms frame, G.722: no Opus for them.
        let mut cn = packet(13, 1, 0, &[40]);
        assert_eq!(t.to_browser(&mut cn, 13, law), None);
        let mut odd = packet(0, 1, 0, &[0xff; 240]);
        assert_eq!(t.to_browser(&mut odd, 12 + 240, law), None);
        let mut g722 = packet(9, 1, 0, &[0; 160]);
        assert_eq!(t.to_browser(&mut g722, 172, law), None);
        // From the browser: garbage Opus is refused and counted; another
        // type passes for the payload-type check to count.
        let mut bad = packet(111, 1, 0, &[0xff; 3]);
        assert_eq!(t.from_browser(&mut bad, 15), None);
        assert_eq!(t.undecodable, 1);
        let mut other = packet(96, 1, 0, &[1, 2, 3]);
        assert_eq!(t.from_browser(&mut other, 15), Some(15));
    }
}
