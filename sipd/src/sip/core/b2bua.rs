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
//! Requests inside an answered call (re-INVITE, UPDATE, INFO) are relayed to
//! the other leg as new requests of that leg's dialog, and the other side's
//! final answer comes back as the answer to the original: SDP rewritten to
//! mediad's port of each leg, direction attributes passed through (hold),
//! 491 on re-INVITE glare (RFC 3261 section 14.1), a failure leaves the old
//! media in place. Early media (18x with SDP) reaches the caller through
//! mediad before the 200. An INVITE without SDP (late offer) gets the
//! callee's offer in the 200 and its answer from the caller's ACK.
//!
//! INVITE client transactions (Timers A/B, ACK of non-2xx), the 2xx
//! retransmission until ACK (RFC 3261 section 13.3.1.4), the relays' own
//! retransmissions and the ring timeout all run off the caller's clock.

use std::collections::HashMap;

use super::{Core, Event, Reply};
use crate::sip::msg::{self, Raw, tag_of, uri_of, user_of};
use crate::sip::registrar::Device;
use crate::sip::transaction::answers_from;

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
        /// The device that answered a call that rang several (inbound);
        /// `None` keeps the one the call started with.
        device_id: Option<i64>,
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
    /// The last CSeq number sipd used in this dialog.
    local_cseq: u32,
    /// The route set: the 2xx's Record-Route, reversed (RFC 3261 section 12.1.2).
    route: Vec<String>,
    /// The ACK of its 2xx, re-sent when the 2xx is.
    ack: Option<Vec<u8>>,
    /// The reason phrase of its final failure.
    reason: String,
    /// Timer B fired: no response at all.
    no_response: bool,
}

/// One leg of a call as the relay sees it: "a" is the caller (for
/// click-to-call the device), "b" the callee (the trunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// mediad's name of the leg.
    fn leg(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }
}

/// A request from one leg inside the call (re-INVITE, UPDATE, INFO),
/// forwarded to the other leg and waiting for its answer. Kept a while after
/// the answer so a retransmitted 2xx gets its ACK again.
#[derive(Debug)]
struct Relay {
    call_id: String,
    method: String,
    /// The side the request came from; it gets the answer.
    from: Side,
    /// Its server transaction, and the request to answer.
    key: String,
    peer: Peer,
    req: Raw,
    /// What went to the other side, re-sent on Timer A/E until it answers.
    sent: Transmit,
    cseq: u32,
    /// The SDP offer the request carried (as received).
    offer: Option<String>,
    /// A final answer came (or Timer B/F fired).
    answered: bool,
    next_resend: Option<u64>,
    interval: u64,
    /// Timer B/F while unanswered; the end of the linger time after.
    deadline: u64,
    /// re-INVITE: the ACK of the other side's 2xx.
    ack: Option<Transmit>,
    /// re-INVITE: our 2xx to the requester, re-sent until it ACKs.
    ok: Option<Transmit>,
    ok_next: u64,
    ok_interval: u64,
    ok_deadline: u64,
    /// An offerless re-INVITE: the other side's offer (in its 2xx), to be
    /// answered by the requester's ACK.
    far_offer: Option<String>,
    /// re-INVITE: the other side sent a provisional answer.
    provisional: bool,
    /// re-INVITE: the requester CANCELled it; the CANCEL follows it to the
    /// other side once that side sent a provisional answer (RFC 3261 section
    /// 9.1), and its 487 comes back as the answer.
    cancel: bool,
    cancel_sent: bool,
}

impl Relay {
    /// An offer/answer exchange still runs (RFC 3261 section 14.1, RFC
    /// 3311 section 5.1): no new one may start.
    fn negotiating(&self) -> bool {
        match self.method.as_str() {
            "INVITE" => !self.answered || self.ok.is_some(),
            "UPDATE" => !self.answered && self.offer.is_some(),
            _ => false,
        }
    }
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
    /// The caller's INVITE had no SDP: the callee's 2xx makes the offer and
    /// the caller's ACK the answer.
    late_offer: bool,
    /// Late offer: the callee's offer, waiting for the caller's answer.
    b_offer: String,
    /// Early media (18x SDP) was relayed to the caller.
    early_sent: bool,
    /// The caller's Record-Route, in order: the A-leg route set.
    a_route: Vec<String>,
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
    /// In-call requests relayed to the other leg, by the branch sent.
    relays: HashMap<String, Relay>,
    /// Trunk calls per device, for `calls.max_*_per_device`.
    limiter: crate::sip::limits::Limiter,
}

impl Calls {
    /// Applies the per-device limits to a new trunk call of `device`;
    /// emergency calls (dialled as-is, without `+`) are not counted.
    pub(super) fn limit(
        &mut self,
        limits: crate::sip::limits::CallLimits,
        device: i64,
        now: u64,
    ) -> crate::sip::limits::Verdict {
        let active = self
            .calls
            .values()
            .filter(|c| {
                c.device_id == device && c.outbound.as_ref().is_some_and(|n| n.starts_with('+'))
            })
            .count();
        self.limiter.check(limits, device, now, active)
    }

