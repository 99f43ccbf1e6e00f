//! Voicemail on the phone: a device dials the access code (`*97`, or the
//! phone's Messages key set to it) and hears its owner's mailbox, newest
//! first: how many are new, then each message with who left it and when,
//! its audio, and the keys: 1 again, 2 next, 7 delete, 9 save, 0 help,
//! # end. Keys come as RFC 4733 events (mediad) or SIP INFO; keys pressed
//! while the mailbox is still being read are kept and acted on in order.
//! Hearing a message marks it heard, so the web UI and the phone's light
//! follow; deleting goes through twiliod, which owns voicemails.

use super::*;
use crate::sip::core::Leg;
use proto::types::UserId;

/// What the keys do, said after each message and on 0.
const MENU: &str = "To hear it again, press 1. For the next message, press 2. \
     To delete it, press 7. To save it, press 9. To end, press pound.";

/// A message of the caller's mailbox, as the shell read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: i64,
    /// Who left it, as stored (a number or an extension).
    pub from: String,
    /// When it came, as said aloud in the system's time zone.
    pub received: String,
    /// Its audio, relative to the data dir.
    pub audio: String,
    pub is_read: bool,
}

/// A call listening to its mailbox.
#[derive(Debug, Clone)]
pub(super) struct Listen {
    user_id: UserId,
    /// `None` until the shell has read the mailbox.
    messages: Option<Vec<StoredMessage>>,
    /// The message playing or last played.
    at: usize,
    /// Keys pressed before the mailbox was read.
    early_keys: String,
    /// Hang up when the prompt playing now ends.
    ending: bool,
}

impl Listen {
    pub(super) fn new(user_id: UserId) -> Listen {
        Listen {
            user_id,
            messages: None,
            at: 0,
            early_keys: String::new(),
            ending: false,
        }
    }
}

impl Core {
    /// The mailbox a call to `dialed` listens to: the caller's own, when
    /// `dialed` is the access code. `Err` when it is the code but the
    /// caller's device belongs to nobody.
    pub(super) fn listen_for(
        &self,
        caller: &Device,
        inbound: bool,
        dialed: &str,
    ) -> Result<Option<Listen>, Reply> {
        let code = self.cfg.voicemail_code.trim();
        if inbound || code.is_empty() || dialed != code {
            return Ok(None);
        }
        match &caller.mailbox {
            Some(m) => Ok(Some(Listen::new(m.user_id))),
            None => Err(Reply::new(404, "Not Found").with("Warning", "399 gosip \"no mailbox\"")),
        }
    }

    /// The caller's ACK of sipd's answer to the access code: the shell
    /// reads the mailbox ([`Core::mailbox_loaded`] follows).
    pub(super) fn start_listening(&mut self, call_id: &str) {
        if let Some(l) = self
            .calls
            .calls
            .get(call_id)
            .and_then(|c| c.listen.as_ref())
        {
            self.events.push_back(Event::MailboxList {
                call_id: call_id.to_string(),
                user_id: l.user_id,
            });
        }
    }

    /// The caller's mailbox, newest first: how many there are, then the
    /// first message; keys pressed meanwhile are acted on now.
    pub fn mailbox_loaded(&mut self, call_id: &str, messages: Vec<StoredMessage>) {
        let Some(l) = self.listen_mut(call_id) else {
            return;
        };
        let new = messages.iter().filter(|m| !m.is_read).count();
        let saved = messages.len() - new;
        let early = std::mem::take(&mut l.early_keys);
        let empty = messages.is_empty();
        l.messages = Some(messages);
        let mut prompts = vec![Prompt::Text(format!(
            "You have {} and {}.",
            count(new, "new message"),
            count(saved, "saved message")
        ))];
        if empty {
            prompts.push(Prompt::Text("Goodbye.".into()));
            l.ending = true;
        } else {
            prompts.extend(self.message_prompts(call_id, 0));
        }
        self.play(call_id, prompts);
        for key in early.chars() {
            self.listen_key(call_id, key);
        }
    }

    /// mediad finished what it was playing to `leg`: a voicemail's
    /// recording begins now; a call saying goodbye ends; a parked call's
    /// parker has heard the slot.
    pub fn play_done(&mut self, now: u64, call_id: &str, leg: Leg) {
        if leg == Leg::B {
            self.park_announced(now, call_id);
            return;
        }
        if let Some(call) = self.calls.calls.get_mut(call_id)
            && call.voicemail.is_some()
        {
            call.recording_since.get_or_insert(now);
        }
        if self.listen_mut(call_id).is_some_and(|l| l.ending) {
            self.hangup(now, call_id, "done listening");
        }
    }

