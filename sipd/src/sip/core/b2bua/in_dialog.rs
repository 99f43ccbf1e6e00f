//! Requests inside an answered call (re-INVITE, UPDATE, INFO, BYE) relayed to
//! the other leg's dialog, their answers relayed back, and BYE to a leg.

use super::*;

impl Core {
    /// The call an in-dialog request belongs to, the side it is and whether
    /// it is that side's live dialog (a forked branch that lost is not).
    /// The dialog is the Call-ID and both tags (RFC 3261 section 12.2.2),
    /// and the request must come from the leg's known remote IP address
    /// (any port: a phone's NAT may map it anew; the trunk from any of its
    /// source addresses): Call-IDs travel in clear, and a forged BYE or
    /// re-INVITE would otherwise end or redirect the call.
    pub(super) fn side_of(&self, raw: &Raw, src: &Peer) -> Option<(String, Side, bool)> {
        let cid = raw.get("call-id").unwrap_or_default();
        let from_tag = raw.get("from").and_then(tag_of).unwrap_or_default();
        let to_tag = raw.get("to").and_then(tag_of).unwrap_or_default();
        let ip = src.addr.ip();
        if let Some(call) = self.calls.calls.get(cid) {
            let caller_tag = call.a_req.get("from").and_then(tag_of);
            let ours = !call.originate
                && to_tag == call.a_tag
                && caller_tag == Some(from_tag)
                && call.a_peer.addr.ip() == ip;
            return ours.then(|| (cid.to_string(), Side::A, true));
        }
        let id = self.calls.by_b_call_id.get(cid)?;
        let call = self.calls.calls.get(id)?;
        let b = call.branches.iter().find(|b| {
            b.call_id == cid
                && to_tag == b.from_tag
                && !b.to_tag.is_empty()
                && from_tag == b.to_tag
                && (b.peer.addr.ip() == ip
                    || (b.device_id == TRUNK_ID && self.cfg.trunk_ips.contains(&ip)))
        })?;
        // Click-to-call: the device's own branch is the "a" leg.
        let side = if call.originate && b.device_id != TRUNK_ID {
            Side::A
        } else {
            Side::B
        };
        Some((id.clone(), side, b.state == BranchState::Won))
    }

    /// A request inside a dialog (To tag present): BYE ends the call;
    /// re-INVITE, UPDATE and INFO go to the other leg
    /// ([`Core::relay_request`]).
    pub(in crate::sip::core) fn b2b_in_dialog(
        &mut self,
        now: u64,
        peer: Peer,
        method: &str,
        r: &msg::Request,
        key: &str,
    ) -> Reply {
        let Some((call_id, side, live)) = self.side_of(&r.raw, &peer) else {
            return Reply::new(481, "Call/Transaction Does Not Exist");
        };
        let from_a = side == Side::A;
        match method {
            "BYE" if live || from_a => {
                self.hangup_leg(now, &call_id, !from_a);
                let disposition = if self
                    .calls
                    .calls
                    .get(&call_id)
                    .is_some_and(|c| c.answered_at.is_some())
                {
                    "answered"
                } else {
                    "missed"
                };
                let who = if from_a {
                    "caller hung up"
                } else {
                    "callee hung up"
                };
                self.end_call(now, &call_id, disposition, who);
                Reply::new(200, "OK")
            }
            _ if !live => Reply::new(481, "Call/Transaction Does Not Exist"),
            "INVITE" | "UPDATE" | "INFO" => {
                self.relay_request(now, peer, method, r, key, &call_id, side)
            }
            _ => Reply::new(405, "Method Not Allowed").with("Allow", msg::ALLOW),
        }
    }

