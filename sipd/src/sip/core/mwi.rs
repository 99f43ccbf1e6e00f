//! Message-waiting indication (RFC 3842 over RFC 6665): a phone subscribes
//! to `message-summary` for its own mailbox (digest-authenticated like a
//! REGISTER), gets a NOTIFY with the owner's new/old voicemail counts at
//! once and after every change, and a final one when the subscription ends
//! or expires. The counts come from the shell (`set_voicemail_counts`),
//! which reads them from the database.

use proto::types::DeviceId;
use std::collections::HashMap;

use super::{Core, Reply};
use crate::sip::msg::{self, tag_of, uri_of, user_of};
use crate::sip::{Peer, Transmit};

/// The only event package served.
pub const PACKAGE: &str = "message-summary";
/// Longest and shortest subscription granted (seconds).
const MAX_EXPIRES: u32 = 3600;
const MIN_EXPIRES: u32 = 60;
/// How long a NOTIFY waits for its answer.
const NOTIFY_TIMEOUT_MS: u64 = 32_000;

/// One subscription: the dialog a SUBSCRIBE made (RFC 6665 section 4.1).
#[derive(Debug, Clone)]
pub(super) struct MwiSub {
    device_id: DeviceId,
    username: String,
    call_id: String,
    /// Our tag (To of the SUBSCRIBE, From of our NOTIFYs).
    local_tag: String,
    remote_tag: String,
    /// The subscriber's From, our NOTIFYs' To.
    remote: String,
    /// The SUBSCRIBE's To URI (the mailbox), our NOTIFYs' From.
    local_uri: String,
    /// Where NOTIFYs go: the subscriber's Contact.
    target: String,
    peer: Peer,
    cseq: u32,
    expires_at: u64,
}

#[derive(Default)]
pub(super) struct Mwi {
    subs: HashMap<String, MwiSub>,
    /// (new, old) voicemails per device id.
    counts: HashMap<DeviceId, (u32, u32)>,
    /// NOTIFY branches in flight -> subscription Call-ID.
    pending: HashMap<String, String>,
    /// Subscriptions to notify once the SUBSCRIBE's answer is out.
    after_reply: Vec<(String, bool)>,
}

impl Core {
    /// A SUBSCRIBE (new or refresh). The NOTIFY it calls for goes out after
    /// the 200 (see [`Core::mwi_flush`]).
    pub(super) fn subscribe(&mut self, now: u64, peer: Peer, r: &msg::Request) -> Reply {
        let raw = &r.raw;
        let event = raw
            .get("event")
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if event != PACKAGE {
            return Reply::new(489, "Bad Event").with("Allow-Events", PACKAGE);
        }
        let expires = match raw.get("expires").map(|e| e.trim().parse::<u32>()) {
            None => MAX_EXPIRES,
            Some(Ok(v)) => v.min(MAX_EXPIRES),
            Some(Err(_)) => return Reply::new(400, "Bad Expires"),
        };
        if expires != 0 && expires < MIN_EXPIRES {
            return Reply::new(423, "Interval Too Brief")
                .with("Min-Expires", MIN_EXPIRES.to_string());
        }
        let call_id = raw.get("call-id").unwrap_or_default().to_owned();
        let from = raw.get("from").unwrap_or_default();
        let remote_tag = tag_of(from).unwrap_or_default().to_owned();
        let to = raw.get("to").unwrap_or_default();
        if let Some(local_tag) = tag_of(to) {
            // A refresh or an unsubscribe inside the dialog: the same
            // Call-ID, both tags and the same source, or 481.
            let Some(sub) = self.mwi.subs.get_mut(&call_id).filter(|s| {
                s.local_tag == local_tag && s.remote_tag == remote_tag && s.peer.addr == peer.addr
            }) else {
                return Reply::new(481, "Subscription Does Not Exist");
            };
            sub.expires_at = now + u64::from(expires) * 1000;
            let tag = sub.local_tag.clone();
            self.mwi.after_reply.push((call_id, expires == 0));
            return Reply::new(200, "OK")
                .with("Expires", expires.to_string())
                .with_tag(tag);
        }
        let device = match self.authenticate(now, peer, r, false) {
            Ok(d) => d,
            Err(reply) => return reply,
        };
        // Only the device's own mailbox.
        let request_uri = raw.start().split(' ').nth(1).unwrap_or_default();
        let mailbox = user_of(request_uri)
            .or_else(|| user_of(uri_of(to)))
            .unwrap_or_default();
        if mailbox != device.username && Some(mailbox) != device.extension.as_deref() {
            return Reply::new(403, "Forbidden");
        }
        let Some(contact) = raw.get("contact").map(|c| uri_of(c).to_owned()) else {
            return Reply::new(400, "Missing Contact");
        };
        let local_tag = self.next_id();
        if expires > 0 {
            self.mwi.subs.insert(
                call_id.clone(),
                MwiSub {
                    device_id: device.id,
                    username: device.username.clone(),
                    call_id: call_id.clone(),
                    local_tag: local_tag.clone(),
                    remote_tag,
                    remote: from.to_owned(),
                    local_uri: uri_of(to).to_owned(),
                    target: contact,
                    peer,
                    cseq: 0,
                    expires_at: now + u64::from(expires) * 1000,
                },
            );
            self.mwi.after_reply.push((call_id, false));
        }
        Reply::new(200, "OK")
            .with("Expires", expires.to_string())
            .with("Contact", format!("<sip:{}>", self.addrs.via_host(&peer)))
            .with_tag(local_tag)
    }

