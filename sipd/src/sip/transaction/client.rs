//! Client non-INVITE transactions (RFC 3261 section 17.1.2): the request
//! is re-sent on Timer E (doubling up to T2, unreliable transports only)
//! until a final response from the peer it went to, or Timer F.

use std::cmp::Reverse;

use super::{ClientOutcome, Id, TimerKind, Transactions, TsxKey};
use crate::sip::{Peer, T1, T2, Transmit};

#[derive(Debug)]
pub(super) struct ClientTx {
    /// sipd's branch: what the TU knows the transaction by.
    pub(super) branch: String,
    pub(super) request: Transmit,
    pub(super) interval: u64,
    pub(super) deadline: u64,
    pub(super) generation: u64,
}

impl Transactions {
    /// Sends a non-INVITE request and tracks it until a final response or
    /// `timeout` (at most Timer F).
    pub fn send_request(&mut self, now: u64, branch: &str, t: Transmit, timeout: u64) {
        let id = self.id(&TsxKey::Client(branch.to_string()));
        let generation = self.next_gen();
        let reliable = t.peer.transport.reliable();
        let deadline = now + timeout.min(64 * T1);
        self.out.push(t.clone());
        self.client.insert(
            id,
            ClientTx {
                branch: branch.to_string(),
                request: t,
                interval: T1,
                deadline,
                generation,
            },
        );
        if !reliable {
            self.push_timer(now + T1, TimerKind::ClientResend, generation, id);
        }
        self.push_timer(deadline, TimerKind::ClientEnd, generation, id);
    }

    /// Matches a response to a client transaction by its key and by where
    /// it came from: only the peer the request went to may answer it, so a
    /// forged answer from elsewhere cannot end it. True when it was ours.
    pub fn on_response(&mut self, branch: &str, status: u16, from: &Peer) -> bool {
        let id = self.id(&TsxKey::Client(branch.to_string()));
        if !self
            .client
            .get(&id)
            .is_some_and(|t| answers_from(&t.request.peer, from))
        {
            return false;
        }
        if status >= 200 {
            self.client.remove(&id);
            self.outcomes.push(ClientOutcome::Response {
                key: branch.to_string(),
                status,
            });
        }
        true
    }

    /// Timer E: the request again, unless it was answered meanwhile.
    pub(super) fn client_resend(&mut self, now: u64, generation: u64, id: Id) {
        let Some(tx) = self.client.get_mut(&id) else {
            return;
        };
        if tx.generation != generation {
            return;
        }
        self.out.push(tx.request.clone());
        tx.interval = (tx.interval * 2).min(T2);
        let next = now + tx.interval;
        if next < tx.deadline {
            self.timers
                .push(Reverse((next, TimerKind::ClientResend, generation, id)));
        }
    }

    /// Timer F: no final answer in time; the TU hears of the timeout.
    pub(super) fn client_end(&mut self, generation: u64, id: Id) {
        if self
            .client
            .get(&id)
            .is_some_and(|t| t.generation == generation)
            && let Some(tx) = self.client.remove(&id)
        {
            self.outcomes
                .push(ClientOutcome::Timeout { key: tx.branch });
        }
    }
}

/// True when a response from `from` may answer a request sent to `to`:
/// same transport, address and port (for TCP the connection's remote
/// address, which is where the request went).
pub fn answers_from(to: &Peer, from: &Peer) -> bool {
    to.transport == from.transport && to.addr == from.addr
}
