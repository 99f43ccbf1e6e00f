//! Voicemail: from Twilio's recording and transcription callbacks to a
//! `voicemails` row with local audio and a notification.
//!
//! * A recording shorter than `voicemail.min_length` (3 s) is discarded and
//!   deleted at Twilio (queued job), and remembered in `voice_recordings` so
//!   a late transcription does nothing.
//! * Otherwise a `voicemails` row is made for the DID's owner (linked to the
//!   call's CDR), and a queued job downloads the audio into
//!   `voicemails/<RecordingSid>.wav`, then deletes Twilio's copy when
//!   `twilio.delete_after_download` says so.
//! * The transcript is added when its callback arrives (before or after
//!   the recording's: both upsert on `recording_sid`). Messages longer than
//!   120 s are marked `unavailable` at once (Twilio does not transcribe them).
//! * When the audio is local and the transcript final, notifyd is asked
//!   (queued, once per recording) to mail the audio and transcript and push.
//!   Blocked callers sent to voicemail silently are kept but not notified.
//! * Callbacks are idempotent: duplicates change nothing.
//! * Voicemails of internal calls, recorded by mediad rather than Twilio,
//!   come from sipd through gRPC `StoreVoicemail` ([`local`]) and share the
//!   rows, the storage and the notice.

pub mod local;

use std::path::Path;
use std::time::Duration;

use crate::AppState;
use crate::notify::{self, Notice};
use crate::queue::{Enqueue, Job, JobError};
use crate::webhooks::WebhookParams;

/// Job kinds.
pub const DOWNLOAD: &str = "voicemail.download";
pub const DELETE_RECORDING: &str = "twilio.delete_recording";
pub const TRANSCRIPT_TIMEOUT: &str = "voicemail.transcript_timeout";

/// Twilio transcribes recordings up to this long (CONTRACT.md §2.6).
pub const MAX_TRANSCRIBED_SECS: i64 = 120;

/// How long to wait for a transcription before notifying without it.
pub const TRANSCRIPT_WAIT: Duration = Duration::from_secs(300);

/// Registers the voicemail job handlers.
pub fn register(st: &AppState) {
    let s = st.clone();
    st.queue.register(DOWNLOAD, move |job: Job| {
        let s = s.clone();
        async move { download(&s, job).await }
    });
    let s = st.clone();
    st.queue.register(DELETE_RECORDING, move |job: Job| {
        let s = s.clone();
        async move {
            let sid = job.payload["recording_sid"].as_str().unwrap_or_default();
            s.twilio.delete_recording(sid).await?;
            tracing::info!(recording_sid = sid, "recording deleted at Twilio");
            Ok(())
        }
    });
    let s = st.clone();
    st.queue.register(TRANSCRIPT_TIMEOUT, move |job: Job| {
        let s = s.clone();
        async move {
            let sid = job.payload["recording_sid"].as_str().unwrap_or_default();
            sqlx::query(
                "UPDATE voicemails SET transcript_status = 'unavailable' \
                 WHERE recording_sid = ? AND transcript_status = 'pending'",
            )
            .bind(sid)
            .execute(&s.pool)
            .await?;
            maybe_notify(&s, sid, None).await?;
            Ok(())
        }
    });
}

/// A recording is complete (Record action or recordingStatusCallback).
pub async fn on_recording(st: &AppState, p: &WebhookParams, silent: bool) {
    let sid = p.str("RecordingSid");
    if let Err(e) = handle_recording(st, p, silent).await {
        // Twilio will retry a failed callback; nothing half-done matters
        // because every step is idempotent.
        tracing::error!(recording_sid = sid, error = %e, "recording callback failed");
    }
}

