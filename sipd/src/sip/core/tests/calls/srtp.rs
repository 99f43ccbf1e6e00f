//! SDES over a hop without TLS: keys never travel in clear SIP.

use super::*;

const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

#[test]
fn an_srtp_offer_over_udp_is_refused_with_488_saying_tls_is_needed() {
    let mut c = setup(&[B1]);
    let sdp = SDP.replace("RTP/AVP", "RTP/SAVP")
        + &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n");
    let invite = |cseq: u32, auth: &str| invite_to("102", cseq, auth, &sdp);
    let auth = challenged(&mut c, "102", &invite(1, ""));
    c.handle_message(T0 + 1, peer(A), invite(2, &auth).as_bytes());
    let o = out(&mut c);
    assert_eq!(o.len(), 1, "{o:?}");
    assert!(o[0].1.starts_with("SIP/2.0 488 "), "{}", o[0].1);
    let warning = header(&o[0].1, "Warning")[0];
    assert!(
        warning.starts_with("302 ") && warning.contains("TLS"),
        "{warning}"
    );
    assert!(
        !std::iter::from_fn(|| c.poll_event()).any(|e| matches!(e, Event::MediaAllocate { .. })),
        "no call is made"
    );
}

#[test]
fn best_effort_keys_over_udp_are_neither_passed_on_nor_answered() {
    let mut c = setup(&[B1]);
    let sdp = format!("{SDP}a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n");
    let invites = place_to(&mut c, "102", &sdp, "internal", "");
    assert!(!invites[0].1.contains("a=crypto"), "{}", invites[0].1);
    assert!(!invites[0].1.contains(KEY));
    let answer = bob_sdp(&format!(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"
    ));
    c.handle_message(
        T0 + 10,
        peer(B1),
        reply(&invites[0].1, 200, "b1", Some(&answer)).as_bytes(),
    );
    let ok = find(&out(&mut c), A, "SIP/2.0 200");
    assert!(ok.contains("m=audio ") && ok.contains(" RTP/AVP "), "{ok}");
    assert!(!ok.contains("a=crypto"), "{ok}");
    assert!(
        !std::iter::from_fn(|| c.poll_event()).any(|e| matches!(e, Event::MediaCrypto { .. })),
        "both legs stay plain RTP"
    );
}

/// bob's phone must use SRTP and registered over TLS; alice calls in
/// clear over UDP.
fn bob_over_tls_with_srtp_required() -> Core {
    let mut c = setup(&[]);
    let bob = Device {
        srtp: crate::sip::sdes::Policy::Required,
        ..c.devices["bob"].clone()
    };
    let alice = c.devices["alice"].clone();
    c.set_devices([alice, bob]);
    c.restore(bound(
        DeviceId(2),
        format!("sip:bob@{B1};transport=tls"),
        Peer {
            transport: crate::sip::Transport::Tls,
            ..peer(B1)
        },
    ));
    c
}

#[test]
fn an_srtp_phone_over_tls_is_offered_sipds_key_and_mediad_gets_both_keys_of_its_leg() {
    let mut c = bob_over_tls_with_srtp_required();
    let invites = place(&mut c);
    let offer = &invites[0].1;
    assert!(offer.contains(" RTP/SAVP 0 8 101\r\n"), "{offer}");
    let body = &offer[offer.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(
        header(offer, "Content-Length")[0],
        body.len().to_string(),
        "the length counts the key"
    );
    let ours = crate::sip::sdes::read(body).lines;
    assert_eq!(ours.len(), 1, "{offer}");
    // bob answers with his own key under sipd's tag.
    let answer = bob_sdp(&format!(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"
    ))
    .replace("RTP/AVP", "RTP/SAVP");
    c.handle_message(
        T0 + 10,
        Peer {
            transport: crate::sip::Transport::Tls,
            ..peer(B1)
        },
        reply(offer, 200, "b1", Some(&answer)).as_bytes(),
    );
    let ok = find(&out(&mut c), A, "SIP/2.0 200");
    assert!(
        !ok.contains("a=crypto") && ok.contains(" RTP/AVP "),
        "alice's leg is plain: {ok}"
    );
    let keys: Vec<_> = std::iter::from_fn(|| c.poll_event())
        .filter_map(|e| match e {
            Event::MediaCrypto { leg, keys, .. } => Some((leg, keys)),
            _ => None,
        })
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let (leg, Some(k)) = &keys[0] else {
        panic!("{keys:?}")
    };
    assert_eq!(*leg, Leg::B);
    assert_eq!(
        k.send, ours[0].key,
        "mediad encrypts with the key bob was given"
    );
    let theirs = crate::sip::sdes::read(&answer).lines;
    assert_eq!(k.recv, theirs[0].key, "mediad decrypts with bob's key");
}

#[test]
fn a_phone_that_must_use_srtp_is_not_rung_over_udp() {
    let mut c = setup(&[B1]);
    let bob = Device {
        srtp: crate::sip::sdes::Policy::Required,
        ..c.devices["bob"].clone()
    };
    let alice = c.devices["alice"].clone();
    c.set_devices([alice, bob]);
    let invite = |cseq: u32, auth: &str| invite_to("102", cseq, auth, SDP);
    let auth = challenged(&mut c, "102", &invite(1, ""));
    c.handle_message(T0 + 1, peer(A), invite(2, &auth).as_bytes());
    let _ = out(&mut c);
    c.media_ready(T0 + 2, "call1", Some((20_000, 20_002)));
    let o = out(&mut c);
    assert!(
        !o.iter().any(|(to, m)| to == B1 && m.starts_with("INVITE")),
        "bob's UDP contact is not rung: {o:?}"
    );
    assert!(
        o.iter()
            .any(|(to, m)| to == A && m.starts_with("SIP/2.0 480")),
        "{o:?}"
    );
}
