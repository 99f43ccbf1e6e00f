//! Field checks: every bad field of a request is reported with its message.

use crate::http::error::{ApiError, ApiResult, FieldError};

pub fn fe(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// Collects field errors, then fails once with all of them.
#[derive(Default)]
pub struct Check(pub Vec<FieldError>);

impl Check {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn fail(&mut self, field: &str, msg: impl Into<String>) {
        self.0.push(fe(field, msg));
    }
    /// Length in characters within min..=max.
    pub fn len(&mut self, field: &str, v: &str, min: usize, max: usize) {
        let n = v.chars().count();
        if n < min || n > max {
            if min > 0 && n == 0 {
                self.fail(field, "is required");
            } else {
                self.fail(field, format!("must be {min} to {max} characters"));
            }
        }
    }
    pub fn e164(&mut self, field: &str, v: &str) {
        if proto::types::E164::parse(v).is_err() {
            self.fail(field, "must be an E.164 number such as +15551234567");
        }
    }
    /// A phone number as a person types it ("555-867-5309", "+44 20 ...",
    /// "011 44 ..."), national ones in `country`; the E.164 form, or empty
    /// with the failure recorded. Numbers are stored only in this form, so
    /// the rules, lists and threads that compare them agree.
    pub fn number(&mut self, field: &str, v: &str, country: &str) -> String {
        match proto::types::E164::normalize(v, country) {
            Ok(n) => n.to_string(),
            Err(_) => {
                self.fail(
                    field,
                    "must be a phone number such as +15551234567 (or a national number)",
                );
                String::new()
            }
        }
    }
    /// A number prefix as [`proto::types::E164::normalize_prefix`] reads it.
    pub fn prefix(&mut self, field: &str, v: &str, country: &str) -> String {
        match proto::types::E164::normalize_prefix(v, country) {
            Ok(p) => p,
            Err(e) => {
                self.fail(field, e.to_string());
                String::new()
            }
        }
    }
    pub fn one_of(&mut self, field: &str, v: &str, allowed: &[&str]) {
        if !allowed.contains(&v) {
            self.fail(field, format!("must be one of: {}", allowed.join(", ")));
        }
    }
    pub fn email(&mut self, field: &str, v: &str) {
        let ok = v.len() <= 254
            && v.split_once('@').is_some_and(|(a, b)| {
                !a.is_empty() && b.contains('.') && !b.starts_with('.') && !b.ends_with('.')
            })
            && !v.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            self.fail(field, "must be an email address like you@example.org");
        }
    }
    pub fn done(self) -> ApiResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// `system.default_country`: the country of numbers typed without one.
pub fn default_country(st: &crate::AppState) -> String {
    let s = st.settings.get();
    let c = s.str("system.default_country").trim();
    if c.is_empty() {
        "1".into()
    } else {
        c.to_owned()
    }
}

/// Tri-state JSON fields for partial updates.
pub fn opt_bool(v: Option<bool>, cur: bool) -> bool {
    v.unwrap_or(cur)
}
