//! `/api/messages`: SMS/MMS of the caller's numbers (admins see all),
//! conversations, read state, sending through twiliod's durable queue, and
//! MMS media streamed from the data dir.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::voicemails::optional_body;
use crate::AppState;
use crate::accounts::Caller;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{
    Check, Conditions, CursorPage, CursorParams, Id, JsonPage, Page, PageParams, ValidJson,
    ValidQuery, default_country, peer_error,
};
use proto::types::{DidId, UserId};

#[derive(Debug, Serialize, ToSchema)]
pub struct Media {
    pub url: String,
    pub content_type: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    pub id: i64,
    pub message_sid: Option<String>,
    pub direction: String,
    pub from_number: String,
    pub to_number: String,
    #[schema(value_type = Option<i64>)]
    pub did_id: Option<DidId>,
    #[schema(value_type = Option<i64>)]
    pub user_id: Option<UserId>,
    pub body: String,
    pub media: Vec<Media>,
    /// Kept for the UI: same as `media`.
    pub media_urls: Vec<Media>,
    pub status: String,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub is_read: bool,
}

type Row = (
    i64,
    Option<String>,
    String,
    String,
    String,
    Option<DidId>,
    Option<UserId>,
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
    String,
    String,
    bool,
);
const COLS: &str = "id, message_sid, direction, from_number, to_number, did_id, user_id, body, \
    media_urls, status, error_code, error_message, created_at, updated_at, is_read";

