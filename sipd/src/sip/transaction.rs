//! RFC 3261 section 17 transactions as plain state: server transactions
//! absorb request retransmissions and re-send the last response (non-INVITE:
//! Timer J; INVITE non-2xx: Timers G/H/I), client non-INVITE transactions
//! retransmit on Timer E until a final response or Timer F. Timers fire
//! from [`Transactions::handle_timeout`] with the caller's `now`.
//!
//! Server transactions are capped ([`MAX_SERVER`]): past the cap the
//! oldest completed ones (final answer sent, only absorbing
//! retransmissions) make room, and when every transaction is still waiting
//! for its answer a new request is refused.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use super::method::Method;
use super::{Peer, T1, T2, T4, Transmit};

/// Server transactions kept at once. A registration burst completes its
/// transactions within milliseconds, so they are evicted long before this
/// matters; only requests still waiting for an answer can fill it.
pub const MAX_SERVER: usize = 20_000;

/// What an inbound request is to the transaction layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMatch {
    /// A new transaction: hand the request to the TU.
    New,
    /// A retransmission: this is what to send again (maybe nothing yet).
    Retransmit(Option<Transmit>),
    /// The ACK of a non-2xx final response to an INVITE: absorbed.
    AckAbsorbed,
}

/// A client transaction came to an end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutcome {
    Response { key: String, status: u16 },
    Timeout { key: String },
}

#[derive(Debug)]
struct ServerTx {
    invite: bool,
    response: Option<Transmit>,
    /// INVITE only: final response sent, waiting for ACK.
    awaiting_ack: bool,
    retransmit_every: u64,
    generation: u64,
}

#[derive(Debug)]
struct ClientTx {
    request: Transmit,
    interval: u64,
    deadline: u64,
    generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// Server: forget the transaction (J, H, I, or the end of a 1xx wait).
    ServerEnd,
    /// Server INVITE: re-send the final response (G).
    ServerResend,
    /// Client: retransmit (E).
    ClientResend,
    /// Client: give up (F).
    ClientEnd,
}

/// Every transaction of one sipd.
#[derive(Debug, Default)]
pub struct Transactions {
    server: HashMap<String, ServerTx>,
    client: HashMap<String, ClientTx>,
    timers: BinaryHeap<Reverse<(u64, TimerKind, u64, String)>>,
    /// Completed server transactions in completion order (key, generation),
    /// the first to go when the table is full.
    completed: VecDeque<(String, u64)>,
    generation: u64,
    out: Vec<Transmit>,
    outcomes: Vec<ClientOutcome>,
}

/// The server transaction key: the branch when it has the RFC 3261 magic
/// cookie, else the RFC 2543 fallback of section 17.2.3. ACK maps to the
/// INVITE it acknowledges. `method` is the name as the Request-Line has it:
/// an extension method gets its own transactions as well.
pub fn server_key(
    branch: &str,
    sent_by: &str,
    method: &str,
    call_id: &str,
    cseq: u32,
    from_tag: &str,
) -> String {
    let m = if Method::parse(method) == Some(Method::Ack) {
        Method::Invite.as_str()
    } else {
        method
    };
    if branch.starts_with("z9hG4bK") {
        format!("{branch}|{sent_by}|{m}")
    } else {
        format!("2543|{call_id}|{cseq}|{from_tag}|{sent_by}|{m}")
    }
}

