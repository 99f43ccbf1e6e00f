//! The STUN of ICE-lite (RFC 8445 section 2.5, RFC 5389): a browser's
//! connectivity checks to mediad's port are Binding requests carrying
//! USERNAME "mediad's ufrag:browser's ufrag" and a MESSAGE-INTEGRITY keyed
//! with mediad's ICE password. mediad answers the genuine ones with its
//! view of the source address (XOR-MAPPED-ADDRESS), signed with the same
//! password, and never starts checks itself. Pure: bytes in, bytes out.

use std::net::SocketAddr;

use aws_lc_rs::{constant_time, hmac};

const MAGIC: u32 = 0x2112_A442;
const HEADER: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const USE_CANDIDATE: u16 = 0x0025;
const FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// HMAC-SHA1: 20 bytes (RFC 5389 section 15.4).
const MI_LEN: usize = 20;

/// A STUN message is what starts with 0b00 and carries the magic cookie
/// (RFC 7983: first byte 0..=3).
pub fn is_stun(p: &[u8]) -> bool {
    p.len() >= HEADER && p[0] < 4 && u32::from_be_bytes([p[4], p[5], p[6], p[7]]) == MAGIC
}

/// A connectivity check that passed: whether it nominates its pair, and
/// the answer to send back to where it came from.
#[derive(Debug, PartialEq, Eq)]
pub struct Check {
    pub use_candidate: bool,
    pub response: Vec<u8>,
}

/// Why a datagram is no check to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a STUN Binding request")]
    NotARequest,
    #[error("malformed STUN message")]
    Malformed,
    #[error("USERNAME is not this leg's")]
    WrongUser,
    #[error("no MESSAGE-INTEGRITY, or a wrong one")]
    BadIntegrity,
    #[error("FINGERPRINT does not match")]
    BadFingerprint,
}

/// Checks a Binding request against this leg's credentials: USERNAME
/// must be `local_ufrag:remote_ufrag`, MESSAGE-INTEGRITY made with
/// `local_pwd`, and FINGERPRINT (if present) right.
pub fn check(
    p: &[u8],
    src: SocketAddr,
    local_ufrag: &str,
    remote_ufrag: &str,
    local_pwd: &str,
) -> Result<Check, Refused> {
    if !is_stun(p) || u16::from_be_bytes([p[0], p[1]]) != BINDING_REQUEST {
        return Err(Refused::NotARequest);
    }
    let len = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if len % 4 != 0 || HEADER + len != p.len() {
        return Err(Refused::Malformed);
    }
    let mut username = None;
    let mut integrity = None;
    let mut use_candidate = false;
    let mut off = HEADER;
    while off + 4 <= p.len() {
        let kind = u16::from_be_bytes([p[off], p[off + 1]]);
        let alen = usize::from(u16::from_be_bytes([p[off + 2], p[off + 3]]));
        let value = p.get(off + 4..off + 4 + alen).ok_or(Refused::Malformed)?;
        match kind {
            USERNAME => username = Some(value),
            MESSAGE_INTEGRITY if alen == MI_LEN => integrity = Some((off, value)),
            USE_CANDIDATE => use_candidate = true,
            FINGERPRINT if alen == 4 => {
                let want = crc32(&with_length(p, off, off + 8)) ^ FINGERPRINT_XOR;
                if value != want.to_be_bytes() {
                    return Err(Refused::BadFingerprint);
                }
            }
            _ => {}
        }
        // Nothing but FINGERPRINT may follow MESSAGE-INTEGRITY.
        if integrity.is_some() && kind != MESSAGE_INTEGRITY && kind != FINGERPRINT {
            return Err(Refused::Malformed);
        }
        off += 4 + alen.div_ceil(4) * 4;
    }
    let expected = format!("{local_ufrag}:{remote_ufrag}");
    if username != Some(expected.as_bytes()) {
        return Err(Refused::WrongUser);
    }
    let (mi_at, mac) = integrity.ok_or(Refused::BadIntegrity)?;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, local_pwd.as_bytes());
    let signed = with_length(p, mi_at, mi_at + 4 + MI_LEN);
    let tag = hmac::sign(&key, &signed);
    constant_time::verify_slices_are_equal(tag.as_ref(), mac).map_err(|_| Refused::BadIntegrity)?;
    Ok(Check {
        use_candidate,
        response: success(&p[8..HEADER], src, local_pwd),
    })
}

