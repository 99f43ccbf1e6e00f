//! Phones that join a call with an INVITE of their own: call pickup (the
//! pickup code, `*8`, answers the call that has rung longest; `*8<ext>` the
//! one ringing that extension) and a parked call taken back (`*71<slot>`,
//! see [`super::park`]). sipd answers the joining phone's INVITE as its UAS
//! with mediad's B-leg port, and that dialog becomes the call's answered B
//! side, as if the phone had answered a branch of its own: in-dialog
//! requests, hold, transfer and hang-up work the same (sipd's requests in
//! it carry the INVITE's To as From, RFC 3261 section 12.1.1). Its 2xx is
//! re-sent until the ACK ([`UnackedOk`]).
//!
//! Every phone of the system is one pickup group (a home office): any
//! phone may answer a call ringing any other. Calls out through the trunk
//! ring no phone here and cannot be picked up.

use super::*;
use crate::sip::core::Leg;
use proto::types::DeviceId;

impl Branch {
    /// The dialog of a phone that joined a call with its INVITE `raw`,
    /// which sipd answered (`tag`, its 2xx `ok`, re-sent until the ACK):
    /// answered already; sipd's requests in it go From the INVITE's To.
    fn joined(
        now: u64,
        (peer, device_id): (Peer, DeviceId),
        raw: &Raw,
        tag: String,
        ok: Vec<u8>,
    ) -> Branch {
        let their = |h: &str| raw.get(h).unwrap_or_default();
        let dialed = user_of(raw.start().split(' ').nth(1).unwrap_or_default()).unwrap_or_default();
        Branch {
            cseq: raw.cseq().map_or(1, |c| c.0),
            from_user: dialed.to_string(),
            to_user: user_of(uri_of(their("from")))
                .unwrap_or_default()
                .to_string(),
            to_tag: tag_of(their("from")).unwrap_or_default().to_string(),
            state: BranchState::Won,
            status: 200,
            tsx: ClientTimers::idle(),
            local_cseq: 0,
            // A UAS keeps Record-Route in order (RFC 3261 section 12.1.1).
            route: route_set(raw),
            ok: Some(UnackedOk::new(now, Transmit { peer, data: ok })),
            ..Branch::calling(
                now,
                NewBranch {
                    peer,
                    device_id,
                    contact: uri_of(their("contact")).to_string(),
                    from_user: String::new(),
                    to_user: String::new(),
                    ids: DialogIds {
                        branch: String::new(),
                        call_id: their("call-id").to_string(),
                        from_tag: tag,
                    },
                },
                Vec::new(),
            )
        }
    }
}

/// A feature code dialled instead of a number.
pub(super) enum Feature {
    /// Pickup: any ringing call, or (`Some`) the one ringing that user or
    /// extension.
    Pickup(Option<String>),
    /// Take back the call parked in the slot (`None`: the one parked
    /// longest).
    Retrieve(Option<String>),
}

impl Core {
    /// The feature `dialed` asks for, by the codes in the settings (the
    /// longer match first, so `*71` wins over a pickup code `*7`).
    pub(super) fn feature_of(&self, inbound: bool, dialed: &str) -> Option<Feature> {
        // Codes dialled as they are win over a prefix: with a pickup code
        // `*9`, `*97` is still the voicemail access code.
        let exact = [&self.cfg.voicemail_code, &self.cfg.park_code];
        if inbound || exact.iter().any(|c| !c.is_empty() && dialed == c.as_str()) {
            return None;
        }
        let after = |code: &str| {
            (!code.is_empty())
                .then(|| dialed.strip_prefix(code))
                .flatten()
                .filter(|rest| rest.chars().all(|c| c.is_ascii_alphanumeric()))
                .map(|rest| (!rest.is_empty()).then(|| rest.to_string()))
        };
        let retrieve = after(&self.cfg.park_retrieve_code).map(Feature::Retrieve);
        let pickup = after(&self.cfg.pickup_code).map(Feature::Pickup);
        if self.cfg.park_retrieve_code.len() >= self.cfg.pickup_code.len() {
            retrieve.or(pickup)
        } else {
            pickup.or(retrieve)
        }
    }

    /// A phone's INVITE to a feature code: it joins the call it names, or
    /// gets 404 when there is none.
    pub(super) fn join_feature(
        &mut self,
        now: u64,
        peer: Peer,
        r: &msg::Request,
        key: &TsxKey,
        joiner: &Device,
        feature: Feature,
    ) -> Reply {
        let (call_id, what) = match &feature {
            Feature::Pickup(ext) => (
                self.ringing_call(joiner.id, ext.as_deref()),
                "no call to pick up",
            ),
            Feature::Retrieve(slot) => (self.parked_call(slot.as_deref()), "no call parked there"),
        };
        let Some(call_id) = call_id else {
            return Reply::new(404, "Not Found").with("Warning", format!("399 gosip \"{what}\""));
        };
        let who = joiner
            .extension
            .clone()
            .unwrap_or_else(|| joiner.username.clone());
        let (i, codec) = match self.join_leg(now, &call_id, peer, r, key, joiner.id) {
            Ok(joined) => joined,
            Err(reply) => return reply,
        };
        match feature {
            Feature::Pickup(_) => self.picked_up(now, &call_id, i, codec, &who),
            Feature::Retrieve(_) => self.retrieved(now, &call_id, i, &who),
        }
        Reply::deferred()
    }

