//! The timers of a request the B2BUA sends to a leg and waits on, as plain
//! state: a B-leg INVITE (RFC 3261 section 17.1.1.2: Timer A re-sends it at
//! T1, 2*T1, 4*T1 ... with no cap, Timer B gives up after 64*T1) and a
//! request relayed inside a call (re-INVITE the same; UPDATE and INFO on
//! Timer E, doubling up to T2, and Timer F, section 17.1.2.2).
//!
//! Re-sending happens on unreliable transports only: TCP and TLS deliver
//! the request or fail the connection (sections 17.1.1.2, 17.1.2.2). The
//! give-up timer runs on any transport, since a reliable transport does
//! not make the far end answer.
//!
//! The holder keeps the request and asks [`ClientTimers::due`] when its
//! clock reaches [`ClientTimers::next_deadline`]; these types send
//! nothing themselves.

use crate::sip::{T1, T2};

/// What a timer asks of its holder at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Send the message again.
    Resend,
    /// Give up: no final answer (Timer B/F), or no ACK for a 2xx.
    TimedOut,
}

/// Timers A/B (INVITE) or E/F (any other method) of one request sent to
/// the other leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTimers {
    invite: bool,
    /// When to send the request again (Timer A/E), if it is still re-sent.
    resend_at: Option<u64>,
    /// The current Timer A/E interval.
    interval: u64,
    /// When to give up (Timer B/F), while waiting for an answer.
    timeout_at: Option<u64>,
}

impl ClientTimers {
    /// An INVITE that just went out at `now`: Timer A on an unreliable
    /// transport, Timer B on any.
    pub fn invite(now: u64, reliable: bool) -> ClientTimers {
        ClientTimers::started(now, reliable, true)
    }

    /// A request that just went out at `now`: Timers A/B for an INVITE,
    /// E/F for any other method.
    pub fn started(now: u64, reliable: bool, invite: bool) -> ClientTimers {
        ClientTimers {
            invite,
            resend_at: (!reliable).then_some(now + T1),
            interval: T1,
            timeout_at: Some(now + 64 * T1),
        }
    }

    /// No timers at all: a dialog sipd did not start with a request of its
    /// own (a phone that joined a call with its INVITE).
    pub fn idle() -> ClientTimers {
        ClientTimers {
            invite: true,
            resend_at: None,
            interval: T1,
            timeout_at: None,
        }
    }

    /// A provisional answer moved the transaction to Proceeding: an INVITE
    /// is no longer re-sent and Timer B stops too, since a callee may ring
    /// for as long as it likes (section 17.1.1.2); a non-INVITE is re-sent
    /// every T2 from now on, Timer F still running (section 17.1.2.2).
    pub fn provisional(&mut self) {
        if self.invite {
            self.resend_at = None;
            self.timeout_at = None;
        } else if self.resend_at.is_some() {
            self.interval = T2;
        }
    }

    /// Stops re-sending and leaves the give-up timer running: for a request
    /// that must still get its final answer in time although the far end
    /// has seen it (an INVITE being cancelled, a relayed re-INVITE that
    /// sent a provisional answer).
    pub fn stop_resending(&mut self) {
        self.resend_at = None;
    }

    /// A final answer came: nothing more to re-send or to time out.
    pub fn final_response(&mut self) {
        self.resend_at = None;
        self.timeout_at = None;
    }

    /// The far end cannot be reached at all (no connection): give up at
    /// `now` instead of at Timer B/F, if still waiting for an answer.
    pub fn give_up(&mut self, now: u64) {
        if self.timeout_at.is_some() {
            self.timeout_at = Some(now);
        }
    }

    /// The request is still waiting for its final answer.
    pub fn waiting(&self) -> bool {
        self.timeout_at.is_some()
    }

