//! Routes under `/api/`. Handlers are thin: they check who is asking, then
//! call plain functions. Every route is registered through utoipa-axum, so
//! `/api/openapi.json` is generated from the same list that routes requests.
//!
//! A middleware in front of everything adds the security headers, refuses
//! state-changing requests without `X-Requested-With` or a matching `Origin`
//! (CSRF; webhooks and the Bearer-authenticated external API are exempt),
//! and answers writes with 503 while the database is read-only.

pub mod admin;
pub mod cdrs;
pub mod checklist;
pub mod devices;
pub mod dids;
pub mod events;
pub mod external;
pub mod hold_music;
pub mod lists;
pub mod messages;
pub mod notify_prefs;
pub mod phone;
pub mod prompts;
pub mod provision;
pub mod routes;
pub mod setup;
pub mod sip_tls;
pub mod system;
pub mod users;
pub mod voicemails;
pub mod webhooks;

use axum::extract::{DefaultBodyLimit, Request, State};

use crate::accounts::handlers as account;
use axum::Router;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::http::error::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(title = "GoSIP API", description = "REST API of the GoSIP PBX. Errors use \
        {\"error\":{\"code\",\"message\",\"details\":[{\"field\",\"message\"}]}}. Session cookie \
        `gosip_session`; state-changing requests need `X-Requested-With: gosip` or a matching Origin. \
        Lists take page, per_page (1-100, default 20), sort and order and answer \
        {items, page, per_page, total}."),
    modifiers(&BearerScheme),
    components(schemas(crate::http::error::ErrorBody))
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every documented route.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::health))
        .routes(routes!(checklist::checklist))
        .routes(routes!(checklist::twilio_setup))
        .routes(routes!(account::login))
        .routes(routes!(account::logout))
        .routes(routes!(account::me))
        .routes(routes!(account::password))
        .routes(routes!(account::settings_get, account::settings_put))
        .routes(routes!(account::settings_notify_test))
        .routes(routes!(account::dnd_get, account::dnd_put))
        .routes(routes!(account::keys_list, account::keys_create))
        .routes(routes!(account::keys_delete))
        .routes(routes!(setup::status_alias, setup::run))
        .routes(routes!(setup::status))
        .routes(routes!(setup::twilio_check))
        .routes(routes!(setup::network))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(users::reset_password))
        .routes(routes!(users::unlock))
        .routes(routes!(devices::list, devices::create))
        .routes(routes!(devices::get, devices::update, devices::delete))
        .routes(routes!(devices::qr_code))
        .routes(routes!(provision::put, provision::get, provision::delete))
        .routes(routes!(phone::ensure))
        .routes(routes!(dids::list, dids::create))
        .routes(routes!(dids::get, dids::update, dids::delete))
        .routes(routes!(dids::configure))
        .routes(routes!(dids::twilio_numbers))
        .routes(routes!(routes::list, routes::create))
        .routes(routes!(routes::get, routes::update, routes::delete))
        .routes(routes!(routes::reorder))
        .routes(routes!(routes::test_call))
        .routes(routes!(prompts::upload))
        .routes(routes!(
            hold_music::get,
            hold_music::put,
            hold_music::delete
        ))
        .routes(routes!(sip_tls::get))
        .routes(routes!(lists::block_list, lists::block_add))
        .routes(routes!(lists::block_delete))
        .routes(routes!(lists::callers_list, lists::callers_add))
        .routes(routes!(lists::callers_delete))
        .routes(routes!(lists::ar_list, lists::ar_create))
        .routes(routes!(lists::ar_get, lists::ar_update, lists::ar_delete))
        .routes(routes!(cdrs::list))
        .routes(routes!(cdrs::export))
        .routes(routes!(cdrs::get))
        .routes(routes!(cdrs::recording))
        .routes(routes!(cdrs::calls))
        .routes(routes!(cdrs::set_recording))
        .routes(routes!(cdrs::hangup))
        .routes(routes!(voicemails::list))
        .routes(routes!(voicemails::get, voicemails::delete))
        .routes(routes!(voicemails::mark_read))
        .routes(routes!(voicemails::audio))
        .routes(routes!(messages::list, messages::send))
        .routes(routes!(messages::conversations))
        .routes(routes!(messages::conversation_read))
        .routes(routes!(messages::get))
        .routes(routes!(messages::mark_read))
        .routes(routes!(messages::media))
        .routes(routes!(external::calls))
        .routes(routes!(external::messages))
        .routes(routes!(external::call))
        .routes(routes!(external::sms))
        .routes(routes!(admin::config_get, admin::config_put))
        .routes(routes!(admin::backup_now))
        .routes(routes!(admin::backups))
        .routes(routes!(admin::backup_download))
        .routes(routes!(admin::backup_check))
        .routes(routes!(admin::backup_restore))
        .routes(routes!(admin::security_events))
        .routes(routes!(admin::alerts))
        .routes(routes!(admin::alert_ack))
        .routes(routes!(admin::notify_test))
        .routes(routes!(admin::webhooks_list, admin::webhooks_create))
        .routes(routes!(admin::webhooks_update, admin::webhooks_delete))
        .routes(routes!(events::events))
        .routes(routes!(events::dashboard))
        .routes(routes!(webhooks::voice_incoming))
        .routes(routes!(webhooks::voice_status))
        .routes(routes!(webhooks::sms_incoming))
        .routes(routes!(webhooks::sms_status))
        .routes(routes!(webhooks::recording))
        .routes(routes!(webhooks::transcription))
}

