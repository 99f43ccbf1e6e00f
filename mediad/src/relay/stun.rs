//! The STUN of an ICE-lite agent (RFC 8445 section 2.5): it answers Binding
//! requests (RFC 5389) that carry its short-term credentials and never sends
//! any of its own. Written by hand, as only these few attributes matter:
//! USERNAME, MESSAGE-INTEGRITY (HMAC-SHA1, section 15.4), FINGERPRINT
//! (CRC-32 xor 0x5354554e, section 15.5), USE-CANDIDATE (RFC 8445 section
//! 7.1.2) and XOR-MAPPED-ADDRESS (section 15.2) in the answer. Pure: bytes
//! in, bytes out.

use std::net::{IpAddr, SocketAddr};

use aws_lc_rs::{constant_time, hmac};

/// The fixed header: type, length, magic cookie, transaction id.
const HEADER_LEN: usize = 20;
const MAGIC_COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const ATTR_USE_CANDIDATE: u16 = 0x0025;
const ATTR_FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554e;
const INTEGRITY_LEN: usize = 20;

/// Why a datagram is not a check to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Not a well-formed STUN message (RFC 5389 section 6).
    #[error("malformed STUN message")]
    Malformed,
    /// A well-formed message other than a Binding request.
    #[error("not a Binding request")]
    NotBindingRequest,
    /// FINGERPRINT present and wrong.
    #[error("bad FINGERPRINT")]
    Fingerprint,
    /// USERNAME missing or not "local_ufrag:remote_ufrag".
    #[error("unknown USERNAME")]
    Username,
    /// MESSAGE-INTEGRITY missing or not made with the local password.
    #[error("bad MESSAGE-INTEGRITY")]
    Integrity,
}

/// An authenticated Binding request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub transaction_id: [u8; 12],
    /// USE-CANDIDATE: the controlling agent nominates this pair.
    pub use_candidate: bool,
}

/// Reads a Binding request and authenticates it: USERNAME must be
/// `"{local_ufrag}:{remote_ufrag}"` and MESSAGE-INTEGRITY made with
/// `local_pwd`; FINGERPRINT, when present, must match.
pub fn check_request(
    msg: &[u8],
    local_ufrag: &str,
    remote_ufrag: &str,
    local_pwd: &str,
) -> Result<Check, StunError> {
    let parsed = parse(msg)?;
    if parsed.msg_type != BINDING_REQUEST {
        return Err(StunError::NotBindingRequest);
    }
    if let Some(at) = parsed.fingerprint_at {
        let want = u32::from_be_bytes([msg[at + 4], msg[at + 5], msg[at + 6], msg[at + 7]]);
        if crc32(&msg[..at]) ^ FINGERPRINT_XOR != want {
            return Err(StunError::Fingerprint);
        }
    }
    let user = parsed.username.ok_or(StunError::Username)?;
    let expected_len = local_ufrag.len() + 1 + remote_ufrag.len();
    let matches = user.len() == expected_len
        && user.starts_with(local_ufrag.as_bytes())
        && user[local_ufrag.len()] == b':'
        && user.ends_with(remote_ufrag.as_bytes());
    if !matches {
        return Err(StunError::Username);
    }
    let at = parsed.integrity_at.ok_or(StunError::Integrity)?;
    let mac = integrity(&msg[..at], local_pwd.as_bytes());
    constant_time::verify_slices_are_equal(mac.as_ref(), &msg[at + 4..at + 4 + INTEGRITY_LEN])
        .map_err(|_| StunError::Integrity)?;
    let mut transaction_id = [0u8; 12];
    transaction_id.copy_from_slice(&msg[8..HEADER_LEN]);
    Ok(Check {
        transaction_id,
        use_candidate: parsed.use_candidate,
    })
}

/// The Binding success response to a check from `mapped`:
/// XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY with `local_pwd`, FINGERPRINT.
pub fn success_response(transaction_id: &[u8; 12], mapped: SocketAddr, local_pwd: &str) -> Vec<u8> {
    encode_success(transaction_id, mapped, local_pwd.as_bytes(), &[], 0)
}

