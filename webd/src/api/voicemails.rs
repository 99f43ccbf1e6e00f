//! `/api/voicemails`: the caller's voicemail (admins see all), read state,
//! delete (row and audio file), audio with `Range`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::accounts::Caller;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{Id, Ok_, Page, PageParams, ValidQuery, ok};
use proto::types::{CdrId, DidId, UserId};

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Voicemail {
    pub id: i64,
    #[schema(value_type = Option<i64>)]
    pub cdr_id: Option<CdrId>,
    #[schema(value_type = Option<i64>)]
    pub user_id: Option<UserId>,
    #[schema(value_type = Option<i64>)]
    pub did_id: Option<DidId>,
    pub from_number: String,
    pub transcript: Option<String>,
    /// pending, completed, failed, unavailable
    pub transcript_status: String,
    pub duration: i64,
    pub is_read: bool,
    pub created_at: String,
    /// `/api/voicemails/{id}/audio` when the audio is stored locally.
    #[sqlx(skip)]
    pub audio_url: Option<String>,
    #[serde(skip)]
    #[sqlx(rename = "audio_url")]
    pub audio_path: Option<String>,
}

const COLS: &str = "id, cdr_id, user_id, did_id, from_number, transcript, transcript_status, \
                    duration, is_read, created_at, audio_url";

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VoicemailFilter {
    /// `true` or `false`.
    #[param(value_type = Option<bool>)]
    pub is_read: Option<String>,
}

fn fix(mut v: Voicemail) -> Voicemail {
    if v.audio_path
        .as_deref()
        .is_some_and(|p| !p.is_empty() && !p.contains("://"))
    {
        v.audio_url = Some(format!("/api/voicemails/{}/audio", v.id));
    }
    v
}

#[utoipa::path(get, path = "/api/voicemails", tag = "voicemails", params(PageParams, VoicemailFilter),
    responses((status = 200, body = Page<Voicemail>), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    ValidQuery(p): ValidQuery<PageParams>,
    ValidQuery(f): ValidQuery<VoicemailFilter>,
) -> ApiResult<Json<Page<Voicemail>>> {
    let pg = p.resolve(
        &[
            ("created_at", "created_at"),
            ("duration", "duration"),
            ("from_number", "from_number"),
        ],
        "DESC",
    )?;
    let read = match f.is_read.as_deref() {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::field("is_read", "must be true or false")),
    };
    let filter = "(?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR is_read = ?2)";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM voicemails WHERE {filter}"
    )))
    .bind(caller.scope())
    .bind(read)
    .fetch_one(&st.pool)
    .await?;
    let items: Vec<Voicemail> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM voicemails WHERE {filter} ORDER BY {} LIMIT ?3 OFFSET ?4",
        pg.order_by
    )))
    .bind(caller.scope())
    .bind(read)
    .bind(pg.limit())
    .bind(pg.offset())
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(pg.wrap(items.into_iter().map(fix).collect(), total)))
}

async fn load(st: &AppState, caller: &Caller, id: i64) -> ApiResult<Voicemail> {
    sqlx::query_as::<_, Voicemail>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM voicemails WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)"
    )))
    .bind(id)
    .bind(caller.scope())
    .fetch_optional(&st.pool)
    .await?
    .ok_or(ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/voicemails/{id}", tag = "voicemails", params(("id" = i64, Path)),
    responses((status = 200, body = Voicemail), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> ApiResult<Json<Voicemail>> {
    Ok(Json(fix(load(&st, &caller, id).await?)))
}

#[derive(Deserialize, ToSchema, Default)]
pub struct ReadBody {
    /// Default true; false marks it unread again.
    pub is_read: Option<bool>,
}

/// Mark read (or unread with `{"is_read": false}`); the body is optional.
#[utoipa::path(put, path = "/api/voicemails/{id}/read", tag = "voicemails", params(("id" = i64, Path)),
    request_body(content = Option<ReadBody>),
    responses((status = 200, body = Voicemail), (status = 404, body = ErrorBody)))]
pub async fn mark_read(
    State(st): State<AppState>,
    caller: Caller,
    Id(id): Id,
    body: axum::body::Bytes,
) -> ApiResult<Json<Voicemail>> {
    let b = optional_body::<ReadBody>(&body)?;
    load(&st, &caller, id).await?;
    set_read(
        &st,
        proto::pb::twiliod::Readable::Voicemail,
        id,
        b.is_read.unwrap_or(true),
    )
    .await?;
    Ok(Json(fix(load(&st, &caller, id).await?)))
}

/// Asks twiliod, which owns voicemails and messages, to mark one read or
/// unread; the caller's right to it is checked before.
pub async fn set_read(
    st: &AppState,
    item: proto::pb::twiliod::Readable,
    id: i64,
    is_read: bool,
) -> ApiResult<()> {
    let mut c = proto::pb::twiliod::twiliod_client::TwiliodClient::new(st.peers.twiliod.clone());
    let r = c
        .set_read(proto::pb::twiliod::SetReadRequest {
            item: item as i32,
            id,
            is_read,
        })
        .await
        .map_err(|s| crate::http::peer_error("twiliod", s))?
        .into_inner();
    if r.found {
        Ok(())
    } else {
        Err(ApiError::NotFound)
    }
}

/// An optional JSON body: empty means defaults.
pub fn optional_body<T: serde::de::DeserializeOwned + Default>(b: &[u8]) -> ApiResult<T> {
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(b).map_err(|e| ApiError::field("body", e.to_string()))
}

#[utoipa::path(delete, path = "/api/voicemails/{id}", tag = "voicemails", params(("id" = i64, Path)),
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> ApiResult<Json<Ok_>> {
    load(&st, &caller, id).await?;
    // twiliod owns voicemails: it deletes the row and the audio.
    let mut c = proto::pb::twiliod::twiliod_client::TwiliodClient::new(st.peers.twiliod.clone());
    let r = c
        .delete_voicemail(proto::pb::twiliod::DeleteVoicemailRequest { id })
        .await
        .map_err(|s| crate::http::peer_error("twiliod", s))?
        .into_inner();
    if !r.found {
        return Err(ApiError::NotFound);
    }
    Ok(ok())
}

/// The voicemail audio (`Range` supported).
#[utoipa::path(get, path = "/api/voicemails/{id}/audio", tag = "voicemails", params(("id" = i64, Path)),
    responses((status = 200, content_type = "audio/wav", description = "audio"),
              (status = 206, description = "partial content"), (status = 404, body = ErrorBody)))]
pub async fn audio(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Id(id): Id,
) -> ApiResult<Response> {
    let v = load(&st, &caller, id).await?;
    let path = v.audio_path.ok_or(ApiError::NotFound)?;
    crate::files::serve(&st.data_dir, &path, &headers).await
}
