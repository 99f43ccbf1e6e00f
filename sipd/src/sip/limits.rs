//! Per-device limits on trunk calls, the brake on toll fraud through a
//! stolen device password: at most `max_concurrent` calls through the trunk
//! at once and `max_per_hour` started in any hour. Pure: the core passes the
//! time and the number of the device's calls in progress. Emergency calls are
//! never counted nor refused (the core does not ask for them).

use proto::types::DeviceId;
use std::collections::{HashMap, VecDeque};

/// The length of the sliding window of `max_per_hour`.
pub const HOUR_MS: u64 = 3_600_000;

/// The limits in force; 0 = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallLimits {
    pub max_concurrent: u32,
    pub max_per_hour: u32,
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// The device has this many trunk calls in progress.
    Concurrent(u32),
    /// The device started this many trunk calls in the last hour.
    PerHour(u32),
}

impl Hit {
    /// The `security_events.kind` and admin alert code.
    pub fn kind(self) -> &'static str {
        match self {
            Hit::Concurrent(_) => "call_limit_concurrent",
            Hit::PerHour(_) => "call_limit_hourly",
        }
    }

    /// The text of the 403's Warning and of the event.
    pub fn text(self) -> String {
        match self {
            Hit::Concurrent(n) => format!("limit of {n} concurrent outside calls reached"),
            Hit::PerHour(n) => format!("limit of {n} outside calls per hour reached"),
        }
    }
}

/// What the limits decided about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on; the call is counted.
    Allow,
    /// Refuse; `alert` = the admins have not been told about this device
    /// within the last hour, so tell them now.
    Refuse { hit: Hit, alert: bool },
}

/// The trunk calls each device started recently.
#[derive(Debug, Default)]
pub struct Limiter {
    started: HashMap<DeviceId, VecDeque<u64>>,
    alerted: HashMap<DeviceId, u64>,
}

impl Limiter {
    /// Decides a trunk call of `device` at `now` (ms) while it has `active`
    /// trunk calls in progress, and counts it when allowed. Refused calls
    /// are not counted, so a device stops being refused an hour after its
    /// last call that went through.
    pub fn check(
        &mut self,
        limits: CallLimits,
        device: DeviceId,
        now: u64,
        active: usize,
    ) -> Verdict {
        let started = self.started.entry(device).or_default();
        while started
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= HOUR_MS)
        {
            started.pop_front();
        }
        let hit = if limits.max_concurrent > 0 && active >= limits.max_concurrent as usize {
            Some(Hit::Concurrent(limits.max_concurrent))
        } else if limits.max_per_hour > 0 && started.len() >= limits.max_per_hour as usize {
            Some(Hit::PerHour(limits.max_per_hour))
        } else {
            None
        };
        let Some(hit) = hit else {
            if limits.max_per_hour > 0 {
                started.push_back(now);
            }
            return Verdict::Allow;
        };
        let alert = self
            .alerted
            .get(&device)
            .is_none_or(|t| now.saturating_sub(*t) >= HOUR_MS);
        if alert {
            self.alerted.insert(device, now);
        }
        Verdict::Refuse { hit, alert }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: CallLimits = CallLimits {
        max_concurrent: 2,
        max_per_hour: 3,
    };

    #[test]
    fn the_call_after_the_hourly_limit_is_refused_and_alerts_once() {
        let mut l = Limiter::default();
        for t in [0, 1_000, 2_000] {
            assert_eq!(l.check(L, DeviceId(7), t, 0), Verdict::Allow);
        }
        assert_eq!(
            l.check(L, DeviceId(7), 3_000, 0),
            Verdict::Refuse {
                hit: Hit::PerHour(3),
                alert: true
            }
        );
        assert_eq!(
            l.check(L, DeviceId(7), 4_000, 0),
            Verdict::Refuse {
                hit: Hit::PerHour(3),
                alert: false
            }
        );
        // Another device is not affected.
        assert_eq!(l.check(L, DeviceId(8), 4_000, 0), Verdict::Allow);
    }

    #[test]
    fn the_window_slides_an_hour_after_the_first_call() {
        let mut l = Limiter::default();
        for t in [0, 1_000, 2_000] {
            assert_eq!(l.check(L, DeviceId(7), t, 0), Verdict::Allow);
        }
        assert!(matches!(
            l.check(L, DeviceId(7), HOUR_MS - 1, 0),
            Verdict::Refuse { .. }
        ));
        assert_eq!(l.check(L, DeviceId(7), HOUR_MS, 0), Verdict::Allow);
        assert!(matches!(
            l.check(L, DeviceId(7), HOUR_MS + 1, 0),
            Verdict::Refuse { .. }
        ));
    }

    #[test]
    fn concurrent_calls_are_limited_by_what_is_in_progress() {
        let mut l = Limiter::default();
        assert_eq!(l.check(L, DeviceId(7), 0, 1), Verdict::Allow);
        assert_eq!(
            l.check(L, DeviceId(7), 0, 2),
            Verdict::Refuse {
                hit: Hit::Concurrent(2),
                alert: true
            }
        );
    }

    #[test]
    fn zero_means_no_limit() {
        let mut l = Limiter::default();
        for t in 0..1_000 {
            assert_eq!(
                l.check(CallLimits::default(), DeviceId(7), t, 500),
                Verdict::Allow
            );
        }
    }

    #[test]
    fn the_admins_are_alerted_again_an_hour_after_the_last_alert() {
        let mut l = Limiter::default();
        let one = CallLimits {
            max_concurrent: 0,
            max_per_hour: 1,
        };
        assert_eq!(l.check(one, DeviceId(7), 0, 0), Verdict::Allow);
        assert!(matches!(
            l.check(one, DeviceId(7), 10, 0),
            Verdict::Refuse { alert: true, .. }
        ));
        assert_eq!(l.check(one, DeviceId(7), HOUR_MS, 0), Verdict::Allow);
        assert!(matches!(
            l.check(one, DeviceId(7), HOUR_MS + 5, 0),
            Verdict::Refuse { alert: false, .. }
        ));
        assert!(matches!(
            l.check(one, DeviceId(7), HOUR_MS + 10, 0),
            Verdict::Refuse { alert: true, .. }
        ));
    }
}