impl Transactions {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_gen(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Classifies an inbound request (`method` `None`: an extension
    /// method).
    pub fn on_request(&mut self, now: u64, key: &str, method: Option<Method>) -> ServerMatch {
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
    pub fn begin_server(&mut self, now: u64, key: &str, invite: bool) -> bool {
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
            key.to_string(),
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
    pub fn forget_server(&mut self, key: &str) {
        self.server.remove(key);
    }

    /// Remembers a completed transaction as evictable, first dropping
    /// entries at the front that ended already.
    fn completed(&mut self, key: &str, generation: u64) {
        while let Some((k, g)) = self.completed.front() {
            if self.server.get(k).is_some_and(|t| t.generation == *g) {
                break;
            }
            self.completed.pop_front();
        }
        self.completed.push_back((key.to_string(), generation));
    }

    /// Records and sends the TU's response on a server transaction.
    pub fn respond(&mut self, now: u64, key: &str, t: Transmit, status: u16) {
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

    /// Sends a non-INVITE request and tracks it until a final response or
    /// `timeout` (at most Timer F).
    pub fn send_request(&mut self, now: u64, key: &str, t: Transmit, timeout: u64) {
        let generation = self.next_gen();
        let reliable = t.peer.transport.reliable();
        let deadline = now + timeout.min(64 * T1);
        self.out.push(t.clone());
        self.client.insert(
            key.to_string(),
            ClientTx {
                request: t,
                interval: T1,
                deadline,
                generation,
            },
        );
        if !reliable {
            self.push_timer(now + T1, TimerKind::ClientResend, generation, key);
        }
        self.push_timer(deadline, TimerKind::ClientEnd, generation, key);
    }

    /// Matches a response to a client transaction by its key and by where
    /// it came from: only the peer the request went to may answer it, so a
    /// forged answer from elsewhere cannot end it. True when it was ours.
    pub fn on_response(&mut self, key: &str, status: u16, from: &Peer) -> bool {
        if !self
            .client
            .get(key)
            .is_some_and(|t| answers_from(&t.request.peer, from))
        {
            return false;
        }
        if status >= 200 {
            self.client.remove(key);
            self.outcomes.push(ClientOutcome::Response {
                key: key.to_string(),
                status,
            });
        }
        true
    }

    fn push_timer(&mut self, at: u64, kind: TimerKind, generation: u64, key: &str) {
        self.timers
            .push(Reverse((at, kind, generation, key.to_string())));
    }

    /// The earliest timer, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((t, ..))| *t)
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        while let Some(Reverse((at, ..))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, kind, generation, key))) = self.timers.pop() else {
                break;
            };
            match kind {
                TimerKind::ServerEnd => {
                    if self
                        .server
                        .get(&key)
                        .is_some_and(|t| t.generation == generation)
                    {
                        self.server.remove(&key);
                    }
                }
                TimerKind::ServerResend => {
                    let Some(tx) = self.server.get_mut(&key) else {
                        continue;
                    };
                    if tx.generation != generation || !tx.awaiting_ack {
                        continue;
                    }
                    if let Some(r) = tx.response.clone() {
                        self.out.push(r);
                    }
                    tx.retransmit_every = (tx.retransmit_every * 2).min(T2);
                    let next = now + tx.retransmit_every;
                    self.timers
                        .push(Reverse((next, TimerKind::ServerResend, generation, key)));
                }
                TimerKind::ClientResend => {
                    let Some(tx) = self.client.get_mut(&key) else {
                        continue;
                    };
                    if tx.generation != generation {
                        continue;
                    }
                    self.out.push(tx.request.clone());
                    tx.interval = (tx.interval * 2).min(T2);
                    let next = now + tx.interval;
                    if next < tx.deadline {
                        self.timers
                            .push(Reverse((next, TimerKind::ClientResend, generation, key)));
                    }
                }
                TimerKind::ClientEnd => {
                    if self
                        .client
                        .get(&key)
                        .is_some_and(|t| t.generation == generation)
                    {
                        self.client.remove(&key);
                        self.outcomes.push(ClientOutcome::Timeout { key });
                    }
                }
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.remove(0))
        }
    }

    /// Takes everything queued for sending.
    pub fn drain_transmits(&mut self) -> std::vec::Drain<'_, Transmit> {
        self.out.drain(..)
    }

    pub fn poll_outcome(&mut self) -> Option<ClientOutcome> {
        self.outcomes.pop()
    }

    pub fn server_count(&self) -> usize {
        self.server.len()
    }
}

/// True when a response from `from` may answer a request sent to `to`:
/// same transport, address and port (for TCP the connection's remote
/// address, which is where the request went).
pub fn answers_from(to: &Peer, from: &Peer) -> bool {
    to.transport == from.transport && to.addr == from.addr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Transmit {
        Transmit {
            peer: Peer::udp("192.0.2.1:5060".parse().unwrap()),
            data: b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
        }
    }

    #[test]
    fn completed_transactions_make_room_and_waiting_ones_fill_the_table() {
        let mut x = Transactions::new();
        for i in 0..MAX_SERVER {
            let k = format!("done{i}");
            assert!(x.begin_server(0, &k, false));
            x.respond(0, &k, t(), 200);
        }
        // Completed ones are evicted, oldest first.
        for i in 0..MAX_SERVER {
            assert!(x.begin_server(1, &format!("wait{i}"), true), "{i}");
        }
        assert_eq!(x.server_count(), MAX_SERVER);
        assert_eq!(
            x.on_request(1, "done0", Some(Method::Register)),
            ServerMatch::New
        );
        // Every slot waits for an answer: no room.
        assert!(!x.begin_server(2, "one-more", true));
        x.respond(3, "wait0", t(), 486);
        assert!(x.begin_server(3, "one-more", true));
    }

    #[test]
    fn a_response_from_another_address_does_not_end_a_client_transaction() {
        let mut x = Transactions::new();
        x.send_request(0, "b1", t(), 32_000);
        let mut evil = t().peer;
        evil.addr = "203.0.113.9:5060".parse().unwrap();
        assert!(!x.on_response("b1", 200, &evil));
        assert!(x.poll_outcome().is_none());
        assert!(x.on_response("b1", 200, &t().peer));
        assert!(x.poll_outcome().is_some());
    }
}