    /// Sends the NOTIFYs a SUBSCRIBE's answer called for.
    pub(super) fn mwi_flush(&mut self, now: u64) {
        for (call_id, terminate) in std::mem::take(&mut self.mwi.after_reply) {
            self.notify(
                now,
                &call_id,
                terminate.then_some("terminated;reason=timeout"),
            );
            if terminate {
                self.mwi.subs.remove(&call_id);
            }
        }
    }

    /// The owners' voicemail counts per device, read by the shell: every
    /// subscription whose count changed hears of it; expired ones end.
    pub fn set_voicemail_counts(&mut self, now: u64, counts: HashMap<DeviceId, (u32, u32)>) {
        // Devices in unsolicited mode without a subscription hear of a
        // change too, at each registered contact.
        let subscribed: std::collections::HashSet<DeviceId> =
            self.mwi.subs.values().map(|s| s.device_id).collect();
        let unsolicited: Vec<(DeviceId, String)> = self
            .devices
            .values()
            .filter(|d| d.mwi_unsolicited && !subscribed.contains(&d.id))
            .filter(|d| counts.get(&d.id) != self.mwi.counts.get(&d.id))
            .map(|d| (d.id, d.username.clone()))
            .collect();
        for (device_id, username) in unsolicited {
            let (new, old) = counts.get(&device_id).copied().unwrap_or((0, 0));
            let targets: Vec<(String, Peer)> = self
                .registrar
                .all()
                .filter(|b| b.device_id == device_id)
                .map(|b| (b.contact.clone(), b.target()))
                .collect();
            for (contact, peer) in targets {
                self.notify_unsolicited(now, &username, &contact, peer, new, old);
            }
        }
        let changed: Vec<String> = self
            .mwi
            .subs
            .values()
            .filter(|s| counts.get(&s.device_id) != self.mwi.counts.get(&s.device_id))
            .map(|s| s.call_id.clone())
            .collect();
        self.mwi.counts = counts;
        for call_id in changed {
            self.notify(now, &call_id, None);
        }
        let expired: Vec<String> = self
            .mwi
            .subs
            .values()
            .filter(|s| s.expires_at <= now)
            .map(|s| s.call_id.clone())
            .collect();
        for call_id in expired {
            self.notify(now, &call_id, Some("terminated;reason=timeout"));
            self.mwi.subs.remove(&call_id);
        }
    }

    /// The subscriptions now (tests, status).
    pub fn mwi_subscriptions(&self) -> usize {
        self.mwi.subs.len()
    }