    /// A request inside the call from `from`, passed to the other leg as a
    /// new request of that leg's dialog: a re-INVITE or UPDATE with its SDP
    /// rewritten to mediad's port on that leg (direction attributes as they
    /// are), an INFO with its body as it is. The answer comes back in
    /// [`Core::relay_response`]; the requester hears `100 Trying` (INVITE)
    /// or nothing until then.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn relay_request(
        &mut self,
        now: u64,
        peer: Peer,
        method: &str,
        r: &msg::Request,
        key: &str,
        call_id: &str,
        from: Side,
    ) -> Reply {
        let raw = &r.raw;
        let Some(call) = self.calls.calls.get(call_id) else {
            return Reply::new(481, "Call/Transaction Does Not Exist");
        };
        let to = from.other();
        let offer = sdp_of(raw);
        let sdp_exchange = method == "INVITE" || (method == "UPDATE" && offer.is_some());
        if !matches!(call.state, State::Answering | State::Up) {
            // The other side has not answered: no dialog to pass it to.
            return if method == "INFO" {
                Reply::new(480, "Temporarily Unavailable")
            } else {
                Reply::new(491, "Request Pending")
            };
        }
        if sdp_exchange {
            // RFC 3261 section 14.1 / RFC 3311 section 5.2: one offer/answer
            // exchange at a time. The other side's pending one is glare
            // (491); the requester's own earlier one gets 500 + Retry-After.
            if call.state == State::Answering {
                return Reply::new(491, "Request Pending");
            }
            if let Some(x) = self
                .calls
                .relays
                .values()
                .find(|x| x.call_id == call_id && x.negotiating())
            {
                return if x.from == from {
                    Reply::new(500, "Server Internal Error").with("Retry-After", "2")
                } else {
                    Reply::new(491, "Request Pending")
                };
            }
        }
        if matches!(method, "INVITE" | "UPDATE") && offer.is_none() && !raw.body.is_empty() {
            return Reply::new(415, "Unsupported Media Type").with("Accept", msg::ACCEPT);
        }
        let Some((pa, pb)) = call.ports else {
            return Reply::new(491, "Request Pending");
        };
        let port = if to == Side::A { pa } else { pb };
        let content_type = raw
            .get("content-type")
            .unwrap_or("application/octet-stream")
            .to_string();
        let body: Option<(String, Vec<u8>)> = match &offer {
            Some(o) if method != "INFO" => {
                let host = self.addrs.media_host(&side_peer(call, to));
                let Some(s) = sdp::rewrite(o, &host, port, true) else {
                    return Reply::new(488, "Not Acceptable Here")
                        .with("Warning", "304 gosip \"no shared codec\"");
                };
                Some(("application/sdp".into(), s.into_bytes()))
            }
            _ if raw.body.is_empty() => None,
            _ => Some((content_type, raw.body.clone())),
        };
        // Target refresh (RFC 3261 section 12.2.2).
        if matches!(method, "INVITE" | "UPDATE")
            && let Some(c) = raw.get("contact").map(|c| uri_of(c).to_string())
        {
            self.set_target(call_id, from, c);
        }
        let transport = self.leg_transport(call_id, to);
        let to_host = self
            .calls
            .calls
            .get(call_id)
            .map(|c| self.addrs.via_host(&side_peer(c, to)))
            .unwrap_or_default();
        let mut extra: Vec<(&str, String)> = Vec::new();
        if matches!(method, "INVITE" | "UPDATE") {
            extra.push((
                "Contact",
                format!("<sip:gosip@{};transport={}>", to_host, transport.as_str()),
            ));
        }
        for (lower, name) in [
            ("content-disposition", "Content-Disposition"),
            ("info-package", "Info-Package"),
        ] {
            if let Some(v) = raw.get(lower) {
                extra.push((name, v.to_string()));
            }
        }
        let branch = format!("z9hG4bK{}", self.next_id());
        let out = body.as_ref().map(|(ct, b)| (ct.as_str(), b.as_slice()));
        let Some((to_peer, data, cseq)) =
            self.leg_request(call_id, to, method, &branch, None, &extra, out)
        else {
            return Reply::new(481, "Call/Transaction Does Not Exist");
        };
        let sent = Transmit {
            peer: to_peer,
            data,
        };
        self.out.push_back(sent.clone());
        tracing::debug!(call_id = %call_id, method, from = from.leg(), "relayed to the other leg");
        self.calls.relays.insert(
            branch,
            Relay {
                call_id: call_id.to_string(),
                method: method.to_string(),
                from,
                key: key.to_string(),
                peer,
                req: raw.clone(),
                sent,
                cseq,
                offer: offer.filter(|_| method != "INFO"),
                answered: false,
                next_resend: (!to_peer.transport.reliable()).then_some(now + T1),
                interval: T1,
                deadline: now + 64 * T1,
                ack: None,
                ok: None,
                ok_next: 0,
                ok_interval: T1,
                ok_deadline: 0,
                far_offer: None,
                provisional: false,
                cancel: false,
                cancel_sent: false,
            },
        );
        if method == "INVITE" {
            Reply::new(100, "Trying")
        } else {
            Reply::deferred()
        }
    }

    /// The other side's answer to a relayed request, passed back as the
    /// answer to the original: status, reason, SDP rewritten to mediad's
    /// port on the requester's leg, an INFO's body as it is. A re-INVITE's
    /// 2xx is ACKed at once (or, offerless, once the requester's ACK brings
    /// the answer); a failure is ACKed and leaves the old media. 481 and 408
    /// mean the dialog is gone: the call ends (RFC 3261 section 12.2.1.2).
    pub(super) fn relay_response(&mut self, now: u64, r: &msg::Response) {
        let Some(x) = self.calls.relays.get_mut(&r.via.branch) else {
            return;
        };
        if r.raw.cseq().is_some_and(|(_, m)| m == "CANCEL") {
            return; // the answer to our CANCEL of a re-INVITE
        }
        let status = r.status;
        let invite = x.method == "INVITE";
        if status < 200 {
            if invite {
                x.next_resend = None;
                x.provisional = true;
                if x.cancel && !x.cancel_sent && !x.answered {
                    x.cancel_sent = true;
                    let cancel = cancel_for(&String::from_utf8_lossy(&x.sent.data));
                    self.out.push_back(Transmit {
                        peer: x.sent.peer,
                        data: cancel,
                    });
                }
            } else if x.next_resend.is_some() {
                x.interval = T2;
            }
            return;
        }
        if x.answered {
            // A retransmitted final answer: ACK it again.
            if invite && status < 300 {
                if let Some(a) = &x.ack {
                    self.out.push_back(a.clone());
                }
            } else if invite {
                self.out.push_back(Transmit {
                    peer: x.sent.peer,
                    data: non2xx_ack(&x.sent.data, &r.raw),
                });
            }
            return;
        }
        x.answered = true;
        x.next_resend = None;
        x.deadline = now + 64 * T1;
        if invite && status >= 300 {
            self.out.push_back(Transmit {
                peer: x.sent.peer,
                data: non2xx_ack(&x.sent.data, &r.raw),
            });
        }
        let (call_id, from, method, cseq) = (x.call_id.clone(), x.from, x.method.clone(), x.cseq);
        let offer = x.offer.clone();
        let (key, peer, req) = (x.key.clone(), x.peer, x.req.clone());
        let branch = r.via.branch.clone();
        let ports = self.calls.calls.get(&call_id).and_then(|c| c.ports);
        let port = ports.map(|(pa, pb)| if from == Side::A { pa } else { pb });
        let mut code = status;
        let mut reason = reason_of(&r.raw).to_string();
        let mut extra: Vec<(&str, String)> = Vec::new();
        for (lower, name) in [("retry-after", "Retry-After"), ("warning", "Warning")] {
            if let Some(v) = r.raw.get(lower) {
                extra.push((name, v.to_string()));
            }
        }
        let mut body: Option<(String, Vec<u8>)> = None;
        let mut negotiated = None;
        let mut far_offer = None;
        if status < 300 && method != "INFO" {
            if let Some(c) = r.raw.get("contact").map(|c| uri_of(c).to_string()) {
                self.set_target(&call_id, from.other(), c);
            }
            let transport = self.leg_transport(&call_id, from);
            extra.push((
                "Contact",
                format!(
                    "<sip:gosip@{};transport={}>",
                    self.addrs.via_host(&peer),
                    transport.as_str()
                ),
            ));
            if let Some(s) = sdp_of(&r.raw) {
                let host = self.addrs.media_host(&peer);
                match port.and_then(|p| sdp::rewrite(&s, &host, p, true)) {
                    Some(rw) => {
                        // An answer to the requester's offer takes its shape;
                        // an offer (offerless re-INVITE) goes as it is.
                        let rw = match &offer {
                            Some(o) => sdp::shape_answer(o, &rw),
                            None => rw,
                        };
                        body = Some(("application/sdp".into(), rw.into_bytes()));
                    }
                    None => {
                        (code, reason) = (488, "Not Acceptable Here".into());
                        extra.push(("Warning", "304 gosip \"no shared codec\"".into()));
                    }
                }
                match &offer {
                    Some(o) => negotiated = Some((o.clone(), s)),
                    None if invite => far_offer = Some(s),
                    None => {}
                }
            }
        } else if method == "INFO" && !r.raw.body.is_empty() {
            let ct = r
                .raw
                .get("content-type")
                .unwrap_or("application/octet-stream");
            body = Some((ct.to_string(), r.raw.body.clone()));
        }
        // The other side's 2xx to a re-INVITE with an offer is ACKed now;
        // an offerless one waits for the requester's answer, unless its
        // offer was unusable: then it gets a bare ACK and the call ends.
        let unusable_offer = far_offer.is_some() && code >= 300;
        if unusable_offer {
            far_offer = None;
        }
        let mut ack = None;
        if invite && status < 300 && far_offer.is_none() {
            let ack_branch = format!("z9hG4bK{}", self.next_id());
            if let Some((p, data, _)) = self.leg_request(
                &call_id,
                from.other(),
                "ACK",
                &ack_branch,
                Some(cseq),
                &[],
                None,
            ) {
                let t = Transmit { peer: p, data };
                self.out.push_back(t.clone());
                ack = Some(t);
            }
        }
        let data = msg::response(
            &req,
            peer.addr,
            code,
            &reason,
            "",
            &extra,
            body.as_ref().map(|(ct, b)| (ct.as_str(), b.as_slice())),
        );
        let t = Transmit { peer, data };
        self.txns.respond(now, &key, t.clone(), code);
        if let Some(x) = self.calls.relays.get_mut(&branch) {
            x.ack = ack;
            x.far_offer = far_offer;
            if invite && code < 300 {
                x.ok = Some(t);
                x.ok_next = now + T1;
                x.ok_interval = T1;
                x.ok_deadline = now + 64 * T1;
            }
        }
        tracing::debug!(call_id = %call_id, method = %method, status, relayed = code, "in-call answer relayed");
        if let (Some((o, a)), true) = (negotiated, code < 300) {
            self.media_negotiated(&call_id, from, &o, &a);
        }
        if matches!(status, 408 | 481) {
            self.hangup(now, &call_id, "the other side lost the dialog");
        } else if unusable_offer {
            self.hangup(now, &call_id, "no shared codec in a re-INVITE offer");
        }
    }

    /// A relayed request the other side never answered (Timer B/F): 408
    /// to the requester, and the call ends (RFC 3261 section 12.2.1.2).
    pub(super) fn relay_timed_out(&mut self, now: u64, branch: &str) {
        let Some(x) = self.calls.relays.get_mut(branch) else {
            return;
        };
        x.answered = true;
        x.next_resend = None;
        x.deadline = now;
        let data = msg::response(&x.req, x.peer.addr, 408, "Request Timeout", "", &[], None);
        let (key, peer, call_id) = (x.key.clone(), x.peer, x.call_id.clone());
        self.txns.respond(now, &key, Transmit { peer, data }, 408);
        tracing::info!(call_id = %call_id, "the other leg did not answer an in-call request");
        self.hangup(now, &call_id, "the other side stopped answering");
    }

    /// Updates `side`'s remote target (a target refresh request or its 2xx).
    pub(super) fn set_target(&mut self, call_id: &str, side: Side, target: String) {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        match dialog_branch(call, side) {
            Some(i) => call.branches[i].remote_target = target,
            None if side == Side::A && !call.originate => call.a_target = target,
            None => {}
        }
    }

    pub(super) fn leg_transport(&self, call_id: &str, side: Side) -> crate::sip::Transport {
        self.calls
            .calls
            .get(call_id)
            .map_or(crate::sip::Transport::Udp, |c| side_peer(c, side).transport)
    }

    /// Builds a request inside `side`'s dialog: the caller's (sipd is its
    /// UAS) or the answered branch's. `cseq` `None` takes the dialog's next
    /// local CSeq (an ACK passes its INVITE's). Returns where it goes, its
    /// bytes and its CSeq.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn leg_request(
        &mut self,
        call_id: &str,
        side: Side,
        method: &str,
        branch: &str,
        cseq: Option<u32>,
        extra: &[(&str, String)],
        body: Option<(&str, &[u8])>,
    ) -> Option<(Peer, Vec<u8>, u32)> {
        let realm = self.cfg.realm.clone();
        let call = self.calls.calls.get_mut(call_id)?;
        let local = self.addrs.via_host(&side_peer(call, side));
        if let Some(i) = dialog_branch(call, side) {
            let b = &mut call.branches[i];
            let n = cseq.unwrap_or_else(|| {
                b.local_cseq += 1;
                b.local_cseq
            });
            let data = dialog_request(
                b,
                method,
                n,
                &local,
                &realm,
                &call.from_user,
                &call.to_user,
                branch,
                extra,
                body,
            );
            return Some((b.peer, data, n));
        }
        if side == Side::B || call.originate {
            return None;
        }
        let n = cseq.unwrap_or_else(|| {
            call.a_cseq += 1;
            call.a_cseq
        });
        let req = &call.a_req;
        let target = if call.a_target.is_empty() {
            uri_of(req.get("from").unwrap_or_default()).to_string()
        } else {
            call.a_target.clone()
        };
        let from = format!("{};tag={}", req.get("to").unwrap_or_default(), call.a_tag);
        let data = build_request(&Outgoing {
            method,
            target: &target,
            transport: call.a_peer.transport,
            local: &local,
            branch,
            from: &from,
            to: req.get("from").unwrap_or_default(),
            call_id: &call.id,
            cseq: n,
            route: &call.a_route,
            extra,
            body,
        });
        Some((call.a_peer, data, n))
    }

    /// Sends BYE on the A-leg (`to_a`) or on the winning B-leg.
    pub(super) fn hangup_leg(&mut self, now: u64, call_id: &str, to_a: bool) {
        let side = if to_a { Side::A } else { Side::B };
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        if to_a && !call.originate && call.answered_at.is_none() {
            return;
        }
        let branch = format!("z9hG4bK{}", self.next_id());
        let Some((peer, data, _)) =
            self.leg_request(call_id, side, "BYE", &branch, None, &[], None)
        else {
            return;
        };
        if let Some(call) = self.calls.calls.get_mut(call_id)
            && let Some(i) = dialog_branch(call, side)
        {
            call.branches[i].state = BranchState::Done;
        }
        self.txns
            .send_request(now, &branch, Transmit { peer, data }, 64 * T1);
    }

    /// Retransmissions and timeouts of relayed requests (Timers A/E, B/F)
    /// and of a relayed re-INVITE's 2xx to the requester until its ACK.
    pub(super) fn relay_timeout(&mut self, now: u64) {
        self.calls
            .relays
            .retain(|_, x| !(x.answered && x.ok.is_none() && now >= x.deadline));
        let mut resend = Vec::new();
        let mut timed_out = Vec::new();
        let mut no_ack = Vec::new();
        for (branch, x) in self.calls.relays.iter_mut() {
            if !x.answered {
                if let Some(n) = x.next_resend
                    && now >= n
                {
                    resend.push(x.sent.clone());
                    x.interval = if x.method == "INVITE" {
                        x.interval * 2
                    } else {
                        (x.interval * 2).min(T2)
                    };
                    x.next_resend = Some(now + x.interval);
                }
                if now >= x.deadline {
                    timed_out.push(branch.clone());
                }
            } else if x.ok.is_some() && now >= x.ok_next {
                if now >= x.ok_deadline {
                    x.ok = None;
                    no_ack.push(x.call_id.clone());
                } else if let Some(ok) = &x.ok {
                    resend.push(ok.clone());
                    x.ok_interval = (x.ok_interval * 2).min(T2);
                    x.ok_next = now + x.ok_interval;
                }
            }
        }
        self.out.extend(resend);
        for b in timed_out {
            self.relay_timed_out(now, &b);
        }
        for c in no_ack {
            self.hangup(now, &c, "no ACK for a relayed re-INVITE's 200");
        }
    }
}
