//! The A-leg: a new call, its final failure, CANCEL and ACK from the caller, the
//! end of a call, its timers, and the calls as the gRPC side sees and ends them.

use super::*;
use crate::sip::core::Leg;
use proto::types::DeviceId;

impl Core {
    /// Starts a call for an authenticated INVITE. Returns the immediate
    /// answer: `100 Trying` when the call goes on, a final status otherwise.
    /// The caller's offer, if sipd can take it: a codec it relays and a
    /// media protocol its hop allows (the hop opens here). `(offer, late)`:
    /// no SDP is a late offer (RFC 3261 section 13.2.1), which the callee's
    /// 2xx will carry.
    fn admit_offer(
        &mut self,
        call_id: &str,
        peer: &Peer,
        caller: &Device,
        raw: &Raw,
    ) -> Result<(String, bool), Reply> {
        let offer = String::from_utf8_lossy(&raw.body).into_owned();
        let late_offer = offer.trim().is_empty();
        if !late_offer && sdp::rewrite(&offer, "0.0.0.0", 1, false).is_none() {
            return Err(Reply::new(488, "Not Acceptable Here")
                .with("Warning", "304 gosip \"no shared codec\""));
        }
        self.open_hop(call_id, peer, caller.srtp);
        if let Some(why) = self.hop_refuses(call_id, &offer) {
            self.calls.hops.remove(call_id);
            // 302: a transport protocol of the SDP (RTP/SAVP) is not
            // available (RFC 3261 section 20.43).
            return Err(Reply::new(488, "Not Acceptable Here")
                .with("Warning", format!("302 gosip \"{why}\"")));
        }
        self.hop_in(peer, raw);
        Ok((offer, late_offer))
    }

    pub(in crate::sip::core) fn start_call(
        &mut self,
        now: u64,
        peer: Peer,
        r: &msg::Request,
        key: &TsxKey,
        caller: &Device,
    ) -> Reply {
        let raw = &r.raw;
        let inbound = caller.id == TRUNK_ID;
        let Some(call_id) = raw.get("call-id").map(str::to_string) else {
            return Reply::new(400, "Missing Call-ID");
        };
        if self.calls.calls.contains_key(&call_id) {
            return Reply::new(482, "Loop Detected");
        }
        let dialed = user_of(raw.start().split(' ').nth(1).unwrap_or_default())
            .unwrap_or_default()
            .to_string();
        if let Some(feature) = self.feature_of(inbound, &dialed) {
            return self.join_feature(now, peer, r, key, caller, feature);
        }
        let listen = match self.listen_for(caller, inbound, &dialed) {
            Ok(listen) => listen,
            Err(reply) => return reply,
        };
        let callees = if listen.is_some() {
            Vec::new()
        } else {
            self.callees_of(raw, inbound, &dialed)
        };
        let outbound = match listen {
            Some(_) => None,
            None => match self.route_call(now, &peer, caller, inbound, &dialed, &callees) {
                Ok(outbound) => outbound,
                Err(reply) => return reply,
            },
        };
        let call_sid = ["x-gosip-callsid", "x-twilio-callsid"]
            .iter()
            .find_map(|h| raw.get(h))
            .map(str::to_string);
        let from_user = caller_user(raw, caller, inbound, outbound.as_ref());
        let (offer, late_offer) = match self.admit_offer(&call_id, &peer, caller, raw) {
            Ok(o) => o,
            Err(reply) => return reply,
        };
        let from_display = caller_display(raw, inbound, &from_user);
        let a_target = raw
            .get("contact")
            .map(|c| uri_of(c).to_string())
            .unwrap_or_default();
        let a_tag = self.next_id();
        let ring_deadline = now + self.cfg.ring_timeout_ms;
        let call = Call {
            a_key: key.clone(),
            a_target,
            offer,
            from_user,
            from_display,
            to_user: outbound.clone().unwrap_or_else(|| dialed.clone()),
            device_id: if inbound { callees[0] } else { caller.id },
            callees,
            caller_records: !inbound && caller.recording,
            outbound: outbound.clone(),
            direction: if inbound {
                "inbound"
            } else if outbound.is_some() {
                "outbound"
            } else {
                "internal"
            },
            late_offer,
            a_route: route_set(raw),
            listen,
            ..Call::new(
                call_id.clone(),
                peer,
                raw.clone(),
                a_tag,
                now,
                ring_deadline,
            )
        };
        tracing::info!(call_id = %call_id, from = %call.from_user, to = %call.to_user, "call started");
        self.admit_call(call, call_sid);
        Reply::new(100, "Trying")
    }

