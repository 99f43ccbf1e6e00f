//! What the tests of every GoSIP crate share (a dev-dependency only, never
//! built into a daemon): loopback ports nobody else in this process was
//! given, waiting for a condition with a deadline, and sipp's error logs.
//! webd's API client ([`api::Api`]), with which tests set the system up as
//! a user does. The daemon harness (`e2e::System`) lives in `e2e`.

pub mod api;

use std::collections::HashSet;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Free ports on 127.0.0.1. Each is bound then released (another process
/// could take it in between, which loopback tests accept) and never handed
/// out twice in one process (the kernel may give the same port to two
/// quick `bind(0)`s, e.g. sipd's SIP and webd's HTTP).
pub mod ports {
    use super::*;

    fn claim(port: u16) -> bool {
        static HANDED: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
        HANDED
            .lock()
            .unwrap()
            .get_or_insert_with(Default::default)
            .insert(port)
    }

    /// A free TCP port.
    pub fn tcp() -> u16 {
        loop {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free tcp port");
            if claim(port) {
                return port;
            }
        }
    }

    /// A free UDP port.
    pub fn udp() -> u16 {
        loop {
            let port = UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .map(|a| a.port())
                .expect("free udp port");
            if claim(port) {
                return port;
            }
        }
    }

    /// A port free for both UDP and TCP (SIP listens on both).
    pub fn sip() -> u16 {
        loop {
            let udp = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
            let port = udp.local_addr().expect("addr").port();
            if TcpListener::bind(("127.0.0.1", port)).is_ok() && claim(port) {
                return port;
            }
        }
    }

    /// A UDP socket and a TCP listener bound to the same port on `ip`, for
    /// an in-process sipd (SIP listens on one port for both). A UDP port
    /// whose TCP twin is taken (another test's connection) is let go and
    /// another tried; the sockets stay bound, so nothing can take them.
    pub async fn sip_bound(ip: &str) -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
        loop {
            let udp = tokio::net::UdpSocket::bind((ip, 0))
                .await
                .expect("udp bind");
            let port = udp.local_addr().expect("addr").port();
            if let Ok(tcp) = tokio::net::TcpListener::bind((ip, port)).await {
                return (udp, tcp);
            }
        }
    }

    /// A SIP port whose neighbour is free too (baresip also binds port + 1
    /// for TLS).
    pub fn sip_pair() -> u16 {
        loop {
            let p = sip();
            if p < 65000
                && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
                && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
                && claim(p + 1)
            {
                return p;
            }
        }
    }

    /// An even-aligned range of `n` free UDP ports (RTP and RTCP pairs),
    /// inclusive.
    pub fn rtp_range(n: u16) -> (u16, u16) {
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(7);
        loop {
            // A small LCG over the clock: spread the tries over 20000-39999.
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let base = 20000 + ((seed >> 8) % 20000) as u16 / 2 * 2;
            let sockets: Vec<_> = (base..base + n)
                .map(|p| UdpSocket::bind(("127.0.0.1", p)))
                .collect();
            if sockets.iter().all(Result::is_ok) && (base..base + n).all(claim) {
                return (base, base + n - 1);
            }
        }
    }

    /// `127.0.0.1:port` where nothing listens (a daemon that is down).
    pub fn closed_tcp_addr() -> String {
        format!("127.0.0.1:{}", tcp())
    }
}

/// Waits until `f` says true, polling every 50 ms; panics with `what` when
/// `within` passes first.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `f` gives a value, polling every 50 ms; panics with `what`
/// when `within` passes first.
pub async fn eventually_some<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every `*_errors.log` sipp wrote in `dir` (`-trace_err`), for a failure
/// message.
pub fn sipp_errors(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().ends_with("_errors.log") {
            out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_port_is_handed_out_twice() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            assert!(seen.insert(ports::tcp()));
            assert!(seen.insert(ports::udp()));
        }
        let (lo, hi) = ports::rtp_range(4);
        assert_eq!((lo % 2, hi - lo), (0, 3));
        assert!(!(lo..=hi).any(|p| seen.contains(&p)));
    }

    #[tokio::test]
    async fn eventually_returns_once_true_and_panics_after_the_deadline() {
        let mut n = 0;
        eventually(Duration::from_secs(5), "three polls", || {
            n += 1;
            let done = n >= 3;
            async move { done }
        })
        .await;
        assert_eq!(n, 3);
        let r = tokio::spawn(eventually(Duration::from_millis(120), "never", || async {
            false
        }))
        .await;
        assert!(r.is_err(), "the deadline panics");
    }
}