    /// A key pressed on a call listening to its mailbox; false when the
    /// call is not one.
    pub(super) fn listen_key(&mut self, call_id: &str, key: char) -> bool {
        let Some(l) = self.listen_mut(call_id) else {
            return false;
        };
        let Some(messages) = &l.messages else {
            l.early_keys.push(key);
            return true;
        };
        if l.ending {
            return true;
        }
        let (at, len) = (l.at, messages.len());
        let prompts = match key {
            '1' => self.message_prompts(call_id, at),
            '2' => self.next_message(call_id, at + 1, ""),
            '7' => self.delete_message(call_id, at),
            '9' => self.next_message(call_id, at + 1, "Message saved. "),
            '0' => vec![Prompt::Text(MENU.into())],
            '#' => {
                if let Some(l) = self.listen_mut(call_id) {
                    l.ending = true;
                }
                vec![Prompt::Text("Goodbye.".into())]
            }
            _ => vec![Prompt::Text(format!(
                "Sorry, that is not a valid choice. {MENU}"
            ))],
        };
        tracing::debug!(call_id = %call_id, key = %key, at, len, "mailbox key");
        self.play(call_id, prompts);
        true
    }

    /// Message `i` (and `prefix` said first), or the end of the mailbox.
    fn next_message(&mut self, call_id: &str, i: usize, prefix: &str) -> Vec<Prompt> {
        let len = self
            .listen_mut(call_id)
            .and_then(|l| l.messages.as_ref())
            .map_or(0, Vec::len);
        if i < len {
            let mut p = self.message_prompts(call_id, i);
            if let (false, Some(Prompt::Text(first))) = (prefix.is_empty(), p.first_mut()) {
                first.insert_str(0, prefix);
            }
            return p;
        }
        vec![Prompt::Text(format!(
            "{prefix}No more messages. To hear the last one again, press 1. To end, press pound."
        ))]
    }

    /// Deletes message `i` (twiliod removes it and its audio), then plays
    /// the one after it.
    fn delete_message(&mut self, call_id: &str, i: usize) -> Vec<Prompt> {
        let Some(messages) = self.listen_mut(call_id).and_then(|l| l.messages.as_mut()) else {
            return Vec::new();
        };
        if i >= messages.len() {
            return vec![Prompt::Text(MENU.into())];
        }
        let gone = messages.remove(i);
        let left = messages.len();
        self.events
            .push_back(Event::VoicemailDelete { id: gone.id });
        if left == 0 {
            if let Some(l) = self.listen_mut(call_id) {
                l.ending = true;
            }
            return vec![Prompt::Text(
                "Message deleted. You have no more messages. Goodbye.".into(),
            )];
        }
        if i < left {
            return self.next_message(call_id, i, "Message deleted. ");
        }
        if let Some(l) = self.listen_mut(call_id) {
            l.at = left - 1;
        }
        vec![Prompt::Text(
            "Message deleted. No more messages. To hear the last one again, press 1. \
             To end, press pound."
                .into(),
        )]
    }

    /// What plays for message `i`: who left it and when, its audio and the
    /// keys. Playing it marks it heard.
    fn message_prompts(&mut self, call_id: &str, i: usize) -> Vec<Prompt> {
        let Some(l) = self.listen_mut(call_id) else {
            return Vec::new();
        };
        let Some(m) = l.messages.as_mut().and_then(|ms| ms.get_mut(i)) else {
            return Vec::new();
        };
        l.at = i;
        let heard = if m.is_read { "" } else { ", new" };
        let about = format!(
            "Message {}{heard}. From {}. Received {}.",
            i + 1,
            spoken_number(&m.from),
            m.received
        );
        let audio = m.audio.clone();
        if !m.is_read {
            m.is_read = true;
            let id = m.id;
            self.events.push_back(Event::VoicemailRead { id });
        }
        vec![
            Prompt::Text(about),
            Prompt::File(audio),
            Prompt::Text(MENU.into()),
        ]
    }

    fn listen_mut(&mut self, call_id: &str) -> Option<&mut Listen> {
        self.calls
            .calls
            .get_mut(call_id)
            .and_then(|c| c.listen.as_mut())
    }

    /// mediad plays `prompts` to the caller, replacing what plays now.
    fn play(&mut self, call_id: &str, prompts: Vec<Prompt>) {
        if prompts.is_empty() {
            return;
        }
        self.events.push_back(Event::MediaPlay {
            call_id: call_id.to_string(),
            leg: Leg::A,
            prompts,
            record_secs: None,
            silence_secs: 0,
        });
    }
}

/// "1 new message", "2 saved messages", "no new messages".
fn count(n: usize, what: &str) -> String {
    match n {
        0 => format!("no {what}s"),
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

/// A number read digit by digit ("2 0 2"), as people say extensions and
/// phone numbers; anything not a digit is left out.
fn spoken_number(n: &str) -> String {
    let digits: Vec<String> = n
        .chars()
        .filter(char::is_ascii_digit)
        .map(String::from)
        .collect();
    if digits.is_empty() {
        "an unknown caller".into()
    } else {
        digits.join(" ")
    }
}
