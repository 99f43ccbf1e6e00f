//! Voice webhooks (signature-checked by [`crate::webhooks::router`]):
//!
//! | path | Twilio sends | we answer |
//! |---|---|---|
//! | `/api/webhooks/voice/incoming` | a new inbound call (§2.1) | TwiML of the decision |
//! | `/api/webhooks/voice/dial-result` | `<Dial action>` (§2.4) | hang up, or voicemail when nobody answered |
//! | `/api/webhooks/voice/menu` | a menu's `<Gather>` key, or none | the next menu, or TwiML of the chosen action |
//! | `/api/webhooks/voice/vm-done` | `<Record action>` (§2.5) | hang up |
//! | `/api/webhooks/recording` | recordingStatusCallback (§2.5) | empty |
//! | `/api/webhooks/transcription` | transcribeCallback (§2.6) | empty |
//! | `/api/webhooks/voice/status` | the number's status callback (§2.3) | empty |
//!
//! plus unsigned GETs Twilio fetches for `<Play>`: the SIT tone, a DID's
//! uploaded greeting and an uploaded menu or announcement prompt. Every handler is idempotent on CallSid /
//! RecordingSid: Twilio retries and duplicates callbacks.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, body::Body};
use chrono::Utc;
use proto::types::{DeviceId, DidId, Disposition, RouteId, UserId};

use crate::AppState;
use crate::rules::{Action, CallFacts, Decision, decide};
use crate::ruleset::Snapshot;
use crate::twiml::{self, paths};
use crate::webhooks::WebhookParams;

/// The signed voice routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::INCOMING, post(incoming))
        .route(paths::DIAL_RESULT, post(dial_result))
        .route(paths::VM_DONE, post(vm_done))
        .route(paths::RECORDING, post(recording))
        .route(paths::TRANSCRIPTION, post(transcription))
        .route(paths::STATUS, post(status))
        .route(paths::MENU, post(menu))
}

/// Unsigned media Twilio fetches for `<Play>`.
pub fn public_routes() -> Router<AppState> {
    Router::new()
        .route(paths::SIT_TONE, get(sit_tone))
        .route(&format!("{}/{{did_id}}", paths::GREETING), get(greeting))
        .route(&format!("{}/{{name}}", paths::PROMPT), get(prompt))
}

/// A TwiML answer.
pub fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

/// Builds the facts of a call from the webhook params.
pub fn facts(
    p: &WebhookParams,
    addons: &std::collections::HashMap<String, crate::rules::Vendor>,
) -> CallFacts {
    CallFacts {
        from: p.str("From").to_owned(),
        to: p.str("To").to_owned(),
        spam_score: p
            .get("AddOns")
            .and_then(|a| crate::rules::spam_score(a, addons)),
        stir_verstat: p
            .get("StirVerstat")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    }
}

/// The TwiML context for a call to `did`.
pub fn ctx(st: &AppState, call_sid: &str, did: &str) -> twiml::Ctx {
    ctx_for(st, &st.rules.get(), call_sid, did)
}

/// [`ctx`] with the DID details of `snap`.
pub fn ctx_for(st: &AppState, snap: &Snapshot, call_sid: &str, did: &str) -> twiml::Ctx {
    let s = st.settings.get();
    let info = snap.dids.get(did);
    let public = s
        .str("system.public_url")
        .trim()
        .trim_end_matches('/')
        .to_owned();
    let greeting_url = info
        .filter(|i| !i.greeting_path.is_empty())
        .map(|i| format!("{public}{}/{}", paths::GREETING, i.id));
    let greeting_text = info
        .map(|i| i.greeting_text.trim())
        .filter(|t| !t.is_empty())
        .unwrap_or(s.str("voicemail.greeting"))
        .to_owned();
    // The address Twilio reaches sipd at: the admin's, else what sipd
    // learned (trunk Via, STUN) or uses by default.
    let sip_host = match s.str("sip.public_address").trim() {
        "" => st.sip_host.get().unwrap_or_else(|| "127.0.0.1".to_owned()),
        h => h.to_owned(),
    };
    let num = |k: &str, d: u64| match s.u64(k) {
        0 => d,
        n => n,
    } as u32;
    twiml::Ctx {
        public_url: public,
        sip_host,
        sip_port: st.sip_port,
        trunk_username: s.str("twilio.trunk_username").to_owned(),
        trunk_password: s.str("twilio.trunk_password").to_owned(),
        call_sid: call_sid.to_owned(),
        did: did.to_owned(),
        ring_timeout: num("calls.ring_timeout", 30),
        vm_max_length: num("voicemail.max_length", 180),
        vm_silence_timeout: num("voicemail.silence_timeout", 10),
        greeting_text,
        greeting_url,
        trust: None,
    }
}

