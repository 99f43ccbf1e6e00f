#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Two baresip softphones call each other through GoSIP with a tone each as
//! their microphone (caller 440 Hz, callee 1000 Hz); mediad records the
//! call. The proof that audio crossed, and crossed the right way, is by
//! frequency: the recording's left channel (A-leg, the caller) holds 440 Hz,
//! the right (B-leg, the callee) 1000 Hz, and each phone heard the other's
//! tone. Missing, swapped or mixed audio fails. Needs the Debian package
//! `baresip` (scripts/install-deps.sh).

#[path = "../../e2e/src/audio.rs"]
mod audio;
#[path = "../../e2e/src/baresip.rs"]
mod baresip;
mod common;
mod phones;

use std::path::Path;
use std::time::Duration;

use audio::{Wav, sine, tones};
use baresip::Baresip;
use common::{Phone, Sipd, dialog};
use phones::*;
use proto::types::DeviceId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baresip_call_is_recorded_with_each_partys_tone_on_its_own_channel() {
    let s = Sipd::start_with_mediad(&[]).await;
    s.add_device("bob", "pw-bob-2026-x", "102").await;
    s.add_device("carol", "pw-carol-2026", "103").await;
    s.web
        .edit_device("bob", serde_json::json!({"recording_enabled": true}))
        .await;

    let root = tempfile::tempdir().unwrap();
    let mut carol = Baresip::spawn(
        root.path(),
        "carol",
        &account("carol", "pw-carol-2026", &s, ";answermode=auto"),
        &tone_file(root.path(), CALLEE_HZ),
        90,
    );
    let mut bob = Baresip::spawn(
        root.path(),
        "bob",
        &account("bob", "pw-bob-2026-x", &s, ""),
        &tone_file(root.path(), CALLER_HZ),
        90,
    );
    s.eventually("both phones registered", || async {
        let rows = s.registrations().await;
        rows.iter().any(|r| r.0.starts_with("sip:bob"))
            && rows.iter().any(|r| r.0.starts_with("sip:carol"))
    })
    .await;
    carol.connect().await;
    bob.connect().await;

    bob.command("dial", &format!("sip:103@{}", s.sip))
        .await
        .unwrap();
    for p in [&mut bob, &mut carol] {
        p.event("CALL_ESTABLISHED", Duration::from_secs(15))
            .await
            .unwrap();
        // The first RTP packet from the other side arrived.
        p.event("CALL_RTPESTAB", Duration::from_secs(10))
            .await
            .unwrap();
    }
    tokio::time::sleep(TALK).await;
    bob.command("hangup", "").await.unwrap();
    for p in [&mut bob, &mut carol] {
        p.event("CALL_CLOSED", Duration::from_secs(10))
            .await
            .unwrap();
    }
    let bob_heard = bob.dump(true);
    let carol_heard = carol.dump(true);
    bob.quit().await;
    carol.quit().await;

    let q = "SELECT from_number, to_number, disposition, recording_url FROM cdrs WHERE media_stats IS NOT NULL";
    s.eventually("the call's cdr is closed with media stats", || async {
        sqlx::query(q)
            .fetch_optional(&s.pool)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let (from, to, disposition, url): (String, String, Option<String>, Option<String>) =
        sqlx::query_as(q).fetch_one(&s.pool).await.unwrap();
    assert_eq!(
        (from.as_str(), to.as_str(), disposition.as_deref()),
        ("102", "103", Some("answered"))
    );
    let url = url.expect("the cdr links the recording");
    assert!(
        url.starts_with("recordings/") && url.ends_with(".wav"),
        "{url}"
    );

    let wav = Wav::read(&s.dir.join(&url)).unwrap();
    assert_eq!(
        (wav.format, wav.channels, wav.rate, wav.bits),
        (1, 2, RATE, 16),
        "recording must be PCM stereo 8 kHz 16-bit"
    );
    let left = tones(&wav.samples[0], wav.rate, CALLER_HZ, CALLEE_HZ);
    let right = tones(&wav.samples[1], wav.rate, CALLEE_HZ, CALLER_HZ);
    eprintln!(
        "{url}: {:.2} s; left {left:?}; right {right:?}",
        wav.seconds()
    );
    left.check(MIN_TONE_SECS)
        .unwrap_or_else(|e| panic!("left channel (A-leg, caller bob, {CALLER_HZ} Hz): {e}"));
    right
        .check(MIN_TONE_SECS)
        .unwrap_or_else(|e| panic!("right channel (B-leg, callee carol, {CALLEE_HZ} Hz): {e}"));

    // What each phone played out: the other party's tone.
    for (who, path, want, other) in [
        ("bob", bob_heard, CALLEE_HZ, CALLER_HZ),
        ("carol", carol_heard, CALLER_HZ, CALLEE_HZ),
    ] {
        let path = path.unwrap_or_else(|| panic!("{who}: sndfile wrote no *-dec.wav"));
        let heard = Wav::read(&path).unwrap();
        assert_eq!((heard.format, heard.channels, heard.bits), (1, 1, 16));
        let r = tones(&heard.samples[0], heard.rate, want, other);
        eprintln!(
            "{who} heard ({} Hz, {:.2} s): {r:?}",
            heard.rate,
            heard.seconds()
        );
        r.check(MIN_TONE_SECS)
            .unwrap_or_else(|e| panic!("{who} should have heard {want} Hz: {e}"));
    }
    s.stop().await;
}

/// alice (101), bob (102) and carol (103): devices made through the API,
/// each a baresip with its tone as microphone and `extra` account
/// parameters, registered and on the control socket.
async fn three_phones(
    s: &Sipd,
    root: &Path,
    phones: [(&str, &str, f64); 3],
) -> (Baresip, Baresip, Baresip, DeviceId) {
    let mut carol_id = DeviceId(0);
    let mut spawned = Vec::new();
    for ((name, extra, hz), (pw, ext)) in phones.into_iter().zip([
        ("pw-alice-2026", "101"),
        ("pw-bob-2026-x", "102"),
        ("pw-carol-2026", "103"),
    ]) {
        let id = s.add_device(name, pw, ext).await;
        if name == "carol" {
            carol_id = id;
        }
        spawned.push(Baresip::spawn(
            root,
            name,
            &account(name, pw, s, extra),
            &tone_file(root, hz),
            90,
        ));
    }
    s.eventually("three phones registered", || async {
        s.registrations().await.len() == 3
    })
    .await;
    for p in &mut spawned {
        p.connect().await;
    }
    let [a, b, c]: [Baresip; 3] = spawned.try_into().ok().unwrap();
    (a, b, c, carol_id)
}

/// [`three_phones`] with alice (440 Hz), bob and carol answering by
/// themselves (1000 and 1600 Hz), and alice's call to bob up with audio.
async fn alice_talks_to_bob(s: &Sipd, root: &Path) -> (Baresip, Baresip, Baresip, DeviceId) {
    let (mut alice, mut bob, carol, carol_id) = three_phones(
        s,
        root,
        [
            ("alice", "", CALLER_HZ),
            ("bob", ";answermode=auto", CALLEE_HZ),
            ("carol", ";answermode=auto", TARGET_HZ),
        ],
    )
    .await;
    alice
        .command("dial", &format!("sip:102@{}", s.sip))
        .await
        .unwrap();
    for p in [&mut alice, &mut bob] {
        p.event("CALL_RTPESTAB", Duration::from_secs(15))
            .await
            .unwrap();
    }
    (alice, bob, carol, carol_id)
}

/// `who` heard `order[0]`, then `order[1]` (for at least MIN_TONE_SECS)
/// and never `order[0]` again, and nothing of `never`.
fn assert_heard_then(dump: &Path, order: [f64; 2], never: f64, who: &str) {
    let heard = Wav::read(dump).unwrap();
    let w = window_tones(&heard.samples[0], heard.rate, &[order[0], order[1], never]);
    let r = runs(&w);
    eprintln!("{who} heard, run by run: {r:?}");
    assert_eq!(r, order, "{who} heard {r:?}");
    let secs = w.iter().filter(|t| **t == Some(order[1])).count() as f64 / 20.0;
    assert!(
        secs >= MIN_TONE_SECS,
        "{who} heard the second party for {secs} s"
    );
}

/// The notes of mediad's built-in hold music (Hz), in order.
const MELODY_HZ: [f64; 8] = [
    523.25, 659.25, 783.99, 880.0, 783.99, 659.25, 587.33, 523.25,
];

/// What each 50 ms window of `x` is: one of `candidates` (most of the
/// window's energy there), or `None` (silence, a note change, anything
/// else).
fn window_tones(x: &[f32], rate: u32, candidates: &[f64]) -> Vec<Option<f64>> {
    let n = (rate / 20) as usize;
    x.chunks_exact(n)
        .map(|w| {
            let rms = (w.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / n as f64).sqrt();
            if rms < audio::SILENCE_RMS {
                return None;
            }
            candidates
                .iter()
                .copied()
                .find(|&f| audio::share(w, rate, f) >= 0.6)
        })
        .collect()
}

/// The tones of `windows` in order, each run of one tone once.
fn runs(windows: &[Option<f64>]) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for t in windows.iter().flatten() {
        if out.last() != Some(t) {
            out.push(*t);
        }
    }
    out
}

/// One RTP packet as it arrived: marker, sequence number, timestamp, SSRC,
/// the PCMU payload.
type Packet = (bool, u16, u32, u32, Vec<u8>);

/// A bare SIP phone for the held side (baresip 1.0 stops its decoded-audio
/// dump at the first re-INVITE, so it cannot show what a held phone
/// hears): answers the call and every re-INVITE (`recvonly` to a
/// `sendonly` offer, RFC 3264 section 6.1), OPTIONS and BYE, and keeps every
/// RTP packet that reaches its media port, in order.
async fn bare_phone(
    phone: Phone,
) -> (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::Mutex<Vec<Packet>>>,
) {
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let media = rtp.local_addr().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = rtp.recv_from(&mut buf).await {
            let p = &buf[..n];
            if n > 12 && p[1] & 0x7f == 0 {
                sink.lock().unwrap().push((
                    p[1] & 0x80 != 0,
                    u16::from_be_bytes([p[2], p[3]]),
                    u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
                    u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
                    p[12..].to_vec(),
                ));
            }
        }
    });
    let sip = tokio::spawn(async move {
        let mut version = 0;
        while let Some(m) = phone.recv(Duration::from_secs(60)).await {
            let method = m.split(' ').next().unwrap_or_default().to_owned();
            let body = match method.as_str() {
                "INVITE" => {
                    version += 1;
                    let dir = if m.contains("a=sendonly") {
                        "recvonly"
                    } else if m.contains("a=inactive") {
                        "inactive"
                    } else {
                        "sendrecv"
                    };
                    format!(
                        "v=0\r\no=carol 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={dir}\r\n",
                        media.port()
                    )
                }
                "BYE" | "OPTIONS" => String::new(),
                _ => continue,
            };
            let mut r = String::from("SIP/2.0 200 OK\r\n");
            for line in m.split("\r\n").skip(1) {
                let l = line.to_ascii_lowercase();
                if l.starts_with("to:") && !l.contains("tag=") {
                    r.push_str(&format!("{line};tag=carol1\r\n"));
                } else if ["via:", "from:", "to:", "call-id:", "cseq:"]
                    .iter()
                    .any(|h| l.starts_with(h))
                {
                    r.push_str(&format!("{line}\r\n"));
                }
            }
            r.push_str(&format!("Contact: <{}>\r\n", phone.contact()));
            if !body.is_empty() {
                r.push_str("Content-Type: application/sdp\r\n");
            }
            r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
            phone.send(r.as_bytes()).await;
            if method == "BYE" {
                return;
            }
        }
    });
    (sip, got)
}

