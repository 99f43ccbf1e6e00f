//! The stand-in's RTP, as a carrier that trusts SDP: it sends to the
//! address and port the other side's SDP gave, never to where packets come
//! from (no latching), so an address the stand-in cannot reach is a silent
//! call, as it is with Twilio. What it sends is a PCMU tone of
//! [`TONE_HZ`]; what it hears is kept (mu-law payloads) so a test can tell
//! by frequency whether the other party's audio arrived.

use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdp};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use mediad::relay::srtp::SrtpContext;

use crate::audio::PcmuTone;

/// The far (PSTN) party's voice: a tone no phone in the tests uses.
pub const TONE_HZ: f64 = 1500.0;

/// What one side of a call did on RTP.
#[derive(Debug, Clone, Default)]
pub struct Talked {
    pub sent: u32,
    pub received: u32,
    /// PCMU payloads received, in arrival order.
    pub heard: Vec<u8>,
}

/// The address this host uses to reach `peer` (the route's source).
pub fn local_ip_towards(peer: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = StdUdp::bind(any)?;
    probe.connect(peer)?;
    Ok(probe.local_addr()?.ip())
}

/// The SRTP contexts of a call on a secure trunk (SDES keys, RFC 4568):
/// the trunk's own key for what it sends, the other side's for what it
/// hears.
pub struct Srtp {
    pub send: SrtpContext,
    pub recv: SrtpContext,
}

/// Sends the tone to `to` (the SDP address; `None`: nothing usable was
/// given, so nothing is sent) every 20 ms for `dur` or until `stop`,
/// keeping what arrives from anywhere. With `srtp`, what is sent is
/// encrypted and only what authenticates is kept.
pub async fn talk(
    rtp: &UdpSocket,
    to: Option<SocketAddr>,
    dur: Duration,
    stop: Option<&CancellationToken>,
    mut srtp: Option<Srtp>,
) -> std::io::Result<Talked> {
    let mut t = Talked::default();
    let end = Instant::now() + dur;
    let ssrc: u32 = rand::random();
    let mut seq: u16 = rand::random();
    let mut ts: u32 = rand::random();
    let mut tone = PcmuTone::new(TONE_HZ, 0.5);
    let mut buf = [0u8; 2048];
    while Instant::now() < end && !stop.is_some_and(|s| s.is_cancelled()) {
        if let Some(to) = to {
            let mut pkt = Vec::with_capacity(172);
            pkt.extend_from_slice(&[0x80, 0x00]);
            pkt.extend_from_slice(&seq.to_be_bytes());
            pkt.extend_from_slice(&ts.to_be_bytes());
            pkt.extend_from_slice(&ssrc.to_be_bytes());
            pkt.extend(tone.next_frame());
            if let Some(s) = srtp.as_mut() {
                pkt = s.send.protect(&pkt).map_err(std::io::Error::other)?;
            }
            // A send error (no route) is the silent call this models.
            if rtp.send_to(&pkt, to).await.is_ok() {
                t.sent += 1;
            }
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
        }
        let tick = Instant::now() + Duration::from_millis(20);
        while let Ok(Ok(n)) = tokio::time::timeout(
            tick.saturating_duration_since(Instant::now()),
            rtp.recv(&mut buf),
        )
        .await
        {
            let clear;
            let pkt = match srtp.as_mut() {
                // A packet that does not authenticate was not heard.
                Some(s) => match s.recv.unprotect(&buf[..n]) {
                    Ok(p) => {
                        clear = p;
                        &clear[..]
                    }
                    Err(_) => continue,
                },
                None => &buf[..n],
            };
            t.received += 1;
            if let Some(p) = pcmu_payload(pkt) {
                t.heard.extend_from_slice(p);
            }
        }
    }
    Ok(t)
}

/// The payload of an RTP packet carrying PCMU (payload type 0), after the
/// CSRCs and any header extension (RFC 3550 section 5.1).
pub fn pcmu_payload(pkt: &[u8]) -> Option<&[u8]> {
    if pkt.len() < 12 || pkt[0] >> 6 != 2 || pkt[1] & 0x7f != 0 {
        return None;
    }
    let mut at = 12 + usize::from(pkt[0] & 0x0f) * 4;
    if pkt[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*pkt.get(at + 2)?, *pkt.get(at + 3)?]);
        at += 4 + usize::from(words) * 4;
    }
    let mut end = pkt.len();
    if pkt[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*pkt.last()?))?;
    }
    pkt.get(at..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pcmu_payloads_are_taken_past_csrcs_extensions_and_padding() {
        let mut p = vec![0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        p.extend([7u8; 4]);
        assert_eq!(pcmu_payload(&p), Some(&[7u8; 4][..]));
        // One CSRC, an extension of one word, two bytes of padding.
        let mut q = vec![0xb1, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        q.extend([9, 9, 9, 9]); // CSRC
        q.extend([0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension
        q.extend([5, 5, 0, 2]);
        assert_eq!(pcmu_payload(&q), Some(&[5u8, 5][..]));
        let mut dtmf = p.clone();
        dtmf[1] = 101;
        assert_eq!(pcmu_payload(&dtmf), None);
        assert_eq!(pcmu_payload(&p[..8]), None);
    }

    #[tokio::test]
    async fn the_tone_goes_to_the_given_address_not_back_to_the_sender() {
        let me = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sdp_target = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Someone else sends to us first: a latching peer would answer them.
        sender
            .send_to(
                &[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff],
                me.local_addr().unwrap(),
            )
            .await
            .unwrap();
        let to = sdp_target.local_addr().unwrap();
        let t = talk(&me, Some(to), Duration::from_millis(200), None, None)
            .await
            .unwrap();
        assert!(t.sent >= 5 && t.received == 1, "{t:?}");
        let mut buf = [0u8; 512];
        let n = sdp_target.try_recv(&mut buf).unwrap();
        assert_eq!(n, 172);
        assert!(sender.try_recv(&mut buf).is_err(), "latched to the sender");
    }
}
