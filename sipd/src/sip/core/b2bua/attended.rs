//! Attended transfer: bob talks to alice, holds her, calls carol (a consult
//! call) and presses Transfer; his phone sends a REFER whose Refer-To
//! carries `Replaces` (RFC 3891, RFC 5589 section 7) naming his other
//! dialog. Phones send it in either call: to alice naming the consult call,
//! or to carol naming alice's. sipd, the far end of both of bob's dialogs,
//! joins the two people bob talks to without anyone ringing again: carol's
//! leg moves into alice's call (a re-INVITE moves her media to that call's
//! mediad port), alice is taken off hold, bob hears the outcome (NOTIFY
//! 200) and gets BYE in both calls, and the consult call's CDR ends.
//!
//! The call that stays is the one bob answered (sipd is the caller's UAS
//! there); the one that gives up its leg is the one bob placed. When bob
//! placed both, the party of the named call moves into the call the REFER
//! came in as its side A ([`Call::a_branch`]); when he answered both (call
//! waiting), the named call's caller moves, its own dialog with sipd
//! becoming a branch of the other call. Nobody can join
//! dialogs of another phone: Replaces must name a dialog of the very device
//! that sent the REFER, so knowing a Call-ID and tags takes no one's call.

use super::transfer::{decline, transferor_of};
use super::*;
use proto::types::DeviceId;

/// A dialog as Replaces names it from the sender's side: its Call-ID,
/// the remote tag (`to-tag`) and the sender's own (`from-tag`).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Replaces {
    call_id: String,
    to_tag: String,
    from_tag: String,
}

