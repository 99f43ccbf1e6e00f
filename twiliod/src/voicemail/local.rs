//! Voicemails recorded here rather than at Twilio: an internal call nobody
//! answered, which sipd answered and mediad recorded to
//! `voicemails/incoming/<file>.wav`. sipd hands each over (gRPC
//! `StoreVoicemail`) and it becomes a voicemail like a Twilio one: the same
//! minimum length, the same rows, notice and UI, but no transcript (there
//! is no local speech-to-text, so `transcript_status` is `unavailable`).
//!
//! * The call's Call-ID keys everything (`recording_sid = "local:<Call-ID>"`,
//!   UNIQUE in both `voicemails` and `voice_recordings`), so however often
//!   sipd retries there is one voicemail and one notice.
//! * Each step can be repeated, so a retry after a crash anywhere finishes
//!   the job instead of losing the message: the rows (one transaction),
//!   then the file moved to `voicemails/local-<id>.wav`, then `audio_url`,
//!   then the notice (once, through the `notified` claim Twilio voicemails
//!   use). A message too short is remembered as discarded first, then its
//!   file deleted, so a retry answers the same refusal.

use std::path::{Component, Path};
use std::time::Duration;

use proto::pb::twiliod::StoreVoicemailRequest;
use tokio::io::AsyncReadExt;

use crate::AppState;
use crate::wav::{self, WavError};

/// `recording_sid` of a local voicemail is this and sipd's Call-ID; Twilio's
/// SIDs (`RE` + hex) never contain a colon.
pub const SID_PREFIX: &str = "local:";

/// Where mediad leaves recordings for twiliod to take.
const INCOMING: &str = "voicemails/incoming";

/// What became of a handed-over recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Voicemail `id` holds it.
    Kept(i64),
    /// Shorter than `voicemail.min_length` (whole seconds): deleted.
    TooShort { min_secs: u64 },
}

/// Why a recording was not taken; a retry helps only for `Db` and `Io`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("call_id: must not be empty")]
    NoCallId,
    #[error("user_id: no user {0}")]
    NoUser(i64),
    #[error("wav_path: must be a file under {INCOMING}/ (relative, no `..`)")]
    BadPath,
    #[error("wav_path: {0} does not exist")]
    Missing(String),
    #[error("wav_path: {path}: {source}")]
    NotWav { path: String, source: WavError },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl From<StoreError> for tonic::Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoUser(_) | StoreError::Missing(_) => {
                tonic::Status::not_found(e.to_string())
            }
            StoreError::NoCallId | StoreError::BadPath | StoreError::NotWav { .. } => {
                tonic::Status::invalid_argument(e.to_string())
            }
            StoreError::Db(_) | StoreError::Io { .. } => {
                tracing::error!(error = %e, "cannot store a local voicemail");
                tonic::Status::unavailable(e.to_string())
            }
        }
    }
}

/// Whether `rel` is a plain relative path of a file inside `voicemails/incoming/`.
pub fn is_incoming_path(rel: &str) -> bool {
    let mut comps = Path::new(rel).components();
    let mut prefix = Path::new(INCOMING).components();
    prefix.all(|want| comps.next() == Some(want))
        && comps.clone().next().is_some()
        && comps.all(|c| matches!(c, Component::Normal(_)))
}

