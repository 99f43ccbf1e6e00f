//! Small real media for recordings: a WAV tone of the recording's length
//! (8 kHz, 16-bit mono, what Twilio serves as `audio/x-wav`) and an MP3 of
//! silent frames.

/// `secs` seconds of a 440 Hz tone as a WAV file.
pub fn tone(secs: u32) -> Vec<u8> {
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
        let v = (t * 440.0 * std::f32::consts::TAU).sin() * 8000.0;
        out.extend_from_slice(&(v as i16).to_le_bytes());
    }
    out
}

/// `secs` seconds of silent MPEG-1 Layer III frames (32 kbit/s, 8 kHz is
/// not MPEG-1, so 32 kHz mono: 144 bytes per 36 ms frame).
pub fn mp3_silence(secs: u32) -> Vec<u8> {
    // Frame header: sync, MPEG-1, Layer III, no CRC, 32 kbit/s, 32 kHz, mono.
    let header = [0xFFu8, 0xFB, 0x18, 0xC4];
    let frame_len = 144 * 32_000 / 32_000;
    let frames = (secs as usize * 1000) / 36 + 1;
    let mut out = Vec::with_capacity(frames * frame_len);
    for _ in 0..frames {
        out.extend_from_slice(&header);
        out.resize(out.len() + frame_len - 4, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tone_has_a_wav_header_and_the_right_length() {
        let w = super::tone(3);
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(w.len(), 44 + 3 * 8000 * 2);
    }
}
