//! SDES-SRTP per hop (RFC 4568). mediad terminates SRTP on each leg, so
//! every SIP dialog sipd has with a phone (or the trunk) negotiates its own
//! keys: the phone's `a=crypto` is the key mediad decrypts the phone's
//! media with, and sipd's own `a=crypto` in the SDP it sends that phone is
//! the key mediad encrypts with. The SDP the B2BUA builds is plain (see
//! [`super::sdp::rewrite`]); [`Hop::seal`] adds this hop's profile and key
//! to it on the way out, and [`Hop::their_offer`] / [`Hop::their_answer`]
//! read the phone's on the way in.
//!
//! Keys are only ever written into SDP that travels over TLS: a hop whose
//! signalling is not TLS stays plain RTP whatever it offers (and an offer
//! that insists on RTP/SAVP there is refused by the B2BUA with 488).
//!
//! Profiles: the device's SRTP policy decides what sipd offers. `Required`
//! offers RTP/SAVP (a phone that cannot do SRTP refuses it); `Optional`
//! offers RTP/AVP with an `a=crypto` line, which SRTP-capable phones accept
//! with a key of their own and others ignore ("best effort" SRTP, as
//! baresip's `mediaenc=srtp` and most desk phones do); `Off` never offers a
//! key. An answer always keeps the profile of the offer it answers (RFC
//! 3264 section 6).

use proto::sdes::{Crypto, LegKeys, MasterKey, Suite, parse_crypto};

/// A device's SRTP policy (`devices.srtp`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    /// Calls must be SRTP, which needs SIP over TLS.
    Required,
    /// SRTP when the phone offers or accepts it over TLS, else RTP.
    #[default]
    Optional,
    /// Plain RTP only.
    Off,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "required" => Some(Policy::Required),
            "optional" => Some(Policy::Optional),
            "off" => Some(Policy::Off),
            _ => None,
        }
    }
}

/// What an SDP's first audio section says about SRTP.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Srtp {
    /// Its m-line's profile is RTP/SAVP (SRTP is mandatory).
    pub savp: bool,
    /// The `a=crypto` lines sipd can honour, in the SDP's order of
    /// preference.
    pub lines: Vec<Crypto>,
}

/// Reads the first audio section of `sdp`.
pub fn read(sdp: &str) -> Srtp {
    let mut out = Srtp::default();
    let mut in_audio = false;
    let mut seen_audio = false;
    for l in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = l.strip_prefix("m=") {
            let parts: Vec<&str> = m.split_whitespace().collect();
            in_audio = !seen_audio && parts.first() == Some(&"audio");
            if in_audio {
                seen_audio = true;
                out.savp = parts
                    .get(2)
                    .is_some_and(|p| p.eq_ignore_ascii_case("RTP/SAVP"));
            }
        } else if in_audio && let Some(v) = l.strip_prefix("a=crypto:") {
            out.lines.extend(parse_crypto(v));
        }
    }
    out
}

/// `sdp` with its first audio section set to `savp`'s profile and `line`
/// as its only `a=crypto` (none when `None`), written after the section's
/// other lines (RFC 4566 section 5: `c=` comes before any `a=`); other
/// sections as they are.
pub fn write(sdp: &str, savp: bool, line: Option<&Crypto>) -> String {
    let mut out = String::with_capacity(sdp.len() + 80);
    let mut in_audio = false;
    let mut seen_audio = false;
    let crypto = |out: &mut String| {
        if let Some(c) = line {
            out.push_str("a=crypto:");
            out.push_str(&c.to_attr());
            out.push_str("\r\n");
        }
    };
    for l in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if l.is_empty() {
            continue;
        }
        if let Some(m) = l.strip_prefix("m=") {
            if in_audio {
                crypto(&mut out);
            }
            let mut parts: Vec<&str> = m.split_whitespace().collect();
            in_audio = !seen_audio && parts.first() == Some(&"audio") && parts.len() >= 3;
            if in_audio {
                seen_audio = true;
                parts[2] = if savp { "RTP/SAVP" } else { "RTP/AVP" };
                out.push_str("m=");
                out.push_str(&parts.join(" "));
                out.push_str("\r\n");
                continue;
            }
        } else if in_audio && l.starts_with("a=crypto:") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    if in_audio {
        crypto(&mut out);
    }
    out
}

