//! Domain newtypes shared by the daemons: phone numbers, ids, Twilio SIDs,
//! call dispositions and directions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a value could not become a domain type; the text is shown to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// The number is not E.164 (`+` then 8 to 15 digits, no leading 0).
    #[error("must be an E.164 number such as +15551234567")]
    NotE164,
    /// The number prefix is not `+` then 1 to 15 digits (or a national one).
    #[error("must be a number prefix such as +1900 (or 1900 in the default country)")]
    NotPrefix,
    /// The SID does not have Twilio's two-letter prefix and 32 hex digits.
    #[error("must be a Twilio SID starting with {0} followed by 32 hex digits")]
    BadSid(&'static str),
    /// The text is not one of the allowed words.
    #[error("must be one of: {0}")]
    NotOneOf(&'static str),
}

/// The main region of a country calling code ("1" is the US, "44" the UK),
/// as libphonenumber names it; None for a code it does not know.
fn region_of(calling_code: &str) -> Option<phonenumber::country::Id> {
    let code: u16 = calling_code.parse().ok()?;
    let regions = phonenumber::metadata::DATABASE.by_code(&code)?;
    let main = regions
        .iter()
        .find(|m| m.is_main_country_for_code())
        .or_else(|| regions.first())?;
    main.id().parse().ok()
}

/// True when the national number has a length the country's numbers have
/// (libphonenumber's "possible" lengths): "555 1234" without an area code
/// is not a North American number.
fn possible_length(n: &phonenumber::PhoneNumber) -> bool {
    let len = n.national().to_string().len();
    let Ok(len) = u16::try_from(len) else {
        return false;
    };
    let db = &phonenumber::metadata::DATABASE;
    // The number's own region, else its calling code's main one.
    let meta = n.metadata(db).or_else(|| {
        db.by_code(&n.code().value())?
            .into_iter()
            .find(|m| m.is_main_country_for_code())
    });
    let Some(m) = meta else {
        return true;
    };
    let d = m.descriptors();
    let lengths: Vec<u16> = [
        Some(d.general()),
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ]
    .into_iter()
    .flatten()
    .flat_map(|x| x.possible_length().iter().copied())
    .collect();
    lengths.is_empty() || lengths.contains(&len)
}

/// A phone number in E.164 form, e.g. `+15551234567`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct E164(String);

impl E164 {
    /// Accepts only a strict E.164 string.
    pub fn parse(s: &str) -> Result<Self, TypeError> {
        let digits = s.strip_prefix('+').ok_or(TypeError::NotE164)?;
        let ok = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(TypeError::NotE164)
        }
    }

    /// Turns what a person dials or types into E.164 with libphonenumber's
    /// rules for the country whose calling code is `default_country`
    /// (digits only, e.g. "1" or "44"): punctuation, the country's
    /// international prefix (`011` in North America, `00` in most of the
    /// world) and its national prefix (the trunk `1`, a leading `0` where
    /// the country drops it) are read as a person means them. The number is
    /// not checked against the country's numbering plan (fictional 555
    /// numbers pass), only the E.164 shape.
    pub fn normalize(input: &str, default_country: &str) -> Result<Self, TypeError> {
        let cleaned: String = input.chars().filter(|c| !c.is_whitespace()).collect();
        if cleaned.is_empty() {
            return Err(TypeError::NotE164);
        }
        // Every region also reads `00` as international (what most of the
        // world dials), and `+` anywhere first.
        let international = cleaned
            .strip_prefix("00")
            .filter(|_| default_country == "1")
            .map(|rest| format!("+{rest}"));
        let text = international.as_deref().unwrap_or(&cleaned);
        let region = region_of(default_country);
        let number = phonenumber::parse(region, text).map_err(|_| TypeError::NotE164)?;
        if !possible_length(&number) {
            return Err(TypeError::NotE164);
        }
        Self::parse(&number.format().mode(phonenumber::Mode::E164).to_string())
    }

    /// The E.164 form (`+` and 1 to 15 digits) of the start of a number as
    /// a person types it, read like [`E164::normalize`] reads a whole
    /// number: `00`/`011` and `+` are international; otherwise the prefix is
    /// national to `default_country` (in North America a leading `1` is the
    /// trunk prefix, so `1900` and `900` both mean `+1900`; elsewhere a
    /// leading `0` is, so `0900` in "44" means `+44900`). Stored prefixes
    /// must be in this form: calls are matched against E.164 callers.
    pub fn normalize_prefix(input: &str, default_country: &str) -> Result<String, TypeError> {
        let cleaned: String = input
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\t'))
            .collect();
        let digits = if let Some(rest) = cleaned.strip_prefix('+') {
            rest.to_owned()
        } else if let Some(rest) = cleaned
            .strip_prefix("011")
            .filter(|_| default_country == "1")
        {
            rest.to_owned()
        } else if let Some(rest) = cleaned.strip_prefix("00") {
            rest.to_owned()
        } else if cleaned.is_empty() || !default_country.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TypeError::NotPrefix);
        } else if default_country == "1" {
            match cleaned.strip_prefix('1') {
                Some(rest) => format!("1{rest}"),
                None => format!("1{cleaned}"),
            }
        } else {
            format!(
                "{default_country}{}",
                cleaned.strip_prefix('0').unwrap_or(&cleaned)
            )
        };
        let ok = (1..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok {
            Ok(format!("+{digits}"))
        } else {
            Err(TypeError::NotPrefix)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without the `+`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for E164 {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for E164 {
    type Error = TypeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<E164> for String {
    fn from(n: E164) -> String {
        n.0
    }
}

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(/// Row id in `users`.
    UserId);
id_type!(/// Row id in `devices`.
    DeviceId);
id_type!(/// Row id in `dids`.
    DidId);
id_type!(/// Row id in `cdrs`.
    CdrId);
id_type!(/// Row id in `routes`.
    RouteId);

impl UserId {
    /// A user id from the wire, where 0 means none (notifyd's `Notify`:
    /// the admins; a Gotify delivery: the system's server).
    pub fn from_wire(n: i64) -> Option<UserId> {
        (n > 0).then_some(UserId(n))
    }
}

/// `Option<UserId>` kept as a plain integer, 0 for none, so stored JSON
/// and the wire keep their shape: `#[serde(with = "user_or_zero")]`.
pub mod user_or_zero {
    use super::UserId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<UserId>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(v.map_or(0, |u| u.0))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<UserId>, D::Error> {
        Ok(UserId::from_wire(i64::deserialize(d)?))
    }
}

macro_rules! sid_type {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn parse(s: &str) -> Result<Self, TypeError> {
                let ok = s.len() == 34
                    && s.starts_with($prefix)
                    && s[2..].bytes().all(|b| b.is_ascii_hexdigit());
                if ok { Ok(Self(s.to_owned())) } else { Err(TypeError::BadSid($prefix)) }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = TypeError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(s: $name) -> String {
                s.0
            }
        }
    };
}

sid_type!(/// Twilio account SID (`AC` + 32 hex).
    AccountSid, "AC");
sid_type!(/// Twilio call SID (`CA` + 32 hex).
    CallSid, "CA");
sid_type!(/// Twilio message SID (`SM` or `MM` are both used; we accept `SM`).
    MessageSid, "SM");
sid_type!(/// Twilio recording SID (`RE` + 32 hex).
    RecordingSid, "RE");
sid_type!(/// Twilio incoming phone number SID (`PN` + 32 hex).
    PhoneNumberSid, "PN");

macro_rules! word_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = TypeError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(TypeError::NotOneOf(concat!($($text, " "),+))),
                }
            }
        }
    };
}

