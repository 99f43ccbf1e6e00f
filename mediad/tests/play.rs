#![allow(clippy::unwrap_used, clippy::expect_used)]
//! mediad answering a caller itself, in-process on 127.0.0.1: a phone's
//! socket hears the record tone and the spoken greeting as RTP, then talks;
//! Release hands back the voicemail, read back by frequency. And an
//! announcement to the callee of a relayed call, heard once in place of
//! the caller. Needs espeak-ng (scripts/install-deps.sh).

mod common;

use common::Mediad;
use std::f64::consts::PI;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::pb::mediad::play_item::What;
use proto::pb::mediad::{
    AllocateRequest, Codec, EventsRequest, Leg, MediaEvent, MediaEventKind, PlayItem, PlayRequest,
    ReleaseRequest, UpdateLegRequest,
};
use tokio::net::UdpSocket;

use mediad::relay::{g711, rtp};

const GREETING: &str = "Please leave a message after the tone.";

impl Mediad {
    async fn events(&self) -> tonic::Streaming<MediaEvent> {
        let mut c = self.client.clone();
        c.events(EventsRequest {}).await.unwrap().into_inner()
    }

    /// Allocates `call` and names `phone` as its A-leg with PCMU; returns
    /// port_a's address.
    async fn call_from(&self, call: &str, phone: &UdpSocket) -> SocketAddr {
        let mut c = self.client.clone();
        let ports = c
            .allocate(AllocateRequest {
                call_id: call.into(),
            })
            .await
            .unwrap()
            .into_inner();
        c.update_leg(UpdateLegRequest {
            call_id: call.into(),
            leg: Leg::A.into(),
            remote_rtp: phone.local_addr().unwrap().to_string(),
            codecs: vec![Codec {
                pt: 0,
                name: "PCMU".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
        format!("127.0.0.1:{}", ports.port_a).parse().unwrap()
    }

    /// Allocates `call` and names `a` (PCMU) and `b` (PCMA first, then
    /// PCMU) as its legs; returns port_a's and port_b's addresses.
    async fn relayed(&self, call: &str, a: &UdpSocket, b: &UdpSocket) -> (SocketAddr, SocketAddr) {
        let port_a = self.call_from(call, a).await;
        let mut c = self.client.clone();
        let port_b = c
            .allocate(AllocateRequest {
                call_id: call.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .port_b;
        let codec = |pt: u32, name: &str| Codec {
            pt,
            name: name.into(),
        };
        c.update_leg(UpdateLegRequest {
            call_id: call.into(),
            leg: Leg::B.into(),
            remote_rtp: b.local_addr().unwrap().to_string(),
            codecs: vec![codec(8, "PCMA"), codec(0, "PCMU")],
            established: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
        (port_a, format!("127.0.0.1:{port_b}").parse().unwrap())
    }
}

fn play(call: &str, items: Vec<What>, record_after: bool, max: u32) -> PlayRequest {
    PlayRequest {
        call_id: call.into(),
        items: items
            .into_iter()
            .map(|w| PlayItem { what: Some(w) })
            .collect(),
        record_after,
        max_record_secs: max,
        silence_secs: 0,
        leg: Leg::Unspecified.into(),
    }
}

async fn next_event(
    events: &mut tonic::Streaming<MediaEvent>,
    call: &str,
    kind: MediaEventKind,
) -> MediaEvent {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ev = events.message().await.unwrap().expect("stream open");
            if ev.call_id == call && ev.kind() == kind {
                return ev;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} event for {call}"))
}

/// Every RTP packet arriving on `sock` until `quiet` passes without one.
async fn receive(sock: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 2048];
    let mut packets = Vec::new();
    while let Ok(Ok((n, _))) = tokio::time::timeout(quiet, sock.recv_from(&mut buf)).await {
        packets.push(buf[..n].to_vec());
    }
    packets
}

/// Like [`receive`], with each packet's source.
async fn receive_from(sock: &UdpSocket, quiet: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut buf = [0u8; 2048];
    let mut packets = Vec::new();
    while let Ok(Ok((n, src))) = tokio::time::timeout(quiet, sock.recv_from(&mut buf)).await {
        packets.push((src, buf[..n].to_vec()));
    }
    packets
}

/// Sends `count` 20 ms PCMU packets of a `freq` tone, paced in real time.
async fn talk(sock: &UdpSocket, to: SocketAddr, freq: f64, count: u16) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for seq in 0..count {
        tick.tick().await;
        let mut p = vec![0u8; 12 + 160];
        rtp::write_header(&mut p, 0, seq == 0, seq, 160 * u32::from(seq), 0xca11);
        for i in 0..160 {
            let n = f64::from(seq) * 160.0 + i as f64;
            let s = (8000.0 * (2.0 * PI * freq * n / 8000.0).sin()) as i16;
            p[12 + i] = g711::ulaw_encode(s);
        }
        sock.send_to(&p, to).await.unwrap();
    }
}

fn goertzel(samples: &[i16], freq: f64) -> f64 {
    let k = 2.0 * (2.0 * PI * freq / 8000.0).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s = f64::from(x) + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - k * s1 * s2
}

fn rms(s: &[i16]) -> f64 {
    (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
}

/// Checks the RTP framing of what mediad played; returns the audio.
fn check_stream(packets: &[Vec<u8>]) -> Vec<i16> {
    let headers: Vec<_> = packets
        .iter()
        .map(|p| match rtp::parse(p) {
            rtp::Datagram::Rtp(h) => h,
            other => panic!("not RTP: {other:?}"),
        })
        .collect();
    let first = headers[0];
    for (i, h) in headers.iter().enumerate() {
        let n = i as u16;
        assert_eq!(h.payload_type, 0, "PCMU, as the SDP said");
        assert_eq!(h.ssrc, first.ssrc, "one SSRC");
        assert_eq!(h.marker, i == 0, "marker on the first packet only ({i})");
        assert_eq!(
            h.seq,
            first.seq.wrapping_add(n),
            "packet {i}: in order, none lost"
        );
        assert_eq!(h.timestamp, first.timestamp.wrapping_add(160 * i as u32));
        assert_eq!(h.payload_end - h.payload_start, 160, "20 ms");
    }
    packets
        .iter()
        .zip(&headers)
        .flat_map(|(p, h)| {
            h.payload(p)
                .iter()
                .map(|&b| g711::ULAW_TO_LINEAR[usize::from(b)])
        })
        .collect()
}

fn read_mono(path: &std::path::Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 8000, 16)
    );
    r.samples::<i16>().map(Result::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hears_the_tone_and_the_greeting_then_leaves_a_message() {
    let m = Mediad::start().await;
    let mut c = m.client.clone();
    let mut events = m.events().await;
    let call = "vm-1@127.0.0.1";
    let phone = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let port_a = m.call_from(call, &phone).await;

    let r = c
        .play(play(
            call,
            vec![What::Beep(true), What::Text(GREETING.into())],
            true,
            0,
        ))
        .await;
    if let Err(e) = &r
        && e.code() == tonic::Code::FailedPrecondition
    {
        panic!(
            "{}: install espeak-ng (scripts/install-deps.sh)",
            e.message()
        );
    }
    r.unwrap();
    let heard = {
        let s = phone.clone();
        tokio::spawn(async move { receive(&s, Duration::from_millis(700)).await })
    };
    let done = next_event(&mut events, call, MediaEventKind::PlayDone).await;
    assert_eq!(done.leg(), Leg::A);
    let packets = heard.await.unwrap();
    let audio = check_stream(&packets);

    // The tone: 0.5 s of 1 kHz first.
    let (tone, speech) = audio.split_at(4000);
    let p1k = goertzel(tone, 1000.0);
    for other in [440.0, 800.0, 1200.0] {
        assert!(p1k > 100.0 * goertzel(tone, other), "1 kHz vs {other} Hz");
    }
    // Then about two seconds of speech: voiced, and not the tone.
    let secs = speech.len() as f64 / 8000.0;
    assert!((1.0..6.0).contains(&secs), "{secs} s of speech");
    assert!(rms(speech) > 300.0, "speech level {}", rms(speech));
    let loud_frames = speech.chunks(160).filter(|f| rms(f) > 500.0).count();
    assert!(loud_frames > 25, "{loud_frames} voiced frames");
    assert!(goertzel(speech, 1000.0) < p1k / 10.0);

    // The caller speaks for 2 s: 440 Hz.
    talk(&phone, port_a, 440.0, 100).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = c
        .release(ReleaseRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(
        stats.recording_path,
        "voicemails/incoming/vm-1_127.0.0.1.wav"
    );
    let a = stats.a.unwrap();
    assert_eq!(
        a.packets_out,
        packets.len() as u64,
        "every played packet counted"
    );
    assert_eq!(a.packets_in, 100);
    assert_eq!(a.latched_addr, phone.local_addr().unwrap().to_string());
    let b = stats.b.unwrap();
    assert_eq!((b.packets_in, b.packets_out), (0, 0), "nothing relayed");

    let msg = read_mono(&m.dir.path().join(&stats.recording_path));
    let secs = msg.len() as f64 / 8000.0;
    assert!((1.95..2.1).contains(&secs), "{secs} s recorded");
    let p440 = goertzel(&msg[400..15_600], 440.0);
    for other in [880.0, 1000.0, 300.0] {
        assert!(
            p440 > 100.0 * goertzel(&msg[400..15_600], other),
            "440 vs {other} Hz"
        );
    }
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_refuses_unknown_calls_missing_files_and_a_leg_without_codecs() {
    let m = Mediad::start().await;
    let mut c = m.client.clone();
    let e = c
        .play(play("nobody", vec![What::Beep(true)], false, 0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    m.call_from("vm-2", &phone).await;
    let e = c
        .play(play(
            "vm-2",
            vec![What::Beep(true), What::File("prompts/nope.wav".into())],
            false,
            0,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("prompts/nope.wav"), "{}", e.message());

    c.allocate(AllocateRequest {
        call_id: "vm-3".into(),
    })
    .await
    .unwrap();
    let e = c
        .play(play("vm-3", vec![What::Beep(true)], false, 0))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        tonic::Code::FailedPrecondition,
        "no SDP for A yet"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_stops_at_max_record_secs_and_says_so() {
    let m = Mediad::start().await;
    let mut c = m.client.clone();
    let mut events = m.events().await;
    let call = "vm-limit";
    let phone = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let port_a = m.call_from(call, &phone).await;
    c.play(play(call, vec![What::Beep(true)], true, 1))
        .await
        .unwrap();
    next_event(&mut events, call, MediaEventKind::PlayDone).await;
    let talking = {
        let s = phone.clone();
        tokio::spawn(async move { talk(&s, port_a, 440.0, 100).await })
    };
    let limit = next_event(&mut events, call, MediaEventKind::RecordLimit).await;
    assert_eq!((limit.leg(), limit.detail.as_str()), (Leg::A, "1"));
    talking.await.unwrap();
    let stats = c
        .release(ReleaseRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let msg = read_mono(&m.dir.path().join(&stats.recording_path));
    let secs = msg.len() as f64 / 8000.0;
    // From the caller's first packet (a moment after play_done) to the limit.
    assert!(
        (0.5..=1.0).contains(&secs),
        "{secs} s recorded, at most 1 s"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_b_leg_hears_an_announcement_once_then_a_again_while_a_hears_b_all_along() {
    let m = Mediad::start().await;
    let mut c = m.client.clone();
    let mut events = m.events().await;
    let call = "park-1";
    let a = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let (port_a, port_b) = m.relayed(call, &a, &b).await;
    let listen = |s: &Arc<UdpSocket>| {
        let s = s.clone();
        tokio::spawn(async move { receive_from(&s, Duration::from_secs(1)).await })
    };
    let (heard_a, heard_b) = (listen(&a), listen(&b));
    // A talks for 1.5 s; 200 ms in, B is announced the beep, and B talks
    // while it hears it.
    let talking = {
        let s = a.clone();
        tokio::spawn(async move { talk(&s, port_a, 440.0, 75).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.play(PlayRequest {
        leg: Leg::B.into(),
        ..play(call, vec![What::Beep(true)], false, 0)
    })
    .await
    .unwrap();
    talk(&b, port_b, 880.0, 10).await;
    let done = next_event(&mut events, call, MediaEventKind::PlayDone).await;
    assert_eq!(done.leg(), Leg::B);
    talking.await.unwrap();
    let to_b = heard_b.await.unwrap();
    let to_a = heard_a.await.unwrap();

    assert_eq!(to_a.len(), 10, "A heard B throughout");
    assert!(to_a.iter().all(|(src, _)| *src == port_a));
    assert!(
        to_b.iter().all(|(src, _)| *src == port_b),
        "all from port_b"
    );
    let packets: Vec<Vec<u8>> = to_b.into_iter().map(|(_, p)| p).collect();
    let (before, beep, after) = split_announcement(&packets);
    assert!(
        before > 0 && after > 10,
        "A before ({before}) and after ({after})"
    );
    let p1k = goertzel(&beep, 1000.0);
    for other in [440.0, 880.0, 1200.0] {
        assert!(p1k > 100.0 * goertzel(&beep, other), "1 kHz vs {other} Hz");
    }

    let stats = c
        .release(ReleaseRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let (sa, sb) = (stats.a.unwrap(), stats.b.unwrap());
    assert_eq!(sb.packets_out, packets.len() as u64);
    assert_eq!((sa.packets_in, sa.packets_out, sb.packets_in), (75, 10, 10));
    m.stop().await;
}

/// Checks that B heard one RTP stream: A's packets (PCMU), the 25 packets
/// of the beep (PCMA, B's first codec), then A's again, in A's SSRC with
/// unbroken numbering and the marker opening each part. Returns how many
/// of A's packets came before and after, and the beep's audio.
fn split_announcement(packets: &[Vec<u8>]) -> (usize, Vec<i16>, usize) {
    let headers: Vec<_> = packets
        .iter()
        .map(|p| match rtp::parse(p) {
            rtp::Datagram::Rtp(h) => h,
            other => panic!("not RTP: {other:?}"),
        })
        .collect();
    let pts: Vec<u8> = headers.iter().map(|h| h.payload_type).collect();
    let before = pts.iter().take_while(|&&pt| pt == 0).count();
    let beep = pts[before..].iter().take_while(|&&pt| pt == 8).count();
    assert_eq!(beep, 25, "the 0.5 s beep, once: {pts:?}");
    let after = &pts[before + beep..];
    assert!(after.iter().all(|&pt| pt == 0), "then A only: {pts:?}");
    let first = headers[0];
    for (i, h) in headers.iter().enumerate() {
        assert_eq!(h.ssrc, 0xca11, "A's stream goes on ({i})");
        assert_eq!(h.seq, first.seq.wrapping_add(i as u16), "packet {i}");
        let opens = i == 0 || i == before || i == before + beep;
        assert_eq!(h.marker, opens, "marker of packet {i}");
        if i > 0 {
            let step = h.timestamp.wrapping_sub(headers[i - 1].timestamp);
            assert!((160..8000).contains(&step), "packet {i}: timestamp +{step}");
        }
    }
    let audio = packets[before..before + beep]
        .iter()
        .zip(&headers[before..])
        .flat_map(|(p, h)| {
            h.payload(p)
                .iter()
                .map(|&x| g711::ALAW_TO_LINEAR[usize::from(x)])
        })
        .collect();
    (before, audio, after.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_to_b_refuses_record_after_an_unknown_leg_and_a_b_leg_without_codecs() {
    let m = Mediad::start().await;
    let mut c = m.client.clone();
    // A leg number the contract does not have is refused like a bad name.
    let to = |call: &str, leg: i32, record_after: bool| PlayRequest {
        leg,
        ..play(call, vec![What::Beep(true)], record_after, 0)
    };
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    m.relayed("park-2", &a, &b).await;
    for (req, code) in [
        (
            to("park-2", Leg::B.into(), true),
            tonic::Code::InvalidArgument,
        ),
        (to("park-2", 7, false), tonic::Code::InvalidArgument),
        (to("nobody", Leg::B.into(), false), tonic::Code::NotFound),
    ] {
        let leg = req.leg;
        let e = c.play(req).await.unwrap_err();
        assert_eq!(e.code(), code, "leg {leg:?}: {e:?}");
    }
    m.call_from("park-3", &a).await;
    let e = c
        .play(to("park-3", Leg::B.into(), false))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        tonic::Code::FailedPrecondition,
        "no SDP for B yet"
    );
    c.play(to("park-2", Leg::B.into(), false)).await.unwrap();
    m.stop().await;
}
