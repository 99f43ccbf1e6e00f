//! mediad in-process on 127.0.0.1: gRPC allocation, UDP relay with
//! latching, recording read back by frequency, timeouts, a full disk.

use std::f64::consts::PI;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use proto::pb::mediad::mediad_client::MediadClient;
use proto::pb::mediad::{
    AllocateRequest, Codec, EventsRequest, MediaEvent, RecordRequest, ReleaseRequest, StatsRequest,
    UpdateLegRequest,
};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use mediad::relay::{dtmf, g711, rtp};

struct Mediad {
    client: MediadClient<Channel>,
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
            },
            grpc: addr.to_string(),
            rtp_ports: format!("{base}-{}", base + rtp_ports - 1),
            rtp_bind: "127.0.0.1".into(),
            orphan_secs,
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(mediad::run(cfg, mediad::Listeners { grpc }, stop.clone()));
        let client = MediadClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        Self {
            client,
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
    kind: &str,
) -> MediaEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = events.message().await.unwrap().expect("stream open");
            if ev.call_id == call_id && ev.kind == kind {
                return ev;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} event for {call_id}"))
}

fn leg(call_id: &str, leg: &str, rtp: SocketAddr) -> UpdateLegRequest {
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
    c.update_leg(leg(call, "a", announced.local_addr().unwrap()))
        .await
        .unwrap();
    c.update_leg(leg(call, "b", phone_b.local_addr().unwrap()))
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
    let star = next_event(&mut events, call, "dtmf").await;
    assert_eq!((star.detail.as_str(), star.leg.as_str()), ("*", "a"));
    assert_eq!(next_event(&mut events, call, "dtmf").await.detail, "1");

    // RTCP: B's SDP names its RTCP port (a=rtcp); A's RTCP source latches.
    let a_rtcp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b_rtcp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut b_sdp = leg(call, "b", phone_b.local_addr().unwrap());
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
    let ev = next_event(&mut events, "idle", "rtp_timeout").await;
    assert_eq!(ev.detail, "1");
    assert!(ev.leg == "a" || ev.leg == "b");
    // The call that was never answered and never sent media stays quiet.
    let quiet = tokio::time::timeout(
        Duration::from_millis(1500),
        next_event(&mut events, "ringing", "rtp_timeout"),
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
    let ev = next_event(&mut events, call, "recording_failed").await;
    assert!(ev.detail.contains("No space"), "{}", ev.detail);

    // The relay goes on.
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.update_leg(leg(call, "b", b.local_addr().unwrap()))
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
