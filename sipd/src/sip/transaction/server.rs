//! Server transactions (RFC 3261 section 17.2): the INVITE server
//! transaction re-sends its non-2xx final answer on Timer G until the ACK
//! (absorbed) or Timer H; the non-INVITE one re-sends its last answer to
//! each retransmitted request until Timer J.

use std::cmp::Reverse;

use super::{MAX_SERVER, ServerMatch, TimerKind, Transactions, TsxKey};
use crate::sip::method::Method;
use crate::sip::{T1, T2, T4, Transmit};

#[derive(Debug)]
pub(super) struct ServerTx {
    pub(super) invite: bool,
    pub(super) response: Option<Transmit>,
    /// INVITE only: final response sent, waiting for ACK.
    pub(super) awaiting_ack: bool,
    pub(super) retransmit_every: u64,
    pub(super) generation: u64,
}

impl Transactions {
    /// Classifies an inbound request (`method` `None`: an extension
    /// method).
    pub fn on_request(&mut self, now: u64, key: &TsxKey, method: Option<Method>) -> ServerMatch {
        let Some(tx) = self.server.get_mut(key) else {
            return ServerMatch::New;
        };
        if method != Some(Method::Ack) {
            return ServerMatch::Retransmit(tx.response.clone());
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
            self.push_timer(now + wait, TimerKind::ServerEnd, generation, key);
        }
        ServerMatch::AckAbsorbed
    }

    /// Starts a server transaction for a request the TU is about to answer;
    /// false when the table is full of transactions still waiting for their
    /// answer (the request must be refused or dropped).
    pub fn begin_server(&mut self, now: u64, key: &TsxKey, invite: bool) -> bool {
        while self.server.len() >= MAX_SERVER {
            let Some((k, g)) = self.completed.pop_front() else {
                return false;
            };
            if self.server.get(&k).is_some_and(|t| t.generation == g) {
                self.server.remove(&k);
            }
        }
        let generation = self.next_gen();
        self.server.insert(
            key.clone(),
            ServerTx {
                invite,
                response: None,
                awaiting_ack: false,
                retransmit_every: T1,
                generation,
            },
        );
        // A transaction the TU never answers must not live forever.
        self.push_timer(now + 64 * T1, TimerKind::ServerEnd, generation, key);
        true
    }

    /// Drops a server transaction that will never be answered.
    pub fn forget_server(&mut self, key: &TsxKey) {
        self.server.remove(key);
    }

    /// Remembers a completed transaction as evictable, first dropping
    /// entries at the front that ended already.
    fn completed(&mut self, key: &TsxKey, generation: u64) {
        while let Some((k, g)) = self.completed.front() {
            if self.server.get(k).is_some_and(|t| t.generation == *g) {
                break;
            }
            self.completed.pop_front();
        }
        self.completed.push_back((key.clone(), generation));
    }

    /// Records and sends the TU's response on a server transaction.
    pub fn respond(&mut self, now: u64, key: &TsxKey, t: Transmit, status: u16) {
        let generation = self.next_gen();
        let Some(tx) = self.server.get_mut(key) else {
            self.out.push(t);
            return;
        };
        let reliable = t.peer.transport.reliable();
        tx.response = Some(t.clone());
        tx.generation = generation;
        let invite = tx.invite;
        self.out.push(t);
        if status < 200 {
            self.push_timer(now + 64 * T1, TimerKind::ServerEnd, generation, key);
            return;
        }
        if invite && status >= 300 {
            if let Some(tx) = self.server.get_mut(key) {
                tx.awaiting_ack = true;
                tx.retransmit_every = T1;
            }
            // Timer G, except for a digest challenge: a 407 is what anyone
            // gets for an INVITE with a forged source, and resending it ten
            // times would make sipd an amplifier. The client retransmits
            // its INVITE until it hears an answer, and each retransmission
            // gets the stored 407 again (RFC 3261 section 17.2.1).
            if !reliable && !matches!(status, 401 | 407) {
                self.push_timer(now + T1, TimerKind::ServerResend, generation, key);
            }
            // Timer H.
            self.push_timer(now + 64 * T1, TimerKind::ServerEnd, generation, key);
            self.completed(key, generation);
        } else if invite {
            // 2xx to INVITE: the TU (dialog) retransmits; the transaction ends.
            self.server.remove(key);
        } else {
            // Timer J.
            let wait = if reliable { 0 } else { 64 * T1 };
            self.push_timer(now + wait, TimerKind::ServerEnd, generation, key);
            self.completed(key, generation);
        }
    }

    /// Timers H, I, J and the end of a wait for the TU's answer: the
    /// transaction is forgotten unless it moved on since the timer was set.
    pub(super) fn server_end(&mut self, generation: u64, key: &TsxKey) {
        if self
            .server
            .get(key)
            .is_some_and(|t| t.generation == generation)
        {
            self.server.remove(key);
        }
    }

    /// Timer G: the INVITE's non-2xx final answer again, at doubling
    /// intervals up to T2, until the ACK comes.
    pub(super) fn server_resend(&mut self, now: u64, generation: u64, key: TsxKey) {
        let Some(tx) = self.server.get_mut(&key) else {
            return;
        };
        if tx.generation != generation || !tx.awaiting_ack {
            return;
        }
        if let Some(r) = tx.response.clone() {
            self.out.push(r);
        }
        tx.retransmit_every = (tx.retransmit_every * 2).min(T2);
        let next = now + tx.retransmit_every;
        self.timers
            .push(Reverse((next, TimerKind::ServerResend, generation, key)));
    }
}