/// The SDES state of one SIP dialog with one phone (see the module doc).
#[derive(Debug)]
pub struct Hop {
    /// The dialog's signalling runs over TLS.
    secure: bool,
    policy: Policy,
    /// sipd's key on this hop.
    ours: Option<Crypto>,
    /// How sipd answers the phone's last offer: its profile and key.
    answer: Option<(bool, Option<Crypto>)>,
    /// sipd's last offer carried this key (awaiting the phone's answer).
    offered: Option<(bool, Crypto)>,
    /// The profile of the keys in force.
    savp: bool,
    /// The keys mediad uses for this hop now.
    keys: Option<LegKeys>,
    /// CSeq numbers of the phone's last offer and of sipd's last offer in
    /// a request: they tell an answer from an offer in a response.
    their_offer_cseq: Option<u32>,
    our_offer_cseq: Option<u32>,
    /// The last bodies sealed, so a retransmission carries the same SDP.
    sealed: Vec<(bool, String, String)>,
}

/// Sealed bodies remembered per hop: an offer and an answer in flight.
const SEALED_KEPT: usize = 4;

impl Hop {
    pub fn new(secure: bool, policy: Policy) -> Self {
        Hop {
            secure,
            policy,
            ours: None,
            answer: None,
            offered: None,
            savp: false,
            keys: None,
            their_offer_cseq: None,
            our_offer_cseq: None,
            sealed: Vec::new(),
        }
    }

    /// Whether keys may be written into this hop's SDP at all.
    fn may_key(&self) -> bool {
        self.secure && self.policy != Policy::Off
    }

    /// The keys mediad uses for this hop (`None`: plain RTP).
    pub fn keys(&self) -> Option<&LegKeys> {
        self.keys.as_ref()
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Why sipd cannot answer `offer` on this hop (the Warning of a 488),
    /// `None` when it can.
    pub fn refuse(&self, offer: &Srtp) -> Option<&'static str> {
        if offer.savp && !self.secure {
            return Some("SRTP keys are only sent over SIP over TLS (sips, port 5061)");
        }
        if offer.savp && self.policy == Policy::Off {
            return Some("SRTP is switched off for this phone");
        }
        if offer.savp && offer.lines.is_empty() {
            return Some("no supported SRTP crypto suite (AES_CM_128_HMAC_SHA1_80 or _32)");
        }
        if self.policy == Policy::Required && (!self.secure || offer.lines.is_empty()) {
            return Some("this phone must use SRTP over SIP over TLS");
        }
        None
    }

    /// The phone offered `sdp` in the request or response with CSeq
    /// `cseq`: sipd's answer is decided now, and the keys it puts in
    /// force are returned when they change. `fresh` supplies a key.
    pub fn their_offer(
        &mut self,
        sdp: &str,
        cseq: u32,
        fresh: impl FnOnce() -> MasterKey,
    ) -> Option<Option<LegKeys>> {
        let offer = read(sdp);
        self.their_offer_cseq = Some(cseq);
        // A new offer gets a new answer, even if sipd's plain SDP is the
        // same as before.
        self.sealed.clear();
        let pick = offer.lines.first().filter(|_| self.may_key()).cloned();
        let Some(theirs) = pick else {
            self.answer = Some((offer.savp, None));
            return self.set_keys(offer.savp, None);
        };
        let ours = match &self.ours {
            Some(o) if o.tag == theirs.tag && o.suite == theirs.suite => o.clone(),
            Some(o) if o.suite == theirs.suite => Crypto {
                tag: theirs.tag,
                ..o.clone()
            },
            _ => Crypto {
                tag: theirs.tag,
                suite: theirs.suite,
                key: fresh(),
            },
        };
        self.ours = Some(ours.clone());
        self.answer = Some((offer.savp, Some(ours.clone())));
        let keys = LegKeys {
            suite: theirs.suite,
            send: ours.key,
            recv: theirs.key,
        };
        self.set_keys(offer.savp, Some(keys))
    }

    /// The phone answered sipd's offer with `sdp`.
    pub fn their_answer(&mut self, sdp: &str) -> Option<Option<LegKeys>> {
        let answer = read(sdp);
        let Some((_, ours)) = self.offered.clone() else {
            return self.set_keys(false, None);
        };
        let theirs = answer
            .lines
            .into_iter()
            .find(|c| c.tag == ours.tag && c.suite == ours.suite);
        let keys = theirs.map(|t| LegKeys {
            suite: ours.suite,
            send: ours.key.clone(),
            recv: t.key,
        });
        self.set_keys(answer.savp, keys)
    }

    fn set_keys(&mut self, savp: bool, keys: Option<LegKeys>) -> Option<Option<LegKeys>> {
        self.savp = savp && keys.is_some();
        if self.keys == keys {
            return None;
        }
        self.keys = keys.clone();
        Some(keys)
    }

