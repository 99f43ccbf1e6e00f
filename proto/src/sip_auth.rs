//! SIP digest credentials as sipd checks them and webd stores them: one
//! definition of HA1 and of the realm, so a device hashed by webd always
//! authenticates at sipd (RFC 2617 section 3.2.2.2, RFC 8760 for SHA-256).

use md5::Md5;
use sha2::{Digest, Sha256};

/// HA1 = H(username:realm:password), as (MD5 hex, SHA-256 hex).
pub fn ha1(username: &str, realm: &str, password: &str) -> (String, String) {
    let s = format!("{username}:{realm}:{password}");
    (
        hex::encode(Md5::digest(s.as_bytes())),
        hex::encode(Sha256::digest(s.as_bytes())),
    )
}

/// The realm devices authenticate in: the `sip.realm` setting, else the
/// host name, else "gosip". Every daemon that hashes or checks a password
/// must see the same host name (Compose gives each service the same
/// `hostname:` for this).
pub fn realm(setting: &str) -> String {
    match setting.trim() {
        "" => host_name(),
        r => r.to_string(),
    }
}

/// This host's name, for the realm only: never put in an address.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "gosip".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha1_matches_rfc_2617s_example_and_a_setting_names_the_realm() {
        // RFC 2617 section 3.5: Mufasa / testrealm@host.com / Circle Of Life.
        let (md5, sha) = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(md5, "939e7578ed9e3c518a452acee763bce9");
        assert_eq!(sha.len(), 64);
        assert_eq!(realm("  pbx.example "), "pbx.example");
        assert_eq!(realm(""), host_name());
        assert!(!host_name().is_empty());
    }
}
