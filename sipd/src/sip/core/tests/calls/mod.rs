//! Calls through the B2BUA: alice (101) calls bob (102), registered at one
//! or more contacts; helpers build each side's messages.

use super::*;

mod attacks;
mod attended;
mod basic;
mod busy;
mod in_dialog;
mod listen;
mod media;
mod park;
mod srtp;
mod transfer;
mod trunk;
mod voicemail;

fn peer(a: &str) -> Peer {
    Peer::udp(a.parse().unwrap())
}

const A: &str = "192.168.1.50:5062";

const B1: &str = "192.168.1.61:5060";

const B2: &str = "192.168.1.62:5060";

const SDP: &str = "v=0\r\no=a 1 1 IN IP4 192.168.1.50\r\ns=-\r\nc=IN IP4 192.168.1.50\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";

/// A core with alice (101) calling and bob (102) registered at `contacts`.
fn setup(contacts: &[&str]) -> Core {
    let mut c = core();
    let (md5, sha) = ha1("bob", REALM, "pw");
    let mut devices = vec![c.devices["alice"].clone()];
    devices.push(Device {
        id: DeviceId(2),
        username: "bob".into(),
        ha1_md5: md5,
        ha1_sha256: sha,
        realm: REALM.into(),
        extension: Some("102".into()),
        recording: false,
        caller_id: None,
        mwi_unsolicited: false,
        busy_in_call: false,
        srtp: Default::default(),
        tls_only: false,
        mailbox: None,
    });
    c.set_devices(devices);
    for a in contacts {
        c.restore(bound(DeviceId(2), format!("sip:bob@{a}"), peer(a)));
    }
    c
}

fn invite(cseq: u32, auth: &str) -> String {
    invite_to("102", cseq, auth, SDP)
}

/// Alice's INVITE to `dialed` with `sdp` (empty: a late offer).
fn invite_to(dialed: &str, cseq: u32, auth: &str, sdp: &str) -> String {
    let body = if sdp.is_empty() {
        "Content-Length: 0\r\n\r\n".to_string()
    } else {
        format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    };
    format!(
        "INVITE sip:{dialed}@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKa{cseq};rport\r\nMax-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@gosip.test>;tag=at\r\nTo: <sip:{dialed}@gosip.test>\r\nCall-ID: call1\r\nCSeq: {cseq} INVITE\r\n\
         Contact: <sip:alice@{A}>\r\n{auth}{body}"
    )
}

fn out(c: &mut Core) -> Vec<(String, String)> {
    std::iter::from_fn(|| c.poll_transmit())
        .map(|t| (t.peer.addr.to_string(), String::from_utf8(t.data).unwrap()))
        .collect()
}

/// Places the call: 407, authenticated INVITE, 100, media ports.
/// Returns the INVITEs sent to the B contacts.
fn place(c: &mut Core) -> Vec<(String, String)> {
    place_to(c, "102", SDP, "internal", "")
}

/// [`place`] for any number, offer and CDR direction.
fn place_to(
    c: &mut Core,
    dialed: &str,
    sdp: &str,
    direction: &str,
    extra: &str,
) -> Vec<(String, String)> {
    let invite = |cseq: u32, auth: &str| invite_to(dialed, cseq, &format!("{extra}{auth}"), sdp);
    let auth = challenged(c, dialed, &invite(1, ""));
    c.handle_message(T0 + 1, peer(A), invite(2, &auth).as_bytes());
    let o = out(c);
    assert!(o[0].1.starts_with("SIP/2.0 100 Trying"), "{}", o[0].1);
    let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::MediaAllocate { call_id } if call_id == "call1"))
    );
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Cdr(Cdr::Start { direction: d, .. }) if *d == direction)),
        "{ev:?}"
    );
    c.media_ready(T0 + 2, "call1", Some((20000, 20002)));
    out(c)
}

