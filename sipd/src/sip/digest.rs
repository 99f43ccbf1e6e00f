//! Digest authentication (RFC 2617 MD5 with `qop=auth`, RFC 8760 SHA-256).
//! Nonces carry their issue time and an HMAC over it, the realm and the
//! client's address with a server secret, so no nonce table is needed to
//! know a nonce is ours, fresh and was sent to this client; the table only
//! remembers the highest `nc` seen per nonce to refuse replays (RFC 2617
//! section 3.2.2). An answer without `qop` could be replayed for the
//! nonce's whole life, so it only earns a fresh challenge.

use std::net::IpAddr;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest as _, Md5};
use sha2::Sha256;

/// The hash a credential uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    pub fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }
}

/// HA1 = H(username:realm:password) in both forms (MD5 hex, SHA-256 hex).
pub fn ha1(username: &str, realm: &str, password: &str) -> (String, String) {
    proto::sip_auth::ha1(username, realm, password)
}

/// The parameters of a `Digest` Authorization / Proxy-Authorization value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: String,
    pub qop: String,
    pub nc: String,
    pub cnonce: String,
}

impl Credentials {
    /// Parses `Digest k=v, k="v", ...`; `None` for another scheme or
    /// when username/nonce/response are missing.
    pub fn parse(value: &str) -> Option<Credentials> {
        let v = value.trim();
        let (scheme, rest) = v.split_once(|c: char| c.is_whitespace())?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let mut c = Credentials::default();
        for part in super::msg::split_top_level(rest, b',') {
            let Some((k, val)) = part.split_once('=') else {
                continue;
            };
            let val = val.trim();
            let val = val
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .unwrap_or(val)
                .to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "username" => c.username = val,
                "realm" => c.realm = val,
                "nonce" => c.nonce = val,
                "uri" => c.uri = val,
                "response" => c.response = val.to_ascii_lowercase(),
                "algorithm" => c.algorithm = val,
                "qop" => c.qop = val,
                "nc" => c.nc = val,
                "cnonce" => c.cnonce = val,
                _ => {}
            }
        }
        (!c.username.is_empty() && !c.nonce.is_empty() && !c.response.is_empty()).then_some(c)
    }

    pub fn algorithm(&self) -> Option<Algorithm> {
        match self.algorithm.to_ascii_uppercase().as_str() {
            "" | "MD5" => Some(Algorithm::Md5),
            "SHA-256" => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    /// The response the client should have sent for `method` given `ha1`.
    pub fn expected(&self, method: &str, ha1: &str, alg: Algorithm) -> String {
        let ha2 = alg.hash(&format!("{method}:{}", self.uri));
        if self.qop.is_empty() {
            alg.hash(&format!("{ha1}:{}:{ha2}", self.nonce))
        } else {
            alg.hash(&format!(
                "{ha1}:{}:{}:{}:{}:{ha2}",
                self.nonce, self.nc, self.cnonce, self.qop
            ))
        }
    }
}

/// Our answer (as a UAC, e.g. to the SIP trunk) to `WWW-Authenticate` /
/// `Proxy-Authenticate` challenges: the header value for the retried
/// request. Prefers SHA-256 when offered, else MD5; `None` when no Digest
/// challenge we can answer is among them.
pub fn answer(
    challenges: &[&str],
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
) -> Option<String> {
    let parsed: Vec<(Algorithm, Vec<(String, String)>)> = challenges
        .iter()
        .filter_map(|c| {
            let (scheme, rest) = c.trim().split_once(|c: char| c.is_whitespace())?;
            if !scheme.eq_ignore_ascii_case("digest") {
                return None;
            }
            let params: Vec<(String, String)> = super::msg::split_top_level(rest, b',')
                .into_iter()
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    let v = v.trim();
                    let v = v
                        .strip_prefix('"')
                        .and_then(|s| s.strip_suffix('"'))
                        .unwrap_or(v);
                    Some((k.trim().to_ascii_lowercase(), v.to_string()))
                })
                .collect();
            let alg = params
                .iter()
                .find(|(k, _)| k == "algorithm")
                .map_or("MD5", |(_, v)| v.as_str());
            let alg = match alg.to_ascii_uppercase().as_str() {
                "MD5" => Algorithm::Md5,
                "SHA-256" => Algorithm::Sha256,
                _ => return None,
            };
            Some((alg, params))
        })
        .collect();
    let (alg, params) = parsed
        .iter()
        .find(|(a, _)| *a == Algorithm::Sha256)
        .or_else(|| parsed.first())?;
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let realm = get("realm");
    let qop = if get("qop")
        .split(',')
        .any(|q| q.trim().eq_ignore_ascii_case("auth"))
    {
        "auth".to_string()
    } else {
        String::new()
    };
    let c = Credentials {
        username: username.into(),
        realm: realm.clone(),
        nonce: get("nonce"),
        uri: uri.into(),
        qop: qop.clone(),
        nc: "00000001".into(),
        cnonce: cnonce.into(),
        ..Default::default()
    };
    let ha1 = alg.hash(&format!("{username}:{realm}:{password}"));
    let response = c.expected(method, &ha1, *alg);
    let mut out = format!(
        "Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm={}",
        c.nonce,
        alg.name()
    );
    if !qop.is_empty() {
        out.push_str(&format!(", qop=auth, nc=00000001, cnonce=\"{cnonce}\""));
    }
    let opaque = get("opaque");
    if !opaque.is_empty() {
        out.push_str(&format!(", opaque=\"{opaque}\""));
    }
    Some(out)
}