    /// The call ringing longest that `picker` may answer: one ringing a
    /// phone here (for `ext`, that user's or extension's phone), not its
    /// own call.
    fn ringing_call(&self, picker: DeviceId, ext: Option<&str>) -> Option<String> {
        let wanted = ext.map(|e| self.callees_of_user(e));
        self.calls
            .calls
            .values()
            .filter(|c| {
                c.state == State::Ringing
                    && !c.originate
                    && c.outbound.is_none()
                    && c.listen.is_none()
                    && c.voicemail.is_none()
                    && !(c.direction == "internal" && c.device_id == picker)
                    && c.branches.iter().any(|b| {
                        matches!(b.state, BranchState::Calling | BranchState::Proceeding)
                            && b.device_id != TRUNK_ID
                            && wanted.as_ref().is_none_or(|w| w.contains(&b.device_id))
                    })
            })
            .min_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)))
            .map(|c| c.id.clone())
    }

    /// Answers a joining phone's INVITE with mediad's B-leg port in the
    /// codec the caller speaks, and files its dialog as the call's newest
    /// branch, answered; mediad sends the B-leg to the phone. Returns the
    /// branch. `Err` (488) when the INVITE has no offer or no codec in
    /// common with the caller (mediad relays, never transcodes).
    fn join_leg(
        &mut self,
        now: u64,
        call_id: &str,
        peer: Peer,
        r: &msg::Request,
        key: &TsxKey,
        device_id: DeviceId,
    ) -> Result<(usize, &'static str), Reply> {
        let raw = &r.raw;
        let Some(offer) = sdp_of(raw) else {
            return Err(Reply::new(488, "Not Acceptable Here").with(
                "Warning",
                "399 gosip \"an SDP offer is needed to join a call\"",
            ));
        };
        // The joining phone's own dialog gets its own SRTP keys.
        let dialog = raw.get("call-id").unwrap_or_default().to_string();
        let policy = self.srtp_policy(device_id);
        self.open_hop(&dialog, &peer, policy);
        if let Some(why) = self.hop_refuses(&dialog, &offer) {
            self.calls.hops.remove(&dialog);
            return Err(Reply::new(488, "Not Acceptable Here")
                .with("Warning", format!("302 gosip \"{why}\"")));
        }
        let call = self
            .calls
            .calls
            .get(call_id)
            .ok_or_else(|| Reply::new(481, "Call/Transaction Does Not Exist"))?;
        // What the caller speaks: its answer once answered, else its offer.
        let caller_sdp = if call.answered_at.is_some() {
            &call.a_sdp
        } else {
            &call.offer
        };
        let (Some(codec), Some((_, pb))) = (sdp::shared_g711(caller_sdp, &offer), call.ports)
        else {
            return Err(Reply::new(488, "Not Acceptable Here")
                .with("Warning", "304 gosip \"no codec shared with the caller\""));
        };
        let answer = sdp::answer_in(&offer, &self.addrs.media_host(&peer), pb, codec)
            .ok_or_else(|| Reply::new(488, "Not Acceptable Here"))?;
        let tag = self.next_id();
        let contact = format!(
            "<sip:gosip@{};transport={}>",
            self.addrs.via_host(&peer),
            peer.transport.as_str()
        );
        let data = msg::response(
            raw,
            peer.addr,
            200,
            "OK",
            &tag,
            &[("Contact", contact), ("Allow", msg::ALLOW.to_string())],
            Some(("application/sdp", answer.as_bytes())),
        );
        self.txns.respond(
            now,
            key,
            Transmit {
                peer,
                data: data.clone(),
            },
            200,
        );
        let joined = Branch::joined(now, (peer, device_id), raw, tag, data);
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return Err(Reply::new(481, "Call/Transaction Does Not Exist"));
        };
        self.calls
            .by_b_call_id
            .insert(joined.call_id.clone(), call_id.to_string());
        call.branches.push(joined);
        call.b_media = offer.clone();
        call.b_sent = answer;
        let n = call.branches.len();
        self.hop_in(&peer, raw);
        if let Some(m) = sdp::leg_media(&offer).map(|m| m.signalled_from(peer.addr.ip())) {
            self.events.push_back(Event::MediaUpdate {
                call_id: call_id.to_string(),
                leg: Leg::B,
                hold: Some(m.hold),
                music: Some(false),
                media: Some(m),
                established: Some(true),
            });
        }
        Ok((n - 1, codec))
    }

    /// A ringing call picked up on branch `i`: the phones still ringing
    /// stop, and the caller gets sipd's answer in `codec`, the one the
    /// picking phone was answered in.
    fn picked_up(&mut self, now: u64, call_id: &str, i: usize, codec: &str, who: &str) {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        let Some((pa, _)) = call.ports else {
            return;
        };
        call.history.push(format!("picked up by {who}"));
        tracing::info!(call_id = %call_id, by = %who, "call picked up");
        let media_ip = self.addrs.media_host(&call.a_peer);
        let Some(answer) = sdp::answer_in(&call.offer, &media_ip, pa, codec) else {
            return;
        };
        self.cancel_branches(call_id, Some(i));
        self.answer_caller(now, call_id, i, answer);
        self.record_if_wanted(call_id, i);
    }
}