fn media_paths(json: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|m| match m {
                    Value::String(s) => (s.clone(), String::new()),
                    o => (
                        o.get("path")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        o.get("content_type")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    ),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn from_row(r: Row) -> Message {
    let media: Vec<Media> = media_paths(&r.8)
        .into_iter()
        .enumerate()
        .map(|(i, (_, ct))| Media {
            url: format!("/api/messages/{}/media/{i}", r.0),
            content_type: ct,
        })
        .collect();
    Message {
        id: r.0,
        message_sid: r.1,
        direction: r.2,
        from_number: r.3,
        to_number: r.4,
        did_id: r.5,
        user_id: r.6,
        body: r.7,
        media_urls: media
            .iter()
            .map(|m| Media {
                url: m.url.clone(),
                content_type: m.content_type.clone(),
            })
            .collect(),
        media,
        status: r.9,
        error_code: r.10,
        error_message: r.11,
        created_at: r.12,
        updated_at: r.13,
        is_read: r.14,
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageFilter {
    /// The other party: with `our_number`, one conversation.
    pub peer: Option<String>,
    /// Our number (a DID) the messages went to or came from.
    pub our_number: Option<String>,
    #[param(pattern = "^(inbound|outbound)$")]
    pub direction: Option<String>,
    #[param(value_type = Option<i64>)]
    pub did_id: Option<String>,
    #[param(value_type = Option<bool>)]
    pub is_read: Option<String>,
}

#[utoipa::path(get, path = "/api/messages", tag = "messages", operation_id = "messages_list", params(PageParams, CursorParams, MessageFilter),
    responses((status = 200, body = CursorPage<Message>), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    ValidQuery(p): ValidQuery<PageParams>,
    ValidQuery(cur): ValidQuery<CursorParams>,
    ValidQuery(f): ValidQuery<MessageFilter>,
) -> ApiResult<JsonPage> {
    let pg = p
        .resolve(
            &[("created_at", "created_at"), ("status", "status")],
            "DESC",
        )?
        .with_cursor(&cur)?;
    let mut c = Check::new();
    let nonempty = |o: Option<String>| o.filter(|s| !s.trim().is_empty());
    let country = default_country(&st);
    let peer = nonempty(f.peer).map(|p| c.number("peer", &p, &country));
    let ours = nonempty(f.our_number).map(|p| c.number("our_number", &p, &country));
    let direction = nonempty(f.direction);
    if let Some(d) = &direction {
        c.one_of("direction", d, &["inbound", "outbound"]);
    }
    let did = match nonempty(f.did_id) {
        None => None,
        Some(s) => match s.parse::<i64>() {
            Ok(v) => Some(DidId(v)),
            Err(_) => {
                c.fail("did_id", "must be a number");
                None
            }
        },
    };
    let read = match nonempty(f.is_read).as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            c.fail("is_read", "must be true or false");
            None
        }
    };
    c.done()?;
    // Filters and sorts only on columns in the webd_messages_updated
    // trigger's list (migration 0503), or cached totals miss updates.
    let mut w = Conditions::default();
    if let Some(uid) = caller.scope() {
        w.add("user_id = ?", uid);
    }
    // The other party is the sender of what came in and the recipient of
    // what went out; our number is the other end.
    if let Some(p) = &peer {
        w.add(
            "((direction = 'inbound' AND from_number = ?) OR (direction = 'outbound' AND to_number = ?))",
            p,
        );
    }
    if let Some(o) = &ours {
        w.add(
            "((direction = 'inbound' AND to_number = ?) OR (direction = 'outbound' AND from_number = ?))",
            o,
        );
    }
    if let Some(d) = &direction {
        w.add("direction = ?", d);
    }
    if let Some(d) = did {
        w.add("did_id = ?", d);
    }
    if let Some(r) = read {
        w.add("is_read = ?", i64::from(r));
    }
    Ok(w.page_json(&st, COLS, JSON_ITEM, "messages", &pg).await?)
}

/// The `media` list of a page row `r` in SQL: one entry per element of the
/// `media_urls` array (none when it is not an array), as [`media_paths`]
/// and [`from_row`] make it. Most messages have none: `[]` skips json_each.
macro_rules! json_media {
    () => {
        "CASE WHEN r.media_urls = '[]' THEN json('[]') ELSE json((SELECT json_group_array(json_object(\
    'url', '/api/messages/' || r.id || '/media/' || j.key, \
    'content_type', CASE WHEN j.type = 'object' AND json_type(j.value, '$.content_type') = 'text' \
      THEN json_extract(j.value, '$.content_type') ELSE '' END) ORDER BY j.key) \
    FROM json_each(CASE WHEN json_valid(r.media_urls) AND json_type(r.media_urls) = 'array' \
      THEN r.media_urls ELSE '[]' END) AS j)) END"
    };
}

/// A [`Message`] as SQLite's `json_object` over a page row `r` (same fields,
/// order and values as the struct's serde form; held together by
/// `messages_list_json_matches_the_typed_form` in webd/tests/lists.rs).
const JSON_ITEM: &str = concat!(
    "json_object('id', r.id, 'message_sid', r.message_sid, 'direction', r.direction, \
     'from_number', r.from_number, 'to_number', r.to_number, 'did_id', r.did_id, \
     'user_id', r.user_id, 'body', r.body, 'media', ",
    json_media!(),
    ", 'media_urls', ",
    json_media!(),
    ", 'status', r.status, 'error_code', r.error_code, 'error_message', r.error_message, \
     'created_at', r.created_at, 'updated_at', r.updated_at, \
     'is_read', json(CASE WHEN r.is_read THEN 'true' ELSE 'false' END))"
);

async fn load_row(st: &AppState, caller: &Caller, id: i64) -> ApiResult<Row> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM messages WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)"
    )))
    .bind(id)
    .bind(caller.scope())
    .fetch_optional(&st.pool)
    .await?
    .ok_or(ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/messages/{id}", tag = "messages", operation_id = "messages_get", params(("id" = i64, Path)),
    responses((status = 200, body = Message), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> ApiResult<Json<Message>> {
    Ok(Json(from_row(load_row(&st, &caller, id).await?)))
}

/// Mark read (or unread with `{"is_read": false}`); the body is optional.
#[utoipa::path(put, path = "/api/messages/{id}/read", tag = "messages", operation_id = "messages_mark_read", params(("id" = i64, Path)),
    request_body(content = Option<super::voicemails::ReadBody>),
    responses((status = 200, body = Message), (status = 404, body = ErrorBody)))]
