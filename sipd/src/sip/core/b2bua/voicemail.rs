//! Voicemail for internal calls: when nobody answers (no phone registered,
//! every phone busy or declining, or the ring time over), sipd answers the
//! caller itself with mediad's address, mediad reads the greeting, plays
//! the tone and records the caller, and the recording goes to the callee's
//! owner when the caller hangs up (or the longest message is reached).
//! Calls from and to the trunk never come here: Twilio records those.

use super::*;
use crate::sip::core::Leg;
use proto::types::DeviceId;

impl Core {
    /// Answers an internal call nobody answered for the callee's mailbox.
    /// False when the call cannot go to voicemail (not internal, no
    /// mailbox, no SDP offer, no G.711, no media ports): the caller then
    /// gets the failure as before.
    pub(super) fn send_to_voicemail(&mut self, now: u64, call_id: &str, why: &str) -> bool {
        let Some(call) = self.calls.calls.get(call_id) else {
            return false;
        };
        if call.direction != "internal"
            || call.originate
            || call.late_offer
            || call.voicemail.is_some()
            || !matches!(call.state, State::Ringing)
        {
            return false;
        }
        let Some((port_a, _)) = call.ports else {
            return false;
        };
        let Some(mailbox) = self.mailbox_of(&call.callees) else {
            return false;
        };
        let media_ip = self.addrs.media_host(&call.a_peer);
        let Some(answer) = sdp::local_answer(&call.offer, &media_ip, port_a) else {
            return false;
        };
        self.cancel_branches(call_id, None);
        tracing::info!(call_id = %call_id, user_id = %mailbox.user_id, reason = why, "caller sent to voicemail");
        if let Some(call) = self.calls.calls.get_mut(call_id) {
            call.voicemail = Some(mailbox);
        }
        self.answer_a(now, call_id, answer);
        true
    }

    /// Answers a call sipd serves itself (the voicemail access code) with
    /// mediad's address; without G.711 in the offer the caller gets 488.
    pub(super) fn answer_locally(&mut self, now: u64, call_id: &str) {
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        let answer = call.ports.and_then(|(port_a, _)| {
            sdp::local_answer(&call.offer, &self.addrs.media_host(&call.a_peer), port_a)
        });
        match answer {
            Some(answer) => self.answer_a(now, call_id, answer),
            None => self.fail_a(
                now,
                call_id,
                488,
                "Not Acceptable Here",
                "failed",
                "no G.711 for the mailbox",
            ),
        }
    }

    /// Whether sipd itself is the far end of the call (voicemail or the
    /// mailbox), so in-dialog requests have no other leg to go to.
    pub(super) fn answers_itself(&self, call_id: &str) -> bool {
        self.calls
            .calls
            .get(call_id)
            .is_some_and(|c| c.voicemail.is_some() || c.listen.is_some())
    }

    /// The mailbox of the first callee that has one (none while
    /// `voicemail.internal_calls` is off).
    fn mailbox_of(&self, callees: &[DeviceId]) -> Option<Mailbox> {
        if !self.cfg.voicemail_internal {
            return None;
        }
        callees.iter().find_map(|id| {
            self.devices
                .values()
                .find(|d| d.id == *id)
                .and_then(|d| d.mailbox.clone())
        })
    }

    /// Whether any callee has a mailbox an unanswered internal call can go
    /// to.
    pub(super) fn has_mailbox(&self, callees: &[DeviceId]) -> bool {
        self.mailbox_of(callees).is_some()
    }

    /// The caller's ACK of sipd's own answer: mediad starts the greeting,
    /// the tone and the recording.
    pub(super) fn start_voicemail(&mut self, call_id: &str) {
        let Some(mailbox) = self
            .calls
            .calls
            .get(call_id)
            .and_then(|c| c.voicemail.clone())
        else {
            return;
        };
        let who = if mailbox.name.trim().is_empty() {
            "The person you called".to_string()
        } else {
            mailbox.name.trim().to_string()
        };
        let greeting = format!("{who} is not available. {}", self.cfg.voicemail_greeting);
        self.events.push_back(Event::MediaPlay {
            call_id: call_id.to_string(),
            leg: Leg::A,
            prompts: vec![Prompt::Text(greeting), Prompt::Beep],
            record_secs: Some(self.cfg.voicemail_max_secs),
            silence_secs: self.cfg.voicemail_silence_secs,
        });
    }

    /// The message of a voicemail call that ends now, for its mailbox.
    pub(super) fn voicemail_of(&self, call: &Call) -> Option<Voicemail> {
        call.voicemail.as_ref().map(|m| Voicemail {
            user_id: m.user_id,
            from_number: call.from_user.clone(),
            from_name: call.from_display.clone(),
        })
    }
}
