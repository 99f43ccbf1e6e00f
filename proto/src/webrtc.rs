//! A WebRTC leg's ICE and DTLS parameters (`LegCrypto.dtls` in
//! mediad.proto): sipd reads them from the browser's SDP and makes its own,
//! mediad answers connectivity checks and runs the handshake with them.
//! Built and read only through this module.

use std::fmt;

use rand::Rng as _;

use crate::pb::mediad as pb;

/// The only fingerprint hash GoSIP makes and accepts (browsers offer it).
pub const FINGERPRINT_HASH: &str = "sha-256";

/// ICE short-term credentials (a=ice-ufrag, a=ice-pwd; RFC 8839 section 5.4).
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

impl fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IceCredentials({}, ********)", self.ufrag)
    }
}

/// ice-char: ALPHA / DIGIT / "+" / "/" (RFC 8839 section 5.4).
fn ice_chars(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

impl IceCredentials {
    /// Fresh random credentials: an 8-character ufrag and a 24-character
    /// password (the RFC asks for at least 4 and 22).
    pub fn random() -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        // The thread's generator is a CSPRNG seeded from the OS.
        let mut rng = rand::rng();
        let mut take = |n: usize| {
            (0..n)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect::<String>()
        };
        Self {
            ufrag: take(8),
            pwd: take(24),
        }
    }

    /// Credentials from an SDP's attributes; `None` unless both are valid.
    pub fn parse(ufrag: &str, pwd: &str) -> Option<Self> {
        (ice_chars(ufrag, 4, 256) && ice_chars(pwd, 22, 256)).then(|| Self {
            ufrag: ufrag.to_owned(),
            pwd: pwd.to_owned(),
        })
    }
}

/// A certificate's SHA-256 fingerprint (RFC 8122 a=fingerprint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Reads "sha-256 AB:CD:..." (the hash name in any case); other hashes
    /// are `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let (hash, hex) = s.trim().split_once(' ')?;
        if !hash.eq_ignore_ascii_case(FINGERPRINT_HASH) {
            return None;
        }
        let mut out = [0u8; 32];
        let mut parts = hex.trim().split(':');
        for byte in &mut out {
            *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        parts.next().is_none().then_some(Self(out))
    }
}

impl fmt::Display for Fingerprint {
    /// "sha-256 AB:CD:...", as a=fingerprint writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FINGERPRINT_HASH)?;
        for (i, b) in self.0.iter().enumerate() {
            write!(f, "{}{b:02X}", if i == 0 { ' ' } else { ':' })?;
        }
        Ok(())
    }
}

/// Who sends the DTLS ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// mediad waits for the browser's ClientHello.
    Server,
    /// mediad sends it.
    Client,
}

/// G.711's two laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711 {
    Pcmu,
    Pcma,
}

/// A browser that speaks Opus where the rest of the call speaks G.711
/// (`LegDtls.opus`): what its payload types are on each side of mediad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusBridge {
    /// The browser's opus/48000/2 type.
    pub opus_pt: u8,
    /// The browser's telephone-event/48000 type.
    pub opus_dtmf_pt: Option<u8>,
    /// The type and law the rest of the call hears the leg in.
    pub g711_pt: u8,
    pub g711: G711,
    /// telephone-event/8000 on the G.711 side.
    pub dtmf_pt: Option<u8>,
}

impl OpusBridge {
    fn to_pb(self) -> pb::OpusBridge {
        pb::OpusBridge {
            opus_pt: self.opus_pt.into(),
            opus_dtmf_pt: self.opus_dtmf_pt.map(u32::from),
            g711_pt: self.g711_pt.into(),
            pcma: self.g711 == G711::Pcma,
            dtmf_pt: self.dtmf_pt.map(u32::from),
        }
    }

    fn from_pb(o: &pb::OpusBridge) -> Result<Self, &'static str> {
        let pt = |v: u32, field| u8::try_from(v).ok().filter(|p| *p < 128).ok_or(field);
        let opt = |v: Option<u32>, field| v.map(|v| pt(v, field)).transpose();
        Ok(Self {
            opus_pt: pt(o.opus_pt, "dtls.opus.opus_pt")?,
            opus_dtmf_pt: opt(o.opus_dtmf_pt, "dtls.opus.opus_dtmf_pt")?,
            g711_pt: pt(o.g711_pt, "dtls.opus.g711_pt")?,
            g711: if o.pcma { G711::Pcma } else { G711::Pcmu },
            dtmf_pt: opt(o.dtmf_pt, "dtls.opus.dtmf_pt")?,
        })
    }
}

