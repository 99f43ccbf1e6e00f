//! SDP rewriting for the B2BUA: media goes through mediad, so each leg sees
//! mediad's address and port, and only codecs both GoSIP and the phones
//! handle are kept (PCMU, PCMA, telephone-event). Direction attributes
//! (`sendonly`, `inactive` ...) pass through unchanged, so hold works.
//! The audio profile and SRTP keys are not passed through: mediad
//! terminates SRTP per leg, so each hop gets its own (see `sdes`).

/// Rewrites the audio section of `sdp` to `ip:port`, keeping only PCMU,
/// PCMA and telephone-event. Non-audio sections are dropped (offer) or
/// rejected with port 0 (`reject_others`, for an answer). `None` when no
/// shared audio codec remains.
pub fn rewrite(sdp: &str, ip: &str, port: u16, reject_others: bool) -> Option<String> {
    let lines: Vec<&str> = sdp
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut section: Option<&str> = None;
    let mut keep: Vec<String> = Vec::new();
    let mut audio_done = false;
    let mut audio_ok = false;
    // First pass: which payload types are telephone-event.
    let mut dtmf: Vec<String> = Vec::new();
    for l in &lines {
        if let Some(r) = l.strip_prefix("a=rtpmap:") {
            let (pt, enc) = r.split_once(' ').unwrap_or((r, ""));
            if enc.to_ascii_lowercase().starts_with("telephone-event/8000") {
                dtmf.push(pt.to_string());
            }
        }
    }
    for l in lines {
        // A browser's ICE, DTLS and bundling are its own hop's (`webrtc`).
        if super::webrtc::per_hop(l) {
            continue;
        }
        if let Some(m) = l.strip_prefix("m=") {
            let parts: Vec<&str> = m.split_whitespace().collect();
            let media = parts.first().copied().unwrap_or_default();
            if media == "audio" && !audio_done && parts.len() >= 3 {
                audio_done = true;
                section = Some("audio");
                keep = parts[3..]
                    .iter()
                    .filter(|pt| **pt == "0" || **pt == "8" || dtmf.iter().any(|d| d == *pt))
                    .map(|s| s.to_string())
                    .collect();
                if !keep.iter().any(|pt| pt == "0" || pt == "8") {
                    return None;
                }
                audio_ok = true;
                // The profile and keys are each hop's own (see `sdes`).
                out.push(format!("m=audio {port} RTP/AVP {}", keep.join(" ")));
                out.push(format!("c=IN IP4 {ip}"));
            } else {
                section = Some("other");
                if reject_others && parts.len() >= 4 {
                    out.push(format!("m={} 0 {} {}", parts[0], parts[2], parts[3]));
                }
            }
            continue;
        }
        match section {
            None => {
                if l.starts_with("c=") {
                    continue;
                }
                if let Some(o) = l.strip_prefix("o=") {
                    let mut f: Vec<&str> = o.split_whitespace().collect();
                    if f.len() == 6 {
                        f[5] = ip;
                        out.push(format!("o={}", f.join(" ")));
                        continue;
                    }
                }
                out.push(l.to_string());
            }
            Some("audio") => {
                if l.starts_with("c=") {
                    continue;
                }
                let pt = l
                    .strip_prefix("a=rtpmap:")
                    .or_else(|| l.strip_prefix("a=fmtp:"))
                    .map(|r| r.split(' ').next().unwrap_or_default());
                match pt {
                    Some(pt) if !keep.iter().any(|k| k == pt) => {}
                    _ if l.starts_with("a=rtcp:")
                        || l.starts_with("a=candidate")
                        || l.starts_with("a=crypto:") => {}
                    _ => out.push(l.to_string()),
                }
            }
            _ => {}
        }
    }
    if !audio_ok {
        return None;
    }
    let mut s = out.join("\r\n");
    s.push_str("\r\n");
    Some(s)
}