async fn incoming(State(st): State<AppState>, Extension(p): Extension<WebhookParams>) -> Response {
    let call_sid = p.str("CallSid").to_owned();
    let snap = st.rules.fresh().await;
    let f = facts(&p, &snap.addons);
    let (d, doc) = answer(&st, &snap, &f, &call_sid, Utc::now()).await;
    tracing::info!(
        call_sid = %call_sid, from = %f.from, to = %f.to, rule = %d.rule,
        action = d.action.name(), reason = %d.reason, spam_score = ?f.spam_score,
        stir_verstat = ?f.stir_verstat, "call decision"
    );
    if let Err(e) = record_decision(&st, &call_sid, &f, &d).await {
        // Twilio still gets its answer; the CDR is best effort here.
        tracing::error!(call_sid = %call_sid, error = %e, "cannot record the call decision");
    }
    xml(doc)
}

/// The decision for a call and its TwiML: the one path of a real call and
/// of the "test a call" panel, so what the panel shows is what Twilio gets.
pub async fn answer(
    st: &AppState,
    snap: &Snapshot,
    f: &CallFacts,
    call_sid: &str,
    now: chrono::DateTime<Utc>,
) -> (Decision, String) {
    // A number with voice turned off takes no calls, whatever the rules say.
    let voice_off = sqlx::query_scalar::<_, bool>(
        "SELECT NOT voice_enabled FROM dids WHERE number = ?",
    )
    .bind(&f.to)
    .fetch_optional(&st.pool)
    .await
    .unwrap_or_else(|e| {
        tracing::error!(call_sid = %call_sid, error = %e, "cannot read the number's voice setting");
        None
    })
    .unwrap_or(false);
    let mut d = if voice_off {
        Decision {
            action: Action::Reject { busy: false },
            stage: crate::rules::Stage::Default,
            rule: "voice_disabled".into(),
            reason: "voice is turned off for this number".into(),
            route_id: None,
        }
    } else {
        decide(f, &snap.rules, now)
    };
    fill_owner_devices(st, snap, &f.to, call_sid, &mut d.action).await;
    // The address sipd learned may be seconds old (a call right after
    // start): read it now rather than from the periodic copy.
    st.sip_host.refresh(&st.pool).await;
    let mut c = ctx_for(st, snap, call_sid, &f.to);
    c.trust = twiml::trust(f, snap.rules.spam_threshold);
    let doc = twiml::for_decision(&d, &c);
    (d, doc)
}

/// Names the devices of a ring action's "the owner's devices": sipd only
/// knows device ids (and answers 404 to an empty list). The owner is read
/// afresh: a number given an owner a moment ago may not be in the rules
/// snapshot yet.
async fn fill_owner_devices(
    st: &AppState,
    snap: &Snapshot,
    did: &str,
    call_sid: &str,
    action: &mut Action,
) {
    let Action::Ring { devices, owner, .. } = action else {
        return;
    };
    if !*owner {
        return;
    }
    let fresh_owner =
        sqlx::query_scalar::<_, Option<UserId>>("SELECT owner_user_id FROM dids WHERE number = ?")
            .bind(did)
            .fetch_optional(&st.pool)
            .await
            .ok()
            .flatten()
            .flatten();
    let Some(owner) = fresh_owner.or_else(|| snap.dids.get(did).and_then(|i| i.owner_user_id))
    else {
        return;
    };
    match sqlx::query_scalar::<_, DeviceId>("SELECT id FROM devices WHERE user_id = ? ORDER BY id")
        .bind(owner)
        .fetch_all(&st.pool)
        .await
    {
        Ok(ids) => {
            for id in ids {
                if !devices.contains(&id) {
                    devices.push(id);
                }
            }
        }
        Err(e) => {
            tracing::error!(call_sid = %call_sid, error = %e, "cannot read the owner's devices")
        }
    }
}

