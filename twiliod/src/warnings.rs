//! What stops calls or texts although twiliod itself runs fine, for the
//! admin's system status: Twilio not connected (no credentials, e.g. after
//! "Skip Twilio"), Twilio refusing the credentials, and numbers of ours that
//! Twilio has no emergency address for.
//!
//! Emergency numbers always leave through the trunk with one of our numbers
//! as caller ID; Twilio places such a call only when that number has an
//! emergency address (that is where responders are sent). The numbers are
//! listed from Twilio now and then (every `every`, and right after a settings
//! change), not on each health request: the status page polls, Twilio
//! rate-limits.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use proto::settings::SettingsHandle;

use crate::client::TwilioClient;

/// Shared with webd, whose first-run checklist reads them in the health
/// answer to tell whether Twilio is connected.
pub use proto::daemon::{TWILIO_NOT_CONNECTED as NOT_CONNECTED, TWILIO_REFUSED as REFUSED};

/// The warning for one of our numbers without an emergency address.
pub fn no_emergency_address(number: &str) -> String {
    format!(
        "{number} has no emergency address: 911 calls from it cannot be placed by Twilio. Add \
         one in the Twilio console (Phone Numbers, the number, Emergency Calling)."
    )
}

/// How often our numbers are matched against Twilio's last list again (a
/// database read only), so a number added here is warned about soon.
const DIDS_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct State {
    /// Our numbers that Twilio last listed without an emergency address.
    missing: Vec<String>,
    /// Every number Twilio last listed without one (ours or not).
    at_twilio: BTreeSet<String>,
}

/// The warnings twiliod reports in its health answer. Cheap to clone.
#[derive(Clone)]
pub struct Warnings {
    settings: SettingsHandle,
    twilio: TwilioClient,
    state: Arc<RwLock<State>>,
}

impl Warnings {
    pub fn new(settings: SettingsHandle, twilio: TwilioClient) -> Self {
        Self {
            settings,
            twilio,
            state: Arc::default(),
        }
    }

    /// The warnings now, most serious first. Credentials are read afresh,
    /// so "not connected" comes and goes with the settings, not the next
    /// listing.
    pub fn current(&self) -> Vec<String> {
        let creds = crate::client::Credentials::from_settings(&self.settings.get());
        if !creds.is_set() {
            return vec![NOT_CONNECTED.to_owned()];
        }
        let mut out = Vec::new();
        if self.twilio.credentials_refused() {
            out.push(REFUSED.to_owned());
        }
        if let Ok(s) = self.state.read() {
            out.extend(s.missing.iter().map(|n| no_emergency_address(n)));
        }
        out
    }

    /// Lists the numbers at Twilio and keeps those without an emergency
    /// address. A failed listing keeps what was known (a refusal shows
    /// through [`TwilioClient::credentials_refused`]).
    pub async fn refresh_from_twilio(&self, pool: &SqlitePool) {
        if !crate::client::Credentials::from_settings(&self.settings.get()).is_set() {
            if let Ok(mut s) = self.state.write() {
                *s = State::default();
            }
            return;
        }
        match self.twilio.list_numbers().await {
            Ok(numbers) => {
                let at_twilio = numbers
                    .into_iter()
                    .filter(|n| {
                        n.emergency_address_sid
                            .as_deref()
                            .is_none_or(|s| s.trim().is_empty())
                    })
                    .map(|n| n.phone_number)
                    .collect();
                if let Ok(mut s) = self.state.write() {
                    s.at_twilio = at_twilio;
                }
                self.match_ours(pool).await;
            }
            Err(e) => tracing::warn!(error = %e, "cannot list the numbers at Twilio"),
        }
    }

