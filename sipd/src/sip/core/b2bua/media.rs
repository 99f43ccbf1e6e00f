//! mediad's part of a call: ports handed back by the shell, SDP negotiated on
//! each leg, recording and DTMF.

use super::*;
use crate::sip::core::Leg;
use proto::types::DeviceId;

/// A B-leg branch to ring: its INVITE's addressing, the Via host towards
/// its peer and the offer it carries (empty for a late offer).
pub(super) struct Ring {
    pub(super) branch: NewBranch,
    pub(super) local: String,
    pub(super) offer: String,
}

impl Core {
    /// mediad's answer to [`Event::MediaAllocate`]: the relay ports for the
    /// A-leg and the B-leg, or `None` when mediad could not give any.
    pub fn media_ready(&mut self, now: u64, call_id: &str, ports: Option<(u16, u16)>) {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            if ports.is_some() {
                self.events.push_back(Event::MediaRelease {
                    call_id: call_id.to_string(),
                    voicemail: None,
                });
            }
            return;
        };
        if call.state != State::Media {
            return;
        }
        let Some((pa, pb)) = ports else {
            self.fail_a(
                now,
                call_id,
                503,
                "Service Unavailable",
                "failed",
                "no media ports",
            );
            return;
        };
        call.ports = Some((pa, pb));
        call.state = State::Ringing;
        let Some(offer_b) = self.b_leg_offer(call_id, pa, pb) else {
            self.fail_a(
                now,
                call_id,
                488,
                "Not Acceptable Here",
                "failed",
                "no shared codec",
            );
            return;
        };
        self.hop_keys_to_mediad(call_id, Side::A);
        if self
            .calls
            .calls
            .get(call_id)
            .is_some_and(|c| c.listen.is_some())
        {
            self.answer_locally(now, call_id);
            return;
        }
        let rings = self.plan_rings(call_id, &offer_b);
        let all_busy = self.calls.calls.get(call_id).is_some_and(|c| {
            !c.callees.is_empty() && c.callees.iter().all(|id| self.busy(*id, call_id))
        });
        if rings.is_empty() && all_busy {
            // Every callee is in a call and wants no call waiting.
            if !self.send_to_voicemail(now, call_id, "busy") {
                self.fail_a(now, call_id, 486, "Busy Here", "busy", "busy in a call");
            }
            return;
        }
        if rings.is_empty() {
            // Admitted with no phone registered: voicemail, else 480.
            if !self.send_to_voicemail(now, call_id, "not registered") {
                self.fail_a(
                    now,
                    call_id,
                    480,
                    "Temporarily Unavailable",
                    "missed",
                    "not registered",
                );
            }
            return;
        }
        for ring in rings {
            let Some(invite) = self
                .calls
                .calls
                .get(call_id)
                .map(|call| self.ring_invite(call, &ring))
            else {
                return;
            };
            self.start_branch(now, call_id, ring.branch, invite);
        }
    }

    /// The offer the B-legs get, as a template rewritten per branch:
    /// click-to-call's own offer to the device (on mediad's port a), else
    /// the caller's offer on mediad's port b, whose media mediad learns
    /// now. A late offer has none: an empty one. `None` when the caller's
    /// offer shares no codec.
    fn b_leg_offer(&mut self, call_id: &str, pa: u16, pb: u16) -> Option<String> {
        let call = self.calls.calls.get_mut(call_id)?;
        // A template for the offer; each branch gets the address its own
        // peer reaches (see `AddrBook::address_for`).
        let media_ip = self.addrs.media_host(&call.a_peer);
        if call.originate {
            // The device (leg a) gets mediad's own offer on port a.
            call.offer = format!(
                "v=0\r\no=gosip 1 1 IN IP4 {media_ip}\r\ns=GoSIP\r\nc=IN IP4 {media_ip}\r\nt=0 0\r\n\
                 m=audio {pa} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
                 a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
            );
        } else if let Some(m) =
            sdp::leg_media(&call.offer).map(|m| m.signalled_from(call.a_peer.addr.ip()))
        {
            self.events.push_back(Event::MediaUpdate {
                call_id: call_id.to_string(),
                leg: Leg::A,
                hold: Some(m.hold),
                music: None,
                media: Some(m),
                established: None,
            });
        }
        let port = if call.originate { pa } else { pb };
        if call.late_offer {
            Some(String::new())
        } else {
            sdp::rewrite(&call.offer, &media_ip, port, false)
        }
    }

    /// One branch per contact to ring: the trunk for an outbound call,
    /// else every registered contact of the callees (forking). Each gets
    /// fresh identifiers and the offer with the media address its own peer
    /// reaches; `offer_b` (empty for a late offer) is the fallback.
    fn plan_rings(&mut self, call_id: &str, offer_b: &str) -> Vec<Ring> {
        let Some(call) = self.calls.calls.get(call_id) else {
            return Vec::new();
        };
        let port = call
            .ports
            .map_or(0, |(pa, pb)| if call.originate { pa } else { pb });
        let targets: Vec<(Peer, String, DeviceId)> = match (&call.outbound, &self.cfg.termination) {
            (Some(n), Some(t)) if !call.originate => vec![(t.peer(), t.uri(n), TRUNK_ID)],
            _ => call
                .callees
                .iter()
                .filter(|id| !self.busy(**id, call_id))
                .flat_map(|id| self.registrar.bindings_of(*id))
                .map(|b| (b.target(), b.contact.clone(), b.device_id))
                // A phone that must use SRTP gets keys only over TLS.
                .filter(|(peer, _, id)| {
                    peer.transport == crate::sip::Transport::Tls
                        || self.srtp_policy(*id) != crate::sip::sdes::Policy::Required
                })
                .collect(),
        };
        let offer_src = call.offer.clone();
        let (from_user, to_user) = (call.from_user.clone(), call.to_user.clone());
        let mut rings = Vec::new();
        for (peer, contact, device_id) in targets {
            let ids = self.dialog_ids();
            let local = self.addrs.via_host(&peer);
            let offer = if offer_b.is_empty() {
                String::new()
            } else {
                sdp::rewrite(&offer_src, &self.addrs.media_host(&peer), port, false)
                    .unwrap_or_else(|| offer_b.to_string())
            };
            rings.push(Ring {
                branch: NewBranch {
                    peer,
                    device_id,
                    contact,
                    from_user: from_user.clone(),
                    to_user: to_user.clone(),
                    ids,
                },
                local,
                offer,
            });
        }
        rings
    }

    /// The SRTP policy of device `id`; the trunk's is "required" over TLS
    /// (a secure trunk wants both), else off.
    pub(super) fn srtp_policy(&self, id: DeviceId) -> crate::sip::sdes::Policy {
        if id == TRUNK_ID {
            let tls = self
                .cfg
                .termination
                .as_ref()
                .is_some_and(|t| t.transport == crate::sip::Transport::Tls);
            return if tls {
                crate::sip::sdes::Policy::Required
            } else {
                crate::sip::sdes::Policy::Off
            };
        }
        self.devices
            .values()
            .find(|d| d.id == id)
            .map(|d| d.srtp)
            .unwrap_or_default()
    }

    /// A device that is in another call than `call_id` (placing it, or
    /// having answered it) and does not want call waiting ("Busy when in a
    /// call").
    pub(super) fn busy(&self, device: DeviceId, call_id: &str) -> bool {
        let wants = self
            .devices
            .values()
            .any(|d| d.id == device && d.busy_in_call);
        wants
            && self.calls.calls.values().any(|c| {
                c.id != call_id
                    && ((c.direction != "inbound" && !c.originate && c.device_id == device)
                        || c.branches
                            .iter()
                            .any(|b| b.state == BranchState::Won && b.device_id == device))
            })
    }

    /// The INVITE of one B-leg branch: the caller's name and user in From,
    /// the dialed user in To; towards the trunk, its host in To and the
    /// caller's identity in P-Asserted-Identity.
    pub(super) fn ring_invite(&self, call: &Call, ring: &Ring) -> Vec<u8> {
        let realm = &self.cfg.realm;
        let NewBranch {
            peer,
            device_id,
            contact,
            from_user,
            to_user,
            ids:
                DialogIds {
                    branch,
                    call_id: b_call_id,
                    from_tag,
                },
        } = &ring.branch;
        let (local, offer_b) = (&ring.local, &ring.offer);
        // A target rung for the caller's side hears from the callee, whose
        // name sipd does not know.
        let by_caller = call.transfer.as_ref().is_some_and(|t| t.side == Side::A);
        let display = if call.from_display.is_empty() || by_caller {
            String::new()
        } else {
            format!("{} ", msg::quoted(&call.from_display))
        };
        let body = if offer_b.is_empty() {
            "Content-Length: 0\r\n\r\n".to_string()
        } else {
            format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer_b}",
                offer_b.len()
            )
        };
        let (to_host, pai) = match &self.cfg.termination {
            Some(t) if *device_id == TRUNK_ID => (
                t.host.clone(),
                format!("P-Asserted-Identity: <sip:{from_user}@{realm}>\r\n"),
            ),
            _ => (realm.clone(), String::new()),
        };
        format!(
            "INVITE {contact} SIP/2.0\r\n\
             Via: SIP/2.0/{tr} {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {display}<sip:{from}@{realm}>;tag={from_tag}\r\n\
             To: <sip:{to}@{to_host}>\r\n{pai}\
             Call-ID: {b_call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:gosip@{local};transport={trl}>\r\n\
             Allow: {allow}\r\n\
             User-Agent: GoSIP\r\n{body}",
            tr = peer.transport.as_str().to_ascii_uppercase(),
            trl = peer.transport.as_str(),
            from = from_user,
            to = to_user,
            allow = msg::ALLOW,
        )
        .into_bytes()
    }

    /// Tells mediad both legs' media after an offer/answer exchange; the
    /// hold state is the call's (either side not sendrecv), and a side the
    /// other holds hears the hold music.
    pub(super) fn media_negotiated(
        &mut self,
        call_id: &str,
        offerer: Side,
        offer: &str,
        answer: &str,
    ) {
        if let Some(call) = self.calls.calls.get_mut(call_id) {
            call.b_media = if offerer == Side::B { offer } else { answer }.to_string();
        }
        let hold = sdp::on_hold(offer, answer);
        let (offerer_holds, answerer_holds) = sdp::holders(offer, answer);
        for (side, s, music) in [
            (offerer, offer, answerer_holds),
            (offerer.other(), answer, offerer_holds),
        ] {
            let from = self.signal_ip(call_id, side);
            if let Some(m) = sdp::leg_media(s).map(|m| sdp::LegMedia {
                signal_ip: from,
                ..m
            }) {
                self.events.push_back(Event::MediaUpdate {
                    call_id: call_id.to_string(),
                    leg: side.leg(),
                    hold: Some(hold),
                    music: Some(music),
                    media: Some(m),
                    established: None,
                });
            }
        }
    }

    /// Where a leg's SIP comes from (the caller's INVITE, the answering
    /// contact; for click-to-call the device and the trunk): mediad lets
    /// the leg's media latch only from this IP or its SDP's.
    pub(super) fn signal_ip(&self, call_id: &str, side: Side) -> Option<std::net::IpAddr> {
        let call = self.calls.calls.get(call_id)?;
        if side == Side::A && !call.originate && call.a_branch.is_none() {
            return Some(call.a_peer.addr.ip());
        }
        dialog_branch(call, side).map(|i| call.branches[i].peer.addr.ip())
    }

    /// Starts or pauses a call's recording (gRPC SetRecording). `false`
    /// when no such call is in progress.
    pub fn set_recording(&mut self, call_id: &str, enabled: bool) -> bool {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return false;
        };
        call.recording = enabled;
        self.events.push_back(Event::MediaRecord {
            call_id: call_id.to_string(),
            enabled,
        });
        true
    }

    /// A DTMF digit mediad saw on `leg` ("a" or "b"): the configured
    /// sequence (`calls.record_dtmf`) toggles the recording of an
    /// answered call.
    pub fn dtmf(&mut self, call_id: &str, leg: Leg, digit: &str) {
        if let Some(key) = digit.chars().next()
            && self.listen_key(call_id, key)
        {
            return;
        }
        let seq = self.cfg.record_dtmf.clone();
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        if seq.is_empty() || call.answered_at.is_none() {
            return;
        }
        let buf = &mut call.dtmf[usize::from(leg == Leg::B)];
        buf.push_str(digit);
        if buf.len() > seq.len() {
            let cut = buf.len() - seq.len();
            buf.drain(..cut);
        }
        if *buf == seq {
            buf.clear();
            let enabled = !call.recording;
            tracing::info!(call_id = %call_id, leg = leg.as_str_name(), enabled, "recording toggled by DTMF");
            self.set_recording(call_id, enabled);
        }
    }
}