/// The tone of the hold music the admin uploads in the test.
const UPLOAD_HZ: f64 = 1000.0;

/// What a window of the held phone's audio is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Heard {
    Caller,
    Melody,
    Upload,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_phone_hears_the_hold_music_then_the_other_party_again_on_one_stream() {
    let s = Sipd::start_with_mediad(&[]).await;
    s.add_device("bob", "pw-bob-2026-x", "102").await;
    s.add_device("carol", "pw-carol-2026", "103").await;
    let root = tempfile::tempdir().unwrap();
    let carol = Phone::udp(&s, "carol").await.with_password("pw-carol-2026");
    let r = carol
        .register(&format!("Contact: <{}>\r\n", carol.contact()))
        .await;
    assert_eq!(r.code(), 200, "{}", r.0);
    let (carol_sip, heard) = bare_phone(carol).await;
    let mut bob = Baresip::spawn(
        root.path(),
        "bob",
        &account("bob", "pw-bob-2026-x", &s, ""),
        &tone_file(root.path(), CALLER_HZ),
        90,
    );
    s.eventually("bob registered", || async {
        s.registrations()
            .await
            .iter()
            .any(|r| r.0.starts_with("sip:bob"))
    })
    .await;
    bob.connect().await;
    bob.command("dial", &format!("sip:103@{}", s.sip))
        .await
        .unwrap();
    bob.event("CALL_ESTABLISHED", Duration::from_secs(15))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // bob presses Hold (baresip re-INVITEs with a=sendonly), waits, and
    // takes the call back: GoSIP's own melody.
    bob.command("hold", "").await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    bob.command("resume", "").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The admin uploads hold music of their own (a 16 kHz stereo WAV,
    // which mediad resamples); the next hold plays it.
    let upload = Wav::encode(
        16_000,
        &[
            sine(16_000, UPLOAD_HZ, 3.0, 0.5),
            sine(16_000, UPLOAD_HZ, 3.0, 0.5),
        ],
    );
    let (status, body) = s
        .web
        .api
        .upload(
            &s.web.admin,
            "PUT",
            "/api/system/hold-music",
            "music.wav",
            upload,
        )
        .await;
    assert_eq!(
        (status, &body["custom"]),
        (200, &serde_json::json!(true)),
        "{body}"
    );
    bob.command("hold", "").await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    bob.command("resume", "").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    bob.command("hangup", "").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), carol_sip)
        .await
        .expect("carol got the BYE")
        .unwrap();
    bob.quit().await;

    let packets = heard.lock().unwrap().clone();
    // One RTP stream from start to end: one SSRC, numbers one apart,
    // timestamps always moving on (a phone drops audio that goes back).
    assert!(packets.len() > 700, "{} packets", packets.len());
    for w in packets.windows(2) {
        let ((_, seq0, ts0, ssrc0, _), (_, seq1, ts1, ssrc1, _)) = (&w[0], &w[1]);
        assert_eq!(ssrc1, ssrc0, "the SSRC changed");
        assert_eq!(
            *seq1,
            seq0.wrapping_add(1),
            "a gap or a step back in numbering"
        );
        let ahead = ts1.wrapping_sub(*ts0);
        assert!((1..8000 * 5).contains(&ahead), "timestamp {ts0} then {ts1}");
    }
    // What carol heard, in order: bob, the melody (nothing of bob), bob,
    // the upload, bob.
    let pcm: Vec<f32> = packets
        .iter()
        .flat_map(|p| audio::ulaw_to_f32(&p.4))
        .collect();
    let mut candidates = vec![CALLER_HZ, UPLOAD_HZ];
    candidates.extend(MELODY_HZ);
    let w = window_tones(&pcm, RATE, &candidates);
    let kind = |f: f64| match f {
        CALLER_HZ => Heard::Caller,
        UPLOAD_HZ => Heard::Upload,
        _ => Heard::Melody,
    };
    let mut parts: Vec<(Heard, Vec<f64>)> = Vec::new();
    for f in w.iter().flatten() {
        match parts.last_mut() {
            Some((k, fs)) if *k == kind(*f) => fs.push(*f),
            _ => parts.push((kind(*f), vec![*f])),
        }
    }
    let summary: Vec<(Heard, f64)> = parts
        .iter()
        .map(|(k, fs)| (*k, fs.len() as f64 / 20.0))
        .collect();
    eprintln!("carol heard: {summary:?}");
    let order: Vec<Heard> = summary.iter().map(|p| p.0).collect();
    assert_eq!(
        order,
        [
            Heard::Caller,
            Heard::Melody,
            Heard::Caller,
            Heard::Upload,
            Heard::Caller
        ],
        "{summary:?}"
    );
    for (i, min) in [(0, 2.0), (1, 4.0), (2, 2.0), (3, 2.5), (4, 2.0)] {
        assert!(summary[i].1 >= min, "part {i} too short: {summary:?}");
    }
    // The melody note by note, looped.
    let melody = runs(
        &w.iter()
            .map(|t| t.filter(|f| kind(*f) == Heard::Melody))
            .collect::<Vec<_>>(),
    );
    let phrases = melody
        .windows(MELODY_HZ.len())
        .filter(|p| *p == MELODY_HZ)
        .count();
    assert!(phrases >= 2, "the melody, looped: {melody:?}");
    s.stop().await;
}

