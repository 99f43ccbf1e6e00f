#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A browser's leg through mediad in-process on 127.0.0.1, over gRPC and
//! real UDP: a stand-in browser (ICE checks written here, DTLS by dimpl as
//! the client, SRTP keyed from its export) against a plain phone on the
//! B-leg. And the attacks a browser's port invites: checks with the wrong
//! password, DTLS and SRTP from a source that never passed a check, and a
//! certificate that is not the one the SDP named.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Mediad;
use dimpl::{Config, Dtls, Output, SrtpProfile};
use mediad::relay::rtp;
use mediad::relay::srtp::SrtpContext;
use mediad::relay::stun;
use mediad::relay::webrtc::{self, fingerprint_of};
use proto::pb::mediad::{AllocateRequest, Codec, Leg, LegStats, StatsRequest, UpdateLegRequest};
use proto::webrtc::{DtlsRole, Fingerprint, IceCredentials, WebrtcLeg};
use tokio::net::UdpSocket;

const MEDIAD_ICE: (&str, &str) = ("mdUf", "mediadIcePassword0123456");
const BROWSER_ICE: (&str, &str) = ("brUf", "browserIcePassword456789");

/// A browser's connectivity check (USERNAME, USE-CANDIDATE,
/// MESSAGE-INTEGRITY with `pwd`, FINGERPRINT) in transaction `tid`.
fn check(pwd: &str, tid: u8) -> Vec<u8> {
    let user = format!("{}:{}", MEDIAD_ICE.0, BROWSER_ICE.0);
    stun::binding_request(&[tid; 12], &user, pwd, true)
}

async fn recv_within(sock: &UdpSocket, ms: u64) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    match tokio::time::timeout(Duration::from_millis(ms), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

fn packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![seq as u8; 12 + 160];
    rtp::write_header(&mut p, 0, false, seq, 160 * u32::from(seq), ssrc);
    p
}

/// The browser's side of the handshake (the DTLS client): the exported
/// keying material and profile, or `None` when mediad never finishes it.
async fn handshake(
    dtls: &mut Dtls,
    sock: &UdpSocket,
    to: SocketAddr,
) -> Option<(Vec<u8>, SrtpProfile)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 2048];
    let mut got = None;
    while Instant::now() < deadline {
        dtls.handle_timeout(Instant::now()).ok()?;
        loop {
            match dtls.poll_output(&mut buf) {
                Output::Packet(p) => {
                    sock.send_to(p, to).await.unwrap();
                }
                Output::KeyingMaterial(km, profile) => got = Some((km.to_vec(), profile)),
                Output::Timeout(_) => break,
                _ => {}
            }
        }
        if got.is_some() {
            return got;
        }
        if let Some(d) = recv_within(sock, 100).await {
            dtls.handle_packet(&d).ok()?;
        }
    }
    None
}

/// The browser's SRTP contexts (it is the DTLS client): (tx, rx).
fn browser_srtp(km: &[u8], profile: SrtpProfile) -> (SrtpContext, SrtpContext) {
    let k = webrtc::keys(km, profile, DtlsRole::Client).expect("usable keys");
    (k.tx, k.rx)
}

struct Setup {
    m: Mediad,
    call: String,
    to_a: SocketAddr,
    to_b: SocketAddr,
    browser: UdpSocket,
    phone_b: UdpSocket,
    attacker: UdpSocket,
    dtls: Dtls,
}

impl Setup {
    /// mediad's Stats of the browser's leg.
    async fn leg_a(&self) -> LegStats {
        let mut client = self.m.client.clone();
        let call_id = self.call.clone();
        let stats = client.stats(StatsRequest { call_id }).await.unwrap();
        stats.into_inner().a.unwrap()
    }
}

