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
//! The retransmission arithmetic is the transaction layer's
//! ([`ClientTimers`] in each [`Branch`] and [`Relay`], [`UnackedOk`] for
//! every 2xx sipd re-sends); what to do when one fires (408 to the
//! requester, ending the call) is here. The calls, relays and ended
//! branches sit in `wake` tables ordered by their next deadline, so
//! [`Calls::next_timeout`] and [`Core::b2b_timeout`] reach only what is due.

use crate::sip::core::Leg;
use proto::types::DeviceId;
use std::collections::HashMap;

use super::{Core, Event, Prompt, Reply, Voicemail};
use crate::sip::method::Method;
use crate::sip::msg::{self, Raw, tag_of, uri_of, user_of};
use crate::sip::registrar::{Device, Mailbox};
use crate::sip::transaction::{ClientTimers, Due, TsxKey, UnackedOk, answers_from};

/// The device id the trunk (Twilio) authenticates as.
pub const TRUNK_ID: DeviceId = DeviceId(0);
use crate::sip::dialog::{Outgoing, build_request, cancel_for, route_set};
use crate::sip::{Peer, T1, Transmit, digest, sdp};

mod attended;
mod call;
mod fork;
mod hops;
mod in_dialog;
mod listen;
mod media;
mod originate;
mod park;
mod pickup;
mod transfer;
mod voicemail;
mod wake;

pub use listen::StoredMessage;
use wake::{Table, Timed};

/// A change to the call's `cdrs` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cdr {
    Start {
        call_id: String,
        direction: &'static str,
        from: String,
        to: String,
        device_id: DeviceId,
        started_at: u64,
        /// Twilio's CallSid for trunk calls.
        call_sid: Option<String>,
    },
    Answered {
        call_id: String,
        at: u64,
        /// The device that answered a call that rang several (inbound);
        /// `None` keeps the one the call started with.
        device_id: Option<DeviceId>,
    },
    End {
        call_id: String,
        at: u64,
        disposition: &'static str,
        duration_s: u64,
        reason: String,
        /// Every leg of the call was SIP over TLS with SRTP.
        encrypted: bool,
    },
}

/// What [`Core::calls`] reports per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub call_id: String,
    pub from: String,
    pub to: String,
    pub device_id: DeviceId,
    pub state: &'static str,
    pub started_at: u64,
    pub recording: bool,
    /// "internal", "inbound" or "outbound".
    pub direction: &'static str,
    /// The slot of a parked call.
    pub park_slot: Option<u32>,
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
    device_id: DeviceId,
    /// CSeq number of the INVITE (2 once retried with credentials).
    cseq: u32,
    contact: String,
    /// The users in the From and To of its INVITE and of every request in
    /// its dialog.
    from_user: String,
    to_user: String,
    call_id: String,
    branch: String,
    from_tag: String,
    to_tag: String,
    remote_target: String,
    invite: Vec<u8>,
    state: BranchState,
    status: u16,
    /// Timers A and B of its INVITE client transaction.
    tsx: ClientTimers,
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
    /// A phone that joined the call with its own INVITE (pickup, a parked
    /// call taken back): sipd's 2xx to it, re-sent until its ACK.
    ok: Option<UnackedOk>,
}

/// One leg of a call as the relay sees it: "a" is the caller (for
/// click-to-call the device), "b" the callee (the trunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    fn leg(self) -> Leg {
        match self {
            Side::A => Leg::A,
            Side::B => Leg::B,
        }
    }
}

