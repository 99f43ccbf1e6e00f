//! A browser that speaks Opus and no G.711 (issue #17): the rest of the
//! call (the B2BUA, the other phone, mediad's relay) works in G.711, so
//! on this dialog's edge the SDP is translated both ways and mediad
//! transcodes (`proto::webrtc::OpusBridge`).
//!
//! - The browser's offer of Opus alone reaches the call as an offer of
//!   PCMU and PCMA (and telephone-event/8000 for its 48 kHz one); whichever
//!   G.711 the answer picks is given back to the browser as its Opus.
//! - sipd's offers to a browser carry Opus after the G.711 codecs (a
//!   browser that takes G.711 needs no transcoding); a browser that answers
//!   Opus first is heard in the first G.711 of that offer.
//! - A browser that offers or answers G.711 is passed through untouched.
//!
//! The bridge (both sides' payload types) is known once the answer is:
//! [`Codecs::bridge`].

use proto::webrtc::{G711, OpusBridge};

/// The Opus type sipd offers a browser when the call's SDP has none
/// (browsers use 111 for it; another free one is taken if it is in use).
const OPUS_PT: u8 = 111;
/// telephone-event/48000 in sipd's offers, likewise.
const OPUS_DTMF_PT: u8 = 110;
/// telephone-event/8000 in the G.711 view of a browser's Opus offer.
const DTMF_PT: u8 = 101;
/// RFC 7587 section 6.1: Opus is always opus/48000/2; in-band FEC is what
/// it is chosen for.
const OPUS_RTPMAP: &str = "opus/48000/2";
const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";

/// One audio format of an SDP: payload type, encoding (lower case), clock.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Format {
    pt: u8,
    name: String,
    rate: u32,
}

impl Format {
    fn g711(&self) -> Option<G711> {
        match super::sdp::g711_name(self.pt.into(), &self.name)? {
            "PCMU" => Some(G711::Pcmu),
            _ => Some(G711::Pcma),
        }
    }

    fn dtmf(&self, rate: u32) -> bool {
        self.name == "telephone-event" && self.rate == rate
    }

    /// Audio the sender may pick first: not DTMF, comfort noise nor
    /// redundancy (RFC 2198), which only ride along.
    fn is_voice(&self) -> bool {
        !matches!(self.name.as_str(), "telephone-event" | "cn" | "red")
    }
}

/// The formats of the first audio section, in the m-line's order.
fn formats(sdp: &str) -> Vec<Format> {
    let mut pts: Vec<u8> = Vec::new();
    let mut maps: Vec<(u8, String, u32)> = Vec::new();
    let mut section = 0; // 0 session, 1 audio, 2 after it
    for l in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = l.strip_prefix("m=") {
            let parts: Vec<&str> = m.split_whitespace().collect();
            section = if section == 0 && parts.first() == Some(&"audio") {
                pts = parts
                    .iter()
                    .skip(3)
                    .filter_map(|p| p.parse().ok())
                    .collect();
                1
            } else {
                2
            };
        } else if section == 1
            && let Some(r) = l.strip_prefix("a=rtpmap:")
            && let Some((pt, enc)) = r.split_once(' ')
            && let Ok(pt) = pt.parse()
        {
            let mut e = enc.split('/');
            let name = e.next().unwrap_or_default().to_ascii_lowercase();
            let rate = e.next().and_then(|r| r.parse().ok()).unwrap_or(0);
            maps.push((pt, name, rate));
        }
    }
    pts.into_iter()
        .map(|pt| {
            let (name, rate) = maps
                .iter()
                .find(|(p, ..)| *p == pt)
                .map(|(_, n, r)| (n.clone(), *r))
                .unwrap_or_else(|| (String::new(), 8000));
            Format { pt, name, rate }
        })
        .collect()
}