/// What became of presented credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Our nonce, correct HMAC, but too old or from before a restart:
    /// re-challenge with `stale=true`, not a failure.
    Stale,
    /// The `nc` was not higher than the last accepted one for this nonce.
    Replay,
    /// Not a nonce we issued to this client (another address, another
    /// secret, garbage): challenge afresh, and do not count it as a failed
    /// guess, since anyone can forge the source of such a request.
    Foreign,
    /// No `qop=auth` with `nc` and `cnonce`: such an answer would replay
    /// until the nonce expires, so it gets a fresh challenge instead.
    NoQop,
    /// The `uri` parameter does not name the Request-URI (compared as SIP
    /// URIs, see [`super::uri::digest_uri_matches`]): the answer was made
    /// for another request (RFC 2617 section 3.2.2.5, RFC 7616 section 3.4.6).
    UriMismatch,
    /// Wrong response, wrong realm, unknown algorithm, bad qop.
    Failed,
}

/// The request a digest answer must have been made for.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub method: &'a str,
    /// The Request-URI of the request carrying the credentials.
    pub request_uri: &'a str,
    /// The address the request came from (the nonce must have gone there).
    pub client: IpAddr,
}

/// Nonce-count slots: the `nc` last accepted for the nonce with counter
/// `c` lives in slot `c % NC_SLOTS`. A fixed table (1 MiB), where a map per
/// nonce grew by one entry per registration for the whole nonce lifetime
/// (2.4 million entries at 8,000 REGISTERs/s with a 300 s TTL).
const NC_SLOTS: usize = 1 << 16;

/// Issues and checks nonces; remembers the last `nc` of each nonce in use.
pub struct Nonces {
    secret: [u8; 32],
    /// Numbers the nonces: makes two issued in the same millisecond differ,
    /// and picks their nonce-count slot.
    counter: u64,
    ttl_ms: u64,
    /// Per slot: the counter of the newest nonce used in it, and its last
    /// `nc`. A slot only moves on to newer nonces, so an older nonce that
    /// lost its slot is answered "stale" (the phone takes a fresh one),
    /// never accepted again.
    nc_slots: Vec<(u64, u32)>,
}

type HmacSha256 = Hmac<Sha256>;