/// Shapes an answer built from the other leg's SDP (already through
/// [`rewrite`]) to the offer it answers (RFC 3264 section 6): exactly one
/// m-line for each of the offer's, in its order. The offer's first audio
/// stream gets the answer's audio section; every other stream (video, a
/// second audio, anything sipd does not relay) is refused with port 0 and
/// the offer's first format. An answer without audio is returned as is.
pub fn shape_answer(offer: &str, answer: &str) -> String {
    let mut session: Vec<&str> = Vec::new();
    let mut audio: Vec<&str> = Vec::new();
    let mut in_media = false;
    let mut in_audio = false;
    for l in answer.lines().map(|l| l.trim_end_matches('\r')) {
        if l.is_empty() {
            continue;
        }
        if let Some(m) = l.strip_prefix("m=") {
            in_media = true;
            let parts: Vec<&str> = m.split_whitespace().collect();
            in_audio =
                audio.is_empty() && parts.first() == Some(&"audio") && parts.get(1) != Some(&"0");
        }
        if !in_media {
            session.push(l);
        } else if in_audio {
            audio.push(l);
        }
    }
    if audio.is_empty() {
        return answer.to_string();
    }
    let mut out: Vec<String> = session.iter().map(|l| l.to_string()).collect();
    let mut used = false;
    for m in offer
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("m="))
    {
        let parts: Vec<&str> = m.split_whitespace().collect();
        if !used && parts.first() == Some(&"audio") && parts.len() >= 3 {
            used = true;
            out.extend(audio.iter().map(|l| l.to_string()));
        } else {
            out.push(format!(
                "m={} 0 {} {}",
                parts.first().unwrap_or(&"audio"),
                parts.get(2).unwrap_or(&"RTP/AVP"),
                parts.get(3).unwrap_or(&"0")
            ));
        }
    }
    if !used {
        return answer.to_string();
    }
    let mut s = out.join("\r\n");
    s.push_str("\r\n");
    s
}

/// An offer that takes a held leg off hold: `last` (the SDP that leg was
/// last sent) with every direction attribute `sendrecv` and the origin's
/// version one higher, as a new offer in the same session must have (RFC
/// 3264 section 8).
pub fn resume_offer(last: &str) -> String {
    let mut out = String::new();
    for l in last
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
    {
        let line = match l {
            "a=sendonly" | "a=recvonly" | "a=inactive" => "a=sendrecv".to_string(),
            o if o.starts_with("o=") => {
                let mut parts: Vec<String> = o.split(' ').map(str::to_string).collect();
                if let Some(v) = parts.get_mut(2).and_then(|v| {
                    v.parse::<u64>()
                        .ok()
                        .map(|n| (v, n.wrapping_add(1).to_string()))
                }) {
                    *v.0 = v.1;
                }
                parts.join(" ")
            }
            other => other.to_string(),
        };
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

/// The direction of the first audio stream (RFC 3264 section 5.1): its own
/// `a=sendrecv` / `sendonly` / `recvonly` / `inactive`, else the session's,
/// else `sendrecv`.
pub fn direction(sdp: &str) -> &'static str {
    const DIRS: [&str; 4] = ["sendrecv", "sendonly", "recvonly", "inactive"];
    let mut session = None;
    let mut audio = None;
    for (part, a) in attributes(sdp) {
        let Some(d) = DIRS.iter().find(|d| **d == a) else {
            continue;
        };
        match part {
            Part::Session => session = Some(*d),
            Part::Audio => audio = Some(*d),
            Part::Other => {}
        }
    }
    audio.or(session).unwrap_or("sendrecv")
}

/// Which part of an SDP a line is in: the session part, the first media
/// section when it is audio (the stream GoSIP relays), or another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Session,
    Audio,
    Other,
}

/// The attributes of `sdp` (`a=` lines, without the `a=`), each with the
/// part it is in.
pub fn attributes(sdp: &str) -> impl Iterator<Item = (Part, &str)> {
    let mut part = Part::Session;
    sdp.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter_map(move |l| {
            if let Some(m) = l.strip_prefix("m=") {
                part = if part == Part::Session && m.starts_with("audio ") {
                    Part::Audio
                } else {
                    Part::Other
                };
                return None;
            }
            l.strip_prefix("a=").map(|a| (part, a))
        })
}

/// True when an offer/answer pair leaves the call on hold: either side is
/// not `sendrecv` or puts its address to 0.0.0.0 (RFC 3264 section 8.4).
pub fn on_hold(offer: &str, answer: &str) -> bool {
    [offer, answer]
        .iter()
        .any(|s| direction(s) != "sendrecv" || leg_media(s).is_some_and(|m| m.hold))
}

/// Which side of an offer/answer exchange holds the call: (the offerer,
/// the answerer). A side holds when its SDP is `sendonly` or `inactive` or
/// puts its address to 0.0.0.0 (RFC 3264 section 8.4; RFC 6337 section
/// 5.3 for the answers). An answer that is `inactive` because the offer was
/// (the only answer RFC 3264 section 6.1 allows to an inactive offer) is
/// the offerer's hold, not the answerer's.
pub fn holders(offer: &str, answer: &str) -> (bool, bool) {
    let holds = |s: &str| leg_media(s).is_some_and(|m| m.hold);
    let offerer = holds(offer);
    (offerer, holds(answer) && !offerer)
}

