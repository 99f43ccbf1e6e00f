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
                && call.a_branch.is_none()
                && !call.a_left
                && to_tag == call.a_tag
                && caller_tag == Some(from_tag)
                && call.a_peer.addr.ip() == ip;
            return ours.then(|| (cid.to_string(), Side::A, true));
        }
        let id = self.calls.by_b_call_id.get(cid)?;
        let call = self.calls.calls.get(id)?;
        let i = call.branches.iter().position(|b| {
            b.call_id == cid
                && to_tag == b.from_tag
                && !b.to_tag.is_empty()
                && from_tag == b.to_tag
                && (b.peer.addr.ip() == ip
                    || (b.device_id == TRUNK_ID && self.cfg.trunk_ips.contains(&ip)))
        })?;
        let b = &call.branches[i];
        // Click-to-call: the device's own branch is the "a" leg; after a
        // transfer by the caller's side, the target's.
        let side = if call.a_branch == Some(i) || (call.originate && b.device_id != TRUNK_ID) {
            Side::A
        } else {
            Side::B
        };
        Some((id.clone(), side, b.state == BranchState::Won))
    }

    /// A request inside a dialog (To tag present): BYE ends the call;
    /// re-INVITE, UPDATE and INFO go to the other leg
    /// ([`Core::relay_request`]); REFER transfers it ([`Core::refer`]).
    pub(in crate::sip::core) fn b2b_in_dialog(
        &mut self,
        now: u64,
        peer: Peer,
        method: Method,
        r: &msg::Request,
        key: &TsxKey,
    ) -> Reply {
        let Some((call_id, side, live)) = self.side_of(&r.raw, &peer) else {
            return Reply::new(481, "Call/Transaction Does Not Exist");
        };
        let from_a = side == Side::A;
        match method {
            // The transferor leaves while the target rings: the call stays.
            Method::Bye
                if live
                    && (self.transferor_left(&call_id, side)
                        || (!from_a && self.parker_left(&call_id))) =>
            {
                Reply::new(200, "OK")
            }
            Method::Bye if live || from_a => {
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
            // A transferor hung up by sipd may say BYE too (crossing ours).
            Method::Bye if !live => Reply::new(200, "OK"),
            _ if !live => Reply::new(481, "Call/Transaction Does Not Exist"),
            // Keys sent as SIP INFO on a call sipd answers itself (RFC 6086;
            // the dtmf-relay body most phones send).
            Method::Info if from_a && self.answers_itself(&call_id) => {
                if let Some(key) = info_key(&r.raw) {
                    self.listen_key(&call_id, key);
                }
                Reply::new(200, "OK")
            }
            Method::Invite | Method::Update | Method::Info => {
                self.relay_request(now, peer, method, r, key, &call_id, side)
            }
            Method::Refer => self.refer(now, r, &call_id, side),
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
        method: Method,
        r: &msg::Request,
        key: &TsxKey,
        call_id: &str,
        from: Side,
    ) -> Reply {
        let raw = &r.raw;
        let to = from.other();
        let offer = sdp_of(raw);
        if let Err(reply) = self.may_relay(call_id, method, from, raw, offer.is_some()) {
            return reply;
        }
        let body = match self.relayed_body(call_id, to, method, raw, offer.as_ref()) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        // Target refresh (RFC 3261 section 12.2.2).
        if matches!(method, Method::Invite | Method::Update)
            && let Some(c) = raw.get("contact").map(|c| uri_of(c).to_string())
        {
            self.set_target(call_id, from, c);
        }
        let extra = self.relayed_headers(call_id, to, method, raw);
        let branch = format!("z9hG4bK{}", self.next_id());
        let out = body.as_ref().map(Body::parts);
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
        tracing::debug!(call_id = %call_id, method = %method, from = from.leg().as_str_name(), "relayed to the other leg");
        let relay = Relay::sent(
            now,
            call_id,
            method,
            (from, key.clone(), peer, raw.clone()),
            sent,
            cseq,
            offer.filter(|_| method != Method::Info),
        );
        self.calls.relays.insert(branch, relay);
        if to == Side::A {
            self.sent_to(call_id, Side::A, body.as_ref());
        } else {
            self.sent_to(call_id, Side::B, body.as_ref());
        }
        if method == Method::Invite {
            Reply::new(100, "Trying")
        } else {
            Reply::deferred()
        }
    }

    /// Whether `from`'s request may go to the other leg now: the call must
    /// be answered, and an offer/answer exchange waits for the one running
    /// (RFC 3261 section 14.1, RFC 3311 section 5.2). `Err` is the answer
    /// to the requester.
    fn may_relay(
        &self,
        call_id: &str,
        method: Method,
        from: Side,
        raw: &Raw,
        has_offer: bool,
    ) -> Result<(), Reply> {
        let Some(call) = self.calls.calls.get(call_id) else {
            return Err(Reply::new(481, "Call/Transaction Does Not Exist"));
        };
        let sdp_exchange = method == Method::Invite || (method == Method::Update && has_offer);
        if !matches!(call.state, State::Answering | State::Up) {
            // The other side has not answered: no dialog to pass it to.
            return Err(if method == Method::Info {
                Reply::new(480, "Temporarily Unavailable")
            } else {
                Reply::new(491, "Request Pending")
            });
        }
        if sdp_exchange {
            // One offer/answer exchange at a time. The other side's
            // pending one is glare (491); the requester's own earlier one
            // gets 500 + Retry-After.
            if call.state == State::Answering {
                return Err(Reply::new(491, "Request Pending"));
            }
            if let Some(x) = self
                .calls
                .relays
                .values()
                .find(|x| x.call_id == call_id && x.negotiating())
            {
                return Err(if x.from == from {
                    Reply::new(500, "Server Internal Error").with("Retry-After", "2")
                } else {
                    Reply::new(491, "Request Pending")
                });
            }
        }
        if matches!(method, Method::Invite | Method::Update) && !has_offer && !raw.body.is_empty() {
            return Err(Reply::new(415, "Unsupported Media Type").with("Accept", msg::ACCEPT));
        }
        Ok(())
    }

    /// The body of a request relayed to `to`: an offer rewritten to
    /// mediad's port on that leg (488 when it shares no codec), anything
    /// else (an INFO's) as it is.
    fn relayed_body(
        &self,
        call_id: &str,
        to: Side,
        method: Method,
        raw: &Raw,
        offer: Option<&String>,
    ) -> Result<Option<Body>, Reply> {
        let Some(call) = self.calls.calls.get(call_id) else {
            return Err(Reply::new(481, "Call/Transaction Does Not Exist"));
        };
        let Some((pa, pb)) = call.ports else {
            return Err(Reply::new(491, "Request Pending"));
        };
        let port = if to == Side::A { pa } else { pb };
        match offer {
            Some(o) if method != Method::Info => {
                let host = self.addrs.media_host(&side_peer(call, to));
                let Some(s) = sdp::rewrite(o, &host, port, true) else {
                    return Err(Reply::new(488, "Not Acceptable Here")
                        .with("Warning", "304 gosip \"no shared codec\""));
                };
                Ok(Some(Body::sdp(s)))
            }
            _ if raw.body.is_empty() => Ok(None),
            _ => Ok(Some(Body::copied(raw))),
        }
    }

    /// The headers a relayed request carries besides the dialog's own:
    /// sipd's Contact on `to`'s leg for a target refresh, and an INFO's
    /// Content-Disposition and Info-Package as they are.
    fn relayed_headers(
        &self,
        call_id: &str,
        to: Side,
        method: Method,
        raw: &Raw,
    ) -> Vec<(&'static str, String)> {
        let transport = self.leg_transport(call_id, to);
        let to_host = self
            .calls
            .calls
            .get(call_id)
            .map(|c| self.addrs.via_host(&side_peer(c, to)))
            .unwrap_or_default();
        let mut extra: Vec<(&'static str, String)> = Vec::new();
        if matches!(method, Method::Invite | Method::Update) {
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
        extra
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
        if r.raw
            .cseq()
            .is_some_and(|(_, m)| Method::parse(m) == Some(Method::Cancel))
        {
            return; // the answer to our CANCEL of a re-INVITE
        }
        let status = r.status;
        let invite = x.method == Method::Invite;
        if status < 200 {
            let cancel = x.provisional_answer();
            self.out.extend(cancel);
            return;
        }
        if x.answered {
            // A retransmitted final answer: ACK it again.
            let ack = x.ack_again(r);
            self.out.extend(ack);
            return;
        }
        x.answered = true;
        x.tsx.final_response();
        x.linger_until = now + 64 * T1;
        if invite && status >= 300 {
            self.out.push_back(x.non2xx_ack(&r.raw));
        }
        if x.own {
            self.own_reinvite_answered(now, r);
            return;
        }
        let q = x.requester();
        let branch = r.via.branch.clone();
        let mut answer = self.relayed_answer(&q, r);
        // The other side's 2xx to a re-INVITE with an offer is ACKed now;
        // an offerless one waits for the requester's answer, unless its
        // offer was unusable: then it gets a bare ACK and the call ends.
        let unusable_offer = answer.far_offer.is_some() && answer.code >= 300;
        if unusable_offer {
            answer.far_offer = None;
        }
        let ack = if invite && status < 300 && answer.far_offer.is_none() {
            self.ack_relayed_ok(&q)
        } else {
            None
        };
        let code = answer.code;
        let data = msg::response(
            &q.req,
            q.peer.addr,
            code,
            &answer.reason,
            "",
            &answer.extra,
            answer.body.as_ref().map(Body::parts),
        );
        let t = Transmit { peer: q.peer, data };
        self.txns.respond(now, &q.key, t.clone(), code);
        if q.from == Side::A {
            self.sent_to(&q.call_id, Side::A, answer.body.as_ref());
        } else {
            self.sent_to(&q.call_id, Side::B, answer.body.as_ref());
        }
        if let Some(x) = self.calls.relays.get_mut(&branch) {
            x.ack = ack;
            x.far_offer = answer.far_offer;
            if invite && code < 300 {
                x.ok = Some(UnackedOk::new(now, t));
            }
        }
        tracing::debug!(call_id = %q.call_id, method = %q.method, status, relayed = code, "in-call answer relayed");
        if let (Some(x), true) = (answer.negotiated, code < 300) {
            self.media_negotiated(&q.call_id, q.from, &x.offer, &x.answer);
        }
        if matches!(status, 408 | 481) {
            self.hangup(now, &q.call_id, "the other side lost the dialog");
        } else if unusable_offer {
            self.hangup(now, &q.call_id, "no shared codec in a re-INVITE offer");
        }
    }

    /// What the requester of a relayed request hears for the other side's
    /// final answer `r`: its status and reason, its Retry-After and
    /// Warning, and the body ([`Core::relayed_ok`] for a 2xx with SDP, an
    /// INFO's body as it is).
    fn relayed_answer(&mut self, q: &Requester, r: &msg::Response) -> RelayedAnswer {
        let ports = self.calls.calls.get(&q.call_id).and_then(|c| c.ports);
        let port = ports.map(|(pa, pb)| if q.from == Side::A { pa } else { pb });
        let mut answer = RelayedAnswer {
            code: r.status,
            reason: reason_of(&r.raw).to_string(),
            extra: Vec::new(),
            body: None,
            negotiated: None,
            far_offer: None,
        };
        for (lower, name) in [("retry-after", "Retry-After"), ("warning", "Warning")] {
            if let Some(v) = r.raw.get(lower) {
                answer.extra.push((name, v.to_string()));
            }
        }
        if r.status < 300 && q.method != Method::Info {
            self.relayed_ok(q, r, port, &mut answer);
        } else if q.method == Method::Info && !r.raw.body.is_empty() {
            answer.body = Some(Body::copied(&r.raw));
        }
        answer
    }

    /// The other side's 2xx to a relayed re-INVITE or UPDATE: its Contact
    /// refreshes that leg's target, sipd's Contact goes to the requester,
    /// and its SDP is rewritten to mediad's `port` on the requester's leg
    /// (488 when it shares no codec). Its SDP answers the requester's offer,
    /// or is the other side's offer to an offerless re-INVITE.
    fn relayed_ok(
        &mut self,
        q: &Requester,
        r: &msg::Response,
        port: Option<u16>,
        answer: &mut RelayedAnswer,
    ) {
        if let Some(c) = r.raw.get("contact").map(|c| uri_of(c).to_string()) {
            self.set_target(&q.call_id, q.from.other(), c);
        }
        let transport = self.leg_transport(&q.call_id, q.from);
        answer.extra.push((
            "Contact",
            format!(
                "<sip:gosip@{};transport={}>",
                self.addrs.via_host(&q.peer),
                transport.as_str()
            ),
        ));
        let Some(s) = sdp_of(&r.raw) else {
            return;
        };
        let host = self.addrs.media_host(&q.peer);
        match port.and_then(|p| sdp::rewrite(&s, &host, p, true)) {
            Some(rw) => {
                // An answer to the requester's offer takes its shape;
                // an offer (offerless re-INVITE) goes as it is.
                let rw = match &q.offer {
                    Some(o) => sdp::shape_answer(o, &rw),
                    None => rw,
                };
                answer.body = Some(Body::sdp(rw));
            }
            None => {
                (answer.code, answer.reason) = (488, "Not Acceptable Here".into());
                answer
                    .extra
                    .push(("Warning", "304 gosip \"no shared codec\"".into()));
            }
        }
        match &q.offer {
            Some(o) => {
                answer.negotiated = Some(Exchange {
                    offer: o.clone(),
                    answer: s,
                });
            }
            None if q.method == Method::Invite => answer.far_offer = Some(s),
            None => {}
        }
    }

    /// The ACK of the other side's 2xx to a relayed re-INVITE, in that
    /// leg's dialog with the re-INVITE's CSeq (RFC 3261 section 13.2.2.4).
    fn ack_relayed_ok(&mut self, q: &Requester) -> Option<Transmit> {
        let ack_branch = format!("z9hG4bK{}", self.next_id());
        let (peer, data, _) = self.leg_request(
            &q.call_id,
            q.from.other(),
            Method::Ack,
            &ack_branch,
            Some(q.cseq),
            &[],
            None,
        )?;
        let t = Transmit { peer, data };
        self.out.push_back(t.clone());
        Some(t)
    }

    /// A relayed request the other side never answered (Timer B/F): 408
    /// to the requester, and the call ends (RFC 3261 section 12.2.1.2).
    pub(super) fn relay_timed_out(&mut self, now: u64, branch: &str) {
        let Some(x) = self.calls.relays.get_mut(branch) else {
            return;
        };
        x.answered = true;
        x.tsx.final_response();
        x.linger_until = now;
        if x.own {
            let call_id = x.call_id.clone();
            self.hangup(now, &call_id, "the other side stopped answering");
            return;
        }
        let data = msg::response(&x.req, x.peer.addr, 408, "Request Timeout", "", &[], None);
        let (key, peer, call_id) = (x.key.clone(), x.peer, x.call_id.clone());
        self.txns.respond(now, &key, Transmit { peer, data }, 408);
        tracing::info!(call_id = %call_id, "the other leg did not answer an in-call request");
        self.hangup(now, &call_id, "the other side stopped answering");
    }

    /// Remembers the SDP `side`'s leg was last sent (the base of any
    /// offer sipd makes it later).
    fn sent_to(&mut self, call_id: &str, side: Side, body: Option<&Body>) {
        if let (Some(sdp), Some(call)) = (
            body.and_then(Body::as_sdp),
            self.calls.calls.get_mut(call_id),
        ) {
            match side {
                Side::A => call.a_sdp = sdp,
                Side::B => call.b_sent = sdp,
            }
        }
    }

    /// Takes the caller off hold after a transfer: its phone was last sent
    /// a `sendonly` or `inactive` SDP (the transferor held it), so it sends
    /// nothing until sipd re-INVITEs it with `sendrecv` (RFC 3264 section
    /// 8.4). Nothing when it is not held.
    pub(super) fn unhold_a(&mut self, now: u64, call_id: &str) {
        self.unhold(now, call_id, Side::A);
    }

    /// [`Core::unhold_a`] for either leg.
    pub(super) fn unhold(&mut self, now: u64, call_id: &str, side: Side) {
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        let last = match side {
            Side::A => &call.a_sdp,
            Side::B => &call.b_sent,
        };
        if call.originate || last.is_empty() || sdp::direction(last) == "sendrecv" {
            return;
        }
        let offer = sdp::resume_offer(last);
        if self.own_reinvite(now, call_id, side, offer.clone())
            && let Some(call) = self.calls.calls.get_mut(call_id)
        {
            match side {
                Side::A => call.a_sdp = offer,
                Side::B => call.b_sent = offer,
            }
        }
        tracing::info!(call_id = %call_id, leg = side.leg().as_str_name(), "taking a leg off hold after the transfer");
    }

    /// sipd's own re-INVITE to `to` with `offer` (a leg taken off hold, a
    /// phone moved onto this call's mediad port): no requester waits for
    /// its answer ([`Core::own_reinvite_answered`]). `false` when `to` has
    /// no dialog.
    pub(super) fn own_reinvite(
        &mut self,
        now: u64,
        call_id: &str,
        to: Side,
        offer: String,
    ) -> bool {
        let Some(call) = self.calls.calls.get(call_id) else {
            return false;
        };
        let (req, to_peer) = (call.a_req.clone(), side_peer(call, to));
        let contact = (
            "Contact",
            format!(
                "<sip:gosip@{};transport={}>",
                self.addrs.via_host(&to_peer),
                to_peer.transport.as_str()
            ),
        );
        let branch = format!("z9hG4bK{}", self.next_id());
        let Some((peer, data, cseq)) = self.leg_request(
            call_id,
            to,
            Method::Invite,
            &branch,
            None,
            &[contact],
            Some(("application/sdp", offer.as_bytes())),
        ) else {
            return false;
        };
        let sent = Transmit { peer, data };
        self.out.push_back(sent.clone());
        let relay = Relay::sent(
            now,
            call_id,
            Method::Invite,
            (to.other(), TsxKey::Client(String::new()), peer, req),
            sent,
            cseq,
            Some(offer),
        );
        self.calls
            .relays
            .insert(branch, Relay { own: true, ..relay });
        true
    }

    /// The answer to sipd's own re-INVITE: a 2xx is ACKed and its SDP is
    /// that leg's media now; a failure (already ACKed) leaves things as
    /// they were, and 408/481 end the call.
    fn own_reinvite_answered(&mut self, now: u64, r: &msg::Response) {
        let Some(x) = self.calls.relays.get(&r.via.branch) else {
            return;
        };
        let q = x.requester();
        let to = q.from.other();
        let branch = r.via.branch.clone();
        if r.status >= 300 {
            tracing::warn!(call_id = %q.call_id, status = r.status, leg = to.leg().as_str_name(), "sipd's re-INVITE was refused");
            if matches!(r.status, 408 | 481) {
                self.hangup(now, &q.call_id, "a leg lost the dialog");
            }
            return;
        }
        if let Some(c) = r.raw.get("contact").map(|c| uri_of(c).to_string()) {
            self.set_target(&q.call_id, to, c);
        }
        let ack = self.ack_relayed_ok(&q);
        if let Some(x) = self.calls.relays.get_mut(&branch) {
            x.ack = ack;
        }
        let ip = self.signal_ip(&q.call_id, to);
        if let (Side::B, Some(body), Some(call)) =
            (to, sdp_of(&r.raw), self.calls.calls.get_mut(&q.call_id))
        {
            call.b_media = body;
        }
        if let Some(m) = sdp_of(&r.raw).and_then(|s| sdp::leg_media(&s)) {
            self.events.push_back(Event::MediaUpdate {
                call_id: q.call_id.clone(),
                leg: to.leg(),
                hold: Some(false),
                music: Some(false),
                media: Some(sdp::LegMedia { signal_ip: ip, ..m }),
                established: Some(true),
            });
        }
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
        method: Method,
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
            let data = dialog_request(b, method, n, &local, &realm, branch, extra, body);
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
        let caller_gone = call.a_left && call.a_branch.is_none();
        if to_a && !call.originate && (call.answered_at.is_none() || caller_gone) {
            return;
        }
        let branch = format!("z9hG4bK{}", self.next_id());
        let Some((peer, data, _)) =
            self.leg_request(call_id, side, Method::Bye, &branch, None, &[], None)
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
        let mut resend = Vec::new();
        let mut timed_out = Vec::new();
        let mut no_ack = Vec::new();
        for branch in self.calls.relays.due(now) {
            let Some(x) = self.calls.relays.get_mut(&branch) else {
                continue;
            };
            if x.answered && x.ok.is_none() && now >= x.linger_until {
                self.calls.relays.remove(&branch);
                continue;
            }
            if !x.answered {
                match x.tsx.due(now) {
                    Some(Due::Resend) => resend.push(x.sent.clone()),
                    Some(Due::TimedOut) => timed_out.push(branch),
                    None => {}
                }
            } else {
                match x.ok.as_mut().and_then(|ok| ok.due(now)) {
                    Some(Due::Resend) => resend.extend(x.ok.as_ref().map(|ok| ok.ok().clone())),
                    Some(Due::TimedOut) => {
                        x.ok = None;
                        no_ack.push(x.call_id.clone());
                    }
                    None => {}
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

/// What answering a relayed request needs of its [`Relay`], copied out so
/// the call can change meanwhile.
struct Requester {
    call_id: String,
    /// The side the request came from.
    from: Side,
    method: Method,
    /// The CSeq number it went to the other side with.
    cseq: u32,
    /// The SDP offer it carried.
    offer: Option<String>,
    /// Its server transaction, where it came from, and the request.
    key: TsxKey,
    peer: Peer,
    req: Raw,
}

/// The answer a relayed request's requester gets for the other side's
/// final response.
struct RelayedAnswer {
    code: u16,
    reason: String,
    extra: Vec<(&'static str, String)>,
    body: Option<Body>,
    /// The offer/answer exchange completed by a 2xx, for mediad.
    negotiated: Option<Exchange>,
    /// The other side's offer in its 2xx to an offerless re-INVITE.
    far_offer: Option<String>,
}

/// An offer and its answer (RFC 3264), as received.
struct Exchange {
    offer: String,
    answer: String,
}

/// A message body and its Content-Type.
struct Body {
    content_type: String,
    data: Vec<u8>,
}

impl Body {
    /// The SDP it is, if it is one.
    fn as_sdp(&self) -> Option<String> {
        (self.content_type == "application/sdp")
            .then(|| String::from_utf8_lossy(&self.data).into_owned())
    }

    /// An SDP body.
    fn sdp(sdp: String) -> Body {
        Body {
            content_type: "application/sdp".into(),
            data: sdp.into_bytes(),
        }
    }

    /// A body passed on as it is, with its Content-Type
    /// (`application/octet-stream` when it names none).
    fn copied(raw: &Raw) -> Body {
        Body {
            content_type: raw
                .get("content-type")
                .unwrap_or("application/octet-stream")
                .to_string(),
            data: raw.body.clone(),
        }
    }

    /// The form the message builders take.
    fn parts(&self) -> (&str, &[u8]) {
        (self.content_type.as_str(), self.data.as_slice())
    }
}

impl Relay {
    /// The other side's provisional answer: a re-INVITE stops its Timer A,
    /// and a CANCEL its requester sent meanwhile may now follow it (RFC
    /// 3261 section 9.1), returned for sending; another request's Timer E
    /// goes to T2 (RFC 3261 section 17.1.2.2).
    fn provisional_answer(&mut self) -> Option<Transmit> {
        if self.method != Method::Invite {
            self.tsx.provisional();
            return None;
        }
        // Unlike a B-leg INVITE's Timer B, which a provisional answer stops
        // (RFC 3261 section 17.1.1.2), a re-INVITE still gets 64*T1 for
        // its final answer: it changes media in a call already up, rings
        // nobody, and the requester waits on it.
        self.tsx.stop_resending();
        self.provisional = true;
        if self.cancel && !self.cancel_sent && !self.answered {
            self.cancel_sent = true;
            let cancel = cancel_for(&String::from_utf8_lossy(&self.sent.data));
            return Some(Transmit {
                peer: self.sent.peer,
                data: cancel,
            });
        }
        None
    }

    /// The ACK again for a retransmitted final answer to a re-INVITE: the
    /// 2xx's kept ACK, or a new ACK of the non-2xx.
    fn ack_again(&self, r: &msg::Response) -> Option<Transmit> {
        if self.method != Method::Invite {
            None
        } else if r.status < 300 {
            self.ack.clone()
        } else {
            Some(self.non2xx_ack(&r.raw))
        }
    }

    /// The ACK of a non-2xx final answer to the relayed re-INVITE (RFC
    /// 3261 section 17.1.1.3).
    fn non2xx_ack(&self, resp: &Raw) -> Transmit {
        Transmit {
            peer: self.sent.peer,
            data: non2xx_ack(&self.sent.data, resp),
        }
    }

    /// The parts of the request its answer needs.
    fn requester(&self) -> Requester {
        Requester {
            call_id: self.call_id.clone(),
            from: self.from,
            method: self.method,
            cseq: self.cseq,
            offer: self.offer.clone(),
            key: self.key.clone(),
            peer: self.peer,
            req: self.req.clone(),
        }
    }
}

/// The key of a DTMF INFO: `Signal=5` (application/dtmf-relay) or the
/// bare key (application/dtmf).
fn info_key(raw: &Raw) -> Option<char> {
    let body = String::from_utf8_lossy(&raw.body);
    let value = body
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| body.trim().to_string());
    let key = value.chars().next()?;
    (value.chars().count() == 1 && (key.is_ascii_digit() || matches!(key, '*' | '#')))
        .then_some(key)
}