/// A request from one leg inside the call (re-INVITE, UPDATE, INFO),
/// forwarded to the other leg and waiting for its answer. Kept a while after
/// the answer so a retransmitted 2xx gets its ACK again.
#[derive(Debug)]
struct Relay {
    call_id: String,
    method: Method,
    /// The side the request came from; it gets the answer.
    from: Side,
    /// Its server transaction, and the request to answer.
    key: TsxKey,
    peer: Peer,
    req: Raw,
    /// What went to the other side, re-sent on Timer A/E until it answers.
    sent: Transmit,
    cseq: u32,
    /// The SDP offer the request carried (as received).
    offer: Option<String>,
    /// A final answer came (or Timer B/F fired).
    answered: bool,
    /// Timers A/B (re-INVITE) or E/F of what went to the other side.
    tsx: ClientTimers,
    /// Once answered: kept until then, so a retransmitted final answer
    /// gets its ACK again.
    linger_until: u64,
    /// re-INVITE: the ACK of the other side's 2xx.
    ack: Option<Transmit>,
    /// re-INVITE: our 2xx to the requester, re-sent until it ACKs.
    ok: Option<UnackedOk>,
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
    /// sipd's own request (a re-INVITE taking a leg off hold after a
    /// transfer): no requester to answer.
    own: bool,
}

impl Timed for Relay {
    /// When [`Core::relay_timeout`] has something to do for it: its
    /// Timers A/E and B/F while unanswered; once answered, its 2xx to the
    /// requester while unacknowledged, then the end of its linger time.
    fn next_deadline(&self) -> Option<u64> {
        if !self.answered {
            return self.tsx.next_deadline();
        }
        match &self.ok {
            Some(ok) => Some(ok.next_deadline()),
            None => Some(self.linger_until),
        }
    }
}

impl Relay {
    /// A request that just went to the other leg as `sent` (CSeq `cseq`),
    /// for `requester` (its side, server transaction, address and
    /// request): Timer A/E runs on an unreliable transport, Timer B/F on
    /// any.
    fn sent(
        now: u64,
        call_id: &str,
        method: Method,
        requester: (Side, TsxKey, Peer, Raw),
        sent: Transmit,
        cseq: u32,
        offer: Option<String>,
    ) -> Relay {
        let (from, key, peer, req) = requester;
        Relay {
            call_id: call_id.to_string(),
            method,
            from,
            key,
            peer,
            req,
            tsx: ClientTimers::started(
                now,
                sent.peer.transport.reliable(),
                method == Method::Invite,
            ),
            sent,
            cseq,
            offer,
            answered: false,
            linger_until: 0,
            ack: None,
            ok: None,
            far_offer: None,
            provisional: false,
            cancel: false,
            cancel_sent: false,
            own: false,
        }
    }