/// What mediad needs to know of one leg's SDP: where its audio goes, its
/// rtpmap and whether it puts the call on hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegMedia {
    /// `ip:port` of the audio stream; empty when none is given.
    pub rtp: String,
    /// `ip:port` from `a=rtcp`; empty = RTP port + 1.
    pub rtcp: String,
    /// Payload type -> encoding name, from the audio format list.
    pub codecs: Vec<(u32, String)>,
    /// `a=sendonly` / `a=inactive` (or a 0.0.0.0 address).
    pub hold: bool,
    /// Where the leg's SIP came from (not in the SDP; the B2BUA adds it):
    /// mediad latches the leg's media only from this IP or the SDP's, so a
    /// phone behind NAT still latches and a stranger never does.
    pub signal_ip: Option<std::net::IpAddr>,
}

impl LegMedia {
    /// The same media, vouched for by signalling from `ip`.
    pub fn signalled_from(mut self, ip: std::net::IpAddr) -> Self {
        self.signal_ip = Some(ip);
        self
    }
}

/// sipd's own answer to `offer` when it answers a caller itself (voicemail):
/// mediad at `ip:port`, the first G.711 codec the offer names (mediad
/// plays and records G.711 only) and telephone-event at the offer's number
/// (RFC 4733), so key presses still arrive. `None` when the offer has no
/// audio or no G.711.
pub fn local_answer(offer: &str, ip: &str, port: u16) -> Option<String> {
    answer_in(offer, ip, port, first_g711(offer)?)
}

/// The G.711 codec ("PCMU" or "PCMA") a static or named payload type is.
pub(crate) fn g711_name(pt: u32, name: &str) -> Option<&'static str> {
    match (pt, name.to_ascii_uppercase().as_str()) {
        (_, "PCMU") | (0, "") => Some("PCMU"),
        (_, "PCMA") | (8, "") => Some("PCMA"),
        _ => None,
    }
}

/// The first G.711 codec `sdp` names.
pub fn first_g711(sdp: &str) -> Option<&'static str> {
    leg_media(sdp)?
        .codecs
        .iter()
        .find_map(|(pt, name)| g711_name(*pt, name))
}

/// The first G.711 codec of `first` that `second` names too: what two
/// phones joined through mediad (which relays, never transcodes) both
/// speak.
pub fn shared_g711(first: &str, second: &str) -> Option<&'static str> {
    let theirs = leg_media(second)?;
    leg_media(first)?.codecs.iter().find_map(|(pt, name)| {
        let codec = g711_name(*pt, name)?;
        theirs
            .codecs
            .iter()
            .any(|(p, n)| g711_name(*p, n) == Some(codec))
            .then_some(codec)
    })
}

/// An answer to `offer` with mediad at `ip:port` in `codec` ("PCMU" or
/// "PCMA", at the offer's payload type for it) and the offer's
/// telephone-event. `None` when the offer does not name `codec`.
pub fn answer_in(offer: &str, ip: &str, port: u16, codec: &str) -> Option<String> {
    let media = leg_media(offer)?;
    let pt = media
        .codecs
        .iter()
        .find(|(pt, name)| g711_name(*pt, name) == Some(codec))
        .map(|(pt, _)| *pt)?;
    let dtmf = media
        .codecs
        .iter()
        .find(|(_, name)| name.eq_ignore_ascii_case("telephone-event"))
        .map(|(pt, _)| *pt);
    let mut formats = pt.to_string();
    let mut attrs = format!("a=rtpmap:{pt} {codec}/8000\r\n");
    if let Some(te) = dtmf {
        formats.push_str(&format!(" {te}"));
        attrs.push_str(&format!(
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n"
        ));
    }
    Some(format!(
        "v=0\r\no=gosip 1 1 IN IP4 {ip}\r\ns=GoSIP\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {formats}\r\n{attrs}a=ptime:20\r\na=sendrecv\r\n"
    ))
}