    /// Keeps, of the numbers Twilio listed without an address, ours.
    pub async fn match_ours(&self, pool: &SqlitePool) {
        let ours: Vec<String> = match sqlx::query_scalar("SELECT number FROM dids ORDER BY number")
            .fetch_all(pool)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read our numbers");
                return;
            }
        };
        if let Ok(mut s) = self.state.write() {
            s.missing = ours
                .into_iter()
                .filter(|n| s.at_twilio.contains(n))
                .collect();
        }
    }

    /// Lists from Twilio every `every` and right after any settings change;
    /// matches our numbers again every 30 s in between; until `stop`.
    pub async fn run(self, pool: SqlitePool, every: Duration, stop: CancellationToken) {
        let mut changes = self.settings.subscribe();
        let every = every.max(Duration::from_millis(100));
        loop {
            self.refresh_from_twilio(&pool).await;
            let listed = Instant::now();
            loop {
                let left = every.saturating_sub(listed.elapsed());
                if left.is_zero() {
                    break;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        break;
                    }
                    _ = tokio::time::sleep(left.min(DIDS_EVERY)) => self.match_ours(&pool).await,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::{Path, State as AxState};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use std::sync::Mutex;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "right-token";

    /// Twilio's IncomingPhoneNumbers list as the fake account holds it:
    /// (number, emergency address SID).
    type Account = Arc<Mutex<Vec<(String, Option<String>)>>>;

    async fn list(
        AxState(acct): AxState<Account>,
        Path(sid): Path<String>,
        headers: HeaderMap,
    ) -> axum::response::Response {
        use base64::Engine;
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"))
        );
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if sid != SID || auth != want {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"code": 20003, "message": "Authenticate",
                    "more_info": "", "status": 401})),
            )
                .into_response();
        }
        let numbers: Vec<_> = acct
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, (n, addr))| {
                serde_json::json!({"sid": format!("PN{i:032}"), "phone_number": n,
                    "emergency_address_sid": addr,
                    "emergency_status": if addr.is_some() { "Active" } else { "Inactive" }})
            })
            .collect();
        axum::Json(serde_json::json!({"incoming_phone_numbers": numbers, "next_page_uri": null}))
            .into_response()
    }

    async fn fake_twilio(acct: Account) -> String {
        let app = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json",
                axum::routing::get(list),
            )
            .with_state(acct);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}")
    }

    async fn setup() -> (tempfile::TempDir, SqlitePool, SettingsHandle) {
        let dir = tempfile::tempdir().expect("tmp");
        let pool = proto::db::open(dir.path()).await.expect("db");
        sqlx::query("INSERT INTO dids (number) VALUES ('+15550000001'), ('+15550000002')")
            .execute(&pool)
            .await
            .expect("dids");
        let settings = SettingsHandle::new(pool.clone()).await.expect("settings");
        (dir, pool, settings)
    }

    async fn set(pool: &SqlitePool, settings: &SettingsHandle, kv: &[(&str, &str)]) {
        for (k, v) in kv {
            proto::settings::store(pool, k, v).await.expect("store");
        }
        settings.reload().await.expect("reload");
    }

    #[tokio::test]
    async fn warns_while_not_connected_refused_or_a_number_of_ours_lacks_an_address() {
        let (_dir, pool, settings) = setup().await;
        let acct: Account = Arc::new(Mutex::new(vec![
            ("+15550000001".into(), None),
            ("+15550000002".into(), Some("AD1".into())),
            // Not ours: not our concern.
            ("+15550000099".into(), None),
        ]));
        let base = fake_twilio(acct.clone()).await;
        let w = Warnings::new(settings.clone(), TwilioClient::new(settings.clone()));

        // "Skip Twilio": nothing but the one warning, and Twilio is not asked.
        w.refresh_from_twilio(&pool).await;
        assert_eq!(w.current(), vec![NOT_CONNECTED.to_owned()]);

        // A wrong token: Twilio's 401 says so.
        set(
            &pool,
            &settings,
            &[
                ("twilio.account_sid", SID),
                ("twilio.auth_token", "wrong-token"),
                ("twilio.api_base", &base),
            ],
        )
        .await;
        w.refresh_from_twilio(&pool).await;
        assert_eq!(w.current(), vec![REFUSED.to_owned()]);

        // The right token: no refusal (even before the next listing, since
        // the refusal was for other credentials), then our number without
        // an address is named, the one with an address and the stranger not.
        set(&pool, &settings, &[("twilio.auth_token", TOKEN)]).await;
        assert!(w.current().is_empty(), "{:?}", w.current());
        w.refresh_from_twilio(&pool).await;
        assert_eq!(w.current(), vec![no_emergency_address("+15550000001")]);

        // The address is added at Twilio: the next listing clears it.
        if let Ok(mut a) = acct.lock() {
            a[0].1 = Some("AD2".into());
        }
        w.refresh_from_twilio(&pool).await;
        assert!(w.current().is_empty(), "{:?}", w.current());

        // Credentials removed again: back to "not connected" only.
        set(&pool, &settings, &[("twilio.auth_token", "")]).await;
        assert_eq!(w.current(), vec![NOT_CONNECTED.to_owned()]);
    }

    #[tokio::test]
    async fn a_number_added_here_is_matched_without_asking_twilio_again() {
        let (_dir, pool, settings) = setup().await;
        let acct: Account = Arc::new(Mutex::new(vec![("+15550000003".into(), None)]));
        let base = fake_twilio(acct).await;
        set(
            &pool,
            &settings,
            &[
                ("twilio.account_sid", SID),
                ("twilio.auth_token", TOKEN),
                ("twilio.api_base", &base),
            ],
        )
        .await;
        let w = Warnings::new(settings.clone(), TwilioClient::new(settings.clone()));
        w.refresh_from_twilio(&pool).await;
        assert!(w.current().is_empty(), "{:?}", w.current());
        sqlx::query("INSERT INTO dids (number) VALUES ('+15550000003')")
            .execute(&pool)
            .await
            .expect("did");
        w.match_ours(&pool).await;
        assert_eq!(w.current(), vec![no_emergency_address("+15550000003")]);
    }

    #[tokio::test]
    async fn the_loop_lists_again_after_a_settings_change() {
        let (_dir, pool, settings) = setup().await;
        let acct: Account = Arc::new(Mutex::new(vec![("+15550000002".into(), None)]));
        let base = fake_twilio(acct).await;
        let w = Warnings::new(settings.clone(), TwilioClient::new(settings.clone()));
        let stop = CancellationToken::new();
        // An hour between listings: only the settings change can list again.
        tokio::spawn(
            w.clone()
                .run(pool.clone(), Duration::from_secs(3600), stop.clone()),
        );
        set(
            &pool,
            &settings,
            &[
                ("twilio.account_sid", SID),
                ("twilio.auth_token", TOKEN),
                ("twilio.api_base", &base),
            ],
        )
        .await;
        let want = vec![no_emergency_address("+15550000002")];
        let mut seen = Vec::new();
        for _ in 0..200 {
            seen = w.current();
            if seen == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        stop.cancel();
        assert_eq!(seen, want);
    }
}
