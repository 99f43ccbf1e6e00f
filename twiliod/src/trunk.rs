//! "Set up Twilio for me" (webd's setup wizard and System screen): makes
//! the Twilio side match this system, idempotently, through Twilio's REST
//! API (CONTRACT.md §5.1):
//!
//! 1. an Elastic SIP Trunk named "GoSIP" (found by name, else created with a
//!    random `gosip-….pstn.twilio.com` termination domain): the phones'
//!    outbound calls leave through it;
//! 2. a SIP credential list "GoSIP" bound to the trunk, holding the digest
//!    user sipd answers the trunk's 407 with (kept when it is already there,
//!    else made from the settings' user and password or generated);
//! 3. an origination URI `sip:{public address}:{sip port}` on the trunk, when
//!    a public address is known (set, or learned by sipd);
//! 4. every linked number's voice, status and SMS webhooks (needs
//!    `system.public_url`).
//!
//! twiliod never writes settings (webd owns the config table): the reply
//! carries the termination URI and trunk credentials for webd to store.

use reqwest::Method;
use serde::Deserialize;

use proto::pb::twiliod::SetUpTwilioReply;

use crate::AppState;
use crate::client::TwilioError;

/// The friendly name of the trunk and credential list GoSIP manages.
pub const NAME: &str = "GoSIP";

#[derive(Deserialize)]
struct Trunks {
    #[serde(default)]
    trunks: Vec<Trunk>,
}
#[derive(Deserialize)]
struct Trunk {
    sid: String,
    #[serde(default)]
    friendly_name: Option<String>,
    #[serde(default)]
    domain_name: Option<String>,
}
#[derive(Deserialize)]
struct Lists {
    #[serde(default)]
    credential_lists: Vec<Sid>,
}
#[derive(Deserialize)]
struct Sid {
    sid: String,
    #[serde(default)]
    friendly_name: Option<String>,
}
#[derive(Deserialize)]
struct Creds {
    #[serde(default)]
    credentials: Vec<Cred>,
}
#[derive(Deserialize)]
struct Cred {
    sid: String,
    username: String,
}
#[derive(Deserialize)]
struct Origins {
    #[serde(default)]
    origination_urls: Vec<Origin>,
}
#[derive(Deserialize)]
struct Origin {
    sip_url: String,
}

/// Random lower-case letters and digits.
fn random_alnum(n: usize, upper_too: bool) -> String {
    const LOWER: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    const MIXED: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let set = if upper_too { MIXED } else { LOWER };
    (0..n)
        .map(|_| set[rand::random_range(0..set.len())] as char)
        .collect()
}

/// A password Twilio accepts for SIP credentials (12+ characters with upper
/// case, lower case and a digit), 24 characters of which 21 random.
fn new_password() -> String {
    format!("Gs{}7", random_alnum(21, true))
}

/// Runs the set-up; steps done before a failure stay done and are listed.
pub async fn set_up(st: &AppState) -> SetUpTwilioReply {
    let mut reply = SetUpTwilioReply::default();
    if let Err(e) = run(st, &mut reply).await {
        reply.ok = false;
        reply.error = crate::grpc::user_error(&e);
    } else {
        reply.ok = true;
    }
    reply
}

async fn run(st: &AppState, out: &mut SetUpTwilioReply) -> Result<(), TwilioError> {
    let creds = st.twilio.credentials();
    if !creds.is_set() {
        return Err(TwilioError::NotConfigured);
    }
    let setup = Setup {
        st,
        tw: &st.twilio,
        creds,
        settings: st.settings.get(),
    };

    // 1. The trunk.
    let trunk = setup.ensure_trunk(out).await?;
    setup.record_termination_uri(&trunk, out);

    // 2. The credential list and GoSIP's user in it.
    let list = setup.ensure_credential_list(out).await?;
    setup.ensure_trunk_user(&list, out).await?;
    setup.bind_credential_list(&trunk, &list, out).await?;

    // 3. The origination URI, when Twilio can be told where we are.
    setup.ensure_origination_uri(&trunk, out).await?;

    // 4. The numbers' webhooks.
    setup.point_numbers_here(out).await
}

