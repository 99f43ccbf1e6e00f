//! A browser's leg (WebRTC): ICE-lite answers to its connectivity checks
//! ([`super::stun`]), a DTLS 1.2 handshake (the `dimpl` crate, sans-IO)
//! whose peer certificate must have the fingerprint the browser's SDP gave,
//! and the SRTP keys the handshake exports (RFC 5764), in whichever
//! profile it chose (AES-CM or AES-GCM). RTCP is multiplexed on the RTP
//! port (RFC 5761); datagrams are told apart by their first byte (RFC
//! 7983). Only a source that passed a check may speak DTLS or SRTP, and
//! media goes to the pair the browser nominated. Pure: no sockets, no
//! clock reads.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use dimpl::{Config, Dtls, DtlsCertificate, Output, SrtpProfile};
use proto::webrtc::{DtlsRole, Fingerprint, WebrtcLeg};
use sha2::{Digest as _, Sha256};

use super::srtp::{self, MASTER_KEY_LEN, MASTER_SALT_LEN, MasterKey, SrtpContext, Suite};
use super::stun;

/// Sources one leg remembers as checked (a browser has a few candidates).
const MAX_VALIDATED: usize = 8;

/// mediad's DTLS certificate: one self-signed ECDSA P-256 certificate per
/// process, whose fingerprint goes into every browser's SDP.
#[derive(Clone)]
pub struct Identity {
    cert: DtlsCertificate,
    config: Arc<Config>,
    pub fingerprint: Fingerprint,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.fingerprint)
    }
}

/// Why mediad has no DTLS identity.
#[derive(Debug, thiserror::Error)]
#[error("cannot make a DTLS certificate: {0}")]
pub struct IdentityError(String);

impl Identity {
    pub fn generate() -> Result<Self, IdentityError> {
        let cert = dimpl::certificate::generate_self_signed_certificate()
            .map_err(|e| IdentityError(e.to_string()))?;
        let config = Config::builder()
            .build()
            .map_err(|e| IdentityError(e.to_string()))?;
        Ok(Identity {
            fingerprint: fingerprint_of(&cert.certificate),
            cert,
            config: Arc::new(config),
        })
    }
}

/// SHA-256 of a certificate (DER), as a=fingerprint carries it.
pub fn fingerprint_of(der: &[u8]) -> Fingerprint {
    Fingerprint(Sha256::digest(der).into())
}

/// How a datagram on a WebRTC leg's port was taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// STUN or DTLS, handled here (answers wait in the outbox).
    Handled,
    /// RTP or RTCP from a checked source: for the SRTP path.
    Media,
    /// Dropped: from a source that never passed a check, a check that
    /// failed, or what is none of STUN, DTLS, RTP.
    Dropped { foreign: bool },
}

/// The SRTP contexts a finished handshake gives: what the browser sends
/// is opened with `rx`, what mediad sends sealed with `tx`.
pub struct Keys {
    pub rx: SrtpContext,
    pub tx: SrtpContext,
    pub profile: SrtpProfile,
}

/// One browser leg's ICE and DTLS state.
pub struct WebrtcState {
    pub params: WebrtcLeg,
    dtls: Option<Dtls>,
    validated: VecDeque<SocketAddr>,
    nominated: Option<SocketAddr>,
    /// The peer's certificate had the fingerprint of its SDP.
    cert_ok: bool,
    client_started: bool,
    next_timeout: Option<Instant>,
    outbox: VecDeque<(SocketAddr, Vec<u8>)>,
    keys: Option<Keys>,
    /// Why the leg cannot carry media, once it cannot.
    pub failed: Option<&'static str>,
    /// Checks that failed (wrong credentials, forged).
    pub bad_checks: u64,
}