    /// The earliest time [`ClientTimers::due`] has something to say.
    pub fn next_deadline(&self) -> Option<u64> {
        match (self.resend_at, self.timeout_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires the timers due at `now`. Giving up wins over a re-send due at
    /// the same moment: a request re-sent as the transaction ends would
    /// only start one at the far end that nobody waits on.
    pub fn due(&mut self, now: u64) -> Option<Due> {
        if self.timeout_at.is_some_and(|t| now >= t) {
            self.final_response();
            return Some(Due::TimedOut);
        }
        let at = self.resend_at?;
        if now < at {
            return None;
        }
        // Timer A doubles without a cap; Timer E stops doubling at T2.
        self.interval = if self.invite {
            self.interval * 2
        } else {
            (self.interval * 2).min(T2)
        };
        self.resend_at = Some(now + self.interval);
        Some(Due::Resend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the timers in 100 ms steps up to `until`: the times a re-send
    /// was due, and when it timed out.
    fn run(t: &mut ClientTimers, until: u64) -> (Vec<u64>, Option<u64>) {
        let mut sent = Vec::new();
        let mut now = 0;
        while now <= until {
            match t.due(now) {
                Some(Due::Resend) => sent.push(now),
                Some(Due::TimedOut) => return (sent, Some(now)),
                None => {}
            }
            now += 100;
        }
        (sent, None)
    }

    #[test]
    fn an_invite_over_udp_is_resent_on_timer_a_and_gives_up_on_timer_b() {
        let mut t = ClientTimers::invite(0, false);
        assert_eq!(t.next_deadline(), Some(T1));
        let (sent, end) = run(&mut t, 100_000);
        // T1, 2*T1, 4*T1 ... (RFC 3261 section 17.1.1.2), past T2.
        assert_eq!(sent, vec![500, 1_500, 3_500, 7_500, 15_500, 31_500]);
        assert_eq!(end, Some(64 * T1));
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.due(100_000), None);
    }

    #[test]
    fn timer_a_keeps_doubling_past_t2() {
        let mut t = ClientTimers::invite(0, false);
        let mut now = 0;
        let mut gaps = Vec::new();
        for _ in 0..6 {
            let Some(next) = t.next_deadline().filter(|&n| n < 64 * T1) else {
                break;
            };
            gaps.push(next - now);
            now = next;
            assert_eq!(t.due(now), Some(Due::Resend));
        }
        assert_eq!(gaps, vec![500, 1_000, 2_000, 4_000, 8_000, 16_000]);
    }

    #[test]
    fn a_request_over_a_reliable_transport_is_never_resent_but_still_times_out() {
        for invite in [true, false] {
            let mut t = ClientTimers::started(1_000, true, invite);
            assert_eq!(t.next_deadline(), Some(1_000 + 64 * T1));
            assert_eq!(t.due(1_000 + 64 * T1 - 1), None);
            assert_eq!(t.due(1_000 + 64 * T1), Some(Due::TimedOut));
        }
    }

    #[test]
    fn a_non_invite_is_resent_on_timer_e_capped_at_t2_and_times_out_on_timer_f() {
        let mut t = ClientTimers::started(0, false, false);
        let (sent, end) = run(&mut t, 100_000);
        assert_eq!(&sent[..4], &[500, 1_500, 3_500, 7_500]);
        assert!(
            sent.windows(2).skip(3).all(|w| w[1] - w[0] == T2),
            "{sent:?}"
        );
        assert_eq!(end, Some(64 * T1));
    }

    #[test]
    fn a_provisional_answer_ends_an_invites_timers_and_slows_a_non_invite_to_t2() {
        let mut inv = ClientTimers::invite(0, false);
        assert_eq!(inv.due(500), Some(Due::Resend));
        inv.provisional();
        assert_eq!(inv.next_deadline(), None, "Proceeding: no Timer A or B");
        assert!(!inv.waiting());
        let mut info = ClientTimers::started(0, false, false);
        assert_eq!(info.due(500), Some(Due::Resend));
        info.provisional();
        // The re-send already scheduled stays; from then on every T2.
        assert_eq!(info.next_deadline(), Some(1_500));
        assert_eq!(info.due(1_500), Some(Due::Resend));
        assert_eq!(info.next_deadline(), Some(1_500 + T2));
        assert!(info.waiting(), "Timer F still runs");
    }

    #[test]
    fn stopping_the_resends_keeps_the_give_up_timer_and_a_final_answer_ends_both() {
        let mut t = ClientTimers::invite(0, false);
        t.stop_resending();
        assert_eq!(t.next_deadline(), Some(64 * T1));
        t.final_response();
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.due(64 * T1), None);
    }

    #[test]
    fn giving_up_early_times_out_at_once_and_only_while_waiting() {
        let mut t = ClientTimers::invite(0, false);
        t.give_up(700);
        assert_eq!(t.next_deadline(), Some(500));
        assert_eq!(t.due(700), Some(Due::TimedOut), "giving up wins");
        let mut answered = ClientTimers::invite(0, false);
        answered.final_response();
        answered.give_up(700);
        assert_eq!(answered.next_deadline(), None);
        assert_eq!(ClientTimers::idle().next_deadline(), None);
    }
}
