//! The B-legs: answers from the forked branches, the first 2xx winning, the
//! others cancelled, late answers and responses after the call was decided.

use super::*;
use crate::sip::core::Leg;

impl Core {
    /// A response to one of our B-leg INVITEs (or their CANCELs), or to a
    /// request relayed inside a call.
    pub(in crate::sip::core) fn b2b_response(
        &mut self,
        now: u64,
        from: &Peer,
        r: &msg::Response,
    ) -> bool {
        if let Some(x) = self.calls.relays.get(&r.via.branch) {
            if answers_from(&x.sent.peer, from) {
                self.relay_response(now, r);
            } else {
                self.stats.dropped_wrong_source += 1;
            }
            return true;
        }
        let Some((call_id, i)) = self.calls.by_branch.get(&r.via.branch).cloned() else {
            return self.late_response(now, from, r);
        };
        // Only the contact the INVITE went to may answer it: a forged 200
        // from elsewhere would otherwise bridge the call to the forger.
        if !self
            .calls
            .calls
            .get(&call_id)
            .and_then(|c| c.branches.get(i))
            .is_some_and(|b| answers_from(&b.peer, from))
        {
            self.stats.dropped_wrong_source += 1;
            return true;
        }
        let Some((_, method)) = r.raw.cseq() else {
            return true;
        };
        if Method::parse(method) != Some(Method::Invite) {
            return true; // the 200 to our CANCEL
        }
        let status = r.status;
        if (200..300).contains(&status) {
            return self.branch_answered(now, &call_id, i, r);
        }
        if status < 200 {
            self.branch_provisional(now, &call_id, i, status, sdp_of(&r.raw));
        } else {
            self.branch_failed(now, &call_id, i, r);
        }
        true
    }

    /// A 1xx on branch `i`: Timer A stops, and the caller hears ringing
    /// once (a 180), or the callee's early media when its 180/183 has SDP.
    fn branch_provisional(
        &mut self,
        now: u64,
        call_id: &str,
        i: usize,
        status: u16,
        early: Option<String>,
    ) {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        let Some(b) = call.branches.get_mut(i) else {
            return;
        };
        if b.state == BranchState::Calling {
            b.state = BranchState::Proceeding;
            b.tsx.provisional();
        }
        if !(status == 180 || status == 183) || call.state != State::Ringing {
            return;
        }
        if let Some(early) = early.filter(|_| !call.early_sent && !call.late_offer)
            && self.early_media(now, call_id, i, status, &early)
        {
            return;
        }
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        if !call.ringing_sent {
            call.ringing_sent = true;
            self.respond_a(now, call_id, 180, "Ringing", &[], None);
        }
    }