impl Nonces {
    pub fn new(secret: [u8; 32], ttl_ms: u64) -> Self {
        Self {
            secret,
            counter: 0,
            ttl_ms,
            nc_slots: vec![(0, 0); NC_SLOTS],
        }
    }

    pub fn set_ttl_ms(&mut self, ttl_ms: u64) {
        self.ttl_ms = ttl_ms;
    }

    /// A fresh nonce for `client`: `<issue ms hex>.<counter hex>.<HMAC>`.
    pub fn issue(&mut self, now_ms: u64, realm: &str, client: IpAddr) -> String {
        self.counter += 1;
        let t = format!("{now_ms:x}.{:x}", self.counter);
        let mac = self.mac(&t, realm, client);
        format!("{t}.{mac}")
    }

    fn mac(&self, t: &str, realm: &str, client: IpAddr) -> String {
        let Ok(mut m) = HmacSha256::new_from_slice(&self.secret) else {
            return String::new();
        };
        m.update(t.as_bytes());
        m.update(b"|");
        m.update(realm.as_bytes());
        m.update(b"|");
        m.update(client.to_string().as_bytes());
        hex::encode(&m.finalize().into_bytes()[..12])
    }

    /// The issue time and counter of a nonce we issued to `client`,
    /// `None` otherwise.
    fn issued_at(&self, nonce: &str, realm: &str, client: IpAddr) -> Option<(u64, u64)> {
        let (t, mac) = nonce.rsplit_once('.')?;
        let expected = self.mac(t, realm, client);
        if !ct_eq(mac.as_bytes(), expected.as_bytes()) {
            return None;
        }
        let (ms, counter) = t.split_once('.')?;
        Some((
            u64::from_str_radix(ms, 16).ok()?,
            u64::from_str_radix(counter, 16).ok()?,
        ))
    }

    /// Checks `c`, presented on request `a`, against the device's HA1 of
    /// the credentials' algorithm. Only a nonce issued to `a.client` can
    /// lead to [`Verdict::Failed`].
    pub fn verify(
        &mut self,
        now_ms: u64,
        realm: &str,
        a: &Attempt<'_>,
        c: &Credentials,
        ha1: &str,
    ) -> Verdict {
        let Some((issued, counter)) = self.issued_at(&c.nonce, realm, a.client) else {
            return Verdict::Foreign;
        };
        if now_ms.saturating_sub(issued) > self.ttl_ms || issued > now_ms + 60_000 {
            return Verdict::Stale;
        }
        if c.qop.is_empty() || c.nc.is_empty() || c.cnonce.is_empty() {
            return Verdict::NoQop;
        }
        let Some(alg) = c.algorithm() else {
            return Verdict::Failed;
        };
        if c.realm != realm || !c.qop.eq_ignore_ascii_case("auth") {
            return Verdict::Failed;
        }
        let expected = c.expected(a.method, ha1, alg);
        if ha1.is_empty() || !ct_eq(expected.as_bytes(), c.response.as_bytes()) {
            return Verdict::Failed;
        }
        if !super::uri::digest_uri_matches(&c.uri, a.request_uri) {
            return Verdict::UriMismatch;
        }
        let Ok(nc) = u32::from_str_radix(&c.nc, 16) else {
            return Verdict::Failed;
        };
        let i = usize::try_from(counter % NC_SLOTS as u64).unwrap_or_default();
        let slot = &mut self.nc_slots[i];
        match *slot {
            (c, _) if c > counter => Verdict::Stale,
            (c, last) if c == counter && nc <= last => Verdict::Replay,
            _ => {
                *slot = (counter, nc);
                Verdict::Ok
            }
        }
    }

