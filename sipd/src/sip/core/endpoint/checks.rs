//! What every request goes through before the TU acts on it: the
//! transaction layer (retransmissions absorbed), overload refusal, the
//! method, `Require` and body checks of RFC 3261 section 8.2 (405/501, 420,
//! 415), then the dispatch by method.

use super::*;

impl Core {
    pub(in crate::sip::core) fn handle_request(&mut self, now: u64, peer: Peer, r: msg::Request) {
        let raw = &r.raw;
        let method = r.method;
        let (cseq, _) = raw.cseq().unwrap_or((0, ""));
        let from_tag = raw.get("from").and_then(tag_of).unwrap_or_default();
        // The source address is part of the key as well: a request with the
        // same branch from elsewhere (a forged CANCEL) must neither match
        // the genuine transaction nor pre-empt it.
        let sent_by = format!(
            "{}:{} {}",
            r.via.host,
            r.via.port.unwrap_or(5060),
            peer.addr.ip()
        );
        let key = TsxKey::server(
            &r.via.branch,
            &sent_by,
            raw.method().unwrap_or_default(),
            raw.get("call-id").unwrap_or_default(),
            cseq,
            from_tag,
        );
        match self.txns.on_request(now, &key, method) {
            ServerMatch::Retransmit(resp) => {
                self.stats.retransmissions_absorbed += 1;
                if let Some(mut t) = resp {
                    t.peer = peer;
                    self.out.push_back(t);
                }
            }
            ServerMatch::AckAbsorbed => {}
            ServerMatch::New if method == Some(Method::Ack) => {
                self.b2b_ack(now, peer, raw);
            }
            ServerMatch::New => {
                let invite = method == Some(Method::Invite);
                if !self.txns.begin_server(&key, invite) {
                    self.overloaded(peer, raw, invite);
                    return;
                }
                let reply = self.decide(now, peer, method, &r, &key);
                if reply.silent {
                    self.txns.forget_server(&key);
                    return;
                }
                if reply.code == 0 {
                    self.txns.unanswered(now, &key);
                    return;
                }
                let tag = match reply.to_tag {
                    Some(ref t) => t.clone(),
                    None => self.next_id(),
                };
                let data = msg::response(
                    raw,
                    peer.addr,
                    reply.code,
                    &reply.reason,
                    &tag,
                    &reply.extra,
                    reply
                        .body
                        .as_deref()
                        .map(|b| ("application/sdp", b.as_bytes())),
                );
                if !invite && matches!(reply.code, 401 | 407) {
                    // A digest challenge outside an INVITE is sent
                    // statelessly, as Kamailio's registrar does: a
                    // retransmitted REGISTER gets a fresh challenge, and a
                    // registration flood keeps no state for its first half.
                    self.txns.forget_server(&key);
                    self.out.push_back(Transmit { peer, data });
                } else {
                    self.txns
                        .respond(now, &key, Transmit { peer, data }, reply.code);
                }
                self.mwi_flush(now);
            }
        }
    }

    /// Every transaction slot waits for an answer: a new INVITE hears 503
    /// with Retry-After (stateless, RFC 3261 section 21.5.4), anything else
    /// is dropped, since its sender retransmits.
    pub(in crate::sip::core) fn overloaded(&mut self, peer: Peer, raw: &Raw, invite: bool) {
        self.stats.dropped_overload += 1;
        tracing::debug!(src = %peer.addr, invite, "transaction table full");
        if invite {
            let tag = self.next_id();
            let extra = [("Retry-After", "5".to_string())];
            let data = msg::response(
                raw,
                peer.addr,
                503,
                "Service Unavailable",
                &tag,
                &extra,
                None,
            );
            self.out.push_back(Transmit { peer, data });
        }
    }

    /// The TU: which final answer a new request gets. `method` is `None`
    /// for an extension method sipd does not know.
    pub(in crate::sip::core) fn decide(
        &mut self,
        now: u64,
        peer: Peer,
        method: Option<Method>,
        r: &msg::Request,
        key: &TsxKey,
    ) -> Reply {
        let raw = &r.raw;
        let Some(method) = method.filter(|m| SERVED.contains(m)) else {
            if method.is_some_and(|m| KNOWN_UNSERVED.contains(&m)) {
                return Reply::new(405, "Method Not Allowed").with("Allow", ALLOW);
            }
            return Reply::new(501, "Not Implemented").with("Allow", ALLOW);
        };
        if method != Method::Cancel {
            let unsupported: Vec<&str> = raw
                .all("require")
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .filter(|t| !SUPPORTED_TAGS.iter().any(|s| s.eq_ignore_ascii_case(t)))
                .collect();
            if !unsupported.is_empty() {
                return Reply::new(420, "Bad Extension")
                    .with("Unsupported", unsupported.join(", "));
            }
        }
        if method == Method::Invite {
            if let Some(ct) = raw.get("content-type") {
                let ct = ct
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                if !r.raw.body.is_empty() && ct != "application/sdp" && ct != "multipart/mixed" {
                    return Reply::new(415, "Unsupported Media Type").with("Accept", ACCEPT);
                }
            }
            if let Some(acc) = raw.get("accept") {
                let ok = acc.split(',').any(|a| {
                    let a = a
                        .split(';')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_ascii_lowercase();
                    a == "application/sdp" || a == "application/*" || a == "*/*"
                });
                if !ok {
                    return Reply::new(406, "Not Acceptable").with("Accept", ACCEPT);
                }
            }
        }
        match method {
            Method::Register => self.register(now, peer, r),
            Method::Subscribe => self.subscribe(now, peer, r),
            Method::Options => Reply::new(200, "OK")
                .with("Allow", ALLOW)
                .with("Accept", ACCEPT)
                .with("Accept-Encoding", "identity")
                .with("Accept-Language", "en")
                .with("Supported", SUPPORTED),
            Method::Invite | Method::Update | Method::Info | Method::Refer if in_dialog(raw) => {
                self.b2b_in_dialog(now, peer, method, r, key)
            }
            Method::Invite => match self.authenticate(now, peer, r, true) {
                Err(reply) => reply,
                Ok(device) => self.start_call(now, peer, r, key, &device),
            },
            Method::Bye => self.b2b_in_dialog(now, peer, method, r, key),
            Method::Cancel => self.b2b_cancel(now, peer, r, key),
            _ => Reply::new(481, "Call/Transaction Does Not Exist"),
        }
    }
}

/// Methods the TU answers. ACK is not among them: it opens no transaction
/// of its own and never reaches [`Core::decide`].
pub(in crate::sip::core) const SERVED: &[Method] = &[
    Method::Register,
    Method::Options,
    Method::Invite,
    Method::Cancel,
    Method::Bye,
    Method::Update,
    Method::Info,
    Method::Subscribe,
    Method::Refer,
];

/// Methods sipd knows but does not serve (RFC 3261 section 8.2.1: 405).
pub(in crate::sip::core) const KNOWN_UNSERVED: &[Method] = &[
    Method::Notify,
    Method::Message,
    Method::Prack,
    Method::Publish,
];

/// Option tags sipd accepts in `Require`.
pub(in crate::sip::core) const SUPPORTED_TAGS: &[&str] = &["path", "outbound"];

/// A request inside a dialog carries the To tag the dialog got.
pub(in crate::sip::core) fn in_dialog(raw: &Raw) -> bool {
    raw.get("to").and_then(tag_of).is_some()
}
