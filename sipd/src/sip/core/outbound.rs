//! Calls that leave through the trunk: emergency numbers first (always
//! placed, as dialled), then the number plan's refusals (international,
//! premium) and the per-device limits against toll fraud. The tables live
//! in [`crate::sip::numbers`]; this is where the core applies them.

use std::net::IpAddr;

use super::{Core, Event, Reply};
use crate::sip::limits::Verdict;
use crate::sip::numbers::{self, Class};
use crate::sip::registrar::Device;

impl Core {
    /// True when `dialed` is an emergency number in the system's country:
    /// it goes to the trunk even when a device or extension has its name.
    pub(super) fn is_emergency(&self, dialed: &str) -> bool {
        numbers::emergency(dialed, &self.cfg.default_country).is_some()
    }

    /// The number to put on the trunk for a dialed string that is no device
    /// or extension (or is an emergency number). Emergency numbers go as
    /// dialled and are never refused but for want of a trunk; premium and
    /// international numbers need `calls.allow_premium` /
    /// `calls.allow_international`.
    pub(super) fn outbound_number(&self, dialed: &str, caller: &Device) -> Result<String, Reply> {
        let class = numbers::classify(dialed, &self.cfg.default_country);
        let Some(t) = &self.cfg.termination else {
            if let Class::Emergency(n) = &class {
                tracing::error!(number = %n, device = %caller.username, "emergency call refused: no SIP trunk configured");
                return Err(Reply::new(503, "Service Unavailable")
                    .with("Warning", "399 gosip \"no SIP trunk for emergency calls\""));
            }
            if class == Class::Invalid {
                return Err(Reply::new(404, "Not Found"));
            }
            return Err(Reply::new(503, "Service Unavailable")
                .with("Warning", "399 gosip \"no SIP trunk configured\""));
        };
        if t.username.is_empty() && t.password.is_empty() {
            tracing::debug!("trunk without credentials: relying on its IP ACL");
        }
        let n = match class {
            Class::Emergency(n) => {
                if caller.caller_id.is_none() {
                    // Twilio needs a number with an emergency address; try
                    // anyway: refusing an emergency call helps nobody.
                    tracing::warn!(number = %n, device = %caller.username, "emergency call without a DID to send as caller ID");
                }
                return Ok(n);
            }
            Class::Invalid => return Err(Reply::new(404, "Not Found")),
            Class::International(_) if !self.cfg.allow_international => {
                return Err(Reply::new(403, "Forbidden").with(
                    "Warning",
                    "399 gosip \"international calls are not allowed\"",
                ));
            }
            Class::International(n) | Class::Domestic(n) => n,
        };
        if !self.cfg.allow_premium && numbers::is_premium(&n) {
            return Err(Reply::new(403, "Forbidden").with(
                "Warning",
                "399 gosip \"premium-rate numbers are not allowed\"",
            ));
        }
        if caller.caller_id.is_none() {
            return Err(Reply::new(403, "Forbidden")
                .with("Warning", "399 gosip \"no DID to use as caller ID\""));
        }
        Ok(n)
    }