/// Stores the voicemail sipd hands over (see the module's notes); a repeated
/// call for the same Call-ID answers what the first one did.
pub async fn store(st: &AppState, req: &StoreVoicemailRequest) -> Result<Stored, StoreError> {
    let call_id = req.call_id.trim();
    if call_id.is_empty() {
        return Err(StoreError::NoCallId);
    }
    if !is_incoming_path(&req.wav_path) {
        return Err(StoreError::BadPath);
    }
    let user: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = ?")
        .bind(req.user_id)
        .fetch_optional(&st.pool)
        .await?;
    if user.is_none() {
        return Err(StoreError::NoUser(req.user_id));
    }
    let sid = format!("{SID_PREFIX}{call_id}");
    let min_secs = st.settings.get().u64("voicemail.min_length");
    match earlier(st, &sid).await? {
        Some(Earlier::Discarded) => {
            // A crash may have come between remembering and deleting.
            remove_incoming(st, &req.wav_path).await?;
            return Ok(Stored::TooShort { min_secs });
        }
        Some(Earlier::Kept { id, audio }) => {
            finish(st, &sid, id, audio.is_some(), req).await?;
            return Ok(Stored::Kept(id));
        }
        None => {}
    }
    let length = measure(&st.data_dir, &req.wav_path).await?;
    if length < Duration::from_secs(min_secs) {
        discard(st, &sid, length, &req.wav_path).await?;
        tracing::info!(
            call_id,
            ?length,
            min_secs,
            "local voicemail too short: discarded"
        );
        return Ok(Stored::TooShort { min_secs });
    }
    let id = insert(st, &sid, req, length).await?;
    tracing::info!(
        call_id,
        voicemail_id = id,
        ?length,
        user_id = req.user_id,
        "local voicemail received"
    );
    finish(st, &sid, id, false, req).await?;
    Ok(Stored::Kept(id))
}

/// What an earlier call for the same recording left.
enum Earlier {
    Discarded,
    Kept { id: i64, audio: Option<String> },
}

async fn earlier(st: &AppState, sid: &str) -> Result<Option<Earlier>, sqlx::Error> {
    let row: Option<(bool, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT r.discarded, v.id, v.audio_url FROM voice_recordings r \
         LEFT JOIN voicemails v ON v.recording_sid = r.recording_sid WHERE r.recording_sid = ?",
    )
    .bind(sid)
    .fetch_optional(&st.pool)
    .await?;
    Ok(match row {
        Some((true, _, _)) => Some(Earlier::Discarded),
        Some((false, Some(id), audio)) => Some(Earlier::Kept { id, audio }),
        // No row, or the voicemail was deleted since: as if new (the file
        // is gone by then, so the caller hears NOT_FOUND).
        _ => None,
    })
}

/// The playing time of the recording at `rel`, from its header.
async fn measure(data_dir: &Path, rel: &str) -> Result<Duration, StoreError> {
    let path = data_dir.join(rel);
    let io = |source| StoreError::Io {
        path: rel.to_owned(),
        source,
    };
    // Not followed: a link would let the header (and the move) reach
    // outside the folder.
    let meta = match tokio::fs::symlink_metadata(&path).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Missing(rel.to_owned()));
        }
        Err(e) => return Err(io(e)),
    };
    if !meta.is_file() {
        return Err(StoreError::BadPath);
    }
    let mut head = Vec::with_capacity(wav::HEAD_LEN);
    tokio::fs::File::open(&path)
        .await
        .map_err(io)?
        .take(wav::HEAD_LEN as u64)
        .read_to_end(&mut head)
        .await
        .map_err(io)?;
    wav::length(&head, meta.len()).map_err(|source| StoreError::NotWav {
        path: rel.to_owned(),
        source,
    })
}

/// Remembers the recording as too short, then deletes its file.
async fn discard(st: &AppState, sid: &str, length: Duration, rel: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO voice_recordings (recording_sid, duration, discarded, created_at) \
         VALUES (?, ?, TRUE, ?) ON CONFLICT(recording_sid) DO NOTHING",
    )
    .bind(sid)
    .bind(whole_secs(length))
    .bind(proto::time::now())
    .execute(&st.pool)
    .await?;
    remove_incoming(st, rel).await
}