    /// Whether a response with CSeq `cseq` carrying SDP answers the
    /// phone's offer (else it is sipd's offer, as in a 2xx to an INVITE
    /// without SDP).
    pub fn answers_them(&self, cseq: u32) -> bool {
        self.their_offer_cseq == Some(cseq)
    }

    /// Whether a response with CSeq `cseq` from the phone answers sipd's
    /// offer.
    pub fn answers_us(&self, cseq: u32) -> bool {
        self.our_offer_cseq == Some(cseq)
    }

    /// sipd's plain SDP `body` with this hop's profile and key: as the
    /// answer to the phone's last offer (`answer`), or as a new offer in
    /// the request with CSeq `cseq` (`None` in a response).
    pub fn seal(
        &mut self,
        body: &str,
        answer: bool,
        cseq: Option<u32>,
        fresh: impl FnOnce() -> MasterKey,
    ) -> String {
        if !answer {
            self.our_offer_cseq = cseq.or(self.our_offer_cseq);
        }
        if let Some((_, _, sealed)) = self
            .sealed
            .iter()
            .find(|(a, plain, _)| *a == answer && plain == body)
        {
            return sealed.clone();
        }
        let sealed = if answer {
            match &self.answer {
                Some((savp, line)) => write(body, *savp, line.as_ref()),
                None => write(body, false, None),
            }
        } else if self.may_key() {
            let ours = self
                .ours
                .get_or_insert_with(|| Crypto {
                    tag: 1,
                    suite: Suite::AesCm128HmacSha1_80,
                    key: fresh(),
                })
                .clone();
            let savp = self.policy == Policy::Required || self.savp;
            self.offered = Some((savp, ours.clone()));
            write(body, savp, Some(&ours))
        } else {
            self.offered = None;
            write(body, false, None)
        };
        if self.sealed.len() >= SEALED_KEPT {
            self.sealed.remove(0);
        }
        self.sealed.push((answer, body.to_string(), sealed.clone()));
        sealed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    const KEY_B: &str = "4fl6aMKDvNSvtuD+rKqhrCNwo4kl6P2EfUvbCM2T";

    fn sdp(profile: &str, crypto: &[String]) -> String {
        let mut s = format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 4000 {profile} 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        );
        for c in crypto {
            s.push_str(&format!("a=crypto:{c}\r\n"));
        }
        s.push_str(
            "a=sendrecv\r\nm=video 5000 RTP/AVP 96\r\na=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:",
        );
        s.push_str(KEY_B);
        s.push_str("\r\n");
        s
    }

    fn key(n: u8) -> MasterKey {
        MasterKey::from_bytes(&[n; 30]).unwrap()
    }

    #[test]
    fn reading_takes_the_first_audio_section_and_usable_lines_only() {
        let s = sdp(
            "RTP/SAVP",
            &[
                format!("1 AES_256_CM_HMAC_SHA1_80 inline:{KEY_A}"),
                format!("2 AES_CM_128_HMAC_SHA1_32 inline:{KEY_A}"),
            ],
        );
        let r = read(&s);
        assert!(r.savp);
        assert_eq!(r.lines.len(), 1);
        assert_eq!(
            (r.lines[0].tag, r.lines[0].suite),
            (2, Suite::AesCm128HmacSha1_32)
        );
        assert_eq!(read(&sdp("RTP/AVP", &[])), Srtp::default());
    }

    #[test]
    fn writing_replaces_the_audio_profile_and_keys_and_leaves_video() {
        let s = sdp(
            "RTP/AVP",
            &[format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}")],
        );
        let c = Crypto {
            tag: 1,
            suite: Suite::AesCm128HmacSha1_80,
            key: key(7),
        };
        let w = write(&s, true, Some(&c));
        assert!(w.contains("m=audio 4000 RTP/SAVP 0 101\r\n"));
        let audio = &w[w.find("m=audio").unwrap()..w.find("m=video").unwrap()];
        assert!(
            audio.ends_with(&format!("a=sendrecv\r\na=crypto:{}\r\n", c.to_attr())),
            "the key comes after the section's other lines: {audio}"
        );
        assert_eq!(read(&w).lines, vec![c]);
        assert!(!w.contains(KEY_A));
        assert!(w.contains(KEY_B), "the video section is not ours to touch");
        let plain = write(&w, false, None);
        assert!(plain.contains("m=audio 4000 RTP/AVP 0 101\r\n"));
        assert!(read(&plain).lines.is_empty());
    }

