//! What a Play's items sound like: the I/O around [`crate::relay::player`].
//! Text is spoken by espeak-ng, run as a program with the text as one
//! argument (never through a shell), and its 22.05 kHz output is resampled
//! once and cached as an 8 kHz WAV under `prompts/tts/`, named by the
//! SHA-256 of the voice, a NUL byte and the text, so each text is rendered
//! once however many calls play it. Files are WAVs inside the data dir.
//! Decoding and resampling run on the blocking pool, off the runtime.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use proto::pb::mediad::PlayItem;
use proto::pb::mediad::play_item::What;
use sha2::{Digest, Sha256};

use crate::relay::player::{self, Clip, ClipError};

/// The speech engine and its voice.
pub const ENGINE: &str = "espeak-ng";
pub const VOICE: &str = "en-us";
/// Where rendered speech is cached, relative to the data dir.
pub const TTS_DIR: &str = "prompts/tts";
/// A Play holds at most this many items.
pub const MAX_ITEMS: usize = 64;
/// Longest text spoken at once (bytes): a few minutes of speech.
pub const MAX_TEXT: usize = 4000;
/// Largest WAV file played (about 6 minutes of 44.1 kHz stereo).
pub const MAX_FILE: u64 = 64 << 20;
/// espeak-ng renders a long text in well under a second; a hung one must
/// not hold the Play forever.
const SPEECH_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the items of a Play cannot be played.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("at most {MAX_ITEMS} items per Play, not {0}")]
    TooManyItems(usize),
    #[error("item {0} names nothing to play: set text, file or beep")]
    Empty(usize),
    #[error("item {index}: the text is {len} bytes, more than {MAX_TEXT}")]
    TextTooLong { index: usize, len: usize },
    #[error("file {0:?}: want a path inside the data dir")]
    BadPath(String),
    #[error("file {path:?} cannot be read: {source}")]
    Read { path: String, source: io::Error },
    #[error("file {path:?} is larger than {MAX_FILE} bytes")]
    TooLarge { path: String },
    #[error("file {path:?} cannot be played: {source}")]
    Decode { path: String, source: ClipError },
    #[error("the speech engine espeak-ng is not installed")]
    NoSpeechEngine,
    #[error("the speech engine espeak-ng failed: {detail}")]
    Speech { detail: String },
    #[error("the speech engine's output cannot be played: {0}")]
    SpeechOutput(#[source] ClipError),
    #[error("speech cache {path}: {source}")]
    Cache { path: PathBuf, source: io::Error },
    #[error("rendering was interrupted: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl PromptError {
    /// The gRPC code Play answers with: the request's fault, the machine's
    /// (no speech engine: sipd falls back) or mediad's.
    pub fn code(&self) -> tonic::Code {
        match self {
            PromptError::TooManyItems(_)
            | PromptError::Empty(_)
            | PromptError::TextTooLong { .. }
            | PromptError::BadPath(_)
            | PromptError::Read { .. }
            | PromptError::TooLarge { .. }
            | PromptError::Decode { .. } => tonic::Code::InvalidArgument,
            PromptError::NoSpeechEngine => tonic::Code::FailedPrecondition,
            PromptError::Speech { .. }
            | PromptError::SpeechOutput(_)
            | PromptError::Cache { .. }
            | PromptError::Join(_) => tonic::Code::Internal,
        }
    }
}

/// Renders Play items for one data dir.
#[derive(Debug, Clone)]
pub struct Prompts {
    data_dir: PathBuf,
    engine: OsString,
}

impl Prompts {
    pub fn new(data_dir: PathBuf) -> Self {
        Self::with_engine(data_dir, ENGINE)
    }

    /// Another speech program (tests name one that does not exist).
    pub fn with_engine(data_dir: PathBuf, engine: impl Into<OsString>) -> Self {
        Self {
            data_dir,
            engine: engine.into(),
        }
    }