/// What every set-up step works with: one reading of the credentials and
/// settings, so all steps act on the same account and configuration.
struct Setup<'a> {
    st: &'a AppState,
    tw: &'a crate::client::TwilioClient,
    creds: crate::client::Credentials,
    settings: std::sync::Arc<proto::settings::Settings>,
}

impl Setup<'_> {
    /// The Elastic SIP Trunking URL of `path` (trunking has its own host).
    fn url(&self, path: &str) -> String {
        self.creds.trunking_url(path)
    }

    /// Finds the trunk named [`NAME`], or creates it with a random
    /// termination domain so two systems never share one.
    async fn ensure_trunk(&self, out: &mut SetUpTwilioReply) -> Result<Trunk, TwilioError> {
        let trunks: Trunks = self
            .tw
            .json(Method::GET, &self.url("/Trunks?PageSize=100"), &[])
            .await?;
        if let Some(t) = trunks
            .trunks
            .into_iter()
            .find(|t| t.friendly_name.as_deref() == Some(NAME))
        {
            out.done.push(format!(
                "Found the SIP trunk \"{NAME}\" ({}).",
                t.domain_name.as_deref().unwrap_or("no termination domain")
            ));
            return Ok(t);
        }
        let domain = format!("gosip-{}.pstn.twilio.com", random_alnum(10, false));
        let t: Trunk = self
            .tw
            .json(
                Method::POST,
                &self.url("/Trunks"),
                &[("FriendlyName", NAME), ("DomainName", &domain)],
            )
            .await?;
        out.done.push(format!(
            "Created the SIP trunk \"{NAME}\" with the termination address {domain}."
        ));
        Ok(t)
    }

    /// Hands webd the trunk's termination URI to store, unless the admin
    /// already set one of their own (which is kept and reported).
    fn record_termination_uri(&self, trunk: &Trunk, out: &mut SetUpTwilioReply) {
        let current_uri = self
            .settings
            .str("twilio.termination_uri")
            .trim()
            .to_owned();
        match termination_uri(
            &current_uri,
            trunk.domain_name.as_deref().unwrap_or_default(),
        ) {
            Some(uri) => {
                out.done
                    .push(format!("Phones' calls to outside numbers now go to {uri}."));
                out.termination_uri = uri;
            }
            None if !current_uri.is_empty() => out.done.push(format!(
                "Kept the termination address you set ({current_uri})."
            )),
            None => {}
        }
    }

    /// Finds the credential list named [`NAME`], or creates it.
    async fn ensure_credential_list(&self, out: &mut SetUpTwilioReply) -> Result<Sid, TwilioError> {
        let lists: Lists = self
            .tw
            .json(Method::GET, "/SIP/CredentialLists.json?PageSize=100", &[])
            .await?;
        if let Some(l) = lists
            .credential_lists
            .into_iter()
            .find(|l| l.friendly_name.as_deref() == Some(NAME))
        {
            return Ok(l);
        }
        let l: Sid = self
            .tw
            .json(
                Method::POST,
                "/SIP/CredentialLists.json",
                &[("FriendlyName", NAME)],
            )
            .await?;
        out.done
            .push(format!("Created the credential list \"{NAME}\"."));
        Ok(l)
    }

    /// Makes sure the list holds a user whose password sipd knows: the
    /// settings' user when the list already has it, else that user (or a
    /// generated one) is (re)created and returned for webd to store.
    async fn ensure_trunk_user(
        &self,
        list: &Sid,
        out: &mut SetUpTwilioReply,
    ) -> Result<(), TwilioError> {
        let creds_path = format!("/SIP/CredentialLists/{}/Credentials.json", list.sid);
        let existing: Creds = self.tw.json(Method::GET, &creds_path, &[]).await?;
        let user = self.settings.str("twilio.trunk_username").trim().to_owned();
        let pass = self.settings.str("twilio.trunk_password").to_owned();
        if !user.is_empty()
            && !pass.is_empty()
            && existing.credentials.iter().any(|c| c.username == user)
        {
            out.done
                .push(format!("The trunk already knows GoSIP's user \"{user}\"."));
            return Ok(());
        }
        let (user, pass) = if !user.is_empty() && !pass.is_empty() {
            (user, pass)
        } else {
            (format!("gosip-{}", random_alnum(6, false)), new_password())
        };
        // A user of that name with a password we do not know: replace it.
        for c in existing.credentials.iter().filter(|c| c.username == user) {
            let p = format!(
                "/SIP/CredentialLists/{}/Credentials/{}.json",
                list.sid, c.sid
            );
            self.tw.request(Method::DELETE, &p, &[]).await?;
        }
        let _: serde_json::Value = self
            .tw
            .json(
                Method::POST,
                &creds_path,
                &[("Username", &user), ("Password", &pass)],
            )
            .await?;
        out.done.push(format!(
            "Added GoSIP's user \"{user}\" to the credential list; sipd answers the trunk's challenge with it."
        ));
        out.trunk_username = user;
        out.trunk_password = pass;
        Ok(())
    }

    /// Binds the credential list to the trunk unless it already is, so the
    /// trunk challenges calls with GoSIP's user.
    async fn bind_credential_list(
        &self,
        trunk: &Trunk,
        list: &Sid,
        out: &mut SetUpTwilioReply,
    ) -> Result<(), TwilioError> {
        let bound: Lists = self
            .tw
            .json(
                Method::GET,
                &self.url(&format!("/Trunks/{}/CredentialLists", trunk.sid)),
                &[],
            )
            .await?;
        if !bound.credential_lists.iter().any(|l| l.sid == list.sid) {
            let _: serde_json::Value = self
                .tw
                .json(
                    Method::POST,
                    &self.url(&format!("/Trunks/{}/CredentialLists", trunk.sid)),
                    &[("CredentialListSid", &list.sid)],
                )
                .await?;
            out.done.push(format!(
                "Bound the credential list to the trunk \"{NAME}\"."
            ));
        }
        Ok(())
    }

    /// Points the trunk's origination at this system's public SIP address
    /// (the configured one, else a public one sipd learned); skipped, with
    /// a note, while no such address is known.
    async fn ensure_origination_uri(
        &self,
        trunk: &Trunk,
        out: &mut SetUpTwilioReply,
    ) -> Result<(), TwilioError> {
        let host = match self.settings.str("sip.public_address").trim() {
            "" => self.st.sip_host.get().filter(|h| is_public(h)),
            h => Some(h.to_owned()),
        };
        let Some(h) = host else {
            out.done.push(
                "Skipped the origination URI: no public address is known yet (set it under Phones, \
                 or let a call from Twilio teach it); calls to your numbers use their webhooks anyway."
                    .to_owned(),
            );
            return Ok(());
        };
        let sip_url = format!("sip:{h}:{}", self.st.sip_port);
        let origins: Origins = self
            .tw
            .json(
                Method::GET,
                &self.url(&format!("/Trunks/{}/OriginationUrls", trunk.sid)),
                &[],
            )
            .await?;
        if origins
            .origination_urls
            .iter()
            .any(|o| o.sip_url == sip_url)
        {
            out.done
                .push(format!("The trunk's origination URI is already {sip_url}."));
            return Ok(());
        }
        let _: serde_json::Value = self
            .tw
            .json(
                Method::POST,
                &self.url(&format!("/Trunks/{}/OriginationUrls", trunk.sid)),
                &[
                    ("FriendlyName", NAME),
                    ("SipUrl", &sip_url),
                    ("Priority", "10"),
                    ("Weight", "10"),
                    ("Enabled", "true"),
                ],
            )
            .await?;
        out.done
            .push(format!("Set the trunk's origination URI to {sip_url}."));
        Ok(())
    }

    /// Points every DID's webhooks at this system; numbers typed without
    /// their Twilio SID are looked up in the account by number (and the
    /// SIDs found are returned for webd to store).
    async fn point_numbers_here(&self, out: &mut SetUpTwilioReply) -> Result<(), TwilioError> {
        let ours: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT number, twilio_sid FROM dids ORDER BY number")
                .fetch_all(&self.st.pool)
                .await
                .map_err(|e| TwilioError::Transport(format!("database: {e}")))?;
        let at_twilio = if ours
            .iter()
            .any(|(_, sid)| sid.as_deref().is_none_or(str::is_empty))
        {
            self.tw.list_numbers().await?
        } else {
            Vec::new()
        };
        if ours.is_empty() {
            out.done
                .push("No number yet: add one under Numbers and run this again.".to_owned());
        }
        for (number, sid) in ours {
            let Some(sid) = number_sid(&number, sid, &at_twilio, out) else {
                continue;
            };
            match crate::grpc::point_number_here(self.st, &sid).await {
                Ok(public) => out
                    .done
                    .push(format!("{number}: calls and texts now come to {public}.")),
                Err(e) => out.done.push(format!("{number}: not changed ({e}).")),
            }
        }
        Ok(())
    }
}