/// Sends alice's first INVITE `first` (to `dialed`), ACKs the 407 and
/// returns the Proxy-Authorization header answering it.
fn challenged(c: &mut Core, dialed: &str, first: &str) -> String {
    c.handle_message(T0, peer(A), first.as_bytes());
    let ch = out(c).remove(0).1;
    assert!(ch.starts_with("SIP/2.0 407 "));
    // The phone ACKs the 407 (same branch), ending Timer G.
    let to = header(&ch, "To")[0];
    let ack = format!(
        "ACK sip:{dialed}@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKa1;rport\r\nMax-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@gosip.test>;tag=at\r\nTo: {to}\r\nCall-ID: call1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    c.handle_message(T0, peer(A), ack.as_bytes());
    assert!(out(c).is_empty());
    proxy_auth(&ch, dialed)
}

/// alice's Proxy-Authorization answering the 407 `ch` for `dialed`.
fn proxy_auth(ch: &str, dialed: &str) -> String {
    let hdr = header(ch, "Proxy-Authenticate")[0];
    let nonce = hdr
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let cr = Credentials {
        username: "alice".into(),
        realm: REALM.into(),
        nonce: nonce.into(),
        uri: format!("sip:{dialed}@gosip.test"),
        qop: "auth".into(),
        nc: "00000001".into(),
        cnonce: "x".into(),
        ..Default::default()
    };
    let (h, _) = ha1("alice", REALM, "pw");
    format!(
        "Proxy-Authorization: Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"sip:{dialed}@gosip.test\", response=\"{}\", qop=auth, nc=00000001, cnonce=\"x\"\r\n",
        cr.expected("INVITE", &h, Algorithm::Md5)
    )
}

/// A response from a B contact to the INVITE (or CANCEL) it got.
fn reply(req: &str, code: u16, tag: &str, sdp: Option<&str>) -> String {
    let mut r = format!("SIP/2.0 {code} X\r\n");
    for l in req.split("\r\n") {
        let low = l.to_ascii_lowercase();
        if low.starts_with("via:")
            || low.starts_with("from:")
            || low.starts_with("call-id:")
            || low.starts_with("cseq:")
        {
            r.push_str(l);
            r.push_str("\r\n");
        } else if low.starts_with("to:") {
            r.push_str(&format!("{l};tag={tag}\r\n"));
        }
    }
    r.push_str("Contact: <sip:bob@192.168.1.62:5060>\r\n");
    match sdp {
        Some(b) => r.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => r.push_str("Content-Length: 0\r\n\r\n"),
    }
    r
}

/// Alice's ACK (CSeq `cseq`) of a 2xx, with `sdp` when not empty.
fn ack_a(c: &mut Core, now: u64, branch: &str, cseq: u32, to_tag: &str, sdp: &str) {
    let body = if sdp.is_empty() {
        "Content-Length: 0\r\n\r\n".to_string()
    } else {
        format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    };
    let ack = format!(
        "ACK sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK{branch}\r\nFrom: \"Alice\" <sip:alice@gosip.test>;tag=at\r\n\
         To: <sip:102@gosip.test>;tag={to_tag}\r\nCall-ID: call1\r\nCSeq: {cseq} ACK\r\nMax-Forwards: 70\r\n{body}"
    );
    c.handle_message(now, peer(A), ack.as_bytes());
}

fn cdr_end(c: &mut Core) -> Option<&'static str> {
    std::iter::from_fn(|| c.poll_event()).find_map(|e| match e {
        Event::Cdr(Cdr::End { disposition, .. }) => Some(disposition),
        _ => None,
    })
}

