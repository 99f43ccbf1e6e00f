//! Files one daemon writes in the data dir and another reads: their paths,
//! relative to the data dir, defined once.

/// The hold music an admin uploaded (webd writes it, mediad plays it to a
/// held caller): a 16-bit PCM WAV of any rate, mono or stereo. Absent,
/// mediad plays GoSIP's own melody.
pub const HOLD_MUSIC: &str = "prompts/hold-music.wav";
