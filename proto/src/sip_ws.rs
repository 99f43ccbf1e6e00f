//! SIP over WebSocket (RFC 7118) for the phone in the browser. The browser
//! reaches only webd's port: it opens `wss://<GoSIP>/ws/sip` with the
//! `sip` subprotocol and its session cookie. webd checks the session (and
//! that the page came from GoSIP's own origin), makes sure the user has a
//! Browser device, and opens a WebSocket to sipd's loopback listener for
//! that device, then relays the frames both ways. The browser never holds
//! a SIP password: sipd takes the connection as that device's, because
//! only a daemon holding the shared secret ([`crate::grpc::Secret`]) can
//! open it, and answers the REGISTERs and INVITEs on it without a digest
//! challenge. Each WebSocket message is one SIP message (RFC 7118 section
//! 5.1).

use std::net::IpAddr;

use tonic::codegen::http::{HeaderMap, HeaderName, HeaderValue};

use crate::grpc::Secret;
use crate::types::DeviceId;

/// The WebSocket subprotocol both hops negotiate (RFC 7118 section 4).
pub const SUBPROTOCOL: &str = "sip";
/// The path the browser opens on webd's port.
pub const BROWSER_PATH: &str = "/ws/sip";
/// The path webd opens on sipd's listener.
pub const SIPD_PATH: &str = "/sip";
/// The device the connection speaks for.
pub const DEVICE_HEADER: &str = "x-gosip-device";
/// The browser's own address as webd saw it: sipd chooses the address it
/// puts in SDP for the browser from it, as it does from a phone's source.
pub const CLIENT_IP_HEADER: &str = "x-gosip-client-ip";

/// Who a connection from webd to sipd is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade {
    pub device: DeviceId,
    pub client_ip: IpAddr,
}

/// Why sipd refuses an upgrade (it answers 401 or 400 and closes).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpgradeError {
    #[error("the upgrade does not carry the daemons' shared secret")]
    Unauthorized,
    #[error("header {0} is missing or malformed")]
    BadHeader(&'static str),
}

impl Upgrade {
    /// The headers webd adds to its upgrade request to sipd (with the
    /// `Sec-WebSocket-Protocol: sip` every RFC 7118 client sends).
    pub fn headers(&self, secret: &Secret) -> Vec<(HeaderName, HeaderValue)> {
        let auth = HeaderValue::from_bytes(secret.bearer().as_bytes()).ok();
        let ip = HeaderValue::from_str(&self.client_ip.to_string()).ok();
        [
            (HeaderName::from_static("authorization"), auth),
            (
                HeaderName::from_static(DEVICE_HEADER),
                Some(HeaderValue::from(self.device.0)),
            ),
            (HeaderName::from_static(CLIENT_IP_HEADER), ip),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect()
    }

    /// What sipd reads from an upgrade request: the secret first, then who
    /// the connection is for.
    pub fn from_headers(headers: &HeaderMap, secret: &Secret) -> Result<Self, UpgradeError> {
        if !secret.accepts(headers.get("authorization")) {
            return Err(UpgradeError::Unauthorized);
        }
        let read = |name: &'static str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(UpgradeError::BadHeader(name))
        };
        let device = read(DEVICE_HEADER)?
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(DeviceId)
            .ok_or(UpgradeError::BadHeader(DEVICE_HEADER))?;
        let client_ip = read(CLIENT_IP_HEADER)?
            .parse()
            .map_err(|_| UpgradeError::BadHeader(CLIENT_IP_HEADER))?;
        Ok(Self { device, client_ip })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: Vec<(HeaderName, HeaderValue)>) -> HeaderMap {
        pairs.into_iter().collect()
    }

    #[test]
    fn what_webd_sends_sipd_reads_back_and_only_with_the_secret() {
        let secret = Secret::random();
        let up = Upgrade {
            device: DeviceId(7),
            client_ip: "198.51.100.20".parse().unwrap(),
        };
        assert_eq!(
            Upgrade::from_headers(&map(up.headers(&secret)), &secret),
            Ok(up)
        );
        let other = Secret::random();
        assert_eq!(
            Upgrade::from_headers(&map(up.headers(&other)), &secret),
            Err(UpgradeError::Unauthorized)
        );
    }

    #[test]
    fn a_missing_or_bad_device_or_address_is_named() {
        let secret = Secret::random();
        let up = Upgrade {
            device: DeviceId(7),
            client_ip: "198.51.100.20".parse().unwrap(),
        };
        let mut h = map(up.headers(&secret));
        h.insert(DEVICE_HEADER, HeaderValue::from_static("0"));
        assert_eq!(
            Upgrade::from_headers(&h, &secret),
            Err(UpgradeError::BadHeader(DEVICE_HEADER))
        );
        let mut h = map(up.headers(&secret));
        h.remove(CLIENT_IP_HEADER);
        assert_eq!(
            Upgrade::from_headers(&h, &secret),
            Err(UpgradeError::BadHeader(CLIENT_IP_HEADER))
        );
    }
}