    /// The devices a new call rings. Inbound trunk calls name their devices
    /// in X-GoSIP-Devices (set by twiliod's TwiML); internal calls dial an
    /// extension or username.
    fn callees_of(&self, raw: &Raw, inbound: bool, dialed: &str) -> Vec<DeviceId> {
        if inbound {
            raw.get("x-gosip-devices")
                .unwrap_or_default()
                .split(',')
                .filter_map(|d| d.trim().parse().ok().map(DeviceId))
                .collect()
        } else {
            self.devices
                .get(dialed)
                .or_else(|| {
                    self.extensions
                        .get(dialed)
                        .and_then(|u| self.devices.get(u))
                })
                .map(|d| vec![d.id])
                .unwrap_or_default()
        }
    }

    /// Where a new call goes: an internal caller dialing no device (or an
    /// emergency number) goes out through the trunk, and the number dialed
    /// is returned; else the callees must be reachable. `Err` is the final
    /// answer to the caller.
    fn route_call(
        &mut self,
        now: u64,
        peer: &Peer,
        caller: &Device,
        inbound: bool,
        dialed: &str,
        callees: &[DeviceId],
    ) -> Result<Option<String>, Reply> {
        if !inbound && (callees.is_empty() || self.is_emergency(dialed)) {
            return self
                .place_outbound(now, dialed, caller, peer.addr.ip())
                .map(Some);
        }
        if callees.is_empty() {
            return Err(Reply::new(404, "Not Found"));
        }
        // Do Not Disturb: "has activated the 'do not disturb' feature"
        // is 480's own example (RFC 3261 section 21.4.18). Trunk calls
        // already went through twiliod's rules, which apply DND there.
        if !inbound && (self.cfg.system_dnd || callees.iter().all(|id| self.dnd.contains(id))) {
            return Err(Reply::new(480, "Temporarily Unavailable")
                .with("Warning", "399 gosip \"do not disturb\""));
        }
        // Nobody to ring: an internal call still goes on when the callee has
        // a mailbox (voicemail answers it once mediad's ports are there).
        if callees
            .iter()
            .all(|id| self.registrar.bindings_of(*id).is_empty())
            && (inbound || !self.has_mailbox(callees))
        {
            return Err(Reply::new(480, "Temporarily Unavailable"));
        }
        Ok(None)
    }

    /// Files a new call and writes the start of its CDR; mediad is asked
    /// for its ports, and the call goes on in [`Core::media_ready`].
    pub(super) fn admit_call(&mut self, call: Call, call_sid: Option<String>) {
        let call_id = call.id.clone();
        self.events.push_back(Event::Cdr(Cdr::Start {
            call_id: call_id.clone(),
            direction: call.direction,
            from: call.from_user.clone(),
            to: call.to_user.clone(),
            device_id: call.device_id,
            started_at: call.started_at,
            call_sid,
        }));
        self.events.push_back(Event::MediaAllocate {
            call_id: call_id.clone(),
        });
        self.calls.calls.insert(call_id, call);
    }

    /// Answers the caller's INVITE in its server transaction (sipd is the
    /// A-leg's UAS), with the caller's dialog tag.
    pub(super) fn respond_a(
        &mut self,
        now: u64,
        call_id: &str,
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
        body: Option<(&str, &[u8])>,
    ) {
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        let data = msg::response(
            &call.a_req,
            call.a_peer.addr,
            code,
            reason,
            &call.a_tag,
            extra,
            body,
        );
        let peer = call.a_peer;
        self.txns
            .respond(now, &call.a_key, Transmit { peer, data }, code);
    }