/// The Twilio SID of DID `number`: the stored one, else the account's
/// number of that value (reported as newly linked); `None`, with a note,
/// when the account does not have the number.
fn number_sid(
    number: &str,
    stored: Option<String>,
    at_twilio: &[crate::client::IncomingNumber],
    out: &mut SetUpTwilioReply,
) -> Option<String> {
    if let Some(sid) = stored.filter(|s| !s.is_empty()) {
        return Some(sid);
    }
    match at_twilio.iter().find(|n| n.phone_number == number) {
        Some(n) => {
            out.linked.push(proto::pb::twiliod::LinkedNumber {
                number: number.to_owned(),
                sid: n.sid.clone(),
            });
            Some(n.sid.clone())
        }
        None => {
            out.done.push(format!(
                "{number}: not in this Twilio account, so Twilio cannot send its calls here."
            ));
            None
        }
    }
}

/// The termination URI to store: the trunk's domain, unless the admin set
/// one (a trunk of their own, a regional edge) which is kept.
fn termination_uri(current: &str, domain: &str) -> Option<String> {
    (current.trim().is_empty() && !domain.trim().is_empty())
        .then(|| format!("sip:{}", domain.trim()))
}

/// An address Twilio can reach: not loopback, private, link-local or a
/// host name sipd fell back to.
fn is_public(h: &str) -> bool {
    match h.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => {
            !(a.is_loopback() || a.is_private() || a.is_link_local() || a.is_unspecified())
        }
        Ok(std::net::IpAddr::V6(a)) => !(a.is_loopback() || a.is_unspecified()),
        Err(_) => h.contains('.'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_meet_twilios_rule() {
        for _ in 0..50 {
            let p = new_password();
            assert!(p.len() >= 12);
            assert!(p.bytes().any(|b| b.is_ascii_uppercase()));
            assert!(p.bytes().any(|b| b.is_ascii_lowercase()));
            assert!(p.bytes().any(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn the_trunk_domain_fills_an_empty_termination_uri_only() {
        assert_eq!(
            termination_uri("", "gosip-ab12.pstn.twilio.com").as_deref(),
            Some("sip:gosip-ab12.pstn.twilio.com")
        );
        assert_eq!(
            termination_uri("sip:mine.pstn.twilio.com", "gosip-ab12.pstn.twilio.com"),
            None
        );
        assert_eq!(termination_uri("", ""), None);
    }

    #[test]
    fn only_reachable_addresses_become_origination_uris() {
        assert!(is_public("203.0.113.5"));
        assert!(is_public("pbx.example.com"));
        assert!(!is_public("192.168.1.10"));
        assert!(!is_public("127.0.0.1"));
        assert!(!is_public("vm"));
    }
}