/// `sdp` with its first audio section's formats replaced by `formats`
/// (payload type, rtpmap, fmtp); every other line is kept.
fn with_formats(sdp: &str, formats: &[(u8, &str, Option<&str>)]) -> String {
    let mut out = String::with_capacity(sdp.len() + 128);
    let mut section = 0;
    let push_maps = |out: &mut String| {
        for (pt, map, fmtp) in formats {
            out.push_str(&format!("a=rtpmap:{pt} {map}\r\n"));
            if let Some(f) = fmtp {
                out.push_str(&format!("a=fmtp:{pt} {f}\r\n"));
            }
        }
    };
    for l in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if l.is_empty() {
            continue;
        }
        if let Some(m) = l.strip_prefix("m=") {
            if section == 1 {
                push_maps(&mut out);
            }
            let parts: Vec<&str> = m.split_whitespace().collect();
            if section == 0 && parts.first() == Some(&"audio") && parts.len() >= 3 {
                section = 1;
                let pts: Vec<String> = formats.iter().map(|f| f.0.to_string()).collect();
                out.push_str(&format!("m={} {}\r\n", parts[..3].join(" "), pts.join(" ")));
                continue;
            }
            section = 2;
        } else if section == 1
            && ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
                .iter()
                .any(|p| l.starts_with(p))
        {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    if section == 1 {
        push_maps(&mut out);
    }
    out
}

fn rtpmap(g: G711) -> &'static str {
    match g {
        G711::Pcmu => "PCMU/8000",
        G711::Pcma => "PCMA/8000",
    }
}

/// The G.711 side of a bridge: type and law, and telephone-event/8000.
type Side = (u8, G711, Option<u8>);

/// The first G.711 of `formats` and their telephone-event/8000.
fn g711_side(formats: &[Format]) -> Option<Side> {
    let (pt, g) = formats.iter().find_map(|f| Some((f.pt, f.g711()?)))?;
    Some((pt, g, formats.iter().find(|f| f.dtmf(8000)).map(|f| f.pt)))
}

/// What one browser dialog's SDP said of Opus, and what sipd offered it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Codecs {
    /// The browser's Opus and telephone-event/48000 types, while it speaks
    /// Opus and no G.711.
    opus: Option<(u8, Option<u8>)>,
    /// The G.711 side the answer settled on.
    g711: Option<Side>,
    /// The G.711 side of sipd's offer to the browser that awaits its
    /// answer.
    offered: Option<Side>,
}

impl Codecs {
    /// What mediad transcodes, once the offer and answer settled it.
    pub fn bridge(&self) -> Option<OpusBridge> {
        let (opus_pt, opus_dtmf_pt) = self.opus?;
        let (g711_pt, g711, dtmf_pt) = self.g711?;
        Some(OpusBridge {
            opus_pt,
            opus_dtmf_pt,
            g711_pt,
            g711,
            dtmf_pt: dtmf_pt.filter(|_| opus_dtmf_pt.is_some()),
        })
    }

    /// Whether a response with SDP from the browser is its answer (to an
    /// offer of sipd's) rather than an offer (to an INVITE without one).
    pub fn awaits_answer(&self) -> bool {
        self.offered.is_some()
    }

    /// The browser's SDP as the rest of the call is to see it: `None` to
    /// pass it as it is (it speaks G.711, or no Opus either).
    pub fn from_browser(&mut self, sdp: &str, offer: bool) -> Option<String> {
        let fmts = formats(sdp);
        let offered = if offer { None } else { self.offered.take() };
        let speaks_g711 = if offer {
            fmts.iter().any(|f| f.g711().is_some())
        } else {
            // What a browser sends is the first voice format it answered.
            fmts.iter()
                .find(|f| f.is_voice())
                .is_some_and(|f| f.g711().is_some())
        };
        let opus = fmts.iter().find(|f| f.name == "opus").map(|f| f.pt);
        let (false, Some(opus)) = (speaks_g711, opus) else {
            self.opus = None;
            self.g711 = None;
            return None;
        };
        let dtmf = fmts.iter().find(|f| f.dtmf(48000)).map(|f| f.pt);
        self.opus = Some((opus, dtmf));
        let dtmf_map = "telephone-event/8000";
        if offer {
            self.g711 = None;
            let mut view = vec![(0, rtpmap(G711::Pcmu), None), (8, rtpmap(G711::Pcma), None)];
            if dtmf.is_some() {
                view.push((DTMF_PT, dtmf_map, Some("0-16")));
            }
            return Some(with_formats(sdp, &view));
        }
        let (pt, g, te) = offered?;
        self.g711 = Some((pt, g, te));
        let mut view = vec![(pt, rtpmap(g), None)];
        if let (Some(te), Some(_)) = (te, dtmf) {
            view.push((te, dtmf_map, Some("0-16")));
        }
        Some(with_formats(sdp, &view))
    }