async fn handle_recording(
    st: &AppState,
    p: &WebhookParams,
    silent: bool,
) -> Result<(), sqlx::Error> {
    let sid = p.str("RecordingSid");
    let call_sid = p.str("CallSid");
    let duration: i64 = p.str("RecordingDuration").trim().parse().unwrap_or(0);
    if sid.is_empty() {
        return Ok(());
    }
    let first = sqlx::query(
        "INSERT INTO voice_recordings (recording_sid, call_sid, duration, silent, created_at) \
         VALUES (?, ?, ?, ?, ?) ON CONFLICT(recording_sid) DO NOTHING",
    )
    .bind(sid)
    .bind(call_sid)
    .bind(duration)
    .bind(silent)
    .bind(proto::time::now())
    .execute(&st.pool)
    .await?
    .rows_affected()
        == 1;
    if !first {
        tracing::debug!(recording_sid = sid, "duplicate recording callback ignored");
        return Ok(());
    }
    if too_short(st, sid, call_sid, duration).await? {
        return Ok(());
    }
    // None while sipd is away: the record is queued and links this
    // voicemail once written (`call_record::link_voicemail`).
    let change = crate::call_record::voicemail(p.str("From"), p.str("To"));
    let cdr_id = crate::call_record::record(st, call_sid, change).await;
    let (did_id, user_id) = owner(st, call_sid, p.str("To")).await?;
    let status = if duration > MAX_TRANSCRIBED_SECS {
        "unavailable"
    } else {
        "pending"
    };
    sqlx::query(
        "INSERT INTO voicemails (cdr_id, user_id, did_id, call_sid, recording_sid, from_number, duration, \
                                 transcript_status, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT(recording_sid) DO UPDATE SET cdr_id = coalesce(excluded.cdr_id, voicemails.cdr_id), duration = excluded.duration, \
             transcript_status = CASE WHEN excluded.transcript_status = 'unavailable' \
                                      THEN 'unavailable' ELSE voicemails.transcript_status END",
    )
    .bind(cdr_id)
    .bind(user_id)
    .bind(did_id)
    .bind(call_sid)
    .bind(sid)
    .bind(p.str("From"))
    .bind(duration)
    .bind(status)
    .bind(proto::time::now())
    .execute(&st.pool)
    .await?;
    if cdr_id.is_none() {
        // The queued record may have been written in between.
        crate::call_record::link_voicemail(&st.pool, call_sid).await?;
    }
    tracing::info!(
        recording_sid = sid,
        call_sid,
        duration,
        ?user_id,
        "voicemail received"
    );
    recording_job(st, DOWNLOAD, sid, Duration::ZERO).await?;
    Ok(())
}

/// A recording shorter than `voicemail.min_length` is no message: it is
/// marked discarded, any row of it removed and the audio deleted at Twilio.
/// True when it was.
async fn too_short(
    st: &AppState,
    sid: &str,
    call_sid: &str,
    duration: i64,
) -> Result<bool, sqlx::Error> {
    let min = st.settings.get().u64("voicemail.min_length") as i64;
    if duration >= min {
        return Ok(false);
    }
    sqlx::query("UPDATE voice_recordings SET discarded = TRUE WHERE recording_sid = ?")
        .bind(sid)
        .execute(&st.pool)
        .await?;
    sqlx::query("DELETE FROM voicemails WHERE recording_sid = ?")
        .bind(sid)
        .execute(&st.pool)
        .await?;
    tracing::info!(
        recording_sid = sid,
        call_sid,
        duration,
        min,
        "voicemail too short: discarded"
    );
    recording_job(st, DELETE_RECORDING, sid, Duration::ZERO).await?;
    Ok(true)
}

/// Queues job `kind` for recording `sid`, once per kind and recording,
/// to run `delay` from now.
async fn recording_job(
    st: &AppState,
    kind: &str,
    sid: &str,
    delay: Duration,
) -> Result<i64, sqlx::Error> {
    let opts = Enqueue::key(format!("{kind}:{sid}")).delay(delay);
    st.queue
        .enqueue(kind, &serde_json::json!({"recording_sid": sid}), opts)
        .await
}

/// A transcription callback (completed or failed).
pub async fn on_transcription(st: &AppState, p: &WebhookParams, silent: bool) {
    let sid = p.str("RecordingSid").to_owned();
    if let Err(e) = handle_transcription(st, p, silent).await {
        tracing::error!(recording_sid = %sid, error = %e, "transcription callback failed");
    }
}

async fn handle_transcription(
    st: &AppState,
    p: &WebhookParams,
    _silent: bool,
) -> Result<(), sqlx::Error> {
    let sid = p.str("RecordingSid");
    if sid.is_empty() {
        return Ok(());
    }
    let discarded: Option<bool> =
        sqlx::query_scalar("SELECT discarded FROM voice_recordings WHERE recording_sid = ?")
            .bind(sid)
            .fetch_optional(&st.pool)
            .await?;
    if discarded == Some(true) {
        tracing::debug!(
            recording_sid = sid,
            "transcription of a discarded recording ignored"
        );
        return Ok(());
    }
    let (status, text) = match p.str("TranscriptionStatus") {
        "completed" => ("completed", Some(p.str("TranscriptionText").to_owned())),
        _ => ("failed", None),
    };
    let call_sid = p.str("CallSid");
    let (did_id, user_id) = owner(st, call_sid, p.str("To")).await?;
    // Either order: create the row if the recording callback is still to
    // come, else fill the transcript in ('unavailable' stays).
    sqlx::query(
        "INSERT INTO voicemails (user_id, did_id, call_sid, recording_sid, from_number, transcript, \
                                 transcript_status, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT(recording_sid) DO UPDATE SET \
             transcript = coalesce(excluded.transcript, voicemails.transcript), \
             transcript_status = CASE WHEN voicemails.transcript_status IN ('unavailable', 'completed') \
                                      THEN voicemails.transcript_status ELSE excluded.transcript_status END",
    )
    .bind(user_id)
    .bind(did_id)
    .bind(call_sid)
    .bind(sid)
    .bind(p.str("From"))
    .bind(&text)
    .bind(status)
    .bind(proto::time::now())
    .execute(&st.pool)
    .await?;
    tracing::info!(recording_sid = sid, status, "voicemail transcription");
    maybe_notify(st, sid, None).await?;
    Ok(())
}

