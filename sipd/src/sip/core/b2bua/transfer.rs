//! Blind transfer (REFER, RFC 3515): either phone of a call asks sipd to
//! connect the other party to another extension or user, or to a number
//! outside (dialled through the trunk with the transferor's rights and DID,
//! as its own outbound call would be). sipd accepts
//! with 202, rings the target on new branches of the same call (the
//! transferee keeps its dialog and mediad port; the target gets mediad's
//! port of the transferor's leg, so nobody's media moves but the
//! transferor's), and reports each step to
//! the transferor as a NOTIFY of the `refer` event with a `message/sipfrag`
//! body (RFC 3515 section 2.4.5). When the target answers, it takes the
//! transferor's place and the transferor gets its final NOTIFY and a BYE;
//! when the target fails (busy, declined, nobody registered, the ring time
//! over) the call stays as it was, and the transferor's NOTIFY says why. A
//! transferor that hung up meanwhile leaves the caller waiting (hearing the
//! hold music when the call was on hold); a failure then ends the call.
//!
//! A REFER to the park code parks the call instead ([`super::park`]).
//!
//! A Refer-To with Replaces is an attended transfer ([`super::attended`]).
//!
//! When the caller's side transfers, the target's branch becomes the call's
//! side A ([`Call::a_branch`]): sipd is a UAC towards it, as towards the
//! callee. Calls from the trunk are transferred by the phone that answered
//! (Twilio does not transfer), click-to-call calls not at all.

use super::media::Ring;
use super::*;
use proto::types::DeviceId;

/// Whom a transfer rings: devices of this system, or a number (E.164)
/// through the trunk with the caller ID to send.
pub(super) enum Target {
    Devices(Vec<DeviceId>),
    Number(String, String),
}

/// A transfer under way in a call.
#[derive(Debug)]
pub(super) struct Transfer {
    /// The transferor's side, and its branch when it has one (the
    /// answered one; none for the caller's own dialog).
    pub(super) side: Side,
    by: Option<usize>,
    /// Branches from this index on ring the target.
    pub(super) first: usize,
    /// The target as the transferor named it (user part of Refer-To).
    target: String,
    /// The transferor's user, for the CDR.
    from: String,
    /// When the target has rung long enough.
    pub(super) deadline: u64,
    /// The transferor hung up before the target answered.
    gone: bool,
    /// A parked call ringing its parker again (see [`super::park`]).
    ring_back: bool,
}

impl Transfer {
    /// A parked call ringing the phone that parked it (branch `by`, gone)
    /// on branches from `first` until `deadline`.
    pub(super) fn ring_back(by: usize, first: usize, parker: &str, deadline: u64) -> Transfer {
        Transfer {
            side: Side::B,
            by: Some(by),
            first,
            target: parker.to_string(),
            from: parker.to_string(),
            deadline,
            gone: true,
            ring_back: true,
        }
    }
}

impl Core {
    /// Whether the call can be transferred by its phone on `side` now: the
    /// transferor's (branch, device, address), or the answer to the REFER.
    fn transferable(
        &self,
        call_id: &str,
        side: Side,
    ) -> Result<(Option<usize>, DeviceId, std::net::IpAddr), Reply> {
        let Some(call) = self.calls.calls.get(call_id) else {
            return Err(Reply::new(481, "Call/Transaction Does Not Exist"));
        };
        // Answered, but the caller's ACK is not in yet: try again shortly.
        if call.state == State::Answering {
            return Err(Reply::new(491, "Request Pending"));
        }
        if call.originate
            || call.state != State::Up
            || call.voicemail.is_some()
            || call.listen.is_some()
            || dialog_branch(call, Side::B).is_none()
        {
            return Err(decline("this call cannot be transferred"));
        }
        let Some(t) = transferor_of(call, side) else {
            return Err(decline("only a phone of the call can transfer it"));
        };
        if call.transfer.is_some() || call.park.is_some() {
            return Err(Reply::new(491, "Request Pending"));
        }
        Ok(t)
    }

