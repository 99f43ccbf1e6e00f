//! RFC 4733 telephone-event detection: one digit per key press.
//!
//! An event is sent as several packets sharing one RTP timestamp (the
//! event's start), the last three with the E bit; a digit is reported on the
//! first packet of a new timestamp, so retransmitted end packets and the
//! growing-duration updates are not counted again.

/// Tracks the telephone-event stream of one leg.
#[derive(Debug, Clone, Default)]
pub struct DtmfDetector {
    last_ts: Option<u32>,
}

impl DtmfDetector {
    /// Feeds one telephone-event payload; returns the digit when a new key
    /// press starts.
    pub fn on_event(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        if payload.len() < 4 || self.last_ts == Some(timestamp) {
            return None;
        }
        self.last_ts = Some(timestamp);
        digit(payload[0])
    }
}

/// RFC 4733 section 3.2 event codes 0-15.
pub fn digit(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => char::from(b'0' + event),
        10 => '*',
        11 => '#',
        12..=15 => char::from(b'A' + event - 12),
        _ => return None,
    })
}

/// Builds a telephone-event payload (tests and tools).
pub fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [event, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_press_with_updates_and_three_end_packets_is_one_digit() {
        let mut d = DtmfDetector::default();
        let mut got = Vec::new();
        for (ts, ev, end, dur) in [
            (1000u32, 10u8, false, 160u16),
            (1000, 10, false, 320),
            (1000, 10, true, 480),
            (1000, 10, true, 480),
            (1000, 10, true, 480),
            (2600, 1, false, 160),
            (2600, 1, true, 320),
            (2600, 1, true, 320),
        ] {
            got.extend(d.on_event(ts, &payload(ev, end, dur)));
        }
        assert_eq!(got, vec!['*', '1']);
    }

    #[test]
    fn the_same_digit_twice_is_two_presses_and_flash_or_short_payloads_are_ignored() {
        let mut d = DtmfDetector::default();
        assert_eq!(d.on_event(10, &payload(5, false, 160)), Some('5'));
        assert_eq!(d.on_event(900, &payload(5, false, 160)), Some('5'));
        assert_eq!(d.on_event(1800, &payload(16, false, 160)), None);
        assert_eq!(d.on_event(2700, &[1, 2]), None);
        assert_eq!(digit(11), Some('#'));
        assert_eq!(digit(15), Some('D'));
    }
}
