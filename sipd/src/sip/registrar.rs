//! The registrar of RFC 3261 section 10.3: bindings per device, `Expires`
//! header and parameter, min/max expiry (`423` with `Min-Expires`), `*` with
//! `Expires: 0`, Call-ID/CSeq ordering, and the list of every current
//! contact for the `200`. Bindings remember the address the REGISTER really
//! came from (RFC 3581), which is where requests to the device go.

use proto::types::{DeviceId, UserId};
use std::collections::HashMap;

use super::Peer;
use super::msg::{split_name_addr, split_top_level, uri_of};

/// A SIP device as the registrar and digest check need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: DeviceId,
    pub username: String,
    /// HA1 (MD5 hex) for `realm`.
    pub ha1_md5: String,
    /// HA1 (SHA-256 hex) for `realm`; empty when unknown.
    pub ha1_sha256: String,
    pub realm: String,
    pub extension: Option<String>,
    /// `devices.recording_enabled`: record every call of this device.
    pub recording: bool,
    /// The DID sent as caller ID on trunk calls (E.164).
    pub caller_id: Option<String>,
    /// `devices.mwi_unsolicited`: message-waiting NOTIFYs to its contacts
    /// without a subscription.
    pub mwi_unsolicited: bool,
    /// `devices.busy_in_call`: while the device is in a call, other calls
    /// do not ring it.
    pub busy_in_call: bool,
    /// `devices.srtp`: whether its calls must, may or must not be SRTP.
    pub srtp: super::sdes::Policy,
    /// `devices.transport` is `tls`: requests from it in clear are refused.
    pub tls_only: bool,
    /// Whose voicemail an internal call to this device nobody answers goes
    /// to: the device's owner (`None`: an unowned device, the call ends).
    pub mailbox: Option<Mailbox>,
}

/// A user's voicemail box, as the core needs it to answer for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub user_id: UserId,
    /// The owner's name, read out in the greeting ("Alice is not
    /// available"); may be empty.
    pub name: String,
}

/// One registered contact of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub device_id: DeviceId,
    /// The Contact URI as sent (no angle brackets, no header parameters).
    pub contact: String,
    /// Where the REGISTER came from; requests to the device go here.
    pub source: Peer,
    pub user_agent: String,
    pub call_id: String,
    pub cseq: u32,
    /// Milliseconds since the Unix epoch.
    pub expires_at: u64,
    pub online: bool,
    pub last_seen: u64,
    /// Keep-alives missed in a row.
    pub missed: u32,
}

impl Binding {
    /// Where requests to this contact go. Over UDP the Contact's own address
    /// when it names the very IP the REGISTER came from (no NAT on the path,
    /// e.g. several UAs on one host); otherwise the address the REGISTER
    /// really came from (RFC 3581), which is what gets through a NAT.
    pub fn target(&self) -> Peer {
        if self.source.transport != super::Transport::Udp {
            return self.source;
        }
        match contact_addr(&self.contact) {
            Some(a) if a.ip() == self.source.addr.ip() => Peer {
                addr: a,
                ..self.source
            },
            _ => self.source,
        }
    }
}

/// The `host:port` of a sip: URI when the host is an IP literal.
fn contact_addr(uri: &str) -> Option<std::net::SocketAddr> {
    let rest = uri.split_once(':')?.1;
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostport.split([';', '?']).next()?;
    if let Ok(a) = hostport.parse::<std::net::SocketAddr>() {
        return Some(a);
    }
    let ip: std::net::IpAddr = hostport.trim_matches(['[', ']']).parse().ok()?;
    Some(std::net::SocketAddr::new(ip, 5060))
}

/// Expiry limits in seconds (`sip.min_expires`, `sip.max_expires`,
/// `sip.default_expires`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryPolicy {
    pub min: u32,
    pub max: u32,
    pub default: u32,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        Self {
            min: 60,
            max: 3600,
            default: 600,
        }
    }
}

/// A REGISTER as the registrar sees it, already authenticated.
#[derive(Debug, Clone)]
pub struct Register<'a> {
    pub device_id: DeviceId,
    /// Every Contact header value.
    pub contacts: Vec<&'a str>,
    pub expires_header: Option<u32>,
    pub call_id: &'a str,
    pub cseq: u32,
    pub user_agent: &'a str,
    pub source: Peer,
}

/// The registrar's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with these contacts (URI, seconds left).
    Ok(Vec<(String, u64)>),
    /// 423 Interval Too Brief with Min-Expires.
    TooBrief(u32),
    /// 400 with a reason.
    Bad(&'static str),
    /// 500: a binding with this Call-ID already has a higher CSeq
    /// (RFC 3261 section 10.3 step 7).
    OutOfOrder,
    /// 403: more contacts than a device may have.
    TooMany,
}