    /// A REFER inside a call, from `side`. Answers 202 and starts ringing
    /// the target, or refuses with the call unchanged: 400 without exactly
    /// one Refer-To, 404 for a target that is no device here, 491 while
    /// another transfer runs, 603 for what sipd does not transfer.
    pub(super) fn refer(&mut self, now: u64, r: &msg::Request, call_id: &str, side: Side) -> Reply {
        let refer_to: Vec<&str> = r.raw.all("refer-to").collect();
        let [refer_to] = refer_to.as_slice() else {
            return Reply::new(400, "Bad Request")
                .with("Warning", "399 gosip \"exactly one Refer-To is needed\"");
        };
        let uri = uri_of(refer_to);
        if uri.to_ascii_lowercase().contains("replaces=") {
            return match attended::replaces_of(uri) {
                Some(rep) => self.attended(now, call_id, side, &rep),
                None => Reply::new(400, "Bad Request").with(
                    "Warning",
                    "399 gosip \"Replaces needs a Call-ID, a to-tag and a from-tag\"",
                ),
            };
        }
        let (by, by_device, by_ip) = match self.transferable(call_id, side) {
            Ok(t) => t,
            Err(reply) => return reply,
        };
        let dialed = user_of(uri).unwrap_or_default().to_string();
        let Some(transferor) = self.devices.values().find(|d| d.id == by_device).cloned() else {
            return Reply::new(481, "Call/Transaction Does Not Exist");
        };
        if !self.cfg.park_code.is_empty() && dialed == self.cfg.park_code {
            return match (side, by) {
                (Side::B, Some(by)) => self.park(now, call_id, by, &transferor),
                _ => decline("the phone that answered parks a call"),
            };
        }
        let callees = self.callees_of_user(&dialed);
        let target = if callees.is_empty() {
            match self.outside_target(now, &dialed, &transferor, by_ip) {
                Ok(t) => t,
                Err(reply) => return reply,
            }
        } else {
            Target::Devices(callees)
        };
        let target_name = match &target {
            Target::Devices(_) => dialed.clone(),
            Target::Number(n, _) => n.clone(),
        };
        let from = transferor
            .extension
            .clone()
            .unwrap_or_else(|| transferor.username.clone());
        tracing::info!(call_id = %call_id, by = %from, to = %target_name, "transfer asked");
        let Some(call) = self.calls.calls.get(call_id) else {
            return Reply::new(481, "Call/Transaction Does Not Exist");
        };
        let first = call.branches.len();
        if let Some(call) = self.calls.calls.get_mut(call_id) {
            call.transfer = Some(Transfer {
                side,
                by,
                first,
                target: target_name.clone(),
                from,
                deadline: now + self.cfg.ring_timeout_ms,
                gone: false,
                ring_back: false,
            });
        }
        self.notify_transferor(now, call_id, 100, "Trying");
        if !self.ring_target(now, call_id, &target_name, &target) {
            let busy = matches!(&target, Target::Devices(ids) if ids.iter().all(|id| self.busy(*id, call_id)));
            let (code, reason) = if busy {
                (486, "Busy Here")
            } else {
                (480, "Temporarily Unavailable")
            };
            self.transfer_failed(now, call_id, code, reason);
        }
        Reply::new(202, "Accepted")
    }

