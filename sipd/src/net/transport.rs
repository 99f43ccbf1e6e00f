//! UDP, TCP and TLS transport. Every inbound message goes through the [`Inbox`],
//! which queues per source IP and hands messages out round-robin: a flood
//! from one address fills only its own (bounded) queue, so a legitimate
//! phone's REGISTER waits behind at most one message per other source.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::sip::msg::{MAX_HEADER_SECTION, MAX_MESSAGE};
use crate::sip::{Peer, Transmit, Transport};

/// Messages queued per source IP before further ones are dropped.
const PER_SOURCE_QUEUE: usize = 2048;
/// Open TCP connections per source IP.
const PER_SOURCE_CONNS: usize = 32;
/// Open TCP connections in all: past this new ones are closed at once.
const MAX_CONNS: usize = 1_000;
/// Messages waiting to be written to one TCP connection. A peer that
/// reads slower than this is closed rather than buffered without end.
const SEND_QUEUE: usize = 256;
/// A TCP connection silent this long is closed (phones ping every 30-120 s).
pub(crate) const TCP_IDLE: Duration = Duration::from_secs(900);

/// One framed inbound message.
pub struct Item {
    pub peer: Peer,
    pub data: Vec<u8>,
    /// The device a WebSocket connection from webd speaks for (see
    /// [`super::ws`]); `None` on UDP, TCP and TLS.
    pub device: Option<proto::types::DeviceId>,
}

#[derive(Default)]
struct InboxState {
    queues: HashMap<IpAddr, VecDeque<Item>>,
    order: VecDeque<IpAddr>,
    dropped: u64,
}

/// The fair inbox shared by the readers and the core task.
#[derive(Clone, Default)]
pub struct Inbox {
    state: Arc<Mutex<InboxState>>,
    notify: Arc<Notify>,
}

impl Inbox {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&self, item: Item) {
        let ip = item.peer.addr.ip();
        {
            let Ok(mut s) = self.state.lock() else {
                return;
            };
            let q = s.queues.entry(ip).or_default();
            if q.len() >= PER_SOURCE_QUEUE {
                s.dropped += 1;
                return;
            }
            let was_empty = q.is_empty();
            q.push_back(item);
            if was_empty {
                s.order.push_back(ip);
            }
        }
        self.notify.notify_one();
    }

    /// The next message, one source after another.
    pub fn pop(&self) -> Option<Item> {
        let mut s = self.state.lock().ok()?;
        let ip = s.order.pop_front()?;
        let q = s.queues.get_mut(&ip)?;
        let item = q.pop_front();
        if q.is_empty() {
            s.queues.remove(&ip);
        } else {
            s.order.push_back(ip);
        }
        item
    }

    fn is_empty(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.order.is_empty())
            .unwrap_or(true)
    }

    /// Resolves when a message is waiting.
    pub async fn ready(&self) {
        if !self.is_empty() {
            return;
        }
        self.notify.notified().await;
    }
}

/// The sending side of one TCP connection: a bounded queue, and the token
/// that closes the connection when the queue overflows.
#[derive(Clone)]
pub struct ConnTx {
    queue: mpsc::Sender<Vec<u8>>,
    close: CancellationToken,
}

impl ConnTx {
    /// A connection's sender and the queue its writer drains.
    pub(crate) fn channel() -> (Self, mpsc::Receiver<Vec<u8>>) {
        let (queue, rx) = mpsc::channel(SEND_QUEUE);
        let tx = ConnTx {
            queue,
            close: CancellationToken::new(),
        };
        (tx, rx)
    }

    /// Resolves when the connection must close (its queue overflowed).
    pub(crate) async fn closing(&self) {
        self.close.cancelled().await;
    }