/// The DID and its owner for a call (from the stored decision, else `To`).
async fn owner(
    st: &AppState,
    call_sid: &str,
    to: &str,
) -> Result<(Option<i64>, Option<i64>), sqlx::Error> {
    let row: Option<(Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT did_id, user_id FROM voice_calls WHERE call_sid = ?")
            .bind(call_sid)
            .fetch_optional(&st.pool)
            .await?;
    if let Some(r) = row {
        return Ok(r);
    }
    let row: Option<(i64, Option<i64>)> =
        sqlx::query_as("SELECT id, owner_user_id FROM dids WHERE number = ?")
            .bind(to)
            .fetch_optional(&st.pool)
            .await?;
    Ok(row.map(|(d, u)| (Some(d), u)).unwrap_or((None, None)))
}

/// Stores a voicemail's audio; answers its path relative to the data dir.
/// What callers said is readable by GoSIP alone (0600 in a 0700 folder),
/// whatever the umask.
async fn store_audio(data_dir: &Path, sid: &str, audio: &[u8]) -> std::io::Result<String> {
    // A recording SID is letters and digits (RE + 32 hex); anything else
    // would name a file outside `voicemails/`.
    if sid.is_empty() || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a recording SID",
        ));
    }
    let rel = format!("voicemails/{sid}.wav");
    proto::db::write_private_atomic(&data_dir.join(&rel), audio).await?;
    Ok(rel)
}

async fn download(st: &AppState, job: Job) -> Result<(), JobError> {
    let sid = job.payload["recording_sid"]
        .as_str()
        .ok_or_else(|| JobError::Permanent("no recording_sid".into()))?
        .to_owned();
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT id FROM voicemails WHERE recording_sid = ?")
            .bind(&sid)
            .fetch_optional(&st.pool)
            .await?;
    if exists.is_none() {
        return Ok(()); // discarded meanwhile
    }
    let audio = st.twilio.download_recording(&sid).await?;
    if audio.len() < 44 {
        return Err(JobError::retry("recording media is empty"));
    }
    let rel = store_audio(&st.data_dir, &sid, &audio).await.map_err(|e| {
        let msg = format!("store voicemail {sid}: {e}");
        if e.kind() == std::io::ErrorKind::InvalidInput {
            JobError::Permanent(msg)
        } else {
            JobError::retry(msg)
        }
    })?;
    sqlx::query("UPDATE voicemails SET audio_url = ? WHERE recording_sid = ?")
        .bind(&rel)
        .bind(&sid)
        .execute(&st.pool)
        .await?;
    sqlx::query("UPDATE voice_recordings SET downloaded = TRUE WHERE recording_sid = ?")
        .bind(&sid)
        .execute(&st.pool)
        .await?;
    tracing::info!(recording_sid = %sid, bytes = audio.len(), path = %rel, "voicemail audio stored");
    if st.settings.get().bool("twilio.delete_after_download") {
        recording_job(st, DELETE_RECORDING, &sid, Duration::ZERO).await?;
    }
    if !maybe_notify(st, &sid, None).await? {
        recording_job(st, TRANSCRIPT_TIMEOUT, &sid, TRANSCRIPT_WAIT).await?;
    }
    Ok(())
}

