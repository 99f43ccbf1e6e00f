//! SRTP and SRTCP (RFC 3711) with the two suites SIP phones offer through
//! SDES, AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32 (RFC 4568
//! section 6.2), and the `a=crypto` attribute value that carries their
//! master keys (RFC 4568 section 9.1). Pure: bytes in, bytes out; no
//! sockets, no clock, and no key material in any `Debug` output. Each
//! operation has an `_in_place` form working in the caller's buffer, which
//! the relay's hot path uses to allocate nothing; the `Vec` forms wrap them.
//!
//! One [`SrtpContext`] holds one master key and serves one direction: the
//! sender's and the receiver's rollover counters and replay windows are
//! different state (RFC 3711 section 3.2), so a context that protects never
//! unprotects. Inside, each SSRC has its own highest packet index (ROC and
//! s_l) and 64-packet replay window, created by the first packet of that
//! SSRC that is protected or authenticated.
//!
//! Supported: key derivation rate 0 (RFC 3711 section 4.3.1, keys derived
//! once), one master key per direction (no MKI), encrypted SRTCP. Refused:
//! MKIs, key lifetimes below 2^31 packets (honouring one would need
//! re-keying; a call at 50 packets a second takes 497 days to send 2^31)
//! and SDES session parameters.
//!
//! DTLS-SRTP (RFC 5764) legs may also negotiate AEAD_AES_128_GCM or
//! AEAD_AES_256_GCM (RFC 7714): the DTLS stack picks GCM whenever the
//! browser offers it, and browsers do. Their contexts ([`SrtpContext::gcm`])
//! share the indices, windows and key derivation (the 96-bit master salt
//! padded with zeros to 112 bits, RFC 7714 section 11) with the suites
//! above; only the transform differs (RFC 7714 sections 8 and 9: a 16-byte
//! tag, the clear header as AAD). An SRTCP packet with E = 0 is refused on
//! a GCM context (browsers always encrypt).

use std::fmt;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{AES_128, AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::{constant_time, hmac};
pub use proto::sdes::{Crypto, MASTER_KEY_LEN, MASTER_SALT_LEN, MasterKey, Suite, parse_crypto};

/// Bytes of the HMAC-SHA1 session authentication key (RFC 3711 section 8.2).
pub const AUTH_KEY_LEN: usize = 20;
/// SRTCP always carries an 80-bit tag, whatever the suite (RFC 4568
/// section 6.2.2).
pub const SRTCP_TAG_LEN: usize = 10;
/// The E flag and the 31-bit SRTCP index (RFC 3711 section 3.4).
const SRTCP_INDEX_LEN: usize = 4;
/// The fixed RTCP header stays in the clear (RFC 3711 section 3.4).
const RTCP_CLEAR_LEN: usize = 8;
/// Replay window (RFC 3711 section 3.3.2 asks for at least 64).
const REPLAY_WINDOW: u64 = 64;
/// SSRCs one context tracks; more is a peer misbehaving, and dropping the
/// state of an old SSRC instead would let its index (and keystream) repeat.
const MAX_STREAMS: usize = 64;
/// The SRTP index is 48 bits: a 32-bit ROC and the 16-bit sequence number.
const MAX_SRTP_INDEX: u64 = (1 << 48) - 1;
/// The SRTCP index is 31 bits (RFC 3711 section 3.4).
const MAX_SRTCP_INDEX: u64 = (1 << 31) - 1;
/// The tag of the AEAD profiles (RFC 7714 section 7).
pub const GCM_TAG_LEN: usize = 16;
/// The master salt of the AEAD profiles (RFC 7714 section 12).
pub const GCM_SALT_LEN: usize = 12;
/// The most protecting adds to a packet: an SRTCP index and a GCM tag (an
/// SRTP tag is at most 16 bytes). An in-place caller leaves this much room.
pub const MAX_OVERHEAD: usize = SRTCP_INDEX_LEN + GCM_TAG_LEN;

/// Why a packet was not protected or unprotected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than its header plus the SRTP/SRTCP trailer.
    #[error("packet too short")]
    TooShort,
    /// Not version 2, or a header (CSRCs, extension) that overruns the packet.
    #[error("malformed RTP/RTCP header")]
    Malformed,
    /// The authentication tag does not match.
    #[error("authentication failed")]
    AuthFailed,
    /// This packet index was already seen (or, protecting, already sent).
    #[error("replayed packet")]
    Replay,
    /// The packet index lies behind the replay window.
    #[error("packet older than the replay window")]
    TooOld,
    /// The context already tracks its maximum number of SSRCs.
    #[error("too many SSRCs for one SRTP context")]
    TooManyStreams,
    /// The master key has protected all the packets it may (RFC 3711
    /// section 9.2): the 48-bit SRTP or 31-bit SRTCP index is used up.
    #[error("SRTP key exhausted")]
    KeyExhausted,
    /// The buffer has no room for the trailer protecting appends.
    #[error("no room in the buffer for the SRTP trailer")]
    NoRoom,
    /// The cipher or the random generator failed.
    #[error("crypto primitive failed")]
    Crypto,
}

/// Which protocol a session key is for: the labels of RFC 3711 section 4.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// SRTP: labels 0 (encryption), 1 (authentication), 2 (salt).
    Rtp,
    /// SRTCP: labels 3, 4, 5.
    Rtcp,
}

/// The session keys of one layer (RFC 3711 section 4.3); `Debug` hides them.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    pub cipher_key: [u8; MASTER_KEY_LEN],
    pub auth_key: [u8; AUTH_KEY_LEN],
    pub salt: [u8; MASTER_SALT_LEN],
}

impl SessionKeys {
    /// Derives a layer's keys with key derivation rate 0 (index DIV kdr = 0).
    pub fn derive(master: &MasterKey, layer: Layer) -> Result<Self, Error> {
        let base = match layer {
            Layer::Rtp => 0,
            Layer::Rtcp => 3,
        };
        let prf = cipher(master.key())?;
        let mut keys = SessionKeys {
            cipher_key: [0; MASTER_KEY_LEN],
            auth_key: [0; AUTH_KEY_LEN],
            salt: [0; MASTER_SALT_LEN],
        };
        derive_into(&prf, master.salt(), base, &mut keys.cipher_key)?;
        derive_into(&prf, master.salt(), base + 1, &mut keys.auth_key)?;
        derive_into(&prf, master.salt(), base + 2, &mut keys.salt)?;
        Ok(keys)
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

/// A protection profile: an SDES suite, or an AEAD profile of DTLS-SRTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Cm(Suite),
    AeadAes128Gcm,
    AeadAes256Gcm,
}

impl Profile {
    /// Bytes of the SRTP tag.
    pub fn tag_len(self) -> usize {
        match self {
            Profile::Cm(s) => s.tag_len(),
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => GCM_TAG_LEN,
        }
    }
}

/// SRTP/SRTCP state of one master key in one direction (see the module doc).
pub struct SrtpContext {
    profile: Profile,
    rtp: Keys,
    rtcp: Keys,
    streams: Vec<Stream>,
}

impl fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    pub fn new(suite: Suite, master: &MasterKey) -> Result<Self, Error> {
        Ok(SrtpContext {
            profile: Profile::Cm(suite),
            rtp: Keys::Cm(CmKeys::new(&SessionKeys::derive(master, Layer::Rtp)?)?),
            rtcp: Keys::Cm(CmKeys::new(&SessionKeys::derive(master, Layer::Rtcp)?)?),
            streams: Vec::new(),
        })
    }

