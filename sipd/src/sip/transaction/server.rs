//! Server transactions (RFC 3261 section 17.2): the INVITE server
//! transaction re-sends its non-2xx final answer on Timer G until the ACK
//! (absorbed) or Timer H; the non-INVITE one re-sends its last answer to
//! each retransmitted request until Timer J.

use std::cmp::Reverse;

use super::answers::Stored;
use super::{Id, MAX_SERVER, ServerMatch, TimerKind, Transactions, TsxKey};
use crate::sip::method::Method;
use crate::sip::{T1, T2, T4, Transmit};

#[derive(Debug)]
pub(super) struct ServerTx {
    pub(super) invite: bool,
    /// The last answer sent, kept in [`Transactions::answers`].
    pub(super) response: Option<Stored>,
    /// INVITE only: final response sent, waiting for ACK.
    pub(super) awaiting_ack: bool,
    pub(super) retransmit_every: u64,
    pub(super) generation: u64,
}

impl Transactions {
    /// Classifies an inbound request (`method` `None`: an extension
    /// method).
    pub fn on_request(&mut self, now: u64, key: &TsxKey, method: Option<Method>) -> ServerMatch {
        let id = self.id(key);
        let Some(tx) = self.server.get_mut(&id) else {
            return ServerMatch::New;
        };
        if method != Some(Method::Ack) {
            return match tx.response.as_ref().map(|s| self.answers.get(s)) {
                None => ServerMatch::Retransmit(None),
                Some(Some(t)) => ServerMatch::Retransmit(Some(t)),
                // Newer answers overwrote it: the transaction is gone, as
                // if evicted.
                Some(None) => {
                    self.server.remove(&id);
                    ServerMatch::New
                }
            };
        }
        if tx.invite && tx.awaiting_ack {
            tx.awaiting_ack = false;
            let reliable = tx
                .response
                .as_ref()
                .is_some_and(|r| r.peer.transport.reliable());
            self.generation += 1;
            let generation = self.generation;
            tx.generation = generation;
            // Timer I: absorb ACK retransmissions for T4 (0 on TCP).
            let wait = if reliable { 0 } else { T4 };
            self.push_timer(now + wait, TimerKind::ServerEnd, generation, id);
        }
        ServerMatch::AckAbsorbed
    }

    /// Starts a server transaction for a request the TU is about to answer;
    /// false when the table is full of transactions still waiting for their
    /// answer (the request must be refused or dropped). It gets no timer:
    /// the TU answers it now, or calls [`Transactions::unanswered`].
    pub fn begin_server(&mut self, key: &TsxKey, invite: bool) -> bool {
        while self.server.len() >= MAX_SERVER {
            let Some((_, id, g)) = self.completed.pop_front() else {
                return false;
            };
            if self.server.get(&id).is_some_and(|t| t.generation == g) {
                self.server.remove(&id);
            }
        }
        let generation = self.next_gen();
        let id = self.id(key);
        self.server.insert(
            id,
            Box::new(ServerTx {
                invite,
                response: None,
                awaiting_ack: false,
                retransmit_every: T1,
                generation,
            }),
        );
        true
    }

    /// The TU did not answer the request at once: a transaction it never
    /// answers must not live forever, so it ends after 64*T1 unless an
    /// answer moves it on.
    pub fn unanswered(&mut self, now: u64, key: &TsxKey) {
        let id = self.id(key);
        if let Some(g) = self.server.get(&id).map(|t| t.generation) {
            self.push_timer(now + 64 * T1, TimerKind::ServerEnd, g, id);
        }
    }

    /// Drops a server transaction that will never be answered.
    pub fn forget_server(&mut self, key: &TsxKey) {
        let id = self.id(key);
        self.server.remove(&id);
    }

    /// Timer J or H: the completed transaction `id` ends at `at` (64*T1 on
    /// from now, the same for all, so the queue stays in deadline order),
    /// and may be evicted before to make room.
    fn completed(&mut self, at: u64, id: Id, generation: u64) {
        self.completed.push_back((at, id, generation));
    }

    /// Records and sends the TU's response on a server transaction.
    pub fn respond(&mut self, now: u64, key: &TsxKey, t: Transmit, status: u16) {
        let generation = self.next_gen();
        let id = self.id(key);
        let Some(tx) = self.server.get_mut(&id) else {
            self.out.push(t);
            return;
        };
        let reliable = t.peer.transport.reliable();
        let invite = tx.invite;
        // Kept for retransmissions, unless the transaction ends now (below).
        let ends = status >= 200 && ((invite && status < 300) || (!invite && reliable));
        tx.response = if ends { None } else { self.answers.put(&t) };
        tx.generation = generation;
        self.out.push(t);
        if status < 200 {
            self.push_timer(now + 64 * T1, TimerKind::ServerEnd, generation, id);
            return;
        }
        if invite && status >= 300 {
            if let Some(tx) = self.server.get_mut(&id) {
                tx.awaiting_ack = true;
                tx.retransmit_every = T1;
            }
            // Timer G, except for a digest challenge: a 407 is what anyone
            // gets for an INVITE with a forged source, and resending it ten
            // times would make sipd an amplifier. The client retransmits
            // its INVITE until it hears an answer, and each retransmission
            // gets the stored 407 again (RFC 3261 section 17.2.1).
            if !reliable && !matches!(status, 401 | 407) {
                self.push_timer(now + T1, TimerKind::ServerResend, generation, id);
            }
            // Timer H.
            self.completed(now + 64 * T1, id, generation);
        } else if invite {
            // 2xx to INVITE: the TU (dialog) retransmits; the transaction ends.
            self.server.remove(&id);
        } else if reliable {
            // Timer J is 0 on a reliable transport: nothing is resent.
            self.server.remove(&id);
        } else {
            // Timer J.
            self.completed(now + 64 * T1, id, generation);
        }
    }

    /// Timers H, I, J and the end of a wait for the TU's answer: the
    /// transaction is forgotten unless it moved on since the timer was set.
    pub(super) fn server_end(&mut self, generation: u64, id: Id) {
        if self
            .server
            .get(&id)
            .is_some_and(|t| t.generation == generation)
        {
            self.server.remove(&id);
        }
    }

    /// Timer G: the INVITE's non-2xx final answer again, at doubling
    /// intervals up to T2, until the ACK comes.
    pub(super) fn server_resend(&mut self, now: u64, generation: u64, id: Id) {
        let Some(tx) = self.server.get_mut(&id) else {
            return;
        };
        if tx.generation != generation || !tx.awaiting_ack {
            return;
        }
        if let Some(r) = tx.response.as_ref().and_then(|s| self.answers.get(s)) {
            self.out.push(r);
        }
        tx.retransmit_every = (tx.retransmit_every * 2).min(T2);
        let next = now + tx.retransmit_every;
        self.timers
            .push(Reverse((next, TimerKind::ServerResend, generation, id)));
    }
}
