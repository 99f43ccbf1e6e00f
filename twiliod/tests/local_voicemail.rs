#![allow(clippy::unwrap_used, clippy::expect_used)]
//! gRPC `StoreVoicemail`: a voicemail of an internal call, recorded by
//! mediad into `voicemails/incoming/`, handed over by sipd. Runs twiliod's
//! service on a fresh data dir (no sockets: the methods are called
//! directly) and checks the rows, the files and the queued notice.

use clap::Parser;
use proto::pb::twiliod::twiliod_server::Twiliod;
use proto::pb::twiliod::{StoreVoicemailReply, StoreVoicemailRequest};
use tonic::{Code, Request, Status};
use twiliod::AppState;
use twiliod::grpc::Service;

struct Harness {
    _dir: tempfile::TempDir,
    st: AppState,
    svc: Service,
}

/// twiliod's state on an empty data dir with one user (id 1) and sipd's
/// CDR of the call `call-4s@pbx`.
async fn twiliod() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let cfg = twiliod::Config::parse_from(["twiliod", "--data-dir", data]);
    let pool = proto::db::open(dir.path()).await.unwrap();
    let settings = proto::settings::SettingsHandle::new(pool.clone())
        .await
        .unwrap();
    let st = AppState::build(&cfg, pool, settings).await.unwrap();
    sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, role) \
         VALUES (1, 'alice@example.com', 'Alice', 'x', 'user')",
    )
    .execute(&st.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO cdrs (id, sip_call_id, direction, from_number, to_number, user_id, started_at) \
         VALUES (7, 'call-4s@pbx', 'internal', '101', '102', 1, '2026-01-01T10:00:00Z')",
    )
    .execute(&st.pool)
    .await
    .unwrap();
    std::fs::create_dir_all(dir.path().join("voicemails/incoming")).unwrap();
    let svc = Service::new(st.clone());
    Harness { _dir: dir, st, svc }
}

/// A WAV as mediad records it: `secs` seconds of a 440 Hz tone, 8 kHz
/// mono PCM 16-bit.
fn wav(secs: u32) -> Vec<u8> {
    let rate = 8000u32;
    let samples = rate * secs;
    let data_len = samples * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let t = i as f32 / rate as f32;
        let s = ((t * 440.0 * std::f32::consts::TAU).sin() * 8000.0) as i16;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

impl Harness {
    /// Puts a recording of `secs` seconds where mediad leaves it; answers
    /// its path relative to the data dir.
    fn recorded(&self, call_id: &str, secs: u32) -> String {
        let rel = format!("voicemails/incoming/{call_id}.wav");
        std::fs::write(self.st.data_dir.join(&rel), wav(secs)).unwrap();
        rel
    }

    async fn store(
        &self,
        call_id: &str,
        user_id: i64,
        wav_path: &str,
    ) -> Result<StoreVoicemailReply, Status> {
        let req = StoreVoicemailRequest {
            call_id: call_id.into(),
            user_id,
            from_number: "101".into(),
            from_name: "Bob desk".into(),
            wav_path: wav_path.into(),
        };
        self.svc
            .store_voicemail(Request::new(req))
            .await
            .map(|r| r.into_inner())
    }

    /// The notify jobs queued, as (payload, idempotency key).
    async fn notices(&self) -> Vec<(serde_json::Value, String)> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT payload, idempotency_key FROM jobs WHERE kind = 'notify' ORDER BY id",
        )
        .fetch_all(&self.st.pool)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(p, k)| (serde_json::from_str(&p).unwrap(), k))
            .collect()
    }

    async fn voicemail_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM voicemails")
            .fetch_one(&self.st.pool)
            .await
            .unwrap()
    }
}

type Row = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    i64,
    bool,
);

#[tokio::test]
async fn a_long_enough_recording_becomes_a_voicemail_with_its_notice() {
    let t = twiliod().await;
    let rel = t.recorded("call-4s@pbx", 4);
    let r = t.store("call-4s@pbx", 1, &rel).await.unwrap();
    assert!(r.stored, "{r:?}");
    assert!(r.voicemail_id > 0);
    assert_eq!(r.why_not, "");

    let row: Row = sqlx::query_as(
        "SELECT cdr_id, user_id, did_id, call_sid, recording_sid, from_number, audio_url, \
                transcript, transcript_status, duration, is_read FROM voicemails WHERE id = ?",
    )
    .bind(r.voicemail_id)
    .fetch_one(&t.st.pool)
    .await
    .unwrap();
    let audio = format!("voicemails/local-{}.wav", r.voicemail_id);
    assert_eq!(
        row,
        (
            Some(7),
            Some(1),
            None,
            None,
            "local:call-4s@pbx".into(),
            "101".into(),
            Some(audio.clone()),
            None,
            "unavailable".into(),
            4,
            false,
        )
    );

    // Moved, not copied, and GoSIP's alone.
    assert!(!t.st.data_dir.join(&rel).exists());
    let kept = t.st.data_dir.join(&audio);
    assert_eq!(std::fs::read(&kept).unwrap(), wav(4));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The notice a Twilio voicemail gets, with the caller's name.
    let n = t.notices().await;
    assert_eq!(n.len(), 1, "{n:?}");
    let (job, key) = &n[0];
    assert_eq!(key, "notify:voicemail:local:call-4s@pbx");
    assert_eq!(job["kind"], "voicemail");
    assert_eq!(job["user_id"], 1);
    assert_eq!(job["attachments"], serde_json::json!([audio]));
    let p = &job["payload"];
    assert_eq!(p["voicemail_id"], r.voicemail_id);
    assert_eq!(p["from"], "101");
    assert_eq!(p["caller_name"], "Bob desk");
    assert_eq!(p["duration"], 4);
    assert_eq!(p["transcript"], serde_json::Value::Null);
    assert_eq!(p["transcript_status"], "unavailable");
}

