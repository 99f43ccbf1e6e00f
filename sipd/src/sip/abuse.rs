//! Failed-authentication counting per source address and bans: past
//! `threshold` failures within `window` an address is ignored for
//! `duration`. Banned traffic is dropped before parsing. The trunk's
//! signalling addresses are exempt: a source address can be forged, and a
//! ban on Twilio would cut off every inbound call.
//!
//! Also a budget of digest challenges per source: a challenge goes to
//! whatever address a request claims to come from, so past
//! [`CHALLENGE_BUDGET`] challenges that nobody answered within
//! [`CHALLENGE_WINDOW_MS`] a source gets no more until the window ends.
//! A source that answers proves it reads what it is sent, and each answer
//! earns it room for one more challenge in flight (up to
//! [`EARNED_BUDGET_MAX`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Thresholds, from the `sip.ban_*` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanPolicy {
    pub threshold: u32,
    pub window_ms: u64,
    pub duration_ms: u64,
}

impl Default for BanPolicy {
    fn default() -> Self {
        Self {
            threshold: 10,
            window_ms: 60_000,
            duration_ms: 900_000,
        }
    }
}

/// Unanswered challenges one source may get per window. A busy office
/// behind one NAT address answers its challenges, which gives the budget
/// back; a forged source never does.
pub const CHALLENGE_BUDGET: u32 = 200;
pub const CHALLENGE_WINDOW_MS: u64 = 10_000;
/// Most extra challenges a source earns by answering them (answers in this
/// window and the one before count). Many phones behind one address have
/// as many challenges in flight as they start registrations in the time a
/// challenge takes to come back answered: a few milliseconds at a phone's
/// rate, hundreds at thousands of registrations a second. A forged source
/// answers none and stays at [`CHALLENGE_BUDGET`].
pub const EARNED_BUDGET_MAX: u32 = 1_800;

/// One source's challenges in the current window.
#[derive(Debug, Clone, Copy)]
struct Challenges {
    start: u64,
    /// Sent in this window and not answered.
    unanswered: u32,
    /// Answered in this window.
    answered: u32,
    /// Answered in the window before (when it was the one just before).
    earned: u32,
}

impl Challenges {
    fn new(start: u64) -> Self {
        Self {
            start,
            unanswered: 0,
            answered: 0,
            earned: 0,
        }
    }

    fn budget(&self) -> u32 {
        CHALLENGE_BUDGET
            + self
                .answered
                .saturating_add(self.earned)
                .min(EARNED_BUDGET_MAX)
    }
}

#[derive(Debug, Default)]
pub struct Abuse {
    pub policy: BanPolicy,
    failures: HashMap<IpAddr, VecDeque<u64>>,
    bans: HashMap<IpAddr, u64>,
    /// Never banned, never out of challenges (the trunk).
    exempt: Vec<IpAddr>,
    /// Per source: its challenges this window.
    challenges: HashMap<IpAddr, Challenges>,
}

impl Abuse {
    pub fn new(policy: BanPolicy) -> Self {
        Self {
            policy,
            ..Default::default()
        }
    }

    pub fn with_exempt(policy: BanPolicy, exempt: Vec<IpAddr>) -> Self {
        Self {
            policy,
            exempt,
            ..Default::default()
        }
    }