/// Queues the notification once the audio is local and the transcript is
/// final. Returns true when nothing is left to wait for. `caller_name` is
/// the caller's display name when it is known (a local caller's device),
/// which the email shows beside the number.
async fn maybe_notify(
    st: &AppState,
    sid: &str,
    caller_name: Option<&str>,
) -> Result<bool, sqlx::Error> {
    type Row = (
        i64,
        Option<i64>,
        String,
        i64,
        Option<String>,
        String,
        Option<String>,
        bool,
        Option<String>,
        String,
        Option<String>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT v.id, v.user_id, v.from_number, v.duration, v.transcript, v.transcript_status, v.audio_url, \
                r.silent, d.number, v.created_at, d.name \
         FROM voicemails v JOIN voice_recordings r ON r.recording_sid = v.recording_sid \
         LEFT JOIN dids d ON d.id = v.did_id WHERE v.recording_sid = ?",
    )
    .bind(sid)
    .fetch_optional(&st.pool)
    .await?;
    let Some((id, user_id, from, duration, transcript, tstatus, audio, silent, did, at, did_name)) =
        row
    else {
        return Ok(false);
    };
    let Some(audio) = audio else {
        return Ok(false);
    };
    if tstatus == "pending" {
        return Ok(false);
    }
    if silent {
        return Ok(true);
    }
    let claimed = sqlx::query(
        "UPDATE voice_recordings SET notified = TRUE WHERE recording_sid = ? AND NOT notified",
    )
    .bind(sid)
    .execute(&st.pool)
    .await?
    .rows_affected()
        == 1;
    if claimed {
        let mut payload = serde_json::json!({
                "voicemail_id": id,
                "from": from,
                "to": did,
                "did_name": did_name.unwrap_or_default(),
                "received_at": at,
                "duration": duration,
                "transcript": transcript,
                "transcript_status": tstatus,
                "audio": audio,
        });
        // notifyd leaves a missing field out rather than showing it empty.
        if let Some(name) = caller_name.filter(|n| !n.is_empty()) {
            payload["caller_name"] = name.into();
        }
        let notice = Notice {
            kind: "voicemail".into(),
            user_id: user_id.unwrap_or(0),
            payload,
            attachments: vec![audio],
        };
        notify::enqueue(&st.queue, notice, Some(format!("notify:voicemail:{sid}"))).await?;
        tracing::info!(
            recording_sid = sid,
            voicemail_id = id,
            "voicemail notification queued"
        );
    }
    Ok(true)
}

/// Marks voicemail `id` read or unread (the web UI, or the phone); false
/// when it does not exist. The phones' message lights follow within
/// seconds (sipd reads the counts).
pub async fn set_read(
    pool: &sqlx::SqlitePool,
    id: i64,
    is_read: bool,
) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("UPDATE voicemails SET is_read = ? WHERE id = ?")
            .bind(is_read)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
            > 0,
    )
}

/// Deletes voicemail `id` and its audio; false when it does not exist.
pub async fn delete(
    pool: &sqlx::SqlitePool,
    data_dir: &Path,
    id: i64,
) -> Result<bool, sqlx::Error> {
    let audio: Option<Option<String>> =
        sqlx::query_scalar("DELETE FROM voicemails WHERE id = ? RETURNING audio_url")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    let Some(audio) = audio else {
        return Ok(false);
    };
    // Only a file of ours under voicemails/ (the path is our own column,
    // but a restored database is input too).
    if let Some(rel) = audio.filter(|p| p.starts_with("voicemails/") && !p.contains(".."))
        && let Err(e) = tokio::fs::remove_file(data_dir.join(&rel)).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %rel, error = %e, "cannot delete the voicemail's audio");
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::store_audio;

    const CHILD: &str = "GOSIP_TEST_OPEN_UMASK";

    /// Runs test `name` again in a child process whose umask is 0, where
    /// `body` runs: every file made with default modes there is
    /// world-writable. The umask belongs to the whole process, so setting
    /// it here would reach the tests running beside this one.
    fn in_child_with_open_umask(name: &str, body: impl FnOnce()) {
        if std::env::var_os(CHILD).is_some() {
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            body();
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the child ran no test: {text}");
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn voicemails_and_mms_media_are_private_whatever_the_umask() {
        in_child_with_open_umask(
            "voicemail::tests::voicemails_and_mms_media_are_private_whatever_the_umask",
            || {
                let d = tempfile::tempdir().unwrap();
                let data = d.path().join("data");
                // The umask really is open here: a plain write is 0666.
                std::fs::create_dir(&data).unwrap();
                std::fs::write(data.join("plain"), b"").unwrap();
                assert_eq!(mode(&data.join("plain")), 0o666);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    // The folders do not exist yet: made 0700 on the way.
                    let rel = store_audio(&data, "RE0123456789abcdef0123456789abcdef", b"RIFF")
                        .await
                        .unwrap();
                    assert_eq!(rel, "voicemails/RE0123456789abcdef0123456789abcdef.wav");
                    crate::sms::media::store(&data, "media/MM1-0.jpg", b"\xFF\xD8\xFF")
                        .await
                        .unwrap();
                    for (file, bytes) in
                        [(&*rel, &b"RIFF"[..]), ("media/MM1-0.jpg", b"\xFF\xD8\xFF")]
                    {
                        let p = data.join(file);
                        assert_eq!(std::fs::read(&p).unwrap(), bytes);
                        assert_eq!(mode(&p), 0o600, "{file}");
                        assert_eq!(mode(p.parent().unwrap()), 0o700, "{file}");
                    }
                    // A SID that would leave the folder is refused.
                    let e = store_audio(&data, "../gosip", b"RIFF").await.unwrap_err();
                    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
                    assert!(!data.join("gosip.wav").exists());
                });
            },
        );
    }
}