    /// An AEAD_AES_128_GCM (16-byte `key`) or AEAD_AES_256_GCM (32-byte
    /// `key`) context from a DTLS-SRTP master key and 12-byte salt.
    pub fn gcm(key: &[u8], salt: &[u8; GCM_SALT_LEN]) -> Result<Self, Error> {
        let (profile, prf_alg, aead_alg) = match key.len() {
            16 => (Profile::AeadAes128Gcm, &AES_128, &aead::AES_128_GCM),
            32 => (Profile::AeadAes256Gcm, &AES_256, &aead::AES_256_GCM),
            _ => return Err(Error::Crypto),
        };
        let prf = UnboundCipherKey::new(prf_alg, key).map_err(|_| Error::Crypto)?;
        let prf = EncryptingKey::ctr(prf).map_err(|_| Error::Crypto)?;
        let mut padded = [0u8; MASTER_SALT_LEN];
        padded[..GCM_SALT_LEN].copy_from_slice(salt);
        let layer = |base: u8| -> Result<Keys, Error> {
            let mut k = [0u8; 32];
            let k = &mut k[..key.len()];
            derive_into(&prf, &padded, base, k)?;
            let mut s = [0u8; GCM_SALT_LEN];
            derive_into(&prf, &padded, base + 2, &mut s)?;
            Ok(Keys::Gcm(GcmKeys::new(aead_alg, k, s)?))
        };
        Ok(SrtpContext {
            profile,
            rtp: layer(0)?,
            rtcp: layer(3)?,
            streams: Vec::new(),
        })
    }

    /// The context for the key and suite of an `a=crypto` line.
    pub fn from_crypto(crypto: &Crypto) -> Result<Self, Error> {
        SrtpContext::new(crypto.suite, &crypto.key)
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Encrypts an RTP packet's payload (CSRCs and header extension stay
    /// in the clear, RFC 3711 section 3.1) and appends the tag.
    pub fn protect(&mut self, rtp: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(rtp.len() + self.profile.tag_len());
        out.extend_from_slice(rtp);
        out.resize(rtp.len() + self.profile.tag_len(), 0);
        let len = self.protect_in_place(&mut out, rtp.len())?;
        out.truncate(len);
        Ok(out)
    }

    /// [`SrtpContext::protect`] without allocating: the packet is
    /// `buf[..len]`, the tag goes after it; returns the SRTP length.
    /// `buf` left as it was on an error.
    pub fn protect_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let rtp = buf.get(..len).ok_or(Error::NoRoom)?;
        let header = rtp_header_len(rtp)?;
        let (seq, ssrc) = rtp_seq_ssrc(rtp);
        let window = self.window(ssrc, Layer::Rtp)?;
        let index = next_rtp_index(window, seq)?;
        let tag_len = self.profile.tag_len();
        let out = buf.get_mut(..len + tag_len).ok_or(Error::NoRoom)?;
        match &self.rtp {
            Keys::Cm(k) => {
                keystream(&k.cipher, &k.iv(ssrc, index), &mut out[header..len])?;
                let tag = rtp_tag(&k.auth, &out[..len], roc(index));
                out[len..].copy_from_slice(&tag.as_ref()[..tag_len]);
            }
            Keys::Gcm(k) => {
                let (head, body) = out.split_at_mut(header);
                let (plain, tag_out) = body.split_at_mut(len - header);
                let tag = k
                    .key
                    .seal_in_place_separate_tag(k.rtp_nonce(ssrc, index), Aad::from(&*head), plain)
                    .map_err(|_| Error::Crypto)?;
                tag_out.copy_from_slice(tag.as_ref());
            }
        }
        self.accept(ssrc, Layer::Rtp, index);
        Ok(len + tag_len)
    }

    /// Checks an SRTP packet's tag and replay window, then decrypts it. The
    /// rollover counter and window move only once the tag is good (RFC 3711
    /// section 3.3.1), so forged packets cannot shift them.
    pub fn unprotect(&mut self, srtp: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = srtp.to_vec();
        let len = self.unprotect_in_place(&mut out)?;
        out.truncate(len);
        Ok(out)
    }

    /// [`SrtpContext::unprotect`] without allocating: decrypts `buf` in
    /// place and returns the length of the RTP packet at its start (the
    /// tag is left behind it). With the CM suites `buf` is untouched unless
    /// the tag is good.
    pub fn unprotect_in_place(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let header = rtp_header_len(buf)?;
        let tag_len = self.profile.tag_len();
        let body = buf
            .len()
            .checked_sub(tag_len)
            .filter(|&end| end >= header)
            .ok_or(Error::TooShort)?;
        let (seq, ssrc) = rtp_seq_ssrc(buf);
        let window = self.window(ssrc, Layer::Rtp)?;
        let index = received_rtp_index(window, seq)?;
        match &self.rtp {
            Keys::Cm(k) => {
                let tag = rtp_tag(&k.auth, &buf[..body], roc(index));
                constant_time::verify_slices_are_equal(&tag.as_ref()[..tag_len], &buf[body..])
                    .map_err(|_| Error::AuthFailed)?;
                keystream(&k.cipher, &k.iv(ssrc, index), &mut buf[header..body])?;
            }
            Keys::Gcm(k) => {
                // A failed open may leave the payload scrambled: the
                // packet is dropped then anyway.
                let (head, rest) = buf.split_at_mut(header);
                k.key
                    .open_in_place(k.rtp_nonce(ssrc, index), Aad::from(&*head), rest)
                    .map_err(|_| Error::AuthFailed)?;
            }
        }
        self.accept(ssrc, Layer::Rtp, index);
        Ok(body)
    }

