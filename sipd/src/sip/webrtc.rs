//! The SDP of a browser's leg (RFC 8829/8839/8842): the B2BUA works on
//! plain RTP/AVP SDP; this reads what is particular to a browser's SDP (its
//! ICE credentials, certificate fingerprint, DTLS role, mid) and turns the
//! SDP sipd sends a browser into the WebRTC shape: ICE-lite with mediad's
//! one host candidate, `UDP/TLS/RTP/SAVPF`, RTCP multiplexed, mediad's
//! certificate fingerprint. Other legs never see these attributes
//! ([`crate::sip::sdp::rewrite`] drops them).

use std::net::IpAddr;

use proto::webrtc::{DtlsRole, Fingerprint, IceCredentials};

use super::sdp::{self, Part};

/// `a=setup` (RFC 4145, RFC 5763).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Active,
    Passive,
    ActPass,
}

/// What a browser's SDP says of its ICE and DTLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub creds: IceCredentials,
    pub fingerprint: Fingerprint,
    pub setup: Setup,
    /// The audio stream's `a=mid`.
    pub mid: Option<String>,
    /// It bundles its streams (`a=group:BUNDLE`).
    pub bundle: bool,
}

impl Remote {
    /// mediad's DTLS role against this SDP: it waits for the ClientHello
    /// unless the browser insists on waiting itself (`a=setup:passive`).
    pub fn mediad_role(&self) -> DtlsRole {
        match self.setup {
            Setup::Passive => DtlsRole::Client,
            Setup::Active | Setup::ActPass => DtlsRole::Server,
        }
    }
}

/// Why a browser's SDP cannot be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no ICE credentials")]
    NoIce,
    #[error("no sha-256 DTLS fingerprint")]
    NoFingerprint,
}

/// An attribute of the session or of the first audio section (the media
/// level wins), and the session's `a=group:BUNDLE`.
fn attributes(sdp: &str) -> (Vec<(&str, &str)>, bool) {
    let mut out: Vec<(&str, &str)> = Vec::new();
    let mut bundle = false;
    for (part, a) in sdp::attributes(sdp) {
        let (name, value) = a.split_once(':').unwrap_or((a, ""));
        match part {
            Part::Session => {
                bundle |= name == "group" && value.starts_with("BUNDLE");
                out.push((name, value.trim()));
            }
            // Media level first: it overrides the session's.
            Part::Audio => out.insert(0, (name, value.trim())),
            Part::Other => {}
        }
    }
    (out, bundle)
}

/// Reads a browser's SDP (an offer or an answer).
pub fn read(sdp: &str) -> Result<Remote, Refusal> {
    let (attrs, bundle) = attributes(sdp);
    let get = |n: &str| attrs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
    let creds = IceCredentials::parse(
        get("ice-ufrag").unwrap_or_default(),
        get("ice-pwd").unwrap_or_default(),
    )
    .ok_or(Refusal::NoIce)?;
    let fingerprint = attrs
        .iter()
        .filter(|(k, _)| *k == "fingerprint")
        .find_map(|(_, v)| Fingerprint::parse(v))
        .ok_or(Refusal::NoFingerprint)?;
    let setup = match get("setup").map(str::to_ascii_lowercase).as_deref() {
        Some("active") => Setup::Active,
        Some("passive") => Setup::Passive,
        _ => Setup::ActPass,
    };
    Ok(Remote {
        creds,
        fingerprint,
        setup,
        mid: get("mid").map(str::to_string),
        bundle,
    })
}

/// A browser's SDP as the B2BUA reads it: a browser puts `0.0.0.0` (port
/// 9) in `c=` and its real addresses in candidates, which to the B2BUA
/// would mean hold; the address its signalling came from goes there
/// instead. mediad latches a browser's media by ICE, not by this address.
pub fn normalize(sdp: &str, client: IpAddr) -> String {
    let c = match client {
        IpAddr::V4(ip) => format!("c=IN IP4 {ip}"),
        IpAddr::V6(ip) => format!("c=IN IP6 {ip}"),
    };
    let mut out = String::with_capacity(sdp.len());
    for l in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if l.is_empty() || l.starts_with("a=rtcp:") {
            continue;
        }
        if l == "c=IN IP4 0.0.0.0" || l == "c=IN IP6 ::" {
            out.push_str(&c);
        } else {
            out.push_str(l);
        }
        out.push_str("\r\n");
    }
    out
}

