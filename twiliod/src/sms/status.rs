//! Message status order. Twilio's status callbacks can arrive late, twice or
//! out of order (CONTRACT.md §2.8), so a status only ever moves forward:
//! `accepted/scheduled < queued < sending < sent < delivered | undelivered |
//! failed | canceled < read`. Final states do not replace each other, so a
//! late `undelivered` never overwrites `delivered`.

/// Where a status sits in the life of an outbound message; `None` for a word
/// Twilio does not document (ignored, never stored).
pub fn rank(status: &str) -> Option<u8> {
    Some(match status {
        "accepted" | "scheduled" => 0,
        "queued" => 1,
        "sending" => 2,
        "sent" => 3,
        "partially_delivered" => 4,
        "delivered" | "undelivered" | "failed" | "canceled" => 5,
        "read" => 6,
        "receiving" | "received" => 5,
        _ => return None,
    })
}

/// Whether a stored status `current` may become `next`.
pub fn advances(current: &str, next: &str) -> bool {
    match (rank(current), rank(next)) {
        (_, None) => false,
        // A row in a state we do not know (should not happen) takes any known one.
        (None, Some(_)) => true,
        (Some(c), Some(n)) => {
            // `read` follows `delivered` only: an undelivered or failed
            // message cannot have been read.
            if next == "read" {
                return !matches!(current, "undelivered" | "failed" | "canceled" | "read");
            }
            n > c
        }
    }
}

/// Whether the status is final for delivery (nothing more to send).
pub fn is_final(status: &str) -> bool {
    matches!(
        status,
        "delivered" | "undelivered" | "failed" | "canceled" | "read"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_move_only_forward() {
        assert!(advances("queued", "sending"));
        assert!(advances("queued", "sent"));
        assert!(advances("sent", "delivered"));
        assert!(advances("delivered", "read"));
        assert!(!advances("delivered", "sent"));
        assert!(!advances("sent", "queued"));
        assert!(!advances("sent", "sent"));
    }

    #[test]
    fn final_states_never_replace_each_other() {
        assert!(!advances("delivered", "undelivered"));
        assert!(!advances("failed", "delivered"));
        assert!(!advances("undelivered", "read"));
        assert!(!advances("failed", "read"));
    }

    #[test]
    fn unknown_words_are_ignored() {
        assert!(!advances("queued", "exploded"));
        assert!(advances("mystery", "sent"));
    }
}
