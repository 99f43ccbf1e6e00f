//! The RTP port pool: even ports of `GOSIP_RTP_PORTS` (RTCP is port + 1,
//! RFC 3550 section 11), handed out in pairs (A-leg, B-leg) and returned on
//! release. Free ports are reused least-recently-released first, so a port a
//! finished call used keeps its distance from the next call (late packets of
//! the old call do not land in the new one) and a port that some other
//! process holds rotates to the back after a failed bind.

use std::collections::{HashSet, VecDeque};

/// Why the pool cannot answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    /// The range text is not `LOW-HIGH` with LOW <= HIGH.
    #[error("bad RTP port range {0:?}: want LOW-HIGH, e.g. 10000-10999")]
    BadRange(String),
    /// The range holds no even port whose RTCP port + 1 is also inside it.
    #[error("RTP port range {0:?} holds no RTP/RTCP port pair")]
    Empty(String),
    /// Every pair is in use.
    #[error("RTP ports exhausted: all {0} ports in use")]
    Exhausted(usize),
}

/// Even RTP ports of a range, free or in use.
#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
    used: HashSet<u16>,
}

impl PortPool {
    /// A pool over `"LOW-HIGH"` (inclusive); a single port `"N"` is a range
    /// of one.
    pub fn parse(range: &str) -> Result<Self, PoolError> {
        let bad = || PoolError::BadRange(range.to_owned());
        let (lo, hi) = match range.trim().split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (range.trim(), range.trim()),
        };
        let lo: u16 = lo.parse().map_err(|_| bad())?;
        let hi: u16 = hi.parse().map_err(|_| bad())?;
        if lo > hi || lo == 0 {
            return Err(bad());
        }
        let first = lo + (lo % 2);
        let free: VecDeque<u16> = (u32::from(first)..u32::from(hi))
            .step_by(2)
            .filter_map(|p| u16::try_from(p).ok())
            .collect();
        if free.is_empty() {
            return Err(PoolError::Empty(range.to_owned()));
        }
        Ok(Self {
            free,
            used: HashSet::new(),
        })
    }

    /// Takes one even RTP port.
    pub fn allocate(&mut self) -> Result<u16, PoolError> {
        let port = self
            .free
            .pop_front()
            .ok_or(PoolError::Exhausted(self.used.len()))?;
        self.used.insert(port);
        Ok(port)
    }

    /// Takes two ports, one per leg; on exhaustion nothing is taken.
    pub fn allocate_pair(&mut self) -> Result<(u16, u16), PoolError> {
        if self.free.len() < 2 {
            return Err(PoolError::Exhausted(self.used.len()));
        }
        Ok((self.allocate()?, self.allocate()?))
    }

    /// Returns a port; unknown or already free ports are ignored.
    pub fn release(&mut self, port: u16) {
        if self.used.remove(&port) {
            self.free.push_back(port);
        }
    }

    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    pub fn used_count(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_yields_even_ports_whose_rtcp_port_fits() {
        let p = PortPool::parse("10000-10009").unwrap();
        assert_eq!(
            p.free.iter().copied().collect::<Vec<_>>(),
            vec![10000, 10002, 10004, 10006, 10008]
        );
        let p = PortPool::parse("10001-10004").unwrap();
        assert_eq!(p.free.iter().copied().collect::<Vec<_>>(), vec![10002]);
        assert_eq!(PortPool::parse("10000-10999").unwrap().free_count(), 500);
    }

    #[test]
    fn bad_and_empty_ranges_are_errors() {
        assert!(matches!(
            PortPool::parse("abc"),
            Err(PoolError::BadRange(_))
        ));
        assert!(matches!(
            PortPool::parse("20-10"),
            Err(PoolError::BadRange(_))
        ));
        assert!(matches!(PortPool::parse("10000"), Err(PoolError::Empty(_))));
        assert!(matches!(
            PortPool::parse("65534-65535"),
            Ok(PortPool { .. })
        ));
    }

    #[test]
    fn exhaustion_is_an_error_and_release_makes_room() {
        let mut p = PortPool::parse("10000-10007").unwrap();
        let (a, b) = p.allocate_pair().unwrap();
        let (c, d) = p.allocate_pair().unwrap();
        assert_eq!(
            [a, b, c, d].into_iter().collect::<HashSet<_>>().len(),
            4,
            "ports are distinct"
        );
        assert_eq!(p.allocate_pair(), Err(PoolError::Exhausted(4)));
        p.release(a);
        assert_eq!(p.allocate_pair(), Err(PoolError::Exhausted(3)));
        p.release(b);
        assert_eq!(p.allocate_pair().unwrap(), (a, b));
    }

    #[test]
    fn released_ports_go_to_the_back_and_double_release_is_harmless() {
        let mut p = PortPool::parse("10000-10009").unwrap();
        let first = p.allocate().unwrap();
        p.release(first);
        p.release(first);
        p.release(12345);
        assert_eq!(p.free_count(), 5);
        assert_eq!(p.used_count(), 0);
        assert_ne!(p.allocate().unwrap(), first);
    }
}