pub async fn mark_read(
    State(st): State<AppState>,
    caller: Caller,
    Id(id): Id,
    body: axum::body::Bytes,
) -> ApiResult<Json<Message>> {
    let b = optional_body::<super::voicemails::ReadBody>(&body)?;
    load_row(&st, &caller, id).await?;
    super::voicemails::set_read(
        &st,
        proto::pb::twiliod::Readable::Message,
        id,
        b.is_read.unwrap_or(true),
    )
    .await?;
    Ok(Json(from_row(load_row(&st, &caller, id).await?)))
}

/// MMS media of a message.
#[utoipa::path(get, path = "/api/messages/{id}/media/{n}", tag = "messages",
    params(("id" = i64, Path), ("n" = i64, Path)),
    responses((status = 200, description = "media file"), (status = 404, body = ErrorBody)))]
pub async fn media(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((id, n)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id: i64 = id.parse().map_err(|_| ApiError::NotFound)?;
    let n: usize = n.parse().map_err(|_| ApiError::NotFound)?;
    let row = load_row(&st, &caller, id).await?;
    let (path, _) = media_paths(&row.8)
        .into_iter()
        .nth(n)
        .ok_or(ApiError::NotFound)?;
    crate::files::serve(&st.data_dir, &path, &headers).await
}

#[derive(Serialize, sqlx::FromRow, ToSchema)]
pub struct Conversation {
    /// The other party.
    pub peer: String,
    /// Our number in the conversation.
    pub our_number: String,
    pub last_at: String,
    pub last_body: String,
    pub last_direction: String,
    pub unread: i64,
    pub total: i64,
}

/// Conversations (one per other party and our number), newest first.
#[utoipa::path(get, path = "/api/messages/conversations", tag = "messages", params(PageParams),
    responses((status = 200, body = Page<Conversation>)))]
pub async fn conversations(
    State(st): State<AppState>,
    caller: Caller,
    ValidQuery(p): ValidQuery<PageParams>,
) -> ApiResult<Json<Page<Conversation>>> {
    let pg = p.resolve(&[("last_at", "last_at")], "DESC")?;
    let base = "SELECT CASE WHEN direction = 'inbound' THEN from_number ELSE to_number END AS peer, \
        CASE WHEN direction = 'inbound' THEN to_number ELSE from_number END AS our_number, \
        id, created_at, body, direction, is_read FROM messages WHERE (?1 IS NULL OR user_id = ?1)";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM (SELECT DISTINCT peer, our_number FROM ({base}))"
    )))
    .bind(caller.scope())
    .fetch_one(&st.pool)
    .await?;
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH m AS ({base}), g AS (SELECT peer, our_number, MAX(id) AS last_id, \
           SUM(CASE WHEN direction = 'inbound' AND NOT is_read THEN 1 ELSE 0 END) AS unread, COUNT(*) AS total \
           FROM m GROUP BY peer, our_number) \
         SELECT g.peer, g.our_number, m.created_at AS last_at, m.body AS last_body, \
           m.direction AS last_direction, g.unread, g.total FROM g JOIN m ON m.id = g.last_id \
         ORDER BY {}, g.last_id DESC LIMIT {} OFFSET ?2",
        pg.order_by.split(',').next().unwrap_or("last_at DESC"),
        pg.limit()
    )))
    .bind(caller.scope())
    .bind(pg.offset())
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(pg.wrap(items, total)))
}

#[derive(Deserialize, ToSchema)]
pub struct ConversationRead {
    pub peer: String,
    /// Only the conversation on this number of ours; absent: on all of them.
    pub our_number: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Marked {
    pub marked: u64,
}

/// Marks every inbound message from `peer` (to `our_number`) read.
#[utoipa::path(put, path = "/api/messages/conversations/read", tag = "messages", request_body = ConversationRead,
    responses((status = 200, body = Marked), (status = 422, body = ErrorBody)))]