/// carol's tone in the transfer test.
const TARGET_HZ: f64 = 1600.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blind_transfer_hands_the_caller_to_the_target_with_audio_both_ways() {
    let s = Sipd::start_with_mediad(&[]).await;
    let root = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, mut carol, carol_id) = alice_talks_to_bob(&s, root.path()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // bob's Transfer key: a REFER to 103; carol answers by herself.
    bob.command("transfer", &format!("sip:103@{}", s.sip))
        .await
        .unwrap();
    carol
        .event("CALL_RTPESTAB", Duration::from_secs(15))
        .await
        .unwrap();
    bob.event("CALL_CLOSED", Duration::from_secs(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (alice_heard, carol_heard) = hang_up(&mut alice, &mut carol).await;
    for p in [alice, bob, carol] {
        p.quit().await;
    }

    // alice heard bob, then carol, and never bob again.
    assert_heard_then(&alice_heard, [CALLEE_HZ, TARGET_HZ], CALLER_HZ, "alice");
    // carol heard alice.
    assert_heard(
        &carol_heard,
        CALLER_HZ,
        CALLEE_HZ,
        "carol should have heard alice",
    );
    // One CDR: alice's call, answered, now carol's, naming the transfer.
    let q = "SELECT disposition, device_id, reason FROM cdrs WHERE ended_at IS NOT NULL";
    s.eventually("the call's cdr is closed", || async {
        sqlx::query(q)
            .fetch_optional(&s.pool)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let rows: Vec<(String, Option<DeviceId>, Option<String>)> =
        sqlx::query_as(q).fetch_all(&s.pool).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (disposition, device, reason) = &rows[0];
    assert_eq!(
        (disposition.as_str(), *device),
        ("answered", Some(carol_id))
    );
    assert!(
        reason
            .as_deref()
            .unwrap_or_default()
            .contains("transferred by 102 to 103"),
        "{reason:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_held_then_transferred_is_heard_by_the_target() {
    let s = Sipd::start_with_mediad(&[]).await;
    let root = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, mut carol, _) = alice_talks_to_bob(&s, root.path()).await;
    // bob holds alice (her phone then sends nothing), then transfers her.
    bob.command("hold", "").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    bob.command("transfer", &format!("sip:103@{}", s.sip))
        .await
        .unwrap();
    carol
        .event("CALL_ESTABLISHED", Duration::from_secs(15))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    alice.command("hangup", "").await.unwrap();
    carol
        .event("CALL_CLOSED", Duration::from_secs(10))
        .await
        .unwrap();
    let carol_heard = carol.dump(true).expect("carol's dump");
    for p in [alice, bob, carol] {
        p.quit().await;
    }
    // sipd took alice off hold: carol hears her.
    assert_heard(
        &carol_heard,
        CALLER_HZ,
        CALLEE_HZ,
        "carol should have heard alice",
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_to_a_number_goes_out_through_the_trunk_with_the_transferors_did() {
    let root = tempfile::tempdir().unwrap();
    // sipp as Twilio's termination trunk: it checks the number in E.164,
    // the DID in From and P-Asserted-Identity, and its digest challenge.
    let (port, trunk) = common::sipp::trunk_uas(root.path());
    let settings = common::sipp::trunk_settings(port).await;
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Sipd::start_with_mediad(&settings).await;
    let (mut alice, mut bob, _carol, _) = three_phones(
        &s,
        root.path(),
        [
            ("alice", "", CALLER_HZ),
            ("bob", ";answermode=auto", CALLEE_HZ),
            ("carol", "", TARGET_HZ),
        ],
    )
    .await;
    // bob's number, as the admin sets it on his device.
    let did = s.web.add_did("+15550001111").await;
    s.web
        .edit_device("bob", serde_json::json!({ "caller_id_did_id": did }))
        .await;
    alice
        .command("dial", &format!("sip:102@{}", s.sip))
        .await
        .unwrap();
    for p in [&mut alice, &mut bob] {
        p.event("CALL_ESTABLISHED", Duration::from_secs(15))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    bob.command("transfer", &format!("sip:555-123-4567@{}", s.sip))
        .await
        .unwrap();
    bob.event("CALL_CLOSED", Duration::from_secs(15))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    alice.command("hangup", "").await.unwrap();
    common::sipp::finished("trunk", trunk, root.path()).await;
    let reason = cdr_reason(&s).await;
    assert!(
        reason.contains("transferred by 102 to +15551234567"),
        "{reason:?}"
    );
    alice.quit().await;
    bob.quit().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_when_in_a_call_turns_a_second_caller_away_and_off_the_phone_rings() {
    // Without voicemail for calls between phones the caller hears busy
    // (with it, bob's mailbox would answer).
    let s = Sipd::start_with_mediad(&[("voicemail.internal_calls", "false")]).await;
    let root = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, mut carol, _) = three_phones(
        &s,
        root.path(),
        [
            ("alice", "", CALLER_HZ),
            ("bob", ";answermode=auto", CALLER_HZ),
            ("carol", "", CALLER_HZ),
        ],
    )
    .await;
    // The admin ticks "Busy when in a call" on bob's device.
    s.web
        .edit_device("bob", serde_json::json!({"busy_in_call": true}))
        .await;
    alice
        .command("dial", &format!("sip:102@{}", s.sip))
        .await
        .unwrap();
    alice
        .event("CALL_ESTABLISHED", Duration::from_secs(15))
        .await
        .unwrap();
    bob.event("CALL_ESTABLISHED", Duration::from_secs(5))
        .await
        .unwrap();
    // carol calls bob, who is talking to alice: busy, and bob never rings.
    carol
        .command("dial", &format!("sip:102@{}", s.sip))
        .await
        .unwrap();
    let closed = carol
        .event("CALL_CLOSED", Duration::from_secs(15))
        .await
        .unwrap();
    assert!(
        closed["param"].as_str().unwrap_or_default().contains("486"),
        "{closed}"
    );
    // (bob answers by himself: a call reaching him would be established.)
    assert!(
        bob.event("CALL_ESTABLISHED", Duration::from_secs(2))
            .await
            .is_err(),
        "bob got the second call"
    );
    let busy: Vec<(String,)> = sqlx::query_as(
        "SELECT disposition FROM cdrs WHERE from_number = '103' AND ended_at IS NOT NULL",
    )
    .fetch_all(&s.pool)
    .await
    .unwrap();
    assert_eq!(busy, [("busy".to_string(),)]);
    // Switched off: the second call rings bob's phone (call waiting).
    s.web
        .edit_device("bob", serde_json::json!({"busy_in_call": false}))
        .await;
    carol
        .command("dial", &format!("sip:102@{}", s.sip))
        .await
        .unwrap();
    let second = bob
        .event("CALL_ESTABLISHED", Duration::from_secs(15))
        .await
        .unwrap();
    assert!(
        second["peeruri"]
            .as_str()
            .unwrap_or_default()
            .contains("103"),
        "{second}"
    );
    for p in [alice, bob, carol] {
        p.quit().await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_transfers_bob_to_carol_and_they_hear_each_other() {
    let s = Sipd::start_with_mediad(&[]).await;
    let root = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, mut carol, _) = alice_talks_to_bob(&s, root.path()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // alice, who placed the call, presses Transfer.
    alice
        .command("transfer", &format!("sip:103@{}", s.sip))
        .await
        .unwrap();
    carol
        .event("CALL_RTPESTAB", Duration::from_secs(15))
        .await
        .unwrap();
    alice
        .event("CALL_CLOSED", Duration::from_secs(10))
        .await
        .unwrap();
    tokio::time::sleep(TALK).await;
    let (bob_heard, carol_heard) = hang_up(&mut bob, &mut carol).await;
    for p in [alice, bob, carol] {
        p.quit().await;
    }
    // bob heard alice, then carol, and never alice again.
    assert_heard_then(&bob_heard, [CALLER_HZ, TARGET_HZ], CALLEE_HZ, "bob");
    assert_heard(
        &carol_heard,
        CALLEE_HZ,
        TARGET_HZ,
        "carol should have heard bob",
    );
    let reason = cdr_reason(&s).await;
    assert!(reason.contains("transferred by 101 to 103"), "{reason}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_over_tls_calls_a_phone_over_udp_and_both_hear_each_other() {
    let s = Sipd::start_with_mediad(&[]).await;
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // alice's phone trusts sipd's own certificate (made on first start,
    // as an admin would install it or pin its fingerprint); bob stays on
    // UDP.
    let cert = s.dir.join("tls").join("sip.crt");
    assert!(cert.exists(), "sipd made its certificate");
    // The admin reads the port and the fingerprint to pin on the System
    // screen: those of this very file.
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap();
    let shown = s
        .web
        .api
        .ok(&s.web.admin, 200, "GET", "/api/system/sip-tls", None)
        .await;
    assert_eq!(
        shown["sha256"],
        sipd::net::tls::fingerprint(&der),
        "{shown}"
    );
    assert_eq!(shown["port"], s.sips.port(), "{shown}");
    assert_eq!(shown["self_signed"], true, "{shown}");
    s.add_device("alice", "pw-alice-2026", "101").await;
    s.add_device("bob", "pw-bob-2026-x", "102").await;
    let mut alice = Baresip::spawn_with(
        root,
        "alice",
        (
            &format!(
                "<sip:alice@{};transport=tls>;auth_pass=pw-alice-2026;regint=300;audio_codecs=PCMU,PCMA",
                s.sips
            ),
            &format!("sip_cafile {}\n", cert.display()),
        ),
        &tone_file(root, CALLER_HZ),
        60,
    );
    let mut bob = Baresip::spawn(
        root,
        "bob",
        &account("bob", "pw-bob-2026-x", &s, ";answermode=auto"),
        &tone_file(root, CALLEE_HZ),
        60,
    );
    s.eventually("both phones registered", || async {
        s.registrations().await.len() == 2
    })
    .await;
    let transports: Vec<String> = s.registrations().await.into_iter().map(|r| r.1).collect();
    assert!(transports.contains(&"tls".to_string()), "{transports:?}");
    alice.connect().await;
    bob.connect().await;
    alice
        .command("dial", &format!("sip:102@{}", s.sips))
        .await
        .unwrap();
    for p in [&mut alice, &mut bob] {
        p.event("CALL_RTPESTAB", Duration::from_secs(15))
            .await
            .unwrap();
    }
    tokio::time::sleep(TALK).await;
    let (alice_heard, bob_heard) = hang_up(&mut alice, &mut bob).await;
    alice.quit().await;
    bob.quit().await;
    assert_heard(
        &alice_heard,
        CALLEE_HZ,
        CALLER_HZ,
        "alice (TLS) should have heard bob",
    );
    assert_heard(
        &bob_heard,
        CALLER_HZ,
        CALLEE_HZ,
        "bob should have heard alice (TLS)",
    );
    s.stop().await;
}

/// Plain text on the TLS port is no way in: sipd answers nothing, closes
/// the connection, and goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sip_on_the_tls_port_is_refused_and_sipd_stays_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Sipd::start(&[]).await;
    let phone = Phone::udp(&s, "nobody").await;
    let mut plain = tokio::net::TcpStream::connect(s.sips).await.unwrap();
    plain.write_all(phone.options().as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(12), plain.read(&mut buf))
        .await
        .expect("sipd closes the connection");
    let n = read.unwrap_or(0);
    assert!(
        !String::from_utf8_lossy(&buf[..n]).contains("SIP/2.0"),
        "a SIP answer in clear on the TLS port"
    );
    let r = phone.request(&phone.options()).await;
    assert_eq!(r.code(), 200, "sipd still answers: {}", r.0);
    s.stop().await;
}

/// The closed CDR's reason, once the call ended.
async fn cdr_reason(s: &Sipd) -> String {
    let q = "SELECT reason FROM cdrs WHERE ended_at IS NOT NULL";
    s.eventually("the call's cdr is closed", || async {
        sqlx::query(q)
            .fetch_optional(&s.pool)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let rows: Vec<(Option<String>,)> = sqlx::query_as(q).fetch_all(&s.pool).await.unwrap();
    assert_eq!(rows.len(), 1, "one CDR for the call: {rows:?}");
    rows[0].0.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carol_dials_the_pickup_code_and_answers_alices_call_ringing_bob() {
    let s = Sipd::start_with_mediad(&[]).await;
    let root = tempfile::tempdir().unwrap();
    // bob's phone rings and nobody answers it.
    let (mut alice, mut bob, mut carol, _) = three_phones(
        &s,
        root.path(),
        [
            ("alice", "", CALLER_HZ),
            ("bob", "", CALLEE_HZ),
            ("carol", "", TARGET_HZ),
        ],
    )
    .await;
    alice
        .command("dial", &format!("sip:102@{}", s.sip))
        .await
        .unwrap();
    bob.event("CALL_INCOMING", Duration::from_secs(15))
        .await
        .unwrap();
    carol
        .command("dial", &format!("sip:*8@{}", s.sip))
        .await
        .unwrap();
    for p in [&mut alice, &mut carol] {
        p.event("CALL_RTPESTAB", Duration::from_secs(15))
            .await
            .unwrap();
    }
    // bob's phone stops ringing.
    bob.event("CALL_CLOSED", Duration::from_secs(10))
        .await
        .unwrap();
    tokio::time::sleep(TALK).await;
    let (alice_heard, carol_heard) = hang_up(&mut alice, &mut carol).await;
    for p in [alice, bob, carol] {
        p.quit().await;
    }
    assert_heard(
        &alice_heard,
        TARGET_HZ,
        CALLER_HZ,
        "alice should have heard carol",
    );
    assert_heard(
        &carol_heard,
        CALLER_HZ,
        TARGET_HZ,
        "carol should have heard alice",
    );
    let reason = cdr_reason(&s).await;
    assert!(reason.contains("picked up by 103"), "{reason}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_parks_alice_hears_the_slot_and_carol_takes_her_from_it() {
    let s = Sipd::start_with_mediad(&[]).await;
    let root = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, mut carol, _) = alice_talks_to_bob(&s, root.path()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // bob's Park key: a transfer to the park code.
    bob.command("transfer", &format!("sip:*70@{}", s.sip))
        .await
        .unwrap();
    // sipd says the slot to bob, then hangs him up.
    bob.event("CALL_CLOSED", Duration::from_secs(20))
        .await
        .unwrap();
    // The dashboard's list shows where the call waits.
    let calls = s
        .web
        .api
        .ok(&s.web.admin, 200, "GET", "/api/calls", None)
        .await;
    assert_eq!(
        (calls[0]["state"].as_str(), calls[0]["park_slot"].as_u64()),
        (Some("parked"), Some(1)),
        "{calls}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    carol
        .command("dial", &format!("sip:*711@{}", s.sip))
        .await
        .unwrap();
    carol
        .event("CALL_RTPESTAB", Duration::from_secs(15))
        .await
        .unwrap();
    tokio::time::sleep(TALK).await;
    alice.command("hangup", "").await.unwrap();
    carol
        .event("CALL_CLOSED", Duration::from_secs(10))
        .await
        .unwrap();
    let alice_heard = alice.dump(true).expect("alice's dump");
    let bob_heard = bob.dump(true).expect("bob's dump");
    let carol_heard = carol.dump(true).expect("carol's dump");
    for p in [alice, bob, carol] {
        p.quit().await;
    }
    // alice heard bob, the hold music while parked, then carol.
    let heard = Wav::read(&alice_heard).unwrap();
    let mut candidates = vec![CALLEE_HZ, TARGET_HZ, CALLER_HZ];
    candidates.extend(MELODY_HZ);
    let w = window_tones(&heard.samples[0], heard.rate, &candidates);
    let r = runs(&w);
    eprintln!("alice heard, run by run: {r:?}");
    let carol_at = r
        .iter()
        .position(|t| *t == TARGET_HZ)
        .expect("alice heard carol");
    assert_eq!(r[0], CALLEE_HZ, "alice heard bob first: {r:?}");
    let notes = r[..carol_at]
        .iter()
        .filter(|t| MELODY_HZ.contains(t))
        .count();
    assert!(
        notes >= 8,
        "alice heard {notes} notes of music before carol: {r:?}"
    );
    assert!(
        !r[carol_at..].contains(&CALLEE_HZ),
        "bob after carol: {r:?}"
    );
    let carol_secs = w.iter().filter(|t| **t == Some(TARGET_HZ)).count() as f64 / 20.0;
    assert!(
        carol_secs >= MIN_TONE_SECS,
        "alice heard carol for {carol_secs} s"
    );
    // bob heard alice, then the announcement: speech, no tone.
    let heard = Wav::read(&bob_heard).unwrap();
    let x = &heard.samples[0];
    let w = window_tones(x, heard.rate, &[CALLER_HZ]);
    let last_alice = w
        .iter()
        .rposition(|t| *t == Some(CALLER_HZ))
        .expect("bob heard alice");
    let n = (heard.rate / 20) as usize;
    let spoken = x
        .chunks_exact(n)
        .skip(last_alice + 1)
        .filter(|c| {
            (c.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / n as f64).sqrt()
                >= audio::SILENCE_RMS
        })
        .count() as f64
        / 20.0;
    assert!(spoken >= 1.0, "bob heard {spoken} s of the announcement");
    // carol heard alice.
    assert_heard(
        &carol_heard,
        CALLER_HZ,
        TARGET_HZ,
        "carol should have heard alice",
    );
    let reason = cdr_reason(&s).await;
    assert!(
        reason.contains("parked by 102 on slot 1") && reason.contains("taken from slot 1 by 103"),
        "{reason}"
    );
    s.stop().await;
}

/// A request `p` reads within 10 s, its responses skipped; NOTIFY and BYE
/// from sipd on the way are answered 200 and counted in `seen`.
async fn request_answering(p: &Phone, seen: &mut Vec<String>) -> Option<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = p.recv(left).await?;
        if m.starts_with("NOTIFY ") || m.starts_with("BYE ") {
            p.send(dialog::reply(&m, 200, "OK", None, "", "").as_bytes())
                .await;
            seen.push(m);
            continue;
        }
        return Some(m);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attended_transfer_joins_alice_and_carol_and_lets_bob_go() {
    let s = Sipd::start_with_mediad(&[]).await;
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // alice and carol are baresip; bob is the test's own phone (baresip
    // 1.0 has no attended transfer), sending what desk phones send.
    let mut phones = Vec::new();
    for (name, pw, ext, extra, hz) in [
        ("alice", "pw-alice-2026", "101", "", CALLER_HZ),
        (
            "carol",
            "pw-carol-2026",
            "103",
            ";answermode=auto",
            TARGET_HZ,
        ),
    ] {
        s.add_device(name, pw, ext).await;
        phones.push(Baresip::spawn(
            root,
            name,
            &account(name, pw, &s, extra),
            &tone_file(root, hz),
            90,
        ));
    }
    s.add_device("bob", "pw-bob-2026-x", "102").await;
    let bob = Phone::udp(&s, "bob").await.with_password("pw-bob-2026-x");
    assert_eq!(bob.register(&dialog::contact(&bob)).await.code(), 200);
    s.eventually("three phones registered", || async {
        s.registrations().await.len() == 3
    })
    .await;
    for p in &mut phones {
        p.connect().await;
    }
    let [mut alice, mut carol]: [Baresip; 2] = phones.try_into().ok().unwrap();
    alice
        .command("dial", &format!("sip:102@{}", s.sip))
        .await
        .unwrap();
    // bob answers alice's call.
    let mut seen = Vec::new();
    let to_bob = request_answering(&bob, &mut seen)
        .await
        .expect("alice's call");
    assert!(to_bob.starts_with("INVITE "), "{to_bob}");
    let first = dialog::Dialog {
        call_id: dialog::header(&to_bob, "call-id").unwrap(),
        local_tag: "bob1".into(),
        remote_tag: dialog::tag(&dialog::header(&to_bob, "from").unwrap()),
        target: format!("sip:gosip@{}", s.sip),
    };
    bob.send(
        dialog::reply(
            &to_bob,
            200,
            "OK",
            Some("bob1"),
            &dialog::contact(&bob),
            &dialog::sdp(4002, "sendrecv"),
        )
        .as_bytes(),
    )
    .await;
    alice
        .event("CALL_ESTABLISHED", Duration::from_secs(15))
        .await
        .unwrap();
    // bob's consult call to carol, who answers by herself.
    let consult = dialog::send_authenticated_invite(&bob, "consult-1", "103", 1).await;
    let ok = loop {
        let m = request_or_response(&bob, &mut seen).await;
        if m.starts_with("SIP/2.0 200") && m.contains("2 INVITE") {
            break common::Resp(m);
        }
    };
    bob.send(dialog::ack_for(&consult, &ok).as_bytes()).await;
    carol
        .event("CALL_ESTABLISHED", Duration::from_secs(15))
        .await
        .unwrap();
    // bob's Transfer key: a REFER to alice naming the consult call.
    let replaces = format!(
        "consult-1;to-tag={};from-tag=a1",
        dialog::tag(&ok.header("to").unwrap())
    )
    .replace('@', "%40")
    .replace(';', "%3B")
    .replace('=', "%3D");
    let refer = first.request(
        &bob,
        "REFER",
        1,
        &format!(
            "Refer-To: <sip:103@{}?Replaces={replaces}>\r\n{}",
            s.sip,
            dialog::contact(&bob)
        ),
        "",
    );
    bob.send(refer.as_bytes()).await;
    let accepted = loop {
        let m = request_or_response(&bob, &mut seen).await;
        if m.contains("1 REFER") {
            break m;
        }
    };
    assert!(accepted.starts_with("SIP/2.0 202"), "{accepted}");
    // bob hears it worked and is let go from both calls.
    let done = |seen: &[String]| {
        seen.iter().filter(|m| m.starts_with("BYE ")).count() == 2
            && seen
                .iter()
                .any(|m| m.starts_with("NOTIFY ") && m.contains("SIP/2.0 200"))
    };
    while !done(&seen) {
        let m = request_answering(&bob, &mut seen).await;
        assert!(m.is_some() || done(&seen), "bob was not let go: {seen:?}");
    }
    tokio::time::sleep(TALK).await;
    let (alice_heard, carol_heard) = hang_up(&mut alice, &mut carol).await;
    alice.quit().await;
    carol.quit().await;
    assert_heard(
        &alice_heard,
        TARGET_HZ,
        CALLER_HZ,
        "alice should have heard carol",
    );
    assert_heard(
        &carol_heard,
        CALLER_HZ,
        TARGET_HZ,
        "carol should have heard alice",
    );
    let q = "SELECT reason FROM cdrs WHERE ended_at IS NOT NULL ORDER BY id";
    s.eventually("both calls' cdrs are closed", || async {
        sqlx::query(q).fetch_all(&s.pool).await.unwrap().len() == 2
    })
    .await;
    let reasons: Vec<(Option<String>,)> = sqlx::query_as(q).fetch_all(&s.pool).await.unwrap();
    assert!(
        reasons.iter().any(|(r,)| r
            .as_deref()
            .unwrap_or_default()
            .contains("transferred by 102 to 103 (attended)")),
        "{reasons:?}"
    );
    s.stop().await;
}

/// bob (the test's phone) places a call to `dialed` on Call-ID `call_id`
/// and ACKs its 200; sipd's tag in that dialog.
async fn bob_places(bob: &Phone, seen: &mut Vec<String>, call_id: &str, dialed: &str) -> String {
    let invite = dialog::send_authenticated_invite(bob, call_id, dialed, 1).await;
    let ok = loop {
        let m = request_or_response(bob, seen).await;
        if m.starts_with("SIP/2.0 200") && m.contains("2 INVITE") && m.contains(call_id) {
            break common::Resp(m);
        }
    };
    bob.send(dialog::ack_for(&invite, &ok).as_bytes()).await;
    dialog::tag(&ok.header("to").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_called_both_joins_them_by_attended_transfer() {
    let s = Sipd::start_with_mediad(&[]).await;
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let mut phones = Vec::new();
    for (name, pw, ext, hz) in [
        ("alice", "pw-alice-2026", "101", CALLER_HZ),
        ("carol", "pw-carol-2026", "103", TARGET_HZ),
    ] {
        s.add_device(name, pw, ext).await;
        let acct = account(name, pw, &s, ";answermode=auto");
        phones.push(Baresip::spawn(root, name, &acct, &tone_file(root, hz), 90));
    }
    s.add_device("bob", "pw-bob-2026-x", "102").await;
    let bob = Phone::udp(&s, "bob").await.with_password("pw-bob-2026-x");
    assert_eq!(bob.register(&dialog::contact(&bob)).await.code(), 200);
    s.eventually("three phones registered", || async {
        s.registrations().await.len() == 3
    })
    .await;
    for p in &mut phones {
        p.connect().await;
    }
    let [mut alice, mut carol]: [Baresip; 2] = phones.try_into().ok().unwrap();
    // bob calls alice, then carol (both answer by themselves).
    let mut seen = Vec::new();
    let tag1 = bob_places(&bob, &mut seen, "first-1", "101").await;
    let tag2 = bob_places(&bob, &mut seen, "consult-2", "103").await;
    for p in [&mut alice, &mut carol] {
        p.event("CALL_ESTABLISHED", Duration::from_secs(15))
            .await
            .unwrap();
    }
    // Transfer: a REFER in the call to alice naming the one to carol.
    let replaces = format!("consult-2;to-tag={tag2};from-tag=a1")
        .replace(';', "%3B")
        .replace('=', "%3D");
    let first = dialog::Dialog {
        call_id: "first-1".into(),
        local_tag: "a1".into(),
        remote_tag: tag1,
        target: format!("sip:gosip@{}", s.sip),
    };
    let refer_to = format!("Refer-To: <sip:103@{}?Replaces={replaces}>\r\n", s.sip);
    bob.send(first.request(&bob, "REFER", 5, &refer_to, "").as_bytes())
        .await;
    let accepted = loop {
        let m = request_or_response(&bob, &mut seen).await;
        if m.contains("5 REFER") {
            break m;
        }
    };
    assert!(accepted.starts_with("SIP/2.0 202"), "{accepted}");
    tokio::time::sleep(TALK).await;
    let (alice_heard, carol_heard) = hang_up(&mut alice, &mut carol).await;
    alice.quit().await;
    carol.quit().await;
    assert_eq!(
        seen.iter().filter(|m| m.starts_with("BYE ")).count(),
        2,
        "bob let go from both calls"
    );
    assert_heard(
        &alice_heard,
        TARGET_HZ,
        CALLER_HZ,
        "alice should have heard carol",
    );
    assert_heard(
        &carol_heard,
        CALLER_HZ,
        TARGET_HZ,
        "carol should have heard alice",
    );
    s.stop().await;
}

/// The next message `p` reads (within 10 s), NOTIFY and BYE answered and
/// kept in `seen`.
async fn request_or_response(p: &Phone, seen: &mut Vec<String>) -> String {
    request_answering(p, seen).await.expect("a message")
}

/// The checks above can fail: swapped, missing, mixed or too short audio,
/// and broken WAV headers are all refused.
#[test]
fn the_tone_check_refuses_swapped_missing_mixed_or_short_audio_and_bad_headers() {
    let secs = 3.0;
    let a = sine(RATE, CALLER_HZ, secs, 0.5);
    let b = sine(RATE, CALLEE_HZ, secs, 0.5);
    let silence = vec![0.0f32; a.len()];
    let mixed: Vec<f32> = a.iter().zip(&b).map(|(x, y)| (x + y) / 2.0).collect();
    let bytes = Wav::encode(RATE, &[a.clone(), b.clone()]);
    let wav = Wav::parse(&bytes).unwrap();
    assert_eq!(
        (wav.format, wav.channels, wav.rate, wav.bits, wav.data_len),
        (1, 2, RATE, 16, (a.len() * 4) as u32)
    );
    assert!((wav.seconds() - secs).abs() < 0.01);
    let check = |x: &[f32]| tones(x, RATE, CALLER_HZ, CALLEE_HZ).check(MIN_TONE_SECS);
    check(&wav.samples[0]).unwrap();
    assert!(check(&wav.samples[1]).is_err(), "swapped");
    assert!(check(&silence).is_err(), "missing");
    assert!(check(&mixed).is_err(), "both parties on one channel");
    assert!(check(&a[..RATE as usize]).is_err(), "one second only");
    let noise: Vec<f32> = (0..a.len())
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 16) as f32 / 65536.0 - 0.5)
        .collect();
    assert!(check(&noise).is_err(), "noise");

    assert!(Wav::parse(&bytes[..bytes.len() - 3]).is_err(), "truncated");
    let mut eight_bit = bytes.clone();
    eight_bit[34] = 8;
    assert!(Wav::parse(&eight_bit).is_err(), "8-bit");
    let mut alaw = bytes.clone();
    alaw[20] = 6;
    assert!(Wav::parse(&alaw).is_err(), "A-law, not PCM");
    let mut rate = bytes;
    rate[24..28].copy_from_slice(&16_000u32.to_le_bytes());
    assert!(Wav::parse(&rate).is_err(), "byte rate no longer matches");
}