impl std::fmt::Debug for WebrtcState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebrtcState")
            .field("nominated", &self.nominated)
            .field("validated", &self.validated.len())
            .field("keyed", &self.keys.is_some())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl WebrtcState {
    pub fn new(params: WebrtcLeg, id: &Identity, now: Instant) -> Self {
        let mut dtls = Dtls::new_12(id.config.clone(), id.cert.clone(), now);
        if params.role == DtlsRole::Client {
            dtls.set_active(true);
        }
        WebrtcState {
            params,
            dtls: Some(dtls),
            validated: VecDeque::new(),
            nominated: None,
            cert_ok: false,
            client_started: false,
            next_timeout: None,
            outbox: VecDeque::new(),
            keys: None,
            failed: None,
            bad_checks: 0,
        }
    }

    /// Where media and DTLS go: the nominated pair, else the source of
    /// the latest check.
    pub fn target(&self) -> Option<SocketAddr> {
        self.nominated.or_else(|| self.validated.back().copied())
    }

    /// The source passed a check.
    pub fn admits(&self, src: SocketAddr) -> bool {
        self.validated.contains(&src)
    }

    /// The SRTP keys, once the handshake is done; taken once.
    pub fn take_keys(&mut self) -> Option<Keys> {
        self.keys.take()
    }

    /// What to send: (destination, datagram).
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.outbox.pop_front()
    }

    /// A datagram from `src` on the leg's port.
    pub fn on_datagram(&mut self, now: Instant, src: SocketAddr, data: &[u8]) -> Taken {
        match data.first() {
            Some(0..=3) => self.on_stun(now, src, data),
            Some(20..=63) if self.admits(src) => {
                self.on_dtls(now, data);
                Taken::Handled
            }
            Some(128..=191) if self.admits(src) => Taken::Media,
            Some(20..=63 | 128..=191) => Taken::Dropped { foreign: true },
            _ => Taken::Dropped { foreign: false },
        }
    }

    fn on_stun(&mut self, now: Instant, src: SocketAddr, data: &[u8]) -> Taken {
        let p = &self.params;
        match stun::check(data, src, &p.local.ufrag, &p.remote.ufrag, &p.local.pwd) {
            Ok(check) => {
                self.outbox.push_back((src, check.response));
                if !self.validated.contains(&src) {
                    if self.validated.len() == MAX_VALIDATED {
                        self.validated.pop_front();
                    }
                    self.validated.push_back(src);
                }
                if check.use_candidate {
                    self.nominated = Some(src);
                }
                if self.params.role == DtlsRole::Client && !self.client_started {
                    self.client_started = true;
                    self.drive(now, None);
                }
                Taken::Handled
            }
            Err(_) => {
                self.bad_checks += 1;
                Taken::Dropped { foreign: true }
            }
        }
    }

    fn on_dtls(&mut self, now: Instant, data: &[u8]) {
        self.drive(now, Some(data));
    }

    /// The periodic tick: DTLS retransmissions.
    pub fn on_tick(&mut self, now: Instant) {
        if self.next_timeout.is_some_and(|t| now >= t) {
            self.drive(now, None);
        }
    }

    /// Feeds the handshake the time and a record, then drains it.
    fn drive(&mut self, now: Instant, record: Option<&[u8]>) {
        let Some(mut dtls) = self.dtls.take() else {
            return;
        };
        let fed = dtls
            .handle_timeout(now)
            .and_then(|()| record.map_or(Ok(()), |r| dtls.handle_packet(r)));
        if fed.is_err() {
            self.fail("the DTLS handshake failed");
            return;
        }
        let mut buf = vec![0u8; 2048];
        let mut exported = None;
        let to = self.target();
        loop {
            match dtls.poll_output(&mut buf) {
                Output::Packet(p) => {
                    if let Some(to) = to {
                        self.outbox.push_back((to, p.to_vec()));
                    }
                }
                Output::Timeout(t) => {
                    self.next_timeout = Some(t);
                    break;
                }
                Output::PeerCert(der) => {
                    self.cert_ok = fingerprint_of(der) == self.params.remote_fingerprint;
                }
                Output::KeyingMaterial(km, profile) => exported = Some((km.to_vec(), profile)),
                _ => {}
            }
        }
        self.dtls = Some(dtls);
        if let Some((km, profile)) = exported {
            if !self.cert_ok {
                self.fail("the browser's certificate is not the one its SDP named");
                return;
            }
            match keys(&km, profile, self.params.role) {
                Some(k) => self.keys = Some(k),
                None => self.fail("unusable SRTP keys from DTLS"),
            }
        }
    }

    fn fail(&mut self, why: &'static str) {
        self.failed = Some(why);
        self.dtls = None;
        self.keys = None;
        self.next_timeout = None;
    }
}

/// The SRTP contexts from the exported keying material (RFC 5764 section
/// 4.2: client key, server key, client salt, server salt).
fn keys(km: &[u8], profile: SrtpProfile, role: DtlsRole) -> Option<Keys> {
    let (key_len, salt_len) = match profile {
        SrtpProfile::AES128_CM_SHA1_80 => (MASTER_KEY_LEN, MASTER_SALT_LEN),
        SrtpProfile::AEAD_AES_128_GCM => (16, srtp::GCM_SALT_LEN),
        SrtpProfile::AEAD_AES_256_GCM => (32, srtp::GCM_SALT_LEN),
        _ => return None,
    };
    if km.len() < 2 * (key_len + salt_len) {
        return None;
    }
    let (ck, rest) = km.split_at(key_len);
    let (sk, rest) = rest.split_at(key_len);
    let (cs, ss) = rest.split_at(salt_len);
    let ss = &ss[..salt_len];
    let make = |k: &[u8], s: &[u8]| -> Option<SrtpContext> {
        if profile == SrtpProfile::AES128_CM_SHA1_80 {
            let master = MasterKey::new(k.try_into().ok()?, s.try_into().ok()?);
            SrtpContext::new(Suite::AesCm128HmacSha1_80, &master).ok()
        } else {
            SrtpContext::gcm(k, s.try_into().ok()?).ok()
        }
    };
    let (client, server) = (make(ck, cs)?, make(sk, ss)?);
    // The client writes with the client keys.
    let (rx, tx) = match role {
        DtlsRole::Server => (client, server),
        DtlsRole::Client => (server, client),
    };
    Some(Keys { rx, tx, profile })
}
