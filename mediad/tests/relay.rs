#![allow(clippy::unwrap_used, clippy::expect_used)]
//! mediad in-process on 127.0.0.1: gRPC allocation, UDP relay with
//! latching, recording read back by frequency, timeouts, a full disk.

use std::f64::consts::PI;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use proto::grpc::AuthChannel;
use proto::pb::mediad::mediad_client::MediadClient;
use proto::pb::mediad::{
    AllocateRequest, Codec, EventsRequest, Leg, MediaEvent, MediaEventKind, RecordRequest,
    ReleaseRequest, StatsRequest, UpdateLegRequest,
};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use mediad::relay::{dtmf, g711, rtp};

struct Mediad {
    client: MediadClient<AuthChannel>,
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
    pool: proto::db::SqlitePool,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Mediad {
    async fn start(settings: &[(&str, &str)], rtp_ports: u16) -> Self {
        Self::start_with(settings, rtp_ports, 3600).await
    }

    async fn start_with(settings: &[(&str, &str)], rtp_ports: u16, orphan_secs: u64) -> Self {
        // Nobody listens for notifyd unless a test says where it is.
        Self::start_full(settings, rtp_ports, orphan_secs, "127.0.0.1:9").await
    }

    async fn start_full(
        settings: &[(&str, &str)],
        rtp_ports: u16,
        orphan_secs: u64,
        notifyd: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        for (k, v) in settings {
            proto::settings::store(&pool, k, v).await.unwrap();
        }
        let base: u16 = rand::random_range(10_000..16_000) * 2;
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = grpc.local_addr().unwrap();
        let cfg = mediad::Config {
            common: proto::daemon::CommonArgs {
                data_dir: dir.path().to_owned(),
                log_format: "text".into(),
                health: false,
            },
            grpc: addr.to_string(),
            rtp_ports: format!("{base}-{}", base + rtp_ports - 1),
            rtp_bind: "127.0.0.1".into(),
            orphan_secs,
            media_threads: 1,
            notifyd_grpc: notifyd.to_owned(),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(mediad::run(cfg, mediad::Listeners { grpc }, stop.clone()));
        // mediad and this client share the data dir, hence the secret.
        let secret = proto::grpc::Secret::load_or_create(dir.path()).unwrap();
        let ch = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let client = MediadClient::new(proto::grpc::authed(ch, &secret));
        Self {
            client,
            addr,
            dir,
            pool,
            stop,
            task,
        }
    }

    async fn events(&self) -> tonic::Streaming<MediaEvent> {
        self.client
            .clone()
            .events(EventsRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

async fn next_event(
    events: &mut tonic::Streaming<MediaEvent>,
    call_id: &str,
    kind: MediaEventKind,
) -> MediaEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = events.message().await.unwrap().expect("stream open");
            if ev.call_id == call_id && ev.kind() == kind {
                return ev;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} event for {call_id}"))
}

fn leg(call_id: &str, leg: Leg, rtp: SocketAddr) -> UpdateLegRequest {
    UpdateLegRequest {
        call_id: call_id.into(),
        leg: leg.into(),
        remote_rtp: rtp.to_string(),
        codecs: vec![
            Codec {
                pt: 0,
                name: "PCMU".into(),
            },
            Codec {
                pt: 8,
                name: "PCMA".into(),
            },
            Codec {
                pt: 101,
                name: "telephone-event".into(),
            },
        ],
        ..Default::default()
    }
}

/// One 20 ms G.711 packet of a continuous tone.
fn tone_packet(pt: u8, seq: u16, ssrc: u32, freq: f64) -> Vec<u8> {
    let mut p = vec![0u8; 12 + 160];
    rtp::write_header(&mut p, pt, seq == 0, seq, 160 * u32::from(seq), ssrc);
    for i in 0..160 {
        let n = f64::from(seq) * 160.0 + i as f64;
        let s = (8000.0 * (2.0 * PI * freq * n / 8000.0 + 0.3).sin()) as i16;
        p[12 + i] = if pt == 0 {
            g711::ulaw_encode(s)
        } else {
            g711::alaw_encode(s)
        };
    }
    p
}

/// Sends 20 ms packets `0..count` paced in real time, skipping `skip`.
async fn talk(
    sock: &UdpSocket,
    to: SocketAddr,
    pt: u8,
    ssrc: u32,
    freq: f64,
    count: u16,
    skip: std::ops::Range<u16>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for seq in 0..count {
        tick.tick().await;
        if !skip.contains(&seq) {
            sock.send_to(&tone_packet(pt, seq, ssrc, freq), to)
                .await
                .unwrap();
        }
    }
}

/// Counts packets arriving on `sock` until 300 ms of quiet; checks SSRC.
async fn listen(sock: &UdpSocket, ssrc: u32) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while let Ok(Ok((len, _))) =
        tokio::time::timeout(Duration::from_millis(600), sock.recv_from(&mut buf)).await
    {
        assert_eq!(len, 172);
        assert_eq!(u32::from_be_bytes(buf[8..12].try_into().unwrap()), ssrc);
        n += 1;
    }
    n
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

fn longest_zero_run(s: &[i16]) -> usize {
    let (mut best, mut cur) = (0, 0);
    for &x in s {
        cur = if x == 0 { cur + 1 } else { 0 };
        best = best.max(cur);
    }
    best
}

fn read_wav(path: &Path) -> (Vec<i16>, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap();
    assert_eq!(r.spec().channels, 2);
    assert_eq!(r.spec().sample_rate, 8000);
    assert_eq!(r.spec().bits_per_sample, 16);
    let s: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
    (
        s.iter().step_by(2).copied().collect(),
        s.iter().skip(1).step_by(2).copied().collect(),
    )
}

/// The non-silent span of a channel.
fn trimmed(s: &[i16]) -> &[i16] {
    let first = s.iter().position(|&x| x != 0).expect("channel has audio");
    let last = s.iter().rposition(|&x| x != 0).unwrap();
    &s[first..=last]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phones_hear_each_other_through_latching_and_the_recording_has_each_party_on_its_own_channel()
 {
    let m = Mediad::start(&[], 40).await;
    let mut c = m.client.clone();
    let mut events = m.events().await;
    let call = "call-1@127.0.0.1";
    let ports = c
        .allocate(AllocateRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let again = c
        .allocate(AllocateRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (ports.port_a, ports.port_b),
        (again.port_a, again.port_b),
        "allocate is idempotent"
    );
    let to_a: SocketAddr = format!("127.0.0.1:{}", ports.port_a).parse().unwrap();
    let to_b: SocketAddr = format!("127.0.0.1:{}", ports.port_b).parse().unwrap();

    // Phone A announces one address in SDP but sends from another (NAT).
    let announced = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let phone_a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let phone_b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.update_leg(leg(call, Leg::A, announced.local_addr().unwrap()))
        .await
        .unwrap();
    c.update_leg(leg(call, Leg::B, phone_b.local_addr().unwrap()))
        .await
        .unwrap();
    let rec = c
        .record(RecordRequest {
            call_id: call.into(),
            enabled: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(rec.ok, "{}", rec.error);
    assert!(
        rec.path.starts_with("recordings/") && rec.path.ends_with("call-1_127.0.0.1.wav"),
        "{}",
        rec.path
    );

    let phone_a = std::sync::Arc::new(phone_a);
    let phone_b = std::sync::Arc::new(phone_b);
    // A: 1 s of 440 Hz mu-law, packets 20..30 lost. B: 880 Hz A-law,
    // starting once A has latched.
    let a_send = {
        let s = phone_a.clone();
        tokio::spawn(async move { talk(&s, to_a, 0, 0xaaaa, 440.0, 50, 20..30).await })
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    let b_send = {
        let s = phone_b.clone();
        tokio::spawn(async move { talk(&s, to_b, 8, 0xbbbb, 880.0, 50, 0..0).await })
    };
    let a_hears = {
        let s = phone_a.clone();
        tokio::spawn(async move { listen(&s, 0xbbbb).await })
    };
    let b_hears = {
        let s = phone_b.clone();
        tokio::spawn(async move { listen(&s, 0xaaaa).await })
    };
    let announced_hears = tokio::spawn(async move { listen(&announced, 0xbbbb).await });
    a_send.await.unwrap();
    b_send.await.unwrap();
    assert_eq!(
        a_hears.await.unwrap(),
        50,
        "B -> A reaches A's real (latched) address"
    );
    assert_eq!(b_hears.await.unwrap(), 40, "A -> B: all 40 packets A sent");
    assert_eq!(
        announced_hears.await.unwrap(),
        0,
        "nothing went to the stale SDP address"
    );

    // RFC 4733 "*1" from A.
    for (seq, ev, ts) in [
        (50u16, 10u8, 8000u32),
        (51, 10, 8000),
        (52, 1, 8480),
        (53, 1, 8480),
    ] {
        let mut p = vec![0u8; 16];
        rtp::write_header(&mut p, 101, seq == 50, seq, ts, 0xaaaa);
        p[12..].copy_from_slice(&dtmf::payload(ev, seq % 2 == 1, 160));
        phone_a.send_to(&p, to_a).await.unwrap();
    }
    let star = next_event(&mut events, call, MediaEventKind::Dtmf).await;
    assert_eq!((star.detail.as_str(), star.leg()), ("*", Leg::A));
    assert_eq!(
        next_event(&mut events, call, MediaEventKind::Dtmf)
            .await
            .detail,
        "1"
    );

    // RTCP: B's SDP names its RTCP port (a=rtcp); A's RTCP source latches.
    let a_rtcp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b_rtcp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut b_sdp = leg(call, Leg::B, phone_b.local_addr().unwrap());
    b_sdp.remote_rtcp = b_rtcp.local_addr().unwrap().to_string();
    c.update_leg(b_sdp).await.unwrap();
    let sr = [
        0x80, 200, 0, 6, 0, 0, 0xaa, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0,
    ];
    let rr = [0x81, 201, 0, 1, 0, 0, 0xbb, 0xbb];
    let (a_rtcp_port, b_rtcp_port) = (ports.port_a as u16 + 1, ports.port_b as u16 + 1);
    a_rtcp
        .send_to(&sr, ("127.0.0.1", a_rtcp_port))
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), b_rtcp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&buf[..n], from.port()),
        (&sr[..], b_rtcp_port),
        "A's SR reaches B's a=rtcp address from B's RTCP port"
    );
    b_rtcp
        .send_to(&rr, ("127.0.0.1", b_rtcp_port))
        .await
        .unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), a_rtcp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], &rr[..], "B's RR reaches A's latched RTCP source");

    let stats = c
        .stats(StatsRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let a = stats.a.unwrap();
    let b = stats.b.unwrap();
    assert_eq!(a.latched_addr, phone_a.local_addr().unwrap().to_string());
    assert_eq!(a.packets_in, 44);
    assert_eq!((a.rtcp_in, b.rtcp_out, b.rtcp_in, a.rtcp_out), (1, 1, 1, 1));
    assert_eq!(a.lost, 10, "the 10-packet gap");
    assert_eq!(b.packets_in, 50);
    assert_eq!(b.lost, 0);
    assert_eq!(a.packets_out, 50);
    assert_eq!(b.packets_out, 44);
    assert!(b.jitter_ms < 20.0, "{}", b.jitter_ms);

    let released = c
        .release(ReleaseRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let stats = released.stats.unwrap();
    assert_eq!(stats.recording_path, rec.path);
    let err = c
        .stats(StatsRequest {
            call_id: call.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let (left, right) = read_wav(&m.dir.path().join(&rec.path));
    let (l, r) = (trimmed(&left), trimmed(&right));
    // Each party on its own channel, by frequency.
    let l440 = goertzel(&l[..3200], 440.0);
    let l880 = goertzel(&l[..3200], 880.0);
    let r440 = goertzel(&r[..3200], 440.0);
    let r880 = goertzel(&r[..3200], 880.0);
    assert!(
        l440 > 100.0 * l880,
        "left is A's 440 Hz: {l440:e} vs {l880:e}"
    );
    assert!(
        r880 > 100.0 * r440,
        "right is B's 880 Hz: {r880:e} vs {r440:e}"
    );
    // Timing: A's lost packets are exactly 10 x 20 ms of silence, A spans
    // 50 packets, B starts about 60 ms after A.
    let gap = longest_zero_run(l);
    assert!((1600..=1603).contains(&gap), "gap of {gap} samples");
    assert!(
        (7990..=8000).contains(&l.len()),
        "A spans {} samples",
        l.len()
    );
    assert!(
        (7990..=8000).contains(&r.len()),
        "B spans {} samples",
        r.len()
    );
    assert!(longest_zero_run(r) < 4);
    let a_start = left.iter().position(|&x| x != 0).unwrap();
    let b_start = right.iter().position(|&x| x != 0).unwrap();
    let offset_ms = (b_start as f64 - a_start as f64) / 8.0;
    assert!(
        (30.0..200.0).contains(&offset_ms),
        "B starts {offset_ms} ms after A"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_established_call_without_rtp_raises_rtp_timeout() {
    let m = Mediad::start(&[("calls.rtp_timeout", "1")], 20).await;
    let mut c = m.client.clone();
    let mut events = m.events().await;
    c.allocate(AllocateRequest {
        call_id: "ringing".into(),
    })
    .await
    .unwrap();
    c.allocate(AllocateRequest {
        call_id: "idle".into(),
    })
    .await
    .unwrap();
    c.update_leg(UpdateLegRequest {
        call_id: "idle".into(),
        established: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    let ev = next_event(&mut events, "idle", MediaEventKind::RtpTimeout).await;
    assert_eq!(ev.detail, "1");
    assert!(matches!(ev.leg(), Leg::A | Leg::B));
    // The call that was never answered and never sent media stays quiet.
    let quiet = tokio::time::timeout(
        Duration::from_millis(1500),
        next_event(&mut events, "ringing", MediaEventKind::RtpTimeout),
    )
    .await;
    assert!(quiet.is_err());
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_recording_not_the_call_and_alerts_the_admin() {
    let m = Mediad::start(&[], 20).await;
    let mut c = m.client.clone();
    let mut events = m.events().await;
    let call = "full-disk";
    let ports = c
        .allocate(AllocateRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let rel = mediad::recording::rel_path(call, chrono::Utc::now().date_naive());
    let path = m.dir.path().join(&rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();

    let rec = c
        .record(RecordRequest {
            call_id: call.into(),
            enabled: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!rec.ok);
    assert!(rec.error.contains("No space"), "{}", rec.error);
    let ev = next_event(&mut events, call, MediaEventKind::RecordingFailed).await;
    assert!(ev.detail.contains("No space"), "{}", ev.detail);

    // The relay goes on.
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.update_leg(leg(call, Leg::A, a.local_addr().unwrap()))
        .await
        .unwrap();
    c.update_leg(leg(call, Leg::B, b.local_addr().unwrap()))
        .await
        .unwrap();
    let to_a: SocketAddr = format!("127.0.0.1:{}", ports.port_a).parse().unwrap();
    talk(&a, to_a, 0, 1, 440.0, 5, 0..0).await;
    assert_eq!(listen(&b, 1).await, 5);

    let mut alert = None;
    for _ in 0..50 {
        alert = sqlx::query_as::<_, (String, String, String)>(
            "SELECT source, kind, message FROM alerts",
        )
        .fetch_optional(&m.pool)
        .await
        .unwrap();
        if alert.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (source, kind, message) = alert.expect("an alert row");
    assert_eq!((source.as_str(), kind.as_str()), ("mediad", "disk_full"));
    assert!(message.contains(call), "{message}");
    let stats = c
        .release(ReleaseRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stats.stats.unwrap().recording_path,
        "",
        "nothing was recorded"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_exhaustion_is_refused_and_release_frees_the_pair() {
    // 8 ports = 4 even RTP ports = 2 calls.
    let m = Mediad::start(&[], 8).await;
    let mut c = m.client.clone();
    for id in ["x1", "x2"] {
        c.allocate(AllocateRequest { call_id: id.into() })
            .await
            .unwrap();
    }
    let err = c
        .allocate(AllocateRequest {
            call_id: "x3".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    c.release(ReleaseRequest {
        call_id: "x1".into(),
    })
    .await
    .unwrap();
    c.allocate(AllocateRequest {
        call_id: "x3".into(),
    })
    .await
    .unwrap();
    let err = c
        .release(ReleaseRequest {
            call_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_sipd_forgot_is_released_after_the_orphan_time() {
    // 4 ports = 2 even RTP ports = 1 call.
    let m = Mediad::start_with(&[], 4, 1).await;
    let mut c = m.client.clone();
    c.allocate(AllocateRequest {
        call_id: "forgotten".into(),
    })
    .await
    .unwrap();
    let err = c
        .allocate(AllocateRequest {
            call_id: "next".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    let mut freed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if c.allocate(AllocateRequest {
            call_id: "next".into(),
        })
        .await
        .is_ok()
        {
            freed = true;
            break;
        }
    }
    assert!(freed, "the orphan's ports came back");
    let err = c
        .release(ReleaseRequest {
            call_id: "forgotten".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    m.stop().await;
}

/// Sends 20 ms packets `first..first + count` of one stream, paced.
async fn talk_seqs(sock: &UdpSocket, to: SocketAddr, ssrc: u32, first: u16, count: u16) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for seq in first..first + count {
        tick.tick().await;
        sock.send_to(&tone_packet(0, seq, ssrc, 440.0), to)
            .await
            .unwrap();
    }
}

/// The sequence numbers of the RTP arriving on `sock` until `quiet` passes
/// without a packet; every packet must be `ssrc`'s PCMU.
async fn heard(sock: &UdpSocket, ssrc: u32, quiet: Duration) -> Vec<u16> {
    let mut buf = [0u8; 2048];
    let mut seqs = Vec::new();
    while let Ok(Ok((len, _))) = tokio::time::timeout(quiet, sock.recv_from(&mut buf)).await {
        assert_eq!(len, 172);
        assert_eq!(buf[1] & 0x7f, 0, "only the negotiated PCMU");
        assert_eq!(u32::from_be_bytes(buf[8..12].try_into().unwrap()), ssrc);
        seqs.push(u16::from_be_bytes([buf[2], buf[3]]));
    }
    seqs
}

/// Sprays in-order RTP of its own SSRC (and RTCP) at `targets` until
/// `stop`, as fast as a phone would never send; returns how many packets.
async fn spray(sock: &UdpSocket, targets: &[SocketAddr], first: u16, count: u16) -> usize {
    let rr = [0x81, 201, 0, 1, 0x0b, 0xad, 0x0b, 0xad];
    let mut sent = 0;
    for seq in first..first + count {
        for &to in targets {
            let p = tone_packet(0, seq, 0x0bad_0bad, 3000.0);
            sock.send_to(&p, to).await.unwrap();
            let rtcp = SocketAddr::new(to.ip(), to.port() + 1);
            sock.send_to(&rr, rtcp).await.unwrap();
            sock.send_to(&rr, to).await.unwrap();
            sent += 3;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sent
}

fn signalled(call_id: &str, leg_id: Leg, rtp: SocketAddr, from: &str) -> UpdateLegRequest {
    UpdateLegRequest {
        signal_ip: from.into(),
        ..leg(call_id, leg_id, rtp)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_spraying_in_order_rtp_with_a_new_ssrc_hears_nothing_and_the_phones_audio_is_unbroken()
 {
    let m = Mediad::start(&[], 20).await;
    let mut c = m.client.clone();
    let call = "bleed";
    let ports = c
        .allocate(AllocateRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let to_a: SocketAddr = format!("127.0.0.1:{}", ports.port_a).parse().unwrap();
    let to_b: SocketAddr = format!("127.0.0.1:{}", ports.port_b).parse().unwrap();
    let phone_a = std::sync::Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let phone_b = std::sync::Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    // Another host as far as mediad can tell: a different source IP.
    let attacker = std::sync::Arc::new(UdpSocket::bind("127.0.0.2:0").await.unwrap());
    for (id, phone) in [(Leg::A, &phone_a), (Leg::B, &phone_b)] {
        c.update_leg(signalled(
            call,
            id,
            phone.local_addr().unwrap(),
            "127.0.0.1",
        ))
        .await
        .unwrap();
    }
    let attacker_hears = {
        let s = attacker.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut n = 0;
            while let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(3), s.recv_from(&mut buf)).await
            {
                n += 1;
            }
            n
        })
    };

    // Before the phones send anything: the first packets at each port are
    // the attacker's.
    let mut sprayed = spray(&attacker, &[to_a, to_b], 0, 40).await;
    let a_hears = {
        let s = phone_a.clone();
        tokio::spawn(async move { heard(&s, 0xbbbb, Duration::from_millis(1500)).await })
    };
    let b_hears = {
        let s = phone_b.clone();
        tokio::spawn(async move { heard(&s, 0xaaaa, Duration::from_millis(1500)).await })
    };
    // Mid-call: 2 s of audio each way while the attacker keeps spraying.
    let a_send = {
        let s = phone_a.clone();
        tokio::spawn(async move { talk_seqs(&s, to_a, 0xaaaa, 0, 100).await })
    };
    let b_send = {
        let s = phone_b.clone();
        tokio::spawn(async move { talk_seqs(&s, to_b, 0xbbbb, 0, 100).await })
    };
    sprayed += spray(&attacker, &[to_a, to_b], 40, 200).await;
    a_send.await.unwrap();
    b_send.await.unwrap();
    // Both phones fall silent for longer than any re-latch window; the
    // attacker sprays into the silence, then the phones go on.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    sprayed += spray(&attacker, &[to_a, to_b], 240, 40).await;
    let a_send = {
        let s = phone_a.clone();
        tokio::spawn(async move { talk_seqs(&s, to_a, 0xaaaa, 100, 20).await })
    };
    let b_send = {
        let s = phone_b.clone();
        tokio::spawn(async move { talk_seqs(&s, to_b, 0xbbbb, 100, 20).await })
    };
    a_send.await.unwrap();
    b_send.await.unwrap();

    let all: Vec<u16> = (0..120).collect();
    assert_eq!(a_hears.await.unwrap(), all, "A hears all of B, in order");
    assert_eq!(b_hears.await.unwrap(), all, "B hears all of A, in order");
    assert_eq!(
        attacker_hears.await.unwrap(),
        0,
        "the attacker hears nothing"
    );

    let stats = c
        .release(ReleaseRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let (a, b) = (stats.a.unwrap(), stats.b.unwrap());
    assert_eq!(a.latched_addr, phone_a.local_addr().unwrap().to_string());
    assert_eq!(b.latched_addr, phone_b.local_addr().unwrap().to_string());
    assert_eq!((a.packets_in, b.packets_in), (120, 120));
    assert_eq!((a.lost, b.lost), (0, 0));
    assert_eq!(
        a.dropped_foreign + b.dropped_foreign,
        sprayed as u64,
        "every attacker packet was refused as foreign"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_behind_nat_latches_from_its_signalling_ip_on_another_port_than_its_sdp() {
    let m = Mediad::start(&[], 20).await;
    let mut c = m.client.clone();
    let call = "nat";
    let ports = c
        .allocate(AllocateRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let to_a: SocketAddr = format!("127.0.0.1:{}", ports.port_a).parse().unwrap();
    let phone_a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let phone_b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // A's SDP names its private LAN address; its packets come from the
    // router's address (here 127.0.0.1) on a port of the router's choosing.
    let private: SocketAddr = "192.0.2.50:4000".parse().unwrap();
    c.update_leg(leg(call, Leg::A, private)).await.unwrap();
    c.update_leg(signalled(
        call,
        Leg::B,
        phone_b.local_addr().unwrap(),
        "127.0.0.1",
    ))
    .await
    .unwrap();

    // Without the signalling IP, the SDP's IP alone is trusted: nothing.
    talk_seqs(&phone_a, to_a, 0xaaaa, 0, 5).await;
    assert_eq!(
        heard(&phone_b, 0xaaaa, Duration::from_millis(600)).await,
        Vec::<u16>::new()
    );

    c.update_leg(UpdateLegRequest {
        call_id: call.into(),
        leg: Leg::A.into(),
        signal_ip: "127.0.0.1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    talk_seqs(&phone_a, to_a, 0xaaaa, 5, 10).await;
    // A payload type neither SDP named is not relayed.
    let mut odd = tone_packet(0, 15, 0xaaaa, 440.0);
    odd[1] = 96;
    phone_a.send_to(&odd, to_a).await.unwrap();
    let expect: Vec<u16> = (5..15).collect();
    assert_eq!(
        heard(&phone_b, 0xaaaa, Duration::from_millis(600)).await,
        expect
    );

    let stats = c
        .stats(StatsRequest {
            call_id: call.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let a = stats.a.unwrap();
    assert_eq!(a.latched_addr, phone_a.local_addr().unwrap().to_string());
    assert_eq!((a.dropped_foreign, a.dropped_payload_type), (5, 1));
    m.stop().await;
}

#[tokio::test]
async fn grpc_calls_without_the_shared_secret_are_refused() {
    let m = Mediad::start(&[], 4).await;
    let mut intruder = MediadClient::connect(format!("http://{}", m.addr))
        .await
        .unwrap();
    let refused = intruder
        .allocate(AllocateRequest {
            call_id: "forged".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = intruder.events(EventsRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    // The genuine client is served.
    m.client
        .clone()
        .allocate(AllocateRequest {
            call_id: "real".into(),
        })
        .await
        .unwrap();
    m.stop().await;
}

/// notifyd as mediad sees it: takes `Notify` and hands each request over.
struct FakeNotifyd(tokio::sync::mpsc::UnboundedSender<proto::pb::notifyd::NotifyRequest>);

#[tonic::async_trait]
impl proto::pb::notifyd::notifyd_server::Notifyd for FakeNotifyd {
    async fn notify(
        &self,
        req: tonic::Request<proto::pb::notifyd::NotifyRequest>,
    ) -> Result<tonic::Response<proto::pb::notifyd::NotifyReply>, tonic::Status> {
        let _ = self.0.send(req.into_inner());
        // job_id 0: delivered from memory, as notifyd answers when its own
        // database refuses the write.
        Ok(tonic::Response::new(proto::pb::notifyd::NotifyReply {
            job_id: 0,
        }))
    }
    async fn send_test(
        &self,
        _req: tonic::Request<proto::pb::notifyd::SendTestRequest>,
    ) -> Result<tonic::Response<proto::pb::notifyd::SendTestReply>, tonic::Status> {
        Err(tonic::Status::unimplemented("not here"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_alert_reaches_notifyd_while_the_database_takes_no_writes_and_its_row_comes_later()
 {
    let (tx, mut notified) = tokio::sync::mpsc::unbounded_channel();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let notifyd = l.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(proto::pb::notifyd::notifyd_server::NotifydServer::new(
                FakeNotifyd(tx),
            ))
            .serve_with_incoming(proto::daemon::incoming(l)),
    );
    let m = Mediad::start_full(&[], 20, 3600, &notifyd).await;
    let mut c = m.client.clone();

    // The database refuses writes, as a full disk makes it: here through
    // the read-only marker every daemon's pool follows. mediad's health
    // says so once its pool has seen it.
    proto::db::mark_read_only(m.dir.path(), Some("full")).unwrap();
    let secret = proto::grpc::Secret::load_or_create(m.dir.path()).unwrap();
    let ch = Channel::from_shared(format!("http://{}", m.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut daemon =
        proto::pb::common::daemon_client::DaemonClient::new(proto::grpc::authed(ch, &secret));
    for i in 0.. {
        let h = daemon
            .health(proto::pb::common::HealthRequest {})
            .await
            .unwrap()
            .into_inner();
        if h.detail == proto::db::READ_ONLY_DETAIL {
            break;
        }
        assert!(i < 200, "mediad never went read-only: {h:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The recording's disk is full.
    let call = "full-disk-db-too";
    c.allocate(AllocateRequest {
        call_id: call.into(),
    })
    .await
    .unwrap();
    let rel = mediad::recording::rel_path(call, chrono::Utc::now().date_naive());
    let path = m.dir.path().join(&rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    let rec = c
        .record(RecordRequest {
            call_id: call.into(),
            enabled: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!rec.ok);

    // notifyd hears it at once, from mediad's memory ...
    let n = tokio::time::timeout(Duration::from_secs(20), notified.recv())
        .await
        .expect("notifyd got the alert")
        .unwrap();
    assert_eq!(n.kind, "admin_alert");
    let p: serde_json::Value = serde_json::from_str(&n.payload_json).unwrap();
    assert_eq!(
        (&p["alert"], &p["source"]),
        (&json_str("disk_full"), &json_str("mediad"))
    );
    assert!(p["message"].as_str().unwrap().contains(call), "{p}");
    let rows = || async {
        sqlx::query_as::<_, (String, String, String)>("SELECT source, kind, message FROM alerts")
            .fetch_all(&m.pool)
            .await
            .unwrap()
    };
    assert!(
        rows().await.is_empty(),
        "no row while the database takes no writes"
    );

    // ... and the row is written once the database takes writes again.
    proto::db::mark_read_only(m.dir.path(), None).unwrap();
    let mut got = Vec::new();
    for _ in 0..600 {
        got = rows().await;
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got.len(), 1, "one row, written late");
    assert_eq!(
        (got[0].0.as_str(), got[0].1.as_str()),
        ("mediad", "disk_full")
    );
    assert_eq!(got[0].2, p["message"].as_str().unwrap());
    assert!(notified.try_recv().is_err(), "notifyd was told once");
    m.stop().await;
}

fn json_str(s: &str) -> serde_json::Value {
    serde_json::Value::String(s.into())
}