fn body_part(ct: &str, body: &str) -> String {
    if body.is_empty() {
        "Content-Length: 0\r\n\r\n".into()
    } else {
        format!(
            "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

/// Bob's SDP: his address, port 6000, `extra` lines at the end.
fn bob_sdp(extra: &str) -> String {
    format!(
        "{}{extra}",
        SDP.replace("192.168.1.50", "192.168.1.61")
            .replace("4000", "6000")
    )
}

/// Places the call, bob's first contact answers, alice ACKs.
/// Returns the INVITE bob got and sipd's tag in alice's dialog.
fn answered(c: &mut Core) -> (String, String) {
    let invites = place(c);
    c.handle_message(
        T0 + 10,
        peer(B1),
        reply(&invites[0].1, 200, "b1", Some(&bob_sdp(""))).as_bytes(),
    );
    let ok = out(c)
        .into_iter()
        .find(|(p, m)| p == A && m.starts_with("SIP/2.0 200"))
        .unwrap()
        .1;
    let tag = tag_of(header(&ok, "To")[0]).unwrap().to_string();
    ack_a(c, T0 + 20, "ack2", 2, &tag, "");
    assert!(out(c).is_empty());
    while c.poll_event().is_some() {}
    (invites[0].1.clone(), tag)
}

/// Runs the core the way the shell does, waking only when
/// [`Core::poll_timeout`] asks, until `until`; returns every message sent
/// with the time it went out.
fn run_on_poll(c: &mut Core, mut now: u64, until: u64) -> Vec<(u64, String, String)> {
    // Whatever was due before `now` (the first sweep) first.
    c.handle_timeout(now);
    let mut sent: Vec<_> = out(c).into_iter().map(|(p, m)| (now, p, m)).collect();
    while let Some(at) = c.poll_timeout().filter(|&at| at <= until) {
        // Everything due at `now` was handled: asking for `now` again (or
        // earlier) would spin the shell.
        assert!(at > now, "asked for the clock again at {at}, now {now}");
        now = at;
        c.handle_timeout(now);
        sent.extend(out(c).into_iter().map(|(p, m)| (now, p, m)));
    }
    sent
}

/// A request from alice inside the call.
fn from_a(method: &str, cseq: u32, tag: &str, ct: &str, body: &str) -> String {
    format!(
        "{method} sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK{}{cseq}\r\nMax-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@gosip.test>;tag=at\r\nTo: <sip:102@gosip.test>;tag={tag}\r\nCall-ID: call1\r\n\
         CSeq: {cseq} {method}\r\nContact: <sip:alice@{A}>\r\n{}",
        method.to_ascii_lowercase(),
        body_part(ct, body)
    )
}

/// A request from bob inside his dialog (`invite` is what he got).
fn from_b(invite: &str, method: &str, cseq: u32, ct: &str, body: &str) -> String {
    format!(
        "{method} sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {B1};branch=z9hG4bKb{}{cseq}\r\nMax-Forwards: 70\r\n\
         From: {};tag=b1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:bob@{B1}>\r\n{}",
        method.to_ascii_lowercase(),
        header(invite, "To")[0],
        header(invite, "From")[0],
        header(invite, "Call-ID")[0],
        body_part(ct, body)
    )
}

/// A UA's answer to a request inside a dialog (To already tagged).
fn respond(req: &str, code: u16, reason: &str, contact: &str, ct: &str, body: &str) -> String {
    let mut r = format!("SIP/2.0 {code} {reason}\r\n");
    for l in req.split("\r\n").take_while(|l| !l.is_empty()) {
        let low = l.to_ascii_lowercase();
        if ["via:", "from:", "to:", "call-id:", "cseq:"]
            .iter()
            .any(|h| low.starts_with(h))
        {
            r.push_str(l);
            r.push_str("\r\n");
        }
    }
    r.push_str(&format!("Contact: <{contact}>\r\n"));
    r + &body_part(ct, body)
}

fn find(o: &[(String, String)], to: &str, start: &str) -> String {
    o.iter()
        .find(|(p, m)| p == to && m.starts_with(start))
        .map(|x| x.1.clone())
        .unwrap_or_else(|| panic!("no {start:?} to {to}: {o:?}"))
}

/// bob's 200 with his SDP to `invite`, from his phone at B1.
fn bob_ok(invite: &str) -> String {
    respond(
        invite,
        200,
        "OK",
        "sip:bob@192.168.1.61:5060",
        "application/sdp",
        &bob_sdp(""),
    )
}

/// alice re-INVITEs (CSeq 3, at T0 + 2 s) in the answered call of dialog
/// `tag`, and bob's 200 with his SDP comes back 50 ms later.
fn reinvite_from_a_answered(c: &mut Core, tag: &str) {
    c.handle_message(
        T0 + 2_000,
        peer(A),
        from_a("INVITE", 3, tag, "application/sdp", SDP).as_bytes(),
    );
    let to_b = find(&out(c), B1, "INVITE ");
    let ok = bob_ok(&to_b);
    c.handle_message(T0 + 2_050, peer(B1), ok.as_bytes());
}

/// A leg as the tests below write it.
fn ab(leg: Leg) -> &'static str {
    match leg {
        Leg::A => "a",
        Leg::B => "b",
        Leg::Unspecified => "?",
    }
}

fn media_updates(c: &mut Core) -> Vec<(&'static str, Option<bool>, String)> {
    std::iter::from_fn(|| c.poll_event())
        .filter_map(|e| match e {
            Event::MediaUpdate {
                leg, hold, media, ..
            } => Some((ab(leg), hold, media.map(|m| m.rtp).unwrap_or_default())),
            _ => None,
        })
        .collect()
}

/// Each MediaUpdate with media as (leg, the IP its SIP came from).
fn signal_ips(c: &mut Core) -> Vec<(&'static str, Option<std::net::IpAddr>)> {
    std::iter::from_fn(|| c.poll_event())
        .filter_map(|e| match e {
            Event::MediaUpdate {
                leg,
                media: Some(m),
                ..
            } => Some((ab(leg), m.signal_ip)),
            _ => None,
        })
        .collect()
}

/// Alice's device with a DID, and a termination trunk at [`TRUNK`].
const TRUNK: &str = "127.0.0.1:5099";

fn outbound_core() -> Core {
    let mut c = setup(&[B1]);
    let mut alice = c.devices["alice"].clone();
    alice.caller_id = Some("+15550001111".into());
    let bob = c.devices["bob"].clone();
    c.set_devices([alice, bob]);
    let mut cfg = c.config().clone();
    cfg.termination = Some(Termination {
        transport: crate::sip::Transport::Udp,
        host: "t.pstn.twilio.com".into(),
        addr: TRUNK.parse().unwrap(),
        username: "u".into(),
        password: "p".into(),
        local: None,
    });
    c.set_config(T0, cfg);
    c
}

/// An INVITE from the trunk (Twilio) that rings bob, authenticated
/// with the trunk credentials; returns what bob's contact gets.
fn from_trunk(c: &mut Core, call_id: &str, from: &str, extra: &str) -> String {
    let (md5, sha) = ha1("twilio", REALM, "trunkpw");
    let mut cfg = c.config().clone();
    cfg.trunk = Some(Device {
        id: TRUNK_ID,
        username: "twilio".into(),
        ha1_md5: md5.clone(),
        ha1_sha256: sha,
        realm: REALM.into(),
        extension: None,
        recording: false,
        caller_id: None,
        mwi_unsolicited: false,
        busy_in_call: false,
        srtp: Default::default(),
        tls_only: false,
        mailbox: None,
    });
    c.set_config(T0, cfg);
    let inv = |cseq: u32, auth: &str| {
        format!(
            "INVITE sip:+15550001111@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK{call_id}{cseq}\r\nMax-Forwards: 70\r\n\
             From: {from};tag=tw\r\nTo: <sip:+15550001111@gosip.test>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:twilio@{A}>\r\nX-GoSIP-Devices: 2\r\n{extra}{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        )
    };
    c.handle_message(T0, peer(A), inv(1, "").as_bytes());
    let ch = out(c).remove(0).1;
    let auth = trunk_auth(&ch, &md5);
    c.handle_message(T0 + 1, peer(A), inv(2, &auth).as_bytes());
    find(&out(c), A, "SIP/2.0 100 Trying");
    c.media_ready(T0 + 2, call_id, Some((20000, 20002)));
    find(&out(c), B1, "INVITE ")
}

/// The BYE a callee at `from` sends in the dialog of the INVITE it got
/// (`invite`), having answered with To tag `tag`.
fn callee_bye(invite: &str, from: &str, tag: &str) -> String {
    format!(
        "BYE sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{tag}bye\r\nMax-Forwards: 70\r\n\
         From: {};tag={tag}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n",
        header(invite, "To")[0],
        header(invite, "From")[0],
        header(invite, "Call-ID")[0],
    )
}