    /// Queues `data`; false when it was not. A full queue closes the
    /// connection (the peer does not read what it is sent).
    pub fn send(&self, data: Vec<u8>) -> bool {
        match self.queue.try_send(data) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

type ConnEntry = (SocketAddr, ConnTx);

/// Open TCP connections by id, for answers and requests to phones on TCP.
#[derive(Clone, Default)]
pub struct Conns {
    inner: Arc<Mutex<HashMap<u64, ConnEntry>>>,
    next: Arc<AtomicU64>,
}

impl Conns {
    pub(crate) fn add(&self, addr: SocketAddr, tx: ConnTx) -> Option<u64> {
        let mut m = self.inner.lock().ok()?;
        if m.len() >= MAX_CONNS {
            return None;
        }
        if m.values().filter(|(a, _)| a.ip() == addr.ip()).count() >= PER_SOURCE_CONNS {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        m.insert(id, (addr, tx));
        Some(id)
    }

    pub(crate) fn remove(&self, id: u64) {
        if let Ok(mut m) = self.inner.lock() {
            m.remove(&id);
        }
    }

    /// The connection `id`, or any open one from `addr` (after a restart
    /// the stored binding knows only the address).
    fn sender(&self, id: u64, addr: SocketAddr) -> Option<ConnTx> {
        let m = self.inner.lock().ok()?;
        if let Some((_, tx)) = m.get(&id) {
            return Some(tx.clone());
        }
        m.values()
            .find(|(a, _)| *a == addr)
            .map(|(_, tx)| tx.clone())
    }
}

/// Sends one message on its transport. A message for a TCP or TLS peer
/// with no connection open comes back: sipd opens connections only to a
/// secure trunk ([`Dialer`]); for anyone else it is dropped and the
/// transaction layer notices the missing answer. `udp` comes with whether
/// it is bound to the wildcard address.
pub async fn send(
    (udp, wildcard): (&UdpSocket, bool),
    conns: &Conns,
    t: Transmit,
) -> Option<Transmit> {
    match t.peer.transport {
        Transport::Udp => {
            let r = match (t.peer.local, t.peer.addr) {
                // A socket on the wildcard address answers from the address
                // the peer used (RFC 3261 section 18.2.2), not from whatever
                // the routing table would pick on a host with several.
                (Some(IpAddr::V4(src)), SocketAddr::V4(dst))
                    if wildcard && !src.is_unspecified() =>
                {
                    match send_from(udp, &t.data, src, dst).await {
                        Ok(n) => Ok(n),
                        Err(_) => udp.send_to(&t.data, t.peer.addr).await,
                    }
                }
                _ => udp.send_to(&t.data, t.peer.addr).await,
            };
            if let Err(e) = r {
                tracing::debug!(dst = %t.peer.addr, error = %e, "udp send failed");
            }
        }
        Transport::Tcp | Transport::Tls | Transport::Ws => {
            match conns.sender(t.peer.conn, t.peer.addr) {
                Some(tx) => {
                    let _ = tx.send(t.data);
                }
                None => return Some(t),
            }
        }
    }
    None
}

/// Opens TLS connections to a secure trunk: the one peer sipd connects to
/// rather than waits for. The connection is served like an accepted one
/// (the trunk's requests and answers come in on it) and counts against the
/// same limits.
#[derive(Clone)]
pub struct Dialer {
    pub tls: tokio_rustls::TlsConnector,
    pub conns: Conns,
    pub inbox: Inbox,
    /// Where a failed connection is reported, so the core fails what
    /// waits on it at once.
    pub failed: mpsc::Sender<super::Command>,
    pub shutdown: CancellationToken,
}

impl Dialer {
    /// Sends `data` to `addr` on a new TLS connection whose certificate
    /// must name `name`. What is sent meanwhile to `addr` queues behind it
    /// until the handshake is done; a refused certificate or an
    /// unreachable trunk drops the queue and is reported to the core
    /// ([`super::Command::Unreachable`]), which fails the calls waiting.
    pub fn dial(&self, addr: SocketAddr, name: &str, data: Vec<u8>) {
        let server = match rustls::pki_types::ServerName::try_from(name.to_owned()) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(name, error = %e, "the trunk's name cannot be checked against a certificate");
                return;
            }
        };
        let (queue, rx) = mpsc::channel(SEND_QUEUE);
        let tx = ConnTx {
            queue,
            close: CancellationToken::new(),
        };
        let Some(id) = self.conns.add(addr, tx.clone()) else {
            tracing::warn!(dst = %addr, "too many tcp connections to open one to the trunk");
            return;
        };
        tx.send(data);
        let me = self.clone();
        tokio::spawn(async move {
            let stream = tokio::time::timeout(HANDSHAKE, async {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let _ = tcp.set_nodelay(true);
                let local = tcp.local_addr().ok().map(|a| a.ip());
                let tls = me.tls.connect(server, tcp).await?;
                std::io::Result::Ok((tls, local))
            })
            .await;
            let failed = match stream {
                Ok(Ok((stream, local))) => {
                    tracing::info!(dst = %addr, "connected to the trunk over TLS");
                    let conn = Conn {
                        addr,
                        local,
                        id,
                        inbox: me.inbox,
                        tx,
                        rx,
                        shutdown: me.shutdown,
                    };
                    conn.serve(stream, Transport::Tls).await;
                    false
                }
                Ok(Err(e)) => {
                    tracing::warn!(dst = %addr, error = %e, "cannot connect to the trunk over TLS");
                    true
                }
                Err(_) => {
                    tracing::warn!(dst = %addr, "the TLS connection to the trunk timed out");
                    true
                }
            };
            me.conns.remove(id);
            if failed {
                let _ = me.failed.send(super::Command::Unreachable { addr }).await;
            }
        });
    }
}

/// Sends a datagram from `src` (IP_PKTINFO).
async fn send_from(
    udp: &UdpSocket,
    data: &[u8],
    src: std::net::Ipv4Addr,
    dst: std::net::SocketAddrV4,
) -> std::io::Result<usize> {
    use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrIn, sendmsg};
    use std::os::fd::AsRawFd;
    let info = libc::in_pktinfo {
        ipi_ifindex: 0,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(src).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    let to = SockaddrIn::from(dst);
    let fd = udp.as_raw_fd();
    udp.async_io(tokio::io::Interest::WRITABLE, || {
        sendmsg(
            fd,
            &[std::io::IoSlice::new(data)],
            &[ControlMessage::Ipv4PacketInfo(&info)],
            MsgFlags::empty(),
            Some(&to),
        )
        .map_err(std::io::Error::from)
    })
    .await
}

/// Asks the kernel for each datagram's destination address, so answers and
/// SDP name the address the phone really reached.
pub fn enable_pktinfo(udp: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    let r = match udp.local_addr() {
        Ok(SocketAddr::V4(_)) => setsockopt(udp, sockopt::Ipv4PacketInfo, &true),
        Ok(SocketAddr::V6(_)) => setsockopt(udp, sockopt::Ipv6RecvPacketInfo, &true),
        Err(_) => return,
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, "cannot read datagrams' local addresses; using the routing table");
    }
}

