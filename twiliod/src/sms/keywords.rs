//! Twilio's standard opt-out keywords. Twilio acts on them itself (it answers
//! the sender and refuses later sends with error 21610 after STOP); GoSIP
//! mirrors the opt-out state and never auto-replies to these messages.
//!
//! Twilio matches a message whose whole body, trimmed and case-insensitive, is
//! one of the words (support article "Twilio support for opt-out keywords").

/// What an inbound message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, OPTOUT, REVOKE.
    OptOut,
    /// START, YES, UNSTOP.
    OptIn,
    /// HELP, INFO.
    Help,
}

/// Classifies a message body.
pub fn classify(body: &str) -> Option<Keyword> {
    let word = body
        .trim()
        .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
        .to_ascii_uppercase();
    match word.as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "OPTOUT" | "REVOKE" => {
            Some(Keyword::OptOut)
        }
        "START" | "YES" | "UNSTOP" => Some(Keyword::OptIn),
        "HELP" | "INFO" => Some(Keyword::Help),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_body_keywords_are_recognised_in_any_case() {
        assert_eq!(classify("STOP"), Some(Keyword::OptOut));
        assert_eq!(classify("  stop. "), Some(Keyword::OptOut));
        assert_eq!(classify("Unsubscribe"), Some(Keyword::OptOut));
        assert_eq!(classify("start"), Some(Keyword::OptIn));
        assert_eq!(classify("HELP"), Some(Keyword::Help));
    }

    #[test]
    fn keywords_inside_a_sentence_are_not_opt_outs() {
        assert_eq!(classify("please stop by later"), None);
        assert_eq!(classify("stopwatch"), None);
        assert_eq!(classify(""), None);
    }
}