/// A change to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Upsert(Binding),
    Remove {
        device_id: DeviceId,
        contact: String,
    },
    Online(Binding),
}

/// Most contacts one device may register.
pub const MAX_BINDINGS: usize = 16;

#[derive(Debug, Default)]
pub struct Registrar {
    pub policy: ExpiryPolicy,
    bindings: HashMap<DeviceId, Vec<Binding>>,
    changes: Vec<Change>,
}

impl Registrar {
    pub fn new(policy: ExpiryPolicy) -> Self {
        Self {
            policy,
            ..Default::default()
        }
    }

    /// Loads bindings stored before a restart (without emitting changes).
    pub fn restore(&mut self, b: Binding) {
        let list = self.bindings.entry(b.device_id).or_default();
        list.retain(|x| x.contact != b.contact);
        list.push(b);
    }

    /// Drops every binding of `device_id` (its credentials changed or it was
    /// deleted: a phone still using the old password must not keep ringing).
    pub fn forget(&mut self, device_id: DeviceId) {
        for b in self.bindings.remove(&device_id).unwrap_or_default() {
            self.changes.push(Change::Remove {
                device_id,
                contact: b.contact,
            });
        }
    }

    /// Drops the bindings made over connection `conn` of `transport` (a
    /// phone's TCP, TLS or WebSocket connection that closed).
    pub fn drop_connection(&mut self, transport: super::Transport, conn: u64) {
        let changes = &mut self.changes;
        self.bindings.retain(|_, list| {
            list.retain(|b| {
                let gone = b.source.transport == transport && b.source.conn == conn;
                if gone {
                    changes.push(Change::Remove {
                        device_id: b.device_id,
                        contact: b.contact.clone(),
                    });
                }
                !gone
            });
            !list.is_empty()
        });
    }

    /// `Contact: *` with `Expires: 0`: every binding of the device goes,
    /// but one a newer REGISTER of the same Call-ID made (RFC 3261 section
    /// 10.3 step 6).
    fn unregister_all(&mut self, now: u64, r: &Register<'_>) -> Outcome {
        let list = self.bindings.remove(&r.device_id).unwrap_or_default();
        let (keep, gone): (Vec<_>, Vec<_>) = list
            .into_iter()
            .partition(|b| b.call_id == r.call_id && b.cseq >= r.cseq);
        for b in gone {
            self.changes.push(Change::Remove {
                device_id: b.device_id,
                contact: b.contact,
            });
        }
        if !keep.is_empty() {
            self.bindings.insert(r.device_id, keep);
        }
        Outcome::Ok(self.current(now, r.device_id))
    }

    /// Each contact's URI and the expiry it gets, or the answer refusing
    /// the whole REGISTER.
    fn wanted(&self, items: &[&str], r: &Register<'_>) -> Result<Vec<(String, u32)>, Outcome> {
        let mut wanted = Vec::new();
        for c in items {
            let uri = uri_of(c).to_string();
            if !uri.contains(':') {
                return Err(Outcome::Bad("Malformed Contact"));
            }
            let expires = match contact_expires(c) {
                Some(Ok(e)) => e,
                Some(Err(())) => return Err(Outcome::Bad("Bad Contact Expires")),
                None => r.expires_header.unwrap_or(self.policy.default),
            };
            if expires != 0 && expires < self.policy.min {
                return Err(Outcome::TooBrief(self.policy.min));
            }
            wanted.push((uri, expires.min(self.policy.max)));
        }
        Ok(wanted)
    }

