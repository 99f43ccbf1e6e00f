#![allow(clippy::unwrap_used, clippy::expect_used)]
//! SRTP through mediad in-process on 127.0.0.1: a phone speaking SRTP on
//! the A-leg (keys given by UpdateLeg, as sipd does) and a plain phone on
//! the B-leg hear each other, Stats says which leg speaks SRTP, and a
//! tampered packet is counted instead of relayed.

mod common;

use common::Mediad;
use std::net::SocketAddr;
use std::time::Duration;

use proto::pb::mediad::{
    AllocateRequest, Codec, Leg, LegCrypto, ReleaseRequest, StatsRequest, UpdateLegRequest,
};
use proto::sdes::{self, LegKeys, MasterKey, Suite};
use tokio::net::UdpSocket;

use mediad::relay::rtp;
use mediad::relay::srtp::SrtpContext;

fn leg(call_id: &str, leg: Leg, rtp: SocketAddr, crypto: Option<LegCrypto>) -> UpdateLegRequest {
    UpdateLegRequest {
        call_id: call_id.into(),
        leg: leg.into(),
        remote_rtp: rtp.to_string(),
        codecs: vec![Codec {
            pt: 0,
            name: "PCMU".into(),
        }],
        crypto,
        ..Default::default()
    }
}

fn packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![seq as u8; 12 + 160];
    rtp::write_header(&mut p, 0, false, seq, 160 * u32::from(seq), ssrc);
    p
}

async fn recv(sock: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("a packet within 5 s")
        .unwrap();
    buf[..n].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_srtp_phone_and_a_plain_phone_hear_each_other_and_a_tampered_packet_is_counted() {
    let m = Mediad::start().await;
    let mut c = m.client.clone();
    let call = "srtp-1@127.0.0.1";
    let ports = c
        .allocate(AllocateRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let to_a: SocketAddr = format!("127.0.0.1:{}", ports.port_a).parse().unwrap();
    let to_b: SocketAddr = format!("127.0.0.1:{}", ports.port_b).parse().unwrap();
    let phone_a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let phone_b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let keys = LegKeys {
        suite: Suite::AesCm128HmacSha1_80,
        send: MasterKey::generate().unwrap(),
        recv: MasterKey::generate().unwrap(),
    };
    // A key that is not 30 bytes is refused, naming the field.
    let mut bad = sdes::to_pb(Some(&keys));
    bad.recv_key.truncate(16);
    let a_addr = phone_a.local_addr().unwrap();
    let err = c
        .update_leg(leg(call, Leg::A, a_addr, Some(bad)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("crypto.recv_key"),
        "{}",
        err.message()
    );
    let a_crypto = Some(sdes::to_pb(Some(&keys)));
    c.update_leg(leg(call, Leg::A, a_addr, a_crypto))
        .await
        .unwrap();
    let b_addr = phone_b.local_addr().unwrap();
    c.update_leg(leg(call, Leg::B, b_addr, Some(sdes::to_pb(None))))
        .await
        .unwrap();

    // Phone A encrypts with the key mediad decrypts with, and the reverse.
    let mut a_tx = SrtpContext::new(keys.suite, &keys.recv).unwrap();
    let mut a_rx = SrtpContext::new(keys.suite, &keys.send).unwrap();
    for seq in 0..10u16 {
        let said = packet(seq, 0xaaaa);
        phone_a
            .send_to(&a_tx.protect(&said).unwrap(), to_a)
            .await
            .unwrap();
        assert_eq!(recv(&phone_b).await, said, "B hears A in the clear");
        let said = packet(1000 + seq, 0xbbbb);
        phone_b.send_to(&said, to_b).await.unwrap();
        let heard = recv(&phone_a).await;
        assert_eq!(heard.len(), said.len() + 10, "SRTP, an 80-bit tag");
        assert_eq!(a_rx.unprotect(&heard).unwrap(), said, "A decrypts B");
    }
    // A tampered packet goes nowhere; the next genuine one does.
    let mut bad = a_tx.protect(&packet(10, 0xaaaa)).unwrap();
    bad[30] ^= 0x40;
    phone_a.send_to(&bad, to_a).await.unwrap();
    let good = packet(11, 0xaaaa);
    phone_a
        .send_to(&a_tx.protect(&good).unwrap(), to_a)
        .await
        .unwrap();
    assert_eq!(recv(&phone_b).await, good, "the tampered one was dropped");

    let stats = c
        .stats(StatsRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (a, b) = (stats.a.unwrap(), stats.b.unwrap());
    assert!(a.srtp && !b.srtp);
    assert_eq!((a.dropped_auth, a.dropped), (1, 1));
    assert_eq!((a.packets_in, b.packets_out), (11, 11));
    assert_eq!((b.packets_in, a.packets_out), (10, 10));
    assert_eq!(a.bytes_out, 10 * (172 + 10), "A was sent SRTP");
    assert_eq!(b.dropped_auth, 0);
    c.release(ReleaseRequest {
        call_id: call.into(),
    })
    .await
    .unwrap();
    m.stop().await;
}