    /// Ends a call that never got answered with a final status to the caller.
    pub(super) fn fail_a(
        &mut self,
        now: u64,
        call_id: &str,
        code: u16,
        reason: &'static str,
        disposition: &'static str,
        why: &str,
    ) {
        self.fail_a_with(now, call_id, Reply::new(code, reason), disposition, why);
    }

    /// [`Core::fail_a`] with any reply (reason phrase, Warning ...).
    pub(super) fn fail_a_with(
        &mut self,
        now: u64,
        call_id: &str,
        reply: Reply,
        disposition: &'static str,
        why: &str,
    ) {
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        if call.originate {
            // No caller to answer: hang up the device if it answered.
            self.hangup_leg(now, call_id, true);
            self.cancel_branches(call_id, None);
            self.end_call(now, call_id, disposition, why);
            return;
        }
        let data = msg::response(
            &call.a_req,
            call.a_peer.addr,
            reply.code,
            &reply.reason,
            &call.a_tag,
            &reply.extra,
            None,
        );
        let (key, peer) = (call.a_key.clone(), call.a_peer);
        self.txns
            .respond(now, &key, Transmit { peer, data }, reply.code);
        self.cancel_branches(call_id, None);
        self.end_call(now, call_id, disposition, why);
    }

    pub(super) fn end_call(
        &mut self,
        now: u64,
        call_id: &str,
        disposition: &'static str,
        why: &str,
    ) {
        // A transfer's target may still ring.
        self.cancel_branches(call_id, None);
        let Some(call) = self.calls.calls.remove(call_id) else {
            return;
        };
        let encrypted = self.encrypted(&call);
        self.forget_hops(&call);
        // A call sipd answered for a mailbox ends as a message left however
        // it ends (the caller hangs up, the longest message is reached), or
        // as a missed call when the caller left before saying anything worth
        // keeping (twiliod then discards the recording, by the same rule).
        let voicemail = self.voicemail_of(&call);
        let disposition = match (&voicemail, call.recording_since) {
            (Some(_), Some(since))
                if now.saturating_sub(since) >= u64::from(self.cfg.voicemail_min_secs) * 1000 =>
            {
                "voicemail"
            }
            (Some(_), _) => "missed",
            (None, _) => disposition,
        };
        for b in call.branches.iter() {
            self.calls.by_branch.remove(&b.branch);
            self.calls.by_b_call_id.remove(&b.call_id);
        }
        for b in call.branches {
            if b.to_tag.is_empty() {
                let until = now + 64 * T1;
                self.calls.ended.insert(b.branch.clone(), (b, until));
            }
        }
        // Requests still waiting for the other side end with the call
        // (RFC 3261 section 15.1.2).
        let gone: Vec<String> = self
            .calls
            .relays
            .iter()
            .filter(|(_, x)| x.call_id == call_id)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(x) = self.calls.relays.remove(&k)
                && !x.answered
            {
                let data = msg::response(
                    &x.req,
                    x.peer.addr,
                    487,
                    "Request Terminated",
                    "",
                    &[],
                    None,
                );
                self.txns
                    .respond(now, &x.key, Transmit { peer: x.peer, data }, 487);
            }
        }
        let duration_s = call.answered_at.map_or(0, |a| now.saturating_sub(a) / 1000);
        // One CDR row per call: its transfers, pickup and park are named in
        // the reason.
        let why = std::iter::once(why.to_string())
            .chain(call.history.iter().cloned())
            .collect::<Vec<_>>()
            .join("; ");
        let why = why.as_str();
        tracing::info!(call_id = %call_id, disposition, duration_s, reason = why, "call ended");
        self.events.push_back(Event::Cdr(Cdr::End {
            call_id: call_id.to_string(),
            at: now,
            disposition,
            duration_s,
            reason: why.to_string(),
            encrypted,
        }));
        if call.ports.is_some() || call.state == State::Media {
            self.events.push_back(Event::MediaRelease {
                call_id: call_id.to_string(),
                voicemail,
            });
        }
    }

    /// An ACK that opened no transaction: the ACK of a 2xx sipd sent, to the
    /// caller's INVITE or to a relayed re-INVITE. A late-offer caller's ACK
    /// carries its answer, which sipd passes on in the callee's ACK.
    pub(in crate::sip::core) fn b2b_ack(&mut self, now: u64, peer: Peer, raw: &Raw) {
        let Some((call_id, side, true)) = self.side_of(raw, &peer) else {
            return;
        };
        let cseq = raw.cseq().map_or(0, |c| c.0);
        let answer = sdp_of(raw);
        let Some(call) = self.calls.calls.get_mut(&call_id) else {
            return;
        };
        if side == Side::A && call.state == State::Answering && !call.originate {
            call.state = State::Up;
            call.a_ok = None;
            let late = call.late_offer.then(|| std::mem::take(&mut call.b_offer));
            self.events.push_back(Event::MediaUpdate {
                call_id: call_id.to_string(),
                leg: Leg::A,
                media: None,
                established: Some(true),
                hold: None,
                music: None,
            });
            if let Some(b_offer) = late {
                self.late_answer(now, &call_id, Side::B, None, &b_offer, answer.as_deref());
            }
            self.start_voicemail(&call_id);
            self.start_listening(&call_id);
            return;
        }
        // A joined phone's ACK of sipd's 2xx (pickup, park).
        let cid = raw.get("call-id").unwrap_or_default();
        if let Some(b) = call
            .branches
            .iter_mut()
            .find(|b| b.call_id == cid && b.ok.is_some() && b.cseq == cseq)
        {
            b.ok = None;
            return;
        }
        // The ACK of a relayed re-INVITE's 2xx.
        let Some(branch) = self.calls.relays.iter().find_map(|(branch, x)| {
            (x.call_id == call_id
                && x.from == side
                && x.ok.is_some()
                && x.req.cseq().is_some_and(|c| c.0 == cseq))
            .then(|| branch.clone())
        }) else {
            return;
        };
        let Some(x) = self.calls.relays.get_mut(&branch) else {
            return;
        };
        x.ok = None;
        if let Some(far_offer) = x.far_offer.take() {
            let to = side.other();
            self.late_answer(
                now,
                &call_id,
                to,
                Some(branch),
                &far_offer,
                answer.as_deref(),
            );
        }
    }

    /// CANCEL of the A-leg INVITE: 200 to the CANCEL, 487 to the INVITE.
    /// CANCEL of a re-INVITE still relayed to the other leg: 200, and the
    /// CANCEL goes on to that leg, whose 487 comes back as the answer.
    /// `key` is the CANCEL's own server transaction.
    pub(in crate::sip::core) fn b2b_cancel(
        &mut self,
        now: u64,
        peer: Peer,
        r: &msg::Request,
        key: &TsxKey,
    ) -> Reply {
        let invite_key = key.with_method(Method::Invite);
        let relayed = self.calls.relays.iter().find_map(|(branch, x)| {
            (x.method == Method::Invite
                && x.key == invite_key
                && x.peer.addr.ip() == peer.addr.ip())
            .then(|| branch.clone())
        });
        if let Some(x) = relayed.and_then(|b| self.calls.relays.get_mut(&b)) {
            if !x.answered && !x.cancel {
                x.cancel = true;
                if x.provisional {
                    x.cancel_sent = true;
                    let cancel = cancel_for(&String::from_utf8_lossy(&x.sent.data));
                    self.out.push_back(Transmit {
                        peer: x.sent.peer,
                        data: cancel,
                    });
                }
                tracing::debug!(call_id = %x.call_id, "re-INVITE cancelled by its sender");
            }
            return Reply::new(200, "OK");
        }
        let call_id = r.raw.get("call-id").unwrap_or_default().to_string();
        // A CANCEL matches the INVITE's transaction (RFC 3261 section 9.2),
        // not just its Call-ID, and comes from the caller's address.
        let Some(call) = self
            .calls
            .calls
            .get(&call_id)
            .filter(|c| c.a_key == invite_key && c.a_peer.addr.ip() == peer.addr.ip())
        else {
            return Reply::new(481, "Call/Transaction Does Not Exist");
        };
        if !matches!(call.state, State::Media | State::Ringing) {
            return Reply::new(200, "OK");
        }
        let data = msg::response(
            &call.a_req,
            call.a_peer.addr,
            487,
            "Request Terminated",
            &call.a_tag,
            &[],
            None,
        );
        let (key, peer) = (call.a_key.clone(), call.a_peer);
        self.txns.respond(now, &key, Transmit { peer, data }, 487);
        self.cancel_branches(&call_id, None);
        self.end_call(now, &call_id, "missed", "caller cancelled");
        Reply::new(200, "OK")
    }

    /// No connection could be opened to `addr`: its B-leg INVITEs that got
    /// no answer yet time out now instead of at Timer B.
    pub(in crate::sip::core) fn b2b_unreachable(&mut self, now: u64, addr: std::net::SocketAddr) {
        for call in self.calls.calls.values_mut() {
            for b in &mut call.branches {
                if b.state == BranchState::Calling && b.peer.addr == addr {
                    b.tsx.give_up(now);
                }
            }
        }
    }

    /// Timers A/B of the B-leg INVITEs, the ring timeout and the A-leg 2xx
    /// retransmission, for the calls due at `now` only.
    pub(in crate::sip::core) fn b2b_timeout(&mut self, now: u64) {
        for branch in self.calls.ended.due(now) {
            self.calls.ended.remove(&branch);
        }
        self.relay_timeout(now);
        for id in self.calls.calls.due(now) {
            let mut resend = Vec::new();
            let mut timed_out = Vec::new();
            let mut ring_over = false;
            let mut ack_lost = false;
            if let Some(call) = self.calls.calls.get_mut(&id) {
                for (i, b) in call.branches.iter_mut().enumerate() {
                    match b.ok.as_mut().and_then(|ok| ok.due(now)) {
                        Some(Due::Resend) => resend.extend(b.ok.as_ref().map(|ok| ok.ok().clone())),
                        Some(Due::TimedOut) => ack_lost = true,
                        None => {}
                    }
                    if !matches!(b.state, BranchState::Calling | BranchState::Proceeding) {
                        continue;
                    }
                    match b.tsx.due(now) {
                        Some(Due::Resend) => resend.push(Transmit {
                            peer: b.peer,
                            data: b.invite.clone(),
                        }),
                        Some(Due::TimedOut) => timed_out.push(i),
                        None => {}
                    }
                }
                if call.state == State::Ringing && now >= call.ring_deadline {
                    ring_over = true;
                }
                if call.state == State::Answering {
                    match call.a_ok.as_mut().and_then(|ok| ok.due(now)) {
                        Some(Due::Resend) => {
                            resend.extend(call.a_ok.as_ref().map(|ok| ok.ok().clone()))
                        }
                        Some(Due::TimedOut) => ack_lost = true,
                        None => {}
                    }
                }
                for i in &timed_out {
                    let b = &mut call.branches[*i];
                    b.state = BranchState::Done;
                    b.status = 408;
                    b.no_response = true;
                }
            }
            self.out.extend(resend);
            if !timed_out.is_empty() {
                self.maybe_all_failed(now, &id);
            }
            self.transfer_progress(now, &id);
            self.park_timeout(now, &id);
            if ring_over {
                self.ring_timed_out(now, &id);
            }
            if ack_lost {
                self.hangup(now, &id, "no ACK for the 200");
            }
        }
    }

    /// The ring time ran out with no answer: the caller gets 480, or, when
    /// the trunk never answered at all, the trunk failure's 503.
    fn ring_timed_out(&mut self, now: u64, id: &str) {
        // A trunk that never sent even a 100 is unreachable, not
        // unanswered.
        let silent_trunk = self.calls.calls.get(id).is_some_and(|c| {
            c.outbound.is_some()
                && c.branches
                    .iter()
                    .filter(|b| b.device_id == TRUNK_ID)
                    .any(|b| b.state == BranchState::Calling)
        });
        if silent_trunk {
            let (reply, disposition, why) = trunk_failure(0, "", true);
            self.fail_a_with(now, id, reply, disposition, &why);
        } else if !self.send_to_voicemail(now, id, "no answer") {
            self.fail_a(
                now,
                id,
                480,
                "Temporarily Unavailable",
                "missed",
                "no answer",
            );
        }
    }

    /// Ends a call from outside SIP (gRPC Hangup, mediad rtp_timeout).
    pub fn hangup(&mut self, now: u64, call_id: &str, why: &str) -> bool {
        let Some(call) = self.calls.calls.get(call_id) else {
            return false;
        };
        if matches!(call.state, State::Media | State::Ringing) {
            self.fail_a(now, call_id, 480, "Temporarily Unavailable", "missed", why);
            return true;
        }
        self.hangup_leg(now, call_id, true);
        self.hangup_leg(now, call_id, false);
        self.end_call(now, call_id, "answered", why);
        true
    }

    /// The calls a party on connection `conn` of `transport` takes part
    /// in: as the caller, or as the phone that answered.
    pub(in crate::sip::core) fn calls_on_connection(
        &self,
        transport: crate::sip::Transport,
        conn: u64,
    ) -> Vec<String> {
        let on = |p: &Peer| p.transport == transport && p.conn == conn;
        self.calls
            .calls
            .values()
            .filter(|c| {
                (c.a_branch.is_none() && !c.originate && !c.a_left && on(&c.a_peer))
                    || c.branches
                        .iter()
                        .any(|b| b.state == BranchState::Won && on(&b.peer))
            })
            .map(|c| c.id.clone())
            .collect()
    }

    /// The calls in progress.
    pub fn calls(&self) -> Vec<CallInfo> {
        self.calls
            .calls
            .values()
            .map(|c| CallInfo {
                call_id: c.id.clone(),
                from: c.from_user.clone(),
                to: c.to_user.clone(),
                device_id: c.device_id,
                state: match c.state {
                    _ if c.park.is_some() => "parked",
                    State::Media | State::Ringing => "ringing",
                    State::Answering | State::Up => "up",
                },
                started_at: c.started_at,
                recording: c.recording,
                direction: c.direction,
                park_slot: c.park.as_ref().map(park::Parked::slot),
            })
            .collect()
    }
}

/// The caller's user as the callee sees it in From: the caller's DID for an
/// outbound call that has one, the trunk caller's number, else the
/// extension (or username) of the internal caller.
fn caller_user(raw: &Raw, caller: &Device, inbound: bool, outbound: Option<&String>) -> String {
    if let Some(did) = outbound.and(caller.caller_id.as_ref()) {
        did.clone()
    } else if inbound {
        user_of(uri_of(raw.get("from").unwrap_or_default()))
            .unwrap_or_default()
            .to_string()
    } else {
        caller
            .extension
            .clone()
            .unwrap_or_else(|| caller.username.clone())
    }
}

/// The caller's display name, with an inbound trunk call's trust mark in
/// front (the number stays visible when the caller has no name).
fn caller_display(raw: &Raw, inbound: bool, from_user: &str) -> String {
    let from = raw.get("from").unwrap_or_default();
    let display = msg::display_name(from).unwrap_or_default();
    match trust_mark(raw).filter(|_| inbound) {
        Some(mark) if display.is_empty() => format!("{mark}{from_user}"),
        Some(mark) => format!("{mark}{display}"),
        None => display,
    }
}