/// Reads the first audio section of `sdp`.
pub fn leg_media(sdp: &str) -> Option<LegMedia> {
    let mut session_ip = String::new();
    let mut audio_ip = String::new();
    let mut port = None;
    let mut pts: Vec<u32> = Vec::new();
    let mut names: Vec<(u32, String)> = Vec::new();
    let mut rtcp = None;
    let mut hold = false;
    let mut section = 0; // 0 session, 1 audio, 2 other
    for l in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = l.strip_prefix("m=") {
            let parts: Vec<&str> = m.split_whitespace().collect();
            if section != 1 && port.is_none() && parts.first() == Some(&"audio") && parts.len() >= 3
            {
                section = 1;
                port = parts[1].parse::<u16>().ok();
                pts = parts[3..].iter().filter_map(|p| p.parse().ok()).collect();
            } else {
                section = 2;
            }
            continue;
        }
        if section == 2 {
            continue;
        }
        if let Some(c) = l.strip_prefix("c=") {
            let ip = c.split_whitespace().nth(2).unwrap_or_default();
            let ip = ip.split('/').next().unwrap_or_default().to_string();
            if section == 0 {
                session_ip = ip;
            } else {
                audio_ip = ip;
            }
        } else if let Some(r) = l.strip_prefix("a=rtpmap:") {
            let (pt, enc) = r.split_once(' ').unwrap_or((r, ""));
            if let Ok(pt) = pt.parse() {
                names.push((pt, enc.split('/').next().unwrap_or_default().to_string()));
            }
        } else if let Some(r) = l.strip_prefix("a=rtcp:") {
            rtcp = r
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok());
        } else if l == "a=sendonly" || l == "a=inactive" {
            hold = true;
        }
    }
    let port = port?;
    let ip = if audio_ip.is_empty() {
        session_ip
    } else {
        audio_ip
    };
    if ip == "0.0.0.0" {
        hold = true;
    }
    let codecs = pts
        .iter()
        .map(|pt| {
            let name = names
                .iter()
                .find(|(p, _)| p == pt)
                .map(|(_, n)| n.clone())
                .unwrap_or_else(|| match pt {
                    0 => "PCMU".into(),
                    8 => "PCMA".into(),
                    _ => String::new(),
                });
            (*pt, name)
        })
        .filter(|(_, n)| !n.is_empty())
        .collect();
    let addr = |p: u16| {
        if ip.is_empty() || port == 0 {
            String::new()
        } else if ip.contains(':') {
            format!("[{ip}]:{p}")
        } else {
            format!("{ip}:{p}")
        }
    };
    Some(LegMedia {
        rtp: addr(port),
        rtcp: rtcp.map(addr).unwrap_or_default(),
        codecs,
        hold,
        signal_ip: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=alice 123 456 IN IP4 192.168.1.50\r\ns=-\r\nc=IN IP4 192.168.1.50\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0 8 9 18 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:9 G722/8000\r\na=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendonly\r\nm=video 5006 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";

    #[test]
    fn the_offer_keeps_g711_and_dtmf_on_the_relay_address_and_direction() {
        let s = rewrite(OFFER, "10.0.0.1", 20000, false).unwrap();
        assert_eq!(
            s,
            "v=0\r\no=alice 123 456 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 8 101\r\nc=IN IP4 10.0.0.1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendonly\r\n"
        );
    }

    #[test]
    fn an_answer_rejects_other_media_with_port_zero() {
        let s = rewrite(OFFER, "10.0.0.1", 20000, true).unwrap();
        assert!(s.ends_with("m=video 0 RTP/AVP 96\r\n"));
    }

    #[test]
    fn an_answer_gets_one_m_line_per_offered_stream_in_the_offers_order() {
        // The caller offers video first, then audio, then a second audio;
        // the other leg only ever saw (and answered) the first audio.
        let offer = "v=0\r\no=a 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n\
                     m=video 5006 RTP/AVP 96 97\r\na=rtpmap:96 H264/90000\r\n\
                     m=audio 5004 RTP/AVP 0 8\r\nm=audio 5008 RTP/AVP 0\r\n";
        let far = "v=0\r\no=b 1 1 IN IP4 5.6.7.8\r\ns=-\r\nc=IN IP4 5.6.7.8\r\nt=0 0\r\n\
                   m=audio 7000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n";
        let answer = rewrite(far, "10.0.0.1", 20000, true).unwrap();
        let shaped = shape_answer(offer, &answer);
        let m: Vec<&str> = shaped.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m,
            vec![
                "m=video 0 RTP/AVP 96",
                "m=audio 20000 RTP/AVP 8",
                "m=audio 0 RTP/AVP 0"
            ]
        );
        // The audio section keeps its own lines; the session part is kept.
        assert!(
            shaped.starts_with("v=0\r\no=b 1 1 IN IP4 10.0.0.1\r\n"),
            "{shaped}"
        );
        assert!(shaped.contains("m=audio 20000 RTP/AVP 8\r\nc=IN IP4 10.0.0.1\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\nm=audio 0"));
        // An audio-only offer leaves the answer as it was.
        let plain = "v=0\r\nm=audio 5004 RTP/AVP 0 8\r\n";
        assert_eq!(shape_answer(plain, &answer), answer);
    }

    #[test]
    fn no_shared_codec_is_none() {
        let g722 = "v=0\r\no=a 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 5004 RTP/AVP 9\r\n";
        assert_eq!(rewrite(g722, "10.0.0.1", 1, false), None);
    }

    #[test]
    fn the_audio_streams_direction_wins_over_the_sessions() {
        assert_eq!(direction(OFFER), "sendonly");
        let session = "v=0\r\na=inactive\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(direction(session), "inactive");
        let both = "v=0\r\na=inactive\r\nm=audio 4000 RTP/AVP 0\r\na=recvonly\r\nm=video 1 RTP/AVP 96\r\na=sendonly\r\n";
        assert_eq!(direction(both), "recvonly");
        assert_eq!(direction("v=0\r\nm=audio 4000 RTP/AVP 0\r\n"), "sendrecv");
        let plain = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert!(!on_hold(plain, plain));
        assert!(on_hold(plain, &format!("{plain}a=recvonly\r\n")));
        assert!(on_hold(&plain.replace("1.2.3.4", "0.0.0.0"), plain));
    }

    #[test]
    fn a_resume_offer_is_the_last_sdp_sendrecv_with_the_next_version() {
        let held = "v=0\r\no=bob 7 41 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                    m=audio 20000 RTP/AVP 0 101\r\na=recvonly\r\na=rtpmap:101 telephone-event/8000\r\n";
        let r = resume_offer(held);
        assert!(r.contains("o=bob 7 42 IN IP4 10.0.0.1\r\n"), "{r}");
        assert!(
            r.contains("a=sendrecv\r\n") && !r.contains("recvonly"),
            "{r}"
        );
        assert_eq!(direction(&r), "sendrecv");
        assert_eq!(r.matches("\r\n").count(), held.matches("\r\n").count());
    }

    #[test]
    fn the_side_that_says_sendonly_or_inactive_holds_the_other() {
        let plain = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\n";
        let with = |a: &str| format!("{plain}a={a}\r\n");
        assert_eq!(holders(plain, plain), (false, false));
        assert_eq!(holders(&with("sendonly"), &with("recvonly")), (true, false));
        assert_eq!(holders(&with("inactive"), &with("inactive")), (true, false));
        assert_eq!(
            holders(&plain.replace("1.2.3.4", "0.0.0.0"), plain),
            (true, false)
        );
        // The answerer holds in its answer to an unhold offer.
        assert_eq!(holders(plain, &with("sendonly")), (false, true));
        assert_eq!(holders(&with("recvonly"), &with("inactive")), (false, true));
    }

    #[test]
    fn a_legs_media_is_its_audio_address_rtpmap_and_hold_state() {
        let m = leg_media(OFFER).unwrap();
        assert_eq!(m.rtp, "192.168.1.50:5004");
        assert_eq!(m.rtcp, "");
        assert!(m.hold);
        assert_eq!(
            m.codecs,
            vec![
                (0, "PCMU".to_string()),
                (8, "PCMA".to_string()),
                (9, "G722".to_string()),
                (18, "G729".to_string()),
                (101, "telephone-event".to_string())
            ]
        );
        let plain = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 5.6.7.8\r\na=rtcp:4009\r\n";
        let m = leg_media(plain).unwrap();
        assert_eq!(
            (m.rtp.as_str(), m.rtcp.as_str(), m.hold),
            ("5.6.7.8:4000", "5.6.7.8:4009", false)
        );
    }

    #[test]
    fn a_local_answer_takes_the_first_g711_codec_and_keeps_telephone_event() {
        let offer = "v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 4000 RTP/AVP 9 8 0 101\r\n\
                     a=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let a = local_answer(offer, "198.51.100.1", 20000).unwrap();
        assert!(a.contains("c=IN IP4 198.51.100.1"), "{a}");
        assert!(a.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:8 PCMA/8000"), "{a}");
        let opus_only = "v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 4000 RTP/AVP 111\r\n\
                         a=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(local_answer(opus_only, "198.51.100.1", 20000), None);
    }
}