    pub(super) fn next_timeout(&self) -> Option<u64> {
        let mut t: Option<u64> = None;
        let mut min = |v: u64| t = Some(t.map_or(v, |x| x.min(v)));
        for (_, _, _, until) in self.ended.values() {
            min(*until);
        }
        for r in self.relays.values() {
            min(r.deadline);
            if let (false, Some(n)) = (r.answered, r.next_resend) {
                min(n);
            }
            if r.ok.is_some() {
                min(r.ok_next);
            }
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
        if !inbound && (callees.is_empty() || self.is_emergency(&dialed)) {
            match self.place_outbound(now, &dialed, caller, peer.addr.ip()) {
                Ok(n) => outbound = Some(n),
                Err(reply) => return reply,
            }
        }
        if outbound.is_none() {
            if callees.is_empty() {
                return Reply::new(404, "Not Found");
            }
            // Do Not Disturb: "has activated the 'do not disturb' feature"
            // is 480's own example (RFC 3261 section 21.4.18). Trunk calls
            // already went through twiliod's rules, which apply DND there.
            if !inbound && (self.cfg.system_dnd || callees.iter().all(|id| self.dnd.contains(id))) {
                return Reply::new(480, "Temporarily Unavailable")
                    .with("Warning", "399 gosip \"do not disturb\"");
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
        // No SDP is a late offer (RFC 3261 section 13.2.1): the callee's
        // 2xx will carry the offer.
        let late_offer = offer.trim().is_empty();
        if !late_offer && sdp::rewrite(&offer, "0.0.0.0", 1, false).is_none() {
            return Reply::new(488, "Not Acceptable Here")
                .with("Warning", "304 gosip \"no shared codec\"");
        }
        let from = raw.get("from").unwrap_or_default();
        let mut display = msg::display_name(from).unwrap_or_default();
        if inbound && let Some(mark) = trust_mark(raw) {
            // The number stays visible when the caller has no name.
            let name = if display.is_empty() {
                &from_user
            } else {
                &display
            };
            display = format!("{mark}{name}");
        }
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
            late_offer,
            b_offer: String::new(),
            early_sent: false,
            a_route: route_set(raw),
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
        // The request came over loopback gRPC (webd's click-to-call).
        let number = self
            .place_outbound(
                now,
                to_number,
                &device,
                std::net::Ipv4Addr::LOCALHOST.into(),
            )
            .map_err(|r| {
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
            a_peer: Peer::udp(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
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
            late_offer: false,
            b_offer: String::new(),
            early_sent: false,
            a_route: Vec::new(),
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
        let trunk_peer = term.as_ref().map(|t| Peer::udp(t.addr).with_local(t.local));
        let local = trunk_peer
            .map(|p| self.addrs.via_host(&p))
            .unwrap_or_default();
        let realm = self.cfg.realm.clone();
        let media_ip = trunk_peer
            .map(|p| self.addrs.media_host(&p))
            .unwrap_or_default();
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
        let from = call.branches[i].peer.addr.ip();
        let media = sdp::leg_media(body).map(|m| m.signalled_from(from));
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
                device_id: None,
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
        let peer = Peer::udp(t.addr).with_local(t.local);
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
            local_cseq: 1,
            route: Vec::new(),
            ack: None,
            reason: String::new(),
            no_response: false,
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
        // A template for the offer; each branch gets the address its own
        // peer reaches (see `AddrBook::address_for`).
        let media_ip = self.addrs.media_host(&call.a_peer);
        if call.originate {
            // The device (leg a) gets mediad's own offer on port a.
            call.offer = format!(
                "v=0\r\no=gosip 1 1 IN IP4 {media_ip}\r\ns=GoSIP\r\nc=IN IP4 {media_ip}\r\nt=0 0\r\n\
                 m=audio {pa} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
                 a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
            );
        } else if let Some(m) =
            sdp::leg_media(&call.offer).map(|m| m.signalled_from(call.a_peer.addr.ip()))
        {
            self.events.push_back(Event::MediaUpdate {
                call_id: call_id.to_string(),
                leg: "a",
                hold: Some(m.hold),
                media: Some(m),
                established: None,
            });
        }
        let port = if call.originate { pa } else { pb };
        let offer_b = if call.late_offer {
            Some(String::new())
        } else {
            sdp::rewrite(&call.offer, &media_ip, port, false)
        };
        let Some(offer_b) = offer_b else {
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
                Peer::udp(t.addr).with_local(t.local),
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
        let offer_src = call.offer.clone();
        let mut branches = Vec::new();
        for (peer, contact, device_id) in targets {
            let branch = format!("z9hG4bK{}", self.next_id());
            let b_call_id = format!("{}@gosip", self.next_id());
            let from_tag = self.next_id();
            let local = self.addrs.via_host(&peer);
            let offer_b = if offer_b.is_empty() {
                String::new()
            } else {
                sdp::rewrite(&offer_src, &self.addrs.media_host(&peer), port, false)
                    .unwrap_or_else(|| offer_b.clone())
            };
            branches.push((
                peer, contact, branch, b_call_id, from_tag, device_id, local, offer_b,
            ));
        }
        let realm = self.cfg.realm.clone();
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        for (i, (peer, contact, branch, b_call_id, from_tag, device_id, local, offer_b)) in
            branches.into_iter().enumerate()
        {
            let display = if call.from_display.is_empty() {
                String::new()
            } else {
                format!("{} ", msg::quoted(&call.from_display))
            };
            let body = if offer_b.is_empty() {
                "Content-Length: 0\r\n\r\n".to_string()
            } else {
                format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer_b}",
                    offer_b.len()
                )
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
                 User-Agent: GoSIP\r\n{body}",
                tr = peer.transport.as_str().to_ascii_uppercase(),
                trl = peer.transport.as_str(),
                from = call.from_user,
                to = call.to_user,
                allow = msg::ALLOW,
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
                local_cseq: 1,
                route: Vec::new(),
                ack: None,
                reason: String::new(),
                no_response: false,
            });
        }
    }

    /// A response to one of our B-leg INVITEs (or their CANCELs), or to a
    /// request relayed inside a call.
    pub(super) fn b2b_response(&mut self, now: u64, from: &Peer, r: &msg::Response) -> bool {
        if let Some(x) = self.calls.relays.get(&r.via.branch) {
            if answers_from(&x.sent.peer, from) {
                self.relay_response(now, r);
            } else {
                self.stats.dropped_wrong_source += 1;
            }
            return true;
        }
        let Some((call_id, i)) = self.calls.by_branch.get(&r.via.branch).cloned() else {
            return self.late_response(now, from, r);
        };
        // Only the contact the INVITE went to may answer it: a forged 200
        // from elsewhere would otherwise bridge the call to the forger.
        if !self
            .calls
            .calls
            .get(&call_id)
            .and_then(|c| c.branches.get(i))
            .is_some_and(|b| answers_from(&b.peer, from))
        {
            self.stats.dropped_wrong_source += 1;
            return true;
        }
        let Some((_, method)) = r.raw.cseq() else {
            return true;
        };
        if method != "INVITE" {
            return true; // the 200 to our CANCEL
        }
        let status = r.status;
        if (200..300).contains(&status) {
            return self.branch_answered(now, &call_id, i, r);
        }
        let early = sdp_of(&r.raw);
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
            if !(status == 180 || status == 183) || call.state != State::Ringing {
                return true;
            }
            // Early media: the callee's ringback or announcement flows
            // through mediad before any 200, so the caller gets an SDP
            // for mediad's port (a late-offer caller has nothing to answer
            // with: it hears plain ringing).
            if let Some(early) = early.filter(|_| !call.early_sent && !call.late_offer) {
                let media = sdp::leg_media(&early).map(|m| m.signalled_from(b.peer.addr.ip()));
                let trunk = b.device_id == TRUNK_ID;
                if call.originate {
                    // The device is already connected to mediad: telling
                    // mediad where the trunk is suffices.
                    if trunk {
                        call.early_sent = true;
                        self.events.push_back(Event::MediaUpdate {
                            call_id: call_id.clone(),
                            leg: "b",
                            hold: None,
                            media,
                            established: None,
                        });
                    }
                    return true;
                }
                let sdp_a = call
                    .ports
                    .and_then(|(pa, _)| {
                        sdp::rewrite(&early, &self.addrs.media_host(&call.a_peer), pa, true)
                    })
                    .map(|a| sdp::shape_answer(&call.offer, &a));
                if let Some(sdp_a) = sdp_a {
                    call.early_sent = true;
                    call.ringing_sent = true;
                    let reason = if status == 183 {
                        "Session Progress"
                    } else {
                        "Ringing"
                    };
                    let contact = format!(
                        "<sip:gosip@{};transport={}>",
                        self.addrs.via_host(&call.a_peer),
                        call.a_peer.transport.as_str()
                    );
                    let data = msg::response(
                        &call.a_req,
                        call.a_peer.addr,
                        status,
                        reason,
                        &call.a_tag,
                        &[("Contact", contact)],
                        Some(("application/sdp", sdp_a.as_bytes())),
                    );
                    let (key, peer) = (call.a_key.clone(), call.a_peer);
                    self.txns
                        .respond(now, &key, Transmit { peer, data }, status);
                    tracing::debug!(call_id = %call_id, status, "early media relayed to the caller");
                    self.events.push_back(Event::MediaUpdate {
                        call_id: call_id.clone(),
                        leg: "b",
                        hold: None,
                        media,
                        established: None,
                    });
                    return true;
                }
            }
            if !call.ringing_sent {
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
        // A final failure: ACK it (same branch, RFC 3261 section 17.1.1.3).
        let ack = non2xx_ack(&b.invite, &r.raw);
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
                b.local_cseq = 2;
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
        b.reason = reason_of(&r.raw).to_string();
        b.next_resend = None;
        self.maybe_all_failed(now, &call_id);
        true
    }

    /// A 2xx on branch `i`: the first one bridges the call, a later one on
    /// another branch is ACKed and hung up, a retransmission gets the same
    /// ACK again.
    fn branch_answered(&mut self, now: u64, call_id: &str, i: usize, r: &msg::Response) -> bool {
        let realm = self.cfg.realm.clone();
        let body = sdp_of(&r.raw).unwrap_or_default();
        let bye_branch = format!("z9hG4bK{}", self.next_id());
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return true;
        };
        let Some(b) = call.branches.get(i) else {
            return true;
        };
        let local = self.addrs.via_host(&b.peer);
        let media_ip = self.addrs.media_host(&call.a_peer);
        let trunk_side = b.device_id == TRUNK_ID;
        let already = call
            .branches
            .iter()
            .position(|x| x.state == BranchState::Won && (x.device_id == TRUNK_ID) == trunk_side);
        let b = &mut call.branches[i];
        if already == Some(i) || (already.is_some() && b.ack.is_some()) {
            // A retransmitted 2xx: the same ACK again (none yet while a
            // late offer waits for the caller's answer).
            if let Some(ack) = &b.ack {
                self.out.push_back(Transmit {
                    peer: b.peer,
                    data: ack.clone(),
                });
            }
            return true;
        }
        b.learn_dialog(&r.raw);
        b.next_resend = None;
        let ack = dialog_request(
            b,
            "ACK",
            b.cseq,
            &local,
            &realm,
            &call.from_user,
            &call.to_user,
            &format!("z9hG4bK{}a{}", b.branch, now),
            &[],
            None,
        );
        let peer = b.peer;
        if already.is_some() || call.state != State::Ringing {
            // A second answer after the first: hang it up.
            b.ack = Some(ack.clone());
            self.out.push_back(Transmit { peer, data: ack });
            if already.is_some() {
                b.local_cseq += 1;
                let bye = dialog_request(
                    b,
                    "BYE",
                    b.local_cseq,
                    &local,
                    &realm,
                    &call.from_user,
                    &call.to_user,
                    &bye_branch,
                    &[],
                    None,
                );
                b.state = BranchState::Done;
                self.txns
                    .send_request(now, &bye_branch, Transmit { peer, data: bye }, 64 * T1);
            }
            return true;
        }
        if call.originate {
            b.ack = Some(ack.clone());
            self.out.push_back(Transmit { peer, data: ack });
            return self.originate_answered(now, call_id, i, &body);
        }
        b.state = BranchState::Won;
        let Some((pa, _)) = call.ports else {
            self.out.push_back(Transmit { peer, data: ack });
            return true;
        };
        let to_a = if call.late_offer {
            // The 2xx carries the offer; the caller answers it in its
            // ACK, and only that answer lets sipd ACK this 2xx.
            let offer = sdp::rewrite(&body, &media_ip, pa, true);
            if offer.is_some() {
                call.b_offer = body.clone();
            }
            offer
        } else {
            b.ack = Some(ack.clone());
            self.out.push_back(Transmit {
                peer,
                data: ack.clone(),
            });
            if let Some(m) = sdp::leg_media(&body).map(|m| m.signalled_from(peer.addr.ip())) {
                self.events.push_back(Event::MediaUpdate {
                    call_id: call_id.to_string(),
                    leg: "b",
                    hold: Some(m.hold),
                    media: Some(m),
                    established: None,
                });
            }
            sdp::rewrite(&body, &media_ip, pa, true)
                .or_else(|| sdp::rewrite(&call.offer, &media_ip, pa, true))
                .map(|a| sdp::shape_answer(&call.offer, &a))
        };
        let Some(answer) = to_a else {
            // A late-offer callee whose 2xx has no usable offer.
            b.ack = Some(ack.clone());
            self.out.push_back(Transmit { peer, data: ack });
            self.hangup_leg(now, call_id, false);
            self.fail_a(
                now,
                call_id,
                488,
                "Not Acceptable Here",
                "failed",
                "no shared codec in the callee's offer",
            );
            return true;
        };
        call.a_sdp = answer.clone();
        let contact = format!(
            "<sip:gosip@{};transport={}>",
            self.addrs.via_host(&call.a_peer),
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
        tracing::info!(call_id = %call_id, late_offer = call.late_offer, "call answered");
        self.events.push_back(Event::Cdr(Cdr::Answered {
            call_id: call_id.to_string(),
            at: now,
            device_id: (call.direction == "inbound").then_some(call.branches[i].device_id),
        }));
        self.txns.respond(now, &key, Transmit { peer, data }, 200);
        let callee = call.branches[i].device_id;
        let callee_records = self.devices.values().any(|d| d.id == callee && d.recording);
        if call.caller_records || callee_records {
            call.recording = true;
            tracing::info!(call_id = %call_id, "device records every call");
            self.events.push_back(Event::MediaRecord {
                call_id: call_id.to_string(),
                enabled: true,
            });
        }
        self.cancel_branches(call_id, Some(i));
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
        let trunk = call.outbound.is_some() && (!call.originate || dialing);
        if trunk && let Some(b) = call.branches.iter().rfind(stage) {
            let (reply, disposition, why) = trunk_failure(b.status, &b.reason, b.no_response);
            tracing::info!(call_id = %call_id, status = b.status, relayed = reply.code, disposition, "trunk call failed");
            self.fail_a_with(now, call_id, reply, disposition, &why);
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
        self.fail_a_with(now, call_id, Reply::new(code, reason), disposition, why);
    }

    /// [`Core::fail_a`] with any reply (reason phrase, Warning ...).
    fn fail_a_with(
        &mut self,
        now: u64,
        call_id: &str,
        reply: Reply,
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
            reply.code,
            &reply.reason,
            &call.a_tag,
            &reply.extra,
            None,
        );
        let (key, peer) = (call.a_key.clone(), call.a_peer);
        self.txns
            .respond(now, &key, Transmit { peer, data }, reply.code);
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
        // Requests still waiting for the other side end with the call
        // (RFC 3261 section 15.1.2).
        let gone: Vec<String> = self
            .calls
            .relays
            .iter()
            .filter(|(_, x)| x.call_id == call_id)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(x) = self.calls.relays.remove(&k)
                && !x.answered
            {
                let data = msg::response(
                    &x.req,
                    x.peer.addr,
                    487,
                    "Request Terminated",
                    "",
                    &[],
                    None,
                );
                self.txns
                    .respond(now, &x.key, Transmit { peer: x.peer, data }, 487);
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
    fn late_response(&mut self, now: u64, from: &Peer, r: &msg::Response) -> bool {
        let Some((b, from_user, to_user, _)) = self.calls.ended.get_mut(&r.via.branch) else {
            return false;
        };
        if !answers_from(&b.peer, from) {
            self.stats.dropped_wrong_source += 1;
            return true;
        }
        if r.status < 200 || r.raw.cseq().is_some_and(|(_, m)| m != "INVITE") {
            return true;
        }
        if r.status >= 300 {
            let ack = non2xx_ack(&b.invite, &r.raw);
            self.out.push_back(Transmit {
                peer: b.peer,
                data: ack,
            });
            return true;
        }
        b.learn_dialog(&r.raw);
        let (local, realm) = (self.addrs.via_host(&b.peer), self.cfg.realm.clone());
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
            &[],
            None,
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
            &[],
            None,
        );
        let peer = b.peer;
        self.out.push_back(Transmit { peer, data: ack });
        self.txns
            .send_request(now, &bye_branch, Transmit { peer, data: bye }, 64 * T1);
        true
    }

    /// An ACK that opened no transaction: the ACK of a 2xx sipd sent, to the
    /// caller's INVITE or to a relayed re-INVITE. A late-offer caller's ACK
    /// carries its answer, which sipd passes on in the callee's ACK.
    pub(super) fn b2b_ack(&mut self, now: u64, peer: Peer, raw: &Raw) {
        let Some((call_id, side, true)) = self.side_of(raw, &peer) else {
            return;
        };
        let cseq = raw.cseq().map_or(0, |c| c.0);
        let answer = sdp_of(raw);
        let Some(call) = self.calls.calls.get_mut(&call_id) else {
            return;
        };
        if side == Side::A && call.state == State::Answering && !call.originate {
            call.state = State::Up;
            call.a_ok = None;
            let late = call.late_offer.then(|| std::mem::take(&mut call.b_offer));
            self.events.push_back(Event::MediaUpdate {
                call_id: call_id.to_string(),
                leg: "a",
                media: None,
                established: Some(true),
                hold: None,
            });
            if let Some(b_offer) = late {
                self.late_answer(now, &call_id, Side::B, None, &b_offer, answer.as_deref());
            }
            return;
        }
        // The ACK of a relayed re-INVITE's 2xx.
        let Some((branch, x)) = self.calls.relays.iter_mut().find(|(_, x)| {
            x.call_id == call_id
                && x.from == side
                && x.ok.is_some()
                && x.req.cseq().is_some_and(|c| c.0 == cseq)
        }) else {
            return;
        };
        x.ok = None;
        if let Some(far_offer) = x.far_offer.take() {
            let branch = branch.clone();
            let to = side.other();
            self.late_answer(
                now,
                &call_id,
                to,
                Some(branch),
                &far_offer,
                answer.as_deref(),
            );
        }
    }

    /// Passes a late answer on: `offerer`'s 2xx carried `offer`, the other
    /// side answered in its ACK; the ACK to `offerer` carries the answer
    /// (rewritten to mediad's port of that leg). Without a usable answer
    /// the ACK goes bare and the call ends. `relay` names the re-INVITE
    /// relay; `None` is the call's first INVITE.
    fn late_answer(
        &mut self,
        now: u64,
        call_id: &str,
        offerer: Side,
        relay: Option<String>,
        offer: &str,
        answer: Option<&str>,
    ) {
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        let media_ip = self.addrs.media_host(&side_peer(call, offerer));
        let port = call
            .ports
            .map(|(pa, pb)| if offerer == Side::A { pa } else { pb });
        let rewritten = answer
            .zip(port)
            .and_then(|(a, p)| sdp::rewrite(a, &media_ip, p, true))
            .map(|a| sdp::shape_answer(offer, &a));
        let cseq = match &relay {
            Some(k) => self.calls.relays.get(k).map(|x| x.cseq),
            None => dialog_branch(call, offerer).map(|i| call.branches[i].cseq),
        };
        let ack_branch = format!("z9hG4bK{}", self.next_id());
        let body = rewritten
            .as_ref()
            .map(|s| ("application/sdp", s.as_bytes()));
        let Some((peer, data, _)) =
            self.leg_request(call_id, offerer, "ACK", &ack_branch, cseq, &[], body)
        else {
            return;
        };
        let t = Transmit { peer, data };
        self.out.push_back(t.clone());
        match &relay {
            Some(k) => {
                if let Some(x) = self.calls.relays.get_mut(k) {
                    x.ack = Some(t);
                }
            }
            None => {
                if let Some(call) = self.calls.calls.get_mut(call_id)
                    && let Some(i) = dialog_branch(call, offerer)
                {
                    call.branches[i].ack = Some(t.data);
                }
            }
        }
        match (answer, rewritten) {
            (Some(answer), Some(_)) => self.media_negotiated(call_id, offerer, offer, answer),
            _ => {
                tracing::warn!(call_id = %call_id, "the ACK carried no usable SDP answer");
                self.hangup(now, call_id, "no SDP answer in the ACK");
            }
        }
    }

    /// Tells mediad both legs' media after an offer/answer exchange; the
    /// hold state is the call's (either side not sendrecv).
    fn media_negotiated(&mut self, call_id: &str, offerer: Side, offer: &str, answer: &str) {
        let hold = sdp::on_hold(offer, answer);
        for (side, s) in [(offerer, offer), (offerer.other(), answer)] {
            let from = self.signal_ip(call_id, side);
            if let Some(m) = sdp::leg_media(s).map(|m| sdp::LegMedia {
                signal_ip: from,
                ..m
            }) {
                self.events.push_back(Event::MediaUpdate {
                    call_id: call_id.to_string(),
                    leg: side.leg(),
                    hold: Some(hold),
                    media: Some(m),
                    established: None,
                });
            }
        }
    }

    /// Where a leg's SIP comes from (the caller's INVITE, the answering
    /// contact; for click-to-call the device and the trunk): mediad lets
    /// the leg's media latch only from this IP or its SDP's.
    fn signal_ip(&self, call_id: &str, side: Side) -> Option<std::net::IpAddr> {
        let call = self.calls.calls.get(call_id)?;
        if side == Side::A && !call.originate {
            return Some(call.a_peer.addr.ip());
        }
        call.branches
            .iter()
            .find(|b| {
                b.state == BranchState::Won
                    && (!call.originate || (b.device_id == TRUNK_ID) == (side == Side::B))
            })
            .map(|b| b.peer.addr.ip())
    }

    /// CANCEL of the A-leg INVITE: 200 to the CANCEL, 487 to the INVITE.
    /// CANCEL of a re-INVITE still relayed to the other leg: 200, and the
    /// CANCEL goes on to that leg, whose 487 comes back as the answer.
    /// `key` is the CANCEL's own server transaction.
    pub(super) fn b2b_cancel(
        &mut self,
        now: u64,
        peer: Peer,
        r: &msg::Request,
        key: &str,
    ) -> Reply {
        let invite_key = key
            .rsplit_once('|')
            .map(|(k, _)| format!("{k}|INVITE"))
            .unwrap_or_default();
        if let Some(x) = self.calls.relays.values_mut().find(|x| {
            x.method == "INVITE" && x.key == invite_key && x.peer.addr.ip() == peer.addr.ip()
        }) {
            if !x.answered && !x.cancel {
                x.cancel = true;
                if x.provisional {
                    x.cancel_sent = true;
                    let cancel = cancel_for(&String::from_utf8_lossy(&x.sent.data));
                    self.out.push_back(Transmit {
                        peer: x.sent.peer,
                        data: cancel,
                    });
                }
                tracing::debug!(call_id = %x.call_id, "re-INVITE cancelled by its sender");
            }
            return Reply::new(200, "OK");
        }
        let call_id = r.raw.get("call-id").unwrap_or_default().to_string();
        // A CANCEL matches the INVITE's transaction (RFC 3261 section 9.2),
        // not just its Call-ID, and comes from the caller's address.
        let Some(call) = self
            .calls
            .calls
            .get(&call_id)
            .filter(|c| c.a_key == invite_key && c.a_peer.addr.ip() == peer.addr.ip())
        else {
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

    /// The call an in-dialog request belongs to, the side it is and whether
    /// it is that side's live dialog (a forked branch that lost is not).
    /// The dialog is the Call-ID and both tags (RFC 3261 section 12.2.2),
    /// and the request must come from the leg's known remote IP address
    /// (any port: a phone's NAT may map it anew; the trunk from any of its
    /// source addresses): Call-IDs travel in clear, and a forged BYE or
    /// re-INVITE would otherwise end or redirect the call.
    fn side_of(&self, raw: &Raw, src: &Peer) -> Option<(String, Side, bool)> {
        let cid = raw.get("call-id").unwrap_or_default();
        let from_tag = raw.get("from").and_then(tag_of).unwrap_or_default();
        let to_tag = raw.get("to").and_then(tag_of).unwrap_or_default();
        let ip = src.addr.ip();
        if let Some(call) = self.calls.calls.get(cid) {
            let caller_tag = call.a_req.get("from").and_then(tag_of);
            let ours = !call.originate
                && to_tag == call.a_tag
                && caller_tag == Some(from_tag)
                && call.a_peer.addr.ip() == ip;
            return ours.then(|| (cid.to_string(), Side::A, true));
        }
        let id = self.calls.by_b_call_id.get(cid)?;
        let call = self.calls.calls.get(id)?;
        let b = call.branches.iter().find(|b| {
            b.call_id == cid
                && to_tag == b.from_tag
                && !b.to_tag.is_empty()
                && from_tag == b.to_tag
                && (b.peer.addr.ip() == ip
                    || (b.device_id == TRUNK_ID && self.cfg.trunk_ips.contains(&ip)))
        })?;
        // Click-to-call: the device's own branch is the "a" leg.
        let side = if call.originate && b.device_id != TRUNK_ID {
            Side::A
        } else {
            Side::B
        };
        Some((id.clone(), side, b.state == BranchState::Won))
    }

    /// A request inside a dialog (To tag present): BYE ends the call;
    /// re-INVITE, UPDATE and INFO go to the other leg
    /// ([`Core::relay_request`]).
    pub(super) fn b2b_in_dialog(
        &mut self,
        now: u64,
        peer: Peer,
        method: &str,
        r: &msg::Request,
        key: &str,
    ) -> Reply {
        let Some((call_id, side, live)) = self.side_of(&r.raw, &peer) else {
            return Reply::new(481, "Call/Transaction Does Not Exist");
        };
        let from_a = side == Side::A;
        match method {
            "BYE" if live || from_a => {
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
            _ if !live => Reply::new(481, "Call/Transaction Does Not Exist"),
            "INVITE" | "UPDATE" | "INFO" => {
                self.relay_request(now, peer, method, r, key, &call_id, side)
            }
            _ => Reply::new(405, "Method Not Allowed").with("Allow", msg::ALLOW),
        }
    }

    /// A request inside the call from `from`, passed to the other leg as a
    /// new request of that leg's dialog: a re-INVITE or UPDATE with its SDP
    /// rewritten to mediad's port on that leg (direction attributes as they
    /// are), an INFO with its body as it is. The answer comes back in
    /// [`Core::relay_response`]; the requester hears `100 Trying` (INVITE)
    /// or nothing until then.
    #[allow(clippy::too_many_arguments)]
    fn relay_request(
        &mut self,
        now: u64,
        peer: Peer,
        method: &str,
        r: &msg::Request,
        key: &str,
        call_id: &str,
        from: Side,
    ) -> Reply {
        let raw = &r.raw;
        let Some(call) = self.calls.calls.get(call_id) else {
            return Reply::new(481, "Call/Transaction Does Not Exist");
        };
        let to = from.other();
        let offer = sdp_of(raw);
        let sdp_exchange = method == "INVITE" || (method == "UPDATE" && offer.is_some());
        if !matches!(call.state, State::Answering | State::Up) {
            // The other side has not answered: no dialog to pass it to.
            return if method == "INFO" {
                Reply::new(480, "Temporarily Unavailable")
            } else {
                Reply::new(491, "Request Pending")
            };
        }
        if sdp_exchange {
            // RFC 3261 section 14.1 / RFC 3311 section 5.2: one offer/answer
            // exchange at a time. The other side's pending one is glare
            // (491); the requester's own earlier one gets 500 + Retry-After.
            if call.state == State::Answering {
                return Reply::new(491, "Request Pending");
            }
            if let Some(x) = self
                .calls
                .relays
                .values()
                .find(|x| x.call_id == call_id && x.negotiating())
            {
                return if x.from == from {
                    Reply::new(500, "Server Internal Error").with("Retry-After", "2")
                } else {
                    Reply::new(491, "Request Pending")
                };
            }
        }
        if matches!(method, "INVITE" | "UPDATE") && offer.is_none() && !raw.body.is_empty() {
            return Reply::new(415, "Unsupported Media Type").with("Accept", msg::ACCEPT);
        }
        let Some((pa, pb)) = call.ports else {
            return Reply::new(491, "Request Pending");
        };
        let port = if to == Side::A { pa } else { pb };
        let content_type = raw
            .get("content-type")
            .unwrap_or("application/octet-stream")
            .to_string();
        let body: Option<(String, Vec<u8>)> = match &offer {
            Some(o) if method != "INFO" => {
                let host = self.addrs.media_host(&side_peer(call, to));
                let Some(s) = sdp::rewrite(o, &host, port, true) else {
                    return Reply::new(488, "Not Acceptable Here")
                        .with("Warning", "304 gosip \"no shared codec\"");
                };
                Some(("application/sdp".into(), s.into_bytes()))
            }
            _ if raw.body.is_empty() => None,
            _ => Some((content_type, raw.body.clone())),
        };
        // Target refresh (RFC 3261 section 12.2.2).
        if matches!(method, "INVITE" | "UPDATE")
            && let Some(c) = raw.get("contact").map(|c| uri_of(c).to_string())
        {
            self.set_target(call_id, from, c);
        }
        let transport = self.leg_transport(call_id, to);
        let to_host = self
            .calls
            .calls
            .get(call_id)
            .map(|c| self.addrs.via_host(&side_peer(c, to)))
            .unwrap_or_default();
        let mut extra: Vec<(&str, String)> = Vec::new();
        if matches!(method, "INVITE" | "UPDATE") {
            extra.push((
                "Contact",
                format!("<sip:gosip@{};transport={}>", to_host, transport.as_str()),
            ));
        }
        for (lower, name) in [
            ("content-disposition", "Content-Disposition"),
            ("info-package", "Info-Package"),
        ] {
            if let Some(v) = raw.get(lower) {
                extra.push((name, v.to_string()));
            }
        }
        let branch = format!("z9hG4bK{}", self.next_id());
        let out = body.as_ref().map(|(ct, b)| (ct.as_str(), b.as_slice()));
        let Some((to_peer, data, cseq)) =
            self.leg_request(call_id, to, method, &branch, None, &extra, out)
        else {
            return Reply::new(481, "Call/Transaction Does Not Exist");
        };
        let sent = Transmit {
            peer: to_peer,
            data,
        };
        self.out.push_back(sent.clone());
        tracing::debug!(call_id = %call_id, method, from = from.leg(), "relayed to the other leg");
        self.calls.relays.insert(
            branch,
            Relay {
                call_id: call_id.to_string(),
                method: method.to_string(),
                from,
                key: key.to_string(),
                peer,
                req: raw.clone(),
                sent,
                cseq,
                offer: offer.filter(|_| method != "INFO"),
                answered: false,
                next_resend: (!to_peer.transport.reliable()).then_some(now + T1),
                interval: T1,
                deadline: now + 64 * T1,
                ack: None,
                ok: None,
                ok_next: 0,
                ok_interval: T1,
                ok_deadline: 0,
                far_offer: None,
                provisional: false,
                cancel: false,
                cancel_sent: false,
            },
        );
        if method == "INVITE" {
            Reply::new(100, "Trying")
        } else {
            Reply::deferred()
        }
    }

    /// The other side's answer to a relayed request, passed back as the
    /// answer to the original: status, reason, SDP rewritten to mediad's
    /// port on the requester's leg, an INFO's body as it is. A re-INVITE's
    /// 2xx is ACKed at once (or, offerless, once the requester's ACK brings
    /// the answer); a failure is ACKed and leaves the old media. 481 and 408
    /// mean the dialog is gone: the call ends (RFC 3261 section 12.2.1.2).
    fn relay_response(&mut self, now: u64, r: &msg::Response) {
        let Some(x) = self.calls.relays.get_mut(&r.via.branch) else {
            return;
        };
        if r.raw.cseq().is_some_and(|(_, m)| m == "CANCEL") {
            return; // the answer to our CANCEL of a re-INVITE
        }
        let status = r.status;
        let invite = x.method == "INVITE";
        if status < 200 {
            if invite {
                x.next_resend = None;
                x.provisional = true;
                if x.cancel && !x.cancel_sent && !x.answered {
                    x.cancel_sent = true;
                    let cancel = cancel_for(&String::from_utf8_lossy(&x.sent.data));
                    self.out.push_back(Transmit {
                        peer: x.sent.peer,
                        data: cancel,
                    });
                }
            } else if x.next_resend.is_some() {
                x.interval = T2;
            }
            return;
        }
        if x.answered {
            // A retransmitted final answer: ACK it again.
            if invite && status < 300 {
                if let Some(a) = &x.ack {
                    self.out.push_back(a.clone());
                }
            } else if invite {
                self.out.push_back(Transmit {
                    peer: x.sent.peer,
                    data: non2xx_ack(&x.sent.data, &r.raw),
                });
            }
            return;
        }
        x.answered = true;
        x.next_resend = None;
        x.deadline = now + 64 * T1;
        if invite && status >= 300 {
            self.out.push_back(Transmit {
                peer: x.sent.peer,
                data: non2xx_ack(&x.sent.data, &r.raw),
            });
        }
        let (call_id, from, method, cseq) = (x.call_id.clone(), x.from, x.method.clone(), x.cseq);
        let offer = x.offer.clone();
        let (key, peer, req) = (x.key.clone(), x.peer, x.req.clone());
        let branch = r.via.branch.clone();
        let ports = self.calls.calls.get(&call_id).and_then(|c| c.ports);
        let port = ports.map(|(pa, pb)| if from == Side::A { pa } else { pb });
        let mut code = status;
        let mut reason = reason_of(&r.raw).to_string();
        let mut extra: Vec<(&str, String)> = Vec::new();
        for (lower, name) in [("retry-after", "Retry-After"), ("warning", "Warning")] {
            if let Some(v) = r.raw.get(lower) {
                extra.push((name, v.to_string()));
            }
        }
        let mut body: Option<(String, Vec<u8>)> = None;
        let mut negotiated = None;
        let mut far_offer = None;
        if status < 300 && method != "INFO" {
            if let Some(c) = r.raw.get("contact").map(|c| uri_of(c).to_string()) {
                self.set_target(&call_id, from.other(), c);
            }
            let transport = self.leg_transport(&call_id, from);
            extra.push((
                "Contact",
                format!(
                    "<sip:gosip@{};transport={}>",
                    self.addrs.via_host(&peer),
                    transport.as_str()
                ),
            ));
            if let Some(s) = sdp_of(&r.raw) {
                let host = self.addrs.media_host(&peer);
                match port.and_then(|p| sdp::rewrite(&s, &host, p, true)) {
                    Some(rw) => {
                        // An answer to the requester's offer takes its shape;
                        // an offer (offerless re-INVITE) goes as it is.
                        let rw = match &offer {
                            Some(o) => sdp::shape_answer(o, &rw),
                            None => rw,
                        };
                        body = Some(("application/sdp".into(), rw.into_bytes()));
                    }
                    None => {
                        (code, reason) = (488, "Not Acceptable Here".into());
                        extra.push(("Warning", "304 gosip \"no shared codec\"".into()));
                    }
                }
                match &offer {
                    Some(o) => negotiated = Some((o.clone(), s)),
                    None if invite => far_offer = Some(s),
                    None => {}
                }
            }
        } else if method == "INFO" && !r.raw.body.is_empty() {
            let ct = r
                .raw
                .get("content-type")
                .unwrap_or("application/octet-stream");
            body = Some((ct.to_string(), r.raw.body.clone()));
        }
        // The other side's 2xx to a re-INVITE with an offer is ACKed now;
        // an offerless one waits for the requester's answer, unless its
        // offer was unusable: then it gets a bare ACK and the call ends.
        let unusable_offer = far_offer.is_some() && code >= 300;
        if unusable_offer {
            far_offer = None;
        }
        let mut ack = None;
        if invite && status < 300 && far_offer.is_none() {
            let ack_branch = format!("z9hG4bK{}", self.next_id());
            if let Some((p, data, _)) = self.leg_request(
                &call_id,
                from.other(),
                "ACK",
                &ack_branch,
                Some(cseq),
                &[],
                None,
            ) {
                let t = Transmit { peer: p, data };
                self.out.push_back(t.clone());
                ack = Some(t);
            }
        }
        let data = msg::response(
            &req,
            peer.addr,
            code,
            &reason,
            "",
            &extra,
            body.as_ref().map(|(ct, b)| (ct.as_str(), b.as_slice())),
        );
        let t = Transmit { peer, data };
        self.txns.respond(now, &key, t.clone(), code);
        if let Some(x) = self.calls.relays.get_mut(&branch) {
            x.ack = ack;
            x.far_offer = far_offer;
            if invite && code < 300 {
                x.ok = Some(t);
                x.ok_next = now + T1;
                x.ok_interval = T1;
                x.ok_deadline = now + 64 * T1;
            }
        }
        tracing::debug!(call_id = %call_id, method = %method, status, relayed = code, "in-call answer relayed");
        if let (Some((o, a)), true) = (negotiated, code < 300) {
            self.media_negotiated(&call_id, from, &o, &a);
        }
        if matches!(status, 408 | 481) {
            self.hangup(now, &call_id, "the other side lost the dialog");
        } else if unusable_offer {
            self.hangup(now, &call_id, "no shared codec in a re-INVITE offer");
        }
    }

    /// A relayed request the other side never answered (Timer B/F): 408
    /// to the requester, and the call ends (RFC 3261 section 12.2.1.2).
    fn relay_timed_out(&mut self, now: u64, branch: &str) {
        let Some(x) = self.calls.relays.get_mut(branch) else {
            return;
        };
        x.answered = true;
        x.next_resend = None;
        x.deadline = now;
        let data = msg::response(&x.req, x.peer.addr, 408, "Request Timeout", "", &[], None);
        let (key, peer, call_id) = (x.key.clone(), x.peer, x.call_id.clone());
        self.txns.respond(now, &key, Transmit { peer, data }, 408);
        tracing::info!(call_id = %call_id, "the other leg did not answer an in-call request");
        self.hangup(now, &call_id, "the other side stopped answering");
    }

    /// Updates `side`'s remote target (a target refresh request or its 2xx).
    fn set_target(&mut self, call_id: &str, side: Side, target: String) {
        let Some(call) = self.calls.calls.get_mut(call_id) else {
            return;
        };
        match dialog_branch(call, side) {
            Some(i) => call.branches[i].remote_target = target,
            None if side == Side::A && !call.originate => call.a_target = target,
            None => {}
        }
    }

    fn leg_transport(&self, call_id: &str, side: Side) -> crate::sip::Transport {
        self.calls
            .calls
            .get(call_id)
            .map_or(crate::sip::Transport::Udp, |c| side_peer(c, side).transport)
    }

    /// Builds a request inside `side`'s dialog: the caller's (sipd is its
    /// UAS) or the answered branch's. `cseq` `None` takes the dialog's next
    /// local CSeq (an ACK passes its INVITE's). Returns where it goes, its
    /// bytes and its CSeq.
    #[allow(clippy::too_many_arguments)]
    fn leg_request(
        &mut self,
        call_id: &str,
        side: Side,
        method: &str,
        branch: &str,
        cseq: Option<u32>,
        extra: &[(&str, String)],
        body: Option<(&str, &[u8])>,
    ) -> Option<(Peer, Vec<u8>, u32)> {
        let realm = self.cfg.realm.clone();
        let call = self.calls.calls.get_mut(call_id)?;
        let local = self.addrs.via_host(&side_peer(call, side));
        if let Some(i) = dialog_branch(call, side) {
            let b = &mut call.branches[i];
            let n = cseq.unwrap_or_else(|| {
                b.local_cseq += 1;
                b.local_cseq
            });
            let data = dialog_request(
                b,
                method,
                n,
                &local,
                &realm,
                &call.from_user,
                &call.to_user,
                branch,
                extra,
                body,
            );
            return Some((b.peer, data, n));
        }
        if side == Side::B || call.originate {
            return None;
        }
        let n = cseq.unwrap_or_else(|| {
            call.a_cseq += 1;
            call.a_cseq
        });
        let req = &call.a_req;
        let target = if call.a_target.is_empty() {
            uri_of(req.get("from").unwrap_or_default()).to_string()
        } else {
            call.a_target.clone()
        };
        let from = format!("{};tag={}", req.get("to").unwrap_or_default(), call.a_tag);
        let data = build_request(&Outgoing {
            method,
            target: &target,
            transport: call.a_peer.transport,
            local: &local,
            branch,
            from: &from,
            to: req.get("from").unwrap_or_default(),
            call_id: &call.id,
            cseq: n,
            route: &call.a_route,
            extra,
            body,
        });
        Some((call.a_peer, data, n))
    }

    /// Sends BYE on the A-leg (`to_a`) or on the winning B-leg.
    fn hangup_leg(&mut self, now: u64, call_id: &str, to_a: bool) {
        let side = if to_a { Side::A } else { Side::B };
        let Some(call) = self.calls.calls.get(call_id) else {
            return;
        };
        if to_a && !call.originate && call.answered_at.is_none() {
            return;
        }
        let branch = format!("z9hG4bK{}", self.next_id());
        let Some((peer, data, _)) =
            self.leg_request(call_id, side, "BYE", &branch, None, &[], None)
        else {
            return;
        };
        if let Some(call) = self.calls.calls.get_mut(call_id)
            && let Some(i) = dialog_branch(call, side)
        {
            call.branches[i].state = BranchState::Done;
        }
        self.txns
            .send_request(now, &branch, Transmit { peer, data }, 64 * T1);
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

    /// Retransmissions and timeouts of relayed requests (Timers A/E, B/F)
    /// and of a relayed re-INVITE's 2xx to the requester until its ACK.
    fn relay_timeout(&mut self, now: u64) {
        self.calls
            .relays
            .retain(|_, x| !(x.answered && x.ok.is_none() && now >= x.deadline));
        let mut resend = Vec::new();
        let mut timed_out = Vec::new();
        let mut no_ack = Vec::new();
        for (branch, x) in self.calls.relays.iter_mut() {
            if !x.answered {
                if let Some(n) = x.next_resend
                    && now >= n
                {
                    resend.push(x.sent.clone());
                    x.interval = if x.method == "INVITE" {
                        x.interval * 2
                    } else {
                        (x.interval * 2).min(T2)
                    };
                    x.next_resend = Some(now + x.interval);
                }
                if now >= x.deadline {
                    timed_out.push(branch.clone());
                }
            } else if x.ok.is_some() && now >= x.ok_next {
                if now >= x.ok_deadline {
                    x.ok = None;
                    no_ack.push(x.call_id.clone());
                } else if let Some(ok) = &x.ok {
                    resend.push(ok.clone());
                    x.ok_interval = (x.ok_interval * 2).min(T2);
                    x.ok_next = now + x.ok_interval;
                }
            }
        }
        self.out.extend(resend);
        for b in timed_out {
            self.relay_timed_out(now, &b);
        }
        for c in no_ack {
            self.hangup(now, &c, "no ACK for a relayed re-INVITE's 200");
        }
    }

    /// Timers A/B of the B-leg INVITEs, the ring timeout and the A-leg 2xx
    /// retransmission.
    pub(super) fn b2b_timeout(&mut self, now: u64) {
        self.calls.ended.retain(|_, (_, _, _, until)| *until > now);
        self.relay_timeout(now);
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
                    b.no_response = true;
                    b.next_resend = None;
                }
            }
            self.out.extend(resend);
            self.out.extend(ok_again);
            if !timed_out.is_empty() {
                self.maybe_all_failed(now, &id);
            }
            if ring_over {
                // A trunk that never sent even a 100 is unreachable, not
                // unanswered.
                let silent_trunk = self.calls.calls.get(&id).is_some_and(|c| {
                    c.outbound.is_some()
                        && c.branches
                            .iter()
                            .filter(|b| b.device_id == TRUNK_ID)
                            .any(|b| b.state == BranchState::Calling)
                });
                if silent_trunk {
                    let (reply, disposition, why) = trunk_failure(0, "", true);
                    self.fail_a_with(now, &id, reply, disposition, &why);
                } else {
                    self.fail_a(
                        now,
                        &id,
                        480,
                        "Temporarily Unavailable",
                        "missed",
                        "no answer",
                    );
                }
            }
            if ack_lost {
                self.hangup(now, &id, "no ACK for the 200");
            }
        }
    }
}

/// A request inside the B-leg dialog (ACK of a 2xx, BYE, a relayed
/// request), along the branch's route set.
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
    extra: &[(&str, String)],
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    build_request(&Outgoing {
        method,
        target: &b.remote_target,
        transport: b.peer.transport,
        local,
        branch,
        from: &format!("<sip:{from_user}@{realm}>;tag={}", b.from_tag),
        to: &format!("<sip:{to_user}@{realm}>;tag={}", b.to_tag),
        call_id: &b.call_id,
        cseq,
        route: &b.route,
        extra,
        body,
    })
}

/// A request sipd sends inside a dialog.
struct Outgoing<'a> {
    method: &'a str,
    target: &'a str,
    transport: crate::sip::Transport,
    local: &'a str,
    branch: &'a str,
    /// Full From / To values, tags included.
    from: &'a str,
    to: &'a str,
    call_id: &'a str,
    cseq: u32,
    route: &'a [String],
    extra: &'a [(&'a str, String)],
    body: Option<(&'a str, &'a [u8])>,
}

fn build_request(o: &Outgoing) -> Vec<u8> {
    // A first route without `lr` is a strict router (RFC 3261 section
    // 12.2.1.1): it becomes the Request-URI, and the remote target goes
    // last in the Route set.
    let strict = o.route.first().filter(|r| {
        !uri_of(r).split(';').any(|p| {
            let p = p.trim().to_ascii_lowercase();
            p == "lr" || p.starts_with("lr=")
        })
    });
    let (target, route): (&str, Vec<String>) = match strict {
        Some(first) => (
            uri_of(first),
            o.route[1..]
                .iter()
                .cloned()
                .chain(std::iter::once(format!("<{}>", o.target)))
                .collect(),
        ),
        None => (o.target, o.route.to_vec()),
    };
    let mut s = format!(
        "{m} {target} SIP/2.0\r\nVia: SIP/2.0/{tr} {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
         From: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {m}\r\n",
        m = o.method,
        tr = o.transport.as_str().to_ascii_uppercase(),
        local = o.local,
        branch = o.branch,
        from = o.from,
        to = o.to,
        cid = o.call_id,
        cseq = o.cseq,
    );
    for r in &route {
        s.push_str(&format!("Route: {r}\r\n"));
    }
    for (n, v) in o.extra {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str("User-Agent: GoSIP\r\n");
    match o.body {
        Some((ct, b)) => {
            s.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                b.len()
            ));
            let mut out = s.into_bytes();
            out.extend_from_slice(b);
            out
        }
        None => {
            s.push_str("Content-Length: 0\r\n\r\n");
            s.into_bytes()
        }
    }
}

/// The answered branch that is `side`'s dialog; `None` for the caller's
/// own dialog (sipd is its UAS) or when nothing answered yet.
fn dialog_branch(call: &Call, side: Side) -> Option<usize> {
    if !call.originate && side == Side::A {
        return None;
    }
    call.branches.iter().position(|b| {
        b.state == BranchState::Won
            && (!call.originate || (b.device_id != TRUNK_ID) == (side == Side::A))
    })
}

/// Where `side` of the call is: its answered branch, else the caller.
fn side_peer(call: &Call, side: Side) -> Peer {
    match dialog_branch(call, side) {
        Some(i) => call.branches[i].peer,
        None => call.a_peer,
    }
}

/// The ACK of a non-2xx final response to `invite`: same branch,
/// Request-URI and route as the INVITE, the To of the response (RFC 3261
/// section 17.1.1.3).
fn non2xx_ack(invite: &[u8], resp: &Raw) -> Vec<u8> {
    let inv = String::from_utf8_lossy(invite);
    let mut lines = inv.split("\r\n");
    let uri = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default();
    let mut out = format!("ACK {uri} SIP/2.0\r\n");
    let mut cseq = 0;
    for line in lines.take_while(|l| !l.is_empty()) {
        let l = line.to_ascii_lowercase();
        if l.starts_with("via:")
            || l.starts_with("from:")
            || l.starts_with("call-id:")
            || l.starts_with("route:")
            || l.starts_with("max-forwards:")
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if let Some(v) = l.strip_prefix("cseq:") {
            cseq = v
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    if let Some(to) = resp.get("to") {
        out.push_str(&format!("To: {to}\r\n"));
    }
    out.push_str(&format!("CSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n"));
    out.into_bytes()
}

impl Branch {
    /// What a 2xx to the INVITE fixes for this dialog (RFC 3261 §12.1.2):
    /// the remote tag, the remote target from Contact, and the route set
    /// from Record-Route in reverse order.
    fn learn_dialog(&mut self, raw: &Raw) {
        self.to_tag = raw
            .get("to")
            .and_then(tag_of)
            .unwrap_or_default()
            .to_string();
        if let Some(c) = raw.get("contact") {
            self.remote_target = uri_of(c).to_string();
        }
        self.route = route_set(raw);
        self.route.reverse();
    }
}

/// The Record-Route entries of a message, in order.
fn route_set(raw: &Raw) -> Vec<String> {
    raw.all("record-route")
        .flat_map(|v| msg::split_top_level(v, ','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The reason phrase of a response.
fn reason_of(raw: &Raw) -> &str {
    raw.start.splitn(3, ' ').nth(2).unwrap_or_default().trim()
}

/// The SDP body of a message, when it has one.
fn sdp_of(raw: &Raw) -> Option<String> {
    let sdp = raw.get("content-type").is_none_or(|ct| {
        ct.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("application/sdp")
    });
    let body = String::from_utf8_lossy(&raw.body);
    (sdp && !body.trim().is_empty()).then(|| body.into_owned())
}

/// The display-name prefix for a trusted caller.
pub const VERIFIED_MARK: &str = "\u{2713} ";
/// The display-name prefix for a likely spam caller.
pub const SPAM_MARK: &str = "SPAM? ";

/// The trust mark of an inbound trunk call: twiliod's `X-GoSIP-Trust`
/// (`verified` = STIR/SHAKEN full attestation, `spam` = a spam score that
/// did not block), else Twilio's own `X-Twilio-VerStat` as Elastic SIP
/// Trunking sends it.
fn trust_mark(raw: &Raw) -> Option<&'static str> {
    match raw.get("x-gosip-trust").map(str::trim) {
        Some(t) if t.eq_ignore_ascii_case("spam") => Some(SPAM_MARK),
        Some(t) if t.eq_ignore_ascii_case("verified") => Some(VERIFIED_MARK),
        Some(_) => None,
        None => raw
            .get("x-twilio-verstat")
            .filter(|v| v.trim() == "TN-Validation-Passed-A")
            .map(|_| VERIFIED_MARK),
    }
}

/// How an outbound call that the trunk failed ends: busy (486/600),
/// declined (603) and not answered (408/480/487) as such, anything else
/// `failed`. The caller hears the trunk's own 4xx/6xx; a 5xx, a redirect
/// or a refused trunk credential becomes 502 (so the phone neither takes
/// the PBX for overloaded nor answers a challenge meant for sipd), a trunk
/// that never answered 503.
fn trunk_failure(status: u16, reason: &str, no_response: bool) -> (Reply, &'static str, String) {
    if no_response {
        return (
            Reply::new(503, "Service Unavailable")
                .with("Warning", "399 gosip \"the SIP trunk did not respond\""),
            "failed",
            "the trunk did not respond".into(),
        );
    }
    let why = format!("the trunk answered {status} {reason}");
    let reason: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_string();
    let bad_gateway = |what: String| {
        Reply::new(502, "Bad Gateway").with("Warning", format!("399 gosip \"{what}\""))
    };
    match status {
        486 | 600 => (Reply::new(486, "Busy Here"), "busy", why),
        603 => (Reply::new(603, "Decline"), "rejected", why),
        408 | 480 | 487 => (Reply::new(480, "Temporarily Unavailable"), "missed", why),
        401 | 407 => (
            bad_gateway("the SIP trunk refused the trunk credentials".into()),
            "failed",
            why,
        ),
        400..=499 | 600..=699 => {
            let reason = if reason.is_empty() {
                "Call Failed".to_string()
            } else {
                reason
            };
            (Reply::new(status, reason), "failed", why)
        }
        _ => (
            bad_gateway(format!("the SIP trunk answered {status}")),
            "failed",
            why,
        ),
    }
}

/// CANCEL for a pending INVITE: same Request-URI, Via, From, To, Call-ID,
/// CSeq number and Route (RFC 3261 section 9.1).
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
            || l.starts_with("route:")
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