/// The response with `extra` attributes before XOR-MAPPED-ADDRESS, padded
/// with `pad` (RFC 5769's vectors carry SOFTWARE, padded with spaces).
fn encode_success(
    transaction_id: &[u8; 12],
    mapped: SocketAddr,
    key: &[u8],
    extra: &[(u16, &[u8])],
    pad: u8,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(transaction_id);
    for (t, v) in extra {
        push_attr(&mut out, *t, v, pad);
    }
    let port = mapped.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let mut value = vec![0u8];
    match mapped.ip().to_canonical() {
        IpAddr::V4(ip) => {
            value.push(1);
            value.extend_from_slice(&port.to_be_bytes());
            let x = u32::from(ip) ^ MAGIC_COOKIE;
            value.extend_from_slice(&x.to_be_bytes());
        }
        IpAddr::V6(ip) => {
            value.push(2);
            value.extend_from_slice(&port.to_be_bytes());
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            mask[4..].copy_from_slice(transaction_id);
            value.extend(ip.octets().iter().zip(mask).map(|(a, m)| a ^ m));
        }
    }
    push_attr(&mut out, ATTR_XOR_MAPPED_ADDRESS, &value, pad);
    let at = out.len();
    set_len(&mut out, at + 4 + INTEGRITY_LEN);
    let mac = integrity(&out, key);
    push_attr(&mut out, ATTR_MESSAGE_INTEGRITY, mac.as_ref(), pad);
    let at = out.len();
    set_len(&mut out, at + 8);
    let crc = crc32(&out) ^ FINGERPRINT_XOR;
    push_attr(&mut out, ATTR_FINGERPRINT, &crc.to_be_bytes(), pad);
    out
}

/// What [`parse`] found, by offset into the message.
struct Parsed<'a> {
    msg_type: u16,
    username: Option<&'a [u8]>,
    use_candidate: bool,
    /// Where the MESSAGE-INTEGRITY attribute starts.
    integrity_at: Option<usize>,
    /// Where the FINGERPRINT attribute starts (it is the last).
    fingerprint_at: Option<usize>,
}

fn parse(msg: &[u8]) -> Result<Parsed<'_>, StunError> {
    if msg.len() < HEADER_LEN || msg[0] & 0xc0 != 0 || msg.len() % 4 != 0 {
        return Err(StunError::Malformed);
    }
    let msg_type = u16::from_be_bytes([msg[0], msg[1]]);
    let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
    let cookie = u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]);
    if cookie != MAGIC_COOKIE || len != msg.len() - HEADER_LEN {
        return Err(StunError::Malformed);
    }
    let mut p = Parsed {
        msg_type,
        username: None,
        use_candidate: false,
        integrity_at: None,
        fingerprint_at: None,
    };
    let mut at = HEADER_LEN;
    while at < msg.len() {
        let head = msg.get(at..at + 4).ok_or(StunError::Malformed)?;
        let t = u16::from_be_bytes([head[0], head[1]]);
        let n = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let value = msg.get(at + 4..at + 4 + n).ok_or(StunError::Malformed)?;
        let next = at + 4 + n.div_ceil(4) * 4;
        if p.fingerprint_at.is_some() {
            // Nothing may follow FINGERPRINT (RFC 5389 section 15.5).
            return Err(StunError::Malformed);
        }
        match t {
            ATTR_FINGERPRINT if n == 4 => p.fingerprint_at = Some(at),
            ATTR_FINGERPRINT => return Err(StunError::Malformed),
            // Only FINGERPRINT counts after MESSAGE-INTEGRITY (15.4).
            _ if p.integrity_at.is_some() => {}
            ATTR_MESSAGE_INTEGRITY if n == INTEGRITY_LEN => p.integrity_at = Some(at),
            ATTR_MESSAGE_INTEGRITY => return Err(StunError::Malformed),
            ATTR_USERNAME => p.username = Some(value),
            ATTR_USE_CANDIDATE => p.use_candidate = true,
            _ => {}
        }
        at = next;
    }
    if at != msg.len() {
        return Err(StunError::Malformed);
    }
    Ok(p)
}

