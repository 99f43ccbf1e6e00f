//! SDES-SRTP on each SIP dialog of a call (see [`crate::sip::sdes`]): the
//! B2BUA builds plain SDP, and this is where each dialog's profile and key
//! go into the SDP sipd sends ([`Core::hop_out`]) and where the phone's key
//! is read from the SDP it sends ([`Core::hop_in`]). A change of a leg's
//! keys goes to mediad as [`Event::MediaCrypto`].
//!
//! A dialog's SDES state is made when sipd accepts the call (the caller's
//! INVITE once authenticated, each branch it rings) and is keyed by the
//! dialog's Call-ID, so a party that moves to another call (a transfer)
//! keeps its keys. Only messages from the dialog's own peer are read: over
//! TLS nobody else can send them.

use std::net::SocketAddr;

use proto::sdes::{LegKeys, MasterKey};
use rand::RngCore as _;
use rand::rngs::StdRng;

use super::*;
use crate::sip::sdes::{self, Hop, Policy};
use crate::sip::webrtc;
use proto::webrtc::{IceCredentials, OpusBridge, WebrtcLeg};

/// One dialog's SDES state and the address its messages come from.
#[derive(Debug)]
pub(super) struct DialogHop {
    from: SocketAddr,
    hop: Hop,
    /// A browser's dialog: ICE and DTLS instead of SDES.
    webrtc: Option<WebrtcHop>,
}

/// A browser's dialog: sipd's ICE credentials for it, what its SDP said,
/// and what mediad was last told.
#[derive(Debug)]
struct WebrtcHop {
    local: IceCredentials,
    remote: Option<webrtc::Remote>,
    told: Option<WebrtcLeg>,
    /// The CSeq of the browser's last offer (an INVITE or UPDATE with
    /// SDP): sipd's SDP in the answer to it is an answer.
    offer_cseq: Option<u32>,
}

impl WebrtcHop {
    /// What mediad needs for the leg, once the browser's SDP is known.
    fn leg(&self, opus: Option<OpusBridge>) -> Option<WebrtcLeg> {
        let r = self.remote.as_ref()?;
        Some(WebrtcLeg {
            local: self.local.clone(),
            remote: r.creds.clone(),
            remote_fingerprint: r.fingerprint,
            role: r.mediad_role(),
            opus,
        })
    }
}

/// A fresh master key from the core's CSPRNG.
fn fresh(ids: &mut StdRng) -> MasterKey {
    let (mut key, mut salt) = ([0u8; 16], [0u8; 14]);
    ids.fill_bytes(&mut key);
    ids.fill_bytes(&mut salt);
    MasterKey::new(key, salt)
}

impl Core {
    /// Starts the SDES state of the dialog `sip_call_id` with `peer`.
    pub(super) fn open_hop(&mut self, sip_call_id: &str, peer: &Peer, policy: Policy) {
        let secure = peer.transport == crate::sip::Transport::Tls;
        let browser = peer.transport == crate::sip::Transport::Ws;
        self.calls.hops.insert(
            sip_call_id.to_string(),
            DialogHop {
                from: peer.addr,
                hop: Hop::new(secure, if browser { Policy::Off } else { policy }),
                webrtc: browser.then(|| WebrtcHop {
                    local: IceCredentials::random(),
                    remote: None,
                    told: None,
                    offer_cseq: None,
                }),
            },
        );
    }

