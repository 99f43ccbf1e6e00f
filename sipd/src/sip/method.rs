//! SIP request methods as a closed set, so the core dispatches on a value
//! the compiler checks instead of comparing strings.

use std::fmt;

/// A SIP request method sipd recognises.
///
/// sipd serves INVITE, ACK, CANCEL, BYE, OPTIONS and REGISTER (RFC 3261),
/// UPDATE (RFC 3311), INFO (RFC 6086) and SUBSCRIBE (RFC 6665, for message
/// waiting). It only knows NOTIFY (RFC 6665), MESSAGE (RFC 3428), PRACK
/// (RFC 3262), REFER (RFC 3515) and PUBLISH (RFC 3903): they are answered
/// 405 with the Allow list rather than the 501 an unknown method gets
/// (RFC 3261 section 8.2.1). NOTIFY is also the method of the requests
/// sipd sends for SUBSCRIBE.
///
/// An extension method outside this set has no value here: it stays text
/// and only ever reaches the 501 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Cancel,
    Bye,
    Options,
    Register,
    Update,
    Info,
    Subscribe,
    Notify,
    Message,
    Prack,
    Refer,
    Publish,
}

impl Method {
    /// The method named `s`, matched exactly: method names are
    /// case-sensitive (RFC 3261 section 7.1), so `invite` is an unknown
    /// extension method, not INVITE.
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "CANCEL" => Method::Cancel,
            "BYE" => Method::Bye,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "UPDATE" => Method::Update,
            "INFO" => Method::Info,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "MESSAGE" => Method::Message,
            "PRACK" => Method::Prack,
            "REFER" => Method::Refer,
            "PUBLISH" => Method::Publish,
            _ => return None,
        })
    }

    /// The name as it goes on the wire (Request-Line, CSeq, Allow).
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Cancel => "CANCEL",
            Method::Bye => "BYE",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Message => "MESSAGE",
            Method::Prack => "PRACK",
            Method::Refer => "REFER",
            Method::Publish => "PUBLISH",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Method; 14] = [
        Method::Invite,
        Method::Ack,
        Method::Cancel,
        Method::Bye,
        Method::Options,
        Method::Register,
        Method::Update,
        Method::Info,
        Method::Subscribe,
        Method::Notify,
        Method::Message,
        Method::Prack,
        Method::Refer,
        Method::Publish,
    ];

    #[test]
    fn every_method_parses_back_from_its_name() {
        for m in ALL {
            assert_eq!(Method::parse(m.as_str()), Some(m));
            assert_eq!(m.to_string(), m.as_str());
        }
    }

    #[test]
    fn names_are_case_sensitive_and_exact() {
        assert_eq!(Method::parse("invite"), None);
        assert_eq!(Method::parse("Bye"), None);
        assert_eq!(Method::parse(" ACK"), None);
        assert_eq!(Method::parse("INVITEX"), None);
        assert_eq!(Method::parse(""), None);
        assert_eq!(Method::parse("FOO"), None);
    }
}