/// A Binding request as a browser's ICE agent sends it (USERNAME
/// `ufrags`, USE-CANDIDATE if `nominate`, MESSAGE-INTEGRITY with `pwd`,
/// FINGERPRINT). mediad, being ICE-lite, never sends one: this is for its
/// tests and tools that play the browser.
pub fn binding_request(tid: &[u8; 12], ufrags: &str, pwd: &str, nominate: bool) -> Vec<u8> {
    let mut m = header(BINDING_REQUEST, tid);
    m.extend_from_slice(&USERNAME.to_be_bytes());
    m.extend_from_slice(&u16::try_from(ufrags.len()).unwrap_or(0).to_be_bytes());
    m.extend_from_slice(ufrags.as_bytes());
    m.resize(m.len().next_multiple_of(4), 0);
    if nominate {
        m.extend_from_slice(&USE_CANDIDATE.to_be_bytes());
        m.extend_from_slice(&[0, 0]);
    }
    sign(m, pwd)
}

/// The 20-byte header of a message of type `kind` in transaction `tid`
/// (its length is set by [`sign`]).
fn header(kind: u16, tid: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(96);
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&MAGIC.to_be_bytes());
    m.extend_from_slice(tid);
    m
}

/// Ends message `m` with MESSAGE-INTEGRITY (HMAC-SHA1 keyed with `pwd`)
/// and FINGERPRINT, and sets its length.
fn sign(mut m: Vec<u8>, pwd: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, pwd.as_bytes());
    let mi_at = m.len();
    let tag = hmac::sign(&key, &with_length(&m, mi_at, mi_at + 4 + MI_LEN));
    m.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
    m.extend_from_slice(&(MI_LEN as u16).to_be_bytes());
    m.extend_from_slice(tag.as_ref());
    let fp_at = m.len();
    let crc = crc32(&with_length(&m, fp_at, fp_at + 8)) ^ FINGERPRINT_XOR;
    m.extend_from_slice(&FINGERPRINT.to_be_bytes());
    m.extend_from_slice(&4u16.to_be_bytes());
    m.extend_from_slice(&crc.to_be_bytes());
    let len = u16::try_from(m.len() - HEADER).unwrap_or(u16::MAX);
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

/// `p[..upto]` with the header's length set as if the message ended at
/// `ends` (what MESSAGE-INTEGRITY and FINGERPRINT are computed over).
fn with_length(p: &[u8], upto: usize, ends: usize) -> Vec<u8> {
    let mut v = p[..upto].to_vec();
    let len = u16::try_from(ends - HEADER).unwrap_or(u16::MAX);
    v[2..4].copy_from_slice(&len.to_be_bytes());
    v
}

/// A Binding success response to transaction `tid` telling `src` its
/// address, with MESSAGE-INTEGRITY (`pwd`) and FINGERPRINT.
fn success(tid: &[u8], src: SocketAddr, pwd: &str) -> Vec<u8> {
    let mut m = header(BINDING_SUCCESS, tid);
    // XOR-MAPPED-ADDRESS (RFC 5389 section 15.2).
    let port = src.port() ^ (MAGIC >> 16) as u16;
    match src {
        SocketAddr::V4(a) => {
            m.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
            m.extend_from_slice(&8u16.to_be_bytes());
            m.extend_from_slice(&[0, 1]);
            m.extend_from_slice(&port.to_be_bytes());
            let ip = u32::from(*a.ip()) ^ MAGIC;
            m.extend_from_slice(&ip.to_be_bytes());
        }
        SocketAddr::V6(a) => {
            m.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
            m.extend_from_slice(&20u16.to_be_bytes());
            m.extend_from_slice(&[0, 2]);
            m.extend_from_slice(&port.to_be_bytes());
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC.to_be_bytes());
            mask[4..].copy_from_slice(tid);
            for (b, k) in a.ip().octets().iter().zip(mask) {
                m.push(b ^ k);
            }
        }
    }
    sign(m, pwd)
}