/// Everything mediad needs for one WebRTC leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebrtcLeg {
    /// What sipd's SDP gave the leg.
    pub local: IceCredentials,
    /// What the leg's SDP gave.
    pub remote: IceCredentials,
    pub remote_fingerprint: Fingerprint,
    pub role: DtlsRole,
    /// The browser speaks Opus: mediad transcodes.
    pub opus: Option<OpusBridge>,
}

impl WebrtcLeg {
    /// The `LegCrypto` of `UpdateLeg` for this leg.
    pub fn to_pb(&self) -> pb::LegCrypto {
        pb::LegCrypto {
            srtp: true,
            suite: pb::SrtpSuite::AesCm128HmacSha180 as i32,
            send_key: Vec::new(),
            recv_key: Vec::new(),
            dtls: Some(pb::LegDtls {
                local_ufrag: self.local.ufrag.clone(),
                local_pwd: self.local.pwd.clone(),
                remote_ufrag: self.remote.ufrag.clone(),
                remote_pwd: self.remote.pwd.clone(),
                remote_fingerprint: self.remote_fingerprint.to_string(),
                role: match self.role {
                    DtlsRole::Server => pb::DtlsRole::Server,
                    DtlsRole::Client => pb::DtlsRole::Client,
                } as i32,
                opus: self.opus.map(OpusBridge::to_pb),
            }),
        }
    }

    /// Reads `LegCrypto.dtls`; a field that does not make a leg is named.
    pub fn from_pb(d: &pb::LegDtls) -> Result<Self, &'static str> {
        Ok(Self {
            local: IceCredentials::parse(&d.local_ufrag, &d.local_pwd).ok_or("dtls.local_pwd")?,
            remote: IceCredentials::parse(&d.remote_ufrag, &d.remote_pwd)
                .ok_or("dtls.remote_pwd")?,
            remote_fingerprint: Fingerprint::parse(&d.remote_fingerprint)
                .ok_or("dtls.remote_fingerprint")?,
            role: match pb::DtlsRole::try_from(d.role) {
                Ok(pb::DtlsRole::Server) => DtlsRole::Server,
                Ok(pb::DtlsRole::Client) => DtlsRole::Client,
                _ => return Err("dtls.role"),
            },
            opus: d.opus.as_ref().map(OpusBridge::from_pb).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_reads_back_what_it_writes_and_refuses_other_hashes() {
        let f = Fingerprint([0xAB; 32]);
        let text = f.to_string();
        assert!(text.starts_with("sha-256 AB:AB:"), "{text}");
        assert_eq!(Fingerprint::parse(&text), Some(f));
        assert_eq!(
            Fingerprint::parse(&text.to_lowercase().replace("sha-256", "SHA-256")),
            Some(f)
        );
        assert_eq!(Fingerprint::parse("sha-1 AB:CD"), None);
        assert_eq!(Fingerprint::parse(&format!("{text}:00")), None);
        assert_eq!(Fingerprint::parse("sha-256 AB"), None);
    }

    #[test]
    fn a_leg_survives_the_wire_and_a_bad_field_is_named() {
        let leg = WebrtcLeg {
            local: IceCredentials::random(),
            remote: IceCredentials::parse("abcd", "0123456789012345678901").unwrap(),
            remote_fingerprint: Fingerprint([7; 32]),
            role: DtlsRole::Client,
            opus: Some(OpusBridge {
                opus_pt: 111,
                opus_dtmf_pt: Some(110),
                g711_pt: 8,
                g711: G711::Pcma,
                dtmf_pt: None,
            }),
        };
        let pb = leg.to_pb();
        assert!(pb.srtp);
        let d = pb.dtls.unwrap();
        assert_eq!(WebrtcLeg::from_pb(&d), Ok(leg));
        let mut bad = d.clone();
        bad.remote_pwd = "short".into();
        assert_eq!(WebrtcLeg::from_pb(&bad), Err("dtls.remote_pwd"));
        let mut bad = d.clone();
        bad.role = 0;
        assert_eq!(WebrtcLeg::from_pb(&bad), Err("dtls.role"));
        let mut bad = d;
        bad.opus.as_mut().unwrap().g711_pt = 300;
        assert_eq!(WebrtcLeg::from_pb(&bad), Err("dtls.opus.g711_pt"));
    }

    #[test]
    fn random_credentials_are_valid_and_differ() {
        let (a, b) = (IceCredentials::random(), IceCredentials::random());
        assert!(IceCredentials::parse(&a.ufrag, &a.pwd).is_some());
        assert_ne!(a, b);
    }
}
