//! Digest authentication of requests (RFC 3261 section 22, RFC 8760):
//! the challenge, the check of an answer, and the abuse accounting of
//! failures.

use super::*;

impl Core {
    /// Digest check of a REGISTER (`Authorization`, 401) or INVITE
    /// (`Proxy-Authorization`, 407). Unknown users and wrong passwords get
    /// the same answer so nobody can probe for extensions.
    pub(in crate::sip::core) fn authenticate(
        &mut self,
        now: u64,
        peer: Peer,
        r: &msg::Request,
        proxy: bool,
    ) -> Result<Device, Reply> {
        let raw = &r.raw;
        if peer.transport == crate::sip::Transport::Ws {
            // webd vouched for the connection's device; nobody else's
            // identity can be claimed on it.
            return self.ws_device(&peer).ok_or_else(|| {
                Reply::new(403, "Forbidden")
                    .with("Warning", "399 gosip \"this connection is no device's\"")
            });
        }
        let method = raw.method().unwrap_or_default();
        let realm = self.cfg.realm.clone();
        let header = if proxy {
            "proxy-authorization"
        } else {
            "authorization"
        };
        let creds = raw
            .all(header)
            .filter_map(Credentials::parse)
            .find(|c| c.realm == realm);
        let ip = peer.addr.ip();
        let Some(creds) = creds else {
            return Err(self.challenge(now, peer, raw, proxy, false));
        };
        let (device, ha1, kind) = self.claimed(&creds, proxy, ip);
        let attempt = Attempt {
            method,
            request_uri: raw.start().split(' ').nth(1).unwrap_or_default(),
            client: ip,
        };
        let verdict = self.nonces.verify(now, &realm, &attempt, &creds, &ha1);
        if verdict != Verdict::Foreign {
            // The nonce went to this address: the source is genuine.
            self.abuse.challenge_answered(ip);
        }
        match (verdict, device) {
            // A phone set up for TLS never signals in clear: a request that
            // does is a misconfigured phone or someone replaying its answer.
            (Verdict::Ok, Some(d))
                if kind == "sip_bad_password"
                    && d.tls_only
                    && peer.transport != crate::sip::Transport::Tls =>
            {
                Err(Reply::new(403, "Forbidden")
                    .with("Warning", "399 gosip \"this phone must use SIP over TLS\""))
            }
            (Verdict::Ok, Some(d)) if kind == "sip_bad_password" => Ok(d),
            (Verdict::Stale | Verdict::Replay, _) => {
                Err(self.challenge(now, peer, raw, proxy, true))
            }
            (Verdict::Foreign | Verdict::NoQop, _) => {
                Err(self.challenge(now, peer, raw, proxy, false))
            }
            (Verdict::UriMismatch, _) => {
                self.security(
                    "sip_digest_uri_mismatch",
                    ip,
                    &creds.username,
                    format!("{method} from {}", peer.addr),
                );
                Err(Reply::new(400, "Digest URI Mismatch"))
            }
            _ => {
                let detail = format!("{method} from {}", peer.addr);
                Err(self.auth_failed(now, ip, kind, &creds.username, detail))
            }
        }
    }

    /// Who the credentials claim to be (the trunk, on its addresses, or a
    /// device), the HA1 to check them with and the security event a
    /// failure records. An unknown user gets a made-up HA1: the same work
    /// as for a known one.
    fn claimed(
        &self,
        creds: &Credentials,
        proxy: bool,
        ip: IpAddr,
    ) -> (Option<Device>, String, &'static str) {
        let trunk = self
            .cfg
            .trunk
            .as_ref()
            .filter(|t| proxy && t.username == creds.username)
            .filter(|_| self.cfg.trunk_ips.is_empty() || self.cfg.trunk_ips.contains(&ip))
            .cloned();
        let device = trunk.or_else(|| self.devices.get(&creds.username).cloned());
        let (ha1, kind) = match &device {
            Some(d) if d.realm != self.cfg.realm => {
                tracing::warn!(
                    username = %d.username,
                    device_realm = %d.realm,
                    realm = %self.cfg.realm,
                    "device credentials were made for another realm; re-save its password"
                );
                (String::new(), "sip_realm_mismatch")
            }
            Some(d) => match creds.algorithm() {
                Some(Algorithm::Sha256) => (d.ha1_sha256.clone(), "sip_bad_password"),
                _ => (d.ha1_md5.clone(), "sip_bad_password"),
            },
            None => ("0".repeat(32), "sip_unknown_user"),
        };
        (device, ha1, kind)
    }

    /// A failed authentication: counted, recorded as `kind`, and the
    /// source banned once it failed too often (403 either way).
    fn auth_failed(
        &mut self,
        now: u64,
        ip: IpAddr,
        kind: &'static str,
        username: &str,
        detail: String,
    ) -> Reply {
        self.stats.auth_failures += 1;
        self.security(kind, ip, username, detail);
        if self.abuse.record_failure(ip, now) {
            let p = self.abuse.policy;
            self.security(
                "sip_ban",
                ip,
                username,
                format!(
                    "{} failed authentications within {} s; ignored for {} s",
                    p.threshold,
                    p.window_ms / 1000,
                    p.duration_ms / 1000
                ),
            );
        }
        Reply::new(403, "Forbidden")
    }

    /// A 401/407 with a fresh nonce for `peer`'s address, sent once (see
    /// `Transactions::respond`), or nothing when the source used up its
    /// challenge budget.
    pub(in crate::sip::core) fn challenge(
        &mut self,
        now: u64,
        peer: Peer,
        req: &Raw,
        proxy: bool,
        stale: bool,
    ) -> Reply {
        let ip = peer.addr.ip();
        if !self.abuse.take_challenge(ip, now) {
            self.stats.challenges_withheld += 1;
            tracing::debug!(src = %peer.addr, "challenge budget used up");
            return Reply::silent();
        }
        let [md5, sha] = self.nonces.challenges(now, &self.cfg.realm, stale, ip);
        let (code, reason, name) = if proxy {
            (407, "Proxy Authentication Required", "Proxy-Authenticate")
        } else {
            (401, "Unauthorized", "WWW-Authenticate")
        };
        let reply = Reply::new(code, reason).with(name, md5);
        let ua = req.get("user-agent").unwrap_or_default();
        if self.cfg.offer_sha256 && !chokes_on_sha256(ua) {
            reply.with(name, sha)
        } else {
            reply
        }
    }
}

/// Clients that fail the whole authentication when one of several
/// challenges names an algorithm they lack, instead of picking the one they
/// know (RFC 8760 section 2.4). libre before 2.x (baresip 1.0) answers
/// `ENOSYS` to a SHA-256 challenge.
pub(in crate::sip::core) fn chokes_on_sha256(user_agent: &str) -> bool {
    const OLD: &[&str] = &["baresip v0.", "baresip v1."];
    OLD.iter().any(|p| user_agent.starts_with(p))
}