    /// The clips of `items`, in order; a `beep: false` plays nothing.
    pub async fn render(&self, items: &[PlayItem]) -> Result<Vec<Clip>, PromptError> {
        if items.len() > MAX_ITEMS {
            return Err(PromptError::TooManyItems(items.len()));
        }
        let mut clips = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            match &item.what {
                Some(What::Beep(true)) => clips.push(player::beep()),
                Some(What::Beep(false)) => {}
                Some(What::Text(text)) if text.trim().is_empty() => {
                    return Err(PromptError::Empty(index));
                }
                Some(What::Text(text)) if text.len() > MAX_TEXT => {
                    return Err(PromptError::TextTooLong {
                        index,
                        len: text.len(),
                    });
                }
                Some(What::Text(text)) => clips.push(self.speech(text).await?),
                Some(What::File(path)) => clips.push(self.file(path).await?),
                None => return Err(PromptError::Empty(index)),
            }
        }
        Ok(clips)
    }

    /// The hold music: the admin's upload ([`proto::files::HOLD_MUSIC`])
    /// when there is one and it reads, else GoSIP's own melody.
    pub async fn hold_music(&self) -> Clip {
        match self.file(proto::files::HOLD_MUSIC).await {
            Ok(clip) if !clip.is_empty() => clip,
            Ok(_) => player::hold_melody(),
            Err(PromptError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                player::hold_melody()
            }
            Err(e) => {
                tracing::warn!(error = %e, "the uploaded hold music does not play; using the built-in melody");
                player::hold_melody()
            }
        }
    }

    /// A WAV file inside the data dir.
    async fn file(&self, rel: &str) -> Result<Clip, PromptError> {
        let path = inside(&self.data_dir, rel).ok_or_else(|| PromptError::BadPath(rel.into()))?;
        let read = |source| PromptError::Read {
            path: rel.into(),
            source,
        };
        let meta = tokio::fs::metadata(&path).await.map_err(read)?;
        if meta.len() > MAX_FILE {
            return Err(PromptError::TooLarge { path: rel.into() });
        }
        let bytes = tokio::fs::read(&path).await.map_err(read)?;
        tokio::task::spawn_blocking(move || player::decode_wav(&bytes))
            .await?
            .map_err(|source| PromptError::Decode {
                path: rel.into(),
                source,
            })
    }

    /// `text` spoken: from the cache, else rendered and cached.
    async fn speech(&self, text: &str) -> Result<Clip, PromptError> {
        let dir = self.data_dir.join(TTS_DIR);
        let key = cache_key(VOICE, text);
        let cached = dir.join(format!("{key}.wav"));
        if let Ok(bytes) = tokio::fs::read(&cached).await {
            match tokio::task::spawn_blocking(move || player::decode_wav(&bytes)).await? {
                Ok(clip) => return Ok(clip),
                Err(e) => {
                    tracing::warn!(path = %cached.display(), error = %e, "unreadable speech cache entry, rendering again");
                }
            }
        }
        let cache_err = |path: &Path| {
            let path = path.to_owned();
            move |source| PromptError::Cache { path, source }
        };
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(cache_err(&dir))?;
        // Unique names: two calls may render the same text at once.
        let stem = format!(".{key}.{:016x}", rand::random::<u64>());
        let tmp = dir.join(format!("{stem}.tmp"));
        let spoken = dir.join(format!("{stem}.espeak.wav"));
        let result = self.synthesize(text, &spoken).await;
        let bytes = tokio::fs::read(&spoken).await;
        let _ = tokio::fs::remove_file(&spoken).await;
        result?;
        let bytes = bytes.map_err(|e| PromptError::Speech {
            detail: format!("no output: {e}"),
        })?;
        let clip = tokio::task::spawn_blocking(move || player::decode_wav(&bytes))
            .await?
            .map_err(PromptError::SpeechOutput)?;
        // The cache is an optimisation: a failed write (full disk) still
        // plays the speech, and the next Play renders it again.
        let wav = player::encode_wav(&clip);
        let stored = match tokio::fs::write(&tmp, wav).await {
            Ok(()) => tokio::fs::rename(&tmp, &cached).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            let _ = tokio::fs::remove_file(&tmp).await;
            tracing::warn!(error = %cache_err(&cached)(e), "speech not cached");
        }
        Ok(clip)
    }

    /// Runs `espeak-ng -v <voice> -w <out> -- <text>`.
    async fn synthesize(&self, text: &str, out: &Path) -> Result<(), PromptError> {
        let child = tokio::process::Command::new(&self.engine)
            .arg("-v")
            .arg(VOICE)
            .arg("-w")
            .arg(out)
            // Text starting with '-' is text, not an option.
            .arg("--")
            .arg(text)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => PromptError::NoSpeechEngine,
                _ => PromptError::Speech {
                    detail: e.to_string(),
                },
            })?;
        let output = tokio::time::timeout(SPEECH_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| PromptError::Speech {
                detail: format!("no result after {} s", SPEECH_TIMEOUT.as_secs()),
            })?
            .map_err(|e| PromptError::Speech {
                detail: e.to_string(),
            })?;
        if !output.status.success() {
            return Err(PromptError::Speech {
                detail: format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        Ok(())
    }
}

/// The cache file name of `text` in `voice`: hex SHA-256 of the voice, a
/// NUL byte (so "en" + "-us..." and "en-us" + "..." differ) and the text.
pub fn cache_key(voice: &str, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(voice.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    hex::encode(h.finalize())
}

/// `rel` under `root` when it is a plain relative path: no root, no `..`,
/// so a Play can name nothing outside the data dir.
fn inside(root: &Path, rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    let plain = !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    plain.then(|| root.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> PlayItem {
        PlayItem {
            what: Some(What::Text(t.into())),
        }
    }

    fn file(f: &str) -> PlayItem {
        PlayItem {
            what: Some(What::File(f.into())),
        }
    }

    #[test]
    fn only_plain_relative_paths_reach_the_data_dir() {
        let root = Path::new("/data");
        assert_eq!(
            inside(root, "prompts/a.wav"),
            Some(PathBuf::from("/data/prompts/a.wav"))
        );
        for bad in ["", "/etc/passwd", "../x.wav", "a/../../x.wav", "./a.wav"] {
            assert_eq!(inside(root, bad), None, "{bad}");
        }
    }

    #[test]
    fn the_cache_key_is_the_hex_sha256_of_voice_nul_text() {
        assert_eq!(
            cache_key("", ""),
            // SHA-256 of the single byte 0x00.
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_ne!(cache_key("en", "-us hi"), cache_key("en-us", " hi"));
        assert_eq!(cache_key(VOICE, "hi").len(), 64);
    }

    #[tokio::test]
    async fn a_missing_engine_is_a_failed_precondition_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = Prompts::with_engine(dir.path().into(), "/nonexistent/espeak-ng");
        let e = p.render(&[text("Hello")]).await.unwrap_err();
        assert!(matches!(e, PromptError::NoSpeechEngine), "{e}");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            e.to_string(),
            "the speech engine espeak-ng is not installed"
        );
    }

    #[tokio::test]
    async fn bad_items_are_invalid_arguments_that_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("junk.wav"), b"not a wav").unwrap();
        let p = Prompts::new(dir.path().into());
        for (items, want) in [
            (vec![file("prompts/missing.wav")], "prompts/missing.wav"),
            (vec![file("junk.wav")], "junk.wav"),
            (vec![file("../outside.wav")], "../outside.wav"),
            (vec![PlayItem { what: None }], "item 0"),
            (vec![text("  ")], "item 0"),
            (vec![text(&"a".repeat(MAX_TEXT + 1))], "item 0"),
        ] {
            let e = p.render(&items).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
            assert!(e.to_string().contains(want), "{e}");
        }
        let beeps = p
            .render(&[
                PlayItem {
                    what: Some(What::Beep(false)),
                },
                PlayItem {
                    what: Some(What::Beep(true)),
                },
            ])
            .await
            .unwrap();
        assert_eq!(beeps.len(), 1);
        assert_eq!(beeps[0].len(), player::BEEP_SAMPLES);
    }

    #[tokio::test]
    async fn speech_is_rendered_once_then_read_from_the_cache() {
        if std::process::Command::new(ENGINE)
            .arg("--version")
            .output()
            .is_err()
        {
            panic!("{ENGINE} is not installed: run scripts/install-deps.sh as root");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = Prompts::new(dir.path().into());
        let first = p.render(&[text("-1 is a number")]).await.unwrap();
        let cached = dir
            .path()
            .join(TTS_DIR)
            .join(format!("{}.wav", cache_key(VOICE, "-1 is a number")));
        let r = hound::WavReader::open(&cached).unwrap();
        assert_eq!((r.spec().channels, r.spec().sample_rate), (1, 8000));
        assert_eq!(r.duration() as usize, first[0].len());
        assert!(first[0].len() > 4000, "about a second of speech");
        let files = std::fs::read_dir(dir.path().join(TTS_DIR)).unwrap().count();
        assert_eq!(files, 1, "no temporary files left");
        // A broken engine cannot matter now: the text comes from the cache.
        let broken = Prompts::with_engine(dir.path().into(), "/nonexistent/espeak-ng");
        let again = broken.render(&[text("-1 is a number")]).await.unwrap();
        assert_eq!(first, again);
    }
}
