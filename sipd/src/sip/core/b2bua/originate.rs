//! Click-to-call: the device rings first as a UAC, then the trunk is dialled.

use super::*;

impl Core {
    /// Click-to-call (gRPC Originate): rings `device_id`'s contacts; when
    /// the device answers, dials `to_number` through the trunk and bridges
    /// the two. Returns the call id, or a SIP-like status and reason.
    pub fn originate(
        &mut self,
        now: u64,
        call_id: &str,
        device_id: i64,
        to_number: &str,
    ) -> Result<String, (u16, String)> {
        let Some(device) = self.devices.values().find(|d| d.id == device_id).cloned() else {
            return Err((404, "no such device".into()));
        };
        if self.registrar.bindings_of(device_id).is_empty() {
            return Err((480, "the device is not registered".into()));
        }
        // The request came over loopback gRPC (webd's click-to-call).
        let number = self
            .place_outbound(
                now,
                to_number,
                &device,
                std::net::Ipv4Addr::LOCALHOST.into(),
            )
            .map_err(|r| {
                (
                    r.code,
                    r.extra
                        .first()
                        .map_or_else(|| r.reason.to_string(), |(_, w)| w.clone()),
                )
            })?;
        let call_id = if call_id.is_empty() {
            format!("c2c-{}@gosip", self.next_id())
        } else {
            call_id.to_string()
        };
        if self.calls.calls.contains_key(&call_id) {
            return Err((409, "call id in use".into()));
        }
        let did = device.caller_id.clone().unwrap_or_default();
        let synthetic = format!(
            "INVITE sip:{number}@{realm} SIP/2.0\r\nFrom: <sip:{did}@{realm}>\r\nTo: <sip:{number}@{realm}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            realm = self.cfg.realm
        );
        let Some(a_req) = Raw::split(synthetic.as_bytes()) else {
            return Err((500, "cannot build the call".into()));
        };
        let a_tag = self.next_id();
        let call = Call {
            id: call_id.clone(),
            state: State::Media,
            a_peer: Peer::udp(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            a_req,
            a_key: String::new(),
            a_tag,
            a_target: String::new(),
            a_cseq: 0,
            a_ok: None,
            a_ok_next: 0,
            a_ok_interval: T1,
            a_ok_deadline: 0,
            offer: String::new(),
            from_user: did.clone(),
            from_display: format!("Call {number}"),
            to_user: number.clone(),
            device_id,
            callees: vec![device_id],
            branches: Vec::new(),
            ports: None,
            a_sdp: String::new(),
            started_at: now,
            answered_at: None,
            ring_deadline: now + self.cfg.ring_timeout_ms,
            ringing_sent: true,
            caller_records: device.recording,
            recording: false,
            dtmf: [String::new(), String::new()],
            outbound: Some(number.clone()),
            originate: true,
            direction: "outbound",
            late_offer: false,
            b_offer: String::new(),
            early_sent: false,
            a_route: Vec::new(),
        };
        tracing::info!(call_id = %call_id, device_id, to = %number, "click-to-call started");
        self.events.push_back(Event::Cdr(Cdr::Start {
            call_id: call_id.clone(),
            direction: "outbound",
            from: did,
            to: number,
            device_id,
            started_at: now,
            call_sid: None,
        }));
        self.events.push_back(Event::MediaAllocate {
            call_id: call_id.clone(),
        });
        self.calls.calls.insert(call_id.clone(), call);
        Ok(call_id)
    }

    /// A 2xx on a click-to-call branch: the device answered (dial the
    /// trunk) or the trunk answered (the call is up).
    pub(super) fn originate_answered(
        &mut self,
        now: u64,
        call_id: &str,
        i: usize,
        body: &str,
    ) -> bool {
        let term = self.cfg.termination.clone();
        let trunk_peer = term.as_ref().map(|t| Peer::udp(t.addr).with_local(t.local));
        let local = trunk_peer
            .map(|p| self.addrs.via_host(&p))
            .unwrap_or_default();
        let realm = self.cfg.realm.clone();
        let media_ip = trunk_peer
            .map(|p| self.addrs.media_host(&p))
            .unwrap_or_default();
        let branch = format!("z9hG4bK{}", self.next_id());
        let b_call_id = format!("{}@gosip", self.next_id());
        let from_tag = self.next_id();
        let trunk_side = self
            .calls
            .calls
            .get(call_id)
            .is_some_and(|c| c.branches[i].device_id == TRUNK_ID);
        if !trunk_side {
            // The device answered on one contact: stop ringing the others.
            self.cancel_branches(call_id, Some(i));
        }
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return true;
        };
        call.branches[i].state = BranchState::Won;
        let from = call.branches[i].peer.addr.ip();
        let media = sdp::leg_media(body).map(|m| m.signalled_from(from));
        if trunk_side {
            call.state = State::Up;
            call.answered_at = Some(now);
            tracing::info!(call_id = %call_id, "click-to-call answered");
            self.events.push_back(Event::MediaUpdate {
                call_id: call_id.to_string(),
                leg: "b",
                hold: media.as_ref().map(|m| m.hold),
                media,
                established: Some(true),
            });
            self.events.push_back(Event::Cdr(Cdr::Answered {
                call_id: call_id.to_string(),
                at: now,
                device_id: None,
            }));
            if call.caller_records {
                call.recording = true;
                self.events.push_back(Event::MediaRecord {
                    call_id: call_id.to_string(),
                    enabled: true,
                });
            }
            return true;
        }
        self.events.push_back(Event::MediaUpdate {
            call_id: call_id.to_string(),
            leg: "a",
            hold: media.as_ref().map(|m| m.hold),
            media,
            established: Some(true),
        });
        let (Some(t), Some(n), Some((_, pb))) = (term, call.outbound.clone(), call.ports) else {
            return true;
        };
        let offer = sdp::rewrite(body, &media_ip, pb, false)
            .or_else(|| sdp::rewrite(&call.offer, &media_ip, pb, false))
            .unwrap_or_default();
        let peer = Peer::udp(t.addr).with_local(t.local);
        let contact = format!("sip:{n}@{}", t.host);
        let invite = format!(
            "INVITE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{from}@{realm}>;tag={from_tag}\r\nTo: <sip:{n}@{host}>\r\n\
             P-Asserted-Identity: <sip:{from}@{realm}>\r\nCall-ID: {b_call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:gosip@{local};transport=udp>\r\nAllow: {allow}\r\nUser-Agent: GoSIP\r\n\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{offer}",
            from = call.from_user,
            host = t.host,
            allow = msg::ALLOW,
            len = offer.len(),
        )
        .into_bytes();
        self.out.push_back(Transmit {
            peer,
            data: invite.clone(),
        });
        let idx = call.branches.len();
        call.branches.push(Branch {
            peer,
            device_id: TRUNK_ID,
            cseq: 1,
            contact: contact.clone(),
            call_id: b_call_id.clone(),
            branch: branch.clone(),
            from_tag,
            to_tag: String::new(),
            remote_target: contact,
            invite,
            state: BranchState::Calling,
            status: 0,
            next_resend: Some(now + T1),
            interval: T1,
            timer_b: now + 64 * T1,
            local_cseq: 1,
            route: Vec::new(),
            ack: None,
            reason: String::new(),
            no_response: false,
        });
        // The number gets its own ring time.
        call.ring_deadline = now + self.cfg.ring_timeout_ms;
        self.calls
            .by_branch
            .insert(branch, (call_id.to_string(), idx));
        self.calls
            .by_b_call_id
            .insert(b_call_id, call_id.to_string());
        true
    }
}