/// The OpenAPI document (also served at `/api/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_router().into_openapi();
    // Routed outside `api_router` for its own body limit (1 GiB).
    doc.merge(
        OpenApiRouter::<AppState>::new()
            .routes(routes!(admin::restore))
            .routes(routes!(admin::restore_check))
            .into_openapi(),
    );
    add_error_responses(&mut doc);
    unique_operation_ids(&mut doc);
    doc.paths.paths.insert(
        "/api/openapi.json".into(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .summary(Some("This document"))
                .tag("system")
                .response("200", utoipa::openapi::Response::new("OpenAPI 3 document"))
                .build(),
        ),
    );
    doc
}

/// OpenAPI requires every operationId to be unique, and clients (and
/// schemathesis' links) find operations by it; utoipa names an operation
/// after its handler, and several modules have a `list`, `get`, `create`...
/// Each id used more than once is prefixed with the operation's tag.
fn unique_operation_ids(doc: &mut utoipa::openapi::OpenApi) {
    use std::collections::HashMap;
    fn ops(
        item: &mut utoipa::openapi::path::PathItem,
    ) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .filter_map(|o| o.as_mut())
    }
    let mut count: HashMap<String, usize> = HashMap::new();
    for item in doc.paths.paths.values_mut() {
        for op in ops(item) {
            if let Some(id) = &op.operation_id {
                *count.entry(id.clone()).or_default() += 1;
            }
        }
    }
    for item in doc.paths.paths.values_mut() {
        for op in ops(item) {
            let Some(id) = op.operation_id.clone() else {
                continue;
            };
            if count[&id] > 1 {
                let tag = op
                    .tags
                    .as_ref()
                    .and_then(|t| t.first())
                    .cloned()
                    .unwrap_or_else(|| "api".into());
                op.operation_id = Some(format!("{}_{id}", tag.replace(['-', ' '], "_")));
            }
        }
    }
}

/// Every operation can answer the standard error JSON with these statuses
/// (validation, auth, roles, not found, conflicts, rate limits, a daemon
/// down or read-only mode); documented once here instead of on every handler.
fn add_error_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
    let statuses = [
        ("400", "Malformed request"),
        ("401", "Not logged in / bad API key"),
        ("403", "Not allowed, or CSRF header missing"),
        ("404", "No such object (or not yours)"),
        ("409", "Conflicts with the current state"),
        ("410", "No longer available"),
        ("413", "Body too large"),
        ("415", "Unsupported content type"),
        ("422", "Validation failed; details name the fields"),
        ("429", "Too many requests"),
        ("503", "A daemon is down or the database is read-only"),
    ];
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            for (code, desc) in statuses {
                op.responses
                    .responses
                    .entry(code.to_owned())
                    .or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(desc)
                                .content(
                                    "application/json",
                                    ContentBuilder::new()
                                        .schema(Some(utoipa::openapi::Ref::from_schema_name(
                                            "ErrorBody",
                                        )))
                                        .build(),
                                )
                                .build(),
                        )
                    });
            }
        }
    }
}