    #[test]
    fn an_offer_over_tls_is_answered_with_our_key_under_its_tag_and_profile() {
        let mut hop = Hop::new(true, Policy::Optional);
        let offer = sdp(
            "RTP/SAVP",
            &[format!("3 AES_CM_128_HMAC_SHA1_32 inline:{KEY_A}")],
        );
        assert_eq!(hop.refuse(&read(&offer)), None);
        let keys = hop.their_offer(&offer, 1, || key(9)).unwrap().unwrap();
        assert_eq!(keys.send, key(9));
        assert_eq!(keys.suite, Suite::AesCm128HmacSha1_32);
        assert_eq!(Some(&keys.recv), read(&offer).lines.first().map(|c| &c.key));
        assert!(hop.answers_them(1));
        let answer = hop.seal(&sdp("RTP/AVP", &[]), true, None, || key(1));
        let r = read(&answer);
        assert!(r.savp);
        assert_eq!((r.lines[0].tag, &r.lines[0].key), (3, &key(9)));
        // A re-INVITE with the same key keeps ours, and changes nothing.
        assert_eq!(hop.their_offer(&offer, 2, || key(2)), None);
        // A retransmission carries the same SDP.
        assert_eq!(
            hop.seal(&sdp("RTP/AVP", &[]), true, None, || key(3)),
            answer
        );
        // A new offer in another suite is answered in it, though sipd's
        // plain answer is the same text.
        let other = sdp(
            "RTP/SAVP",
            &[format!("3 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}")],
        );
        assert!(hop.their_offer(&other, 3, || key(5)).is_some());
        let again = hop.seal(&sdp("RTP/AVP", &[]), true, None, || key(6));
        assert_eq!(read(&again).lines[0].suite, Suite::AesCm128HmacSha1_80);
        assert_eq!(read(&again).lines[0].key, key(5));
    }

    #[test]
    fn no_key_is_written_for_a_plain_transport_or_a_phone_with_srtp_off() {
        for (secure, policy) in [(false, Policy::Optional), (true, Policy::Off)] {
            let mut hop = Hop::new(secure, policy);
            let offer = sdp(
                "RTP/AVP",
                &[format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}")],
            );
            assert_eq!(hop.their_offer(&offer, 1, || key(1)), None);
            let answer = hop.seal(&sdp("RTP/AVP", &[]), true, None, || key(1));
            assert!(read(&answer).lines.is_empty());
            let ours = hop.seal("v=0\r\nm=audio 1 RTP/AVP 0\r\n", false, Some(2), || key(1));
            assert_eq!(read(&ours), Srtp::default());
            assert!(hop.keys().is_none());
        }
    }

    #[test]
    fn refusals_say_why() {
        let savp = read(&sdp(
            "RTP/SAVP",
            &[format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}")],
        ));
        let plain = read(&sdp("RTP/AVP", &[]));
        assert!(
            Hop::new(false, Policy::Optional)
                .refuse(&savp)
                .unwrap()
                .contains("TLS")
        );
        assert!(Hop::new(true, Policy::Off).refuse(&savp).is_some());
        assert!(Hop::new(true, Policy::Required).refuse(&plain).is_some());
        assert_eq!(Hop::new(true, Policy::Required).refuse(&savp), None);
        assert_eq!(Hop::new(false, Policy::Optional).refuse(&plain), None);
        let unknown = read(&sdp(
            "RTP/SAVP",
            &[format!("1 F8_128_HMAC_SHA1_80 inline:{KEY_A}")],
        ));
        assert!(Hop::new(true, Policy::Optional).refuse(&unknown).is_some());
    }

    #[test]
    fn our_offer_takes_the_policys_profile_and_the_answer_with_our_tag_sets_the_keys() {
        let mut hop = Hop::new(true, Policy::Required);
        let offer = hop.seal("v=0\r\nm=audio 1 RTP/AVP 0\r\n", false, Some(1), || key(4));
        let r = read(&offer);
        assert!(r.savp);
        assert_eq!(r.lines[0].key, key(4));
        assert!(hop.answers_us(1));
        let answer = sdp(
            "RTP/SAVP",
            &[format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}")],
        );
        let keys = hop.their_answer(&answer).unwrap().unwrap();
        assert_eq!(
            (keys.send, Some(keys.recv)),
            (key(4), read(&answer).lines.first().map(|c| c.key.clone()))
        );
        // An optional phone gets RTP/AVP with a key; a plain answer means RTP.
        let mut hop = Hop::new(true, Policy::Optional);
        let offer = hop.seal("v=0\r\nm=audio 1 RTP/AVP 0\r\n", false, Some(1), || key(4));
        assert!(!read(&offer).savp && read(&offer).lines.len() == 1);
        assert_eq!(hop.their_answer(&sdp("RTP/AVP", &[])), None);
        assert!(hop.keys().is_none());
    }
}
