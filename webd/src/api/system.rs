//! `/api/system/*`: health (public: it shows status only, no settings),
//! config, backup and restore (admin).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use proto::pb::common::HealthRequest;
use proto::pb::common::daemon_client::DaemonClient;

use crate::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// "ok" when every part is ok, else "degraded".
    pub status: &'static str,
    pub version: &'static str,
    pub database: Part,
    #[schema(value_type = std::collections::BTreeMap<String, Part>)]
    pub daemons: std::collections::BTreeMap<&'static str, Part>,
    /// Admins only: the addresses sipd puts in Via, Contact and SDP and
    /// where each came from, so "no audio" can be diagnosed without a
    /// packet capture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<SipAddress>>,
    /// Admins only: what stops calls or texts although every daemon is up
    /// (Twilio not connected, a number without an emergency address), as
    /// the daemons report it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
    /// Signed-in callers only: whether Twilio's credentials are set, so the
    /// message box can say a text will not leave instead of queueing it
    /// silently (users do not get the admin's warnings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twilio_connected: Option<bool>,
}

/// One address sipd uses.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SipAddress {
    /// `public` (towards Twilio and phones beyond a router), `local` (the
    /// typed address for phones on this host's networks), `default` (used
    /// when nothing else tells), `phones:<ip>` (an address phones reached).
    pub scope: String,
    pub address: String,
    /// `setting`, `phone_packet`, `trunk_via`, `stun` or `default`.
    pub source: String,
    pub updated_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Part {
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<u64>,
}

/// `GET /api/system/health`: each daemon asked over gRPC (1 s budget each,
/// asked in parallel), the database, and webd's own version.
#[utoipa::path(get, path = "/api/system/health", tag = "system",
    responses((status = 200, body = Health)))]
pub async fn health(
    State(st): State<AppState>,
    caller: Option<crate::accounts::Caller>,
) -> Json<Health> {
    let p = &st.peers;
    let ((sipd, w1), (mediad, w2), (twiliod, w3), (notifyd, w4), db) = tokio::join!(
        ask(p.sipd.clone()),
        ask(p.mediad.clone()),
        ask(p.twiliod.clone()),
        ask(p.notifyd.clone()),
        database(&st),
    );
    let mut daemons = std::collections::BTreeMap::new();
    daemons.insert("sipd", sipd);
    daemons.insert("mediad", mediad);
    daemons.insert("twiliod", twiliod);
    daemons.insert("notifyd", notifyd);
    daemons.insert(
        "webd",
        Part {
            status: "ok".into(),
            detail: String::new(),
            version: Some(proto::VERSION.into()),
            uptime_secs: None,
        },
    );
    let all_ok = db.status == "ok" && daemons.values().all(|d| d.status == "ok");
    let signed_in = caller.is_some();
    let admin = caller.is_some_and(|c| c.is_admin());
    let (addresses, warnings) = if admin {
        let warnings = [w1, w2, w3, w4].concat();
        (Some(sip_addresses(&st).await), Some(warnings))
    } else {
        (None, None)
    };
    let mut h = Health {
        status: if all_ok { "ok" } else { "degraded" },
        version: proto::VERSION,
        database: db,
        daemons,
        addresses,
        warnings,
        twilio_connected: signed_in.then(|| {
            let s = st.settings.get();
            ["twilio.account_sid", "twilio.auth_token", "twilio.api_base"]
                .iter()
                .all(|k| !s.str(k).trim().is_empty())
        }),
    };
    if !admin {
        // Monitors get up/down per part; error texts (an SMTP server's
        // answer, a path), versions and uptimes are for admins.
        for part in h
            .daemons
            .values_mut()
            .chain(std::iter::once(&mut h.database))
        {
            part.detail.clear();
            part.version = None;
            part.uptime_secs = None;
        }
    }
    Json(h)
}

/// sipd's `sip_addresses` rows (empty while sipd has not written them).
async fn sip_addresses(st: &AppState) -> Vec<SipAddress> {
    use sqlx::Row;
    let rows =
        sqlx::query("SELECT scope, address, source, updated_at FROM sip_addresses ORDER BY scope")
            .fetch_all(&st.pool)
            .await
            .unwrap_or_default();
    rows.into_iter()
        .map(|r| SipAddress {
            scope: r.get("scope"),
            address: r.get("address"),
            source: r.get("source"),
            updated_at: r.get("updated_at"),
        })
        .collect()
}

/// One daemon's health and its warnings for admins.
pub(crate) async fn ask(ch: proto::grpc::AuthChannel) -> (Part, Vec<String>) {
    let mut c = DaemonClient::new(ch);
    let part = match tokio::time::timeout(Duration::from_secs(1), c.health(HealthRequest {})).await
    {
        Ok(Ok(r)) => {
            let r = r.into_inner();
            let part = Part {
                status: r.status,
                detail: r.detail,
                version: Some(r.version),
                uptime_secs: Some(r.uptime_secs),
            };
            return (part, r.warnings);
        }
        Ok(Err(s)) => Part {
            status: "down".into(),
            detail: s.message().to_owned(),
            version: None,
            uptime_secs: None,
        },
        Err(_) => Part {
            status: "down".into(),
            detail: "no answer within 1 s".into(),
            version: None,
            uptime_secs: None,
        },
    };
    (part, Vec::new())
}

/// How long one `quick_check` answers for: a monitor polling the public
/// health endpoint must not make every request read the whole database.
const QUICK_CHECK_TTL: Duration = Duration::from_secs(30);

async fn database(st: &AppState) -> Part {
    let cached = st
        .quick_check
        .lock()
        .ok()
        .and_then(|g| *g)
        .filter(|(at, _)| at.elapsed() < QUICK_CHECK_TTL)
        .map(|(_, ok)| ok);
    let ok = match cached {
        Some(ok) => ok,
        None => {
            let ok = proto::db::quick_check(&st.pool).await;
            if let Ok(mut g) = st.quick_check.lock() {
                *g = Some((std::time::Instant::now(), ok));
            }
            ok
        }
    };
    Part {
        status: if ok { "ok" } else { "degraded" }.into(),
        detail: if ok {
            String::new()
        } else {
            "quick_check failed".into()
        },
        version: None,
        uptime_secs: None,
    }
}