    /// The `WWW-Authenticate` / `Proxy-Authenticate` values: MD5 first (what
    /// every phone understands), SHA-256 beside it (RFC 8760 section 2.4).
    pub fn challenges(
        &mut self,
        now_ms: u64,
        realm: &str,
        stale: bool,
        client: IpAddr,
    ) -> [String; 2] {
        let nonce = self.issue(now_ms, realm, client);
        let stale = if stale { ", stale=true" } else { "" };
        [Algorithm::Md5, Algorithm::Sha256].map(|a| {
            format!(
                "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                a.name()
            )
        })
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_answer_to_a_trunk_challenge_is_what_the_trunk_expects() {
        let ch = [
            "Digest realm=\"sip.twilio.com\", nonce=\"abc\", qop=\"auth,auth-int\", opaque=\"o1\"",
        ];
        let v = answer(
            &ch,
            "INVITE",
            "sip:+15551234567@t.pstn.twilio.com",
            "u",
            "p",
            "cn",
        )
        .unwrap();
        let c = Credentials::parse(&v).unwrap();
        assert_eq!(
            (c.realm.as_str(), c.qop.as_str(), c.nc.as_str()),
            ("sip.twilio.com", "auth", "00000001")
        );
        let (h, _) = ha1("u", "sip.twilio.com", "p");
        assert_eq!(c.response, c.expected("INVITE", &h, Algorithm::Md5));
        assert!(v.contains("opaque=\"o1\""));
        assert_eq!(
            answer(&["Basic realm=\"x\""], "INVITE", "sip:a", "u", "p", "c"),
            None
        );
    }

    const REALM: &str = "pbx.test";
    const URI: &str = "sip:pbx.test";

    fn client() -> IpAddr {
        "192.0.2.10".parse().unwrap()
    }

    fn register() -> Attempt<'static> {
        Attempt {
            method: "REGISTER",
            request_uri: URI,
            client: client(),
        }
    }

    fn creds(nonces: &mut Nonces, now: u64, qop: bool, nc: &str, password: &str) -> Credentials {
        let nonce = nonces.issue(now, REALM, client());
        let mut c = Credentials {
            username: "alice".into(),
            realm: REALM.into(),
            nonce,
            uri: URI.into(),
            algorithm: "MD5".into(),
            ..Default::default()
        };
        if qop {
            c.qop = "auth".into();
            c.nc = nc.into();
            c.cnonce = "abc".into();
        }
        let (h, _) = ha1("alice", REALM, password);
        c.response = c.expected("REGISTER", &h, Algorithm::Md5);
        c
    }

    #[test]
    fn ha1_matches_rfc_2617_md5_of_user_realm_password() {
        // Expected values computed with coreutils md5sum / sha256sum.
        let (md5, sha) = ha1("alice", REALM, "secret");
        assert_eq!(md5, "3806e6b4bb240a49ce58b1b2ede40a0c");
        assert_eq!(
            sha,
            "fe4638a9f34f116674ba285fbadbb7525a3cd16bbab8855c4fc6bbbaa6557b1c"
        );
        assert_eq!(ha1("a", "b", "c").0, "02cc8f08398a4f3113b554e8105ebe4c");
    }

    #[test]
    fn rfc_2617_example_response_verifies() {
        // RFC 2617 section 3.5 example (HTTP, qop=auth).
        let c = Credentials {
            username: "Mufasa".into(),
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            uri: "/dir/index.html".into(),
            qop: "auth".into(),
            nc: "00000001".into(),
            cnonce: "0a4f113b".into(),
            ..Default::default()
        };
        let h = Algorithm::Md5.hash("Mufasa:testrealm@host.com:Circle Of Life");
        assert_eq!(
            c.expected("GET", &h, Algorithm::Md5),
            "6629fae49393a05397450978507c4ef1"
        );
    }