    /// A NOTIFY's answer or timeout: 481 or silence ends the subscription
    /// (RFC 6665 section 4.2.2). `true` when the branch was a NOTIFY's.
    pub(super) fn mwi_outcome(&mut self, branch: &str, status: Option<u16>) -> bool {
        let Some(call_id) = self.mwi.pending.remove(branch) else {
            return false;
        };
        if matches!(status, None | Some(481) | Some(408)) {
            self.mwi.subs.remove(&call_id);
        }
        true
    }

    /// An out-of-dialog NOTIFY to a phone that never subscribed.
    fn notify_unsolicited(
        &mut self,
        now: u64,
        username: &str,
        contact: &str,
        peer: Peer,
        new: u32,
        old: u32,
    ) {
        let realm = self.cfg.realm.clone();
        let branch = format!("z9hG4bK{}", self.next_id());
        let tag = self.next_id();
        let call_id = format!("{}@gosip", self.next_id());
        let local = self.addrs.via_host(&peer);
        let body = summary(new, old, username, &realm);
        let data = format!(
            "NOTIFY {contact} SIP/2.0\r\n\
             Via: SIP/2.0/{} {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{username}@{realm}>;tag={tag}\r\n\
             To: <sip:{username}@{realm}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 NOTIFY\r\n\
             Contact: <sip:{local}>\r\n\
             Event: {PACKAGE}\r\n\
             Subscription-State: active\r\n\
             User-Agent: GoSIP\r\n\
             Content-Type: application/simple-message-summary\r\n\
             Content-Length: {}\r\n\r\n{body}",
            peer.transport.as_str().to_ascii_uppercase(),
            body.len(),
        )
        .into_bytes();
        // Its answer (or silence) needs no handling: the next change is
        // sent anyway.
        self.txns
            .send_request(now, &branch, Transmit { peer, data }, NOTIFY_TIMEOUT_MS);
    }

    fn notify(&mut self, now: u64, call_id: &str, state: Option<&str>) {
        let (new, old) = self
            .mwi
            .subs
            .get(call_id)
            .and_then(|s| self.mwi.counts.get(&s.device_id).copied())
            .unwrap_or((0, 0));
        let realm = self.cfg.realm.clone();
        let branch = format!("z9hG4bK{}", self.next_id());
        let Some(sub) = self.mwi.subs.get_mut(call_id) else {
            return;
        };
        sub.cseq += 1;
        let state = match state {
            Some(s) => s.to_owned(),
            None => format!(
                "active;expires={}",
                sub.expires_at.saturating_sub(now) / 1000
            ),
        };
        let body = summary(new, old, &sub.username, &realm);
        let (peer, target) = (sub.peer, sub.target.clone());
        let local = self.addrs.via_host(&peer);
        let sub = &self.mwi.subs[call_id];
        let data = format!(
            "NOTIFY {target} SIP/2.0\r\n\
             Via: SIP/2.0/{} {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <{}>;tag={}\r\n\
             To: {}\r\n\
             Call-ID: {}\r\n\
             CSeq: {} NOTIFY\r\n\
             Contact: <sip:{local}>\r\n\
             Event: {PACKAGE}\r\n\
             Subscription-State: {state}\r\n\
             User-Agent: GoSIP\r\n\
             Content-Type: application/simple-message-summary\r\n\
             Content-Length: {}\r\n\r\n{body}",
            peer.transport.as_str().to_ascii_uppercase(),
            sub.local_uri,
            sub.local_tag,
            sub.remote,
            sub.call_id,
            sub.cseq,
            body.len(),
        )
        .into_bytes();
        self.mwi.pending.insert(branch.clone(), call_id.to_owned());
        self.txns
            .send_request(now, &branch, Transmit { peer, data }, NOTIFY_TIMEOUT_MS);
    }
}

/// An `application/simple-message-summary` body (RFC 3842 section 5.2).
fn summary(new: u32, old: u32, username: &str, realm: &str) -> String {
    format!(
        "Messages-Waiting: {}\r\nMessage-Account: sip:{username}@{realm}\r\nVoice-Message: {new}/{old} (0/0)\r\n",
        if new > 0 { "yes" } else { "no" }
    )
}
