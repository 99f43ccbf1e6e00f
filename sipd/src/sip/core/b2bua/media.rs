//! mediad's part of a call: ports handed back by the shell, SDP negotiated on
//! each leg, recording and DTMF.

use super::*;

impl Core {
    /// mediad's answer to [`Event::MediaAllocate`]: the relay ports for the
    /// A-leg and the B-leg, or `None` when mediad could not give any.
    pub fn media_ready(&mut self, now: u64, call_id: &str, ports: Option<(u16, u16)>) {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            if ports.is_some() {
                self.events.push_back(Event::MediaRelease {
                    call_id: call_id.to_string(),
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
                leg: "a",
                hold: Some(m.hold),
                media: Some(m),
                established: None,
            });
        }
        let port = if call.originate { pa } else { pb };
        let offer_b = if call.late_offer {
            Some(String::new())
        } else {
            sdp::rewrite(&call.offer, &media_ip, port, false)
        };
        let Some(offer_b) = offer_b else {
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
        let term = self.cfg.termination.clone();
        let targets: Vec<(Peer, String, i64)> = match (&call.outbound, &term) {
            (Some(n), Some(t)) if !call.originate => vec![(
                Peer::udp(t.addr).with_local(t.local),
                format!("sip:{n}@{}", t.host),
                TRUNK_ID,
            )],
            _ => call
                .callees
                .iter()
                .flat_map(|id| self.registrar.bindings_of(*id))
                .map(|b| (b.target(), b.contact.clone(), b.device_id))
                .collect(),
        };
        let offer_src = call.offer.clone();
        let mut branches = Vec::new();
        for (peer, contact, device_id) in targets {
            let branch = format!("z9hG4bK{}", self.next_id());
            let b_call_id = format!("{}@gosip", self.next_id());
            let from_tag = self.next_id();
            let local = self.addrs.via_host(&peer);
            let offer_b = if offer_b.is_empty() {
                String::new()
            } else {
                sdp::rewrite(&offer_src, &self.addrs.media_host(&peer), port, false)
                    .unwrap_or_else(|| offer_b.clone())
            };
            branches.push((
                peer, contact, branch, b_call_id, from_tag, device_id, local, offer_b,
            ));
        }
        let realm = self.cfg.realm.clone();
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        for (i, (peer, contact, branch, b_call_id, from_tag, device_id, local, offer_b)) in
            branches.into_iter().enumerate()
        {
            let display = if call.from_display.is_empty() {
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
            let (to_host, pai) = match (&call.outbound, &term) {
                (Some(_), Some(t)) if device_id == TRUNK_ID => (
                    t.host.clone(),
                    format!("P-Asserted-Identity: <sip:{}@{realm}>\r\n", call.from_user),
                ),
                _ => (realm.clone(), String::new()),
            };
            let invite = format!(
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
                from = call.from_user,
                to = call.to_user,
                allow = msg::ALLOW,
            )
            .into_bytes();
            self.out.push_back(Transmit {
                peer,
                data: invite.clone(),
            });
            self.calls
                .by_branch
                .insert(branch.clone(), (call_id.to_string(), i));
            self.calls
                .by_b_call_id
                .insert(b_call_id.clone(), call_id.to_string());
            call.branches.push(Branch {
                peer,
                device_id,
                cseq: 1,
                contact: contact.clone(),
                call_id: b_call_id,
                branch,
                from_tag,
                to_tag: String::new(),
                remote_target: contact,
                invite,
                state: BranchState::Calling,
                status: 0,
                next_resend: (!peer.transport.reliable()).then_some(now + T1),
                interval: T1,
                timer_b: now + 64 * T1,
                local_cseq: 1,
                route: Vec::new(),
                ack: None,
                reason: String::new(),
                no_response: false,
            });
        }
    }

    /// Tells mediad both legs' media after an offer/answer exchange; the
    /// hold state is the call's (either side not sendrecv).
    pub(super) fn media_negotiated(
        &mut self,
        call_id: &str,
        offerer: Side,
        offer: &str,
        answer: &str,
    ) {
        let hold = sdp::on_hold(offer, answer);
        for (side, s) in [(offerer, offer), (offerer.other(), answer)] {
            let from = self.signal_ip(call_id, side);
            if let Some(m) = sdp::leg_media(s).map(|m| sdp::LegMedia {
                signal_ip: from,
                ..m
            }) {
                self.events.push_back(Event::MediaUpdate {
                    call_id: call_id.to_string(),
                    leg: side.leg(),
                    hold: Some(hold),
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
        if side == Side::A && !call.originate {
            return Some(call.a_peer.addr.ip());
        }
        call.branches
            .iter()
            .find(|b| {
                b.state == BranchState::Won
                    && (!call.originate || (b.device_id == TRUNK_ID) == (side == Side::B))
            })
            .map(|b| b.peer.addr.ip())
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
    pub fn dtmf(&mut self, call_id: &str, leg: &str, digit: &str) {
        let seq = self.cfg.record_dtmf.clone();
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        if seq.is_empty() || call.answered_at.is_none() {
            return;
        }
        let buf = &mut call.dtmf[usize::from(leg == "b")];
        buf.push_str(digit);
        if buf.len() > seq.len() {
            let cut = buf.len() - seq.len();
            buf.drain(..cut);
        }
        if *buf == seq {
            buf.clear();
            let enabled = !call.recording;
            tracing::info!(call_id = %call_id, leg, enabled, "recording toggled by DTMF");
            self.set_recording(call_id, enabled);
        }
    }
}