    #[test]
    fn a_correct_qop_auth_response_is_accepted_once_per_nc() {
        let mut n = Nonces::new([7; 32], 300_000);
        let c = creds(&mut n, 1_000, true, "00000001", "secret");
        let (h, _) = ha1("alice", REALM, "secret");
        assert_eq!(n.verify(2_000, REALM, &register(), &c, &h), Verdict::Ok);
        assert_eq!(n.verify(3_000, REALM, &register(), &c, &h), Verdict::Replay);
        let mut lower = creds(&mut n, 1_000, true, "00000005", "secret");
        assert_eq!(n.verify(2_000, REALM, &register(), &lower, &h), Verdict::Ok);
        lower.nc = "00000004".into();
        lower.response = lower.expected("REGISTER", &h, Algorithm::Md5);
        assert_eq!(
            n.verify(2_000, REALM, &register(), &lower, &h),
            Verdict::Replay,
            "nc must increase"
        );
        lower.nc = "00000006".into();
        lower.response = lower.expected("REGISTER", &h, Algorithm::Md5);
        assert_eq!(n.verify(2_000, REALM, &register(), &lower, &h), Verdict::Ok);
    }

    #[test]
    fn a_nonce_whose_slot_a_newer_one_took_is_stale_and_never_accepted_again() {
        let mut n = Nonces::new([7; 32], 300_000);
        let (h, _) = ha1("alice", REALM, "secret");
        let old = creds(&mut n, 1_000, true, "00000001", "secret");
        assert_eq!(n.verify(1_500, REALM, &register(), &old, &h), Verdict::Ok);
        // NC_SLOTS challenges later, a nonce with the same slot is used.
        for _ in 1..NC_SLOTS {
            n.issue(2_000, REALM, client());
        }
        let newer = creds(&mut n, 2_000, true, "00000001", "secret");
        assert_eq!(n.verify(2_500, REALM, &register(), &newer, &h), Verdict::Ok);
        let mut again = old.clone();
        again.nc = "00000002".into();
        again.response = again.expected("REGISTER", &h, Algorithm::Md5);
        assert_eq!(
            n.verify(3_000, REALM, &register(), &again, &h),
            Verdict::Stale,
            "the phone is sent a fresh nonce"
        );
        assert_eq!(
            n.verify(3_000, REALM, &register(), &newer, &h),
            Verdict::Replay
        );
    }

    #[test]
    fn a_correct_answer_without_qop_is_not_accepted_and_can_be_replayed_nowhere() {
        let mut n = Nonces::new([7; 32], 300_000);
        let c = creds(&mut n, 1_000, false, "", "secret");
        let (h, _) = ha1("alice", REALM, "secret");
        assert_eq!(n.verify(2_000, REALM, &register(), &c, &h), Verdict::NoQop);
        assert_eq!(n.verify(3_000, REALM, &register(), &c, &h), Verdict::NoQop);
        // qop without nc/cnonce is no better.
        let mut half = creds(&mut n, 1_000, true, "00000001", "secret");
        half.cnonce.clear();
        assert_eq!(
            n.verify(2_000, REALM, &register(), &half, &h),
            Verdict::NoQop
        );
    }

    #[test]
    fn an_answer_made_for_another_request_uri_is_refused() {
        let mut n = Nonces::new([7; 32], 300_000);
        let c = creds(&mut n, 1_000, true, "00000001", "secret");
        let (h, _) = ha1("alice", REALM, "secret");
        for uri in ["sip:other.test", "sip:pbx.test:5070", "sips:pbx.test"] {
            let other = Attempt {
                request_uri: uri,
                ..register()
            };
            assert_eq!(
                n.verify(2_000, REALM, &other, &c, &h),
                Verdict::UriMismatch,
                "{uri}"
            );
        }
        assert_eq!(n.verify(2_000, REALM, &register(), &c, &h), Verdict::Ok);
    }

    #[test]
    fn the_request_uri_written_another_way_is_the_same_request() {
        let mut n = Nonces::new([7; 32], 300_000);
        let (h, _) = ha1("alice", REALM, "secret");
        for uri in ["SIP:PBX.test:5060", "sip:pbx.test;transport=tcp"] {
            let c = creds(&mut n, 1_000, true, "00000001", "secret");
            let same = Attempt {
                request_uri: uri,
                ..register()
            };
            assert_eq!(n.verify(2_000, REALM, &same, &c, &h), Verdict::Ok, "{uri}");
        }
    }