#[derive(serde::Deserialize)]
struct MenuQuery {
    route: RouteId,
    #[serde(default)]
    path: String,
    #[serde(default)]
    tries: u32,
}

/// A key pressed in a menu (`Digits`), or none (the `<Redirect>` after the
/// `<Gather>` timed out).
async fn menu(
    State(st): State<AppState>,
    Query(q): Query<MenuQuery>,
    Extension(p): Extension<WebhookParams>,
) -> Response {
    let call_sid = p.str("CallSid").to_owned();
    let snap = st.rules.fresh().await;
    let Some(root) = snap.rules.menu(q.route) else {
        // The route was deleted or is no longer a menu: voicemail, never
        // silence.
        tracing::warn!(call_sid = %call_sid, route = %q.route, "menu route gone; voicemail");
        let c = ctx_for(&st, &snap, &call_sid, p.str("To"));
        return xml(twiml::voicemail(&c, None, false));
    };
    let key = p.get("Digits");
    let rule: Option<String> =
        sqlx::query_scalar("SELECT rule_name FROM voice_calls WHERE call_sid = ?")
            .bind(&call_sid)
            .fetch_optional(&st.pool)
            .await
            .ok()
            .flatten();
    // A key may already have been handled (Twilio retries): the rule keeps
    // one path.
    let rule = rule.unwrap_or_else(|| format!("route:{}", q.route));
    let rule = rule.split(" > ").next().unwrap_or_default();
    let (doc, step, exit) = menu_answer(
        &st,
        &snap,
        root,
        MenuAt {
            route: q.route,
            rule,
            path: &q.path,
            tries: q.tries,
        },
        key,
        &call_sid,
        p.str("To"),
    )
    .await;
    tracing::info!(call_sid = %call_sid, route = %q.route, path = %q.path, key = ?key, step = ?step, "menu");
    if let Some(d) = exit
        && let Err(e) = record_menu_exit(&st, &call_sid, &d).await
    {
        tracing::error!(call_sid = %call_sid, error = %e, "cannot record the menu choice");
    }
    xml(doc)
}

/// Where a caller is in the menus of a route.
#[derive(Debug, Clone, Copy)]
pub struct MenuAt<'a> {
    pub route: RouteId,
    /// The route's rule name, e.g. `route:5:Main menu`.
    pub rule: &'a str,
    /// Keys pressed so far.
    pub path: &'a str,
    /// Replays of this menu so far.
    pub tries: u32,
}

/// The TwiML after `key` at `at`, the step, and (when the call leaves the
/// menus) the decision it leaves with, named by the keys pressed. The one
/// path of a real call and of "test a call".
pub async fn menu_answer(
    st: &AppState,
    snap: &Snapshot,
    root: &proto::routing::MenuAction,
    at: MenuAt<'_>,
    key: Option<&str>,
    call_sid: &str,
    did: &str,
) -> (String, crate::menu::Step, Option<Decision>) {
    let route = at.route;
    let c = ctx_for(st, snap, call_sid, did);
    let step = crate::menu::step(root, at.path, key, at.tries);
    let (action, path) = match &step {
        crate::menu::Step::Menu {
            path,
            tries,
            notice,
        } => {
            let doc = match root.submenu(path) {
                Some(m) => twiml::menu(&c, m, route, path, *tries, *notice),
                None => twiml::voicemail(&c, None, false),
            };
            return (doc, step, None);
        }
        crate::menu::Step::Done { action, path } => (action.clone(), path.clone()),
    };
    let mut d = Decision {
        action: Action::from(action),
        stage: crate::rules::Stage::Route,
        rule: crate::menu::rule_with_path(at.rule, &path),
        reason: if path.is_empty() {
            "no key pressed in the menu".to_owned()
        } else {
            format!("keys pressed in the menu: {path}")
        },
        route_id: Some(route),
    };
    fill_owner_devices(st, snap, did, call_sid, &mut d.action).await;
    let doc = twiml::for_decision(&d, &c);
    (doc, step, Some(d))
}

