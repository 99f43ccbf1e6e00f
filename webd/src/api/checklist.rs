//! `GET /api/system/checklist`: the first-run checklist on the admin's
//! dashboard. Every step ticks itself from the system's real state (the
//! settings, the numbers and phones, sipd's registrations, the call and
//! message history, twiliod's health), so it cannot be ticked by hand and
//! is right after a restore too.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::accounts::Admin;
use crate::http::error::{ApiResult, ErrorBody};

#[derive(Serialize, ToSchema)]
pub struct Checklist {
    /// Every step is done: the dashboard stops showing the list.
    pub done: bool,
    pub steps: Vec<Step>,
}

#[derive(Serialize, ToSchema)]
pub struct Step {
    /// twilio, number, phone, hours, call, text
    pub id: &'static str,
    pub title: &'static str,
    pub done: bool,
    /// Where things stand, or what to do next, in plain words.
    pub detail: String,
    /// The screen where the step is done.
    pub link: &'static str,
}

async fn count(st: &AppState, sql: &'static str) -> ApiResult<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(&st.pool).await?)
}

/// "Connect Twilio": done when twiliod says Twilio takes the credentials.
async fn twilio_step(st: &AppState) -> Step {
    let creds_set = {
        let s = st.settings.get();
        ["twilio.account_sid", "twilio.auth_token"]
            .iter()
            .all(|k| !s.str(k).trim().is_empty())
    };
    let (twilio_done, twilio_detail) = if !creds_set {
        (
            false,
            "Add your Twilio Account SID and Auth Token (Twilio console, front page).".to_owned(),
        )
    } else {
        let (part, warnings) = super::system::ask(st.peers.twiliod.clone()).await;
        if part.status != "ok" && part.status != "degraded" {
            (
                false,
                format!(
                    "The Twilio service of GoSIP is not answering ({}).",
                    part.detail
                ),
            )
        } else if warnings.iter().any(|w| w == proto::daemon::TWILIO_REFUSED) {
            (
                false,
                "Twilio refuses these credentials: copy them again from the Twilio console."
                    .to_owned(),
            )
        } else {
            (true, "Twilio accepts the credentials.".to_owned())
        }
    };
    Step {
        id: "twilio",
        title: "Connect Twilio",
        done: twilio_done,
        detail: twilio_detail,
        link: "/admin/system",
    }
}

/// The first-run checklist.
#[utoipa::path(get, path = "/api/system/checklist", tag = "system",
    responses((status = 200, body = Checklist), (status = 403, body = ErrorBody)))]
pub async fn checklist(State(st): State<AppState>, _a: Admin) -> ApiResult<Json<Checklist>> {
    let mut steps = Vec::new();

    steps.push(twilio_step(&st).await);

    let numbers = count(&st, "SELECT COUNT(*) FROM dids").await?;
    steps.push(Step {
        id: "number",
        title: "Add a phone number",
        done: numbers > 0,
        detail: if numbers > 0 {
            format!("{numbers} number(s) linked.")
        } else {
            "Link the Twilio number people call and text.".to_owned()
        },
        link: "/admin/dids",
    });

    let devices = count(&st, "SELECT COUNT(*) FROM devices").await?;
    let registered = count(
        &st,
        "SELECT COUNT(DISTINCT device_id) FROM registrations \
         WHERE online AND expires_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    )
    .await?;
    steps.push(Step {
        id: "phone",
        title: "Add a phone and see it register",
        done: registered > 0,
        detail: match (devices, registered) {
            (0, _) => "Add a desk phone or softphone and type its details into it.".to_owned(),
            (_, 0) => "Added, but no phone has registered yet: check the server address, \
                       username and password in the phone."
                .to_owned(),
            (_, n) => format!("{n} phone(s) registered."),
        },
        link: "/admin/devices",
    });

    let hours = count(
        &st,
        "SELECT COUNT(*) FROM config WHERE key = 'routing.business_hours'",
    )
    .await?;
    steps.push(Step {
        id: "hours",
        title: "Set your business hours",
        done: hours > 0,
        detail: if hours > 0 {
            "Saved; time rules and after-hours replies use them.".to_owned()
        } else {
            "Check the weekly hours on the routing screen and save them.".to_owned()
        },
        link: "/admin/routing",
    });

    let calls = count(
        &st,
        "SELECT COUNT(*) FROM cdrs WHERE direction IN ('inbound', 'outbound') \
         AND disposition = 'answered'",
    )
    .await?;
    steps.push(Step {
        id: "call",
        title: "Make a test call",
        done: calls > 0,
        detail: if calls > 0 {
            "A call through Twilio was answered.".to_owned()
        } else {
            "Call your number from your mobile and answer on a phone here (or dial your mobile \
             from one)."
                .to_owned()
        },
        link: "/calls",
    });

    let texts = count(
        &st,
        "SELECT COUNT(*) FROM messages WHERE direction = 'inbound' \
         OR status IN ('sent', 'delivered')",
    )
    .await?;
    steps.push(Step {
        id: "text",
        title: "Send a test text",
        done: texts > 0,
        detail: if texts > 0 {
            "A text went through Twilio.".to_owned()
        } else {
            "Text your mobile from the Messages screen, or text your number.".to_owned()
        },
        link: "/messages",
    });

    Ok(Json(Checklist {
        done: steps.iter().all(|s| s.done),
        steps,
    }))
}

/// What "Set up Twilio for me" did.
#[derive(Serialize, ToSchema)]
pub struct TwilioSetup {
    /// Everything went through.
    pub ok: bool,
    /// Why it stopped, in plain words; the steps in `done` stay done.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// What was done or checked, one sentence each.
    pub done: Vec<String>,
}

/// "Set up Twilio for me": the Elastic SIP Trunk for outbound calls (its
/// termination address, GoSIP's digest user in a credential list bound to
/// it, the origination URI) and the linked numbers' webhooks, through
/// Twilio's REST API. Safe to run again: what is already right is kept.
#[utoipa::path(post, path = "/api/system/twilio/setup", tag = "system",
    responses((status = 200, body = TwilioSetup), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn twilio_setup(State(st): State<AppState>, _a: Admin) -> ApiResult<Json<TwilioSetup>> {
    let mut c = proto::pb::twiliod::twiliod_client::TwiliodClient::new(st.peers.twiliod.clone());
    let r = c
        .set_up_twilio(proto::pb::twiliod::SetUpTwilioRequest {})
        .await
        .map_err(|s| crate::http::peer_error("twiliod", s))?
        .into_inner();
    // twiliod names the settings; webd, the config table's owner, stores them.
    let mut changed = false;
    for (key, value) in [
        ("twilio.termination_uri", &r.termination_uri),
        ("twilio.trunk_username", &r.trunk_username),
        ("twilio.trunk_password", &r.trunk_password),
    ] {
        if !value.is_empty() {
            proto::settings::store(&st.pool, key, value).await?;
            changed = true;
        }
    }
    for l in &r.linked {
        sqlx::query("UPDATE dids SET twilio_sid = ? WHERE number = ? AND (twilio_sid IS NULL OR twilio_sid = '')")
            .bind(&l.sid)
            .bind(&l.number)
            .execute(&st.pool)
            .await?;
    }
    if changed {
        crate::http::reload_all(&st).await;
    }
    Ok(Json(TwilioSetup {
        ok: r.ok,
        error: r.error,
        done: r.done,
    }))
}
