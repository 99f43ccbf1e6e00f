//! Call control: a back-to-back user agent. Every call is an A-leg (the
//! caller's INVITE, answered by sipd as a UAS) and one B-leg per registered
//! contact of the callee (sipd as UAC, forking); the first 2xx wins, the other
//! branches are cancelled. Media flows through mediad, whose ports the shell
//! allocates when asked ([`Event::MediaAllocate`]) and hands back with
//! [`Core::media_ready`].
//!
//! Outbound calls (a device dials a number that is no extension) have one
//! B-leg, to the trunk's termination URI, answering its digest challenge.
//! Click-to-call ([`Core::originate`]) rings the device first as a UAC
//! (its branches are the "a" leg) and dials the trunk once it answers.
//!
//! INVITE client transactions (Timers A/B, ACK of non-2xx), the A-leg 2xx
//! retransmission until ACK (RFC 3261 section 13.3.1.4) and the ring timeout
//! all run off the caller's clock.

use std::collections::HashMap;

use super::{Core, Event, Reply};
use crate::sip::msg::{self, Raw, tag_of, uri_of, user_of};
use crate::sip::registrar::Device;

/// The device id the trunk (Twilio) authenticates as.
pub const TRUNK_ID: i64 = 0;
use crate::sip::{Peer, T1, T2, Transmit, digest, sdp};

/// A change to the call's `cdrs` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cdr {
    Start {
        call_id: String,
        direction: &'static str,
        from: String,
        to: String,
        device_id: i64,
        started_at: u64,
        /// Twilio's CallSid for trunk calls.
        call_sid: Option<String>,
    },
    Answered {
        call_id: String,
        at: u64,
    },
    End {
        call_id: String,
        at: u64,
        disposition: &'static str,
        duration_s: u64,
        reason: String,
    },
}

/// What [`Core::calls`] reports per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub call_id: String,
    pub from: String,
    pub to: String,
    pub device_id: i64,
    pub state: &'static str,
    pub started_at: u64,
    pub recording: bool,
    /// "internal", "inbound" or "outbound".
    pub direction: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for mediad's ports.
    Media,
    Ringing,
    /// 2xx sent to the A-leg, waiting for its ACK.
    Answering,
    Up,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BranchState {
    Calling,
    Proceeding,
    Won,
    Done,
}

#[derive(Debug)]
struct Branch {
    peer: Peer,
    /// The callee device this contact belongs to.
    device_id: i64,
    /// CSeq number of the INVITE (2 once retried with credentials).
    cseq: u32,
    contact: String,
    call_id: String,
    branch: String,
    from_tag: String,
    to_tag: String,
    remote_target: String,
    invite: Vec<u8>,
    state: BranchState,
    status: u16,
    next_resend: Option<u64>,
    interval: u64,
    timer_b: u64,
}

#[derive(Debug)]
pub(super) struct Call {
    id: String,
    state: State,
    a_peer: Peer,
    a_req: Raw,
    a_key: String,
    a_tag: String,
    a_target: String,
    a_cseq: u32,
    a_ok: Option<Vec<u8>>,
    a_ok_next: u64,
    a_ok_interval: u64,
    a_ok_deadline: u64,
    offer: String,
    from_user: String,
    from_display: String,
    to_user: String,
    device_id: i64,
    callees: Vec<i64>,
    branches: Vec<Branch>,
    ports: Option<(u16, u16)>,
    a_sdp: String,
    started_at: u64,
    answered_at: Option<u64>,
    ring_deadline: u64,
    ringing_sent: bool,
    /// The caller's device wants every call recorded (internal callers).
    caller_records: bool,
    recording: bool,
    /// The latest DTMF digits per leg (a, b), for `calls.record_dtmf`.
    dtmf: [String; 2],
    /// An outbound call: the E.164 number dialed through the trunk.
    outbound: Option<String>,
    /// Click-to-call: sipd rings the device first (its branches are the
    /// "a" leg), then dials `outbound` through the trunk ("b" leg).
    originate: bool,
    /// The CDR direction.
    direction: &'static str,
}

/// Every call, with indexes for routing messages to them.
#[derive(Debug, Default)]
pub(super) struct Calls {
    calls: HashMap<String, Call>,
    /// B-leg Call-ID -> A-leg Call-ID (the call's id).
    by_b_call_id: HashMap<String, String>,
    /// B-leg INVITE branch -> (call id, branch index).
    by_branch: HashMap<String, (String, usize)>,
    /// Branches of ended calls, kept for Timer-B time so late finals get
    /// their ACK (and a late 2xx its BYE): (branch, from user, to user, until).
    ended: HashMap<String, (Branch, String, String, u64)>,
}

impl Calls {
    pub(super) fn next_timeout(&self) -> Option<u64> {
        let mut t: Option<u64> = None;
        let mut min = |v: u64| t = Some(t.map_or(v, |x| x.min(v)));
        for (_, _, _, until) in self.ended.values() {
            min(*until);
        }
        for c in self.calls.values() {
            if c.state == State::Ringing {
                min(c.ring_deadline);
            }
            if c.state == State::Answering {
                min(c.a_ok_next);
            }
            for b in &c.branches {
                if matches!(b.state, BranchState::Calling | BranchState::Proceeding) {
                    if let Some(n) = b.next_resend {
                        min(n);
                    }
                    if b.state == BranchState::Calling {
                        min(b.timer_b);
                    }
                }
            }
        }
        t
    }
}

