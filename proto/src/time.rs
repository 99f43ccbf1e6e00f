//! Timestamps as stored in SQLite and shown by the API: ISO 8601 UTC with
//! milliseconds and a `Z`, a fixed width so text order is time order.

use chrono::{DateTime, SecondsFormat, Utc};

/// Formats a time the way every table stores it.
pub fn fmt(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The current time in storage format.
pub fn now() -> String {
    fmt(Utc::now())
}

/// Parses a stored or API timestamp (any RFC 3339 form).
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_sort_as_text_in_time_order() {
        let a = fmt(DateTime::from_timestamp(1_700_000_000, 5_000_000).unwrap());
        let b = fmt(DateTime::from_timestamp(1_700_000_001, 0).unwrap());
        assert_eq!(a, "2023-11-14T22:13:20.005Z");
        assert!(a < b);
        assert_eq!(parse(&a).map(fmt), Some(a));
    }
}
