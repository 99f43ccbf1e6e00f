//! Recording files: where a call's WAV (and a voicemail's) lives,
//! appending audio with the header kept current (a crash leaves a playable
//! file), and the retention sweeper.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::relay::wav;

/// Channels of every recording: left = A-leg, right = B-leg.
pub const CHANNELS: u16 = 2;

/// The path, relative to the data dir, of the recording of `call_id`
/// started on `date`: `recordings/YYYY/MM/DD/<call id>.wav`, with every
/// character outside `[A-Za-z0-9._-]` of the call id replaced by `_`
/// (SIP Call-IDs hold `@`, and any byte sipd accepted).
pub fn rel_path(call_id: &str, date: chrono::NaiveDate) -> String {
    format!(
        "recordings/{}/{}.wav",
        date.format("%Y/%m/%d"),
        file_name(call_id)
    )
}

/// The path, relative to the data dir, of the voicemail recorded on
/// `call_id`: `voicemails/incoming/<call id>.wav`, the call id made safe
/// as in [`rel_path`].
pub fn voicemail_rel_path(call_id: &str) -> String {
    format!("voicemails/incoming/{}.wav", file_name(call_id))
}

fn file_name(call_id: &str) -> String {
    let mut name: String = call_id
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, '_');
    }
    name
}

/// An open recording file.
pub struct WavFile {
    file: File,
    channels: u16,
    data_len: u64,
}

impl WavFile {
    /// Opens the stereo call recording `path` to append (a recording paused
    /// and resumed, or resumed after a write error) or creates it with a
    /// fresh header.
    pub fn open(path: &Path) -> io::Result<Self> {
        private_dirs(path)?;
        let existing = std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file() && m.len() >= wav::HEADER_LEN as u64);
        if let Some(meta) = existing {
            let file = OpenOptions::new().read(true).write(true).open(path)?;
            let frame = u64::from(CHANNELS) * 2;
            let data_len = (meta.len() - wav::HEADER_LEN as u64) / frame * frame;
            file.set_len(wav::HEADER_LEN as u64 + data_len)?;
            return Ok(Self {
                file,
                channels: CHANNELS,
                data_len,
            });
        }
        Self::create(path, CHANNELS)
    }

    /// Creates `path` (replacing a file there) with a fresh header for
    /// 8 kHz 16-bit audio of `channels`.
    pub fn create(path: &Path, channels: u16) -> io::Result<Self> {
        private_dirs(path)?;
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)?
        };
        let mut w = Self {
            file,
            channels,
            data_len: 0,
        };
        w.file.write_all(&wav::header(channels, wav::RATE, 0))?;
        Ok(w)
    }

    /// Appends PCM frames and rewrites the header's sizes.
    pub fn append(&mut self, pcm: &[u8]) -> io::Result<()> {
        if pcm.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(pcm, wav::HEADER_LEN as u64 + self.data_len)?;
        self.data_len += pcm.len() as u64;
        let len = u32::try_from(self.data_len).unwrap_or(u32::MAX - 36);
        self.file
            .write_all_at(&wav::header(self.channels, wav::RATE, len), 0)
    }

    pub fn data_len(&self) -> u64 {
        self.data_len
    }
}

/// Call audio is private: folders 0700, files 0600 (the umask may allow
/// more).
fn private_dirs(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    Ok(())
}

/// True when the disk is full (or the quota is), the case the admin alert
/// names.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(28) | Some(122))
}

/// True when a file modified at `modified` is past `days` of retention at
/// `now`; 0 days keeps everything.
pub fn expired(modified: SystemTime, now: SystemTime, days: u64) -> bool {
    days > 0
        && now
            .duration_since(modified)
            .is_ok_and(|age| age >= Duration::from_secs(days * 86_400))
}

/// Deletes `*.wav` files under `dir` older than `days`, and the date
/// folders that become empty; returns the recordings deleted.
pub fn sweep(dir: &Path, now: SystemTime, days: u64) -> io::Result<Vec<PathBuf>> {
    let mut deleted = Vec::new();
    sweep_dir(dir, now, days, &mut deleted)?;
    Ok(deleted)
}