impl Core {
    /// Starts a call for an authenticated INVITE. Returns the immediate
    /// answer: `100 Trying` when the call goes on, a final status otherwise.
    pub(super) fn start_call(
        &mut self,
        now: u64,
        peer: Peer,
        r: &msg::Request,
        key: &str,
        caller: &Device,
    ) -> Reply {
        let raw = &r.raw;
        let inbound = caller.id == TRUNK_ID;
        let Some(call_id) = raw.get("call-id").map(str::to_string) else {
            return Reply::new(400, "Missing Call-ID");
        };
        if self.calls.calls.contains_key(&call_id) {
            return Reply::new(482, "Loop Detected");
        }
        let dialed = user_of(raw.start.split(' ').nth(1).unwrap_or_default())
            .unwrap_or_default()
            .to_string();
        // Inbound trunk calls name their devices in X-GoSIP-Devices (set
        // by twiliod's TwiML); internal calls dial an extension or username.
        let callees: Vec<i64> = if inbound {
            raw.get("x-gosip-devices")
                .unwrap_or_default()
                .split(',')
                .filter_map(|d| d.trim().parse().ok())
                .collect()
        } else {
            self.devices
                .get(&dialed)
                .or_else(|| {
                    self.extensions
                        .get(&dialed)
                        .and_then(|u| self.devices.get(u))
                })
                .map(|d| vec![d.id])
                .unwrap_or_default()
        };
        let mut outbound = None;
        if callees.is_empty() && !inbound {
            match self.outbound_number(&dialed, caller) {
                Ok(n) => outbound = Some(n),
                Err(reply) => return reply,
            }
        }
        if outbound.is_none() {
            if callees.is_empty() {
                return Reply::new(404, "Not Found");
            }
            if callees
                .iter()
                .all(|id| self.registrar.bindings_of(*id).is_empty())
            {
                return Reply::new(480, "Temporarily Unavailable");
            }
        }
        let call_sid = ["x-gosip-callsid", "x-twilio-callsid"]
            .iter()
            .find_map(|h| raw.get(h))
            .map(str::to_string);
        let from_user = if let Some(did) = outbound.as_ref().and(caller.caller_id.as_ref()) {
            did.clone()
        } else if inbound {
            user_of(uri_of(raw.get("from").unwrap_or_default()))
                .unwrap_or_default()
                .to_string()
        } else {
            caller
                .extension
                .clone()
                .unwrap_or_else(|| caller.username.clone())
        };
        let offer = String::from_utf8_lossy(&raw.body).into_owned();
        if offer.is_empty() {
            // Offer-less INVITEs (offer in the 200) are not bridged yet.
            return Reply::new(488, "Not Acceptable Here");
        }
        if sdp::rewrite(&offer, "0.0.0.0", 1, false).is_none() {
            return Reply::new(488, "Not Acceptable Here")
                .with("Warning", "304 gosip \"no shared codec\"");
        }
        let from = raw.get("from").unwrap_or_default();
        let display = from
            .trim()
            .strip_prefix('"')
            .and_then(|s| s.split('"').next())
            .unwrap_or_default()
            .to_string();
        let a_target = raw
            .get("contact")
            .map(|c| uri_of(c).to_string())
            .unwrap_or_default();
        let a_tag = self.next_id();
        let call = Call {
            id: call_id.clone(),
            state: State::Media,
            a_peer: peer,
            a_req: raw.clone(),
            a_key: key.to_string(),
            a_tag,
            a_target,
            a_cseq: 0,
            a_ok: None,
            a_ok_next: 0,
            a_ok_interval: T1,
            a_ok_deadline: 0,
            offer,
            from_user,
            from_display: display,
            to_user: outbound.clone().unwrap_or_else(|| dialed.clone()),
            device_id: if inbound { callees[0] } else { caller.id },
            callees,
            branches: Vec::new(),
            ports: None,
            a_sdp: String::new(),
            started_at: now,
            answered_at: None,
            ring_deadline: now + self.cfg.ring_timeout_ms,
            ringing_sent: false,
            caller_records: !inbound && caller.recording,
            recording: false,
            dtmf: [String::new(), String::new()],
            outbound: outbound.clone(),
            originate: false,
            direction: if inbound {
                "inbound"
            } else if outbound.is_some() {
                "outbound"
            } else {
                "internal"
            },
        };
        tracing::info!(call_id = %call_id, from = %call.from_user, to = %call.to_user, "call started");
        self.events.push_back(Event::Cdr(Cdr::Start {
            call_id: call_id.clone(),
            direction: call.direction,
            from: call.from_user.clone(),
            to: call.to_user.clone(),
            device_id: call.device_id,
            started_at: now,
            call_sid,
        }));
        self.events.push_back(Event::MediaAllocate {
            call_id: call_id.clone(),
        });
        self.calls.calls.insert(call_id, call);
        Reply::new(100, "Trying")
    }

    /// The E.164 number for a dialed string that is no device or extension:
    /// the call goes out through the trunk. Premium and international
    /// numbers need `calls.allow_premium` / `calls.allow_international`.
    pub(super) fn outbound_number(&self, dialed: &str, caller: &Device) -> Result<String, Reply> {
        let country = self.cfg.default_country.as_str();
        let Ok(n) = proto::types::E164::normalize(dialed, country) else {
            return Err(Reply::new(404, "Not Found"));
        };
        let n = n.as_str().to_string();
        let Some(t) = &self.cfg.termination else {
            return Err(Reply::new(503, "Service Unavailable")
                .with("Warning", "399 gosip \"no SIP trunk configured\""));
        };
        if t.username.is_empty() && t.password.is_empty() {
            tracing::debug!("trunk without credentials: relying on its IP ACL");
        }
        if !self.cfg.allow_international && !n[1..].starts_with(country) {
            return Err(Reply::new(403, "Forbidden").with(
                "Warning",
                "399 gosip \"international calls are not allowed\"",
            ));
        }
        if !self.cfg.allow_premium && is_premium(&n) {
            return Err(Reply::new(403, "Forbidden").with(
                "Warning",
                "399 gosip \"premium-rate numbers are not allowed\"",
            ));
        }
        if caller.caller_id.is_none() {
            return Err(Reply::new(403, "Forbidden")
                .with("Warning", "399 gosip \"no DID to use as caller ID\""));
        }
        Ok(n)
    }

