//! RFC 3261 section 17 transactions as plain state, one file per kind
//! (`server.rs`, `client.rs`) around one deadline heap (here): server transactions
//! absorb request retransmissions and re-send the last response (non-INVITE:
//! Timer J; INVITE non-2xx: Timers G/H/I), client non-INVITE transactions
//! retransmit on Timer E until a final response or Timer F. Timers fire
//! from [`Transactions::handle_timeout`] with the caller's `now`.
//!
//! The requests the B2BUA sends a leg and waits on itself (B-leg INVITEs,
//! requests relayed inside a call), and the 2xx it re-sends as a UAS until
//! the ACK (section 13.3.1.4, a UAS core duty rather than a transaction's),
//! keep their timers in the small types of `invite_client.rs`
//! ([`ClientTimers`]: Timers A/B or E/F) and `retransmit.rs`
//! ([`UnackedOk`]): the B2BUA holds them next to the dialog state it needs
//! when they fire, and asks them what is [`Due`].
//!
//! Server transactions are capped ([`MAX_SERVER`]): past the cap the
//! oldest completed ones (final answer sent, only absorbing
//! retransmissions) make room, and when every transaction is still waiting
//! for its answer a new request is refused.
//!
//! Memory stays flat under a flood: transactions are held by a 128-bit
//! keyed hash of their key ([`Id`]) rather than its strings, Timers J and H
//! (always 64*T1) are deadlines in the completion queue rather than heap
//! entries, and a request answered at once never gets a timer at all, so
//! nothing outlives the capped table by 32 s. Their answers share one
//! buffer of a fixed size (`answers.rs`).

mod answers;
mod client;
mod invite_client;
mod key;
mod retransmit;
mod server;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

pub use client::answers_from;
pub use invite_client::{ClientTimers, Due};
pub use key::TsxKey;
pub use retransmit::UnackedOk;

use super::Transmit;
use answers::Answers;
use client::ClientTx;
use server::ServerTx;

/// Server transactions kept at once. A registration burst completes its
/// transactions within milliseconds, so they are evicted long before this
/// matters; only requests still waiting for an answer can fill it. Each
/// completed one keeps its answer (about 700 bytes) for Timer J in a
/// buffer of [`answers::ANSWERS_BYTES`]: at 4,000 REGISTERs/s a
/// retransmission is still answered from the table a second later; at a
/// home office's rate, 32 s later (Timer J).
pub const MAX_SERVER: usize = 8_192;

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

/// A transaction as the tables hold it: a keyed 128-bit hash of its
/// [`TsxKey`] (two SipHash-1-3 with random keys), 16 bytes instead of the
/// key's strings. Nobody outside can aim a collision at keys they cannot
/// compute.
type Id = u128;

/// Every transaction of one sipd.
#[derive(Debug, Default)]
pub struct Transactions {
    hash: (RandomState, RandomState),
    /// Boxed: a full table of 8,192 under churn has 32,768 buckets
    /// (hashbrown grows past half full rather than clean its tombstones),
    /// which inline would be 4 MiB of mostly empty 128-byte slots.
    server: HashMap<Id, Box<ServerTx>>,
    client: HashMap<Id, ClientTx>,
    timers: BinaryHeap<Reverse<(u64, TimerKind, u64, Id)>>,
    /// Completed server transactions in completion order (when Timer J or
    /// H ends them, id, generation): the first to go when the table is
    /// full, and, since those timers all run 64*T1, the next to expire.
    completed: VecDeque<(u64, Id, u64)>,
    /// The last answer of each server transaction.
    answers: Answers,
    generation: u64,
    out: Vec<Transmit>,
    outcomes: Vec<ClientOutcome>,
}