fn sweep_dir(
    dir: &Path,
    now: SystemTime,
    days: u64,
    deleted: &mut Vec<PathBuf>,
) -> io::Result<bool> {
    let mut empty = true;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path: PathBuf = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            if sweep_dir(&path, now, days, deleted)? {
                std::fs::remove_dir(&path)?;
            } else {
                empty = false;
            }
        } else if ft.is_file()
            && path.extension().is_some_and(|e| e == "wav")
            && expired(entry.metadata()?.modified()?, now, days)
        {
            std::fs::remove_file(&path)?;
            deleted.push(path);
        } else {
            empty = false;
        }
    }
    Ok(empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_dated_and_call_ids_cannot_escape_the_folder() {
        let d = chrono::NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
        assert_eq!(rel_path("abc-123", d), "recordings/2026/01/05/abc-123.wav");
        assert_eq!(
            rel_path("a84b4c76e66710@pc33.example.com", d),
            "recordings/2026/01/05/a84b4c76e66710_pc33.example.com.wav"
        );
        assert_eq!(
            rel_path("../../etc/passwd", d),
            "recordings/2026/01/05/_.._.._etc_passwd.wav"
        );
        assert_eq!(rel_path("", d), "recordings/2026/01/05/_.wav");
        assert_eq!(
            voicemail_rel_path("../x@y"),
            "voicemails/incoming/_.._x_y.wav"
        );
    }

    #[test]
    fn recordings_and_their_folders_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recordings/2026/01/05/x.wav");
        WavFile::open(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        for d in [
            "recordings/2026/01/05",
            "recordings/2026/01",
            "recordings/2026",
        ] {
            assert_eq!(mode(&dir.path().join(d)), 0o700, "{d}");
        }
    }

    #[test]
    fn appending_keeps_the_header_current_and_reopening_continues_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r/x.wav");
        let mut w = WavFile::open(&path).unwrap();
        w.append(&[1, 0, 2, 0].repeat(100)).unwrap();
        let r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.duration(), 100);
        drop(w);
        let mut w = WavFile::open(&path).unwrap();
        assert_eq!(w.data_len(), 400);
        w.append(&[3, 0, 4, 0].repeat(50)).unwrap();
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec().channels, 2);
        let s: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(s.len(), 300);
        assert_eq!(&s[198..202], &[1, 2, 3, 4]);
    }

    #[test]
    fn a_mono_file_is_created_afresh_and_keeps_its_channel_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("voicemails/incoming/x.wav");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, [0u8; 100]).unwrap();
        let mut w = WavFile::create(&path, 1).unwrap();
        w.append(&[1, 0, 2, 0, 3, 0]).unwrap();
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec().channels, 1);
        assert_eq!(r.spec().sample_rate, 8000);
        let s: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(s, [1, 2, 3]);
    }

    #[test]
    fn a_full_disk_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.wav");
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let e = WavFile::open(&path).err().unwrap();
        assert!(is_disk_full(&e), "{e}");
    }

    #[test]
    fn sweep_deletes_only_expired_recordings_and_empty_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("recordings");
        let old = root.join("2020/01/01/old.wav");
        let new = root.join("2026/01/01/new.wav");
        let other = root.join("2020/02/01/notes.txt");
        for p in [&old, &new, &other] {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let now = SystemTime::now();
        let f = File::options().write(true).open(&old).unwrap();
        f.set_modified(now - Duration::from_secs(91 * 86_400))
            .unwrap();
        assert_eq!(
            sweep(&root, now, 0).unwrap(),
            [] as [PathBuf; 0],
            "0 days keeps all"
        );
        assert_eq!(sweep(&root, now, 90).unwrap(), std::slice::from_ref(&old));
        assert!(!old.exists());
        assert!(!root.join("2020/01").exists(), "empty date folders go too");
        assert!(new.exists() && other.exists());
        assert!(root.exists());
        assert!(expired(now - Duration::from_secs(86_400), now, 1));
        assert!(!expired(now - Duration::from_secs(86_399), now, 1));
    }
}