    /// sipd's SDP to the browser in the browser's codecs: an offer gains
    /// Opus after its G.711; an answer to a browser that speaks Opus is
    /// given back as Opus. `None` leaves it as it is.
    pub fn to_browser(&mut self, sdp: &str, offer: bool) -> Option<String> {
        let fmts = formats(sdp);
        if offer {
            self.offered = g711_side(&fmts);
            if fmts.iter().any(|f| f.name == "opus") {
                return None;
            }
            // The wanted dynamic type, else the next free one.
            let free = |want: u8, taken: Option<u8>| {
                (want..128)
                    .chain(96..want)
                    .find(|pt| Some(*pt) != taken && fmts.iter().all(|f| f.pt != *pt))
            };
            let opus = free(OPUS_PT, None)?;
            let mut all: Vec<(u8, String, Option<&str>)> = Vec::new();
            for f in &fmts {
                all.push((f.pt, existing_rtpmap(sdp, f.pt)?, existing_fmtp(sdp, f.pt)));
            }
            all.push((opus, OPUS_RTPMAP.into(), Some(OPUS_FMTP)));
            if fmts.iter().any(|f| f.dtmf(8000))
                && let Some(te) = free(OPUS_DTMF_PT, Some(opus))
            {
                all.push((te, "telephone-event/48000".into(), Some("0-16")));
            }
            let all: Vec<(u8, &str, Option<&str>)> =
                all.iter().map(|(p, m, f)| (*p, m.as_str(), *f)).collect();
            return Some(with_formats(sdp, &all));
        }
        let (opus, dtmf) = self.opus?;
        let side = g711_side(&fmts)?;
        self.g711 = Some(side);
        let mut answer = vec![(opus, OPUS_RTPMAP, Some(OPUS_FMTP))];
        if let (Some(te), Some(_)) = (dtmf, side.2) {
            answer.push((te, "telephone-event/48000", Some("0-16")));
        }
        Some(with_formats(sdp, &answer))
    }
}

/// The `a=rtpmap` value of `pt` in `sdp`, or the static type's.
fn existing_rtpmap(sdp: &str, pt: u8) -> Option<String> {
    let prefix = format!("a=rtpmap:{pt} ");
    sdp.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(&prefix))
        .map(str::to_string)
        .or(match pt {
            0 => Some(rtpmap(G711::Pcmu).into()),
            8 => Some(rtpmap(G711::Pcma).into()),
            13 => Some("CN/8000".into()),
            _ => None,
        })
}

