//! The sans-IO SIP core: no sockets, no clock reads, no tokio. The shell in
//! `crate::net` feeds it framed messages and the time (milliseconds since the
//! Unix epoch) and drains what it wants sent and stored.

pub mod abuse;
pub mod core;
pub mod digest;
pub mod msg;
pub mod registrar;
pub mod sdp;
pub mod transaction;

use std::net::SocketAddr;

/// The transport a message came in on or must leave by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            _ => None,
        }
    }

    /// Reliable transports need no retransmissions (RFC 3261 section 17).
    pub fn reliable(self) -> bool {
        self == Transport::Tcp
    }
}

/// Where a message came from / goes to. `conn` names the TCP connection
/// (0 for UDP) so answers go back on the connection the request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub conn: u64,
}

/// Bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: Peer,
    pub data: Vec<u8>,
}

/// RFC 3261 timer base values (milliseconds).
pub const T1: u64 = 500;
pub const T2: u64 = 4_000;
pub const T4: u64 = 5_000;
