//! Receiving what a socket has queued in one system call that also says
//! when the queue is empty.
//!
//! A call's socket usually holds one packet when it wakes. Receiving it
//! with `recvfrom` and then asking again to learn that the socket is empty
//! (the `EAGAIN` tokio needs before it waits for the socket again) is two
//! system calls per relayed packet. `recvmmsg` with room for several
//! packets returns what is there and, when it returns fewer than it had
//! room for, the queue was empty: one call. tokio is then told the socket
//! would block (its readiness is cleared only if no new packet was reported
//! since it was last polled, so none is missed).

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Packets one receive can return.
pub const SLOTS: usize = 2;
/// Size of each packet buffer.
pub const BUF: usize = 2048;

/// Buffers for one batch of packets, reused across receives. Each media
/// thread has one, shared by all its calls ([`with_batch`]): one set of
/// buffers stays in the core's cache instead of one per call, and the
/// headers `recvmmsg` fills (raw pointers, not `Send`) never cross threads.
pub struct RecvBatch {
    bufs: Box<[[u8; BUF]; SLOTS]>,
    headers: MultiHeaders<SockaddrStorage>,
    got: [(usize, Option<SocketAddr>); SLOTS],
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            bufs: Box::new([[0; BUF]; SLOTS]),
            headers: MultiHeaders::preallocate(SLOTS, None),
            got: [(0, None); SLOTS],
        }
    }
}

thread_local! {
    static BATCH: std::cell::RefCell<RecvBatch> = std::cell::RefCell::new(RecvBatch::default());
}

/// Runs `f` with this thread's [`RecvBatch`]. `f` must not call
/// `with_batch` itself.
pub fn with_batch<R>(f: impl FnOnce(&mut RecvBatch) -> R) -> R {
    BATCH.with(|b| f(&mut b.borrow_mut()))
}

impl RecvBatch {
    /// Receives up to [`SLOTS`] datagrams into the buffers' first `room`
    /// bytes, without blocking. Returns how many arrived and whether the
    /// socket is now empty; `Err` only for an error other than "empty".
    pub fn recv(&mut self, sock: &UdpSocket, room: usize) -> io::Result<(usize, bool)> {
        let room = room.min(BUF);
        let mut count = 0;
        let r = sock.try_io(Interest::READABLE, || {
            count = recv_into(
                sock.as_raw_fd(),
                &mut self.headers,
                &mut self.bufs,
                room,
                &mut self.got,
            )?;
            if count < SLOTS {
                // Fewer than there was room for: nothing is left, so tokio
                // waits for the next packet instead of asking once more.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match r {
            Ok(()) => Ok((count, false)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok((count, true)),
            Err(e) => Err(e),
        }
    }

    /// Packet `i` of the last receive: its buffer (all [`BUF`] bytes, room
    /// behind the packet included), its length and its sender.
    pub fn packet(&mut self, i: usize) -> (&mut [u8], usize, Option<SocketAddr>) {
        let (len, from) = self.got[i];
        (&mut self.bufs[i][..], len, from)
    }
}

fn recv_into(
    fd: i32,
    headers: &mut MultiHeaders<SockaddrStorage>,
    bufs: &mut [[u8; BUF]; SLOTS],
    room: usize,
    got: &mut [(usize, Option<SocketAddr>); SLOTS],
) -> io::Result<usize> {
    let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..room])]);
    let msgs = recvmmsg(fd, headers, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None)?;
    let mut n = 0;
    for (slot, msg) in got.iter_mut().zip(msgs) {
        *slot = (msg.bytes, msg.address.as_ref().and_then(socket_addr));
        n += 1;
    }
    Ok(n)
}

fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_returns_what_is_queued_and_says_when_the_socket_is_empty() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let mut batch = RecvBatch::default();
        // Nothing yet: empty, no error.
        assert_eq!(batch.recv(&rx, BUF).unwrap(), (0, true));
        for i in 0..3u8 {
            tx.send_to(&[i; 10], to).unwrap();
        }
        rx.readable().await.unwrap();
        // Three queued: a full batch (maybe more behind it), then the
        // last one and the word that the socket is empty.
        assert_eq!(batch.recv(&rx, BUF).unwrap(), (SLOTS, false));
        let (buf, len, from) = batch.packet(1);
        assert_eq!((buf[0], len, buf.len()), (1, 10, BUF));
        assert_eq!(from, Some(tx.local_addr().unwrap()));
        assert_eq!(batch.recv(&rx, BUF).unwrap(), (1, true));
        assert_eq!(batch.packet(0).0[..10], [2; 10]);
        // Room is honoured: a longer datagram is cut to it.
        tx.send_to(&[9; 100], to).unwrap();
        rx.readable().await.unwrap();
        assert_eq!(batch.recv(&rx, 40).unwrap(), (1, true));
        assert_eq!(batch.packet(0).1, 40);
    }
}