word_enum!(/// How a call ended, as stored in `cdrs.disposition`.
Disposition {
    InProgress => "in_progress",
    Answered => "answered",
    Missed => "missed",
    Busy => "busy",
    Failed => "failed",
    Voicemail => "voicemail",
    Blocked => "blocked",
    Rejected => "rejected",
});

/// The same words on the wire (sipd's `RecordCall`).
impl From<Disposition> for crate::pb::sipd::CallDisposition {
    fn from(d: Disposition) -> Self {
        use crate::pb::sipd::CallDisposition as P;
        match d {
            Disposition::InProgress => P::InProgress,
            Disposition::Answered => P::Answered,
            Disposition::Missed => P::Missed,
            Disposition::Busy => P::Busy,
            Disposition::Failed => P::Failed,
            Disposition::Voicemail => P::Voicemail,
            Disposition::Blocked => P::Blocked,
            Disposition::Rejected => P::Rejected,
        }
    }
}

impl TryFrom<crate::pb::sipd::CallDisposition> for Disposition {
    type Error = TypeError;
    fn try_from(p: crate::pb::sipd::CallDisposition) -> Result<Self, TypeError> {
        use crate::pb::sipd::CallDisposition as P;
        Ok(match p {
            P::InProgress => Disposition::InProgress,
            P::Answered => Disposition::Answered,
            P::Missed => Disposition::Missed,
            P::Busy => Disposition::Busy,
            P::Failed => Disposition::Failed,
            P::Voicemail => Disposition::Voicemail,
            P::Blocked => Disposition::Blocked,
            P::Rejected => Disposition::Rejected,
            P::Unspecified => {
                return Err(TypeError::NotOneOf(
                    "in_progress answered missed busy failed voicemail blocked rejected",
                ));
            }
        })
    }
}

word_enum!(/// Which way a call or message went.
Direction {
    Inbound => "inbound",
    Outbound => "outbound",
    Internal => "internal",
});

