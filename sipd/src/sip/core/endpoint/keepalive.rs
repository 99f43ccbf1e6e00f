//! Keeping NAT bindings and the trunk alive: OPTIONS to registered
//! contacts that asked for it and to the SIP trunk, and the answers.

use super::*;
use proto::types::DeviceId;

impl Core {
    pub(in crate::sip::core) fn schedule_keepalive(&mut self, now: u64) {
        if self.cfg.keepalive_interval_ms == 0 {
            self.next_keepalive = None;
        } else if self.next_keepalive.is_none() {
            self.next_keepalive = Some(now + self.cfg.keepalive_interval_ms);
        }
    }

    /// Starts a round: every binding gets an OPTIONS, sent
    /// [`KEEPALIVE_BATCH`] at a time [`KEEPALIVE_SPACING_MS`] apart, so a
    /// thousand phones are not a thousand messages (and their
    /// retransmissions) in one go that holds up everything else.
    pub(in crate::sip::core) fn queue_keepalives(&mut self) {
        self.keepalive_queue = self
            .registrar
            .all()
            .map(|b| (b.device_id, b.contact.clone(), b.target()))
            .collect();
        self.next_keepalive_batch = Some(0);
    }

    /// The next batch of the round's keepalives.
    pub(in crate::sip::core) fn send_keepalive_batch(&mut self, now: u64) {
        let timeout = self.cfg.keepalive_interval_ms.max(1_000);
        let n = self.keepalive_queue.len().min(KEEPALIVE_BATCH);
        let batch: Vec<(DeviceId, String, Peer)> = self.keepalive_queue.drain(..n).collect();
        self.next_keepalive_batch =
            (!self.keepalive_queue.is_empty()).then_some(now + KEEPALIVE_SPACING_MS);
        for (device_id, contact, peer) in batch {
            let branch = format!("z9hG4bK{}", self.next_id());
            let data = self.options_request(&contact, &branch, &peer);
            self.txns
                .send_request(now, &branch, Transmit { peer, data }, timeout);
            self.keepalives
                .insert(branch, Keepalive { device_id, contact });
        }
    }

    pub(in crate::sip::core) fn options_request(
        &mut self,
        contact: &str,
        branch: &str,
        peer: &Peer,
    ) -> Vec<u8> {
        let t = peer.transport;
        let tag = self.next_id();
        let call_id = self.next_id();
        let local = &self.addrs.via_host(peer);
        let realm = &self.cfg.realm;
        format!(
            "OPTIONS {contact} SIP/2.0\r\n\
             Via: SIP/2.0/{} {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:keepalive@{realm}>;tag={tag}\r\n\
             To: <{contact}>\r\n\
             Call-ID: {call_id}@gosip\r\n\
             CSeq: 1 OPTIONS\r\n\
             User-Agent: GoSIP\r\n\
             Content-Length: 0\r\n\r\n",
            t.as_str().to_ascii_uppercase()
        )
        .into_bytes()
    }

    pub(in crate::sip::core) fn trunk_ping_due(&self, now: u64) -> bool {
        self.cfg.termination.is_some() && self.cfg.trunk_ping_ms > 0 && now >= self.next_trunk_ping
    }

    /// An OPTIONS to the trunk: its answer's Via `received` is our public
    /// address as the trunk sees it (RFC 3581 section 4).
    pub(in crate::sip::core) fn ping_trunk(&mut self, now: u64) {
        self.next_trunk_ping = now + self.cfg.trunk_ping_ms;
        let Some(t) = self.cfg.termination.clone() else {
            return;
        };
        let peer = t.peer();
        let branch = format!("z9hG4bK{}", self.next_id());
        let data = self.options_request(&format!("sip:{}", t.host), &branch, &peer);
        self.txns
            .send_request(now, &branch, Transmit { peer, data }, 32 * crate::sip::T1);
        self.trunk_ping = Some(branch);
    }

    /// The trunk's answer to our OPTIONS, from the trunk's own address.
    pub(in crate::sip::core) fn trunk_pong(&mut self, peer: &Peer, r: &msg::Response) {
        if self.trunk_ping.as_deref() != Some(r.via.branch.as_str())
            || self.cfg.termination.as_ref().map(|t| t.addr) != Some(peer.addr)
        {
            return;
        }
        if let Some(ip) = r.raw.get("via").and_then(via_received) {
            self.addrs.learn_public(ip, AddrSource::TrunkVia);
        }
    }
}

/// Keepalives sent at once, and the pause before the next ones: 1,000
/// phones take 160 ms.
const KEEPALIVE_BATCH: usize = 64;
const KEEPALIVE_SPACING_MS: u64 = 10;

pub(in crate::sip::core) struct Keepalive {
    pub(in crate::sip::core) device_id: DeviceId,
    pub(in crate::sip::core) contact: String,
}

/// The addresses the trunk signals from, which are never banned: the
/// configured trunk sources and the termination address.
pub(in crate::sip::core) fn trunk_sources(cfg: &CoreConfig) -> Vec<IpAddr> {
    let mut ips = cfg.trunk_ips.clone();
    ips.extend(cfg.termination.as_ref().map(|t| t.addr.ip()));
    ips
}
