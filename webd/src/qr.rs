//! SIP credentials for devices and the softphone provisioning QR code.
//!
//! HA1 (RFC 2617 / RFC 8760): `password_hash` = MD5 hex of
//! `username:realm:password`, `ha1_sha256` = SHA-256 hex of the same; the
//! clear password is never stored.
//!
//! QR payload: a SIP URI with the password in the userinfo,
//! `sip:<user>:<password>@<host>:<port>;transport=<udp|tcp|tls>` (RFC 3261
//! §19.1.1, percent-encoded), the port being the SIP-over-TLS one for a
//! device set to TLS. Linphone's and Zoiper's QR scanners accept a `sip:` URI
//! as account address plus password; it is the one form both read, while
//! their own provisioning formats differ (Linphone XML by URL, Zoiper's
//! provisioning service). The password only exists in webd's memory for
//! [`SECRET_TTL`] after it is generated, so the QR can be shown right after
//! creation and never later.

use std::time::Duration;

use anyhow::Context;

use crate::api::devices::Transport;

/// How long the clear SIP password is kept in memory for the QR code.
pub const SECRET_TTL: Duration = Duration::from_secs(600);

/// HA1 in both forms and the realm, as sipd checks them.
pub use proto::sip_auth::{ha1, realm};

/// A strong random SIP password: 20 characters of an unambiguous alphabet
/// (about 113 bits), easy to type on a phone keypad screen.
pub fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The provisioning payload.
pub fn sip_uri(
    username: &str,
    password: &str,
    host: &str,
    port: u16,
    transport: Transport,
) -> String {
    format!(
        "sip:{}:{}@{}:{};transport={}",
        pct(username),
        pct(password),
        host,
        port,
        transport.as_str()
    )
}

/// Percent-encodes everything outside RFC 3261 `unreserved`.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The QR code as PNG bytes.
pub fn png(payload: &str) -> anyhow::Result<Vec<u8>> {
    let code = qrcode::QrCode::new(payload.as_bytes()).context("qr encode")?;
    let img = code
        .render::<image::Luma<u8>>()
        .min_dimensions(256, 256)
        .build();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .context("png encode")?;
    Ok(out.into_inner())
}

/// The QR code as an SVG document.
pub fn svg(payload: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::new(payload.as_bytes()).context("qr encode")?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha1_matches_rfc_2617_example() {
        // RFC 2617 §3.5: Mufasa / testrealm@host.com / Circle Of Life.
        let (md5, sha) = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(md5, "939e7578ed9e3c518a452acee763bce9");
        assert_eq!(sha.len(), 64);
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let a = generate_password();
        assert_eq!(a.len(), 20);
        assert_ne!(a, generate_password());
    }

    #[test]
    fn sip_uri_percent_encodes_userinfo() {
        assert_eq!(
            sip_uri("alice", "p@ss:w", "127.0.0.1", 5060, Transport::Udp),
            "sip:alice:p%40ss%3Aw@127.0.0.1:5060;transport=udp"
        );
    }

    #[test]
    fn sip_uri_names_the_transport_and_its_port() {
        assert_eq!(
            sip_uri("alice", "pw", "192.0.2.1", 5061, Transport::Tls),
            "sip:alice:pw@192.0.2.1:5061;transport=tls"
        );
        assert_eq!(
            sip_uri("alice", "pw", "192.0.2.1", 5060, Transport::Tcp),
            "sip:alice:pw@192.0.2.1:5060;transport=tcp"
        );
    }

    #[test]
    fn png_and_svg_render() {
        let p = png("sip:a:b@h:5060").unwrap();
        assert_eq!(&p[1..4], b"PNG");
        assert!(svg("sip:a:b@h:5060").unwrap().contains("<svg"));
    }
}