    /// Encrypts an RTCP compound packet after its first 8 bytes and appends
    /// E=1, the SRTCP index (0, 1, 2 ... per SSRC) and an 80-bit tag.
    pub fn protect_rtcp(&mut self, rtcp: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(rtcp.len() + MAX_OVERHEAD);
        out.extend_from_slice(rtcp);
        out.resize(rtcp.len() + MAX_OVERHEAD, 0);
        let len = self.protect_rtcp_in_place(&mut out, rtcp.len())?;
        out.truncate(len);
        Ok(out)
    }

    /// [`SrtpContext::protect_rtcp`] without allocating: the packet is
    /// `buf[..len]`, the index and tag go after it ([`MAX_OVERHEAD`]
    /// bytes); returns the SRTCP length. `buf` left as it was on an error.
    pub fn protect_rtcp_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let ssrc = rtcp_ssrc(buf.get(..len).ok_or(Error::NoRoom)?)?;
        let index = match self.window(ssrc, Layer::Rtcp)? {
            Some(w) => w.top + 1,
            None => 0,
        };
        if index > MAX_SRTCP_INDEX {
            return Err(Error::KeyExhausted);
        }
        let sealed = self.seal_rtcp(buf, len, ssrc, index)?;
        self.accept(ssrc, Layer::Rtcp, index);
        Ok(sealed)
    }

    /// Checks an SRTCP packet's tag and index, then decrypts it if its E
    /// flag says it is encrypted.
    pub fn unprotect_rtcp(&mut self, srtcp: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = srtcp.to_vec();
        let len = self.unprotect_rtcp_in_place(&mut out)?;
        out.truncate(len);
        Ok(out)
    }

    /// [`SrtpContext::unprotect_rtcp`] without allocating: decrypts `buf`
    /// in place and returns the length of the RTCP packet at its start
    /// (index and tag are left behind it). `buf` is untouched unless the
    /// tag is good.
    pub fn unprotect_rtcp_in_place(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let ssrc = rtcp_ssrc(buf)?;
        let Keys::Cm(cm) = &self.rtcp else {
            return self.unprotect_rtcp_gcm(buf, ssrc);
        };
        let body = buf
            .len()
            .checked_sub(SRTCP_TAG_LEN)
            .filter(|&end| end >= RTCP_CLEAR_LEN + SRTCP_INDEX_LEN)
            .ok_or(Error::TooShort)?;
        let trailer = body - SRTCP_INDEX_LEN;
        let e_index = u32::from_be_bytes([
            buf[trailer],
            buf[trailer + 1],
            buf[trailer + 2],
            buf[trailer + 3],
        ]);
        let index = u64::from(e_index & 0x7fff_ffff);
        if let Some(w) = self.window(ssrc, Layer::Rtcp)? {
            w.check(index)?;
        }
        let tag = hmac::sign(&cm.auth, &buf[..body]);
        constant_time::verify_slices_are_equal(&tag.as_ref()[..SRTCP_TAG_LEN], &buf[body..])
            .map_err(|_| Error::AuthFailed)?;
        // E = 0 is an authenticated packet its sender chose not to encrypt
        // (RFC 3711 section 3.4); it still passed the tag, so it is taken.
        if e_index & 0x8000_0000 != 0 {
            let iv = cm.iv(ssrc, index);
            keystream(&cm.cipher, &iv, &mut buf[RTCP_CLEAR_LEN..trailer])?;
        }
        self.accept(ssrc, Layer::Rtcp, index);
        Ok(trailer)
    }

    /// SRTCP of RFC 7714 section 9: header || ciphertext || tag || E+index,
    /// the AAD the header and E+index.
    fn unprotect_rtcp_gcm(&mut self, buf: &mut [u8], ssrc: u32) -> Result<usize, Error> {
        let Keys::Gcm(k) = &self.rtcp else {
            return Err(Error::Crypto);
        };
        let trailer = buf
            .len()
            .checked_sub(SRTCP_INDEX_LEN)
            .filter(|&t| t >= RTCP_CLEAR_LEN + GCM_TAG_LEN)
            .ok_or(Error::TooShort)?;
        let e_index: [u8; 4] = buf[trailer..].try_into().map_err(|_| Error::TooShort)?;
        if e_index[0] & 0x80 == 0 {
            return Err(Error::AuthFailed);
        }
        let index = u64::from(u32::from_be_bytes(e_index) & 0x7fff_ffff);
        if let Some(w) = self.window(ssrc, Layer::Rtcp)? {
            w.check(index)?;
        }
        let mut aad = [0u8; RTCP_CLEAR_LEN + SRTCP_INDEX_LEN];
        aad[..RTCP_CLEAR_LEN].copy_from_slice(&buf[..RTCP_CLEAR_LEN]);
        aad[RTCP_CLEAR_LEN..].copy_from_slice(&e_index);
        k.key
            .open_in_place(
                k.rtcp_nonce(ssrc, index),
                Aad::from(&aad),
                &mut buf[RTCP_CLEAR_LEN..trailer],
            )
            .map_err(|_| Error::AuthFailed)?;
        self.accept(ssrc, Layer::Rtcp, index);
        Ok(trailer - GCM_TAG_LEN)
    }

    /// SRTCP with a given index, in place: E=1 || index after the
    /// encrypted packet `buf[..len]`, the tag over all of it (RFC 3711
    /// section 3.4); returns the SRTCP length.
    fn seal_rtcp(&self, buf: &mut [u8], len: usize, ssrc: u32, index: u64) -> Result<usize, Error> {
        let e_index = (0x8000_0000 | (index as u32 & 0x7fff_ffff)).to_be_bytes();
        let k = match &self.rtcp {
            Keys::Cm(k) => k,
            Keys::Gcm(k) => {
                let end = len + GCM_TAG_LEN + SRTCP_INDEX_LEN;
                let out = buf.get_mut(..end).ok_or(Error::NoRoom)?;
                let mut aad = [0u8; RTCP_CLEAR_LEN + SRTCP_INDEX_LEN];
                aad[..RTCP_CLEAR_LEN].copy_from_slice(&out[..RTCP_CLEAR_LEN]);
                aad[RTCP_CLEAR_LEN..].copy_from_slice(&e_index);
                let tag = k
                    .key
                    .seal_in_place_separate_tag(
                        k.rtcp_nonce(ssrc, index),
                        Aad::from(&aad),
                        &mut out[RTCP_CLEAR_LEN..len],
                    )
                    .map_err(|_| Error::Crypto)?;
                out[len..len + GCM_TAG_LEN].copy_from_slice(tag.as_ref());
                out[len + GCM_TAG_LEN..].copy_from_slice(&e_index);
                return Ok(end);
            }
        };
        let trailer = len + SRTCP_INDEX_LEN;
        let out = buf
            .get_mut(..trailer + SRTCP_TAG_LEN)
            .ok_or(Error::NoRoom)?;
        let iv = k.iv(ssrc, index);
        keystream(&k.cipher, &iv, &mut out[RTCP_CLEAR_LEN..len])?;
        out[len..trailer].copy_from_slice(&e_index);
        let tag = hmac::sign(&k.auth, &out[..trailer]);
        out[trailer..].copy_from_slice(&tag.as_ref()[..SRTCP_TAG_LEN]);
        Ok(trailer + SRTCP_TAG_LEN)
    }

    /// The window of an SSRC and layer, `None` before its first packet;
    /// refuses an SSRC the context has no room for.
    fn window(&self, ssrc: u32, layer: Layer) -> Result<Option<Window>, Error> {
        match self.streams.iter().find(|s| s.ssrc == ssrc) {
            Some(s) => Ok(s.window(layer)),
            None if self.streams.len() >= MAX_STREAMS => Err(Error::TooManyStreams),
            None => Ok(None),
        }
    }

    /// Records a packet index that was protected or authenticated.
    fn accept(&mut self, ssrc: u32, layer: Layer, index: u64) {
        let pos = match self.streams.iter().position(|s| s.ssrc == ssrc) {
            Some(pos) => pos,
            None => {
                self.streams.push(Stream {
                    ssrc,
                    rtp: None,
                    rtcp: None,
                });
                self.streams.len() - 1
            }
        };
        let slot = match layer {
            Layer::Rtp => &mut self.streams[pos].rtp,
            Layer::Rtcp => &mut self.streams[pos].rtcp,
        };
        match slot {
            Some(w) => w.accept(index),
            None => *slot = Some(Window::first(index)),
        }
    }
}