pub async fn conversation_read(
    State(st): State<AppState>,
    caller: Caller,
    ValidJson(b): ValidJson<ConversationRead>,
) -> ApiResult<Json<Marked>> {
    let mut c = Check::new();
    let country = default_country(&st);
    let peer = c.number("peer", &b.peer, &country);
    let ours = b
        .our_number
        .filter(|o| !o.trim().is_empty())
        .map(|o| c.number("our_number", &o, &country));
    c.done()?;
    // twiliod owns messages; the caller's scope limits what changes.
    let mut cl = proto::pb::twiliod::twiliod_client::TwiliodClient::new(st.peers.twiliod.clone());
    let r = cl
        .conversation_read(proto::pb::twiliod::ConversationReadRequest {
            peer,
            our_number: ours.unwrap_or_default(),
            user_id: caller.scope().map_or(0, |u| u.0),
        })
        .await
        .map_err(|s| peer_error("twiliod", s))?
        .into_inner();
    Ok(Json(Marked { marked: r.marked }))
}

#[derive(Deserialize, ToSchema, Default)]
pub struct SendBody {
    /// Recipient: E.164, or a national number in the default country.
    /// `to_number` is accepted too.
    #[serde(alias = "to_number")]
    pub to: String,
    /// Our number to send from (a reply goes from the number the
    /// conversation is with); default: the caller's first SMS-enabled DID.
    #[serde(default, alias = "from_number")]
    pub from: Option<String>,
    /// The text (required unless an MMS carries an image).
    #[serde(default)]
    #[schema(max_length = 1600, pattern = r"\S")]
    pub body: String,
}

/// Send an SMS (JSON) or MMS (multipart with `to`, `from`, `body`, `media`).
/// Queued durably by twiliod; the answer is the stored message.
#[utoipa::path(post, path = "/api/messages", tag = "messages", request_body = SendBody,
    responses((status = 201, body = Message), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn send(
    State(st): State<AppState>,
    caller: Caller,
    req: Request,
) -> ApiResult<(StatusCode, Json<Message>)> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (b, media) = if is_multipart {
        let mp = Multipart::from_request(req, &st)
            .await
            .map_err(|e| ApiError::field("body", e.body_text()))?;
        read_multipart(mp).await?
    } else {
        let ValidJson(b) = ValidJson::<SendBody>::from_request(req, &st).await?;
        (b, vec![])
    };
    let id = send_message(&st, &caller, b, media).await?;
    Ok((
        StatusCode::CREATED,
        Json(from_row(load_row(&st, &caller, id).await?)),
    ))
}

const MAX_MEDIA: usize = 5 * 1024 * 1024;

/// An attached image, held in memory until the message is valid.
pub struct Upload {
    ext: &'static str,
    data: axum::body::Bytes,
}

/// The image type the bytes really are (their magic number), whatever the
/// upload claimed.
fn sniff_image(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("jpg")
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some("gif")
    } else {
        None
    }
}

/// Writes the uploads 0600 under `media/`; returns their paths relative to
/// the data dir.
fn store_uploads(st: &AppState, uploads: &[Upload]) -> ApiResult<Vec<String>> {
    use std::io::Write;
    let dir = st.data_dir.join("media");
    proto::db::private_dir(&dir).map_err(|e| ApiError::Internal(e.into()))?;
    let mut out = Vec::new();
    for u in uploads {
        let rel = format!(
            "media/outbound-{}.{}",
            crate::accounts::random_token(12),
            u.ext
        );
        let written =
            proto::db::private_file(&st.data_dir.join(&rel)).and_then(|mut f| f.write_all(&u.data));
        if let Err(e) = written {
            remove_uploads(st, &out);
            return Err(ApiError::Internal(e.into()));
        }
        out.push(rel);
    }
    Ok(out)
}