    /// A transfer target that is no device here: a number dialled out
    /// through the trunk, with the transferor's rights (the number rules,
    /// its trunk call limits) and its DID as caller ID (the trunk takes
    /// only our numbers). `Err` is the answer to the REFER.
    fn outside_target(
        &mut self,
        now: u64,
        dialed: &str,
        transferor: &Device,
        ip: std::net::IpAddr,
    ) -> Result<Target, Reply> {
        if self.cfg.termination.is_none() {
            return Err(Reply::new(404, "Not Found").with(
                "Warning",
                "399 gosip \"no phone has this extension or user\"",
            ));
        }
        let Some(caller_id) = transferor.caller_id.clone() else {
            return Err(Reply::new(403, "Forbidden")
                .with("Warning", "399 gosip \"no DID to use as caller ID\""));
        };
        if self.is_emergency(dialed) {
            return Err(decline("emergency numbers are dialled, not transferred to"));
        }
        let n = self.place_outbound(now, dialed, transferor, ip)?;
        Ok(Target::Number(n, caller_id))
    }

    /// The devices an extension or user names (none for anything else).
    pub(super) fn callees_of_user(&self, user: &str) -> Vec<DeviceId> {
        self.devices
            .get(user)
            .or_else(|| self.extensions.get(user).and_then(|u| self.devices.get(u)))
            .map(|d| vec![d.id])
            .unwrap_or_default()
    }

    /// New branches ringing the target with the caller's offer on
    /// mediad's B-leg port: every registered contact of its devices, or the
    /// trunk for a number; `false` when there is nothing to ring.
    pub(super) fn ring_target(
        &mut self,
        now: u64,
        call_id: &str,
        name: &str,
        target: &Target,
    ) -> bool {
        let Some(call) = self.calls.calls.get(call_id) else {
            return false;
        };
        let Some((pa, pb)) = call.ports else {
            return false;
        };
        // The target takes the transferor's leg and port, and hears from
        // the party that stays.
        let by_caller = call.transfer.as_ref().is_some_and(|t| t.side == Side::A);
        let (offer_src, caller, port) = if by_caller {
            (call.b_media.clone(), call.to_user.clone(), pa)
        } else {
            (call.offer.clone(), call.from_user.clone(), pb)
        };
        // (where, Request-URI, device, From user)
        let targets: Vec<(Peer, String, DeviceId, String)> = match (target, &self.cfg.termination) {
            (Target::Number(n, caller_id), Some(t)) => {
                vec![(t.peer(), t.uri(n), TRUNK_ID, caller_id.clone())]
            }
            (Target::Number(..), None) => Vec::new(),
            (Target::Devices(ids), _) => ids
                .iter()
                .filter(|id| !self.busy(**id, call_id))
                .flat_map(|id| self.registrar.bindings_of(*id))
                .map(|b| (b.target(), b.contact.clone(), b.device_id, caller.clone()))
                .collect(),
        };
        if targets.is_empty() {
            return false;
        }
        for (peer, contact, device_id, from_user) in targets {
            let ids = self.dialog_ids();
            let local = self.addrs.via_host(&peer);
            let offer = sdp::rewrite(&offer_src, &self.addrs.media_host(&peer), port, false)
                .unwrap_or_default();
            let ring = Ring {
                branch: NewBranch {
                    peer,
                    device_id,
                    contact,
                    from_user,
                    to_user: name.to_string(),
                    ids,
                },
                local,
                offer,
            };
            let Some(invite) = self
                .calls
                .calls
                .get(call_id)
                .map(|call| self.ring_invite(call, &ring))
            else {
                return false;
            };
            self.start_branch(now, call_id, ring.branch, invite);
        }
        true
    }

    /// Whether branch `i` rings the target of the call's transfer.
    pub(super) fn rings_target(&self, call_id: &str, i: usize) -> bool {
        self.calls
            .calls
            .get(call_id)
            .and_then(|c| c.transfer.as_ref())
            .is_some_and(|t| i >= t.first)
    }