/// What sipd puts in its SDP to a browser beside mediad's address.
#[derive(Debug, Clone)]
pub struct Local<'a> {
    pub creds: &'a IceCredentials,
    pub fingerprint: &'a Fingerprint,
    /// `actpass` in an offer; in an answer the opposite of the browser's.
    pub setup: &'static str,
    pub mid: &'a str,
    pub bundle: bool,
}

/// The `a=setup` of sipd's answer to a browser's `setup`.
pub fn answer_setup(remote: Setup) -> &'static str {
    match remote {
        Setup::Passive => "active",
        Setup::Active | Setup::ActPass => "passive",
    }
}

/// Attributes a browser's SDP carries that belong to its own hop only.
pub fn per_hop(attribute: &str) -> bool {
    const HOP: &[&str] = &[
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "ice-lite",
        "fingerprint",
        "setup",
        "mid",
        "group",
        "msid",
        "msid-semantic",
        "ssrc",
        "ssrc-group",
        "rtcp-mux",
        "rtcp-rsize",
        "rtcp-fb",
        "extmap",
        "extmap-allow-mixed",
        "candidate",
        "end-of-candidates",
        "tls-id",
    ];
    let name = attribute
        .strip_prefix("a=")
        .map(|a| a.split(':').next().unwrap_or(a));
    name.is_some_and(|n| HOP.contains(&n))
}

/// sipd's plain SDP (mediad's address and port, RTP/AVP) in the shape a
/// browser takes. `None` when it has no audio section.
pub fn write(sdp: &str, local: &Local<'_>) -> Option<String> {
    let mut session: Vec<String> = Vec::new();
    let mut media: Vec<String> = Vec::new();
    let mut session_c: Option<String> = None;
    let mut audio: Option<(String, String)> = None; // (port, formats)
    let mut audio_c: Option<String> = None;
    let mut section = 0;
    for l in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if l.is_empty() || per_hop(l) || l.starts_with("a=crypto:") || l.starts_with("a=rtcp:") {
            continue;
        }
        if let Some(m) = l.strip_prefix("m=") {
            let parts: Vec<&str> = m.split_whitespace().collect();
            if section == 0 && parts.first() == Some(&"audio") && parts.len() >= 4 {
                section = 1;
                audio = Some((parts[1].to_string(), parts[3..].join(" ")));
            } else {
                // Nothing but one audio stream goes to a browser.
                section = 2;
            }
            continue;
        }
        match section {
            0 if l.starts_with("c=") => session_c = Some(l.to_string()),
            0 => session.push(l.to_string()),
            1 if l.starts_with("c=") => audio_c = Some(l.to_string()),
            1 => media.push(l.to_string()),
            _ => {}
        }
    }
    let (port, formats) = audio?;
    let c = audio_c.or(session_c)?;
    let ip = c.split_whitespace().nth(2).unwrap_or_default().to_string();
    let mut out: Vec<String> = session;
    out.push("a=ice-lite".into());
    if local.bundle {
        out.push(format!("a=group:BUNDLE {}", local.mid));
    }
    out.push("a=msid-semantic: WMS".into());
    out.push(format!("m=audio {port} UDP/TLS/RTP/SAVPF {formats}"));
    out.push(c);
    out.push(format!("a=mid:{}", local.mid));
    out.extend(media);
    out.push("a=rtcp-mux".into());
    out.push(format!("a=ice-ufrag:{}", local.creds.ufrag));
    out.push(format!("a=ice-pwd:{}", local.creds.pwd));
    out.push(format!("a=fingerprint:{}", local.fingerprint));
    out.push(format!("a=setup:{}", local.setup));
    let unspecified = ip.parse::<IpAddr>().map_or(true, |ip| ip.is_unspecified());
    if port != "0" && !unspecified {
        // One host candidate, the highest priority (RFC 8445 section 5.1.2).
        out.push(format!(
            "a=candidate:1 1 udp 2130706431 {ip} {port} typ host"
        ));
    }
    out.push("a=end-of-candidates".into());
    let mut s = out.join("\r\n");
    s.push_str("\r\n");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An offer Chromium 156 made through JsSIP (addresses rewritten).
    const CHROMIUM_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS 5a6b\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1 1 udp 2113937151 192.0.2.2 50000 typ host generation 0\r\n\