word_enum!(/// Account role.
Role {
    Admin => "admin",
    User => "user",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_accepts_only_plus_and_digits() {
        assert!(E164::parse("+15551234567").is_ok());
        assert_eq!(E164::parse("15551234567"), Err(TypeError::NotE164));
        assert_eq!(E164::parse("+1555abc4567"), Err(TypeError::NotE164));
        assert_eq!(E164::parse("+0155512345"), Err(TypeError::NotE164));
        assert_eq!(E164::parse("+1234567"), Err(TypeError::NotE164));
        assert_eq!(E164::parse("+1234567890123456"), Err(TypeError::NotE164));
    }

    #[test]
    fn national_numbers_get_the_default_country() {
        let n = |s, c| E164::normalize(s, c).map(|n| n.to_string());
        assert_eq!(n("(555) 123-4567", "1"), Ok("+15551234567".into()));
        assert_eq!(n("1 555 123 4567", "1"), Ok("+15551234567".into()));
        assert_eq!(n("011 44 20 7946 0958", "1"), Ok("+442079460958".into()));
        assert_eq!(n("020 7946 0958", "44"), Ok("+442079460958".into()));
        assert_eq!(n("0044 20 7946 0958", "44"), Ok("+442079460958".into()));
        assert_eq!(n("+44 20 7946 0958", "1"), Ok("+442079460958".into()));
        assert_eq!(n("12345", "1"), Err(TypeError::NotE164));
        assert_eq!(n("", "1"), Err(TypeError::NotE164));
        // What libphonenumber's country rules add over "strip a 0": Italy
        // keeps its leading 0, Australia dials out with 0011, a German
        // number keeps its length, letters on the keypad.
        assert_eq!(n("06 6982 1234", "39"), Ok("+390669821234".into()));
        assert_eq!(n("0011 44 20 7946 0958", "61"), Ok("+442079460958".into()));
        assert_eq!(n("(02) 9374 4000", "61"), Ok("+61293744000".into()));
        assert_eq!(n("030 1234567", "49"), Ok("+49301234567".into()));
        assert_eq!(n("555-867-5309", "1"), Ok("+15558675309".into()));
        assert_eq!(n("1-800-FLOWERS", "1"), Ok("+18003569377".into()));
        assert_eq!(n("0044 20 7946 0958", "1"), Ok("+442079460958".into()));
        assert_eq!(n("call me", "1"), Err(TypeError::NotE164));
        assert_eq!(n("555 1234", "1"), Err(TypeError::NotE164));
        assert_eq!(n("+1 555 123 456", "44"), Err(TypeError::NotE164));
        // A calling code nobody has: only international numbers parse.
        assert_eq!(n("+44 20 7946 0958", "999"), Ok("+442079460958".into()));
        assert_eq!(n("020 7946 0958", "999"), Err(TypeError::NotE164));
    }

    #[test]
    fn prefixes_typed_without_plus_get_the_default_country() {
        let p = |s, c| E164::normalize_prefix(s, c);
        assert_eq!(p("1900", "1"), Ok("+1900".into()));
        assert_eq!(p("900", "1"), Ok("+1900".into()));
        assert_eq!(p("1-900", "1"), Ok("+1900".into()));
        assert_eq!(p("+1 900", "1"), Ok("+1900".into()));
        assert_eq!(p("011 44", "1"), Ok("+44".into()));
        assert_eq!(p("0900", "44"), Ok("+44900".into()));
        assert_eq!(p("0044 900", "1"), Ok("+44900".into()));
        assert_eq!(p("+", "1"), Err(TypeError::NotPrefix));
        assert_eq!(p("", "1"), Err(TypeError::NotPrefix));
        assert_eq!(p("+0900", "1"), Err(TypeError::NotPrefix));
        assert_eq!(p("19a0", "1"), Err(TypeError::NotPrefix));
        assert_eq!(p("+1234567890123456", "1"), Err(TypeError::NotPrefix));
    }

    #[test]
    fn sids_need_their_prefix_and_32_hex_digits() {
        assert!(CallSid::parse("CA0123456789abcdef0123456789abcdef").is_ok());
        assert!(CallSid::parse("SM0123456789abcdef0123456789abcdef").is_err());
        assert!(CallSid::parse("CA0123").is_err());
    }

    #[test]
    fn an_optional_user_is_a_plain_integer_with_0_for_none() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct T {
            #[serde(with = "user_or_zero")]
            u: Option<UserId>,
        }
        for (v, json) in [(None, r#"{"u":0}"#), (Some(UserId(5)), r#"{"u":5}"#)] {
            assert_eq!(serde_json::to_string(&T { u: v }).unwrap(), json);
            assert_eq!(serde_json::from_str::<T>(json).unwrap(), T { u: v });
        }
        assert_eq!(UserId::from_wire(-3), None);
    }

    #[test]
    fn dispositions_round_trip_through_text() {
        for d in Disposition::ALL {
            assert_eq!(d.as_str().parse::<Disposition>(), Ok(*d));
        }
        assert!("nope".parse::<Disposition>().is_err());
        for d in Disposition::ALL {
            let wire = crate::pb::sipd::CallDisposition::from(*d);
            assert_eq!(Disposition::try_from(wire), Ok(*d));
        }
        assert!(Disposition::try_from(crate::pb::sipd::CallDisposition::Unspecified).is_err());
    }
}