    /// An offer/answer exchange still runs (RFC 3261 section 14.1, RFC
    /// 3311 section 5.1): no new one may start.
    fn negotiating(&self) -> bool {
        match self.method {
            Method::Invite => !self.answered || self.ok.is_some(),
            Method::Update => !self.answered && self.offer.is_some(),
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
    a_key: TsxKey,
    a_tag: String,
    a_target: String,
    a_cseq: u32,
    /// sipd's 2xx to the caller, re-sent until its ACK (state Answering).
    a_ok: Option<UnackedOk>,
    offer: String,
    from_user: String,
    from_display: String,
    to_user: String,
    device_id: DeviceId,
    callees: Vec<DeviceId>,
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
    /// Nobody answered and sipd answered the caller for this mailbox:
    /// mediad plays the greeting and records.
    voicemail: Option<Mailbox>,
    /// When mediad began recording the message (the greeting and the tone
    /// were over).
    recording_since: Option<u64>,
    /// The caller dialed the voicemail access code: sipd answers and plays
    /// their mailbox.
    listen: Option<listen::Listen>,
    /// A blind transfer under way.
    transfer: Option<transfer::Transfer>,
    /// What happened to the call, for the CDR ("transferred by 102 to
    /// 103", "picked up by 104").
    history: Vec<String>,
    /// Parked: the caller hears hold music until a phone takes it back.
    park: Option<park::Parked>,
    /// The caller's side transferred the call: side A is this branch (the
    /// target sipd rang) instead of the caller's own dialog.
    a_branch: Option<usize>,
    /// The caller's side hung up while its transfer target rang.
    a_left: bool,
    /// The SDP the B side last sent (its answer or offer), and the SDP it
    /// was last sent (mediad's address), as `a_sdp` is for the caller.
    b_media: String,
    b_sent: String,
}

impl Call {
    /// A call waiting for mediad's ports: nothing rung, answered or
    /// negotiated yet. Who calls whom (users, device, direction, callees)
    /// starts empty for the caller to set with struct update syntax.
    fn new(
        id: String,
        a_peer: Peer,
        a_req: Raw,
        a_tag: String,
        now: u64,
        ring_deadline: u64,
    ) -> Call {
        Call {
            id,
            state: State::Media,
            a_peer,
            a_req,
            // Set by the caller's INVITE; click-to-call has none.
            a_key: TsxKey::Client(String::new()),
            a_tag,
            a_target: String::new(),
            a_cseq: 0,
            a_ok: None,
            offer: String::new(),
            from_user: String::new(),
            from_display: String::new(),
            to_user: String::new(),
            device_id: TRUNK_ID,
            callees: Vec::new(),
            branches: Vec::new(),
            ports: None,
            a_sdp: String::new(),
            started_at: now,
            answered_at: None,
            ring_deadline,
            ringing_sent: false,
            caller_records: false,
            recording: false,
            dtmf: [String::new(), String::new()],
            outbound: None,
            originate: false,
            direction: "internal",
            late_offer: false,
            b_offer: String::new(),
            early_sent: false,
            a_route: Vec::new(),
            voicemail: None,
            recording_since: None,
            listen: None,
            transfer: None,
            history: Vec::new(),
            park: None,
            a_branch: None,
            a_left: false,
            b_media: String::new(),
            b_sent: String::new(),
        }
    }
}

impl Timed for Call {
    /// When [`Core::b2b_timeout`] has something to do for this call: the
    /// ring timeout, the 2xx to the caller until its ACK, a transfer or a
    /// parked call's timer, and each branch's INVITE and 2xx timers.
    fn next_deadline(&self) -> Option<u64> {
        let ring = (self.state == State::Ringing).then_some(self.ring_deadline);
        let ok = self
            .a_ok
            .as_ref()
            .filter(|_| self.state == State::Answering)
            .map(UnackedOk::next_deadline);
        let transfer = self.transfer.as_ref().map(|t| t.deadline);
        // While a ring-back runs, the transfer's deadline wakes the call.
        let park = self
            .park
            .as_ref()
            .filter(|_| self.transfer.is_none())
            .and_then(park::Parked::ring_back_due);
        let branches = self.branches.iter().flat_map(|b| {
            let ok = b.ok.as_ref().map(UnackedOk::next_deadline);
            let ringing = matches!(b.state, BranchState::Calling | BranchState::Proceeding);
            ok.into_iter()
                .chain(b.tsx.next_deadline().filter(|_| ringing))
        });
        [ring, ok, transfer, park]
            .into_iter()
            .flatten()
            .chain(branches)
            .min()
    }
}

impl Timed for (Branch, u64) {
    /// An ended call's branch goes at the end of its Timer-B time.
    fn next_deadline(&self) -> Option<u64> {
        Some(self.1)
    }
}

/// Every call, with indexes for routing messages to them.
#[derive(Debug, Default)]
pub(super) struct Calls {
    calls: Table<Call>,
    /// B-leg Call-ID -> A-leg Call-ID (the call's id).
    by_b_call_id: HashMap<String, String>,
    /// B-leg INVITE branch -> (call id, branch index).
    by_branch: HashMap<String, (String, usize)>,
    /// Branches of ended calls, kept for Timer-B time so late finals get
    /// their ACK (and a late 2xx its BYE): (branch, until).
    ended: Table<(Branch, u64)>,
    /// In-call requests relayed to the other leg, by the branch sent.
    relays: Table<Relay>,
    /// Trunk calls per device, for `calls.max_*_per_device`.
    limiter: crate::sip::limits::Limiter,
    /// SDES state per dialog Call-ID (see `hops`).
    hops: HashMap<String, hops::DialogHop>,
    /// The dialog whose crypto (SDES keys or a browser's DTLS) mediad was
    /// last told for each side of a call: a dialog that takes the side
    /// over (a transfer) tells it afresh, even plain RTP.
    told_crypto: HashMap<(String, Side), String>,
    /// A browser dialog's Opus bridge, by its Call-ID (see `sip::opus`).
    /// Made by the browser's first SDP, before the call is.
    pub(in crate::sip::core) browser_codecs: HashMap<String, crate::sip::opus::Codecs>,
}

impl Calls {
    /// Applies the per-device limits to a new trunk call of `device`;
    /// emergency calls (dialled as-is, without `+`) are not counted.
    pub(super) fn limit(
        &mut self,
        limits: crate::sip::limits::CallLimits,
        device: DeviceId,
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

    /// The earliest deadline of any call, relayed request or ended branch,
    /// read from their ordered indexes (see `wake`), not by visiting them.
    pub(super) fn next_timeout(&self) -> Option<u64> {
        [
            self.ended.next_deadline(),
            self.relays.next_deadline(),
            self.calls.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// A request inside the B-leg dialog (ACK of a 2xx, BYE, a relayed
/// request), along the branch's route set.
#[allow(clippy::too_many_arguments)]
fn dialog_request(
    b: &Branch,
    method: Method,
    cseq: u32,
    local: &str,
    realm: &str,
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
        from: &format!("<sip:{}@{realm}>;tag={}", b.from_user, b.from_tag),
        to: &format!("<sip:{}@{realm}>;tag={}", b.to_user, b.to_tag),
        call_id: &b.call_id,
        cseq,
        route: &b.route,
        extra,
        body,
    })
}

/// The answered branch that is `side`'s dialog; `None` for the caller's
/// own dialog (sipd is its UAS) or when nothing answered yet.
fn dialog_branch(call: &Call, side: Side) -> Option<usize> {
    if side == Side::A {
        if call.a_branch.is_some() {
            return call.a_branch;
        }
        if !call.originate {
            return None;
        }
    }
    (0..call.branches.len()).find(|&i| {
        let b = &call.branches[i];
        b.state == BranchState::Won
            && Some(i) != call.a_branch
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

/// A B-leg INVITE about to go out: where it goes, the device it rings and
/// the identifiers of the new dialog.
struct NewBranch {
    peer: Peer,
    device_id: DeviceId,
    /// The contact the INVITE goes to (its Request-URI).
    contact: String,
    /// The user it calls as (From) and calls (To).
    from_user: String,
    to_user: String,
    ids: DialogIds,
}

/// The identifiers sipd picks for a new B-leg dialog: its INVITE's Via
/// branch, its Call-ID and the From tag.
struct DialogIds {
    branch: String,
    call_id: String,
    from_tag: String,
}

impl Core {
    /// Fresh [`DialogIds`], drawn in this order (branch, Call-ID, tag).
    fn dialog_ids(&mut self) -> DialogIds {
        let branch = format!("z9hG4bK{}", self.next_id());
        let call_id = format!("{}@gosip", self.next_id());
        let from_tag = self.next_id();
        DialogIds {
            branch,
            call_id,
            from_tag,
        }
    }
}

impl Branch {
    /// The branch of an INVITE that just went out: Timer A runs on an
    /// unreliable transport, Timer B on any (RFC 3261 section 17.1.1.2).
    fn calling(now: u64, new: NewBranch, invite: Vec<u8>) -> Branch {
        Branch {
            peer: new.peer,
            device_id: new.device_id,
            cseq: 1,
            contact: new.contact.clone(),
            from_user: new.from_user,
            to_user: new.to_user,
            call_id: new.ids.call_id,
            branch: new.ids.branch,
            from_tag: new.ids.from_tag,
            to_tag: String::new(),
            remote_target: new.contact,
            invite,
            state: BranchState::Calling,
            status: 0,
            tsx: ClientTimers::invite(now, new.peer.transport.reliable()),
            local_cseq: 1,
            route: Vec::new(),
            ack: None,
            reason: String::new(),
            no_response: false,
            ok: None,
        }
    }

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

/// The reason phrase of a response.
fn reason_of(raw: &Raw) -> &str {
    raw.start().splitn(3, ' ').nth(2).unwrap_or_default().trim()
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
