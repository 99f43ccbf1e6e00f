//! What names a transaction (RFC 3261 section 17.2.3 for the ones sipd
//! serves; its own branch for the ones it starts).

use crate::sip::method::Method;

/// The RFC 3261 magic cookie that starts every compliant branch.
const MAGIC_COOKIE: &str = "z9hG4bK";

/// A transaction's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TsxKey {
    /// A request with an RFC 3261 branch: the branch, the top Via's
    /// sent-by (a forged request from elsewhere with the same branch is
    /// another transaction) and the method, ACK counting as the INVITE it
    /// acknowledges.
    Branch {
        branch: String,
        sent_by: String,
        method: String,
    },
    /// The RFC 2543 fallback for a branch without the magic cookie: the
    /// Call-ID, the CSeq number, the From tag, sent-by and the method.
    Rfc2543 {
        call_id: String,
        cseq: u32,
        from_tag: String,
        sent_by: String,
        method: String,
    },
    /// A request sipd sent: its own (unique) branch.
    Client(String),
}

impl TsxKey {
    /// The key of the server transaction a request belongs to. `method` is
    /// the name as the Request-Line has it: an extension method gets its
    /// own transactions as well.
    pub fn server(
        branch: &str,
        sent_by: &str,
        method: &str,
        call_id: &str,
        cseq: u32,
        from_tag: &str,
    ) -> TsxKey {
        let method = if Method::parse(method) == Some(Method::Ack) {
            Method::Invite.as_str()
        } else {
            method
        };
        if branch.starts_with(MAGIC_COOKIE) {
            TsxKey::Branch {
                branch: branch.to_string(),
                sent_by: sent_by.to_string(),
                method: method.to_string(),
            }
        } else {
            TsxKey::Rfc2543 {
                call_id: call_id.to_string(),
                cseq,
                from_tag: from_tag.to_string(),
                sent_by: sent_by.to_string(),
                method: method.to_string(),
            }
        }
    }

    /// The same request's key for another method: a CANCEL's key names
    /// the INVITE it cancels this way (RFC 3261 section 9.2: same branch,
    /// same sent-by).
    pub fn with_method(&self, m: Method) -> TsxKey {
        let mut k = self.clone();
        match &mut k {
            TsxKey::Branch { method, .. } | TsxKey::Rfc2543 { method, .. } => {
                *method = m.as_str().to_string();
            }
            TsxKey::Client(_) => {}
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_belongs_to_its_invite_and_a_cancel_names_it() {
        let invite = TsxKey::server("z9hG4bK1", "h:5060", "INVITE", "c", 1, "t");
        let ack = TsxKey::server("z9hG4bK1", "h:5060", "ACK", "c", 1, "t");
        let cancel = TsxKey::server("z9hG4bK1", "h:5060", "CANCEL", "c", 1, "t");
        assert_eq!(ack, invite);
        assert_ne!(cancel, invite);
        assert_eq!(cancel.with_method(Method::Invite), invite);
        let elsewhere = TsxKey::server("z9hG4bK1", "evil:5060", "INVITE", "c", 1, "t");
        assert_ne!(elsewhere, invite, "sent-by is part of the key");
    }

    #[test]
    fn a_branch_without_the_magic_cookie_falls_back_to_rfc_2543() {
        let a = TsxKey::server("old1", "h:5060", "REGISTER", "c", 7, "t");
        assert!(matches!(a, TsxKey::Rfc2543 { cseq: 7, .. }));
        assert_ne!(a, TsxKey::server("old1", "h:5060", "REGISTER", "c", 8, "t"));
    }
}