async fn remove_incoming(st: &AppState, rel: &str) -> Result<(), StoreError> {
    match tokio::fs::remove_file(st.data_dir.join(rel)).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io {
            path: rel.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Writes the recording's rows in one transaction and answers the
/// voicemail's id (the existing one when a concurrent retry was first).
async fn insert(
    st: &AppState,
    sid: &str,
    req: &StoreVoicemailRequest,
    length: Duration,
) -> Result<i64, sqlx::Error> {
    let secs = whole_secs(length);
    let now = proto::time::now();
    let mut tx = st.pool.begin().await?;
    sqlx::query(
        "INSERT INTO voice_recordings (recording_sid, duration, created_at) VALUES (?, ?, ?) \
         ON CONFLICT(recording_sid) DO NOTHING",
    )
    .bind(sid)
    .bind(secs)
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    // sipd's row of the call, when it wrote one (the newest, should a
    // Call-ID ever repeat).
    let cdr_id: Option<i64> =
        sqlx::query_scalar("SELECT id FROM cdrs WHERE sip_call_id = ? ORDER BY id DESC LIMIT 1")
            .bind(req.call_id.trim())
            .fetch_optional(&mut *tx)
            .await?;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO voicemails (cdr_id, user_id, recording_sid, from_number, duration, \
                                 transcript_status, created_at) \
         VALUES (?, ?, ?, ?, ?, 'unavailable', ?) ON CONFLICT(recording_sid) DO NOTHING RETURNING id",
    )
    .bind(cdr_id)
    .bind(req.user_id)
    .bind(sid)
    .bind(req.from_number.trim())
    .bind(secs)
    .bind(&now)
    .fetch_optional(&mut *tx)
    .await?;
    let id = match inserted {
        Some(id) => id,
        None => {
            sqlx::query_scalar("SELECT id FROM voicemails WHERE recording_sid = ?")
                .bind(sid)
                .fetch_one(&mut *tx)
                .await?
        }
    };
    tx.commit().await?;
    Ok(id)
}

/// Moves the audio into place (unless an earlier call did), records where
/// it is, and queues the notice.
async fn finish(
    st: &AppState,
    sid: &str,
    id: i64,
    audio_recorded: bool,
    req: &StoreVoicemailRequest,
) -> Result<(), StoreError> {
    if !audio_recorded {
        let rel = stored_path(id);
        let from = st.data_dir.join(&req.wav_path);
        let placed = move_audio(&from, &st.data_dir.join(&rel))
            .await
            .map_err(|source| StoreError::Io {
                path: rel.clone(),
                source,
            })?;
        if placed {
            sqlx::query("UPDATE voicemails SET audio_url = ? WHERE id = ? AND audio_url IS NULL")
                .bind(&rel)
                .bind(id)
                .execute(&st.pool)
                .await?;
            sqlx::query("UPDATE voice_recordings SET downloaded = TRUE WHERE recording_sid = ?")
                .bind(sid)
                .execute(&st.pool)
                .await?;
        } else {
            // Neither where mediad left it nor where we put it: the row
            // stays (the UI shows a message without audio), no notice.
            tracing::warn!(voicemail_id = id, path = %req.wav_path, "local voicemail's audio is missing");
        }
    }
    let name = req.from_name.trim();
    super::maybe_notify(st, sid, Some(name)).await?;
    Ok(())
}

/// Where a local voicemail's audio is kept, beside Twilio's
/// (`voicemails/<RecordingSid>.wav`): the id, not the Call-ID, names it,
/// since a Call-ID may hold any character.
fn stored_path(id: i64) -> String {
    format!("voicemails/local-{id}.wav")
}

/// Renames `from` to `to` (0600, in a 0700 folder: what callers said is
/// GoSIP's alone). True when the audio is at `to`, moved now or before.
async fn move_audio(from: &Path, to: &Path) -> std::io::Result<bool> {
    if let Some(dir) = to.parent() {
        proto::db::private_dir(dir)?;
    }
    match tokio::fs::rename(from, to).await {
        Ok(()) => {
            proto::db::set_mode(to, 0o600)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => tokio::fs::try_exists(to).await,
        Err(e) => Err(e),
    }
}

/// Seconds as Twilio reports a recording's duration: whole, rounded.
fn whole_secs(length: Duration) -> i64 {
    ((length.as_millis() + 500) / 1000) as i64
}
