//! What the tests with real softphones share: the tones each party
//! speaks, baresip accounts on sipd, hanging up, and the check of what a
//! phone heard. Included by the test files that also include the e2e
//! `audio` and `baresip` modules.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audio::{Wav, sine, tones};
use crate::baresip::Baresip;
use crate::common::Sipd;

pub const RATE: u32 = 8000;
pub const CALLER_HZ: f64 = 440.0;
pub const CALLEE_HZ: f64 = 1000.0;
/// How long the phones talk once audio flows both ways.
pub const TALK: Duration = Duration::from_secs(4);
/// Tone each side must show, well under TALK so a slow start does not fail.
pub const MIN_TONE_SECS: f64 = 2.0;

/// A mono 8 kHz 16-bit tone file long enough to outlast the call
/// (baresip 1.0's aufile stops at the end of its file).
pub fn tone_file(dir: &Path, hz: f64) -> PathBuf {
    let p = dir.join(format!("tone_{hz}.wav"));
    std::fs::write(&p, Wav::encode(RATE, &[sine(RATE, hz, 60.0, 0.5)])).unwrap();
    p
}

pub fn account(user: &str, password: &str, s: &Sipd, extra: &str) -> String {
    format!(
        "<sip:{user}@{};transport=udp>;auth_pass={password};regint=300;audio_codecs=PCMU,PCMA{extra}",
        s.sip
    )
}

/// `caller` hangs up and `other` sees the call closed; what each heard.
pub async fn hang_up(caller: &mut Baresip, other: &mut Baresip) -> (PathBuf, PathBuf) {
    caller.command("hangup", "").await.unwrap();
    other
        .event("CALL_CLOSED", Duration::from_secs(10))
        .await
        .unwrap();
    (
        caller.dump(true).expect("the first phone's dump"),
        other.dump(true).expect("the second phone's dump"),
    )
}

/// `dump` (what a phone heard) holds `want` for at least MIN_TONE_SECS
/// and not `other`.
pub fn assert_heard(dump: &Path, want: f64, other: f64, what: &str) {
    let heard = Wav::read(dump).unwrap();
    tones(&heard.samples[0], heard.rate, want, other)
        .check(MIN_TONE_SECS)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}