/// One datagram: its length, source, and the local address it was sent to.
async fn recv_with_local(
    udp: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
    use std::os::fd::AsRawFd;
    let fd = udp.as_raw_fd();
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
    udp.async_io(tokio::io::Interest::READABLE, || {
        let mut iov = [std::io::IoSliceMut::new(buf)];
        let m = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty())
            .map_err(std::io::Error::from)?;
        let mut local = None;
        if let Ok(cmsgs) = m.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::Ipv4PacketInfo(i) => {
                        // ipi_addr: the destination address in the header.
                        local = Some(IpAddr::from(std::net::Ipv4Addr::from(u32::from_be(
                            i.ipi_addr.s_addr,
                        ))));
                    }
                    ControlMessageOwned::Ipv6PacketInfo(i) => {
                        local = Some(IpAddr::from(i.ipi6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
        }
        let src = m
            .address
            .and_then(|a: SockaddrStorage| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                    .or_else(|| {
                        a.as_sockaddr_in6()
                            .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                    })
            })
            .ok_or_else(|| std::io::Error::other("datagram without a source address"))?;
        Ok((m.bytes, src, local))
    })
    .await
}

/// Reads SIP datagrams into the inbox; STUN answers (to sipd's own Binding
/// requests, see `stun`) go to `stun` instead.
pub async fn udp_reader(
    udp: Arc<UdpSocket>,
    inbox: Inbox,
    stun: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        let r = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = recv_with_local(&udp, &mut buf) => r,
        };
        let (n, src, local) = match r {
            Ok(x) => x,
            Err(e) => {
                // ICMP port unreachable shows up here on Linux; keep reading.
                tracing::debug!(error = %e, "udp recv");
                continue;
            }
        };
        let data = &buf[..n];
        if super::stun::is_stun(data) {
            let _ = stun.try_send((src, data.to_vec()));
            continue;
        }
        // Keep-alive CRLFs (and stray whitespace) need no answer on UDP.
        if n > MAX_MESSAGE || data.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
            continue;
        }
        inbox.push(Item {
            peer: Peer::udp(src).with_local(local),
            data: data.to_vec(),
            device: None,
        });
    }
}

/// The open connections, and where a closed one is reported.
type Registry = (Conns, mpsc::Sender<super::Command>);

pub async fn tcp_acceptor(
    listener: TcpListener,
    inbox: Inbox,
    conns: Registry,
    shutdown: CancellationToken,
) {
    acceptor(listener, None, inbox, conns, shutdown).await;
}