#[tokio::test]
async fn a_retry_answers_the_same_voicemail_and_notifies_once() {
    let t = twiliod().await;
    let rel = t.recorded("call-retry@pbx", 4);
    let first = t.store("call-retry@pbx", 1, &rel).await.unwrap();
    // The file is gone now; the retry still finds the voicemail.
    let again = t.store("call-retry@pbx", 1, &rel).await.unwrap();
    assert_eq!(again, first);
    assert!(again.stored);
    assert_eq!(t.voicemail_count().await, 1);
    assert_eq!(t.notices().await.len(), 1);
    // No CDR of this call: none linked.
    let cdr: Option<i64> = sqlx::query_scalar("SELECT cdr_id FROM voicemails WHERE id = ?")
        .bind(first.voicemail_id)
        .fetch_one(&t.st.pool)
        .await
        .unwrap();
    assert_eq!(cdr, None);
}

#[tokio::test]
async fn a_retry_after_a_crash_before_the_move_finishes_the_job() {
    let t = twiliod().await;
    let rel = t.recorded("call-crash@pbx", 5);
    let first = t.store("call-crash@pbx", 1, &rel).await.unwrap();
    // As if twiliod had died after writing the rows: the file back where
    // mediad left it, no audio recorded, no notice yet.
    let audio = format!("voicemails/local-{}.wav", first.voicemail_id);
    std::fs::rename(t.st.data_dir.join(&audio), t.st.data_dir.join(&rel)).unwrap();
    for q in [
        "UPDATE voicemails SET audio_url = NULL",
        "UPDATE voice_recordings SET notified = FALSE, downloaded = FALSE",
        "DELETE FROM jobs",
    ] {
        sqlx::query(q).execute(&t.st.pool).await.unwrap();
    }
    let again = t.store("call-crash@pbx", 1, &rel).await.unwrap();
    assert_eq!(again, first);
    assert!(!t.st.data_dir.join(&rel).exists());
    assert!(t.st.data_dir.join(&audio).exists());
    let url: Option<String> = sqlx::query_scalar("SELECT audio_url FROM voicemails")
        .fetch_one(&t.st.pool)
        .await
        .unwrap();
    assert_eq!(url, Some(audio));
    assert_eq!(t.notices().await.len(), 1);
}

#[tokio::test]
async fn a_recording_shorter_than_the_minimum_is_refused_and_deleted() {
    let t = twiliod().await;
    let rel = t.recorded("call-2s@pbx", 2);
    let r = t.store("call-2s@pbx", 1, &rel).await.unwrap();
    assert_eq!(
        r,
        StoreVoicemailReply {
            stored: false,
            voicemail_id: 0,
            why_not: "shorter than 3 s".into(),
        }
    );
    assert!(!t.st.data_dir.join(&rel).exists());
    assert_eq!(t.voicemail_count().await, 0);
    assert!(t.notices().await.is_empty());
    // A retry hears the same refusal, not that the file is missing.
    assert_eq!(t.store("call-2s@pbx", 1, &rel).await.unwrap(), r);
}

#[tokio::test]
async fn paths_outside_the_incoming_folder_are_invalid() {
    let t = twiliod().await;
    t.recorded("call-x@pbx", 4);
    std::fs::write(t.st.data_dir.join("voicemails/elsewhere.wav"), wav(4)).unwrap();
    let abs = t.st.data_dir.join("voicemails/incoming/call-x@pbx.wav");
    for bad in [
        "voicemails/incoming/../elsewhere.wav",
        "voicemails/incoming/../../gosip.db",
        "voicemails/elsewhere.wav",
        "recordings/call-x@pbx.wav",
        "voicemails/incoming",
        "voicemails/incoming/",
        "",
        abs.to_str().unwrap(),
    ] {
        let e = t.store("call-x@pbx", 1, bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e:?}");
        assert!(e.message().starts_with("wav_path:"), "{bad}: {e:?}");
    }
    // Nothing was touched.
    assert!(t.st.data_dir.join("voicemails/elsewhere.wav").exists());
    assert!(abs.exists());
    assert_eq!(t.voicemail_count().await, 0);
}

#[tokio::test]
async fn an_unknown_user_or_a_missing_file_is_not_found() {
    let t = twiliod().await;
    let rel = t.recorded("call-u@pbx", 4);
    let e = t.store("call-u@pbx", 99, &rel).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("user"), "{e:?}");
    assert!(t.st.data_dir.join(&rel).exists(), "kept for a retry");

    let e = t
        .store("call-none@pbx", 1, "voicemails/incoming/none.wav")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert_eq!(t.voicemail_count().await, 0);
}

#[tokio::test]
async fn an_empty_call_id_or_a_file_that_is_no_wav_is_invalid() {
    let t = twiliod().await;
    let rel = t.recorded("call-e@pbx", 4);
    let e = t.store("  ", 1, &rel).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    let junk = "voicemails/incoming/junk.wav";
    std::fs::write(t.st.data_dir.join(junk), b"not audio at all").unwrap();
    let e = t.store("call-junk@pbx", 1, junk).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(t.voicemail_count().await, 0);
}
