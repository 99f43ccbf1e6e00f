//! Call park: the phone that answered a call transfers it (REFER) to the
//! park code (`*70`). sipd parks the caller in the lowest free slot (1, 2
//! ...): the caller hears the hold music, the parker hears where ("Parked
//! on slot 1. To take it back, dial star 7 1 1.") and is then released (a
//! final NOTIFY, then BYE). Any phone dials the retrieve code and the slot
//! (`*711`; the code alone takes the call parked longest) and joins the
//! call ([`super::pickup`]). A parked call nobody takes rings the parker's
//! phone again after the park time (`calls.park_timeout`); unanswered, it
//! goes back to its slot, and after three ring-backs the call ends.

use super::transfer::Transfer;
use super::*;
use crate::sip::core::Leg;
use proto::types::DeviceId;

/// How many times a parked call rings its parker before it ends.
const RING_BACKS: u32 = 3;

/// A parked call.
#[derive(Debug)]
pub(super) struct Parked {
    slot: u32,
    /// Who parked it (extension or user) and that phone's branch and device.
    by: String,
    by_branch: usize,
    by_device: DeviceId,
    /// The parker still hears the slot; its leg ends once mediad is done.
    announcing: bool,
    /// When the parker's phone rings again (`u64::MAX` while it rings).
    pub(super) ring_back_at: u64,
    ring_backs: u32,
}

impl Parked {
    pub(super) fn slot(&self) -> u32 {
        self.slot
    }

    /// When the parker's phone should ring again, if it can: not while the
    /// parker still hears the announcement (its end touches the call, and
    /// a time already past then rings at once). A past time reported here
    /// would have the shell wake the core in a loop for nothing.
    pub(super) fn ring_back_due(&self) -> Option<u64> {
        (!self.announcing && self.ring_back_at != u64::MAX).then_some(self.ring_back_at)
    }
}