/// Accepts SIP over TLS: each connection's handshake runs on its own
/// task (bounded in time, counted against the same per-source and global
/// limits as TCP), then it is served like TCP. A failed handshake (a bad
/// certificate, plain text on the TLS port) closes just that connection.
pub async fn tls_acceptor(
    listener: TcpListener,
    tls: super::tls::Served,
    inbox: Inbox,
    conns: Registry,
    shutdown: CancellationToken,
) {
    acceptor(listener, Some(tls), inbox, conns, shutdown).await;
}

async fn acceptor(
    listener: TcpListener,
    tls: Option<super::tls::Served>,
    inbox: Inbox,
    (conns, closed): Registry,
    shutdown: CancellationToken,
) {
    loop {
        let r = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, addr) = match r {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (queue, rx) = mpsc::channel(SEND_QUEUE);
        let tx = ConnTx {
            queue,
            close: CancellationToken::new(),
        };
        let Some(id) = conns.add(addr, tx.clone()) else {
            tracing::debug!(src = %addr, "too many tcp connections (from one address or in all)");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok().map(|a| a.ip());
        let conn = Conn {
            addr,
            local,
            id,
            inbox: inbox.clone(),
            tx,
            rx,
            shutdown: shutdown.clone(),
        };
        // The certificate served now (it may have been replaced since).
        let (conns, closed, tls) = (
            conns.clone(),
            closed.clone(),
            tls.as_ref().map(super::tls::Served::acceptor),
        );
        tokio::spawn(async move {
            // The transport it was served on; none when a TLS handshake
            // failed (nothing registered over it).
            let served = match tls {
                None => {
                    conn.serve(stream, Transport::Tcp).await;
                    Some(Transport::Tcp)
                }
                Some(tls) => match tokio::time::timeout(HANDSHAKE, tls.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        conn.serve(stream, Transport::Tls).await;
                        Some(Transport::Tls)
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(src = %addr, error = %e, "tls handshake failed");
                        None
                    }
                    Err(_) => {
                        tracing::debug!(src = %addr, "tls handshake timed out");
                        None
                    }
                },
            };
            conns.remove(id);
            if let Some(transport) = served {
                let _ = closed
                    .send(super::Command::ConnClosed {
                        transport,
                        conn: id,
                    })
                    .await;
            }
        });
    }
}

/// A TLS handshake that takes longer is given up (a slowloris on 5061).
const HANDSHAKE: Duration = Duration::from_secs(10);

/// One accepted stream connection and where its messages go.
struct Conn {
    addr: SocketAddr,
    local: Option<IpAddr>,
    id: u64,
    inbox: Inbox,
    tx: ConnTx,
    rx: mpsc::Receiver<Vec<u8>>,
    shutdown: CancellationToken,
}

impl Conn {
    /// Reads framed messages into the inbox and writes what the core
    /// sends, until the peer closes, stays silent for [`TCP_IDLE`], does
    /// not read, or sends what cannot be framed.
    async fn serve<S>(self, stream: S, transport: Transport)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let Conn {
            addr,
            local,
            id,
            inbox,
            tx,
            mut rx,
            shutdown,
        } = self;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let writer = tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                if wr.write_all(&data).await.is_err() {
                    break;
                }
            }
        });
        let peer = Peer {
            transport,
            addr,
            conn: id,
            local,
        };
        let mut framer = Framer::default();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tx.close.cancelled() => {
                    tracing::debug!(src = %addr, "tcp peer does not read; closing");
                    break;
                }
                r = tokio::time::timeout(TCP_IDLE, rd.read(&mut buf)) => match r {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => n,
                },
            };
            framer.push(&buf[..n]);
            loop {
                match framer.next_frame() {
                    Frame::Message(data) => inbox.push(Item {
                        peer,
                        data,
                        device: None,
                    }),
                    Frame::Ping => {
                        let _ = tx.send(b"\r\n".to_vec());
                    }
                    Frame::NeedMore => break,
                    Frame::Broken => {
                        tracing::debug!(src = %addr, "tcp stream cannot be framed; closing");
                        writer.abort();
                        return;
                    }
                }
            }
        }
        drop(tx);
        writer.abort();
    }
}

/// What the stream framer found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Message(Vec<u8>),
    /// RFC 5626 section 3.5.1 double-CRLF ping: answer with one CRLF.
    Ping,
    NeedMore,
    /// Oversized headers or body, or a bad Content-Length: close.
    Broken,
}