/// The call left its menu: the decision and the CDR name the keys, and a
/// call that ends here (voicemail, announcement) gets its disposition.
async fn record_menu_exit(st: &AppState, call_sid: &str, d: &Decision) -> Result<(), sqlx::Error> {
    if call_sid.is_empty() {
        return Ok(());
    }
    sqlx::query("UPDATE voice_calls SET action = ?, rule_name = ?, reason = ? WHERE call_sid = ?")
        .bind(d.action.name())
        .bind(&d.rule)
        .bind(&d.reason)
        .bind(call_sid)
        .execute(&st.pool)
        .await?;
    crate::call_record::record(
        st,
        call_sid,
        crate::call_record::menu_exit(&d.rule, &d.reason, d.disposition()),
    )
    .await;
    Ok(())
}

/// Stores the decision (`voice_calls`) and, for calls that never reach
/// sipd, the CDR. Idempotent on CallSid (Twilio retries webhooks).
async fn record_decision(
    st: &AppState,
    call_sid: &str,
    f: &CallFacts,
    d: &Decision,
) -> Result<(), sqlx::Error> {
    if call_sid.is_empty() {
        return Ok(());
    }
    let snap = st.rules.get();
    let info = snap.dids.get(&f.to);
    let (did_id, user_id) = match info {
        Some(i) => (Some(i.id), i.owner_user_id),
        // A number added a moment ago may not be in the rules yet.
        None => sqlx::query_as::<_, (DidId, Option<UserId>)>(
            "SELECT id, owner_user_id FROM dids WHERE number = ?",
        )
        .bind(&f.to)
        .fetch_optional(&st.pool)
        .await?
        .map_or((None, None), |(id, owner)| (Some(id), owner)),
    };
    let now = proto::time::now();
    sqlx::query(
        "INSERT INTO voice_calls (call_sid, did_id, user_id, from_number, to_number, action, rule_name, \
                                  reason, spam_score, stir_verstat, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(call_sid) DO NOTHING",
    )
    .bind(call_sid)
    .bind(did_id)
    .bind(user_id)
    .bind(&f.from)
    .bind(&f.to)
    .bind(d.action.name())
    .bind(&d.rule)
    .bind(&d.reason)
    .bind(f.spam_score)
    .bind(&f.stir_verstat)
    .bind(&now)
    .execute(&st.pool)
    .await?;
    // Ringing goes to sipd, which writes the CDR of the call it bridges.
    if matches!(d.action, Action::Ring { .. }) {
        return Ok(());
    }
    let disposition = d.disposition();
    let ended = matches!(disposition, Disposition::Blocked | Disposition::Rejected)
        && !matches!(
            d.action,
            Action::Block {
                how: crate::rules::BlockAction::SilentVoicemail
            }
        );
    let change = crate::call_record::decided(disposition, ended, &f.from, &f.to);
    crate::call_record::record(st, call_sid, change).await;
    Ok(())
}

#[derive(serde::Deserialize, Default)]
struct DialQuery {
    #[serde(default)]
    forward: Option<String>,
}

async fn dial_result(
    State(st): State<AppState>,
    Query(q): Query<DialQuery>,
    Extension(p): Extension<WebhookParams>,
) -> Response {
    let call_sid = p.str("CallSid").to_owned();
    let status = p.str("DialCallStatus");
    let forwarded = q.forward.is_some();
    tracing::info!(call_sid = %call_sid, dial_status = status, sip_code = p.str("DialSipResponseCode"), forwarded, "dial result");
    if matches!(status, "completed" | "answered") {
        if forwarded {
            let dur: i64 = p.str("DialCallDuration").parse().unwrap_or(0);
            let change = crate::call_record::forward_answered(dur);
            crate::call_record::record(&st, &call_sid, change).await;
        }
        return xml(twiml::hangup());
    }
    // Nobody answered (no-answer, busy, failed, canceled): voicemail.
    let change = crate::call_record::missed(p.str("From"), p.str("To"));
    crate::call_record::record(&st, &call_sid, change).await;
    xml(twiml::voicemail(
        &ctx(&st, &call_sid, p.str("To")),
        None,
        false,
    ))
}