impl Core {
    /// A REFER to the park code from the phone on branch `by`: the caller
    /// is parked, the parker hears where (202 now, NOTIFY 100 and, once
    /// the slot was said, NOTIFY 200 and BYE).
    pub(super) fn park(&mut self, now: u64, call_id: &str, by: usize, parker: &Device) -> Reply {
        let slot = (1..)
            .find(|n| {
                !self
                    .calls
                    .calls
                    .values()
                    .any(|c| c.park.as_ref().is_some_and(|p| p.slot == *n))
            })
            .unwrap_or(1);
        let name = parker
            .extension
            .clone()
            .unwrap_or_else(|| parker.username.clone());
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return Reply::new(481, "Call/Transaction Does Not Exist");
        };
        call.park = Some(Parked {
            slot,
            by: name.clone(),
            by_branch: by,
            by_device: parker.id,
            announcing: true,
            ring_back_at: now + self.cfg.park_timeout_ms,
            ring_backs: 0,
        });
        call.history
            .push(format!("parked by {name} on slot {slot}"));
        tracing::info!(call_id = %call_id, by = %name, slot, "call parked");
        self.notify_refer(now, call_id, Side::B, 100, "Trying");
        self.music_to_caller(call_id, true);
        let code = format!("{}{slot}", self.cfg.park_retrieve_code);
        self.events.push_back(Event::MediaPlay {
            call_id: call_id.to_string(),
            leg: Leg::B,
            prompts: vec![Prompt::Text(format!(
                "Parked on slot {slot}. To take it back, dial {}.",
                spoken_keys(&code)
            ))],
            record_secs: None,
            silence_secs: 0,
        });
        Reply::new(202, "Accepted")
    }

    /// The caller hears the hold music (`on`) or the other leg again.
    fn music_to_caller(&mut self, call_id: &str, on: bool) {
        self.events.push_back(Event::MediaUpdate {
            call_id: call_id.to_string(),
            leg: Leg::A,
            hold: Some(false),
            music: Some(on),
            media: None,
            established: None,
        });
    }

    /// The parker heard the slot: the REFER succeeded and its leg ends.
    pub(super) fn park_announced(&mut self, now: u64, call_id: &str) {
        if !self.parker_leaving(call_id) {
            return;
        }
        self.notify_refer(now, call_id, Side::B, 200, "OK");
        self.hangup_leg(now, call_id, false);
    }

    /// The parker's leg ends (sipd's BYE, or the parker hung up first):
    /// nothing waits for leg b, whose RTP timeout mediad suspends. `false`
    /// when no parker is still on the line.
    pub(super) fn parker_leaving(&mut self, call_id: &str) -> bool {
        let Some(p) = self
            .calls
            .calls
            .get_mut(call_id)
            .and_then(|c| c.park.as_mut())
            .filter(|p| p.announcing)
        else {
            return false;
        };
        p.announcing = false;
        self.events.push_back(Event::MediaUpdate {
            call_id: call_id.to_string(),
            leg: Leg::B,
            hold: Some(true),
            music: Some(false),
            media: None,
            established: None,
        });
        true
    }

    /// The parker hung up during the announcement: the call stays parked.
    pub(super) fn parker_left(&mut self, call_id: &str) -> bool {
        let by = self
            .calls
            .calls
            .get(call_id)
            .and_then(|c| c.park.as_ref())
            .filter(|p| p.announcing)
            .map(|p| p.by_branch);
        let Some(by) = by else {
            return false;
        };
        self.parker_leaving(call_id);
        if let Some(b) = self
            .calls
            .calls
            .get_mut(call_id)
            .and_then(|c| c.branches.get_mut(by))
        {
            b.state = BranchState::Done;
        }
        true
    }

    /// The parked call in `slot` (or, `None`, the one parked longest).
    pub(super) fn parked_call(&self, slot: Option<&str>) -> Option<String> {
        self.calls
            .calls
            .values()
            .filter(|c| c.state == State::Up)
            .filter_map(|c| c.park.as_ref().map(|p| (c, p)))
            .filter(|(_, p)| slot.is_none_or(|s| s.parse() == Ok(p.slot)))
            .min_by(|(a, _), (b, _)| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)))
            .map(|(c, _)| c.id.clone())
    }

    /// A phone took the parked call back on branch `i` (see
    /// [`Core::join_feature`]): a parker still on the line and a ring-back
    /// still ringing are let go, and the caller hears the phone.
    pub(super) fn retrieved(&mut self, now: u64, call_id: &str, i: usize, who: &str) {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        let Some(p) = call.park.take() else {
            return;
        };
        let ringing_back = call.transfer.take().is_some();
        let device_id = call.branches.get(i).map(|b| b.device_id);
        let inbound = call.direction == "inbound";
        call.history
            .push(format!("taken from slot {} by {who}", p.slot));
        call.to_user = who.to_string();
        tracing::info!(call_id = %call_id, slot = p.slot, by = %who, "parked call taken back");
        if p.announcing
            && let Some(b) = call.branches.get(p.by_branch).map(|b| b.state)
            && b == BranchState::Won
        {
            self.notify_refer(now, call_id, Side::B, 200, "OK");
            self.hangup_leg(now, call_id, false);
        }
        if ringing_back {
            self.cancel_branches(call_id, Some(i));
        }
        self.music_to_caller(call_id, false);
        self.events.push_back(Event::Cdr(Cdr::Answered {
            call_id: call_id.to_string(),
            at: now,
            device_id: device_id.filter(|_| inbound),
        }));
        self.unhold_a(now, call_id);
    }

    /// The park time ran out: the parker's phone rings (as a transfer to
    /// it whose transferor is gone).
    pub(super) fn park_timeout(&mut self, now: u64, call_id: &str) {
        let ring_time = self.cfg.ring_timeout_ms;
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        let first = call.branches.len();
        let Some(p) = call.park.as_mut() else {
            return;
        };
        if p.announcing || call.transfer.is_some() || now < p.ring_back_at {
            return;
        }
        p.ring_back_at = u64::MAX;
        p.ring_backs += 1;
        let (by, by_branch, device) = (p.by.clone(), p.by_branch, p.by_device);
        tracing::info!(call_id = %call_id, to = %by, "parked call rings back");
        call.transfer = Some(Transfer::ring_back(by_branch, first, &by, now + ring_time));
        if !self.ring_target(now, call_id, &by, &transfer::Target::Devices(vec![device])) {
            self.ring_back_failed(now, call_id);
        }
    }

    /// Nobody answered the ring-back: the call goes back to its slot, or
    /// ends after the last ring-back.
    pub(super) fn ring_back_failed(&mut self, now: u64, call_id: &str) {
        let park_time = self.cfg.park_timeout_ms;
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        call.transfer = None;
        let Some(p) = call.park.as_mut() else {
            return;
        };
        if p.ring_backs < RING_BACKS {
            p.ring_back_at = now + park_time;
            return;
        }
        self.hangup_leg(now, call_id, true);
        self.end_call(now, call_id, "answered", "nobody took the parked call back");
    }

    /// The parker's phone answered the ring-back: the call is no longer
    /// parked and the caller hears it.
    pub(super) fn rung_back(&mut self, call_id: &str) {
        if let Some(call) = self.calls.calls.get_mut(call_id)
            && let Some(p) = call.park.take()
        {
            call.history.push(format!("rang back {}", p.by));
        }
    }
}

/// Keys read one by one ("star 7 1 1").
fn spoken_keys(keys: &str) -> String {
    keys.chars()
        .map(|c| match c {
            '*' => "star".to_string(),
            '#' => "pound".to_string(),
            c => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}