    /// The target answered on branch `i` (its 2xx ACKed): it takes the
    /// transferor's place. The transferor hears the outcome and is hung
    /// up; mediad sends the caller's audio to the target, and the caller
    /// hears the target (no hold music any more).
    pub(super) fn transfer_answered(&mut self, now: u64, call_id: &str, i: usize, body: &str) {
        self.notify_transferor(now, call_id, 200, "OK");
        let Some(t) = self
            .calls
            .calls
            .get_mut(call_id)
            .and_then(|c| c.transfer.take())
        else {
            return;
        };
        let (leg, stays) = (t.side, t.side.other());
        if !t.gone {
            self.hangup_leg(now, call_id, leg == Side::A);
        }
        let offer_src = self.calls.calls.get(call_id).map(|c| match leg {
            Side::A => c.b_media.clone(),
            Side::B => c.offer.clone(),
        });
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        if let Some(b) = t.by.and_then(|by| call.branches.get_mut(by)) {
            b.state = BranchState::Done;
        }
        let Some(b) = call.branches.get_mut(i) else {
            return;
        };
        b.state = BranchState::Won;
        let (device_id, peer_ip, peer) = (b.device_id, b.peer.addr.ip(), b.peer);
        match leg {
            Side::A => {
                call.a_branch = Some(i);
                call.from_user = t.target.clone();
            }
            Side::B => {
                call.to_user = t.target.clone();
                call.b_media = body.to_string();
                call.b_sent = offer_src
                    .zip(call.ports)
                    .and_then(|(o, (_, pb))| {
                        sdp::rewrite(&o, &self.addrs.media_host(&peer), pb, false)
                    })
                    .unwrap_or_default();
            }
        }
        if !t.ring_back {
            call.history
                .push(format!("transferred by {} to {}", t.from, t.target));
        }
        tracing::info!(call_id = %call_id, to = %t.target, by_leg = leg.leg().as_str_name(), "transfer answered");
        self.cancel_branches(call_id, Some(i));
        // The target's crypto first: the leg may have been a browser's.
        self.hop_keys_to_mediad(call_id, leg);
        if let Some(m) = sdp::leg_media(body).map(|m| m.signalled_from(peer_ip)) {
            self.events.push_back(Event::MediaUpdate {
                call_id: call_id.to_string(),
                leg: leg.leg(),
                hold: Some(false),
                music: Some(false),
                media: Some(m),
                established: Some(true),
            });
        }
        self.events.push_back(Event::MediaUpdate {
            call_id: call_id.to_string(),
            leg: stays.leg(),
            hold: Some(false),
            music: Some(false),
            media: None,
            established: None,
        });
        // A number outside is no device: the row keeps the one before.
        self.events.push_back(Event::Cdr(Cdr::Answered {
            call_id: call_id.to_string(),
            at: now,
            device_id: (device_id != TRUNK_ID && leg == Side::B).then_some(device_id),
        }));
        if t.ring_back {
            self.rung_back(call_id);
        }
        // A transferor that held the other party first (desk phones do)
        // left its phone sending nothing.
        self.unhold(now, call_id, stays);
    }

    /// A target branch failed, or the ring time ran out: once no target
    /// branch rings any more, the transfer failed.
    pub(super) fn transfer_progress(&mut self, now: u64, call_id: &str) {
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        let Some(t) = &call.transfer else {
            return;
        };
        let over = now >= t.deadline;
        let target = &call.branches[t.first.min(call.branches.len())..];
        let ringing = target
            .iter()
            .any(|b| matches!(b.state, BranchState::Calling | BranchState::Proceeding));
        if ringing && !over {
            return;
        }
        let codes: Vec<u16> = target.iter().map(|b| b.status).collect();
        let (code, reason) = if codes.contains(&486) || codes.contains(&600) {
            (486, "Busy Here")
        } else if codes.contains(&603) {
            (603, "Decline")
        } else if over {
            (408, "Request Timeout")
        } else {
            (480, "Temporarily Unavailable")
        };
        self.cancel_branches(call_id, None);
        self.transfer_failed(now, call_id, code, reason);
    }