/// Splits a byte stream into SIP messages by Content-Length
/// (RFC 3261 section 18.3).
#[derive(Default)]
pub struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    pub fn next_frame(&mut self) -> Frame {
        // Keep-alives between messages.
        while self.buf.starts_with(b"\r\n") {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.drain(..4);
                return Frame::Ping;
            }
            if self.buf.len() < 4 && b"\r\n\r\n".starts_with(&self.buf) {
                return Frame::NeedMore;
            }
            self.buf.drain(..2);
        }
        let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return if self.buf.len() > MAX_HEADER_SECTION {
                Frame::Broken
            } else {
                Frame::NeedMore
            };
        };
        if end > MAX_HEADER_SECTION {
            return Frame::Broken;
        }
        let head = String::from_utf8_lossy(&self.buf[..end]);
        let mut len = 0usize;
        for line in head.split("\r\n").skip(1) {
            let Some((n, v)) = line.split_once(':') else {
                continue;
            };
            let n = n.trim();
            if n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l") {
                match v.trim().parse::<usize>() {
                    Ok(l) => len = l,
                    Err(_) => return Frame::Broken,
                }
            }
        }
        let total = end + 4 + len;
        if total > MAX_MESSAGE {
            return Frame::Broken;
        }
        if self.buf.len() < total {
            return Frame::NeedMore;
        }
        let msg: Vec<u8> = self.buf.drain(..total).collect();
        Frame::Message(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_framer_splits_pipelined_messages_by_content_length_and_answers_pings() {
        let mut f = Framer::default();
        f.push(b"\r\n\r\nOPTIONS sip:a SIP/2.0\r\nContent-Length: 3\r\n\r\nabcREGISTER sip:a SIP/2.0\r\nl: 0\r\n\r\nINV");
        assert_eq!(f.next_frame(), Frame::Ping);
        assert_eq!(
            f.next_frame(),
            Frame::Message(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 3\r\n\r\nabc".to_vec())
        );
        assert_eq!(
            f.next_frame(),
            Frame::Message(b"REGISTER sip:a SIP/2.0\r\nl: 0\r\n\r\n".to_vec())
        );
        assert_eq!(f.next_frame(), Frame::NeedMore);
    }

    #[test]
    fn the_framer_gives_up_on_endless_headers() {
        let mut f = Framer::default();
        f.push(&vec![b'a'; MAX_HEADER_SECTION + 10]);
        assert_eq!(f.next_frame(), Frame::Broken);
    }

    fn conn_tx() -> (ConnTx, mpsc::Receiver<Vec<u8>>) {
        let (queue, rx) = mpsc::channel(SEND_QUEUE);
        let close = CancellationToken::new();
        (ConnTx { queue, close }, rx)
    }

    #[test]
    fn a_tcp_peer_that_does_not_read_is_closed_not_buffered() {
        let (tx, _rx) = conn_tx();
        for _ in 0..SEND_QUEUE {
            assert!(tx.send(vec![0; 100]));
        }
        assert!(!tx.close.is_cancelled());
        assert!(!tx.send(vec![0; 100]));
        assert!(
            tx.close.is_cancelled(),
            "the overflow closes the connection"
        );
    }

    #[test]
    fn tcp_connections_past_the_global_cap_are_refused() {
        let conns = Conns::default();
        let addr = |i: usize| SocketAddr::from(([198, 18, (i / 256) as u8, (i % 256) as u8], 5060));
        for i in 0..MAX_CONNS {
            assert!(conns.add(addr(i), conn_tx().0).is_some(), "{i}");
        }
        assert!(conns.add(addr(MAX_CONNS), conn_tx().0).is_none());
        conns.remove(1);
        assert!(conns.add(addr(MAX_CONNS), conn_tx().0).is_some());
    }

    #[test]
    fn the_inbox_serves_sources_round_robin() {
        let inbox = Inbox::new();
        let item = |a: &str| Item {
            peer: Peer::udp(a.parse().unwrap()),
            data: vec![],
            device: None,
        };
        for _ in 0..100 {
            inbox.push(item("10.0.0.1:5060"));
        }
        inbox.push(item("10.0.0.2:5060"));
        assert_eq!(inbox.pop().unwrap().peer.addr.ip().to_string(), "10.0.0.1");
        assert_eq!(inbox.pop().unwrap().peer.addr.ip().to_string(), "10.0.0.2");
    }
}
