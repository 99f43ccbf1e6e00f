//! The last answers of server transactions, kept for retransmissions, one
//! after another in one buffer of a fixed size. A table of thousands of
//! answers is then one allocation that never moves, not thousands of their
//! own scattered among the short-lived ones of message handling (which kept
//! whole allocator pages in memory after a flood). An answer that newer
//! ones overwrote is gone, and its transaction with it.

use crate::sip::{Peer, Transmit};

/// The buffer's size: at 1,000 REGISTERs a second about 5 s of answers
/// (each about 700 bytes), at a home office's rate hours.
pub const ANSWERS_BYTES: usize = 4 << 20;

/// Where an answer is: its peer, its start in the stream of all answers
/// written, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stored {
    pub peer: Peer,
    at: u64,
    len: u32,
}

#[derive(Debug, Default)]
pub(super) struct Answers {
    /// Reserved on the first answer and filled as answers come, so a quiet
    /// sipd touches only the pages its few answers need.
    buf: Vec<u8>,
    /// Bytes written since the start, wrap-around gaps included.
    written: u64,
}

impl Answers {
    /// Keeps a copy of `t`; `None` for an answer larger than an eighth of
    /// the buffer (never a SIP message over UDP, whose limit is 64 KiB).
    pub fn put(&mut self, t: &Transmit) -> Option<Stored> {
        let len = t.data.len();
        if len > ANSWERS_BYTES / 8 {
            return None;
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(ANSWERS_BYTES);
        }
        let size = ANSWERS_BYTES as u64;
        let mut off = (self.written % size) as usize;
        if off + len > ANSWERS_BYTES {
            // It does not fit before the end: it starts over at the front.
            self.written += size - off as u64;
            off = 0;
        }
        if off + len > self.buf.len() {
            // Still filling: only the new part is zeroed, then written.
            self.buf.resize(off + len, 0);
        }
        self.buf[off..off + len].copy_from_slice(&t.data);
        let at = self.written;
        self.written += len as u64;
        Some(Stored {
            peer: t.peer,
            at,
            len: len as u32,
        })
    }

    /// The answer `s` points at, unless newer ones overwrote it.
    pub fn get(&self, s: &Stored) -> Option<Transmit> {
        if self.written - s.at > ANSWERS_BYTES as u64 {
            return None;
        }
        let off = (s.at % ANSWERS_BYTES as u64) as usize;
        Some(Transmit {
            peer: s.peer,
            data: self.buf[off..off + s.len as usize].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(n: usize, fill: u8) -> Transmit {
        Transmit {
            peer: Peer::udp("192.0.2.1:5060".parse().unwrap()),
            data: vec![fill; n],
        }
    }

    #[test]
    fn answers_come_back_until_newer_ones_overwrite_them() {
        let mut a = Answers::default();
        assert_eq!(a.buf.capacity(), 0);
        let first = a.put(&answer(700, 1)).unwrap();
        assert_eq!(a.buf.len(), 700);
        let second = a.put(&answer(700, 2)).unwrap();
        assert_eq!(a.get(&first), Some(answer(700, 1)));
        assert_eq!(a.get(&second), Some(answer(700, 2)));
        // Fill the buffer past its end: the first two are overwritten; the
        // answer that would straddle the end starts at the front, whole;
        // the last buffer's worth is all there.
        let n = ANSWERS_BYTES / 1000 + 10;
        let stored: Vec<Stored> = (0..n)
            .map(|i| a.put(&answer(1000, (i % 250) as u8 + 3)).unwrap())
            .collect();
        assert_eq!(a.get(&first), None);
        assert_eq!(a.get(&second), None);
        let kept = (0..n)
            .filter(|&i| a.get(&stored[i]) == Some(answer(1000, (i % 250) as u8 + 3)))
            .count();
        let gone = (0..n).filter(|&i| a.get(&stored[i]).is_none()).count();
        assert_eq!(kept + gone, n);
        assert!(kept >= ANSWERS_BYTES / 1000 - 1, "{kept}");
        assert!((0..n).skip(gone).all(|i| a.get(&stored[i]).is_some()));
        assert_eq!(a.buf.capacity(), ANSWERS_BYTES);
        assert!(a.buf.len() <= ANSWERS_BYTES);
        // An answer too large to keep is not kept.
        assert_eq!(a.put(&answer(ANSWERS_BYTES / 8 + 1, 9)), None);
    }
}