a=ice-ufrag:Xy1z\r\n\
a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=sendrecv\r\n\
a=msid:5a6b 7c8d\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:1001 cname:abc\r\n";

    #[test]
    fn a_browsers_offer_is_read_and_made_plain_for_the_other_leg() {
        let r = read(CHROMIUM_OFFER).unwrap();
        assert_eq!(r.creds.ufrag, "Xy1z");
        assert_eq!(r.setup, Setup::ActPass);
        assert_eq!(r.mediad_role(), DtlsRole::Server);
        assert_eq!(r.mid.as_deref(), Some("0"));
        assert!(r.bundle);
        let n = normalize(CHROMIUM_OFFER, "198.51.100.9".parse().unwrap());
        assert!(n.contains("c=IN IP4 198.51.100.9\r\n"), "{n}");
        assert!(!n.contains("a=rtcp:9"));
        let m = crate::sip::sdp::leg_media(&n).unwrap();
        assert!(!m.hold, "a browser's 0.0.0.0 is not hold once normalized");
        let plain = crate::sip::sdp::rewrite(&n, "203.0.113.5", 4000, false).unwrap();
        assert!(
            plain.contains("m=audio 4000 RTP/AVP 0 8 126\r\n"),
            "{plain}"
        );
        for attr in [
            "ice-",
            "fingerprint",
            "setup",
            "mid",
            "group",
            "ssrc",
            "msid",
            "rtcp-mux",
            "candidate",
        ] {
            assert!(
                !plain.contains(&format!("a={attr}")),
                "{attr} leaked: {plain}"
            );
        }
    }

    #[test]
    fn an_offer_without_fingerprint_or_ice_is_refused() {
        let no_fp: String = CHROMIUM_OFFER
            .lines()
            .filter(|l| !l.starts_with("a=fingerprint"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        assert_eq!(read(&no_fp), Err(Refusal::NoFingerprint));
        let no_ice = CHROMIUM_OFFER.replace("a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n", "");
        assert_eq!(read(&no_ice), Err(Refusal::NoIce));
        let sha1 = CHROMIUM_OFFER.replace("sha-256 01:23", "sha-1 01:23");
        assert_eq!(read(&sha1), Err(Refusal::NoFingerprint));
    }

    #[test]
    fn sipds_sdp_becomes_an_ice_lite_dtls_answer_with_mediads_candidate() {
        let plain = "v=0\r\no=gosip 1 1 IN IP4 203.0.113.5\r\ns=GoSIP\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
                     m=audio 40000 RTP/AVP 0 126\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\n\
                     a=fmtp:126 0-15\r\na=sendrecv\r\n";
        let creds = IceCredentials::parse("gOsp", "0123456789abcdefghijklmn").unwrap();
        let fp = Fingerprint([0xAB; 32]);
        let local = Local {
            creds: &creds,
            fingerprint: &fp,
            setup: answer_setup(Setup::ActPass),
            mid: "0",
            bundle: true,
        };
        let s = write(plain, &local).unwrap();
        for want in [
            "a=ice-lite\r\n",
            "a=group:BUNDLE 0\r\n",
            "m=audio 40000 UDP/TLS/RTP/SAVPF 0 126\r\nc=IN IP4 203.0.113.5\r\na=mid:0\r\n",
            "a=rtpmap:126 telephone-event/8000\r\n",
            "a=sendrecv\r\n",
            "a=rtcp-mux\r\n",
            "a=ice-ufrag:gOsp\r\n",
            "a=ice-pwd:0123456789abcdefghijklmn\r\n",
            "a=fingerprint:sha-256 AB:AB:",
            "a=setup:passive\r\n",
            "a=candidate:1 1 udp 2130706431 203.0.113.5 40000 typ host\r\n",
            "a=end-of-candidates\r\n",
        ] {
            assert!(s.contains(want), "{want:?} missing from\n{s}");
        }
        // Read back as a browser would: the same credentials and hash.
        let back = read(&s).unwrap();
        assert_eq!(back.creds, creds);
        assert_eq!(back.fingerprint, fp);
        assert_eq!(back.setup, Setup::Passive);
        assert_eq!(answer_setup(Setup::Passive), "active");
    }
}