    /// Early media: the callee's ringback or announcement flows through
    /// mediad before any 200, so the caller gets an SDP for mediad's port
    /// (a late-offer caller has nothing to answer with: it hears plain
    /// ringing). `false` when the caller still needs its plain 180.
    fn early_media(&mut self, now: u64, call_id: &str, i: usize, status: u16, early: &str) -> bool {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return false;
        };
        let Some(b) = call.branches.get(i) else {
            return false;
        };
        let media = sdp::leg_media(early).map(|m| m.signalled_from(b.peer.addr.ip()));
        let trunk = b.device_id == TRUNK_ID;
        if call.originate {
            // The device is already connected to mediad: telling
            // mediad where the trunk is suffices.
            if trunk {
                call.early_sent = true;
                self.events.push_back(Event::MediaUpdate {
                    call_id: call_id.to_string(),
                    leg: Leg::B,
                    hold: None,
                    music: None,
                    media,
                    established: None,
                });
            }
            return true;
        }
        let sdp_a = call
            .ports
            .and_then(|(pa, _)| sdp::rewrite(early, &self.addrs.media_host(&call.a_peer), pa, true))
            .map(|a| sdp::shape_answer(&call.offer, &a));
        let Some(sdp_a) = sdp_a else {
            return false;
        };
        call.early_sent = true;
        call.ringing_sent = true;
        let reason = if status == 183 {
            "Session Progress"
        } else {
            "Ringing"
        };
        let contact = format!(
            "<sip:gosip@{};transport={}>",
            self.addrs.via_host(&call.a_peer),
            call.a_peer.transport.as_str()
        );
        self.respond_a(
            now,
            call_id,
            status,
            reason,
            &[("Contact", contact)],
            Some(("application/sdp", sdp_a.as_bytes())),
        );
        tracing::debug!(call_id = %call_id, status, "early media relayed to the caller");
        self.events.push_back(Event::MediaUpdate {
            call_id: call_id.to_string(),
            leg: Leg::B,
            hold: None,
            music: None,
            media,
            established: None,
        });
        true
    }

    /// A final failure on branch `i`: ACKed on the same branch (RFC 3261
    /// section 17.1.1.3), retried once with credentials when it is the
    /// trunk's challenge, else the branch is done and may end the call.
    fn branch_failed(&mut self, now: u64, call_id: &str, i: usize, r: &msg::Response) {
        let Some(b) = self
            .calls
            .calls
            .get(call_id)
            .and_then(|c| c.branches.get(i))
        else {
            return;
        };
        let ack = non2xx_ack(&b.invite, &r.raw);
        self.out.push_back(Transmit {
            peer: b.peer,
            data: ack,
        });
        if self.retry_with_credentials(now, call_id, i, r) {
            return;
        }
        let Some(b) = self
            .calls
            .calls
            .get_mut(call_id)
            .and_then(|c| c.branches.get_mut(i))
        else {
            return;
        };
        if matches!(b.state, BranchState::Done | BranchState::Won) && b.status != 0 {
            return;
        }
        b.state = BranchState::Done;
        b.status = r.status;
        b.reason = reason_of(&r.raw).to_string();
        b.tsx.final_response();
        if self.rings_target(call_id, i) {
            self.transfer_progress(now, call_id);
            return;
        }
        self.maybe_all_failed(now, call_id);
    }

    /// The trunk's digest challenge (401/407) to the first INVITE of an
    /// outbound call still ringing: the INVITE goes again on a new branch
    /// with CSeq 2 and the credentials. `false` when it does not apply or
    /// the challenge cannot be answered.
    fn retry_with_credentials(
        &mut self,
        now: u64,
        call_id: &str,
        i: usize,
        r: &msg::Response,
    ) -> bool {
        let status = r.status;
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return false;
        };
        let (outbound, ringing) = (call.outbound.is_some(), call.state == State::Ringing);
        // A transfer to a number dials it like an outbound call.
        let transferring = call.transfer.as_ref().is_some_and(|t| i >= t.first);
        let Some(b) = call.branches.get_mut(i) else {
            return false;
        };
        let Some(t) = &self.cfg.termination else {
            return false;
        };
        if !((status == 401 || status == 407)
            && b.cseq == 1
            && b.device_id == TRUNK_ID
            && ((outbound && ringing) || transferring))
        {
            return false;
        }
        let hdr = if status == 401 {
            "www-authenticate"
        } else {
            "proxy-authenticate"
        };
        let challenges: Vec<&str> = r.raw.all(hdr).collect();
        let cnonce = format!("{:x}{}", now, b.branch.len());
        let Some(auth) = digest::answer(
            &challenges,
            Method::Invite.as_str(),
            &b.contact,
            &t.username,
            &t.password,
            &cnonce,
        ) else {
            return false;
        };
        let name = if status == 401 {
            "Authorization"
        } else {
            "Proxy-Authorization"
        };
        let old = b.branch.clone();
        let new = format!("{old}r");
        let inv = String::from_utf8_lossy(&b.invite)
            .replacen(&format!("branch={old}"), &format!("branch={new}"), 1)
            .replacen(
                "CSeq: 1 INVITE\r\n",
                &format!("CSeq: 2 INVITE\r\n{name}: {auth}\r\n"),
                1,
            );
        b.invite = inv.into_bytes();
        b.branch = new.clone();
        b.cseq = 2;
        b.local_cseq = 2;
        b.state = BranchState::Calling;
        b.tsx = ClientTimers::invite(now, b.peer.transport.reliable());
        let t = Transmit {
            peer: b.peer,
            data: b.invite.clone(),
        };
        self.out.push_back(t);
        self.calls.by_branch.remove(&old);
        self.calls.by_branch.insert(new, (call_id.to_string(), i));
        true
    }

    /// A 2xx on branch `i`: the first one bridges the call, a later one on
    /// another branch is ACKed and hung up, a retransmission gets the same
    /// ACK again.
    pub(super) fn branch_answered(
        &mut self,
        now: u64,
        call_id: &str,
        i: usize,
        r: &msg::Response,
    ) -> bool {
        let realm = self.cfg.realm.clone();
        let body = sdp_of(&r.raw).unwrap_or_default();
        let bye_branch = format!("z9hG4bK{}", self.next_id());
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return true;
        };
        let Some(b) = call.branches.get(i) else {
            return true;
        };
        let local = self.addrs.via_host(&b.peer);
        let trunk_side = b.device_id == TRUNK_ID;
        let already = call
            .branches
            .iter()
            .position(|x| x.state == BranchState::Won && (x.device_id == TRUNK_ID) == trunk_side);
        let b = &mut call.branches[i];
        if already == Some(i) || (already.is_some() && b.ack.is_some()) {
            // A retransmitted 2xx: the same ACK again (none yet while a
            // late offer waits for the caller's answer).
            if let Some(ack) = &b.ack {
                self.out.push_back(Transmit {
                    peer: b.peer,
                    data: ack.clone(),
                });
            }
            return true;
        }
        b.learn_dialog(&r.raw);
        b.tsx.final_response();
        let ack = dialog_request(
            b,
            Method::Ack,
            b.cseq,
            &local,
            &realm,
            &format!("z9hG4bK{}a{}", b.branch, now),
            &[],
            None,
        );
        let peer = b.peer;
        if call.transfer.as_ref().is_some_and(|t| i >= t.first) && call.state == State::Up {
            b.ack = Some(ack.clone());
            self.out.push_back(Transmit { peer, data: ack });
            self.transfer_answered(now, call_id, i, &body);
            return true;
        }
        if already.is_some() || call.state != State::Ringing {
            // A second answer after the first: hang it up.
            b.ack = Some(ack.clone());
            self.out.push_back(Transmit { peer, data: ack });
            if already.is_some() {
                self.bye_extra_answer(now, call_id, i, &bye_branch);
            }
            return true;
        }
        if call.originate {
            b.ack = Some(ack.clone());
            self.out.push_back(Transmit { peer, data: ack });
            return self.originate_answered(now, call_id, i, &body);
        }
        b.state = BranchState::Won;
        self.bridge_answer(now, call_id, i, Transmit { peer, data: ack }, &body);
        true
    }

    /// Hangs up branch `i`, answered after another branch won: a BYE in
    /// its new dialog, and the branch is done.
    fn bye_extra_answer(&mut self, now: u64, call_id: &str, i: usize, bye_branch: &str) {
        let realm = self.cfg.realm.clone();
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        let Some(b) = call.branches.get_mut(i) else {
            return;
        };
        let local = self.addrs.via_host(&b.peer);
        b.local_cseq += 1;
        let bye = dialog_request(
            b,
            Method::Bye,
            b.local_cseq,
            &local,
            &realm,
            bye_branch,
            &[],
            None,
        );
        b.state = BranchState::Done;
        let peer = b.peer;
        self.txns
            .send_request(now, bye_branch, Transmit { peer, data: bye }, 64 * T1);
    }

    /// The winning 2xx (on branch `i`, whose `ack` is ready) bridges the
    /// call: the caller gets SDP for mediad's port a, the callee's answer
    /// (shaped to the caller's offer) or, for a late offer, the callee's
    /// offer, whose answer comes in the caller's ACK; only then is the 2xx
    /// ACKed. Without usable SDP the callee is hung up and the caller gets
    /// 488.
    fn bridge_answer(&mut self, now: u64, call_id: &str, i: usize, ack: Transmit, body: &str) {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        let media_ip = self.addrs.media_host(&call.a_peer);
        let Some(b) = call.branches.get_mut(i) else {
            return;
        };
        let Some((pa, pb)) = call.ports else {
            self.out.push_back(ack);
            return;
        };
        call.b_sent = sdp::rewrite(&call.offer, &self.addrs.media_host(&b.peer), pb, false)
            .unwrap_or_default();
        call.b_media = body.to_string();
        let to_a = if call.late_offer {
            // The 2xx carries the offer; the caller answers it in its
            // ACK, and only that answer lets sipd ACK this 2xx.
            let offer = sdp::rewrite(body, &media_ip, pa, true);
            if offer.is_some() {
                call.b_offer = body.to_string();
            }
            offer
        } else {
            b.ack = Some(ack.data.clone());
            self.out.push_back(ack.clone());
            if let Some(m) = sdp::leg_media(body).map(|m| m.signalled_from(ack.peer.addr.ip())) {
                self.events.push_back(Event::MediaUpdate {
                    call_id: call_id.to_string(),
                    leg: Leg::B,
                    hold: Some(m.hold),
                    music: None,
                    media: Some(m),
                    established: None,
                });
            }
            sdp::rewrite(body, &media_ip, pa, true)
                .or_else(|| sdp::rewrite(&call.offer, &media_ip, pa, true))
                .map(|a| sdp::shape_answer(&call.offer, &a))
        };
        let Some(answer) = to_a else {
            // A late-offer callee whose 2xx has no usable offer.
            b.ack = Some(ack.data.clone());
            self.out.push_back(ack);
            self.hangup_leg(now, call_id, false);
            self.fail_a(
                now,
                call_id,
                488,
                "Not Acceptable Here",
                "failed",
                "no shared codec in the callee's offer",
            );
            return;
        };
        self.answer_caller(now, call_id, i, answer);
        self.record_if_wanted(call_id, i);
        self.cancel_branches(call_id, Some(i));
    }

    /// The caller hears the answer of branch `i`; the CDR names the device
    /// that answered an inbound call.
    pub(super) fn answer_caller(&mut self, now: u64, call_id: &str, i: usize, answer: String) {
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        let device_id = (call.direction == "inbound").then_some(call.branches[i].device_id);
        self.answer_a(now, call_id, answer);
        self.events.push_back(Event::Cdr(Cdr::Answered {
            call_id: call_id.to_string(),
            at: now,
            device_id,
        }));
    }

    /// Sends the caller sipd's 2xx with `answer` and keeps re-sending it
    /// until the ACK (RFC 3261 section 13.3.1.4: the UAS core, not the
    /// transaction, retransmits a 2xx).
    pub(super) fn answer_a(&mut self, now: u64, call_id: &str, answer: String) {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        call.a_sdp = answer.clone();
        let contact = format!(
            "<sip:gosip@{};transport={}>",
            self.addrs.via_host(&call.a_peer),
            call.a_peer.transport.as_str()
        );
        let data = msg::response(
            &call.a_req,
            call.a_peer.addr,
            200,
            "OK",
            &call.a_tag,
            &[("Contact", contact), ("Allow", msg::ALLOW.to_string())],
            Some(("application/sdp", answer.as_bytes())),
        );
        let (key, peer) = (call.a_key.clone(), call.a_peer);
        call.a_ok = Some(UnackedOk::new(
            now,
            Transmit {
                peer,
                data: data.clone(),
            },
        ));
        call.state = State::Answering;
        call.answered_at = Some(now);
        tracing::info!(call_id = %call_id, late_offer = call.late_offer, "call answered");
        self.txns.respond(now, &key, Transmit { peer, data }, 200);
    }

    /// Records a call answered on branch `i` when the caller's or the
    /// callee's device records every call.
    pub(super) fn record_if_wanted(&mut self, call_id: &str, i: usize) {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        let callee = call.branches[i].device_id;
        let callee_records = self.devices.values().any(|d| d.id == callee && d.recording);
        if call.caller_records || callee_records {
            call.recording = true;
            tracing::info!(call_id = %call_id, "device records every call");
            self.events.push_back(Event::MediaRecord {
                call_id: call_id.to_string(),
                enabled: true,
            });
        }
    }

    /// Sends a new B-leg INVITE and files its branch under the call, so
    /// its responses (by Via branch) and its dialog's requests (by Call-ID)
    /// find the call.
    pub(super) fn start_branch(
        &mut self,
        now: u64,
        call_id: &str,
        new: NewBranch,
        invite: Vec<u8>,
    ) {
        let policy = self.srtp_policy(new.device_id);
        self.open_hop(&new.ids.call_id, &new.peer, policy);
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        self.out.push_back(Transmit {
            peer: new.peer,
            data: invite.clone(),
        });
        self.calls.by_branch.insert(
            new.ids.branch.clone(),
            (call_id.to_string(), call.branches.len()),
        );
        self.calls
            .by_b_call_id
            .insert(new.ids.call_id.clone(), call_id.to_string());
        call.branches.push(Branch::calling(now, new, invite));
    }

    pub(super) fn maybe_all_failed(&mut self, now: u64, call_id: &str) {
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        let dialing = call.originate && call.branches.iter().any(|b| b.device_id == TRUNK_ID);
        let stage = |b: &&Branch| !call.originate || (b.device_id == TRUNK_ID) == dialing;
        if call.state != State::Ringing
            || call
                .branches
                .iter()
                .filter(stage)
                .any(|b| b.state != BranchState::Done)
        {
            return;
        }
        let trunk = call.outbound.is_some() && (!call.originate || dialing);
        if trunk && let Some(b) = call.branches.iter().rfind(stage) {
            let (reply, disposition, why) = trunk_failure(b.status, &b.reason, b.no_response);
            tracing::info!(call_id = %call_id, status = b.status, relayed = reply.code, disposition, "trunk call failed");
            self.fail_a_with(now, call_id, reply, disposition, &why);
            return;
        }
        let codes: Vec<u16> = call
            .branches
            .iter()
            .filter(stage)
            .map(|b| b.status)
            .collect();
        if self.send_to_voicemail(now, call_id, "every branch failed") {
            return;
        }
        let (code, reason, disposition) = if codes.contains(&486) || codes.contains(&600) {
            (486, "Busy Here", "busy")
        } else if codes.contains(&603) {
            (603, "Decline", "rejected")
        } else {
            (480, "Temporarily Unavailable", "missed")
        };
        self.fail_a(
            now,
            call_id,
            code,
            reason,
            disposition,
            "every branch failed",
        );
    }

    /// CANCELs every branch still ringing except `keep`.
    pub(super) fn cancel_branches(&mut self, call_id: &str, keep: Option<usize>) {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        for (i, b) in call.branches.iter_mut().enumerate() {
            if Some(i) == keep || !matches!(b.state, BranchState::Calling | BranchState::Proceeding)
            {
                continue;
            }
            b.tsx.stop_resending();
            let inv = String::from_utf8_lossy(&b.invite).into_owned();
            let cancel = cancel_for(&inv);
            self.out.push_back(Transmit {
                peer: b.peer,
                data: cancel,
            });
            // The branch ends with its 487, or with Timer B if none comes.
            b.state = BranchState::Done;
            b.status = 487;
        }
    }

    /// A final response on a branch of a call that already ended: ACK it,
    /// and hang up a 2xx that crossed our CANCEL.
    pub(super) fn late_response(&mut self, now: u64, from: &Peer, r: &msg::Response) -> bool {
        let Some((b, _)) = self.calls.ended.get_mut(&r.via.branch) else {
            return false;
        };
        if !answers_from(&b.peer, from) {
            self.stats.dropped_wrong_source += 1;
            return true;
        }
        if r.status < 200
            || r.raw
                .cseq()
                .is_some_and(|(_, m)| Method::parse(m) != Some(Method::Invite))
        {
            return true;
        }
        if r.status >= 300 {
            let ack = non2xx_ack(&b.invite, &r.raw);
            self.out.push_back(Transmit {
                peer: b.peer,
                data: ack,
            });
            return true;
        }
        b.learn_dialog(&r.raw);
        let (local, realm) = (self.addrs.via_host(&b.peer), self.cfg.realm.clone());
        let ack_branch = format!("z9hG4bK{}a{now}", b.branch);
        let ack = dialog_request(
            b,
            Method::Ack,
            b.cseq,
            &local,
            &realm,
            &ack_branch,
            &[],
            None,
        );
        let bye_branch = format!("z9hG4bK{}b", b.branch);
        let bye = dialog_request(
            b,
            Method::Bye,
            b.cseq + 1,
            &local,
            &realm,
            &bye_branch,
            &[],
            None,
        );
        let peer = b.peer;
        self.out.push_back(Transmit { peer, data: ack });
        self.txns
            .send_request(now, &bye_branch, Transmit { peer, data: bye }, 64 * T1);
        true
    }

    /// Passes a late answer on: `offerer`'s 2xx carried `offer`, the other
    /// side answered in its ACK; the ACK to `offerer` carries the answer
    /// (rewritten to mediad's port of that leg). Without a usable answer
    /// the ACK goes bare and the call ends. `relay` names the re-INVITE
    /// relay; `None` is the call's first INVITE.
    pub(super) fn late_answer(
        &mut self,
        now: u64,
        call_id: &str,
        offerer: Side,
        relay: Option<String>,
        offer: &str,
        answer: Option<&str>,
    ) {
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        let media_ip = self.addrs.media_host(&side_peer(call, offerer));
        let port = call
            .ports
            .map(|(pa, pb)| if offerer == Side::A { pa } else { pb });
        let rewritten = answer
            .zip(port)
            .and_then(|(a, p)| sdp::rewrite(a, &media_ip, p, true))
            .map(|a| sdp::shape_answer(offer, &a));
        let cseq = match &relay {
            Some(k) => self.calls.relays.get(k).map(|x| x.cseq),
            None => dialog_branch(call, offerer).map(|i| call.branches[i].cseq),
        };
        let ack_branch = format!("z9hG4bK{}", self.next_id());
        let body = rewritten
            .as_ref()
            .map(|s| ("application/sdp", s.as_bytes()));
        let Some((peer, data, _)) =
            self.leg_request(call_id, offerer, Method::Ack, &ack_branch, cseq, &[], body)
        else {
            return;
        };
        let t = Transmit { peer, data };
        self.out.push_back(t.clone());
        match &relay {
            Some(k) => {
                if let Some(x) = self.calls.relays.get_mut(k) {
                    x.ack = Some(t);
                }
            }
            None => {
                if let Some(call) = self.calls.calls.get_mut(call_id)
                    && let Some(i) = dialog_branch(call, offerer)
                {
                    call.branches[i].ack = Some(t.data);
                }
            }
        }
        match (answer, rewritten) {
            (Some(answer), Some(_)) => self.media_negotiated(call_id, offerer, offer, answer),
            _ => {
                tracing::warn!(call_id = %call_id, "the ACK carried no usable SDP answer");
                self.hangup(now, call_id, "no SDP answer in the ACK");
            }
        }
    }
}