fn existing_fmtp(sdp: &str, pt: u8) -> Option<&str> {
    let prefix = format!("a=fmtp:{pt} ");
    sdp.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(&prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Chromium offers when told Opus only (JsSIP munged, addresses
    /// rewritten; ICE and DTLS lines left out).
    const OPUS_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 110\r\nc=IN IP4 198.51.100.9\r\n\
        a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n\
        a=fmtp:111 minptime=10;useinbandfec=1\r\n\
        a=rtpmap:110 telephone-event/48000\r\na=sendrecv\r\n";

    /// The call's SDP as the B2BUA writes it (after `sdp::rewrite`).
    fn plain(formats: &str, maps: &str) -> String {
        format!(
            "v=0\r\no=gosip 1 1 IN IP4 203.0.113.5\r\ns=GoSIP\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
             m=audio 40000 RTP/AVP {formats}\r\n{maps}a=sendrecv\r\n"
        )
    }

    #[test]
    fn a_browsers_opus_offer_reaches_the_call_as_g711_and_the_answer_goes_back_as_opus() {
        let mut c = Codecs::default();
        let view = c.from_browser(OPUS_OFFER, true).unwrap();
        assert!(
            view.contains("m=audio 9 UDP/TLS/RTP/SAVPF 0 8 101\r\nc=IN IP4 198.51.100.9\r\n"),
            "{view}"
        );
        assert!(view.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        assert!(
            !view.contains("opus") && !view.contains("rtcp-fb"),
            "{view}"
        );
        assert!(view.contains("a=sendrecv\r\n"));
        // The B2BUA keeps it: PCMU and PCMA are what it relays.
        let rewritten = crate::sip::sdp::rewrite(&view, "203.0.113.5", 4000, false).unwrap();
        assert!(
            rewritten.contains("m=audio 4000 RTP/AVP 0 8 101\r\n"),
            "{rewritten}"
        );
        assert_eq!(c.bridge(), None, "the answer picks the G.711");
        // The desk phone answered PCMA: the browser hears of Opus.
        let answer = plain(
            "8 101",
            "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        );
        let to = c.to_browser(&answer, false).unwrap();
        assert!(to.contains("m=audio 40000 RTP/AVP 111 110\r\n"), "{to}");
        assert!(
            to.contains("a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n")
        );
        assert!(to.contains("a=rtpmap:110 telephone-event/48000\r\n"));
        assert!(!to.contains("PCMA"));
        let bridge = c.bridge().unwrap();
        assert_eq!(
            (
                bridge.opus_pt,
                bridge.opus_dtmf_pt,
                bridge.g711_pt,
                bridge.g711,
                bridge.dtmf_pt
            ),
            (111, Some(110), 8, G711::Pcma, Some(101))
        );
    }

    #[test]
    fn sipds_offer_gains_opus_and_a_browser_answering_it_first_is_heard_in_the_offers_g711() {
        let mut c = Codecs::default();
        let offer = plain(
            "0 8 101",
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        );
        let to = c.to_browser(&offer, true).unwrap();
        assert!(
            to.contains("m=audio 40000 RTP/AVP 0 8 101 111 110\r\n"),
            "{to}"
        );
        assert!(
            to.contains("a=fmtp:101 0-15\r\n"),
            "the call's fmtp stays: {to}"
        );
        assert!(c.awaits_answer());
        // A browser that answers G.711 first speaks it: no bridge.
        let g711_answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 111 101\r\nc=IN IP4 198.51.100.9\r\n\
            a=rtpmap:0 PCMU/8000\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(c.from_browser(g711_answer, false), None);
        assert_eq!(c.bridge(), None);
        // Offered again (a re-INVITE), answered Opus first: bridged to PCMU.
        c.to_browser(&offer, true).unwrap();
        let opus_answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 110\r\nc=IN IP4 198.51.100.9\r\n\
            a=rtpmap:111 opus/48000/2\r\na=rtpmap:110 telephone-event/48000\r\n";
        let view = c.from_browser(opus_answer, false).unwrap();
        assert!(
            view.contains("m=audio 9 UDP/TLS/RTP/SAVPF 0 101\r\n"),
            "{view}"
        );
        assert!(view.contains("a=rtpmap:0 PCMU/8000\r\n"));
        assert!(!c.awaits_answer());
        let b = c.bridge().unwrap();
        assert_eq!(
            (b.opus_pt, b.g711_pt, b.g711, b.dtmf_pt),
            (111, 0, G711::Pcmu, Some(101))
        );
    }

    #[test]
    fn a_browser_with_g711_passes_and_taken_payload_types_are_avoided() {
        let mut c = Codecs::default();
        let with_g711 = OPUS_OFFER.replace("111 110\r\n", "111 0 110\r\n");
        assert_eq!(c.from_browser(&with_g711, true), None);
        assert_eq!(c.bridge(), None);
        // An offer already using 111 and 110 for something else.
        let busy = plain(
            "0 111 110",
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:111 x-foo/8000\r\na=rtpmap:110 telephone-event/8000\r\n",
        );
        let to = c.to_browser(&busy, true).unwrap();
        assert!(
            to.contains("m=audio 40000 RTP/AVP 0 111 110 112 113\r\n"),
            "{to}"
        );
        assert!(
            to.contains("a=rtpmap:112 opus/48000/2\r\n")
                && to.contains("a=rtpmap:113 telephone-event/48000\r\n"),
            "{to}"
        );
        // No Opus and no G.711: nothing to translate.
        let g722 = OPUS_OFFER.replace("opus/48000/2", "G722/8000");
        assert_eq!(c.from_browser(&g722, true), None);
    }
}