    /// Why the offer `sdp` from the dialog `sip_call_id` cannot be
    /// answered (the Warning text of a 488).
    pub(super) fn hop_refuses(&self, sip_call_id: &str, sdp: &str) -> Option<&'static str> {
        let h = self.calls.hops.get(sip_call_id)?;
        if h.webrtc.is_some() {
            return match webrtc::read(sdp) {
                Ok(_) => None,
                Err(webrtc::Refusal::NoIce) => Some("a browser's SDP needs ICE credentials"),
                Err(webrtc::Refusal::NoFingerprint) => {
                    Some("a browser's SDP needs a sha-256 DTLS fingerprint")
                }
            };
        }
        h.hop.refuse(&sdes::read(sdp))
    }

    /// Reads the SRTP of a message with SDP from `peer` in a dialog sipd
    /// keeps SDES state for.
    pub(in crate::sip::core) fn hop_in(&mut self, peer: &Peer, raw: &Raw) {
        let (Some(id), Some((cseq, method))) = (raw.get("call-id"), raw.cseq()) else {
            return;
        };
        let method = Method::parse(method);
        if !matches!(method, Some(Method::Invite | Method::Update | Method::Ack)) {
            return;
        }
        let Some(body) = sdp_of(raw) else {
            return;
        };
        let ids = &mut self.ids;
        let Some(h) = self.calls.hops.get_mut(id) else {
            return;
        };
        if h.from != peer.addr {
            return;
        }
        if let Some(w) = &mut h.webrtc {
            if raw.status().is_some_and(|s| !(100..300).contains(&s)) {
                return;
            }
            if raw.status().is_none() && method != Some(Method::Ack) {
                w.offer_cseq = Some(cseq);
            }
            match webrtc::read(&body) {
                Ok(r) => w.remote = Some(r),
                Err(why) => {
                    tracing::debug!(%why, "a browser's SDP without ICE or DTLS");
                    return;
                }
            }
            let id = id.to_string();
            self.webrtc_to_mediad(&id);
            return;
        }
        let changed = match raw.status() {
            Some(s) if !(100..300).contains(&s) || method == Some(Method::Ack) => return,
            Some(_) if h.hop.answers_us(cseq) => h.hop.their_answer(&body),
            _ if method == Some(Method::Ack) => h.hop.their_answer(&body),
            _ => h.hop.their_offer(&body, cseq, || fresh(ids)),
        };
        if let Some(keys) = changed {
            let id = id.to_string();
            self.hop_changed(&id, keys);
        }
    }

    /// Gives an SDP body sipd sends in a dialog with SDES state that
    /// dialog's profile and key.
    pub(in crate::sip::core) fn hop_out(&mut self, t: Transmit) -> Transmit {
        if self.calls.hops.is_empty() || crate::sip::msg::find_sdp(&t.data).is_none() {
            return t;
        }
        let Some(raw) = Raw::split(&t.data) else {
            return t;
        };
        let (Some(id), Some((cseq, method))) = (raw.get("call-id"), raw.cseq()) else {
            return t;
        };
        let Some(body) = sdp_of(&raw) else {
            return t;
        };
        let ids = &mut self.ids;
        let Some(h) = self.calls.hops.get_mut(id) else {
            return t;
        };
        let method = Method::parse(method);
        let (answer, offer_cseq) = match (raw.is_response(), method) {
            (false, Some(Method::Ack)) => (true, None),
            (false, Some(Method::Invite | Method::Update)) => (false, Some(cseq)),
            (true, Some(Method::Invite | Method::Update)) => (h.hop.answers_them(cseq), None),
            _ => return t,
        };
        if let Some(w) = &h.webrtc {
            // An answer: the ACK (to a late offer), or a response to the
            // browser's offer; a request of ours with SDP is an offer.
            let answer =
                method == Some(Method::Ack) || (raw.is_response() && w.offer_cseq == Some(cseq));
            // The browser's codecs: Opus where it speaks no G.711.
            let id = id.to_string();
            let codecs = self.calls.browser_codecs.entry(id.clone()).or_default();
            let before = codecs.bridge();
            let body = codecs.to_browser(&body, !answer).unwrap_or(body);
            let bridged = codecs.bridge() != before;
            let t = self.hop_out_webrtc(t, &id, &body, answer);
            if bridged {
                self.webrtc_to_mediad(&id);
            }
            return t;
        }
        let sealed = h.hop.seal(&body, answer, offer_cseq, || fresh(ids));
        match crate::sip::msg::with_body(&t.data, &sealed) {
            Some(data) => Transmit { peer: t.peer, data },
            None => t,
        }
    }

    /// sipd's SDP `body` to the browser's dialog `id` in the WebRTC shape
    /// ([`webrtc::write`]): sipd's ICE credentials, mediad's fingerprint.
    fn hop_out_webrtc(&self, t: Transmit, id: &str, body: &str, answer: bool) -> Transmit {
        let Some(w) = self.calls.hops.get(id).and_then(|h| h.webrtc.as_ref()) else {
            return t;
        };
        let Some(fingerprint) = &self.dtls_fingerprint else {
            tracing::warn!("mediad gave no DTLS fingerprint: a browser cannot take this SDP");
            return t;
        };
        let remote = w.remote.as_ref();
        let local = webrtc::Local {
            creds: &w.local,
            fingerprint,
            setup: match (answer, remote) {
                (true, Some(r)) => webrtc::answer_setup(r.setup),
                _ => "actpass",
            },
            mid: remote.and_then(|r| r.mid.as_deref()).unwrap_or("0"),
            bundle: !answer || remote.is_some_and(|r| r.bundle),
        };
        match webrtc::write(body, &local).and_then(|sdp| crate::sip::msg::with_body(&t.data, &sdp))
        {
            Some(data) => Transmit { peer: t.peer, data },
            None => t,
        }
    }

    /// The keys of the dialog `sip_call_id` changed: mediad hears of them
    /// for the leg that dialog is, once the call has its ports.
    fn hop_changed(&mut self, sip_call_id: &str, keys: Option<LegKeys>) {
        let Some((call_id, side)) = self.leg_of_dialog(sip_call_id) else {
            return;
        };
        self.calls
            .told_crypto
            .insert((call_id.clone(), side), sip_call_id.to_string());
        self.events.push_back(Event::MediaCrypto {
            call_id,
            leg: side.leg(),
            keys,
        });
    }

    /// Tells mediad a browser's ICE and DTLS parameters for the leg the
    /// dialog `sip_call_id` is, once the call has its ports and unless it
    /// was told the same already (a re-INVITE keeps the leg's state).
    fn webrtc_to_mediad(&mut self, sip_call_id: &str) {
        let Some((call_id, side)) = self.leg_of_dialog(sip_call_id) else {
            return;
        };
        let opus = self
            .calls
            .browser_codecs
            .get(sip_call_id)
            .and_then(|c| c.bridge());
        let Some(w) = self
            .calls
            .hops
            .get_mut(sip_call_id)
            .and_then(|h| h.webrtc.as_mut())
        else {
            return;
        };
        let Some(leg) = w.leg(opus) else {
            return;
        };
        if w.told.as_ref() == Some(&leg) {
            return;
        }
        w.told = Some(leg.clone());
        self.calls
            .told_crypto
            .insert((call_id.clone(), side), sip_call_id.to_string());
        self.events.push_back(Event::MediaWebrtc {
            call_id,
            leg: side.leg(),
            webrtc: leg,
        });
    }

    /// Tells mediad the keys in force on `side` of a call that just got
    /// its ports (the caller's offer was read before), or whose side a
    /// new party took over.
    pub(super) fn hop_keys_to_mediad(&mut self, call_id: &str, side: Side) {
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        let dialog = match dialog_branch(call, side) {
            Some(i) => call.branches[i].call_id.clone(),
            None if side == Side::A => call.id.clone(),
            None => return,
        };
        if self
            .calls
            .hops
            .get(&dialog)
            .is_some_and(|h| h.webrtc.is_some())
        {
            self.webrtc_to_mediad(&dialog);
            return;
        }
        let keys = self
            .calls
            .hops
            .get(&dialog)
            .and_then(|h| h.hop.keys().cloned());
        // A dialog that took the side over (a transfer) replaces what
        // mediad was told for it, a browser's DTLS or other keys, even by
        // plain RTP.
        let key = (call_id.to_string(), side);
        let took_over = self
            .calls
            .told_crypto
            .get(&key)
            .is_some_and(|d| *d != dialog);
        if keys.is_none() && !took_over {
            return;
        }
        self.calls.told_crypto.insert(key, dialog);
        self.events.push_back(Event::MediaCrypto {
            call_id: call_id.to_string(),
            leg: side.leg(),
            keys,
        });
    }

    /// The call and side the dialog `sip_call_id` is, when that call has
    /// its media ports.
    fn leg_of_dialog(&self, sip_call_id: &str) -> Option<(String, Side)> {
        if let Some(call) = self.calls.calls.get(sip_call_id)
            && call.a_branch.is_none()
            && !call.originate
        {
            return call.ports.map(|_| (call.id.clone(), Side::A));
        }
        self.calls.calls.values().find_map(|call| {
            let i = call
                .branches
                .iter()
                .position(|b| b.call_id == sip_call_id)?;
            call.ports?;
            let side = if dialog_branch(call, Side::A) == Some(i) {
                Side::A
            } else {
                Side::B
            };
            Some((call.id.clone(), side))
        })
    }

    /// Whether every leg `call` had (side A, and each phone that answered
    /// on side B; sipd itself when it answered) spoke SRTP, whose keys
    /// only ever travel over TLS.
    pub(super) fn encrypted(&self, call: &Call) -> bool {
        let keyed = |dialog: &String| {
            self.calls
                .hops
                .get(dialog)
                .is_some_and(|h| h.hop.keys().is_some())
        };
        if call.originate || (call.a_branch.is_none() && !keyed(&call.id)) {
            return false;
        }
        let answered: Vec<&Branch> = call
            .branches
            .iter()
            // A dialog (a To tag) that never failed: it was answered.
            .filter(|b| !b.to_tag.is_empty() && b.status == 0)
            .collect();
        let answered_by_sipd = call.voicemail.is_some() || call.listen.is_some();
        (answered_by_sipd || !answered.is_empty()) && answered.iter().all(|b| keyed(&b.call_id))
    }

    /// Forgets the SDES state of the dialogs of an ended call that no
    /// other call has taken over.
    pub(super) fn forget_hops(&mut self, ended: &Call) {
        self.calls
            .told_crypto
            .retain(|(call, _), _| call != &ended.id);
        let dialogs = std::iter::once(&ended.id).chain(ended.branches.iter().map(|b| &b.call_id));
        for id in dialogs {
            let taken = self
                .calls
                .calls
                .values()
                .any(|c| &c.id == id || c.branches.iter().any(|b| &b.call_id == id));
            if !taken {
                self.calls.hops.remove(id);
            }
        }
        // Also those of browser INVITEs that never became a call.
        let hops = &self.calls.hops;
        self.calls
            .browser_codecs
            .retain(|id, _| hops.contains_key(id));
    }
}