    #[test]
    fn a_nonce_issued_to_another_address_is_foreign_even_with_a_wrong_password() {
        let mut n = Nonces::new([7; 32], 300_000);
        let (h, _) = ha1("alice", REALM, "secret");
        let bad = creds(&mut n, 1_000, true, "00000001", "guess");
        let spoofed = Attempt {
            client: "198.51.100.7".parse().unwrap(),
            ..register()
        };
        assert_eq!(n.verify(2_000, REALM, &spoofed, &bad, &h), Verdict::Foreign);
        assert_eq!(
            n.verify(2_000, REALM, &register(), &bad, &h),
            Verdict::Failed
        );
    }

    #[test]
    fn a_wrong_password_fails_and_an_expired_nonce_is_stale() {
        let mut n = Nonces::new([7; 32], 300_000);
        let (h, _) = ha1("alice", REALM, "secret");
        let bad = creds(&mut n, 1_000, true, "00000001", "guess");
        assert_eq!(
            n.verify(2_000, REALM, &register(), &bad, &h),
            Verdict::Failed
        );
        let good = creds(&mut n, 1_000, true, "00000001", "secret");
        assert_eq!(
            n.verify(302_000, REALM, &register(), &good, &h),
            Verdict::Stale
        );
    }

    #[test]
    fn a_nonce_from_another_secret_is_foreign_not_accepted() {
        let mut other = Nonces::new([9; 32], 300_000);
        let mut n = Nonces::new([7; 32], 300_000);
        let c = creds(&mut other, 1_000, true, "00000001", "secret");
        let (h, _) = ha1("alice", REALM, "secret");
        assert_eq!(
            n.verify(2_000, REALM, &register(), &c, &h),
            Verdict::Foreign
        );
    }

    #[test]
    fn two_nonces_in_the_same_millisecond_differ() {
        let mut n = Nonces::new([7; 32], 300_000);
        assert_ne!(n.issue(5, REALM, client()), n.issue(5, REALM, client()));
    }

    #[test]
    fn sha256_credentials_verify_against_the_sha256_ha1() {
        let mut n = Nonces::new([7; 32], 300_000);
        let (_, h) = ha1("alice", REALM, "secret");
        let mut c = creds(&mut n, 1_000, true, "00000001", "x");
        c.algorithm = "SHA-256".into();
        c.response = c.expected("REGISTER", &h, Algorithm::Sha256);
        assert_eq!(n.verify(2_000, REALM, &register(), &c, &h), Verdict::Ok);
    }

    #[test]
    fn credentials_parse_quoted_and_bare_values() {
        let c = Credentials::parse(
            "Digest username=\"alice\",realm=\"pbx.test\", nonce=\"n1\", uri=\"sip:pbx.test\", response=\"ABCDEF\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"x,y\"",
        )
        .unwrap();
        assert_eq!(c.username, "alice");
        assert_eq!(c.cnonce, "x,y");
        assert_eq!(c.response, "abcdef");
        assert_eq!(c.qop, "auth");
        assert!(Credentials::parse("NoOneKnowsThisScheme opaque-data=here").is_none());
    }

    #[test]
    fn the_challenge_offers_md5_and_sha256_with_the_same_nonce() {
        let mut n = Nonces::new([7; 32], 300_000);
        let [a, b] = n.challenges(5, REALM, true, client());
        assert!(a.contains("algorithm=MD5") && a.ends_with("stale=true"));
        assert!(b.contains("algorithm=SHA-256"));
        let nonce = |s: &str| {
            s.split("nonce=")
                .nth(1)
                .map(|r| r.split(',').next().map(str::to_owned))
        };
        assert_eq!(nonce(&a), nonce(&b));
    }
}
