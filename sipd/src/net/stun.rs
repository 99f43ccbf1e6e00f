//! A STUN client (RFC 5389 Binding) for the public address of sipd's SIP
//! socket: the request goes out from that very socket, so the mapped
//! address the server reports is what a home router shows the internet for
//! port 5060. Only used when `sip.stun_server` is set.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The magic cookie (RFC 5389 section 6).
const COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const MAPPED_ADDRESS: u16 = 0x0001;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// A Binding request with transaction id `tid`.
pub fn binding_request(tid: [u8; 12]) -> Vec<u8> {
    let mut m = Vec::with_capacity(20);
    m.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(&COOKIE.to_be_bytes());
    m.extend_from_slice(&tid);
    m
}

/// True when `data` looks like a STUN message rather than SIP: SIP starts
/// with a letter, STUN with two zero bits and carries the magic cookie.
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] & 0xC0 == 0 && data[4..8] == COOKIE.to_be_bytes()
}

/// The mapped address of a Binding success response to `tid`.
pub fn mapped_address(data: &[u8], tid: &[u8; 12]) -> Option<SocketAddr> {
    if !is_stun(data) || u16::from_be_bytes([data[0], data[1]]) != BINDING_SUCCESS {
        return None;
    }
    if &data[8..20] != tid {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let body = data.get(20..20 + len)?;
    let mut plain = None;
    let mut i = 0;
    while i + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[i], body[i + 1]]);
        let alen = usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
        let v = body.get(i + 4..i + 4 + alen)?;
        match kind {
            XOR_MAPPED_ADDRESS => return address(v, Some(tid)),
            MAPPED_ADDRESS => plain = address(v, None),
            _ => {}
        }
        // Attributes are padded to 4 bytes.
        i += 4 + alen.div_ceil(4) * 4;
    }
    plain
}

/// An address attribute's value; XORed with the cookie (and the
/// transaction id for IPv6) when `xor` carries the id.
fn address(v: &[u8], xor: Option<&[u8; 12]>) -> Option<SocketAddr> {
    let family = *v.get(1)?;
    let mut port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]);
    let cookie = COOKIE.to_be_bytes();
    if xor.is_some() {
        port ^= u16::from_be_bytes([cookie[0], cookie[1]]);
    }
    match family {
        0x01 => {
            let mut b: [u8; 4] = v.get(4..8)?.try_into().ok()?;
            if xor.is_some() {
                for (x, c) in b.iter_mut().zip(cookie) {
                    *x ^= c;
                }
            }
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(b)), port))
        }
        0x02 => {
            let mut b: [u8; 16] = v.get(4..20)?.try_into().ok()?;
            if let Some(tid) = xor {
                let key: Vec<u8> = cookie.iter().chain(tid.iter()).copied().collect();
                for (x, k) in b.iter_mut().zip(key) {
                    *x ^= k;
                }
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(b)), port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Binding success carrying `attr` (type, value).
    fn success(tid: [u8; 12], attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&u16::try_from(v.len()).unwrap().to_be_bytes());
            body.extend_from_slice(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut m = Vec::new();
        m.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
        m.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        m.extend_from_slice(&COOKIE.to_be_bytes());
        m.extend_from_slice(&tid);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn a_binding_request_is_a_bare_header_with_the_cookie() {
        let r = binding_request([7; 12]);
        assert_eq!(r.len(), 20);
        assert_eq!(&r[..4], &[0, 1, 0, 0]);
        assert!(is_stun(&r));
        assert!(!is_stun(b"OPTIONS sip:a SIP/2.0\r\n\r\n"));
    }

    #[test]
    fn the_xor_mapped_address_is_decoded() {
        // RFC 5769 section 2.2's IPv4 response: 192.0.2.1:32853.
        let tid = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        let xma = vec![0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43];
        let m = success(
            tid,
            &[
                (0x8022, b"test vector ".to_vec()),
                (XOR_MAPPED_ADDRESS, xma),
            ],
        );
        assert_eq!(
            mapped_address(&m, &tid),
            Some("192.0.2.1:32853".parse().unwrap())
        );
    }

    #[test]
    fn an_ipv6_xor_mapped_address_is_decoded() {
        // RFC 5769 section 2.3: 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
        let tid = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        let xma = vec![
            0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25,
            0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        ];
        let m = success(tid, &[(XOR_MAPPED_ADDRESS, xma)]);
        assert_eq!(
            mapped_address(&m, &tid),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .unwrap()
            )
        );
    }

    #[test]
    fn a_response_to_another_transaction_or_a_plain_mapped_address_is_handled() {
        let tid = [1; 12];
        let plain = vec![0x00, 0x01, 0x13, 0xc4, 203, 0, 113, 5];
        let m = success(tid, &[(MAPPED_ADDRESS, plain)]);
        assert_eq!(
            mapped_address(&m, &tid),
            Some("203.0.113.5:5060".parse().unwrap())
        );
        assert_eq!(mapped_address(&m, &[2; 12]), None);
        assert_eq!(mapped_address(&m[..10], &tid), None);
    }
}