fn push_attr(out: &mut Vec<u8>, t: u16, value: &[u8], pad: u8) {
    out.extend_from_slice(&t.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    while out.len() % 4 != 0 {
        out.push(pad);
    }
}

/// Sets the header's length field as if the message ended at `end`.
fn set_len(out: &mut [u8], end: usize) {
    let len = (end - HEADER_LEN) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
}

/// HMAC-SHA1 over the message before MESSAGE-INTEGRITY, whose header
/// length counts up to the end of that attribute (RFC 5389 section 15.4).
fn integrity(before: &[u8], key: &[u8]) -> hmac::Tag {
    let mut head = [0u8; HEADER_LEN];
    head.copy_from_slice(&before[..HEADER_LEN]);
    set_len(&mut head, before.len() + 4 + INTEGRITY_LEN);
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(&head);
    ctx.update(&before[HEADER_LEN..]);
    ctx.sign()
}

/// CRC-32 of ISO 3309 / ITU-T V.42 (the one of Ethernet and zlib).
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
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const PWD: &str = "VOkJxbRl1RmTxUk/WvJxBt";
    const TID: [u8; 12] = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    /// RFC 5769 section 2.1: USERNAME "evtj:h6vY", SOFTWARE, PRIORITY,
    /// ICE-CONTROLLED, MESSAGE-INTEGRITY, FINGERPRINT.
    fn rfc5769_request() -> Vec<u8> {
        hex("000100582112a442b7e7a701bc34d686fa87dfae
             802200105354554e207465737420636c69656e74
             002400046e0001ff80290008932ff9b151263b36
             000600096576746a3a68367659202020
             000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2
             80280004e57a3bcf")
    }

    #[test]
    fn crc32_has_its_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn rfc5769_sample_request_authenticates() {
        let req = rfc5769_request();
        let check = check_request(&req, "evtj", "h6vY", PWD).unwrap();
        assert_eq!(check.transaction_id, TID);
        assert!(!check.use_candidate);
    }

    #[test]
    fn a_check_with_the_wrong_password_username_or_fingerprint_is_refused() {
        let req = rfc5769_request();
        assert_eq!(
            check_request(&req, "evtj", "h6vY", "VOkJxbRl1RmTxUk/WvJxBu"),
            Err(StunError::Integrity)
        );
        assert_eq!(
            check_request(&req, "h6vY", "evtj", PWD),
            Err(StunError::Username)
        );
        assert_eq!(
            check_request(&req, "evtj", "h6v", PWD),
            Err(StunError::Username)
        );
        // A flipped bit in SOFTWARE breaks the fingerprint; with the
        // fingerprint recomputed, the integrity.
        let mut bad = req.clone();
        bad[25] ^= 1;
        assert_eq!(
            check_request(&bad, "evtj", "h6vY", PWD),
            Err(StunError::Fingerprint)
        );
        let at = bad.len() - 8;
        let crc = crc32(&bad[..at]) ^ FINGERPRINT_XOR;
        bad[at + 4..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            check_request(&bad, "evtj", "h6vY", PWD),
            Err(StunError::Integrity)
        );
        // Without MESSAGE-INTEGRITY and FINGERPRINT.
        let mut bare = req[..req.len() - 32].to_vec();
        set_len(&mut bare, req.len() - 32);
        assert_eq!(
            check_request(&bare, "evtj", "h6vY", PWD),
            Err(StunError::Integrity)
        );
    }

    #[test]
    fn rfc5769_sample_ipv4_and_ipv6_responses_are_reproduced() {
        let v4 = hex("0101003c2112a442b7e7a701bc34d686fa87dfae
                      8022000b7465737420766563746f7220
                      002000080001a147e112a643
                      000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7
                      80280004c07d4c96");
        let mapped: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        let software = (0x8022, &b"test vector"[..]);
        assert_eq!(
            encode_success(&TID, mapped, PWD.as_bytes(), &[software], b' '),
            v4
        );
        let v6 = hex("010100482112a442b7e7a701bc34d686fa87dfae
                      8022000b7465737420766563746f7220
                      00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
                      00080014a382954e4be67bf11784c97c8292c275bfe3ed41
                      80280004c8fb0b4c");
        let mapped: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap();
        assert_eq!(
            encode_success(&TID, mapped, PWD.as_bytes(), &[software], b' '),
            v6
        );
        // What mediad sends parses, and its fingerprint and integrity hold.
        let ours = success_response(&TID, "10.1.2.3:4000".parse().unwrap(), PWD);
        let p = parse(&ours).unwrap();
        assert_eq!(p.msg_type, BINDING_SUCCESS);
        let mi = p.integrity_at.unwrap();
        assert_eq!(
            integrity(&ours[..mi], PWD.as_bytes()).as_ref(),
            &ours[mi + 4..mi + 24]
        );
        let fp = p.fingerprint_at.unwrap();
        assert_eq!(
            (crc32(&ours[..fp]) ^ FINGERPRINT_XOR).to_be_bytes(),
            ours[fp + 4..]
        );
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic_the_check(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = check_request(&bytes, "evtj", "h6vY", PWD);
            let mut b = rfc5769_request();
            let at = bytes.first().map_or(0, |&x| usize::from(x) % b.len());
            b.truncate(at.max(20));
            let _ = check_request(&b, "evtj", "h6vY", PWD);
        }
    }
}
