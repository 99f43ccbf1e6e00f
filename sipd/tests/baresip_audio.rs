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

use std::path::{Path, PathBuf};
use std::time::Duration;

use audio::{Wav, sine, tones};
use baresip::Baresip;
use common::Sipd;

const RATE: u32 = 8000;
const CALLER_HZ: f64 = 440.0;
const CALLEE_HZ: f64 = 1000.0;
/// How long the phones talk once audio flows both ways.
const TALK: Duration = Duration::from_secs(4);
/// Tone each side must show, well under TALK so a slow start does not fail.
const MIN_TONE_SECS: f64 = 2.0;

/// A mono 8 kHz 16-bit tone file long enough to outlast the call
/// (baresip 1.0's aufile stops at the end of its file).
fn tone_file(dir: &Path, hz: f64) -> PathBuf {
    let p = dir.join(format!("tone_{hz}.wav"));
    std::fs::write(&p, Wav::encode(RATE, &[sine(RATE, hz, 60.0, 0.5)])).unwrap();
    p
}

fn account(user: &str, password: &str, s: &Sipd, extra: &str) -> String {
    format!(
        "<sip:{user}@{};transport=udp>;auth_pass={password};regint=300;audio_codecs=PCMU,PCMA{extra}",
        s.sip
    )
}

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
