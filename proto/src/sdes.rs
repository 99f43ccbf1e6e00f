//! SDES (RFC 4568): the `a=crypto` attribute that carries SRTP master keys
//! in SDP, shared by sipd (which writes and reads it in the SDP of each
//! leg) and mediad (which protects and unprotects RTP with the keys, RFC
//! 3711), and the typed form of the keys sipd hands mediad for a leg
//! ([`LegKeys`], the gRPC `LegCrypto`). No key material appears in any
//! `Debug` output.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::TryRngCore as _;
use rand::rngs::OsRng;

use crate::pb::mediad as pb;

/// Bytes of an AES-128 master key.
pub const MASTER_KEY_LEN: usize = 16;
/// Bytes of a master salt.
pub const MASTER_SALT_LEN: usize = 14;
/// The lowest key lifetime accepted: a call at 50 packets a second takes
/// 497 days to send 2^31, so a lifetime at least this long is never
/// reached and needs no re-keying.
const MIN_LIFETIME: u64 = 1 << 31;

/// The operating system's random source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no random bytes for an SRTP key")]
pub struct KeyError;

/// An SDES crypto suite (RFC 4568 section 6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// AES-128 counter mode, HMAC-SHA1 tag of 80 bits.
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 tag of 32 bits on SRTP (80 on SRTCP).
    AesCm128HmacSha1_32,
}

impl Suite {
    /// The suite's name in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The suite an `a=crypto` name stands for (RFC 5234: ABNF strings
    /// match case-insensitively).
    pub fn parse(name: &str) -> Option<Self> {
        [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32]
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// Bytes of the SRTP authentication tag.
    pub fn tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A master key and master salt (RFC 3711 section 8.2); `Debug` hides both.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    key: [u8; MASTER_KEY_LEN],
    salt: [u8; MASTER_SALT_LEN],
}

impl MasterKey {
    pub fn new(key: [u8; MASTER_KEY_LEN], salt: [u8; MASTER_SALT_LEN]) -> Self {
        MasterKey { key, salt }
    }

    /// From key || salt (30 bytes, the SDES `inline:` layout).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != MASTER_KEY_LEN + MASTER_SALT_LEN {
            return None;
        }
        let (key, salt) = bytes.split_at(MASTER_KEY_LEN);
        Some(MasterKey {
            key: key.try_into().ok()?,
            salt: salt.try_into().ok()?,
        })
    }

    /// A fresh key and salt from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; MASTER_KEY_LEN + MASTER_SALT_LEN];
        OsRng.try_fill_bytes(&mut bytes).map_err(|_| KeyError)?;
        MasterKey::from_bytes(&bytes).ok_or(KeyError)
    }

    /// The AES-128 master key.
    pub fn key(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.key
    }

    /// The master salt.
    pub fn salt(&self) -> &[u8; MASTER_SALT_LEN] {
        &self.salt
    }

    /// key || salt (30 bytes, the SDES `inline:` layout).
    pub fn to_bytes(&self) -> [u8; MASTER_KEY_LEN + MASTER_SALT_LEN] {
        let mut bytes = [0u8; MASTER_KEY_LEN + MASTER_SALT_LEN];
        bytes[..MASTER_KEY_LEN].copy_from_slice(&self.key);
        bytes[MASTER_KEY_LEN..].copy_from_slice(&self.salt);
        bytes
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// An `a=crypto` attribute (RFC 4568 section 9.1) we can use: one inline
/// master key, no lifetime below 2^31, no MKI, no session parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    /// 1 to 9 digits; the answer repeats the tag of the offer it accepts.
    pub tag: u32,
    pub suite: Suite,
    pub key: MasterKey,
}

impl Crypto {
    /// A fresh random key for `suite` under `tag`.
    pub fn generate(tag: u32, suite: Suite) -> Result<Self, KeyError> {
        Ok(Crypto {
            tag,
            suite,
            key: MasterKey::generate()?,
        })
    }

