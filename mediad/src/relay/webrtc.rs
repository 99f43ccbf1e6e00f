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
            // Counted by the leg as a foreign packet.
            Err(_) => Taken::Dropped { foreign: true },
        }
    }

    fn on_dtls(&mut self, now: Instant, data: &[u8]) {
        self.drive(now, Some(data));
    }

    /// The call ends: a keyed handshake says close_notify (RFC 5246
    /// section 7.2.1), so the browser learns at once rather than by ICE
    /// consent expiring; the state goes with the leg.
    pub fn close(&mut self) {
        let Some(mut dtls) = self.dtls.take() else {
            return;
        };
        if self.failed.is_some() || !self.cert_ok || dtls.close().is_err() {
            return;
        }
        let Some(to) = self.target() else { return };
        let mut buf = vec![0u8; 2048];
        while let Output::Packet(p) = dtls.poll_output(&mut buf) {
            self.outbox.push_back((to, p.to_vec()));
        }
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
/// 4.2: client key, server key, client salt, server salt) for the side
/// that plays `role` (a test's browser uses it too).
pub fn keys(km: &[u8], profile: SrtpProfile, role: DtlsRole) -> Option<Keys> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::{Call, LegId, g711, rtp};
    use proto::webrtc::IceCredentials;
    use std::time::Duration;

    /// A browser as mediad meets it: its own certificate and ICE
    /// credentials, a dimpl endpoint in the other DTLS role, and the SRTP
    /// contexts its handshake makes.
    struct Browser {
        dtls: Dtls,
        role: DtlsRole,
        ice: IceCredentials,
        fingerprint: Fingerprint,
        /// mediad's certificate as the browser saw it.
        peer: Option<Fingerprint>,
        keys: Option<Keys>,
    }

    impl Browser {
        /// A browser facing mediad in `mediad_role`.
        fn new(now: Instant, mediad_role: DtlsRole) -> Self {
            let cert = dimpl::certificate::generate_self_signed_certificate().unwrap();
            let fingerprint = fingerprint_of(&cert.certificate);
            let mut dtls = Dtls::new_12(Arc::new(Config::default()), cert, now);
            let role = match mediad_role {
                DtlsRole::Server => {
                    dtls.set_active(true);
                    DtlsRole::Client
                }
                DtlsRole::Client => DtlsRole::Server,
            };
            Browser {
                dtls,
                role,
                ice: IceCredentials::random(),
                fingerprint,
                peer: None,
                keys: None,
            }
        }

        /// What sipd tells mediad of this browser.
        fn leg(&self, mediad: &IceCredentials, mediad_role: DtlsRole) -> WebrtcLeg {
            WebrtcLeg {
                local: mediad.clone(),
                remote: self.ice.clone(),
                remote_fingerprint: self.fingerprint,
                role: mediad_role,
                opus: None,
            }
        }

        /// Its records due now.
        fn flights(&mut self, now: Instant) -> Vec<Vec<u8>> {
            let _ = self.dtls.handle_timeout(now);
            let mut out = Vec::new();
            let mut buf = vec![0u8; 4096];
            loop {
                match self.dtls.poll_output(&mut buf) {
                    Output::Packet(p) => out.push(p.to_vec()),
                    Output::Timeout(_) => return out,
                    Output::PeerCert(der) => self.peer = Some(fingerprint_of(der)),
                    Output::KeyingMaterial(km, profile) => {
                        self.keys = keys(&km, profile, self.role);
                    }
                    _ => {}
                }
            }
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The browser's media address: nothing sipd signalled.
    const BROWSER: &str = "10.9.8.7:50000";
    /// The plain phone on the B-leg.
    const PHONE: &str = "127.0.0.1:6000";

    /// A call whose A-leg is a browser (mediad in `role`) and B-leg a plain
    /// phone, both on PCMU.
    fn call(t: Instant, id: &Identity, b: &Browser, role: DtlsRole) -> (Call, IceCredentials) {
        let mine = IceCredentials::random();
        let mut c = Call::new(t);
        for leg in [LegId::A, LegId::B] {
            c.set_codecs(leg, [(0u8, "PCMU"), (101, "telephone-event")]);
        }
        c.set_signal_ip(LegId::B, addr(PHONE).ip());
        c.set_remote(LegId::B, addr(PHONE), None);
        c.set_webrtc(t, LegId::A, b.leg(&mine, role), id).unwrap();
        // The browser's SDP address (and its signalling IP) mean nothing.
        c.set_remote(LegId::A, addr("192.0.2.9:9"), None);
        c.set_signal_ip(LegId::A, addr("192.0.2.9:9").ip());
        (c, mine)
    }

    /// The shell's way in: a datagram on a leg's RTP port, and what the
    /// relay sends for it.
    fn feed(
        c: &mut Call,
        now: Instant,
        leg: LegId,
        src: SocketAddr,
        p: &[u8],
    ) -> Option<(SocketAddr, Vec<u8>)> {
        let mut buf = p.to_vec();
        buf.resize(p.len() + srtp::MAX_OVERHEAD, 0);
        c.on_rtp(now, leg, src, &mut buf, p.len())
            .map(|(dst, n)| (dst, buf[..n].to_vec()))
    }

    fn transmits(c: &mut Call) -> Vec<(LegId, SocketAddr, Vec<u8>)> {
        std::iter::from_fn(|| c.poll_transmit()).collect()
    }

    /// A browser's connectivity check from `src`, answered or not.
    fn check(
        c: &mut Call,
        now: Instant,
        src: SocketAddr,
        ufrags: &str,
        pwd: &str,
        nominate: bool,
    ) -> Option<Vec<u8>> {
        let tid = [src.port() as u8; 12];
        let req = stun::binding_request(&tid, ufrags, pwd, nominate);
        assert_eq!(feed(c, now, LegId::A, src, &req), None);
        let mut out = transmits(c);
        let answer = out
            .iter()
            .position(|(_, _, p)| p.first().is_some_and(|b| *b < 4))
            .map(|i| out.remove(i));
        answer.map(|(leg, dst, p)| {
            assert_eq!((leg, dst), (LegId::A, src));
            assert_eq!(p[..2], [0x01, 0x01], "a Binding success response");
            assert_eq!(p[8..20], tid);
            p
        })
    }

    /// Runs the handshake between the browser at `src` and the call until
    /// both sides have keys or three seconds have passed (a lost flight is
    /// sent again after one); returns the time.
    fn handshake(c: &mut Call, b: &mut Browser, t: Instant, src: SocketAddr) -> Instant {
        let mut now = t;
        for _ in 0..300 {
            for (leg, dst, p) in transmits(c) {
                assert_eq!((leg, dst), (LegId::A, src), "DTLS goes to the checked pair");
                let _ = b.dtls.handle_packet(&p);
            }
            for p in b.flights(now) {
                assert_eq!(feed(c, now, LegId::A, src, &p), None, "DTLS is not relayed");
            }
            if b.keys.is_some() && c.leg(LegId::A).srtp() {
                break;
            }
            now += Duration::from_millis(10);
            c.on_tick(now, Duration::ZERO);
        }
        now
    }

    /// 20 ms of a 440 Hz tone in PCMU.
    fn tone(i: u16) -> Vec<u8> {
        (0..160)
            .map(|n| {
                let s = f64::from(u32::from(i) * 160 + n) * 440.0 / 8000.0;
                g711::ulaw_encode((8000.0 * (s * std::f64::consts::TAU).sin()) as i16)
            })
            .collect()
    }

    fn packet(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        rtp::write_header(&mut p, 0, false, seq, 160 * u32::from(seq), ssrc);
        p.extend_from_slice(&tone(seq));
        p
    }

    #[test]
    fn a_browser_that_checks_and_shakes_hands_hears_and_is_heard_by_a_plain_phone() {
        for role in [DtlsRole::Server, DtlsRole::Client] {
            let t = Instant::now();
            let id = Identity::generate().unwrap();
            let mut b = Browser::new(t, role);
            let (mut c, mine) = call(t, &id, &b, role);
            let src = addr(BROWSER);
            let ufrags = format!("{}:{}", mine.ufrag, b.ice.ufrag);
            // Before any check: nothing goes to the browser.
            assert_eq!(
                feed(&mut c, t, LegId::B, addr(PHONE), &packet(1, 0xb)),
                None
            );
            assert!(check(&mut c, t, src, &ufrags, &mine.pwd, true).is_some());
            assert_eq!(c.leg(LegId::A).latched(), Some(src), "{role:?}");
            let now = handshake(&mut c, &mut b, t, src);
            assert!(c.leg(LegId::A).srtp(), "{role:?}: mediad keyed");
            assert_eq!(c.leg(LegId::A).webrtc(), Some(true));
            assert_eq!(
                b.peer,
                Some(id.fingerprint),
                "the browser saw mediad's certificate"
            );
            let mut bk = b.keys.take().unwrap();
            // Browser -> phone: decrypted, plain, the tone intact.
            for seq in 1..=5u16 {
                let plain = packet(seq, 0xa);
                let sealed = bk.tx.protect(&plain).unwrap();
                assert_ne!(sealed[12..], plain[12..]);
                let (dst, out) = feed(&mut c, now, LegId::A, src, &sealed).unwrap();
                assert_eq!((dst, out), (addr(PHONE), plain), "{role:?} seq {seq}");
            }
            // Phone -> browser: encrypted to the nominated pair.
            for seq in 1..=5u16 {
                let plain = packet(seq, 0xb);
                let (dst, out) = feed(&mut c, now, LegId::B, addr(PHONE), &plain).unwrap();
                assert_eq!(dst, src);
                assert_ne!(out[12..172], plain[12..]);
                assert_eq!(bk.rx.unprotect(&out).unwrap(), plain, "{role:?} seq {seq}");
            }
            let a = c.leg(LegId::A);
            assert_eq!((a.recv.packets, a.dropped_auth), (5, 0), "{role:?}");
            assert_eq!(
                a.dropped, 1,
                "{role:?}: the phone's packet before the check"
            );
        }
    }

    #[test]
    fn a_browser_speaking_opus_is_heard_in_g711_and_hears_the_phone_in_opus_and_recorded() {
        use proto::webrtc::{G711 as Law, OpusBridge};
        let t = Instant::now();
        let id = Identity::generate().unwrap();
        let mut b = Browser::new(t, DtlsRole::Server);
        let (mut c, mine) = call(t, &id, &b, DtlsRole::Server);
        let mut leg = b.leg(&mine, DtlsRole::Server);
        leg.opus = Some(OpusBridge {
            opus_pt: 111,
            opus_dtmf_pt: Some(110),
            g711_pt: 0,
            g711: Law::Pcmu,
            dtmf_pt: Some(101),
        });
        // The answer's bridge comes after ICE and DTLS began: it keeps them.
        let src = addr(BROWSER);
        let ufrags = format!("{}:{}", mine.ufrag, b.ice.ufrag);
        assert!(check(&mut c, t, src, &ufrags, &mine.pwd, true).is_some());
        c.set_webrtc(t, LegId::A, leg, &id).unwrap();
        assert_eq!(c.leg(LegId::A).latched(), Some(src));
        let now = handshake(&mut c, &mut b, t, src);
        c.start_recording(now);
        let mut bk = b.keys.take().unwrap();
        let mut enc =
            opus::Encoder::new(8000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut dec = opus::Decoder::new(8000, opus::Channels::Mono).unwrap();
        let mut phone_heard = Vec::new();
        let mut browser_heard = Vec::new();
        for seq in 1..=25u16 {
            // Browser -> phone: Opus at 48 kHz in, PCMU at 8 kHz out.
            let pcm: Vec<i16> = tone(seq)
                .iter()
                .map(|b| g711::ULAW_TO_LINEAR[usize::from(*b)])
                .collect();
            let mut plain = vec![0u8; 12];
            rtp::write_header(&mut plain, 111, false, seq, 960 * u32::from(seq), 0xa);
            plain.extend(enc.encode_vec(&pcm, 400).unwrap());
            let sealed = bk.tx.protect(&plain).unwrap();
            let mut buf = sealed.clone();
            buf.resize(2048, 0);
            let (dst, n) = c
                .on_rtp(now, LegId::A, src, &mut buf, sealed.len())
                .unwrap();
            let rtp::Datagram::Rtp(h) = rtp::parse(&buf[..n]) else {
                panic!()
            };
            assert_eq!((dst, h.payload_type, n - 12), (addr(PHONE), 0, 160));
            phone_heard.extend(
                h.payload(&buf)
                    .iter()
                    .map(|b| g711::ULAW_TO_LINEAR[usize::from(*b)]),
            );
            // Phone -> browser: PCMU in, SRTP-sealed Opus out.
            let (dst, out) = feed(&mut c, now, LegId::B, addr(PHONE), &packet(seq, 0xb)).unwrap();
            assert_eq!(dst, src);
            let opened = bk.rx.unprotect(&out).unwrap();
            let rtp::Datagram::Rtp(h) = rtp::parse(&opened) else {
                panic!()
            };
            assert_eq!((h.payload_type, h.timestamp), (111, 960 * u32::from(seq)));
            let mut pcm = [0i16; 960];
            let k = dec.decode(h.payload(&opened), &mut pcm, false).unwrap();
            browser_heard.extend_from_slice(&pcm[..k]);
        }
        for heard in [&phone_heard, &browser_heard] {
            assert!(dominant_is_440(&heard[800..]), "the 440 Hz tone crossed");
        }
        let a = c.leg(LegId::A);
        assert_eq!(
            (a.recv.packets, a.dropped, a.dropped_payload_type),
            (25, 0, 0)
        );
        let mut wav = Vec::new();
        c.stop_recording().unwrap().finish(&mut wav);
        let left: Vec<i16> = wav
            .chunks_exact(4)
            .map(|f| i16::from_le_bytes([f[0], f[1]]))
            .collect();
        assert!(left.len() >= 20 * 160);
        assert!(
            dominant_is_440(&left[800..]),
            "the browser's side is recorded"
        );
    }

    /// Whether 440 Hz carries more power in `pcm` (8 kHz) than 1 kHz and
    /// 2 kHz.
    fn dominant_is_440(pcm: &[i16]) -> bool {
        use crate::relay::resample::tests::goertzel;
        let power = |hz| goertzel(pcm, hz, 8000.0);
        power(440.0) > 10.0 * power(1000.0).max(power(2000.0))
    }

    #[test]
    fn the_end_of_the_call_tells_the_browser_close_notify() {
        let t = Instant::now();
        let id = Identity::generate().unwrap();
        let mut b = Browser::new(t, DtlsRole::Server);
        let (mut c, mine) = call(t, &id, &b, DtlsRole::Server);
        let src = addr(BROWSER);
        let ufrags = format!("{}:{}", mine.ufrag, b.ice.ufrag);
        assert!(check(&mut c, t, src, &ufrags, &mine.pwd, true).is_some());
        handshake(&mut c, &mut b, t, src);
        assert!(c.leg(LegId::A).srtp());
        c.close_webrtc();
        let sent = transmits(&mut c);
        assert!(!sent.is_empty());
        let mut closed = false;
        for (leg, dst, p) in sent {
            assert_eq!((leg, dst, p[0]), (LegId::A, src, 21), "an alert record");
            b.dtls.handle_packet(&p).unwrap();
            let mut buf = vec![0u8; 2048];
            loop {
                match b.dtls.poll_output(&mut buf) {
                    Output::CloseNotify => closed = true,
                    Output::Timeout(_) => break,
                    _ => {}
                }
            }
        }
        assert!(closed, "the browser read close_notify");
        // Closed once: nothing more.
        c.close_webrtc();
        assert!(transmits(&mut c).is_empty());
    }

    #[test]
    fn a_check_with_the_wrong_password_or_username_is_ignored_and_latches_nothing() {
        let t = Instant::now();
        let id = Identity::generate().unwrap();
        let b = Browser::new(t, DtlsRole::Server);
        let (mut c, mine) = call(t, &id, &b, DtlsRole::Server);
        let src = addr(BROWSER);
        let ufrags = format!("{}:{}", mine.ufrag, b.ice.ufrag);
        // The browser's own password, or swapped ufrags: no answer.
        assert_eq!(check(&mut c, t, src, &ufrags, &b.ice.pwd, true), None);
        let swapped = format!("{}:{}", b.ice.ufrag, mine.ufrag);
        assert_eq!(check(&mut c, t, src, &swapped, &mine.pwd, true), None);
        assert_eq!(c.leg(LegId::A).latched(), None);
        assert_eq!(c.leg(LegId::A).dropped, 2);
        assert_eq!(
            feed(&mut c, t, LegId::B, addr(PHONE), &packet(1, 0xb)),
            None
        );
    }

    #[test]
    fn a_certificate_other_than_the_sdps_never_gets_keys_nor_media() {
        let t = Instant::now();
        let id = Identity::generate().unwrap();
        let mut b = Browser::new(t, DtlsRole::Server);
        let mine = IceCredentials::random();
        let mut c = Call::new(t);
        for leg in [LegId::A, LegId::B] {
            c.set_codecs(leg, [(0u8, "PCMU")]);
        }
        c.set_signal_ip(LegId::B, addr(PHONE).ip());
        c.set_remote(LegId::B, addr(PHONE), None);
        let mut leg = b.leg(&mine, DtlsRole::Server);
        // The fingerprint of another certificate than the browser's.
        leg.remote_fingerprint = Fingerprint([0x42; 32]);
        c.set_webrtc(t, LegId::A, leg, &id).unwrap();
        let src = addr(BROWSER);
        let ufrags = format!("{}:{}", mine.ufrag, b.ice.ufrag);
        assert!(check(&mut c, t, src, &ufrags, &mine.pwd, true).is_some());
        let now = handshake(&mut c, &mut b, t, src);
        assert!(!c.leg(LegId::A).srtp());
        assert_eq!(c.leg(LegId::A).webrtc(), Some(false));
        assert!(c.leg(LegId::A).webrtc_failed().is_some());
        // Whatever the browser made of it, nothing crosses either way.
        if let Some(mut bk) = b.keys.take() {
            let sealed = bk.tx.protect(&packet(1, 0xa)).unwrap();
            assert_eq!(feed(&mut c, now, LegId::A, src, &sealed), None);
        }
        assert_eq!(feed(&mut c, now, LegId::A, src, &packet(2, 0xa)), None);
        assert_eq!(
            feed(&mut c, now, LegId::B, addr(PHONE), &packet(1, 0xb)),
            None
        );
        assert_eq!(c.leg(LegId::A).recv.packets, 0);
    }

    #[test]
    fn dtls_and_srtp_from_a_source_that_never_passed_a_check_are_dropped() {
        let t = Instant::now();
        let id = Identity::generate().unwrap();
        let mut b = Browser::new(t, DtlsRole::Server);
        let (mut c, mine) = call(t, &id, &b, DtlsRole::Server);
        let src = addr(BROWSER);
        let stranger = addr("10.9.8.7:50002");
        // The browser's ClientHello before its check: not read, not answered.
        let hello = b.flights(t);
        assert!(!hello.is_empty());
        for p in &hello {
            assert_eq!(feed(&mut c, t, LegId::A, src, p), None);
        }
        assert!(transmits(&mut c).is_empty());
        assert_eq!(c.leg(LegId::A).dropped_foreign, hello.len() as u64);
        let ufrags = format!("{}:{}", mine.ufrag, b.ice.ufrag);
        assert!(check(&mut c, t, src, &ufrags, &mine.pwd, true).is_some());
        let now = handshake(&mut c, &mut b, t, src);
        assert!(c.leg(LegId::A).srtp());
        let mut bk = b.keys.take().unwrap();
        let foreign = c.leg(LegId::A).dropped_foreign;
        // Genuine SRTP and a ClientHello, from another port of the same
        // host that never checked: dropped, and the latch stays.
        let sealed = bk.tx.protect(&packet(1, 0xa)).unwrap();
        assert_eq!(feed(&mut c, now, LegId::A, stranger, &sealed), None);
        for p in &hello {
            assert_eq!(feed(&mut c, now, LegId::A, stranger, p), None);
        }
        assert!(transmits(&mut c).is_empty());
        let a = c.leg(LegId::A);
        assert_eq!(a.dropped_foreign, foreign + 1 + hello.len() as u64);
        assert_eq!((a.latched(), a.recv.packets), (Some(src), 0));
        // From the checked source the same packet passes.
        let (dst, _) = feed(&mut c, now, LegId::A, src, &sealed).unwrap();
        assert_eq!(dst, addr(PHONE));
        // Neither STUN garbage nor unknown first bytes do anything.
        for junk in [&[0u8; 20][..], &[200u8; 40][..], &[70u8; 30][..]] {
            assert_eq!(feed(&mut c, now, LegId::A, stranger, junk), None);
        }
        assert!(transmits(&mut c).is_empty());
    }

    #[test]
    fn the_same_parameters_again_keep_the_keys_and_new_ones_start_afresh() {
        let t = Instant::now();
        let id = Identity::generate().unwrap();
        let mut b = Browser::new(t, DtlsRole::Server);
        let (mut c, mine) = call(t, &id, &b, DtlsRole::Server);
        let src = addr(BROWSER);
        let ufrags = format!("{}:{}", mine.ufrag, b.ice.ufrag);
        assert!(check(&mut c, t, src, &ufrags, &mine.pwd, true).is_some());
        let now = handshake(&mut c, &mut b, t, src);
        let mut bk = b.keys.take().unwrap();
        // A re-INVITE repeats them: the keys and the ICE pick stay.
        c.set_webrtc(now, LegId::A, b.leg(&mine, DtlsRole::Server), &id)
            .unwrap();
        assert!(c.leg(LegId::A).srtp());
        let sealed = bk.tx.protect(&packet(1, 0xa)).unwrap();
        assert!(feed(&mut c, now, LegId::A, src, &sealed).is_some());
        // An ICE restart: new credentials, no keys until a new handshake.
        let fresh = IceCredentials::random();
        c.set_webrtc(now, LegId::A, b.leg(&fresh, DtlsRole::Server), &id)
            .unwrap();
        assert!(!c.leg(LegId::A).srtp());
        let sealed = bk.tx.protect(&packet(2, 0xa)).unwrap();
        assert_eq!(feed(&mut c, now, LegId::A, src, &sealed), None);
    }
}