    /// [`Self::outbound_number`] for a call the device places now from
    /// `ip`, with its per-device limits applied and counted. A refusal is a
    /// security event, and the first one per device and hour an admin
    /// alert. Emergency calls raise an alert of their own, so someone on
    /// site learns that help was called (as US law asks of a PBX: 47 CFR
    /// 9.16, "Kari's Law").
    pub(super) fn place_outbound(
        &mut self,
        now: u64,
        dialed: &str,
        caller: &Device,
        ip: IpAddr,
    ) -> Result<String, Reply> {
        let n = self.outbound_number(dialed, caller)?;
        if !n.starts_with('+') {
            tracing::warn!(number = %n, device = %caller.username, src_ip = %ip, "emergency call");
            self.events.push_back(Event::Alert {
                kind: "emergency_call",
                message: format!(
                    "Device {} dialled the emergency number {n} (caller ID {}).",
                    caller.username,
                    caller.caller_id.as_deref().unwrap_or("none")
                ),
            });
            return Ok(n);
        }
        let limits = self.cfg.call_limits;
        match self.calls.limit(limits, caller.id, now) {
            Verdict::Allow => Ok(n),
            Verdict::Refuse { hit, alert } => {
                let text = hit.text();
                self.events.push_back(Event::Security {
                    kind: hit.kind(),
                    ip,
                    username: caller.username.clone(),
                    detail: format!("{text}; call to {n} refused"),
                });
                if alert {
                    self.events.push_back(Event::Alert {
                        kind: hit.kind(),
                        message: format!(
                            "Device {}: {text} (a call to {n} was refused). Its calls through \
                             the trunk are refused until it is under the limit again; check that \
                             its password has not leaked (toll fraud).",
                            caller.username
                        ),
                    });
                }
                Err(Reply::new(403, "Forbidden").with("Warning", format!("399 gosip \"{text}\"")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::limits::CallLimits;

    const T0: u64 = 1_700_000_000_000;

    fn core(trunk: bool, per_hour: u32) -> Core {
        let mut s = proto::settings::Settings::defaults();
        s.set("system.default_country", "1");
        if trunk {
            s.set("twilio.termination_uri", "127.0.0.1:5099");
        }
        let mut cfg = crate::net::core_config(&s, "127.0.0.1:5060".parse().unwrap(), 5061);
        cfg.call_limits = CallLimits {
            max_concurrent: 0,
            max_per_hour: per_hour,
        };
        Core::new(cfg, [7; 32])
    }

    fn alice(did: Option<&str>) -> Device {
        Device {
            id: proto::types::DeviceId(1),
            username: "alice".into(),
            ha1_md5: String::new(),
            ha1_sha256: String::new(),
            realm: "gosip".into(),
            extension: Some("201".into()),
            recording: false,
            caller_id: did.map(Into::into),
            mwi_unsolicited: false,
            busy_in_call: false,
            srtp: Default::default(),
            tls_only: false,
            mailbox: None,
        }
    }

    fn events(c: &mut Core) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn an_emergency_number_goes_out_as_dialled_whatever_the_policy_and_alerts_the_admins() {
        // No international, no premium, one call an hour already used, no DID.
        let mut c = core(true, 1);
        let a = alice(Some("+15550001111"));
        assert_eq!(
            c.place_outbound(T0, "2125551234", &a, IP).ok().as_deref(),
            Some("+12125551234")
        );
        assert!(c.place_outbound(T0, "2125551234", &a, IP).is_err());
        events(&mut c);
        for (dialed, dev) in [("911", &a), ("112", &a), ("911", &alice(None))] {
            assert_eq!(
                c.place_outbound(T0 + 1, dialed, dev, IP).ok().as_deref(),
                Some(dialed)
            );
            assert!(matches!(
                events(&mut c).as_slice(),
                [Event::Alert { kind: "emergency_call", message }] if message.contains(dialed)
            ));
        }
    }

    #[test]
    fn an_emergency_call_without_a_trunk_is_a_503_that_says_why() {
        let mut c = core(false, 0);
        let r = c
            .place_outbound(T0, "911", &alice(Some("+15550001111")), IP)
            .err()
            .map(|r| (r.code, r.extra));
        assert_eq!(
            r,
            Some((
                503,
                vec![(
                    "Warning",
                    "399 gosip \"no SIP trunk for emergency calls\"".to_string()
                )]
            ))
        );
    }

    #[test]
    fn a_caribbean_number_is_international_and_refused_unless_allowed() {
        let mut c = core(true, 0);
        let a = alice(Some("+15550001111"));
        for n in ["876-555-1234", "+18095551234", "12845551234"] {
            let r = c.place_outbound(T0, n, &a, IP).err().map(|r| r.code);
            assert_eq!(r, Some(403), "{n}");
        }
        let mut cfg = c.config().clone();
        cfg.allow_international = true;
        c.set_config(T0, cfg);
        assert_eq!(
            c.place_outbound(T0, "876-555-1234", &a, IP).ok().as_deref(),
            Some("+18765551234")
        );
    }

    #[test]
    fn a_device_over_its_hourly_limit_is_refused_with_a_security_event_and_one_alert() {
        let mut c = core(true, 2);
        let a = alice(Some("+15550001111"));
        for _ in 0..2 {
            assert!(c.place_outbound(T0, "2125551234", &a, IP).is_ok());
        }
        assert!(events(&mut c).is_empty());
        let r = c.place_outbound(T0 + 1, "2125551234", &a, IP).err();
        assert_eq!(
            r.map(|r| (r.code, r.extra)),
            Some((
                403,
                vec![(
                    "Warning",
                    "399 gosip \"limit of 2 outside calls per hour reached\"".to_string()
                )]
            ))
        );
        let ev = events(&mut c);
        assert!(matches!(ev.as_slice(), [
            Event::Security { kind: "call_limit_hourly", ip, username, .. },
            Event::Alert { kind: "call_limit_hourly", .. },
        ] if *ip == IP && username == "alice"));
        // The next refusal is logged, but the admins were told already.
        assert!(c.place_outbound(T0 + 2, "2125551234", &a, IP).is_err());
        assert!(matches!(
            events(&mut c).as_slice(),
            [Event::Security { .. }]
        ));
        // An hour after the first call, the device may call again.
        let later = T0 + crate::sip::limits::HOUR_MS;
        assert!(c.place_outbound(later, "2125551234", &a, IP).is_ok());
    }
}