    /// Sets the addresses that are never banned; lifts their bans.
    pub fn set_exempt(&mut self, ips: Vec<IpAddr>) {
        for ip in &ips {
            self.bans.remove(ip);
            self.failures.remove(ip);
            self.challenges.remove(ip);
        }
        self.exempt = ips;
    }

    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        self.exempt.contains(&ip)
    }

    pub fn is_banned(&self, ip: IpAddr, now: u64) -> bool {
        self.bans.get(&ip).is_some_and(|&until| until > now)
    }

    /// Counts one failure; true when it started a ban.
    pub fn record_failure(&mut self, ip: IpAddr, now: u64) -> bool {
        if self.is_banned(ip, now) || self.policy.threshold == 0 || self.is_exempt(ip) {
            return false;
        }
        let q = self.failures.entry(ip).or_default();
        q.push_back(now);
        while q
            .front()
            .is_some_and(|&t| now.saturating_sub(t) > self.policy.window_ms)
        {
            q.pop_front();
        }
        if q.len() >= self.policy.threshold as usize {
            self.failures.remove(&ip);
            self.bans.insert(ip, now + self.policy.duration_ms);
            return true;
        }
        false
    }

    /// Takes one challenge from `ip`'s budget; false when it has none left.
    pub fn take_challenge(&mut self, ip: IpAddr, now: u64) -> bool {
        if self.is_exempt(ip) {
            return true;
        }
        let c = self
            .challenges
            .entry(ip)
            .or_insert_with(|| Challenges::new(now));
        let age = now.saturating_sub(c.start);
        if age >= CHALLENGE_WINDOW_MS {
            let mut next = Challenges::new(now);
            if age < 2 * CHALLENGE_WINDOW_MS {
                next.earned = c.answered;
            }
            *c = next;
        }
        if c.unanswered >= c.budget() {
            return false;
        }
        c.unanswered += 1;
        true
    }

    /// `ip` answered a challenge it was sent: it is no forged source.
    pub fn challenge_answered(&mut self, ip: IpAddr) {
        if let Some(c) = self.challenges.get_mut(&ip) {
            c.unanswered = c.unanswered.saturating_sub(1);
            c.answered = c.answered.saturating_add(1);
        }
    }

    /// Lifts expired bans (returned) and forgets old failures.
    pub fn sweep(&mut self, now: u64) -> Vec<IpAddr> {
        // A source's answers count into the window after theirs.
        self.challenges
            .retain(|_, c| now.saturating_sub(c.start) < 2 * CHALLENGE_WINDOW_MS);
        let window = self.policy.window_ms;
        self.failures
            .retain(|_, q| q.back().is_some_and(|&t| now.saturating_sub(t) <= window));
        let lifted: Vec<IpAddr> = self
            .bans
            .iter()
            .filter(|&(_, &until)| until <= now)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &lifted {
            self.bans.remove(ip);
        }
        lifted
    }

    /// When the next ban ends.
    pub fn next_lift(&self) -> Option<u64> {
        self.bans.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_in_a_minute_ban_the_address_for_fifteen_minutes() {
        let mut a = Abuse::new(BanPolicy::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..9 {
            assert!(!a.record_failure(ip, i * 1000));
        }
        assert!(!a.is_banned(ip, 9_000));
        assert!(a.record_failure(ip, 9_000));
        assert!(a.is_banned(ip, 9_001));
        assert!(a.sweep(9_000 + 899_999).is_empty());
        assert_eq!(a.sweep(9_000 + 900_000), vec![ip]);
        assert!(!a.is_banned(ip, 9_000 + 900_000));
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_ban() {
        let mut a = Abuse::new(BanPolicy::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..30 {
            assert!(!a.record_failure(ip, i * 7_000));
        }
        assert!(!a.is_banned(ip, 30 * 7_000));
    }

    #[test]
    fn an_exempt_address_is_never_banned_and_an_earlier_ban_is_lifted() {
        let mut a = Abuse::new(BanPolicy::default());
        let trunk: IpAddr = "198.51.100.20".parse().unwrap();
        for i in 0..10 {
            a.record_failure(trunk, i);
        }
        assert!(a.is_banned(trunk, 10));
        a.set_exempt(vec![trunk]);
        assert!(!a.is_banned(trunk, 10));
        for i in 0..100 {
            assert!(!a.record_failure(trunk, 20 + i));
        }
        assert!(!a.is_banned(trunk, 200));
    }

    #[test]
    fn unanswered_challenges_run_out_per_source_until_the_window_ends() {
        let mut a = Abuse::new(BanPolicy::default());
        let victim: IpAddr = "203.0.113.5".parse().unwrap();
        let phone: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..CHALLENGE_BUDGET {
            assert!(a.take_challenge(victim, 0));
        }
        assert!(!a.take_challenge(victim, 1));
        // A source that answers its challenges keeps its budget.
        for _ in 0..CHALLENGE_BUDGET * 3 {
            assert!(a.take_challenge(phone, 1));
            a.challenge_answered(phone);
        }
        assert!(a.take_challenge(victim, CHALLENGE_WINDOW_MS));
        // Each answer earned the phone one more challenge in flight, and
        // the earnings carry into the next window (not the one after).
        for (start, room) in [
            (1, 600),
            (CHALLENGE_WINDOW_MS + 1, 600),
            (3 * CHALLENGE_WINDOW_MS, 0),
        ] {
            let mut sent = 0;
            while a.take_challenge(phone, start) {
                sent += 1;
            }
            assert_eq!(sent, CHALLENGE_BUDGET + room, "window from {start}");
        }
        // Never more than EARNED_BUDGET_MAX extra, however many answers.
        for _ in 0..EARNED_BUDGET_MAX * 2 {
            a.challenge_answered(phone);
            assert!(a.take_challenge(phone, 3 * CHALLENGE_WINDOW_MS + 1));
        }
        // 200 in flight, 3,600 answered: room for 1,800 more, not 3,600.
        let mut sent = 0;
        while a.take_challenge(phone, 3 * CHALLENGE_WINDOW_MS + 2) {
            sent += 1;
        }
        assert_eq!(sent, EARNED_BUDGET_MAX);
        // The phone's answers earned the victim nothing: one sent at the
        // window's start, 199 to go.
        let mut sent = 0;
        while a.take_challenge(victim, CHALLENGE_WINDOW_MS + 1) {
            sent += 1;
        }
        assert_eq!(sent, CHALLENGE_BUDGET - 1);
        a.set_exempt(vec![victim]);
        for _ in 0..CHALLENGE_BUDGET * 2 {
            assert!(a.take_challenge(victim, CHALLENGE_WINDOW_MS));
        }
    }
}
