//! Failed-authentication counting per source address and bans (issue 3
//! "Abuse"): past `threshold` failures within `window` an address is ignored
//! for `duration`. Banned traffic is dropped before parsing.

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

#[derive(Debug, Default)]
pub struct Abuse {
    pub policy: BanPolicy,
    failures: HashMap<IpAddr, VecDeque<u64>>,
    bans: HashMap<IpAddr, u64>,
}

impl Abuse {
    pub fn new(policy: BanPolicy) -> Self {
        Self {
            policy,
            ..Default::default()
        }
    }

    pub fn is_banned(&self, ip: IpAddr, now: u64) -> bool {
        self.bans.get(&ip).is_some_and(|&until| until > now)
    }

    /// Counts one failure; true when it started a ban.
    pub fn record_failure(&mut self, ip: IpAddr, now: u64) -> bool {
        if self.is_banned(ip, now) || self.policy.threshold == 0 {
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

    /// Lifts expired bans (returned) and forgets old failures.
    pub fn sweep(&mut self, now: u64) -> Vec<IpAddr> {
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
}
