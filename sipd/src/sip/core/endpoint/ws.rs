//! Browser phones on SIP over WebSocket (`crate::net::ws`): a connection
//! speaks for the one device webd vouched for, so its requests need no
//! digest; its SDP is a browser's (`crate::sip::webrtc`); when it closes,
//! the registrations made on it go, and its calls
//! (`Core::connection_closed`).

use super::*;

impl Core {
    /// One message from a browser phone's connection `peer.conn`, which
    /// speaks for `device`.
    pub fn handle_ws_message(&mut self, now: u64, peer: Peer, device: DeviceId, bytes: &[u8]) {
        self.ws_devices.insert(peer.conn, device);
        let normalized = msg::Raw::split(bytes)
            .filter(|raw| raw.get("content-type").is_some_and(is_sdp))
            .and_then(|raw| {
                let sdp = String::from_utf8_lossy(&raw.body);
                let sdp = crate::sip::webrtc::normalize(&sdp, peer.addr.ip());
                let sdp = self.browser_codecs_in(&raw, &sdp).unwrap_or(sdp);
                msg::with_body(bytes, &sdp)
            });
        self.handle_message(now, peer, normalized.as_deref().unwrap_or(bytes));
    }

    /// A browser's SDP as the call is to see it (`sip::opus`): G.711 where
    /// it speaks only Opus. `None` leaves it as it is.
    fn browser_codecs_in(&mut self, raw: &msg::Raw, sdp: &str) -> Option<String> {
        let id = raw.get("call-id")?;
        let (_, method) = raw.cseq()?;
        let awaits_answer = || {
            self.calls
                .browser_codecs
                .get(id)
                .is_some_and(|c| c.awaits_answer())
        };
        let offer = match (raw.status(), Method::parse(method)) {
            (None, Some(Method::Invite | Method::Update)) => true,
            (None, Some(Method::Ack)) => false,
            (Some(100..=299), Some(Method::Invite | Method::Update)) => !awaits_answer(),
            _ => return None,
        };
        let codecs = self.calls.browser_codecs.entry(id.to_string()).or_default();
        codecs.from_browser(sdp, offer)
    }

    /// The device a browser phone's connection speaks for: its requests
    /// are that device's without a digest (webd checked the user's login).
    pub(in crate::sip::core) fn ws_device(&self, peer: &Peer) -> Option<Device> {
        let id = self.ws_devices.get(&peer.conn)?;
        self.devices.values().find(|d| d.id == *id).cloned()
    }

    /// mediad's DTLS certificate fingerprint, which browsers' SDP carries.
    pub fn set_dtls_fingerprint(&mut self, fp: proto::webrtc::Fingerprint) {
        self.dtls_fingerprint = Some(fp);
    }
}

fn is_sdp(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
}