    /// Applies a REGISTER at `now` (ms).
    pub fn register(&mut self, now: u64, r: &Register<'_>) -> Outcome {
        let mut items: Vec<&str> = Vec::new();
        for v in &r.contacts {
            for c in split_top_level(v, b',') {
                let c = c.trim();
                if !c.is_empty() {
                    items.push(c);
                }
            }
        }
        if items.contains(&"*") {
            if items.len() != 1 || r.expires_header != Some(0) {
                return Outcome::Bad("Wildcard Contact Needs Expires 0");
            }
            return self.unregister_all(now, r);
        }
        // Validate everything first: a REGISTER is applied whole or not at all.
        let wanted = match self.wanted(&items, r) {
            Ok(w) => w,
            Err(o) => return o,
        };
        let list = self.bindings.entry(r.device_id).or_default();
        for (uri, _) in &wanted {
            if let Some(b) = list.iter().find(|b| &b.contact == uri)
                && b.call_id == r.call_id
                && b.cseq >= r.cseq
            {
                return Outcome::OutOfOrder;
            }
        }
        let adding = wanted
            .iter()
            .filter(|(u, e)| *e > 0 && !list.iter().any(|b| &b.contact == u))
            .count();
        if list.len() + adding > MAX_BINDINGS {
            return Outcome::TooMany;
        }
        for (uri, expires) in wanted {
            if expires == 0 {
                if let Some(i) = list.iter().position(|b| b.contact == uri) {
                    let b = list.remove(i);
                    self.changes.push(Change::Remove {
                        device_id: b.device_id,
                        contact: b.contact,
                    });
                }
                continue;
            }
            let expires_at = now + u64::from(expires) * 1000;
            let i = match list.iter().position(|x| x.contact == uri) {
                // A refresh: updated in place, its strings kept when the
                // same (they outlive the REGISTER's own allocations).
                Some(i) => {
                    let x = &mut list[i];
                    if x.user_agent != r.user_agent {
                        r.user_agent.clone_into(&mut x.user_agent);
                    }
                    if x.call_id != r.call_id {
                        r.call_id.clone_into(&mut x.call_id);
                    }
                    x.source = r.source;
                    x.cseq = r.cseq;
                    x.expires_at = expires_at;
                    x.online = true;
                    x.last_seen = now;
                    x.missed = 0;
                    i
                }
                None => {
                    list.push(Binding {
                        device_id: r.device_id,
                        contact: uri,
                        source: r.source,
                        user_agent: r.user_agent.to_string(),
                        call_id: r.call_id.to_string(),
                        cseq: r.cseq,
                        expires_at,
                        online: true,
                        last_seen: now,
                        missed: 0,
                    });
                    list.len() - 1
                }
            };
            self.changes.push(Change::Upsert(list[i].clone()));
        }
        if list.is_empty() {
            self.bindings.remove(&r.device_id);
        }
        Outcome::Ok(self.current(now, r.device_id))
    }