/// The per-layer primitives derived from the master key.
// One per context and layer, never in a collection: the AES-CM keys stay
// inline, off the per-packet path's way of a box.
#[allow(clippy::large_enum_variant)]
enum Keys {
    Cm(CmKeys),
    Gcm(GcmKeys),
}

/// AES-CM with HMAC-SHA1 (RFC 3711).
struct CmKeys {
    cipher: EncryptingKey,
    auth: hmac::Key,
    salt: [u8; MASTER_SALT_LEN],
}

/// AES-GCM (RFC 7714).
struct GcmKeys {
    key: LessSafeKey,
    salt: [u8; GCM_SALT_LEN],
}

impl GcmKeys {
    fn new(
        alg: &'static aead::Algorithm,
        key: &[u8],
        salt: [u8; GCM_SALT_LEN],
    ) -> Result<Self, Error> {
        let key = UnboundKey::new(alg, key).map_err(|_| Error::Crypto)?;
        Ok(GcmKeys {
            key: LessSafeKey::new(key),
            salt,
        })
    }

    /// RFC 7714 section 8.1: (00 00 || SSRC || ROC || SEQ) XOR salt.
    fn rtp_nonce(&self, ssrc: u32, index: u64) -> Nonce {
        let mut iv = [0u8; GCM_SALT_LEN];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
        self.nonce(iv)
    }

    /// RFC 7714 section 9.1: (00 00 || SSRC || 00 00 || 0 || index) XOR salt.
    fn rtcp_nonce(&self, ssrc: u32, index: u64) -> Nonce {
        let mut iv = [0u8; GCM_SALT_LEN];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[8..12].copy_from_slice(&((index as u32) & 0x7fff_ffff).to_be_bytes());
        self.nonce(iv)
    }

    fn nonce(&self, mut iv: [u8; GCM_SALT_LEN]) -> Nonce {
        for (b, s) in iv.iter_mut().zip(self.salt) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(iv)
    }
}

impl CmKeys {
    fn new(session: &SessionKeys) -> Result<Self, Error> {
        Ok(CmKeys {
            cipher: cipher(&session.cipher_key)?,
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &session.auth_key),
            salt: session.salt,
        })
    }

    fn iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        iv(&self.salt, ssrc, index)
    }
}

/// RFC 3711 section 4.1.1: IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16).
fn iv(salt: &[u8; MASTER_SALT_LEN], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..MASTER_SALT_LEN].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, i) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= i;
    }
    iv
}

fn cipher(key: &[u8; MASTER_KEY_LEN]) -> Result<EncryptingKey, Error> {
    let key = UnboundCipherKey::new(&AES_128, key).map_err(|_| Error::Crypto)?;
    EncryptingKey::ctr(key).map_err(|_| Error::Crypto)
}

/// XORs AES-CM keystream from `iv` onto `data`. The low 16 bits of an
/// SRTP IV are zero and a packet is far below 2^16 blocks, so the 128-bit
/// counter of AES-CTR never carries out of them (RFC 3711 section 4.1.1).
fn keystream(key: &EncryptingKey, iv: &[u8; 16], data: &mut [u8]) -> Result<(), Error> {
    let context = EncryptionContext::Iv128(FixedLength::from(iv));
    key.less_safe_encrypt(data, context)
        .map(|_| ())
        .map_err(|_| Error::Crypto)
}

/// The AES-CM PRF of RFC 3711 section 4.3.3: keystream from IV =
/// (master salt XOR (label || index DIV kdr)) * 2^16; with kdr 0 the label
/// alone lands on byte 7 of the salt.
fn derive_into(
    prf: &EncryptingKey,
    salt: &[u8; MASTER_SALT_LEN],
    label: u8,
    out: &mut [u8],
) -> Result<(), Error> {
    let mut x = [0u8; 16];
    x[..MASTER_SALT_LEN].copy_from_slice(salt);
    x[7] ^= label;
    out.fill(0);
    keystream(prf, &x, out)
}

/// HMAC-SHA1 over the authenticated portion and the ROC (RFC 3711
/// section 4.2), untruncated.
fn rtp_tag(key: &hmac::Key, packet: &[u8], roc: u32) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(packet);
    ctx.update(&roc.to_be_bytes());
    ctx.sign()
}

fn roc(index: u64) -> u32 {
    (index >> 16) as u32
}

