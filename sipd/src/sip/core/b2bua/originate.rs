//! Click-to-call: the device rings first as a UAC, then the trunk is dialled.

use super::*;
use crate::sip::core::Leg;
use proto::types::DeviceId;

impl Core {
    /// Click-to-call (gRPC Originate): rings `device_id`'s contacts; when
    /// the device answers, dials `to_number` through the trunk and bridges
    /// the two. Returns the call id, or a SIP-like status and reason.
    pub fn originate(
        &mut self,
        now: u64,
        call_id: &str,
        device_id: DeviceId,
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
            .map_err(refusal)?;
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
        let a_peer = Peer::udp(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let ring_deadline = now + self.cfg.ring_timeout_ms;
        let call = Call {
            from_user: did,
            from_display: format!("Call {number}"),
            to_user: number.clone(),
            device_id,
            callees: vec![device_id],
            ringing_sent: true,
            caller_records: device.recording,
            outbound: Some(number.clone()),
            originate: true,
            direction: "outbound",
            ..Call::new(call_id.clone(), a_peer, a_req, a_tag, now, ring_deadline)
        };
        tracing::info!(call_id = %call_id, device_id = %device_id, to = %number, "click-to-call started");
        self.admit_call(call, None);
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
        // The trunk's dialog identifiers are drawn whichever side answered.
        let ids = self.dialog_ids();
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
            self.originate_up(now, call_id, media);
            return true;
        }
        self.events.push_back(Event::MediaUpdate {
            call_id: call_id.to_string(),
            leg: Leg::A,
            hold: media.as_ref().map(|m| m.hold),
            music: None,
            media,
            established: Some(true),
        });
        self.dial_trunk(now, call_id, body, ids);
        true
    }

    /// The trunk answered a click-to-call: the call is up, mediad learns
    /// the trunk's media and the CDR the answer; the call is recorded when
    /// the device records every call.
    fn originate_up(&mut self, now: u64, call_id: &str, media: Option<sdp::LegMedia>) {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        call.state = State::Up;
        call.answered_at = Some(now);
        tracing::info!(call_id = %call_id, "click-to-call answered");
        self.events.push_back(Event::MediaUpdate {
            call_id: call_id.to_string(),
            leg: Leg::B,
            hold: media.as_ref().map(|m| m.hold),
            music: None,
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
    }

    /// The device answered a click-to-call: the number is dialled through
    /// the trunk with an offer on mediad's port b (the device's SDP as the
    /// template, else the call's offer), and gets its own ring time.
    fn dial_trunk(&mut self, now: u64, call_id: &str, body: &str, ids: DialogIds) {
        let Some(t) = self.cfg.termination.clone() else {
            return;
        };
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        let (Some(n), Some((_, pb))) = (call.outbound.clone(), call.ports) else {
            return;
        };
        let peer = t.peer();
        let local = self.addrs.via_host(&peer);
        let media_ip = self.addrs.media_host(&peer);
        let offer = sdp::rewrite(body, &media_ip, pb, false)
            .or_else(|| sdp::rewrite(&call.offer, &media_ip, pb, false))
            .unwrap_or_default();
        let contact = t.uri(&n);
        let tr = peer.transport.as_str();
        let invite = format!(
            "INVITE {contact} SIP/2.0\r\nVia: SIP/2.0/{via_tr} {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{from}@{realm}>;tag={from_tag}\r\nTo: <sip:{n}@{host}>\r\n\
             P-Asserted-Identity: <sip:{from}@{realm}>\r\nCall-ID: {b_call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:gosip@{local};transport={tr}>\r\nAllow: {allow}\r\nUser-Agent: GoSIP\r\n\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{offer}",
            branch = ids.branch,
            via_tr = tr.to_ascii_uppercase(),
            from = call.from_user,
            realm = self.cfg.realm,
            from_tag = ids.from_tag,
            host = t.host,
            b_call_id = ids.call_id,
            allow = msg::ALLOW,
            len = offer.len(),
        )
        .into_bytes();
        let (from_user, to_user) = self
            .calls
            .calls
            .get(call_id)
            .map(|c| (c.from_user.clone(), c.to_user.clone()))
            .unwrap_or_default();
        let new = NewBranch {
            peer,
            device_id: TRUNK_ID,
            contact,
            from_user,
            to_user,
            ids,
        };
        self.start_branch(now, call_id, new, invite);
        if let Some(call) = self.calls.calls.get_mut(call_id) {
            // The number gets its own ring time.
            call.ring_deadline = now + self.cfg.ring_timeout_ms;
        }
    }
}

/// A refused outbound call as gRPC reports it: the status, and the
/// Warning's text when there is one, else the reason phrase.
fn refusal(r: Reply) -> (u16, String) {
    (
        r.code,
        r.extra
            .first()
            .map_or_else(|| r.reason.to_string(), |(_, w)| w.clone()),
    )
}
