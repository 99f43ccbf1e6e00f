//! The registrar's side of REGISTER (RFC 3261 section 10.3).

use super::*;

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
