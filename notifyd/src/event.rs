//! The events other daemons hand to notifyd, as stored in the `jobs` table.

use proto::types::UserId;
use serde::{Deserialize, Serialize};

/// What happened. The wire names (`kind` in `NotifyRequest`, `event` in
/// webhook bodies, keys in `notify_prefs`) are the snake_case forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Voicemail,
    Sms,
    MissedCall,
    CallStarted,
    CallEnded,
    AdminAlert,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Voicemail,
        Kind::Sms,
        Kind::MissedCall,
        Kind::CallStarted,
        Kind::CallEnded,
        Kind::AdminAlert,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Voicemail => "voicemail",
            Kind::Sms => "sms",
            Kind::MissedCall => "missed_call",
            Kind::CallStarted => "call_started",
            Kind::CallEnded => "call_ended",
            Kind::AdminAlert => "admin_alert",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event as accepted by `Notify`: what, for whom (0 = the admins), the
/// event's fields, and files under the data dir to attach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: Kind,
    /// `None`: the admins (0 in the stored JSON and on the wire).
    #[serde(with = "proto::types::user_or_zero")]
    pub user_id: Option<UserId>,
    pub data: serde_json::Value,
    #[serde(default)]
    pub attachments: Vec<String>,
    /// When notifyd accepted it (storage format, see `proto::time`).
    pub created_at: String,
}

/// Why an attachment path is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PathError {
    /// Absolute paths and `..` could read any file on the host.
    #[error("attachment path must be relative to the data dir without '..': {0}")]
    Escapes(String),
}

/// Accepts only plain relative paths below the data dir.
pub fn check_attachment(path: &str) -> Result<(), PathError> {
    let p = std::path::Path::new(path);
    let ok = !path.is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(PathError::Escapes(path.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_wire_names() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        assert_eq!(Kind::parse("fax"), None);
    }

    #[test]
    fn attachment_paths_outside_the_data_dir_are_refused() {
        assert!(check_attachment("voicemails/RE1.wav").is_ok());
        assert!(check_attachment("/etc/passwd").is_err());
        assert!(check_attachment("media/../../etc/passwd").is_err());
        assert!(check_attachment("./x").is_err());
        assert!(check_attachment("").is_err());
    }
}