impl Transactions {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_gen(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    fn id(&self, key: &TsxKey) -> Id {
        (u128::from(self.hash.0.hash_one(key)) << 64) | u128::from(self.hash.1.hash_one(key))
    }

    fn push_timer(&mut self, at: u64, kind: TimerKind, generation: u64, id: Id) {
        self.timers.push(Reverse((at, kind, generation, id)));
    }

    /// The earliest timer, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        let heap = self.timers.peek().map(|Reverse((t, ..))| *t);
        let done = self.completed.front().map(|(t, ..)| *t);
        match (heap, done) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        while let Some(&(at, id, generation)) = self.completed.front() {
            if at > now {
                break;
            }
            self.completed.pop_front();
            self.server_end(generation, id);
        }
        while let Some(Reverse((at, ..))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, kind, generation, id))) = self.timers.pop() else {
                break;
            };
            match kind {
                TimerKind::ServerEnd => self.server_end(generation, id),
                TimerKind::ServerResend => self.server_resend(now, generation, id),
                TimerKind::ClientResend => self.client_resend(now, generation, id),
                TimerKind::ClientEnd => self.client_end(generation, id),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::method::Method;
    use crate::sip::{Peer, T1, T2, T4};

    /// A server transaction's key from a branch.
    fn key(branch: &str) -> TsxKey {
        TsxKey::server(branch, "192.0.2.1:5060", "INVITE", "c", 1, "t")
    }

    fn t() -> Transmit {
        Transmit {
            peer: Peer::udp("192.0.2.1:5060".parse().unwrap()),
            data: b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
        }
    }

    #[test]
    fn a_retransmission_gets_the_stored_answer_until_newer_answers_overwrite_it() {
        let mut x = Transactions::new();
        let big = |i: usize| Transmit {
            peer: Peer::udp("192.0.2.1:5060".parse().unwrap()),
            data: format!("SIP/2.0 200 OK\r\nX: {i}\r\n{}", "a".repeat(8_000)).into_bytes(),
        };
        let n = answers::ANSWERS_BYTES / 8_000 + 10;
        for i in 0..n {
            let k = key(&format!("z9hG4bKbig{i}"));
            assert!(x.begin_server(&k, false));
            x.respond(0, &k, big(i), 200);
        }
        assert!(x.server_count() < MAX_SERVER);
        let again = |x: &mut Transactions, i: usize| {
            x.on_request(1, &key(&format!("z9hG4bKbig{i}")), Some(Method::Register))
        };
        assert_eq!(
            again(&mut x, n - 1),
            ServerMatch::Retransmit(Some(big(n - 1)))
        );
        assert_eq!(again(&mut x, 0), ServerMatch::New);
        // A 2xx to INVITE ends its transaction: nothing kept, nothing matched.
        let k = key("z9hG4bKinvite");
        assert!(x.begin_server(&k, true));
        x.respond(2, &k, t(), 200);
        assert_eq!(x.on_request(3, &k, Some(Method::Invite)), ServerMatch::New);
    }

    #[test]
    fn completed_transactions_make_room_and_waiting_ones_fill_the_table() {
        let mut x = Transactions::new();
        for i in 0..MAX_SERVER {
            let k = key(&format!("z9hG4bKdone{i}"));
            assert!(x.begin_server(&k, false));
            x.respond(0, &k, t(), 200);
        }
        // Completed ones are evicted, oldest first.
        for i in 0..MAX_SERVER {
            assert!(
                x.begin_server(&key(&format!("z9hG4bKwait{i}")), true),
                "{i}"
            );
        }
        assert_eq!(x.server_count(), MAX_SERVER);
        assert_eq!(
            x.on_request(1, &key("z9hG4bKdone0"), Some(Method::Register)),
            ServerMatch::New
        );
        // Every slot waits for an answer: no room.
        assert!(!x.begin_server(&key("z9hG4bKone-more"), true));
        x.respond(3, &key("z9hG4bKwait0"), t(), 486);
        assert!(x.begin_server(&key("z9hG4bKone-more"), true));
    }

    #[test]
    fn timer_j_ends_an_answered_request_after_64_t1_with_no_heap_timer_and_so_does_silence() {
        let mut x = Transactions::new();
        let k = TsxKey::server("z9hG4bKreg", "192.0.2.1:5060", "REGISTER", "c", 1, "t");
        assert!(x.begin_server(&k, false));
        x.respond(0, &k, t(), 200);
        assert!(x.timers.is_empty(), "answered at once: nothing on the heap");
        assert_eq!(x.poll_timeout(), Some(64 * T1));
        x.handle_timeout(64 * T1 - 1);
        assert!(matches!(
            x.on_request(64 * T1 - 1, &k, Some(Method::Register)),
            ServerMatch::Retransmit(Some(_))
        ));
        x.handle_timeout(64 * T1);
        assert_eq!(
            x.on_request(64 * T1, &k, Some(Method::Register)),
            ServerMatch::New
        );
        // A request the TU leaves unanswered ends 64*T1 later as well.
        let w = key("z9hG4bKwait");
        assert!(x.begin_server(&w, true));
        x.unanswered(100, &w);
        x.handle_timeout(100 + 64 * T1 - 1);
        assert_eq!(x.server_count(), 1);
        x.handle_timeout(100 + 64 * T1);
        assert_eq!(x.server_count(), 0);
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

    /// Runs the timers up to `until` in 100 ms steps; returns the times
    /// something was sent.
    fn sends_until(x: &mut Transactions, until: u64) -> Vec<u64> {
        let mut at = Vec::new();
        let mut now = 0;
        while now <= until {
            x.handle_timeout(now);
            if x.drain_transmits().count() > 0 {
                at.push(now);
            }
            now += 100;
        }
        at
    }

    #[test]
    fn an_invite_rejection_is_resent_on_timer_g_until_the_ack() {
        let mut x = Transactions::new();
        assert!(x.begin_server(&key("z9hG4bKinv"), true));
        x.respond(0, &key("z9hG4bKinv"), t(), 486);
        assert_eq!(
            x.drain_transmits().count(),
            1,
            "the answer goes out at once"
        );
        // Timer G: T1, then doubling (RFC 3261 section 17.2.1).
        assert_eq!(sends_until(&mut x, 3_600), vec![500, 1_500, 3_500]);
        assert_eq!(
            x.on_request(3_600, &key("z9hG4bKinv"), Some(Method::Ack)),
            ServerMatch::AckAbsorbed
        );
        assert!(sends_until(&mut x, 20_000).is_empty(), "the ACK stops it");
        // Timer I (T4 on UDP) then forgets the transaction.
        x.handle_timeout(3_600 + T4);
        assert_eq!(x.server_count(), 0);
    }

    #[test]
    fn a_digest_challenge_to_an_invite_is_not_resent_so_sipd_amplifies_nothing() {
        let mut x = Transactions::new();
        assert!(x.begin_server(&key("z9hG4bKinv"), true));
        x.respond(0, &key("z9hG4bKinv"), t(), 407);
        x.drain_transmits().for_each(drop);
        assert!(sends_until(&mut x, 10_000).is_empty());
        // A retransmitted INVITE gets the stored 407 again.
        assert!(matches!(
            x.on_request(10_000, &key("z9hG4bKinv"), Some(Method::Invite)),
            ServerMatch::Retransmit(Some(_))
        ));
    }

    #[test]
    fn a_client_request_is_resent_on_timer_e_and_times_out_on_timer_f() {
        let mut x = Transactions::new();
        x.send_request(0, "opt", t(), 64 * T1);
        x.drain_transmits().for_each(drop);
        let sent = sends_until(&mut x, 64 * T1);
        // Timer E: T1, 2 T1, 4 T1, then every T2 (RFC 3261 section 17.1.2.2).
        assert_eq!(&sent[..4], &[500, 1_500, 3_500, 7_500]);
        assert!(
            sent.windows(2).skip(3).all(|w| w[1] - w[0] == T2),
            "{sent:?}"
        );
        assert_eq!(
            x.poll_outcome(),
            Some(ClientOutcome::Timeout { key: "opt".into() })
        );
    }

    #[test]
    fn a_client_request_over_tcp_is_never_resent() {
        let mut x = Transactions::new();
        let mut over_tcp = t();
        over_tcp.peer.transport = crate::sip::Transport::Tcp;
        x.send_request(0, "opt", over_tcp, 64 * T1);
        x.drain_transmits().for_each(drop);
        assert!(sends_until(&mut x, 64 * T1).is_empty());
        assert!(matches!(
            x.poll_outcome(),
            Some(ClientOutcome::Timeout { .. })
        ));
    }
}