    /// The device's contacts with seconds left.
    pub fn current(&self, now: u64, device_id: DeviceId) -> Vec<(String, u64)> {
        self.bindings
            .get(&device_id)
            .map(|l| {
                l.iter()
                    .filter(|b| b.expires_at > now)
                    .map(|b| (b.contact.clone(), (b.expires_at - now).div_ceil(1000)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every live binding of a device.
    pub fn bindings_of(&self, device_id: DeviceId) -> &[Binding] {
        self.bindings.get(&device_id).map_or(&[], |v| v.as_slice())
    }

    /// Every binding.
    pub fn all(&self) -> impl Iterator<Item = &Binding> {
        self.bindings.values().flatten()
    }

    pub fn count(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    /// Removes bindings whose time is up.
    pub fn sweep(&mut self, now: u64) {
        let changes = &mut self.changes;
        self.bindings.retain(|_, list| {
            list.retain(|b| {
                let live = b.expires_at > now;
                if !live {
                    changes.push(Change::Remove {
                        device_id: b.device_id,
                        contact: b.contact.clone(),
                    });
                }
                live
            });
            !list.is_empty()
        });
    }

    /// The earliest expiry, for the caller's timer.
    pub fn next_expiry(&self) -> Option<u64> {
        self.all().map(|b| b.expires_at).min()
    }

    /// Records a keep-alive result for a binding.
    pub fn keepalive_result(
        &mut self,
        now: u64,
        device_id: DeviceId,
        contact: &str,
        answered: bool,
        failures_allowed: u32,
    ) {
        let Some(b) = self
            .bindings
            .get_mut(&device_id)
            .and_then(|l| l.iter_mut().find(|b| b.contact == contact))
        else {
            return;
        };
        if answered {
            b.missed = 0;
            b.last_seen = now;
            b.online = true;
            self.changes.push(Change::Online(b.clone()));
        } else {
            b.missed += 1;
            if b.online && b.missed >= failures_allowed.max(1) {
                b.online = false;
                self.changes.push(Change::Online(b.clone()));
            }
        }
    }

    pub fn poll_change(&mut self) -> Option<Change> {
        if self.changes.is_empty() {
            None
        } else {
            Some(self.changes.remove(0))
        }
    }

    pub fn drain_changes(&mut self) -> std::vec::Drain<'_, Change> {
        self.changes.drain(..)
    }
}

/// The `expires` parameter of one Contact value: `None` when absent.
fn contact_expires(c: &str) -> Option<Result<u32, ()>> {
    let (_, params) = split_name_addr(c);
    for p in split_top_level(params, b';').into_iter().skip(1) {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        if k.trim().eq_ignore_ascii_case("expires") {
            return Some(v.trim().parse::<u32>().map_err(|_| ()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer::udp("127.0.0.1:5070".parse().unwrap())
    }

    fn reg<'a>(contacts: Vec<&'a str>, expires: Option<u32>, cseq: u32) -> Register<'a> {
        Register {
            device_id: DeviceId(1),
            contacts,
            expires_header: expires,
            call_id: "c1",
            cseq,
            user_agent: "test",
            source: peer(),
        }
    }

    #[test]
    fn two_contacts_are_both_listed_with_their_expiry() {
        let mut r = Registrar::new(ExpiryPolicy::default());
        let out = r.register(
            0,
            &reg(
                vec!["<sip:a@10.0.0.1>;expires=120, <sip:a@10.0.0.2>"],
                Some(300),
                1,
            ),
        );
        assert_eq!(
            out,
            Outcome::Ok(vec![
                ("sip:a@10.0.0.1".into(), 120),
                ("sip:a@10.0.0.2".into(), 300)
            ])
        );
        assert_eq!(r.drain_changes().count(), 2);
    }

    #[test]
    fn a_too_short_expiry_gets_423_with_the_minimum() {
        let mut r = Registrar::new(ExpiryPolicy::default());
        assert_eq!(
            r.register(0, &reg(vec!["<sip:a@h>"], Some(10), 1)),
            Outcome::TooBrief(60)
        );
        assert_eq!(r.count(), 0);
    }

    #[test]
    fn a_long_expiry_is_cut_to_the_maximum_and_missing_uses_the_default() {
        let mut r = Registrar::new(ExpiryPolicy::default());
        assert_eq!(
            r.register(0, &reg(vec!["<sip:a@h>;expires=99999"], None, 1)),
            Outcome::Ok(vec![("sip:a@h".into(), 3600)])
        );
        assert_eq!(
            r.register(0, &reg(vec!["<sip:b@h>"], None, 2)),
            Outcome::Ok(vec![("sip:a@h".into(), 3600), ("sip:b@h".into(), 600)])
        );
    }

    #[test]
    fn expires_zero_removes_one_contact_and_star_removes_all() {
        let mut r = Registrar::new(ExpiryPolicy::default());
        r.register(0, &reg(vec!["<sip:a@h>", "<sip:b@h>"], Some(300), 1));
        assert_eq!(
            r.register(1000, &reg(vec!["<sip:a@h>;expires=0"], None, 2)),
            Outcome::Ok(vec![("sip:b@h".into(), 299)])
        );
        assert_eq!(
            r.register(1000, &reg(vec!["*"], Some(300), 3)),
            Outcome::Bad("Wildcard Contact Needs Expires 0")
        );
        assert_eq!(
            r.register(1000, &reg(vec!["*"], Some(0), 3)),
            Outcome::Ok(vec![])
        );
        assert_eq!(r.count(), 0);
    }

    #[test]
    fn a_stale_cseq_on_the_same_call_id_is_refused() {
        let mut r = Registrar::new(ExpiryPolicy::default());
        r.register(0, &reg(vec!["<sip:a@h>"], Some(300), 5));
        assert_eq!(
            r.register(0, &reg(vec!["<sip:a@h>"], Some(300), 5)),
            Outcome::OutOfOrder
        );
    }

    #[test]
    fn requests_go_to_the_contact_on_the_same_host_and_to_the_source_behind_nat() {
        let mut r = Registrar::new(ExpiryPolicy::default());
        r.register(
            0,
            &reg(
                vec!["<sip:a@127.0.0.1:6000>", "<sip:b@192.168.1.9:5060>"],
                Some(300),
                1,
            ),
        );
        let b = r.bindings_of(DeviceId(1));
        assert_eq!(b[0].target().addr, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(b[1].target().addr, "127.0.0.1:5070".parse().unwrap());
    }

    #[test]
    fn expired_bindings_are_swept() {
        let mut r = Registrar::new(ExpiryPolicy::default());
        r.register(0, &reg(vec!["<sip:a@h>"], Some(60), 1));
        r.drain_changes().for_each(drop);
        r.sweep(59_999);
        assert_eq!(r.count(), 1);
        r.sweep(60_000);
        assert_eq!(r.count(), 0);
        assert!(matches!(r.poll_change(), Some(Change::Remove { .. })));
    }

    #[test]
    fn missed_keepalives_mark_the_binding_offline_and_an_answer_back_online() {
        let mut r = Registrar::new(ExpiryPolicy::default());
        r.register(0, &reg(vec!["<sip:a@h>"], Some(600), 1));
        r.drain_changes().for_each(drop);
        for _ in 0..2 {
            r.keepalive_result(1, DeviceId(1), "sip:a@h", false, 3);
        }
        assert!(r.bindings_of(DeviceId(1))[0].online);
        r.keepalive_result(2, DeviceId(1), "sip:a@h", false, 3);
        assert!(!r.bindings_of(DeviceId(1))[0].online);
        r.keepalive_result(3, DeviceId(1), "sip:a@h", true, 3);
        assert!(r.bindings_of(DeviceId(1))[0].online);
    }
}