    /// The attribute value, without `a=crypto:`.
    pub fn to_attr(&self) -> String {
        format!(
            "{} {} inline:{}",
            self.tag,
            self.suite.name(),
            BASE64.encode(self.key.to_bytes())
        )
    }
}

/// Reads an `a=crypto` value (`1 AES_CM_128_HMAC_SHA1_80 inline:<key||salt
/// in base64>[|lifetime][|MKI:length]`); `None` for anything malformed or
/// that [`Crypto`] cannot express, so the caller skips that line.
pub fn parse_crypto(value: &str) -> Option<Crypto> {
    let mut fields = value.split_ascii_whitespace();
    let tag = parse_tag(fields.next()?)?;
    let suite = Suite::parse(fields.next()?)?;
    let key = parse_key_params(fields.next()?)?;
    // Session parameters (KDR, UNENCRYPTED_SRTP, WSH ...) change what both
    // sides do; none is implemented, so a line with any is not ours.
    if fields.next().is_some() {
        return None;
    }
    Some(Crypto { tag, suite, key })
}

/// RFC 4568 section 9.1: tag = 1*9DIGIT.
fn parse_tag(tag: &str) -> Option<u32> {
    if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tag.parse().ok()
}

/// RFC 4568 section 9.2: "inline:" key-salt ["|" lifetime] ["|" mki].
fn parse_key_params(params: &str) -> Option<MasterKey> {
    // Several keys (";"-separated) only make sense with MKIs.
    if params.contains(';') {
        return None;
    }
    let (method, info) = params.split_once(':')?;
    if !method.eq_ignore_ascii_case("inline") {
        return None;
    }
    let mut parts = info.split('|');
    let key = MasterKey::from_bytes(&BASE64.decode(parts.next()?).ok()?)?;
    match (parts.next(), parts.next()) {
        (None, _) => Some(key),
        // A lone part with ':' is an MKI; MKIs are not supported.
        (Some(lifetime), None) if !lifetime.contains(':') && lifetime_ok(lifetime) => Some(key),
        _ => None,
    }
}

/// A lifetime (`2^N` or a decimal count of packets) we never reach.
fn lifetime_ok(lifetime: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let packets = match lifetime.strip_prefix("2^") {
        Some(exp) if digits(exp) => exp.parse::<u32>().ok().and_then(|e| 1u64.checked_shl(e)),
        Some(_) => None,
        None if digits(lifetime) => lifetime.parse::<u64>().ok(),
        None => None,
    };
    packets.is_some_and(|p| p >= MIN_LIFETIME)
}

/// How mediad speaks to one leg: the suite, the key it encrypts with
/// (sipd's, given to the leg in sipd's `a=crypto`) and the key it decrypts
/// with (the leg's own `a=crypto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegKeys {
    pub suite: Suite,
    pub send: MasterKey,
    pub recv: MasterKey,
}

impl Suite {
    fn to_pb(self) -> pb::SrtpSuite {
        match self {
            Suite::AesCm128HmacSha1_80 => pb::SrtpSuite::AesCm128HmacSha180,
            Suite::AesCm128HmacSha1_32 => pb::SrtpSuite::AesCm128HmacSha132,
        }
    }
}

/// `None` keys mean plain RTP.
pub fn to_pb(keys: Option<&LegKeys>) -> pb::LegCrypto {
    match keys {
        None => pb::LegCrypto::default(),
        Some(k) => pb::LegCrypto {
            srtp: true,
            suite: k.suite.to_pb() as i32,
            send_key: k.send.to_bytes().to_vec(),
            recv_key: k.recv.to_bytes().to_vec(),
            dtls: None,
        },
    }
}