    /// Click-to-call (gRPC Originate): rings `device_id`'s contacts; when
    /// the device answers, dials `to_number` through the trunk and bridges
    /// the two. Returns the call id, or a SIP-like status and reason.
    pub fn originate(
        &mut self,
        now: u64,
        call_id: &str,
        device_id: i64,
        to_number: &str,
    ) -> Result<String, (u16, String)> {
        let Some(device) = self.devices.values().find(|d| d.id == device_id).cloned() else {
            return Err((404, "no such device".into()));
        };
        if self.registrar.bindings_of(device_id).is_empty() {
            return Err((480, "the device is not registered".into()));
        }
        let number = self.outbound_number(to_number, &device).map_err(|r| {
            (
                r.code,
                r.extra
                    .first()
                    .map_or_else(|| r.reason.to_string(), |(_, w)| w.clone()),
            )
        })?;
        let call_id = if call_id.is_empty() {
            format!("c2c-{}@gosip", self.next_id())
        } else {
            call_id.to_string()
        };
        if self.calls.calls.contains_key(&call_id) {
            return Err((409, "call id in use".into()));
        }
        let did = device.caller_id.clone().unwrap_or_default();
        let synthetic = format!(
            "INVITE sip:{number}@{realm} SIP/2.0\r\nFrom: <sip:{did}@{realm}>\r\nTo: <sip:{number}@{realm}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            realm = self.cfg.realm
        );
        let Some(a_req) = Raw::split(synthetic.as_bytes()) else {
            return Err((500, "cannot build the call".into()));
        };
        let a_tag = self.next_id();
        let call = Call {
            id: call_id.clone(),
            state: State::Media,
            a_peer: Peer {
                transport: crate::sip::Transport::Udp,
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                conn: 0,
            },
            a_req,
            a_key: String::new(),
            a_tag,
            a_target: String::new(),
            a_cseq: 0,
            a_ok: None,
            a_ok_next: 0,
            a_ok_interval: T1,
            a_ok_deadline: 0,
            offer: String::new(),
            from_user: did.clone(),
            from_display: format!("Call {number}"),
            to_user: number.clone(),
            device_id,
            callees: vec![device_id],
            branches: Vec::new(),
            ports: None,
            a_sdp: String::new(),
            started_at: now,
            answered_at: None,
            ring_deadline: now + self.cfg.ring_timeout_ms,
            ringing_sent: true,
            caller_records: device.recording,
            recording: false,
            dtmf: [String::new(), String::new()],
            outbound: Some(number.clone()),
            originate: true,
            direction: "outbound",
        };
        tracing::info!(call_id = %call_id, device_id, to = %number, "click-to-call started");
        self.events.push_back(Event::Cdr(Cdr::Start {
            call_id: call_id.clone(),
            direction: "outbound",
            from: did,
            to: number,
            device_id,
            started_at: now,
            call_sid: None,
        }));
        self.events.push_back(Event::MediaAllocate {
            call_id: call_id.clone(),
        });
        self.calls.calls.insert(call_id.clone(), call);
        Ok(call_id)
    }