/// The Replaces header embedded in a Refer-To URI
/// (`sip:103@h?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2`).
pub(super) fn replaces_of(uri: &str) -> Option<Replaces> {
    let (_, headers) = uri.split_once('?')?;
    let value = headers.split('&').find_map(|h| {
        let (name, v) = h.split_once('=')?;
        name.eq_ignore_ascii_case("replaces").then_some(v)
    })?;
    // A malformed escape makes the whole Replaces unusable (400).
    let value = crate::sip::uri::unescape(value)?;
    let mut parts = value.split(';');
    let call_id = parts.next()?.trim().to_string();
    let (mut to_tag, mut from_tag) = (None, None);
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            match k.trim().to_ascii_lowercase().as_str() {
                "to-tag" => to_tag = Some(v.trim().to_string()),
                "from-tag" => from_tag = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    (!call_id.is_empty()).then_some(Replaces {
        call_id,
        to_tag: to_tag?,
        from_tag: from_tag?,
    })
}

/// The two calls of an attended transfer: `keep` (bob answered it; its
/// branch `by` is bob) and `give` (bob placed it; its answered branch
/// `moving` is the party that moves).
struct Join {
    keep: String,
    /// The transferor's side in `keep`, and its device.
    side: Side,
    by_device: DeviceId,
    give: String,
    /// The transferor's side in `give`.
    give_side: Side,
    moving: Moving,
}

/// The party that moves: a branch of `give`, or its caller's own dialog
/// (sipd its UAS), which becomes a branch of `keep`.
enum Moving {
    Branch(usize),
    Caller,
}

impl Core {
    /// A REFER with Replaces from `side` of `call_id`: the two parties are
    /// joined, or the REFER is refused with both calls as they were.
    pub(super) fn attended(
        &mut self,
        now: u64,
        call_id: &str,
        side: Side,
        rep: &Replaces,
    ) -> Reply {
        let Some((other, other_side)) = self.dialog_named(rep) else {
            return Reply::new(481, "Call/Transaction Does Not Exist")
                .with("Warning", "399 gosip \"Replaces names no dialog here\"");
        };
        // Only the phone's own dialogs: knowing someone's Call-ID and tags
        // takes nothing.
        let device = |id: &str, side: Side| {
            self.calls
                .calls
                .get(id)
                .and_then(|c| transferor_of(c, side))
                .map(|(_, device, _)| device)
        };
        let (sender, named) = (device(call_id, side), device(&other, other_side));
        if sender.is_none() || sender != named {
            return Reply::new(403, "Forbidden").with(
                "Warning",
                "399 gosip \"Replaces names another phone's call\"",
            );
        }
        let join = match (side, other_side) {
            (Side::B, Side::A) => self.join_of(call_id, &other, Side::B),
            (Side::A, Side::B) => self.join_of(&other, call_id, Side::B),
            // The phone placed both calls: the party of the named one
            // takes the phone's place in the call the REFER came in.
            (Side::A, Side::A) => self.join_of(call_id, &other, Side::A),
            // The phone answered both (call waiting): the caller of the
            // named one takes its place in the call the REFER came in.
            (Side::B, Side::B) => self.join_of(call_id, &other, Side::B),
        };
        let Some(join) = join.filter(|_| other != call_id) else {
            return decline("these two calls cannot be joined");
        };
        // The REFER's dialog hears the outcome before its BYE.
        self.notify_refer(now, call_id, side, 200, "OK");
        self.join_calls(now, join);
        Reply::new(202, "Accepted")
    }

    /// The live call and side whose dialog `rep` names (from the
    /// transferor's side: its tag is `from-tag`, sipd's `to-tag`).
    fn dialog_named(&self, rep: &Replaces) -> Option<(String, Side)> {
        if let Some(c) = self.calls.calls.get(&rep.call_id) {
            let caller_tag = c.a_req.get("from").and_then(tag_of);
            return (!c.originate && c.a_tag == rep.to_tag && caller_tag == Some(&rep.from_tag))
                .then(|| (c.id.clone(), Side::A));
        }
        let id = self.calls.by_b_call_id.get(&rep.call_id)?;
        let c = self.calls.calls.get(id)?;
        let i = c.branches.iter().position(|b| {
            b.call_id == rep.call_id
                && b.state == BranchState::Won
                && b.from_tag == rep.to_tag
                && b.to_tag == rep.from_tag
        })?;
        let a = c.a_branch == Some(i) || (c.originate && c.branches[i].device_id != TRUNK_ID);
        Some((id.clone(), if a { Side::A } else { Side::B }))
    }

    /// `keep` (where the transferor is side `side`) and `give` (placed by
    /// it, answered by the party that moves): both up and doing nothing
    /// else.
    fn join_of(&self, keep: &str, give: &str, side: Side) -> Option<Join> {
        let idle = |c: &Call| {
            c.state == State::Up
                && !c.originate
                && c.transfer.is_none()
                && c.park.is_none()
                && c.voicemail.is_none()
                && c.listen.is_none()
        };
        let k = self.calls.calls.get(keep).filter(|c| idle(c))?;
        let g = self.calls.calls.get(give).filter(|c| idle(c))?;
        let (_, by_device, _) = transferor_of(k, side)?;
        // The transferor's side in `give` is the one that is its device;
        // the other side moves.
        let (give_side, moving) = if transferor_of(g, Side::A).is_some_and(|t| t.1 == by_device) {
            (Side::A, Moving::Branch(dialog_branch(g, Side::B)?))
        } else {
            let moving = dialog_branch(g, Side::A).map_or(Moving::Caller, Moving::Branch);
            (Side::B, moving)
        };
        Some(Join {
            keep: keep.to_string(),
            side,
            by_device,
            give: give.to_string(),
            give_side,
            moving,
        })
    }

    /// Moves `give`'s answered party into `keep` in the transferor's
    /// place, hangs the transferor up in both calls and ends `give`.
    fn join_calls(&mut self, now: u64, j: Join) {
        self.hangup_leg(now, &j.keep, j.side == Side::A);
        self.hangup_leg(now, &j.give, j.give_side == Side::A);
        let Some(g) = self.calls.calls.get_mut(&j.give) else {
            return;
        };
        // What the moving party was last sent by sipd: the base of the
        // offer that moves it (same session, next version).
        let (mut moved, offer_src) = match j.moving {
            Moving::Branch(i) if Some(i) == g.a_branch => {
                (g.branches.swap_remove(i), g.a_sdp.clone())
            }
            Moving::Branch(i) => {
                let sent = if g.b_sent.is_empty() {
                    g.offer.clone()
                } else {
                    g.b_sent.clone()
                };
                (g.branches.swap_remove(i), sent)
            }
            Moving::Caller => (Branch::from_caller(g), g.a_sdp.clone()),
        };
        // The transferor as the CDR names it: its extension or user.
        let by = self
            .devices
            .values()
            .find(|d| d.id == j.by_device)
            .map(|d| d.extension.clone().unwrap_or_else(|| d.username.clone()))
            .unwrap_or_default();
        self.calls.by_b_call_id.remove(&moved.call_id);
        self.end_call(now, &j.give, "answered", "transferred (attended)");
        let Some(k) = self.calls.calls.get_mut(&j.keep) else {
            return;
        };
        let Some((pa, pb)) = k.ports else {
            return;
        };
        moved.state = BranchState::Won;
        let (target, device_id) = (moved.to_user.clone(), moved.device_id);
        k.history
            .push(format!("transferred by {by} to {target} (attended)"));
        let (leg, port) = match j.side {
            Side::A => {
                // The phone placed this call too: the party takes side A.
                k.a_branch = Some(k.branches.len());
                k.from_user = target.clone();
                (Side::A, pa)
            }
            Side::B => {
                k.to_user = target.clone();
                (Side::B, pb)
            }
        };
        self.calls
            .by_b_call_id
            .insert(moved.call_id.clone(), j.keep.clone());
        self.calls
            .by_branch
            .insert(moved.branch.clone(), (j.keep.clone(), k.branches.len()));
        let media_ip = self.addrs.media_host(&moved.peer);
        k.branches.push(moved);
        tracing::info!(call_id = %j.keep, to = %target, by = %by, leg = leg.leg().as_str_name(), "attended transfer: calls joined");
        // The moving party was last offered the consult call's port: the
        // same session again, on this call's port, one version on.
        let offer = sdp::rewrite(&offer_src, &media_ip, port, false)
            .map(|o| sdp::resume_offer(&o))
            .unwrap_or_else(|| fallback_offer(&media_ip, port));
        if self.own_reinvite(now, &j.keep, leg, offer.clone())
            && let Some(k) = self.calls.calls.get_mut(&j.keep)
        {
            match leg {
                Side::A => k.a_sdp = offer,
                Side::B => k.b_sent = offer,
            }
        }
        self.events.push_back(Event::MediaUpdate {
            call_id: j.keep.clone(),
            leg: leg.other().leg(),
            hold: Some(false),
            music: Some(false),
            media: None,
            established: None,
        });
        self.events.push_back(Event::Cdr(Cdr::Answered {
            call_id: j.keep.clone(),
            at: now,
            device_id: (device_id != TRUNK_ID && leg == Side::B).then_some(device_id),
        }));
        // The party that stays was held by the phone before it pressed
        // Transfer (desk phones do).
        self.unhold(now, &j.keep, leg.other());
    }
}

impl Branch {
    /// A caller's own dialog with sipd (sipd its UAS) as a branch of
    /// another call: sipd's requests in it go From the caller's To with
    /// sipd's tag, along the caller's Record-Route (RFC 3261 section
    /// 12.1.1), with the CSeq numbers sipd used so far.
    fn from_caller(g: &Call) -> Branch {
        let req = &g.a_req;
        let target = if g.a_target.is_empty() {
            uri_of(req.get("from").unwrap_or_default()).to_string()
        } else {
            g.a_target.clone()
        };
        let to_user = |h: &str| {
            user_of(uri_of(req.get(h).unwrap_or_default()))
                .unwrap_or_default()
                .to_string()
        };
        Branch {
            cseq: req.cseq().map_or(1, |c| c.0),
            from_user: to_user("to"),
            // The caller as the CDR and sipd's requests name it.
            to_user: g.from_user.clone(),
            to_tag: req
                .get("from")
                .and_then(tag_of)
                .unwrap_or_default()
                .to_string(),
            state: BranchState::Won,
            status: 200,
            tsx: ClientTimers::idle(),
            local_cseq: g.a_cseq,
            route: g.a_route.clone(),
            ..Branch::calling(
                0,
                NewBranch {
                    peer: g.a_peer,
                    device_id: if g.direction == "inbound" {
                        TRUNK_ID
                    } else {
                        g.device_id
                    },
                    contact: target,
                    from_user: String::new(),
                    to_user: String::new(),
                    ids: DialogIds {
                        branch: String::new(),
                        call_id: g.id.clone(),
                        from_tag: g.a_tag.clone(),
                    },
                },
                Vec::new(),
            )
        }
    }
}

/// An offer of G.711 and telephone-event at `ip:port`, for a party whose
/// first offer sipd no longer has (the consult call had a late offer).
fn fallback_offer(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=gosip 2 2 IN IP4 {ip}\r\ns=GoSIP\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_is_read_from_an_escaped_refer_to_and_needs_both_tags() {
        let r = replaces_of("sip:103@pbx?Replaces=abc%40pbx%3Bto-tag%3D11%3Bfrom-tag%3D22&X=1")
            .unwrap();
        assert_eq!(
            r,
            Replaces {
                call_id: "abc@pbx".into(),
                to_tag: "11".into(),
                from_tag: "22".into()
            }
        );
        let plain = replaces_of("sip:103@pbx?replaces=abc;from-tag=2;to-tag=1").unwrap();
        assert_eq!((plain.to_tag.as_str(), plain.from_tag.as_str()), ("1", "2"));
        assert_eq!(replaces_of("sip:103@pbx?Replaces=abc%3Bto-tag%3D1"), None);
        assert_eq!(replaces_of("sip:103@pbx"), None);
        assert_eq!(
            replaces_of("sip:103@pbx?Replaces=abc%zz%3Bto-tag%3D1%3Bfrom-tag%3D2"),
            None
        );
    }
}
