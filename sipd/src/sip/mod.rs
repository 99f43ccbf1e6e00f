//! The sans-IO SIP core: no sockets, no clock reads, no tokio. The shell in
//! `crate::net` feeds it framed messages and the time (milliseconds since the
//! Unix epoch) and drains what it wants sent and stored.

pub mod abuse;
pub mod addrs;
pub mod core;
pub mod dialog;
pub mod digest;
pub mod limits;
pub mod method;
pub mod msg;
pub mod numbers;
pub mod opus;
pub mod registrar;
pub mod sdes;
pub mod sdp;
pub mod transaction;
pub mod uri;
pub mod webrtc;

use std::net::{IpAddr, SocketAddr};

/// The transport a message came in on or must leave by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// TCP under TLS (RFC 3261 section 26.2): `transport=tls`, Via
    /// `SIP/2.0/TLS`.
    Tls,
    /// SIP over WebSocket (RFC 7118): the phone in the browser, whose
    /// messages webd relays from the browser's WebSocket. Via says `WS` or
    /// `WSS` (what the browser used to reach webd); both are this.
    Ws,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            "ws" | "wss" => Some(Transport::Ws),
            _ => None,
        }
    }

    /// Reliable transports need no retransmissions (RFC 3261 section 17).
    pub fn reliable(self) -> bool {
        self != Transport::Udp
    }
}

/// Where a message came from / goes to. `conn` names the TCP connection
/// (0 for UDP) so answers go back on the connection the request used.
/// `local` is this host's address on the path to the peer: the destination
/// address of its datagram (IP_PKTINFO) or the accepted connection's local
/// address, else a routing look-up. It is what the peer can reach, so it
/// goes into Via, Contact and SDP towards that peer, and it is the source of
/// what is sent there. It is not part of the peer's identity (equality and
/// hashing look at transport, address and connection only).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub conn: u64,
    pub local: Option<IpAddr>,
}

impl Peer {
    /// A UDP peer whose local side is not known yet.
    pub fn udp(addr: SocketAddr) -> Self {
        Self {
            transport: Transport::Udp,
            addr,
            conn: 0,
            local: None,
        }
    }

    /// The same peer, reached from `local`.
    pub fn with_local(self, local: Option<IpAddr>) -> Self {
        Self { local, ..self }
    }
}

impl PartialEq for Peer {
    fn eq(&self, o: &Self) -> bool {
        self.transport == o.transport && self.addr == o.addr && self.conn == o.conn
    }
}

impl Eq for Peer {}

impl std::hash::Hash for Peer {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.transport.hash(h);
        self.addr.hash(h);
        self.conn.hash(h);
    }
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