    /// A 2xx on a click-to-call branch: the device answered (dial the
    /// trunk) or the trunk answered (the call is up).
    fn originate_answered(&mut self, now: u64, call_id: &str, i: usize, body: &str) -> bool {
        let term = self.cfg.termination.clone();
        let local = self.cfg.local_addr.clone();
        let realm = self.cfg.realm.clone();
        let media_ip = self.cfg.media_ip.clone();
        let branch = format!("z9hG4bK{}", self.next_id());
        let b_call_id = format!("{}@gosip", self.next_id());
        let from_tag = self.next_id();
        let trunk_side = self
            .calls
            .calls
            .get(call_id)
            .is_some_and(|c| c.branches[i].device_id == TRUNK_ID);
        if !trunk_side {
            // The device answered on one contact: stop ringing the others.
            self.cancel_branches(call_id, Some(i));
        }
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return true;
        };
        call.branches[i].state = BranchState::Won;
        let media = sdp::leg_media(body);
        if trunk_side {
            call.state = State::Up;
            call.answered_at = Some(now);
            tracing::info!(call_id = %call_id, "click-to-call answered");
            self.events.push_back(Event::MediaUpdate {
                call_id: call_id.to_string(),
                leg: "b",
                hold: media.as_ref().map(|m| m.hold),
                media,
                established: Some(true),
            });
            self.events.push_back(Event::Cdr(Cdr::Answered {
                call_id: call_id.to_string(),
                at: now,
            }));
            if call.caller_records {
                call.recording = true;
                self.events.push_back(Event::MediaRecord {
                    call_id: call_id.to_string(),
                    enabled: true,
                });
            }
            return true;
        }
        self.events.push_back(Event::MediaUpdate {
            call_id: call_id.to_string(),
            leg: "a",
            hold: media.as_ref().map(|m| m.hold),
            media,
            established: Some(true),
        });
        let (Some(t), Some(n), Some((_, pb))) = (term, call.outbound.clone(), call.ports) else {
            return true;
        };
        let offer = sdp::rewrite(body, &media_ip, pb, false)
            .or_else(|| sdp::rewrite(&call.offer, &media_ip, pb, false))
            .unwrap_or_default();
        let peer = Peer {
            transport: crate::sip::Transport::Udp,
            addr: t.addr,
            conn: 0,
        };
        let contact = format!("sip:{n}@{}", t.host);
        let invite = format!(
            "INVITE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{from}@{realm}>;tag={from_tag}\r\nTo: <sip:{n}@{host}>\r\n\
             P-Asserted-Identity: <sip:{from}@{realm}>\r\nCall-ID: {b_call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:gosip@{local};transport=udp>\r\nAllow: {allow}\r\nUser-Agent: GoSIP\r\n\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{offer}",
            from = call.from_user,
            host = t.host,
            allow = msg::ALLOW,
            len = offer.len(),
        )
        .into_bytes();
        self.out.push_back(Transmit {
            peer,
            data: invite.clone(),
        });
        let idx = call.branches.len();
        call.branches.push(Branch {
            peer,
            device_id: TRUNK_ID,
            cseq: 1,
            contact: contact.clone(),
            call_id: b_call_id.clone(),
            branch: branch.clone(),
            from_tag,
            to_tag: String::new(),
            remote_target: contact,
            invite,
            state: BranchState::Calling,
            status: 0,
            next_resend: Some(now + T1),
            interval: T1,
            timer_b: now + 64 * T1,
        });
        // The number gets its own ring time.
        call.ring_deadline = now + self.cfg.ring_timeout_ms;
        self.calls
            .by_branch
            .insert(branch, (call_id.to_string(), idx));
        self.calls
            .by_b_call_id
            .insert(b_call_id, call_id.to_string());
        true
    }

    /// mediad's answer to [`Event::MediaAllocate`]: the relay ports for the
    /// A-leg and the B-leg, or `None` when mediad could not give any.
    pub fn media_ready(&mut self, now: u64, call_id: &str, ports: Option<(u16, u16)>) {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            if ports.is_some() {
                self.events.push_back(Event::MediaRelease {
                    call_id: call_id.to_string(),
                });
            }
            return;
        };
        if call.state != State::Media {
            return;
        }
        let Some((pa, pb)) = ports else {
            self.fail_a(
                now,
                call_id,
                503,
                "Service Unavailable",
                "failed",
                "no media ports",
            );
            return;
        };
        call.ports = Some((pa, pb));
        call.state = State::Ringing;
        let media_ip = self.cfg.media_ip.clone();
        if call.originate {
            // The device (leg a) gets mediad's own offer on port a.
            call.offer = format!(
                "v=0\r\no=gosip 1 1 IN IP4 {media_ip}\r\ns=GoSIP\r\nc=IN IP4 {media_ip}\r\nt=0 0\r\n\
                 m=audio {pa} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
                 a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
            );
        } else {
            let a_media = sdp::leg_media(&call.offer);
            self.events.push_back(Event::MediaUpdate {
                call_id: call_id.to_string(),
                leg: "a",
                hold: a_media.as_ref().map(|m| m.hold),
                media: a_media,
                established: None,
            });
        }
        let port = if call.originate { pa } else { pb };
        let Some(offer_b) = sdp::rewrite(&call.offer, &media_ip, port, false) else {
            self.fail_a(
                now,
                call_id,
                488,
                "Not Acceptable Here",
                "failed",
                "no shared codec",
            );
            return;
        };
        let term = self.cfg.termination.clone();
        let targets: Vec<(Peer, String, i64)> = match (&call.outbound, &term) {
            (Some(n), Some(t)) if !call.originate => vec![(
                Peer {
                    transport: crate::sip::Transport::Udp,
                    addr: t.addr,
                    conn: 0,
                },
                format!("sip:{n}@{}", t.host),
                TRUNK_ID,
            )],
            _ => call
                .callees
                .iter()
                .flat_map(|id| self.registrar.bindings_of(*id))
                .map(|b| (b.target(), b.contact.clone(), b.device_id))
                .collect(),
        };
        let mut branches = Vec::new();
        for (peer, contact, device_id) in targets {
            let branch = format!("z9hG4bK{}", self.next_id());
            let b_call_id = format!("{}@gosip", self.next_id());
            let from_tag = self.next_id();
            branches.push((peer, contact, branch, b_call_id, from_tag, device_id));
        }
        let local = self.cfg.local_addr.clone();
        let realm = self.cfg.realm.clone();
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        for (i, (peer, contact, branch, b_call_id, from_tag, device_id)) in
            branches.into_iter().enumerate()
        {
            let display = if call.from_display.is_empty() {
                String::new()
            } else {
                format!("\"{}\" ", call.from_display)
            };
            let (to_host, pai) = match (&call.outbound, &term) {
                (Some(_), Some(t)) if device_id == TRUNK_ID => (
                    t.host.clone(),
                    format!("P-Asserted-Identity: <sip:{}@{realm}>\r\n", call.from_user),
                ),
                _ => (realm.clone(), String::new()),
            };
            let invite = format!(
                "INVITE {contact} SIP/2.0\r\n\
                 Via: SIP/2.0/{tr} {local};branch={branch};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: {display}<sip:{from}@{realm}>;tag={from_tag}\r\n\
                 To: <sip:{to}@{to_host}>\r\n{pai}\
                 Call-ID: {b_call_id}\r\n\
                 CSeq: 1 INVITE\r\n\
                 Contact: <sip:gosip@{local};transport={trl}>\r\n\
                 Allow: {allow}\r\n\
                 User-Agent: GoSIP\r\n\
                 Content-Type: application/sdp\r\n\
                 Content-Length: {len}\r\n\r\n{offer_b}",
                tr = peer.transport.as_str().to_ascii_uppercase(),
                trl = peer.transport.as_str(),
                from = call.from_user,
                to = call.to_user,
                allow = msg::ALLOW,
                len = offer_b.len(),
            )
            .into_bytes();
            self.out.push_back(Transmit {
                peer,
                data: invite.clone(),
            });
            self.calls
                .by_branch
                .insert(branch.clone(), (call_id.to_string(), i));
            self.calls
                .by_b_call_id
                .insert(b_call_id.clone(), call_id.to_string());
            call.branches.push(Branch {
                peer,
                device_id,
                cseq: 1,
                contact: contact.clone(),
                call_id: b_call_id,
                branch,
                from_tag,
                to_tag: String::new(),
                remote_target: contact,
                invite,
                state: BranchState::Calling,
                status: 0,
                next_resend: (!peer.transport.reliable()).then_some(now + T1),
                interval: T1,
                timer_b: now + 64 * T1,
            });
        }
    }

    /// A response to one of our B-leg INVITEs (or their CANCELs).
    pub(super) fn b2b_response(&mut self, now: u64, r: &msg::Response) -> bool {
        let Some((call_id, i)) = self.calls.by_branch.get(&r.via.branch).cloned() else {
            return self.late_response(now, r);
        };
        let Some((_, method)) = r.raw.cseq() else {
            return true;
        };
        if method != "INVITE" {
            return true; // the 200 to our CANCEL
        }
        let status = r.status;
        let to_tag = r
            .raw
            .get("to")
            .and_then(tag_of)
            .unwrap_or_default()
            .to_string();
        let contact = r.raw.get("contact").map(|c| uri_of(c).to_string());
        let body = String::from_utf8_lossy(&r.raw.body).into_owned();
        let Some(call) = self.calls.calls.get_mut(&call_id) else {
            return true;
        };
        let Some(b) = call.branches.get_mut(i) else {
            return true;
        };
        if status < 200 {
            if b.state == BranchState::Calling {
                b.state = BranchState::Proceeding;
                b.next_resend = None;
            }
            if (status == 180 || status == 183)
                && !call.ringing_sent
                && call.state == State::Ringing
            {
                call.ringing_sent = true;
                let data = msg::response(
                    &call.a_req,
                    call.a_peer.addr,
                    180,
                    "Ringing",
                    &call.a_tag,
                    &[],
                    None,
                );
                let (key, peer) = (call.a_key.clone(), call.a_peer);
                self.txns.respond(now, &key, Transmit { peer, data }, 180);
            }
            return true;
        }
        if status < 300 {
            b.to_tag = to_tag;
            if let Some(c) = contact {
                b.remote_target = c;
            }
            let trunk_side = call.branches[i].device_id == TRUNK_ID;
            let already = call.branches.iter().position(|x| {
                x.state == BranchState::Won && (x.device_id == TRUNK_ID) == trunk_side
            });
            let b = &mut call.branches[i];
            b.next_resend = None;
            let ack = dialog_request(
                b,
                "ACK",
                b.cseq,
                &self.cfg.local_addr,
                &self.cfg.realm,
                &call.from_user,
                &call.to_user,
                &format!("z9hG4bK{}a{}", b.branch, now),
            );
            self.out.push_back(Transmit {
                peer: b.peer,
                data: ack,
            });
            match already {
                Some(w) if w != i => {
                    // A second answer after the first: hang it up.
                    let bye = dialog_request(
                        b,
                        "BYE",
                        b.cseq + 1,
                        &self.cfg.local_addr,
                        &self.cfg.realm,
                        &call.from_user,
                        &call.to_user,
                        &format!("z9hG4bK{}b", b.branch),
                    );
                    b.state = BranchState::Done;
                    let key = format!("z9hG4bK{}b", b.branch);
                    self.txns.send_request(
                        now,
                        &key,
                        Transmit {
                            peer: b.peer,
                            data: bye,
                        },
                        64 * T1,
                    );
                    return true;
                }
                Some(_) => return true, // a retransmitted 2xx: ACKed again
                None => {}
            }
            if call.state != State::Ringing {
                return true;
            }
            if call.originate {
                return self.originate_answered(now, &call_id, i, &body);
            }
            let b = &mut call.branches[i];
            b.state = BranchState::Won;
            let Some((pa, _)) = call.ports else {
                return true;
            };
            if let Some(m) = sdp::leg_media(&body) {
                self.events.push_back(Event::MediaUpdate {
                    call_id: call_id.clone(),
                    leg: "b",
                    hold: Some(m.hold),
                    media: Some(m),
                    established: None,
                });
            }
            let answer = sdp::rewrite(&body, &self.cfg.media_ip, pa, true)
                .or_else(|| sdp::rewrite(&call.offer, &self.cfg.media_ip, pa, true))
                .unwrap_or_default();
            call.a_sdp = answer.clone();
            let contact = format!(
                "<sip:gosip@{};transport={}>",
                self.cfg.local_addr,
                call.a_peer.transport.as_str()
            );
            let data = msg::response(
                &call.a_req,
                call.a_peer.addr,
                200,
                "OK",
                &call.a_tag,
                &[("Contact", contact), ("Allow", msg::ALLOW.to_string())],
                Some(("application/sdp", answer.as_bytes())),
            );
            call.a_ok = Some(data.clone());
            call.a_ok_next = now + T1;
            call.a_ok_interval = T1;
            call.a_ok_deadline = now + 64 * T1;
            call.state = State::Answering;
            call.answered_at = Some(now);
            let (key, peer) = (call.a_key.clone(), call.a_peer);
            tracing::info!(call_id = %call_id, "call answered");
            self.events.push_back(Event::Cdr(Cdr::Answered {
                call_id: call_id.clone(),
                at: now,
            }));
            self.txns.respond(now, &key, Transmit { peer, data }, 200);
            let callee = call.branches[i].device_id;
            let callee_records = self.devices.values().any(|d| d.id == callee && d.recording);
            if call.caller_records || callee_records {
                call.recording = true;
                tracing::info!(call_id = %call_id, "device records every call");
                self.events.push_back(Event::MediaRecord {
                    call_id: call_id.clone(),
                    enabled: true,
                });
            }
            self.cancel_branches(&call_id, Some(i));
            return true;
        }
        // A final failure: ACK it (same branch, RFC 3261 section 17.1.1.3).
        let ack = non2xx_ack(b, &r.raw);
        self.out.push_back(Transmit {
            peer: b.peer,
            data: ack,
        });
        // The trunk's digest challenge: retry once with credentials.
        if (status == 401 || status == 407)
            && b.cseq == 1
            && b.device_id == TRUNK_ID
            && call.outbound.is_some()
            && call.state == State::Ringing
            && let Some(t) = &self.cfg.termination
        {
            let hdr = if status == 401 {
                "www-authenticate"
            } else {
                "proxy-authenticate"
            };
            let challenges: Vec<&str> = r.raw.all(hdr).collect();
            let cnonce = format!("{:x}{}", now, b.branch.len());
            if let Some(auth) = digest::answer(
                &challenges,
                "INVITE",
                &b.contact,
                &t.username,
                &t.password,
                &cnonce,
            ) {
                let name = if status == 401 {
                    "Authorization"
                } else {
                    "Proxy-Authorization"
                };
                let old = b.branch.clone();
                let new = format!("{old}r");
                let inv = String::from_utf8_lossy(&b.invite)
                    .replacen(&format!("branch={old}"), &format!("branch={new}"), 1)
                    .replacen(
                        "CSeq: 1 INVITE\r\n",
                        &format!("CSeq: 2 INVITE\r\n{name}: {auth}\r\n"),
                        1,
                    );
                b.invite = inv.into_bytes();
                b.branch = new.clone();
                b.cseq = 2;
                b.state = BranchState::Calling;
                b.interval = T1;
                b.next_resend = (!b.peer.transport.reliable()).then_some(now + T1);
                b.timer_b = now + 64 * T1;
                let t = Transmit {
                    peer: b.peer,
                    data: b.invite.clone(),
                };
                self.out.push_back(t);
                self.calls.by_branch.remove(&old);
                self.calls.by_branch.insert(new, (call_id, i));
                return true;
            }
        }
        if matches!(b.state, BranchState::Done | BranchState::Won) && b.status != 0 {
            return true;
        }
        b.state = BranchState::Done;
        b.status = status;
        b.next_resend = None;
        self.maybe_all_failed(now, &call_id);
        true
    }

    fn maybe_all_failed(&mut self, now: u64, call_id: &str) {
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        let dialing = call.originate && call.branches.iter().any(|b| b.device_id == TRUNK_ID);
        let stage = |b: &&Branch| !call.originate || (b.device_id == TRUNK_ID) == dialing;
        if call.state != State::Ringing
            || call
                .branches
                .iter()
                .filter(stage)
                .any(|b| b.state != BranchState::Done)
        {
            return;
        }
        let codes: Vec<u16> = call
            .branches
            .iter()
            .filter(stage)
            .map(|b| b.status)
            .collect();
        let (code, reason, disposition) = if codes.contains(&486) || codes.contains(&600) {
            (486, "Busy Here", "busy")
        } else if codes.contains(&603) {
            (603, "Decline", "rejected")
        } else {
            (480, "Temporarily Unavailable", "missed")
        };
        self.fail_a(
            now,
            call_id,
            code,
            reason,
            disposition,
            "every branch failed",
        );
    }

    /// Ends a call that never got answered with a final status to the caller.
    fn fail_a(
        &mut self,
        now: u64,
        call_id: &str,
        code: u16,
        reason: &'static str,
        disposition: &'static str,
        why: &str,
    ) {
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        if call.originate {
            // No caller to answer: hang up the device if it answered.
            self.hangup_leg(now, call_id, true);
            self.cancel_branches(call_id, None);
            self.end_call(now, call_id, disposition, why);
            return;
        }
        let data = msg::response(
            &call.a_req,
            call.a_peer.addr,
            code,
            reason,
            &call.a_tag,
            &[],
            None,
        );
        let (key, peer) = (call.a_key.clone(), call.a_peer);
        self.txns.respond(now, &key, Transmit { peer, data }, code);
        self.cancel_branches(call_id, None);
        self.end_call(now, call_id, disposition, why);
    }

    /// CANCELs every branch still ringing except `keep`.
    fn cancel_branches(&mut self, call_id: &str, keep: Option<usize>) {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        for (i, b) in call.branches.iter_mut().enumerate() {
            if Some(i) == keep || !matches!(b.state, BranchState::Calling | BranchState::Proceeding)
            {
                continue;
            }
            b.next_resend = None;
            let inv = String::from_utf8_lossy(&b.invite).into_owned();
            let cancel = cancel_for(&inv);
            self.out.push_back(Transmit {
                peer: b.peer,
                data: cancel,
            });
            // The branch ends with its 487, or with Timer B if none comes.
            b.state = BranchState::Done;
            b.status = 487;
        }
    }

    fn end_call(&mut self, now: u64, call_id: &str, disposition: &'static str, why: &str) {
        let Some(call) = self.calls.calls.remove(call_id) else {
            return;
        };
        for b in call.branches.iter() {
            self.calls.by_branch.remove(&b.branch);
            self.calls.by_b_call_id.remove(&b.call_id);
        }
        for b in call.branches {
            if b.to_tag.is_empty() {
                let until = now + 64 * T1;
                self.calls.ended.insert(
                    b.branch.clone(),
                    (b, call.from_user.clone(), call.to_user.clone(), until),
                );
            }
        }
        let duration_s = call.answered_at.map_or(0, |a| now.saturating_sub(a) / 1000);
        tracing::info!(call_id = %call_id, disposition, duration_s, reason = why, "call ended");
        self.events.push_back(Event::Cdr(Cdr::End {
            call_id: call_id.to_string(),
            at: now,
            disposition,
            duration_s,
            reason: why.to_string(),
        }));
        if call.ports.is_some() || call.state == State::Media {
            self.events.push_back(Event::MediaRelease {
                call_id: call_id.to_string(),
            });
        }
    }

    /// A final response on a branch of a call that already ended: ACK it,
    /// and hang up a 2xx that crossed our CANCEL.
    fn late_response(&mut self, now: u64, r: &msg::Response) -> bool {
        let Some((b, from_user, to_user, _)) = self.calls.ended.get_mut(&r.via.branch) else {
            return false;
        };
        if r.status < 200 || r.raw.cseq().is_some_and(|(_, m)| m != "INVITE") {
            return true;
        }
        if r.status >= 300 {
            let ack = non2xx_ack(b, &r.raw);
            self.out.push_back(Transmit {
                peer: b.peer,
                data: ack,
            });
            return true;
        }
        b.to_tag = r
            .raw
            .get("to")
            .and_then(tag_of)
            .unwrap_or_default()
            .to_string();
        if let Some(c) = r.raw.get("contact") {
            b.remote_target = uri_of(c).to_string();
        }
        let (local, realm) = (self.cfg.local_addr.clone(), self.cfg.realm.clone());
        let ack_branch = format!("z9hG4bK{}a{now}", b.branch);
        let ack = dialog_request(
            b,
            "ACK",
            b.cseq,
            &local,
            &realm,
            from_user,
            to_user,
            &ack_branch,
        );
        let bye_branch = format!("z9hG4bK{}b", b.branch);
        let bye = dialog_request(
            b,
            "BYE",
            b.cseq + 1,
            &local,
            &realm,
            from_user,
            to_user,
            &bye_branch,
        );
        let peer = b.peer;
        self.out.push_back(Transmit { peer, data: ack });
        self.txns
            .send_request(now, &bye_branch, Transmit { peer, data: bye }, 64 * T1);
        true
    }

    /// An ACK that opened no transaction: the ACK of our 2xx to the A-leg.
    pub(super) fn b2b_ack(&mut self, call_id: &str) {
        if let Some(call) = self.calls.calls.get_mut(call_id)
            && call.state == State::Answering
        {
            call.state = State::Up;
            call.a_ok = None;
            self.events.push_back(Event::MediaUpdate {
                call_id: call_id.to_string(),
                leg: "a",
                media: None,
                established: Some(true),
                hold: None,
            });
        }
    }

    /// CANCEL of the A-leg INVITE: 200 to the CANCEL, 487 to the INVITE.
    pub(super) fn b2b_cancel(&mut self, now: u64, r: &msg::Request) -> Reply {
        let call_id = r.raw.get("call-id").unwrap_or_default().to_string();
        let Some(call) = self.calls.calls.get(&call_id) else {
            return Reply::new(481, "Call/Transaction Does Not Exist");
        };
        if !matches!(call.state, State::Media | State::Ringing) {
            return Reply::new(200, "OK");
        }
        let data = msg::response(
            &call.a_req,
            call.a_peer.addr,
            487,
            "Request Terminated",
            &call.a_tag,
            &[],
            None,
        );
        let (key, peer) = (call.a_key.clone(), call.a_peer);
        self.txns.respond(now, &key, Transmit { peer, data }, 487);
        self.cancel_branches(&call_id, None);
        self.end_call(now, &call_id, "missed", "caller cancelled");
        Reply::new(200, "OK")
    }

    /// A request inside a dialog (To tag present): BYE, re-INVITE, INFO.
    pub(super) fn b2b_in_dialog(&mut self, now: u64, method: &str, r: &msg::Request) -> Reply {
        let cid = r.raw.get("call-id").unwrap_or_default().to_string();
        let (call_id, from_a) = if self.calls.calls.contains_key(&cid) {
            (cid, true)
        } else if let Some(a) = self.calls.by_b_call_id.get(&cid) {
            // Click-to-call: the device's own branch is the "a" leg.
            let device_side = self.calls.calls.get(a).is_some_and(|c| {
                c.originate
                    && c.branches
                        .iter()
                        .any(|b| b.call_id == cid && b.device_id != TRUNK_ID)
            });
            (a.clone(), device_side)
        } else {
            return Reply::new(481, "Call/Transaction Does Not Exist");
        };
        match method {
            "BYE" => {
                self.hangup_leg(now, &call_id, !from_a);
                let disposition = if self
                    .calls
                    .calls
                    .get(&call_id)
                    .is_some_and(|c| c.answered_at.is_some())
                {
                    "answered"
                } else {
                    "missed"
                };
                let who = if from_a {
                    "caller hung up"
                } else {
                    "callee hung up"
                };
                self.end_call(now, &call_id, disposition, who);
                Reply::new(200, "OK")
            }
            "INVITE" => {
                // Hold / unhold: answer from our side with the relay address;
                // mediad keeps relaying whatever flows.
                let Some(call) = self.calls.calls.get(&call_id) else {
                    return Reply::new(481, "Call/Transaction Does Not Exist");
                };
                let Some((pa, pb)) = call.ports else {
                    return Reply::new(491, "Request Pending");
                };
                let port = if from_a { pa } else { pb };
                let offer = String::from_utf8_lossy(&r.raw.body).into_owned();
                if let Some(m) = sdp::leg_media(&offer) {
                    self.events.push_back(Event::MediaUpdate {
                        call_id: call_id.clone(),
                        leg: if from_a { "a" } else { "b" },
                        hold: Some(m.hold),
                        media: Some(m),
                        established: None,
                    });
                }
                let answer = sdp::rewrite(&offer, &self.cfg.media_ip, port, true)
                    .map(|s| mirror_direction(&s))
                    .unwrap_or_default();
                let mut reply = Reply::new(200, "OK")
                    .with("Contact", format!("<sip:gosip@{}>", self.cfg.local_addr));
                reply.body = Some(answer);
                reply
            }
            _ => Reply::new(200, "OK"),
        }
    }

    /// Sends BYE on the A-leg (`to_a`) or on the winning B-leg.
    fn hangup_leg(&mut self, now: u64, call_id: &str, to_a: bool) {
        let local = self.cfg.local_addr.clone();
        let realm = self.cfg.realm.clone();
        let branch = format!("z9hG4bK{}", self.next_id());
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        if call.originate {
            let Some(b) = call
                .branches
                .iter_mut()
                .find(|b| b.state == BranchState::Won && (b.device_id != TRUNK_ID) == to_a)
            else {
                return;
            };
            let data = dialog_request(
                b,
                "BYE",
                b.cseq + 1,
                &local,
                &realm,
                &call.from_user,
                &call.to_user,
                &branch,
            );
            b.state = BranchState::Done;
            let peer = b.peer;
            self.txns
                .send_request(now, &branch, Transmit { peer, data }, 64 * T1);
            return;
        }
        if to_a {
            if call.answered_at.is_none() {
                return;
            }
            call.a_cseq += 1;
            let req = &call.a_req;
            let target = if call.a_target.is_empty() {
                uri_of(req.get("from").unwrap_or_default()).to_string()
            } else {
                call.a_target.clone()
            };
            let to = req.get("from").unwrap_or_default();
            let from = format!("{};tag={}", req.get("to").unwrap_or_default(), call.a_tag);
            let data = format!(
                "BYE {target} SIP/2.0\r\nVia: SIP/2.0/{} {local};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nUser-Agent: GoSIP\r\nContent-Length: 0\r\n\r\n",
                call.a_peer.transport.as_str().to_ascii_uppercase(),
                call.id,
                call.a_cseq
            )
            .into_bytes();
            let peer = call.a_peer;
            self.txns
                .send_request(now, &branch, Transmit { peer, data }, 64 * T1);
        } else if let Some(b) = call
            .branches
            .iter_mut()
            .find(|b| b.state == BranchState::Won)
        {
            let data = dialog_request(
                b,
                "BYE",
                b.cseq + 1,
                &local,
                &realm,
                &call.from_user,
                &call.to_user,
                &branch,
            );
            b.state = BranchState::Done;
            let peer = b.peer;
            self.txns
                .send_request(now, &branch, Transmit { peer, data }, 64 * T1);
        }
    }

    /// Ends a call from outside SIP (gRPC Hangup, mediad rtp_timeout).
    pub fn hangup(&mut self, now: u64, call_id: &str, why: &str) -> bool {
        let Some(call) = self.calls.calls.get(call_id) else {
            return false;
        };
        if matches!(call.state, State::Media | State::Ringing) {
            self.fail_a(now, call_id, 480, "Temporarily Unavailable", "missed", why);
            return true;
        }
        self.hangup_leg(now, call_id, true);
        self.hangup_leg(now, call_id, false);
        self.end_call(now, call_id, "answered", why);
        true
    }

    /// The calls in progress.
    pub fn calls(&self) -> Vec<CallInfo> {
        self.calls
            .calls
            .values()
            .map(|c| CallInfo {
                call_id: c.id.clone(),
                from: c.from_user.clone(),
                to: c.to_user.clone(),
                device_id: c.device_id,
                state: match c.state {
                    State::Media | State::Ringing => "ringing",
                    State::Answering | State::Up => "up",
                },
                started_at: c.started_at,
                recording: c.recording,
                direction: c.direction,
            })
            .collect()
    }

    /// Starts or pauses a call's recording (gRPC SetRecording). `false`
    /// when no such call is in progress.
    pub fn set_recording(&mut self, call_id: &str, enabled: bool) -> bool {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return false;
        };
        call.recording = enabled;
        self.events.push_back(Event::MediaRecord {
            call_id: call_id.to_string(),
            enabled,
        });
        true
    }

    /// A DTMF digit mediad saw on `leg` ("a" or "b"): the configured
    /// sequence (`calls.record_dtmf`) toggles the recording of an
    /// answered call.
    pub fn dtmf(&mut self, call_id: &str, leg: &str, digit: &str) {
        let seq = self.cfg.record_dtmf.clone();
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        if seq.is_empty() || call.answered_at.is_none() {
            return;
        }
        let buf = &mut call.dtmf[usize::from(leg == "b")];
        buf.push_str(digit);
        if buf.len() > seq.len() {
            let cut = buf.len() - seq.len();
            buf.drain(..cut);
        }
        if *buf == seq {
            buf.clear();
            let enabled = !call.recording;
            tracing::info!(call_id = %call_id, leg, enabled, "recording toggled by DTMF");
            self.set_recording(call_id, enabled);
        }
    }

    /// Timers A/B of the B-leg INVITEs, the ring timeout and the A-leg 2xx
    /// retransmission.
    pub(super) fn b2b_timeout(&mut self, now: u64) {
        self.calls.ended.retain(|_, (_, _, _, until)| *until > now);
        let ids: Vec<String> = self.calls.calls.keys().cloned().collect();
        for id in ids {
            let mut resend = Vec::new();
            let mut timed_out = Vec::new();
            let mut ring_over = false;
            let mut ok_again = None;
            let mut ack_lost = false;
            if let Some(call) = self.calls.calls.get_mut(&id) {
                for (i, b) in call.branches.iter_mut().enumerate() {
                    if !matches!(b.state, BranchState::Calling | BranchState::Proceeding) {
                        continue;
                    }
                    if let Some(n) = b.next_resend
                        && now >= n
                    {
                        resend.push(Transmit {
                            peer: b.peer,
                            data: b.invite.clone(),
                        });
                        b.interval = (b.interval * 2).min(T2 * 16);
                        b.next_resend = Some(now + b.interval);
                    }
                    if b.state == BranchState::Calling && now >= b.timer_b {
                        timed_out.push(i);
                    }
                }
                if call.state == State::Ringing && now >= call.ring_deadline {
                    ring_over = true;
                }
                if call.state == State::Answering && now >= call.a_ok_next {
                    if now >= call.a_ok_deadline {
                        ack_lost = true;
                    } else if let Some(ok) = &call.a_ok {
                        ok_again = Some(Transmit {
                            peer: call.a_peer,
                            data: ok.clone(),
                        });
                        call.a_ok_interval = (call.a_ok_interval * 2).min(T2);
                        call.a_ok_next = now + call.a_ok_interval;
                    }
                }
                for i in &timed_out {
                    let b = &mut call.branches[*i];
                    b.state = BranchState::Done;
                    b.status = 408;
                    b.next_resend = None;
                }
            }
            self.out.extend(resend);
            self.out.extend(ok_again);
            if !timed_out.is_empty() {
                self.maybe_all_failed(now, &id);
            }
            if ring_over {
                self.fail_a(
                    now,
                    &id,
                    480,
                    "Temporarily Unavailable",
                    "missed",
                    "no answer",
                );
            }
            if ack_lost {
                self.hangup(now, &id, "no ACK for the 200");
            }
        }
    }
}