/// CRC-32 (ISO-HDLC, the one of ITU-T V.42 that RFC 5389 names).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    /// RFC 5769 section 2.1: a sample request with ICE attributes.
    fn rfc5769_request() -> Vec<u8> {
        hex("00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
             80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
             00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36
             00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
             00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
             80 28 00 04 e5 7a 3b cf")
    }

    const PWD: &str = "VOkJxbRl1RmTxUk/WvJxBt";

    #[test]
    fn the_rfc_5769_request_passes_with_its_password_only() {
        let src: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        let req = rfc5769_request();
        assert!(is_stun(&req));
        let ok = check(&req, src, "evtj", "h6vY", PWD).unwrap();
        assert!(!ok.use_candidate);
        assert_eq!(
            check(&req, src, "evtj", "h6vY", "wrong password!!!!!!!!"),
            Err(Refused::BadIntegrity)
        );
        assert_eq!(
            check(&req, src, "evtj", "other", PWD),
            Err(Refused::WrongUser)
        );
        let mut flipped = req.clone();
        flipped[30] ^= 1;
        assert_eq!(
            check(&flipped, src, "evtj", "h6vY", PWD),
            Err(Refused::BadFingerprint)
        );
    }

    #[test]
    fn the_answer_tells_the_source_and_is_signed_and_fingerprinted() {
        let src: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        let resp = check(&rfc5769_request(), src, "evtj", "h6vY", PWD)
            .unwrap()
            .response;
        // RFC 5769 section 2.2's XOR-MAPPED-ADDRESS for this source.
        let want = hex("00 20 00 08 00 01 a1 47 e1 12 a6 43");
        assert!(resp.windows(want.len()).any(|w| w == want), "{resp:02x?}");
        assert_eq!(resp[..2], [0x01, 0x01]);
        assert_eq!(resp[8..20], rfc5769_request()[8..20], "same transaction");
        // Its own MESSAGE-INTEGRITY and FINGERPRINT check out.
        let n = resp.len();
        let crc = crc32(&with_length(&resp, n - 8, n)) ^ FINGERPRINT_XOR;
        assert_eq!(resp[n - 4..], crc.to_be_bytes());
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, PWD.as_bytes());
        let mi_at = n - 8 - 24;
        let tag = hmac::sign(&key, &with_length(&resp, mi_at, mi_at + 24));
        assert_eq!(resp[mi_at + 4..mi_at + 24], *tag.as_ref());
    }

    #[test]
    fn a_browsers_check_passes_with_its_nomination_and_fails_with_another_password() {
        let src: SocketAddr = "10.0.0.9:50000".parse().unwrap();
        let tid = [7u8; 12];
        for nominate in [false, true] {
            let req = binding_request(&tid, "mine:theirs", "0123456789012345678901", nominate);
            let ok = check(&req, src, "mine", "theirs", "0123456789012345678901").unwrap();
            assert_eq!(ok.use_candidate, nominate);
            assert_eq!(ok.response[8..20], tid);
            assert_eq!(
                check(&req, src, "mine", "theirs", "0123456789012345678902"),
                Err(Refused::BadIntegrity)
            );
            assert_eq!(
                check(&req, src, "theirs", "mine", "0123456789012345678901"),
                Err(Refused::WrongUser)
            );
        }
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let src: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for p in [vec![], vec![0u8; 19], vec![0u8; 20], {
            let mut r = rfc5769_request();
            r[3] = 0xff;
            r
        }] {
            assert!(check(&p, src, "a", "b", "c").is_err());
        }
        let mut cut = rfc5769_request();
        cut.truncate(60);
        cut[3] = 40;
        assert!(check(&cut, src, "evtj", "h6vY", PWD).is_err());
    }
}