    /// The transfer ends without the target: the transferor hears why and
    /// keeps the call, or, when it already hung up, the call ends.
    fn transfer_failed(&mut self, now: u64, call_id: &str, code: u16, reason: &str) {
        self.notify_transferor(now, call_id, code, reason);
        let Some(t) = self
            .calls
            .calls
            .get_mut(call_id)
            .and_then(|c| c.transfer.take())
        else {
            return;
        };
        tracing::info!(call_id = %call_id, to = %t.target, code, "transfer failed");
        if t.ring_back {
            self.ring_back_failed(now, call_id);
        } else if t.gone {
            self.hangup_leg(now, call_id, t.side == Side::B);
            let why = format!(
                "transfer by {} to {} failed: {code} {reason}",
                t.from, t.target
            );
            self.end_call(now, call_id, "answered", &why);
        }
    }

    /// The transferor (on `side`) hung up while the target rings: its leg
    /// ends, the call does not. `false` when no transfer by `side` runs
    /// (the BYE ends the call).
    pub(super) fn transferor_left(&mut self, call_id: &str, side: Side) -> bool {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return false;
        };
        let Some(t) = call
            .transfer
            .as_mut()
            .filter(|t| t.side == side && !t.ring_back)
        else {
            return false;
        };
        t.gone = true;
        match t.by {
            Some(by) => {
                if let Some(b) = call.branches.get_mut(by) {
                    b.state = BranchState::Done;
                }
            }
            None => call.a_left = true,
        }
        true
    }

    /// A NOTIFY of the `refer` event to the transferor with the status
    /// line of the target's answer; a final status ends the subscription
    /// (RFC 3515 sections 2.4.4-2.4.7). Nothing when it hung up.
    fn notify_transferor(&mut self, now: u64, call_id: &str, code: u16, reason: &str) {
        if self
            .calls
            .calls
            .get(call_id)
            .and_then(|c| c.transfer.as_ref())
            .is_none_or(|t| t.gone)
        {
            return;
        }
        let side = self
            .calls
            .calls
            .get(call_id)
            .and_then(|c| c.transfer.as_ref())
            .map_or(Side::B, |t| t.side);
        self.notify_refer(now, call_id, side, code, reason);
    }

    /// The NOTIFY itself, in `side`'s dialog (the one the REFER came in).
    pub(super) fn notify_refer(
        &mut self,
        now: u64,
        call_id: &str,
        side: Side,
        code: u16,
        reason: &str,
    ) {
        let state = if code < 200 {
            "active;expires=60".to_string()
        } else {
            "terminated;reason=noresource".to_string()
        };
        let frag = format!("SIP/2.0 {code} {reason}\r\n");
        let branch = format!("z9hG4bK{}", self.next_id());
        let Some((peer, data, _)) = self.leg_request(
            call_id,
            side,
            Method::Notify,
            &branch,
            None,
            &[
                ("Event", "refer".to_string()),
                ("Subscription-State", state),
            ],
            Some(("message/sipfrag;version=2.0", frag.as_bytes())),
        ) else {
            return;
        };
        self.txns
            .send_request(now, &branch, Transmit { peer, data }, 64 * T1);
    }
}

/// Who transfers from `side` of `call`: its branch (none for the caller's
/// own dialog), device and address. `None` for a side that is no phone
/// here (the trunk).
pub(super) fn transferor_of(
    call: &Call,
    side: Side,
) -> Option<(Option<usize>, DeviceId, std::net::IpAddr)> {
    let found = match dialog_branch(call, side) {
        Some(i) => (
            Some(i),
            call.branches[i].device_id,
            call.branches[i].peer.addr.ip(),
        ),
        None if side == Side::A && call.direction != "inbound" && !call.a_left => {
            (None, call.device_id, call.a_peer.addr.ip())
        }
        None => return None,
    };
    (found.1 != TRUNK_ID).then_some(found)
}

/// 603 with the reason in a Warning (RFC 3261 section 20.43).
pub(super) fn decline(why: &str) -> Reply {
    Reply::new(603, "Decline").with("Warning", format!("399 gosip \"{why}\""))
}
