//! A 2xx that sipd sent as the UAS of an INVITE, re-sent until its ACK
//! comes: at T1, then doubling up to T2, for at most 64*T1 (RFC 3261
//! section 13.3.1.4). The UAS core does this rather than the transaction,
//! which ends with the 2xx (section 17.2.1), and it does so on every
//! transport: a proxy between sipd and the phone may use UDP.

use super::invite_client::Due;
use crate::sip::{T1, T2, Transmit};

/// sipd's 2xx waiting for its ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnackedOk {
    ok: Transmit,
    next: u64,
    interval: u64,
    deadline: u64,
}

impl UnackedOk {
    /// The 2xx `ok`, sent at `now`.
    pub fn new(now: u64, ok: Transmit) -> UnackedOk {
        UnackedOk {
            ok,
            next: now + T1,
            interval: T1,
            deadline: now + 64 * T1,
        }
    }

    /// The 2xx, to send again.
    pub fn ok(&self) -> &Transmit {
        &self.ok
    }

    /// When [`UnackedOk::due`] has something to say next.
    pub fn next_deadline(&self) -> u64 {
        self.next
    }

    /// Due at `now`: [`Due::Resend`] to send the 2xx again,
    /// [`Due::TimedOut`] once 64*T1 passed without the ACK (the UAS then
    /// ends the dialog, section 13.3.1.4); `None` when not due.
    pub fn due(&mut self, now: u64) -> Option<Due> {
        if now < self.next {
            return None;
        }
        if now >= self.deadline {
            return Some(Due::TimedOut);
        }
        self.interval = (self.interval * 2).min(T2);
        self.next = now + self.interval;
        Some(Due::Resend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Peer;

    fn ok() -> Transmit {
        Transmit {
            peer: Peer::udp("192.0.2.1:5060".parse().unwrap()),
            data: b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
        }
    }

    #[test]
    fn a_2xx_is_resent_doubling_up_to_t2_until_64_t1() {
        let mut u = UnackedOk::new(0, ok());
        let mut sent = Vec::new();
        let mut now = 0;
        let end = loop {
            match u.due(now) {
                Some(Due::Resend) => sent.push(now),
                Some(Due::TimedOut) => break now,
                None => {}
            }
            now += 100;
        };
        assert_eq!(&sent[..4], &[500, 1_500, 3_500, 7_500]);
        assert!(
            sent.windows(2).skip(3).all(|w| w[1] - w[0] == T2),
            "{sent:?}"
        );
        // The first re-send due at or after 64*T1 gives up instead.
        assert_eq!(end, 35_500);
        assert!(end >= 64 * T1);
        assert_eq!(u.ok(), &ok());
    }

    #[test]
    fn nothing_is_due_before_the_next_resend() {
        let mut u = UnackedOk::new(1_000, ok());
        assert_eq!(u.next_deadline(), 1_000 + T1);
        assert_eq!(u.due(1_000 + T1 - 1), None);
        assert_eq!(u.due(1_000 + T1), Some(Due::Resend));
        assert_eq!(u.next_deadline(), 1_000 + 3 * T1);
    }
}