fn remove_uploads(st: &AppState, rel: &[String]) {
    for r in rel {
        let _ = std::fs::remove_file(st.data_dir.join(r));
    }
}

async fn read_multipart(mut mp: Multipart) -> ApiResult<(SendBody, Vec<Upload>)> {
    let mut b = SendBody::default();
    let mut media = Vec::new();
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| ApiError::field("body", e.body_text()))?
    {
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "to" | "to_number" => {
                b.to = field
                    .text()
                    .await
                    .map_err(|e| ApiError::field("to", e.body_text()))?
            }
            "from" | "from_number" => {
                b.from = Some(
                    field
                        .text()
                        .await
                        .map_err(|e| ApiError::field("from", e.body_text()))?,
                )
            }
            "body" => {
                b.body = field
                    .text()
                    .await
                    .map_err(|e| ApiError::field("body", e.body_text()))?
            }
            "media" => {
                let ct = field.content_type().unwrap_or("").to_owned();
                let ext = match ct.as_str() {
                    "image/png" => "png",
                    "image/jpeg" => "jpg",
                    "image/gif" => "gif",
                    _ => return Err(ApiError::field("media", "must be a PNG, JPEG or GIF image")),
                };
                let data = field
                    .bytes()
                    .await
                    .map_err(|e| ApiError::field("media", e.body_text()))?;
                if data.len() > MAX_MEDIA {
                    return Err(ApiError::field("media", "must be at most 5 MB"));
                }
                if media.len() >= 10 {
                    return Err(ApiError::field("media", "at most 10 files"));
                }
                // Nothing is written yet: only a valid message's images
                // reach the disk (see send_message).
                if sniff_image(&data) != Some(ext) {
                    return Err(ApiError::field(
                        "media",
                        "is not the PNG, JPEG or GIF image it claims to be",
                    ));
                }
                media.push(Upload { ext, data });
            }
            _ => {}
        }
    }
    Ok((b, media))
}

/// Validates and hands a message to twiliod; returns the message id.
pub async fn send_message(
    st: &AppState,
    caller: &Caller,
    b: SendBody,
    media: Vec<Upload>,
) -> ApiResult<i64> {
    let mut c = Check::new();
    let country = default_country(st);
    let to = c.number("to", &b.to, &country);
    if b.body.trim().is_empty() && media.is_empty() {
        c.fail("body", "is required (or attach an image)");
    }
    c.len("body", &b.body, 0, 1600);
    let from = b
        .from
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty());
    let from = from.map(|f| c.number("from", &f, &country));
    c.done()?;
    // Users send only from numbers they own; admins from any DID.
    let from: Option<String> = sqlx::query_scalar(
        "SELECT number FROM dids WHERE (?1 IS NULL OR number = ?1) AND (?2 IS NULL OR owner_user_id = ?2) \
         AND sms_enabled ORDER BY id LIMIT 1",
    )
    .bind(&from)
    .bind(caller.scope())
    .fetch_optional(&st.pool)
    .await?;
    let Some(from) = from else {
        return Err(ApiError::field(
            "from",
            "is not one of your SMS-enabled numbers",
        ));
    };
    // Valid: now the images may be written (0600), and go if twiliod
    // does not take the message.
    let media = store_uploads(st, &media)?;
    let mut cl = proto::pb::twiliod::twiliod_client::TwiliodClient::new(st.peers.twiliod.clone());
    let r = cl
        .send_message(proto::pb::twiliod::SendMessageRequest {
            user_id: caller.id.0,
            from_number: from,
            to_number: to,
            body: b.body,
            media_paths: media.clone(),
        })
        .await
        .map_err(|s| {
            remove_uploads(st, &media);
            peer_error("twiliod", s)
        })?
        .into_inner();
    Ok(r.message_id)
}
