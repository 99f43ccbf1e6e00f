//! G.711 (ITU-T G.711) mu-law and A-law to and from 16-bit linear PCM, the
//! classic table-free formulas (Sun's g711.c), decoded through tables built
//! at compile time so the recorder's per-sample work is one lookup.

/// mu-law byte -> linear sample.
pub static ULAW_TO_LINEAR: [i16; 256] = build(false);
/// A-law byte -> linear sample.
pub static ALAW_TO_LINEAR: [i16; 256] = build(true);

const fn build(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_decode(i as u8)
        } else {
            ulaw_decode(i as u8)
        };
        i += 1;
    }
    t
}

const fn ulaw_decode(u: u8) -> i16 {
    let u = !u;
    let t = (((u & 0x0f) as i32) << 3) + 0x84;
    let t = t << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        (0x84 - t) as i16
    } else {
        (t - 0x84) as i16
    }
}

const fn alaw_decode(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = ((a & 0x0f) as i32) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

/// Linear sample -> mu-law byte.
pub fn ulaw_encode(pcm: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mut v = i32::from(pcm) >> 2;
    let mask = if v < 0 {
        v = -v;
        0x7f
    } else {
        0xff
    };
    v = v.min(8159) + (0x84 >> 2);
    match SEG_END.iter().position(|&e| v <= e) {
        Some(seg) => ((seg as i32) << 4 | ((v >> (seg + 1)) & 0x0f)) as u8 ^ mask,
        None => 0x7f ^ mask,
    }
}

/// Linear sample -> A-law byte.
pub fn alaw_encode(pcm: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut v = i32::from(pcm) >> 3;
    let mask = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    match SEG_END.iter().position(|&e| v <= e) {
        Some(seg) => {
            let mant = if seg < 2 {
                (v >> 1) & 0x0f
            } else {
                (v >> seg) & 0x0f
            };
            ((seg as i32) << 4 | mant) as u8 ^ mask
        }
        None => 0x7f ^ mask,
    }
}

/// A linear sample in `law`.
pub fn encode(law: proto::webrtc::G711, s: i16) -> u8 {
    match law {
        proto::webrtc::G711::Pcmu => ulaw_encode(s),
        proto::webrtc::G711::Pcma => alaw_encode(s),
    }
}

/// The table that decodes `law`.
pub fn table(law: proto::webrtc::G711) -> &'static [i16; 256] {
    match law {
        proto::webrtc::G711::Pcmu => &ULAW_TO_LINEAR,
        proto::webrtc::G711::Pcma => &ALAW_TO_LINEAR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mu_law_decodes_itu_reference_values() {
        assert_eq!(ULAW_TO_LINEAR[0xff], 0);
        assert_eq!(ULAW_TO_LINEAR[0x7f], 0);
        assert_eq!(ULAW_TO_LINEAR[0x00], -32124);
        assert_eq!(ULAW_TO_LINEAR[0x80], 32124);
        assert_eq!(ULAW_TO_LINEAR[0xfe], 8);
        assert_eq!(ULAW_TO_LINEAR[0x7e], -8);
        assert_eq!(ULAW_TO_LINEAR[0xef], 132);
    }

    #[test]
    fn a_law_decodes_itu_reference_values() {
        assert_eq!(ALAW_TO_LINEAR[0xd5], 8);
        assert_eq!(ALAW_TO_LINEAR[0x55], -8);
        assert_eq!(ALAW_TO_LINEAR[0xaa], 32256);
        assert_eq!(ALAW_TO_LINEAR[0x2a], -32256);
        assert_eq!(ALAW_TO_LINEAR[0xd4], 24);
    }

    #[test]
    fn encode_of_decode_is_identity_except_mu_law_negative_zero() {
        for b in 0..=255u8 {
            assert_eq!(
                alaw_encode(ALAW_TO_LINEAR[usize::from(b)]),
                b,
                "A-law {b:#x}"
            );
            if b != 0x7f {
                assert_eq!(
                    ulaw_encode(ULAW_TO_LINEAR[usize::from(b)]),
                    b,
                    "mu-law {b:#x}"
                );
            }
        }
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(i16::MIN), 0x2a);
    }

    #[test]
    fn quantisation_error_is_small_relative_to_the_sample() {
        for pcm in (-32000i16..32000).step_by(97) {
            let u = ULAW_TO_LINEAR[usize::from(ulaw_encode(pcm))];
            let a = ALAW_TO_LINEAR[usize::from(alaw_encode(pcm))];
            let tol = (i32::from(pcm).abs() / 16).max(16);
            assert!(
                (i32::from(u) - i32::from(pcm)).abs() <= tol,
                "mu {pcm} -> {u}"
            );
            assert!(
                (i32::from(a) - i32::from(pcm)).abs() <= tol,
                "A {pcm} -> {a}"
            );
        }
    }
}