/// Reads a `LegCrypto`: `Ok(None)` is plain RTP; a field that does not
/// make a key is named in the error.
pub fn from_pb(c: &pb::LegCrypto) -> Result<Option<LegKeys>, &'static str> {
    if !c.srtp {
        return Ok(None);
    }
    let suite = match pb::SrtpSuite::try_from(c.suite) {
        Ok(pb::SrtpSuite::AesCm128HmacSha180) => Suite::AesCm128HmacSha1_80,
        Ok(pb::SrtpSuite::AesCm128HmacSha132) => Suite::AesCm128HmacSha1_32,
        _ => return Err("suite"),
    };
    let send = MasterKey::from_bytes(&c.send_key).ok_or("send_key")?;
    let recv = MasterKey::from_bytes(&c.recv_key).ok_or("recv_key")?;
    Ok(Some(LegKeys { suite, send, recv }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_names_round_trip() {
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
            assert_eq!(Suite::parse(suite.name()), Some(suite));
        }
        assert_eq!(Suite::parse("AEAD_AES_128_GCM"), None);
        assert_eq!(Suite::AesCm128HmacSha1_32.tag_len(), 4);
        assert_eq!(Suite::AesCm128HmacSha1_80.tag_len(), 10);
    }

    #[test]
    fn crypto_lines_parse_and_print() {
        let line = "1 AES_CM_128_HMAC_SHA1_80 inline:4fl6aMKDvNSvtuD+rKqhrCNwo4kl6P2EfUvbCM2T";
        let c = parse_crypto(line).unwrap();
        assert_eq!((c.tag, c.suite), (1, Suite::AesCm128HmacSha1_80));
        assert_eq!(c.to_attr(), line);
        let c = parse_crypto(
            "2 AES_CM_128_HMAC_SHA1_32 inline:4fl6aMKDvNSvtuD+rKqhrCNwo4kl6P2EfUvbCM2T|2^31",
        )
        .unwrap();
        assert_eq!((c.tag, c.suite), (2, Suite::AesCm128HmacSha1_32));
        let g = Crypto::generate(3, Suite::AesCm128HmacSha1_32).unwrap();
        assert_eq!(parse_crypto(&g.to_attr()), Some(g.clone()));
        assert_ne!(
            g.key,
            Crypto::generate(3, Suite::AesCm128HmacSha1_32).unwrap().key
        );
        let (_, b64) = g
            .to_attr()
            .split_once("inline:")
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .unwrap();
        assert!(!format!("{g:?}").contains(&b64), "Debug hides the key");
    }

    #[test]
    fn crypto_lines_we_cannot_honour_are_refused() {
        let key = "4fl6aMKDvNSvtuD+rKqhrCNwo4kl6P2EfUvbCM2T";
        for bad in [
            String::new(),
            String::from("1 AES_CM_128_HMAC_SHA1_80"),
            format!("1 AES_256_CM_HMAC_SHA1_80 inline:{key}"),
            format!("x AES_CM_128_HMAC_SHA1_80 inline:{key}"),
            format!("1234567890 AES_CM_128_HMAC_SHA1_80 inline:{key}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 uri:{key}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 {key}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}", &key[..36]),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}AAAA"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}!", &key[..39]),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|1:1"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^31|1:4"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^20"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|1048576"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^x"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key};inline:{key}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key} KDR=1"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key} UNENCRYPTED_SRTCP"),
        ] {
            assert_eq!(parse_crypto(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn leg_keys_cross_grpc_unchanged_and_bad_fields_are_named() {
        let keys = LegKeys {
            suite: Suite::AesCm128HmacSha1_32,
            send: MasterKey::generate().unwrap(),
            recv: MasterKey::generate().unwrap(),
        };
        assert_eq!(from_pb(&to_pb(Some(&keys))), Ok(Some(keys.clone())));
        assert_eq!(from_pb(&to_pb(None)), Ok(None));
        let mut bad = to_pb(Some(&keys));
        bad.recv_key.pop();
        assert_eq!(from_pb(&bad), Err("recv_key"));
        let mut bad = to_pb(Some(&keys));
        bad.suite = 0;
        assert_eq!(from_pb(&bad), Err("suite"));
    }
}