/// A request inside the B-leg dialog (ACK of a 2xx, BYE).
#[allow(clippy::too_many_arguments)]
fn dialog_request(
    b: &Branch,
    method: &str,
    cseq: u32,
    local: &str,
    realm: &str,
    from_user: &str,
    to_user: &str,
    branch: &str,
) -> Vec<u8> {
    let cseq_method = if method == "ACK" { "ACK" } else { method };
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/{tr} {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:{from_user}@{realm}>;tag={ft}\r\nTo: <sip:{to_user}@{realm}>;tag={tt}\r\nCall-ID: {cid}\r\n\
         CSeq: {cseq} {cseq_method}\r\nUser-Agent: GoSIP\r\nContent-Length: 0\r\n\r\n",
        target = b.remote_target,
        tr = b.peer.transport.as_str().to_ascii_uppercase(),
        ft = b.from_tag,
        tt = b.to_tag,
        cid = b.call_id,
    )
    .into_bytes()
}

/// The ACK of a non-2xx final response: same branch and Request-URI as the
/// INVITE, the To of the response (RFC 3261 section 17.1.1.3).
fn non2xx_ack(b: &Branch, resp: &Raw) -> Vec<u8> {
    let inv = String::from_utf8_lossy(&b.invite);
    let mut out = format!("ACK {} SIP/2.0\r\n", b.contact);
    for line in inv.split("\r\n").skip(1) {
        let l = line.to_ascii_lowercase();
        if l.starts_with("via:")
            || l.starts_with("from:")
            || l.starts_with("call-id:")
            || l.starts_with("max-forwards:")
        {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    if let Some(to) = resp.get("to") {
        out.push_str(&format!("To: {to}\r\n"));
    }
    out.push_str(&format!(
        "CSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
        b.cseq
    ));
    out.into_bytes()
}

/// CANCEL for a pending INVITE: same Request-URI, Via, From, To, Call-ID,
/// CSeq number (RFC 3261 section 9.1).
fn cancel_for(invite: &str) -> Vec<u8> {
    let first = invite.split("\r\n").next().unwrap_or_default();
    let uri = first.split(' ').nth(1).unwrap_or_default();
    let mut out = format!("CANCEL {uri} SIP/2.0\r\n");
    for line in invite.split("\r\n").skip(1) {
        let l = line.to_ascii_lowercase();
        if l.starts_with("via:")
            || l.starts_with("from:")
            || l.starts_with("to:")
            || l.starts_with("call-id:")
            || l.starts_with("max-forwards:")
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if l.starts_with("cseq:") {
            out.push_str(&line.replace("INVITE", "CANCEL"));
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

/// Premium-rate numbers: NANP 900/976, and the usual premium ranges of
/// a few European plans (UK 09, DE 0900, FR 089).
fn is_premium(n: &str) -> bool {
    ["+1900", "+1976", "+449", "+49900", "+3389"]
        .iter()
        .any(|p| n.starts_with(p))
}

/// The answer's direction for a hold offer: sendonly -> recvonly,
/// recvonly -> sendonly, inactive stays.
fn mirror_direction(s: &str) -> String {
    s.replace("a=sendonly", "a=RECVONLY_TMP")
        .replace("a=recvonly", "a=sendonly")
        .replace("a=RECVONLY_TMP", "a=recvonly")
}