/// A call whose A-leg is a browser whose SDP named `sdp_fingerprint`;
/// the browser's real certificate is `cert`.
async fn setup(cert: dimpl::DtlsCertificate, sdp_fingerprint: Fingerprint) -> Setup {
    let m = Mediad::start().await;
    let mut c = m.client.clone();
    let call = "webrtc-1@127.0.0.1".to_string();
    let ports = c
        .allocate(AllocateRequest {
            call_id: call.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mediad_fp = Fingerprint::parse(&ports.dtls_fingerprint).expect("a sha-256 fingerprint");
    assert_ne!(mediad_fp, sdp_fingerprint);
    let to_a: SocketAddr = format!("127.0.0.1:{}", ports.port_a).parse().unwrap();
    let to_b: SocketAddr = format!("127.0.0.1:{}", ports.port_b).parse().unwrap();
    let browser = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let phone_b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let webrtc = WebrtcLeg {
        local: IceCredentials::parse(MEDIAD_ICE.0, MEDIAD_ICE.1).unwrap(),
        remote: IceCredentials::parse(BROWSER_ICE.0, BROWSER_ICE.1).unwrap(),
        remote_fingerprint: sdp_fingerprint,
        role: DtlsRole::Server,
        opus: None,
    };
    let codecs = vec![Codec {
        pt: 0,
        name: "PCMU".into(),
    }];
    // As sipd does: the crypto, then the SDP's (meaningless) address.
    c.update_leg(UpdateLegRequest {
        call_id: call.clone(),
        leg: Leg::A.into(),
        crypto: Some(webrtc.to_pb()),
        ..Default::default()
    })
    .await
    .unwrap();
    c.update_leg(UpdateLegRequest {
        call_id: call.clone(),
        leg: Leg::A.into(),
        remote_rtp: "127.0.0.1:9".into(),
        signal_ip: "127.0.0.1".into(),
        codecs: codecs.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.update_leg(UpdateLegRequest {
        call_id: call.clone(),
        leg: Leg::B.into(),
        remote_rtp: phone_b.local_addr().unwrap().to_string(),
        codecs,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut dtls = Dtls::new_12(Arc::new(Config::default()), cert, Instant::now());
    dtls.set_active(true);
    Setup {
        m,
        call,
        to_a,
        to_b,
        browser,
        phone_b,
        attacker,
        dtls,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_checks_shakes_hands_and_talks_srtp_while_strangers_get_nothing() {
    let cert = dimpl::certificate::generate_self_signed_certificate().unwrap();
    let fp = fingerprint_of(&cert.certificate);
    let mut s = setup(cert, fp).await;

    // A check signed with another password gets no answer, and the
    // stranger's DTLS and RTP go nowhere either.
    s.attacker
        .send_to(&check("not-the-password-at-all", 1), s.to_a)
        .await
        .unwrap();
    assert_eq!(
        recv_within(&s.attacker, 300).await,
        None,
        "a forged check is not answered"
    );
    let mut stranger = Dtls::new_12(
        Arc::new(Config::default()),
        dimpl::certificate::generate_self_signed_certificate().unwrap(),
        Instant::now(),
    );
    stranger.set_active(true);
    assert_eq!(handshake(&mut stranger, &s.attacker, s.to_a).await, None);
    s.attacker
        .send_to(&packet(1, 0x5555), s.to_a)
        .await
        .unwrap();
    assert_eq!(
        recv_within(&s.phone_b, 300).await,
        None,
        "a stranger's RTP is not relayed"
    );

    // The browser's check is answered (a Binding success, same transaction).
    s.browser
        .send_to(&check(MEDIAD_ICE.1, 7), s.to_a)
        .await
        .unwrap();
    let answer = recv_within(&s.browser, 2000).await.expect("an ICE answer");
    assert_eq!(answer[..2], [0x01, 0x01]);
    assert_eq!(answer[8..20], [7u8; 12]);
    let (km, profile) = handshake(&mut s.dtls, &s.browser, s.to_a)
        .await
        .expect("the handshake with mediad ends");
    let (mut tx, mut rx) = browser_srtp(&km, profile);

    for seq in 0..10u16 {
        let said = packet(seq, 0xaaaa);
        s.browser
            .send_to(&tx.protect(&said).unwrap(), s.to_a)
            .await
            .unwrap();
        let heard = recv_within(&s.phone_b, 2000)
            .await
            .expect("B hears the browser");
        assert_eq!(heard, said, "in the clear on the plain leg");
        let said = packet(500 + seq, 0xbbbb);
        s.phone_b.send_to(&said, s.to_b).await.unwrap();
        let heard = recv_within(&s.browser, 2000)
            .await
            .expect("the browser hears B");
        assert_eq!(rx.unprotect(&heard).unwrap(), said, "SRTP to the browser");
    }
    // The browser's own SRTP, replayed by a stranger, goes nowhere.
    let replay = tx.protect(&packet(10, 0xaaaa)).unwrap();
    s.attacker.send_to(&replay, s.to_a).await.unwrap();
    assert_eq!(recv_within(&s.phone_b, 300).await, None);

    let a = s.leg_a().await;
    assert!(a.srtp, "the browser's leg speaks SRTP");
    assert_eq!(a.latched_addr, s.browser.local_addr().unwrap().to_string());
    assert_eq!((a.packets_in, a.packets_out), (10, 10));
    assert!(
        a.dropped_foreign >= 3,
        "the stranger's check, DTLS and RTP: {a:?}"
    );
    s.m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_other_than_the_sdps_gets_no_keys_and_no_audio_through() {
    let cert = dimpl::certificate::generate_self_signed_certificate().unwrap();
    // The SDP named some other certificate (a man in the middle).
    let mut s = setup(cert, Fingerprint([0x42; 32])).await;
    s.browser
        .send_to(&check(MEDIAD_ICE.1, 9), s.to_a)
        .await
        .unwrap();
    assert!(
        recv_within(&s.browser, 2000).await.is_some(),
        "the check itself is fine"
    );
    let keys = handshake(&mut s.dtls, &s.browser, s.to_a).await;
    if let Some((km, profile)) = keys {
        // The client may finish before mediad's verdict: its audio still
        // goes nowhere.
        let (mut tx, _) = browser_srtp(&km, profile);
        s.browser
            .send_to(&tx.protect(&packet(1, 0xaaaa)).unwrap(), s.to_a)
            .await
            .unwrap();
    }
    assert_eq!(
        recv_within(&s.phone_b, 500).await,
        None,
        "nothing reaches the other leg"
    );
    s.phone_b.send_to(&packet(2, 0xbbbb), s.to_b).await.unwrap();
    assert_eq!(
        recv_within(&s.browser, 500).await,
        None,
        "nothing reaches the browser"
    );
    let a = s.leg_a().await;
    assert!(!a.srtp && a.packets_in == 0, "{a:?}");
    s.m.stop().await;
}
