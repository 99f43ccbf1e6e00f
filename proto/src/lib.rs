//! GoSIP's shared contracts: the gRPC services of the five daemons, the SQLite
//! schema and pool setup, which crate writes which table, the domain
//! newtypes, the runtime settings registry, the plumbing every daemon starts
//! with (tracing, shutdown, health), the shared secret of the gRPC calls
//! between them, and the address checks of outgoing notifications.
//!
//! No business logic lives here: routing, SIP, media and messaging belong to
//! their daemons.

pub mod alerts;
pub mod daemon;
pub mod db;
pub mod files;
pub mod grpc;
pub mod jobs;
pub mod netaddr;
pub mod routing;
pub mod sdes;
pub mod settings;
pub mod sip_auth;
pub mod sip_ws;
pub mod ssrf;
pub mod tables;
pub mod time;
pub mod trunk;
pub mod types;
pub mod webrtc;

/// Generated gRPC code, one module per `.proto` file (tonic-build writes
/// each service's dispatch as one long match).
#[allow(clippy::too_many_lines)]
pub mod pb {
    pub mod common {
        tonic::include_proto!("gosip.common");
    }
    pub mod sipd {
        tonic::include_proto!("gosip.sipd");
    }
    pub mod mediad {
        tonic::include_proto!("gosip.mediad");
    }
    pub mod twiliod {
        tonic::include_proto!("gosip.twiliod");
    }
    pub mod notifyd {
        tonic::include_proto!("gosip.notifyd");
    }
}

/// The version every daemon reports in its health answer.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Default listen addresses (ARCHITECTURE.md "Processes").
pub mod defaults {
    pub const SIP_PORT: u16 = 5060;
    /// SIP over TLS (RFC 3261 section 26.2).
    pub const SIPS_PORT: u16 = 5061;
    pub const HTTP_PORT: u16 = 8080;
    pub const TWILIOD_HTTP: &str = "127.0.0.1:8081";
    pub const SIPD_GRPC: &str = "127.0.0.1:50061";
    /// sipd's SIP over WebSocket listener; only webd connects to it
    /// (`sip_ws`), so it stays on loopback.
    pub const SIPD_WS: &str = "127.0.0.1:50065";
    pub const MEDIAD_GRPC: &str = "127.0.0.1:50062";
    pub const TWILIOD_GRPC: &str = "127.0.0.1:50063";
    pub const NOTIFYD_GRPC: &str = "127.0.0.1:50064";
    pub const RTP_PORTS: &str = "10000-10999";
    pub const DATA_DIR: &str = "./data";
}
