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