#[derive(serde::Deserialize, Default)]
struct SilentQuery {
    #[serde(default)]
    silent: Option<String>,
}

async fn vm_done(
    State(st): State<AppState>,
    Query(q): Query<SilentQuery>,
    Extension(p): Extension<WebhookParams>,
) -> Response {
    if !p.str("RecordingSid").is_empty() {
        crate::voicemail::on_recording(&st, &p, q.silent.is_some()).await;
    }
    xml(twiml::hangup())
}

async fn recording(
    State(st): State<AppState>,
    Query(q): Query<SilentQuery>,
    Extension(p): Extension<WebhookParams>,
) -> Response {
    match p.str("RecordingStatus") {
        "completed" | "" => crate::voicemail::on_recording(&st, &p, q.silent.is_some()).await,
        other => tracing::warn!(
            recording_sid = p.str("RecordingSid"),
            status = other,
            error_code = p.str("ErrorCode"),
            "recording not completed"
        ),
    }
    xml(twiml::empty())
}

async fn transcription(
    State(st): State<AppState>,
    Query(q): Query<SilentQuery>,
    Extension(p): Extension<WebhookParams>,
) -> Response {
    crate::voicemail::on_transcription(&st, &p, q.silent.is_some()).await;
    xml(twiml::empty())
}

async fn status(State(st): State<AppState>, Extension(p): Extension<WebhookParams>) -> Response {
    let call_sid = p.str("CallSid");
    let call_status = p.str("CallStatus");
    let dur: i64 = p.str("CallDuration").parse().unwrap_or(0);
    tracing::info!(call_sid, call_status, duration = dur, "call status");
    let end_disposition = match call_status {
        "completed" if dur > 0 => Some(Disposition::Answered),
        "completed" | "no-answer" | "canceled" => Some(Disposition::Missed),
        "busy" => Some(Disposition::Busy),
        "failed" => Some(Disposition::Failed),
        _ => None,
    };
    if let Some(disp) = end_disposition {
        // sipd keeps a blocked, rejected or voicemail disposition, and the
        // ending of a call it bridged.
        crate::call_record::record(&st, call_sid, crate::call_record::ended(disp, dur)).await;
        // The call is over: missed or voicemail, and the final call_ended.
        crate::call_end::schedule(&st, call_sid).await;
    }
    xml(twiml::empty())
}

async fn sit_tone() -> Response {
    (
        [(header::CONTENT_TYPE, "audio/x-wav")],
        twiml::sit_tone_wav(),
    )
        .into_response()
}

/// An uploaded prompt (`prompts/<32 hex>.wav|mp3`); any other name is 404.
async fn prompt(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    let Some(name) =
        proto::routing::prompt_name(&format!("{}{name}", proto::routing::PROMPT_PREFIX))
            .map(str::to_owned)
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match tokio::fs::read(st.data_dir.join("prompts").join(&name)).await {
        Ok(bytes) => {
            let ctype = if name.ends_with(".mp3") {
                "audio/mpeg"
            } else {
                "audio/x-wav"
            };
            ([(header::CONTENT_TYPE, ctype)], Body::from(bytes)).into_response()
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn greeting(State(st): State<AppState>, Path(did_id): Path<i64>) -> Response {
    let path: Option<String> =
        sqlx::query_scalar("SELECT greeting_path FROM dids WHERE id = ? AND greeting_path != ''")
            .bind(did_id)
            .fetch_optional(&st.pool)
            .await
            .ok()
            .flatten();
    let Some(rel) = path.filter(|p| !p.contains("..")) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match tokio::fs::read(st.data_dir.join(&rel)).await {
        Ok(bytes) => {
            let ctype = if rel.ends_with(".mp3") {
                "audio/mpeg"
            } else {
                "audio/x-wav"
            };
            ([(header::CONTENT_TYPE, ctype)], Body::from(bytes)).into_response()
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}
