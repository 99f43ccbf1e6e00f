//! The registrar's side of REGISTER (RFC 3261 section 10.3).

use super::*;
use crate::sip::Transport;

impl Core {
    pub(in crate::sip::core) fn register(
        &mut self,
        now: u64,
        peer: Peer,
        r: &msg::Request,
    ) -> Reply {
        let raw = &r.raw;
        let to_uri = uri_of(raw.get("to").unwrap_or_default());
        let scheme = to_uri.split(':').next().unwrap_or_default();
        if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
            return Reply::new(400, "Bad To URI Scheme");
        }
        let device = match self.authenticate(now, peer, r, false) {
            Ok(d) => d,
            Err(reply) => return reply,
        };
        // The authenticated user may only bind its own address of record.
        let aor_user = user_of(to_uri).unwrap_or_default();
        if aor_user != device.username && Some(aor_user) != device.extension.as_deref() {
            return Reply::new(403, "Forbidden");
        }
        let expires_header = match raw.get("expires") {
            Some(e) => match e.trim().parse::<u32>() {
                Ok(v) => Some(v),
                Err(_) => return Reply::new(400, "Bad Expires"),
            },
            None => None,
        };
        let contacts: Vec<&str> = raw.all("contact").collect();
        if contacts.is_empty() {
            // A query: list the bindings (RFC 3261 section 10.2.3).
            return self.ok_with_contacts(self.registrar.current(now, device.id));
        }
        let reg = Register {
            device_id: device.id,
            contacts,
            expires_header,
            call_id: raw.get("call-id").unwrap_or_default(),
            cseq: raw.cseq().map_or(0, |c| c.0),
            user_agent: raw.get("user-agent").unwrap_or_default(),
            source: peer,
        };
        match self.registrar.register(now, &reg) {
            Outcome::Ok(list) => {
                self.stats.registrations_ok += 1;
                tracing::debug!(aor = %device.username, src = %peer.addr, contacts = list.len(), "registered");
                self.ok_with_contacts(list)
            }
            Outcome::TooBrief(min) => {
                Reply::new(423, "Interval Too Brief").with("Min-Expires", min.to_string())
            }
            Outcome::Bad(why) => Reply::new(400, why),
            Outcome::OutOfOrder => Reply::new(500, "Out Of Order CSeq"),
            Outcome::TooMany => Reply::new(403, "Too Many Contacts"),
        }
    }

    pub(in crate::sip::core) fn ok_with_contacts(&self, list: Vec<(String, u64)>) -> Reply {
        let mut reply = Reply::new(200, "OK");
        for (uri, secs) in list {
            reply = reply.with("Contact", format!("<{uri}>;expires={secs}"));
        }
        reply.with("Supported", SUPPORTED)
    }
}

impl Core {
    /// A phone's TCP, TLS or WebSocket connection closed: the registrations
    /// made over it go now rather than when they expire. sipd never opens a
    /// connection to a phone, so nothing could reach them (a call would
    /// ring a dead contact, a keepalive would wait out its timeout); the
    /// phone registers again over its next connection. A browser phone's
    /// calls end too, its other party hearing a BYE at once instead of
    /// silence until the RTP timeout; a desk phone's go on, as it may
    /// reconnect within one.
    pub fn connection_closed(&mut self, now: u64, transport: Transport, conn: u64) {
        self.registrar.drop_connection(transport, conn);
        self.collect_changes();
        if transport != Transport::Ws {
            return;
        }
        self.ws_devices.remove(&conn);
        for call_id in self.calls_on_connection(Transport::Ws, conn) {
            tracing::info!(call_id = %call_id, "the browser's connection closed: ending its call");
            self.hangup(now, &call_id, "the browser's connection closed");
        }
    }
}