/// Where the payload starts: the fixed header, CSRCs and header extension
/// (RFC 3550 section 5.3.1). Not `rtp::parse`: that also strips padding,
/// whose count byte is ciphertext in an SRTP packet (RFC 3711 section 3.1).
fn rtp_header_len(packet: &[u8]) -> Result<usize, Error> {
    if packet.len() < 12 {
        return Err(Error::TooShort);
    }
    if packet[0] >> 6 != 2 {
        return Err(Error::Malformed);
    }
    let mut len = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let ext = packet.get(len..len + 4).ok_or(Error::Malformed)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    if len > packet.len() {
        return Err(Error::Malformed);
    }
    Ok(len)
}

/// Sequence number and SSRC of a packet `rtp_header_len` accepted.
fn rtp_seq_ssrc(packet: &[u8]) -> (u16, u32) {
    (
        u16::from_be_bytes([packet[2], packet[3]]),
        u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
    )
}

/// The sender SSRC of an RTCP packet (RFC 3550 section 6.4).
fn rtcp_ssrc(packet: &[u8]) -> Result<u32, Error> {
    if packet.len() < RTCP_CLEAR_LEN {
        return Err(Error::TooShort);
    }
    if packet[0] >> 6 != 2 {
        return Err(Error::Malformed);
    }
    Ok(u32::from_be_bytes([
        packet[4], packet[5], packet[6], packet[7],
    ]))
}

/// The index to send `seq` under. The sender estimates like a receiver, so
/// a relay that forwards reordered packets still numbers them right, and
/// refuses an index it already used: the same IV twice would reuse
/// keystream (RFC 3711 section 9.1).
fn next_rtp_index(window: Option<Window>, seq: u16) -> Result<u64, Error> {
    received_rtp_index(window, seq)
}

/// RFC 3711 Appendix A: the index of `seq` is the candidate with ROC - 1,
/// ROC or ROC + 1 nearest the highest index s_l so far; then the replay
/// check. The first packet of an SSRC has ROC 0 (section 3.3.1).
fn received_rtp_index(window: Option<Window>, seq: u16) -> Result<u64, Error> {
    let Some(w) = window else {
        return Ok(u64::from(seq));
    };
    let roc = w.top >> 16;
    let s_l = w.top as u16;
    let v = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            // Before the stream's first rollover there is no ROC - 1.
            roc.checked_sub(1).ok_or(Error::TooOld)?
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    let index = (v << 16) | u64::from(seq);
    if index > MAX_SRTP_INDEX {
        return Err(Error::KeyExhausted);
    }
    w.check(index)?;
    Ok(index)
}

/// Per-SSRC state: the windows of SRTP and of SRTCP.
#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    rtp: Option<Window>,
    rtcp: Option<Window>,
}

impl Stream {
    fn window(&self, layer: Layer) -> Option<Window> {
        match layer {
            Layer::Rtp => self.rtp,
            Layer::Rtcp => self.rtcp,
        }
    }
}

/// The sliding window of RFC 3711 section 3.3.2: the highest index so far
/// and a bitmap of the 64 indices up to it (bit n = top - n was seen).
#[derive(Debug, Clone, Copy)]
struct Window {
    top: u64,
    seen: u64,
}

impl Window {
    fn first(index: u64) -> Self {
        Window {
            top: index,
            seen: 1,
        }
    }

    fn check(&self, index: u64) -> Result<(), Error> {
        if index > self.top {
            return Ok(());
        }
        let age = self.top - index;
        if age >= REPLAY_WINDOW {
            Err(Error::TooOld)
        } else if (self.seen >> age) & 1 == 1 {
            Err(Error::Replay)
        } else {
            Ok(())
        }
    }

    fn accept(&mut self, index: u64) {
        if index > self.top {
            let shift = index - self.top;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = index;
        } else if self.top - index < REPLAY_WINDOW {
            self.seen |= 1 << (self.top - index);
        }
    }
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

    /// The master key and salt of RFC 3711 Appendix B.3 (also libsrtp's
    /// test key).
    fn rfc_master() -> MasterKey {
        MasterKey::from_bytes(&hex(
            "E1F97A0D3E018BE0D64FA32C06DE4139 0EC675AD498AFEEBB6960B3AABE6",
        ))
        .unwrap()
    }

    fn pair(suite: Suite) -> (SrtpContext, SrtpContext) {
        let key = rfc_master();
        (
            SrtpContext::new(suite, &key).unwrap(),
            SrtpContext::new(suite, &key).unwrap(),
        )
    }

    fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        super::super::rtp::write_header(&mut p, 0, false, seq, 160 * u32::from(seq), ssrc);
        p.extend_from_slice(payload);
        p
    }

    /// An RTCP receiver report with one report block.
    fn rtcp(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x81, 201, 0, 7];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend((0..24).map(|i| i as u8));
        p
    }

    #[test]
    fn rfc3711_b2_aes_cm_keystream_matches() {
        let key = cipher(&hex("2B7E151628AED2A6ABF7158809CF4F3C").try_into().unwrap()).unwrap();
        let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
        let iv = iv(&salt, 0, 0);
        assert_eq!(iv.to_vec(), hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"));
        // The RFC's segment: 65282 blocks, of which it lists the first and
        // last three.
        let mut stream = vec![0u8; 65282 * 16];
        keystream(&key, &iv, &mut stream).unwrap();
        assert_eq!(
            stream[..48],
            hex("E03EAD0935C95E80E166B16DD92B4EB4
                 D23513162B02D0F72A43A2FE4A5F97AB
                 41E95B3BB0A2E8DD477901E4FCA894C0")[..]
        );
        assert_eq!(
            stream[0xFEFF * 16..],
            hex("EC8CDF7398607CB0F2D21675EA9EA1E4
                 362B7C3C6773516318A077D7FC5073AE
                 6A2CC3787889374FBEB4C81B17BA6C44")[..]
        );
    }

    #[test]
    fn rfc3711_b3_key_derivation_matches() {
        let keys = SessionKeys::derive(&rfc_master(), Layer::Rtp).unwrap();
        assert_eq!(
            keys.cipher_key.to_vec(),
            hex("C61E7A93744F39EE10734AFE3FF7A087")
        );
        assert_eq!(keys.salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(
            keys.auth_key.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
        // The appendix runs the auth-key PRF out to 94 bytes: the counter
        // must advance block by block.
        let master = rfc_master();
        let mut long = [0u8; 94];
        derive_into(&cipher(master.key()).unwrap(), master.salt(), 1, &mut long).unwrap();
        assert_eq!(
            long.to_vec(),
            hex(
                "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
                 E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
                 6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2"
            )
        );
        let rtcp = SessionKeys::derive(&rfc_master(), Layer::Rtcp).unwrap();
        assert_ne!(rtcp.cipher_key, keys.cipher_key);
        assert_ne!(rtcp.auth_key, keys.auth_key);
        assert_ne!(rtcp.salt, keys.salt);
    }

    /// libsrtp's reference packet (test/srtp_driver.c, srtp_validate): the
    /// RFC 3711 B.3 master key, SSRC 0xcafebabe, seq 0x1234.
    #[test]
    fn libsrtp_reference_packet_protects_and_unprotects() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let plain = hex("800f1234decafbadcafebabe abababababababababababababababab");
        let sealed =
            hex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb");
        assert_eq!(tx.protect(&plain).unwrap(), sealed);
        assert_eq!(rx.unprotect(&sealed).unwrap(), plain);
    }

    /// libsrtp's SRTCP reference packet (srtp_validate), sent with SRTCP
    /// index 1 as libsrtp counts from there.
    #[test]
    fn libsrtp_reference_srtcp_packet_seals_and_opens() {
        let (tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let plain = hex("81c8000bcafebabe abababababababababababababababab");
        let sealed =
            hex("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798");
        let mut buf = plain.clone();
        buf.resize(plain.len() + MAX_OVERHEAD, 0);
        let len = tx.seal_rtcp(&mut buf, plain.len(), 0xcafe_babe, 1).unwrap();
        assert_eq!(buf[..len], sealed[..]);
        assert_eq!(rx.unprotect_rtcp(&sealed).unwrap(), plain);
    }

    /// A GCM context on the session key and salt of RFC 7714 section 16
    /// (its vectors start after key derivation).
    fn rfc7714_context(key: &str) -> SrtpContext {
        let (alg, profile) = if key.len() == 32 {
            (&aead::AES_128_GCM, Profile::AeadAes128Gcm)
        } else {
            (&aead::AES_256_GCM, Profile::AeadAes256Gcm)
        };
        let salt: [u8; 12] = hex("517569642070726f2071756f").try_into().unwrap();
        let keys = || Keys::Gcm(GcmKeys::new(alg, &hex(key), salt).unwrap());
        SrtpContext {
            profile,
            rtp: keys(),
            rtcp: keys(),
            streams: Vec::new(),
        }
    }

    #[test]
    fn rfc7714_aead_aes_gcm_vectors_seal_and_open() {
        let plain = hex("8040f17b8041f8d35501a0b2 47616c6c69612065 7374206f6d6e6973
             2064697669736120 696e207061727465 732074726573");
        let rtcp_plain = hex(
            "81c8000d4d617273 4e5450314e545032 525450200000042a 0000e9304c756e61
             deadbeefdeadbeef deadbeefdeadbeef deadbeef",
        );
        let k128 = "000102030405060708090a0b0c0d0e0f";
        let k256 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        for (key, sealed, sealed_rtcp) in [
            (
                k128,
                "8040f17b8041f8d35501a0b2 f24de3a3fb34de6cacba861c9d7e4bca be633bd50d294e6f42a5f47a51c7d19b
                 36de3adf8833899d7f27beb16a9152cf 765ee4390cce",
                "81c8000d4d617273 63e94885dcdab67ca727d7662f6b7e99 7ff5c0f76c06f32dc676a5f1730d6fda
                 4ce09b4686303ded0bb9275bc84aa458 96cf4d2fc5abf87245d9eade 800005d4",
            ),
            (
                k256,
                "8040f17b8041f8d35501a0b2 32b1de78a822fe12ef9f78fa332e33aa b18012389a58e2f3b50b2a0276ffae0f
                 1ba63799b87b7aa3db36dfffd6b0f9bb 7878d7a76c13",
                "81c8000d4d617273 d50ae4d1f5ce5d304ba297e47d470c28 2c3ece5dbffe0a50a2eaa5c1110555be
                 8415f658c61de0476f1b6fad1d1eb30c 4446839f57ff6f6cb26ac3be 800005d4",
            ),
        ] {
            let (sealed, sealed_rtcp) = (hex(sealed), hex(sealed_rtcp));
            let (mut tx, mut rx) = (rfc7714_context(key), rfc7714_context(key));
            assert_eq!(tx.protect(&plain).unwrap(), sealed, "{key}");
            let mut bad = sealed.clone();
            bad[20] ^= 1;
            assert_eq!(rx.unprotect(&bad), Err(Error::AuthFailed));
            assert_eq!(rx.unprotect(&sealed).unwrap(), plain);
            assert_eq!(rx.unprotect(&sealed), Err(Error::Replay));
            let mut buf = rtcp_plain.clone();
            buf.resize(rtcp_plain.len() + MAX_OVERHEAD, 0);
            let len = tx.seal_rtcp(&mut buf, rtcp_plain.len(), 0x4d61_7273, 0x5d4).unwrap();
            assert_eq!(buf[..len], sealed_rtcp[..], "{key}");
            let mut bad = sealed_rtcp.clone();
            bad[30] ^= 8;
            assert_eq!(rx.unprotect_rtcp(&bad), Err(Error::AuthFailed));
            assert_eq!(rx.unprotect_rtcp(&sealed_rtcp).unwrap(), rtcp_plain);
        }
    }

    #[test]
    fn gcm_contexts_from_a_master_key_round_trip_rtp_and_rtcp() {
        for key_len in [16, 32] {
            let key = vec![7u8; key_len];
            let salt = [9u8; GCM_SALT_LEN];
            let mut tx = SrtpContext::gcm(&key, &salt).unwrap();
            let mut rx = SrtpContext::gcm(&key, &salt).unwrap();
            let mut other = SrtpContext::gcm(&[8u8; 16], &salt).unwrap();
            for seq in 0..5u16 {
                let p = rtp(seq, 0xabc, &[seq as u8; 160]);
                let s = tx.protect(&p).unwrap();
                assert_eq!(s.len(), p.len() + GCM_TAG_LEN);
                assert_ne!(s[12..172], p[12..]);
                assert!(other.unprotect(&s).is_err());
                assert_eq!(rx.unprotect(&s).unwrap(), p);
                let s = tx.protect_rtcp(&rtcp(0xabc)).unwrap();
                assert_eq!(s.len(), rtcp(0xabc).len() + MAX_OVERHEAD);
                assert_eq!(rx.unprotect_rtcp(&s).unwrap(), rtcp(0xabc));
            }
        }
        assert!(SrtpContext::gcm(&[0; 20], &[0; 12]).is_err());
    }

    #[test]
    fn protect_then_unprotect_round_trips_for_both_suites() {
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
            let (mut tx, mut rx) = pair(suite);
            for seq in 1000..1010u16 {
                let p = rtp(seq, 0x1234_5678, &[seq as u8; 160]);
                let s = tx.protect(&p).unwrap();
                assert_eq!(s.len(), p.len() + suite.tag_len());
                assert_eq!(s[..12], p[..12], "header stays in the clear");
                assert_ne!(s[12..172], p[12..], "payload is encrypted");
                assert_eq!(rx.unprotect(&s).unwrap(), p);
            }
        }
    }

    #[test]
    fn csrcs_extension_and_padding_are_handled() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let mut p = rtp(7, 42, &[]);
        p[0] |= 0x20 | 0x10 | 2; // padding, extension, 2 CSRCs
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]); // one-word extension
        let header = p.len();
        p.extend_from_slice(&[0x55; 20]);
        p.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let s = tx.protect(&p).unwrap();
        assert_eq!(s[..header], p[..header], "CSRCs and extension stay clear");
        assert_ne!(
            s[header..p.len()],
            p[header..],
            "payload and padding are encrypted"
        );
        assert_eq!(rx.unprotect(&s).unwrap(), p);
    }

    #[test]
    fn sha1_32_packets_are_six_bytes_shorter_and_srtcp_keeps_80_bits() {
        let p = rtp(1, 1, &[0; 160]);
        let (mut tx80, _) = pair(Suite::AesCm128HmacSha1_80);
        let (mut tx32, mut rx32) = pair(Suite::AesCm128HmacSha1_32);
        let s32 = tx32.protect(&p).unwrap();
        assert_eq!(tx80.protect(&p).unwrap().len() - s32.len(), 6);
        let c = rtcp(1);
        let sc = tx32.protect_rtcp(&c).unwrap();
        assert_eq!(sc.len(), c.len() + SRTCP_INDEX_LEN + SRTCP_TAG_LEN);
        assert_eq!(tx80.protect_rtcp(&c).unwrap().len(), sc.len());
        assert_eq!(rx32.unprotect_rtcp(&sc).unwrap(), c);
    }

    #[test]
    fn rtcp_round_trips_with_the_index_counting_from_zero() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let c = rtcp(0xdead_beef);
        for expected in 0..3u32 {
            let s = tx.protect_rtcp(&c).unwrap();
            assert_eq!(s[..8], c[..8], "the first 8 bytes stay clear");
            assert_ne!(s[8..c.len()], c[8..]);
            let at = c.len();
            let e_index = u32::from_be_bytes(s[at..at + 4].try_into().unwrap());
            assert_eq!(e_index, 0x8000_0000 | expected);
            assert_eq!(rx.unprotect_rtcp(&s).unwrap(), c);
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_fails() {
        let p = rtp(99, 0x0102_0304, &[0x11; 32]);
        let s = pair(Suite::AesCm128HmacSha1_80).0.protect(&p).unwrap();
        for bit in 0..s.len() * 8 {
            let mut bad = s.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let got = pair(Suite::AesCm128HmacSha1_80).1.unprotect(&bad);
            // Byte 0 holds the version, CC and X, which may break the
            // header before the tag is reached; everything else is tagged.
            if bit < 8 {
                assert!(got.is_err(), "bit {bit}");
            } else {
                assert_eq!(got, Err(Error::AuthFailed), "bit {bit}");
            }
        }
        let c = rtcp(5);
        let s = pair(Suite::AesCm128HmacSha1_32).0.protect_rtcp(&c).unwrap();
        for bit in 8..s.len() * 8 {
            let mut bad = s.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let got = pair(Suite::AesCm128HmacSha1_32).1.unprotect_rtcp(&bad);
            assert_eq!(got, Err(Error::AuthFailed), "bit {bit}");
        }
    }

    #[test]
    fn forged_packets_do_not_move_the_rollover_counter() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let first = tx.protect(&rtp(100, 9, &[1; 10])).unwrap();
        rx.unprotect(&first).unwrap();
        // A forgery far ahead would, if believed, push s_l past the wrap.
        let mut forger = pair(Suite::AesCm128HmacSha1_80).0;
        let mut forged = forger.protect(&rtp(30000, 9, &[2; 10])).unwrap();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(rx.unprotect(&forged), Err(Error::AuthFailed));
        let next = tx.protect(&rtp(101, 9, &[3; 10])).unwrap();
        assert_eq!(rx.unprotect(&next).unwrap(), rtp(101, 9, &[3; 10]));
    }

    #[test]
    fn a_replayed_packet_is_rejected() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let s = tx.protect(&rtp(5, 1, &[0; 20])).unwrap();
        rx.unprotect(&s).unwrap();
        assert_eq!(rx.unprotect(&s), Err(Error::Replay));
        let c = tx.protect_rtcp(&rtcp(1)).unwrap();
        rx.unprotect_rtcp(&c).unwrap();
        assert_eq!(rx.unprotect_rtcp(&c), Err(Error::Replay));
    }

    #[test]
    fn a_packet_older_than_the_window_is_rejected_and_late_ones_inside_it_pass() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let sealed: Vec<Vec<u8>> = (0..=100u16)
            .map(|seq| tx.protect(&rtp(seq, 3, &[seq as u8; 8])).unwrap())
            .collect();
        rx.unprotect(&sealed[100]).unwrap();
        assert_eq!(rx.unprotect(&sealed[36]), Err(Error::TooOld), "age 64");
        assert_eq!(rx.unprotect(&sealed[37]).unwrap(), rtp(37, 3, &[37; 8]));
        assert_eq!(rx.unprotect(&sealed[99]).unwrap(), rtp(99, 3, &[99; 8]));
        assert_eq!(rx.unprotect(&sealed[99]), Err(Error::Replay));
    }

    #[test]
    fn protect_refuses_to_reuse_an_index() {
        let (mut tx, _) = pair(Suite::AesCm128HmacSha1_80);
        let p = rtp(10, 1, &[0; 10]);
        tx.protect(&p).unwrap();
        assert_eq!(tx.protect(&p), Err(Error::Replay));
    }

    #[test]
    fn rollover_at_65535_round_trips_even_reordered() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let seqs = [65533u16, 65534, 65535, 0, 1, 2];
        let sealed: Vec<Vec<u8>> = seqs
            .iter()
            .map(|&seq| tx.protect(&rtp(seq, 8, &[seq as u8; 16])).unwrap())
            .collect();
        // Delivered out of order across the wrap: 65533, 0, 65535, 65534, 2, 1.
        for i in [0, 3, 2, 1, 5, 4] {
            let seq = seqs[i];
            assert_eq!(
                rx.unprotect(&sealed[i]).unwrap(),
                rtp(seq, 8, &[seq as u8; 16])
            );
        }
        // After the wrap the tag covers ROC 1: a receiver that still
        // thinks ROC 0 (a fresh one) cannot authenticate packet 2.
        let (_, mut fresh) = pair(Suite::AesCm128HmacSha1_80);
        assert_eq!(fresh.unprotect(&sealed[5]), Err(Error::AuthFailed));
    }

    #[test]
    fn a_packet_from_before_the_first_rollover_is_too_old() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        rx.unprotect(&tx.protect(&rtp(10, 1, &[])).unwrap())
            .unwrap();
        let mut other = pair(Suite::AesCm128HmacSha1_80).0;
        let s = other.protect(&rtp(60000, 1, &[])).unwrap();
        assert_eq!(rx.unprotect(&s), Err(Error::TooOld));
    }

    #[test]
    fn each_ssrc_keeps_its_own_state_up_to_a_limit() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        for ssrc in 0..MAX_STREAMS as u32 {
            let s = tx.protect(&rtp(1, ssrc, &[0; 4])).unwrap();
            rx.unprotect(&s).unwrap();
        }
        let p = rtp(1, 9999, &[0; 4]);
        assert_eq!(tx.protect(&p), Err(Error::TooManyStreams));
        assert_eq!(tx.protect_rtcp(&rtcp(9999)), Err(Error::TooManyStreams));
        let s = tx.protect(&rtp(2, 0, &[0; 4])).unwrap();
        assert!(rx.unprotect(&s).is_ok(), "known SSRCs go on");
    }

    #[test]
    fn short_and_malformed_packets_are_refused() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        assert_eq!(tx.protect(&[0x80; 11]), Err(Error::TooShort));
        assert_eq!(tx.protect(&[0x40; 20]), Err(Error::Malformed));
        let mut p = rtp(1, 1, &[]);
        p[0] |= 0x10; // extension flag without the extension
        assert_eq!(tx.protect(&p), Err(Error::Malformed));
        assert_eq!(rx.unprotect(&rtp(1, 1, &[0; 9])), Err(Error::TooShort));
        assert_eq!(rx.unprotect_rtcp(&rtcp(1)[..21]), Err(Error::TooShort));
        assert_eq!(tx.protect_rtcp(&[0x81, 201, 0]), Err(Error::TooShort));
    }

    #[test]
    fn in_place_and_vec_versions_produce_identical_bytes() {
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
            let (mut vec_tx, mut vec_rx) = pair(suite);
            let (mut tx, mut rx) = pair(suite);
            for seq in [65534u16, 65535, 0, 1] {
                let p = rtp(seq, 0xabcd, &[seq as u8; 160]);
                let sealed = vec_tx.protect(&p).unwrap();
                let mut buf = [0u8; 2048];
                buf[..p.len()].copy_from_slice(&p);
                let len = tx.protect_in_place(&mut buf, p.len()).unwrap();
                assert_eq!(buf[..len], sealed[..], "SRTP, seq {seq}");
                assert_eq!(vec_rx.unprotect(&sealed).unwrap(), p);
                let plain = rx.unprotect_in_place(&mut buf[..len]).unwrap();
                assert_eq!(buf[..plain], p[..], "RTP, seq {seq}");
                let c = rtcp(0xabcd);
                let sealed = vec_tx.protect_rtcp(&c).unwrap();
                buf[..c.len()].copy_from_slice(&c);
                let len = tx.protect_rtcp_in_place(&mut buf, c.len()).unwrap();
                assert_eq!(buf[..len], sealed[..], "SRTCP, seq {seq}");
                assert_eq!(vec_rx.unprotect_rtcp(&sealed).unwrap(), c);
                let plain = rx.unprotect_rtcp_in_place(&mut buf[..len]).unwrap();
                assert_eq!(buf[..plain], c[..], "RTCP, seq {seq}");
            }
        }
    }

    #[test]
    fn in_place_needs_room_for_the_trailer_and_failures_leave_the_buffer() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let p = rtp(1, 7, &[0x33; 20]);
        let mut tight = p.clone();
        tight.resize(p.len() + 9, 0);
        assert_eq!(tx.protect_in_place(&mut tight, p.len()), Err(Error::NoRoom));
        assert_eq!(tight[..p.len()], p[..], "untouched");
        assert_eq!(tx.protect_in_place(&mut tight, 1000), Err(Error::NoRoom));
        let c = rtcp(7);
        let mut tight = c.clone();
        tight.resize(c.len() + SRTCP_INDEX_LEN + SRTCP_TAG_LEN - 1, 0);
        assert_eq!(
            tx.protect_rtcp_in_place(&mut tight, c.len()),
            Err(Error::NoRoom)
        );
        assert_eq!(tight[..c.len()], c[..], "untouched");
        // Neither failure used an index: the next ones are the first.
        let mut buf = p.clone();
        buf.resize(p.len() + MAX_OVERHEAD, 0);
        let len = tx.protect_in_place(&mut buf, p.len()).unwrap();
        let mut bad = buf[..len].to_vec();
        bad[15] ^= 1;
        let kept = bad.clone();
        assert_eq!(rx.unprotect_in_place(&mut bad), Err(Error::AuthFailed));
        assert_eq!(bad, kept, "a forgery is not decrypted");
        assert_eq!(rx.unprotect_in_place(&mut buf[..len]), Ok(p.len()));
        assert_eq!(buf[..p.len()], p[..]);
        let sealed = tx.protect_rtcp(&c).unwrap();
        let at = c.len();
        assert_eq!(sealed[at..at + 4], [0x80, 0, 0, 0], "SRTCP index 0");
    }

    #[test]
    fn contexts_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<SrtpContext>();
    }

    proptest! {
        #[test]
        fn unprotect_never_panics_on_any_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            short_tag in any::<bool>(),
        ) {
            let suite = if short_tag { Suite::AesCm128HmacSha1_32 } else { Suite::AesCm128HmacSha1_80 };
            let (_, mut rx) = pair(suite);
            let mut bytes = bytes;
            // Half the time a version-2 first byte, so parsing goes deeper.
            if let Some(first) = bytes.first_mut() && short_tag {
                *first = 0x80 | (*first & 0x3f);
            }
            prop_assert!(rx.unprotect(&bytes).is_err());
            prop_assert!(rx.unprotect_rtcp(&bytes).is_err());
        }

        #[test]
        fn any_rtp_packet_round_trips(
            seq in any::<u16>(),
            ssrc in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
            let p = rtp(seq, ssrc, &payload);
            let s = tx.protect(&p).unwrap();
            prop_assert_eq!(rx.unprotect(&s).unwrap(), p);
        }
    }
}
