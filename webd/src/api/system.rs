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
pub async fn health(State(st): State<AppState>) -> Json<Health> {
    let p = &st.peers;
    let (sipd, mediad, twiliod, notifyd, db) = tokio::join!(
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
    Json(Health {
        status: if all_ok { "ok" } else { "degraded" },
        version: proto::VERSION,
        database: db,
        daemons,
    })
}

async fn ask(ch: tonic::transport::Channel) -> Part {
    let mut c = DaemonClient::new(ch);
    match tokio::time::timeout(Duration::from_secs(1), c.health(HealthRequest {})).await {
        Ok(Ok(r)) => {
            let r = r.into_inner();
            Part {
                status: r.status,
                detail: r.detail,
                version: Some(r.version),
                uptime_secs: Some(r.uptime_secs),
            }
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
    }
}

async fn database(st: &AppState) -> Part {
    let ok = proto::db::quick_check(&st.pool).await;
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