/// The API router.
pub fn router(state: AppState) -> Router {
    let (r, _) = api_router().split_for_parts();
    // The document is built on its first request and kept as its JSON
    // (a few hundred KiB); utoipa's tree of it would hold several MiB for
    // the daemon's whole life (issue #18's memory at rest).
    let doc: std::sync::Arc<std::sync::OnceLock<axum::body::Bytes>> = Default::default();
    r.route(
        "/api/openapi.json",
        get(move || {
            let d = doc.clone();
            async move {
                let json = d.get_or_init(|| {
                    // A tree of strings and maps: serializing cannot fail.
                    serde_json::to_vec(&openapi())
                        .unwrap_or_else(|e| {
                            tracing::error!(error = %e, "the OpenAPI document did not serialize");
                            b"{}".to_vec()
                        })
                        .into()
                });
                ([(header::CONTENT_TYPE, "application/json")], json.clone())
            }
        }),
    )
    .route(
        "/api/system/restore",
        axum::routing::post(admin::restore).layer(DefaultBodyLimit::max(1 << 30)),
    )
    .route(
        "/api/system/restore/check",
        axum::routing::post(admin::restore_check).layer(DefaultBodyLimit::max(1 << 30)),
    )
    .route("/api/webhooks/{*rest}", any(webhooks::forward))
    .route(proto::sip_ws::BROWSER_PATH, get(phone::ws))
    // Phones fetching their configuration (not part of the JSON API).
    .route(
        &format!("{}/{{file}}", provision::PREFIX),
        get(provision::serve),
    )
    .route("/api/{*rest}", any(|| async { ApiError::NoRoute }))
    .layer(DefaultBodyLimit::max(8 * 1024 * 1024))
    .with_state(state)
}

/// Security headers, CSRF and read-only checks (see the module doc).
pub async fn guard(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let refresh = crate::accounts::CookieRefresh::default();
    req.extensions_mut().insert(refresh.clone());
    let secure = crate::accounts::cookies_secure(&st, req.headers());
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let api = path.starts_with("/api/");
    let exempt = path.starts_with("/api/webhooks/") || path.starts_with("/api/external/");
    let mut res = if api && writes && !exempt && !csrf_ok(&st, &req) {
        ApiError::Csrf.into_response()
    } else if api
        && writes
        && st.is_read_only()
        && !path.starts_with("/api/webhooks/")
        && !matches!(
            path.as_str(),
            "/api/auth/login"
                | "/api/auth/logout"
                | "/api/system/restore"
                | "/api/system/restore/check"
        )
        && !(path.starts_with("/api/system/backups/") && path.ends_with("/restore"))
    {
        ApiError::Unavailable(crate::health::READ_ONLY_MESSAGE.into()).into_response()
    } else {
        next.run(req).await
    };
    if let Some(token) = refresh.take()
        && !res.headers().contains_key(header::SET_COOKIE)
        && let Ok(v) = HeaderValue::from_str(&crate::accounts::session_cookie(&token, secure))
    {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    set(h, "x-frame-options", "DENY");
    set(
        h,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; font-src 'self'; \
         object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
    );
    if api && !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    res
}

/// `X-Requested-With` present, or `Origin` equal to our own origin (the Host
/// the browser used, or `system.public_url`).
fn csrf_ok(st: &AppState, req: &Request) -> bool {
    let h = req.headers();
    h.get("x-requested-with").is_some_and(|v| !v.is_empty()) || origin_ok(st, h)
}

/// `Origin` equal to our own origin (the Host the browser used, or
/// `system.public_url`).
pub(crate) fn origin_ok(st: &AppState, h: &axum::http::HeaderMap) -> bool {
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    if let Some(host) = h.get(header::HOST).and_then(|v| v.to_str().ok())
        && (origin == format!("http://{host}") || origin == format!("https://{host}"))
    {
        return true;
    }
    let public = st.settings.get().str("system.public_url").trim().to_owned();
    url::Url::parse(&public)
        .ok()
        .is_some_and(|u| u.origin().ascii_serialization() == origin)
}
