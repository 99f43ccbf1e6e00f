//! Conversations for the UI: messages grouped by DID and the other party's
//! number (`peer` = `from_number` of inbound, `to_number` of outbound rows),
//! unread counts (inbound rows with `is_read = FALSE`) and mark-read.
//!
//! Visibility: `messages.user_id` is the DID owner (the conversation's owner,
//! also on outbound rows), so a user sees `user_id = me`; an admin sees all.
//! webd may call these functions directly (twiliod is a workspace crate) or
//! copy the SQL; the shape is:
//!
//! ```sql
//! SELECT did_id, CASE WHEN direction = 'inbound' THEN from_number ELSE to_number END AS peer,
//!        MAX(id) AS last_id, COUNT(*) AS total,
//!        SUM(direction = 'inbound' AND NOT is_read) AS unread
//! FROM messages WHERE (?1 IS NULL OR user_id = ?1)
//! GROUP BY did_id, peer ORDER BY last_id DESC LIMIT ?2 OFFSET ?3
//! ```

use serde::Serialize;
use sqlx::SqlitePool;

/// Whose messages a query covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// An admin: everything.
    All,
    /// A user: conversations of the DIDs they own.
    User(i64),
}

impl Scope {
    fn user(self) -> Option<i64> {
        match self {
            Scope::All => None,
            Scope::User(u) => Some(u),
        }
    }
}

/// One conversation in the list.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Conversation {
    pub did_id: Option<i64>,
    pub did_number: String,
    pub peer: String,
    pub total: i64,
    pub unread: i64,
    pub last_id: i64,
    pub last_at: String,
    pub last_body: String,
    pub last_direction: String,
}

/// One message as the UI shows it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Message {
    pub id: i64,
    pub message_sid: Option<String>,
    pub direction: String,
    pub from_number: String,
    pub to_number: String,
    pub did_id: Option<i64>,
    pub body: String,
    /// JSON array of `{"path","content_type"}`.
    pub media_urls: String,
    pub status: String,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub created_at: String,
    pub is_read: bool,
}

/// The other party's number of a row (a constant: the SQL below is built
/// only from constants).
macro_rules! peer {
    () => {
        "CASE WHEN direction = 'inbound' THEN from_number ELSE to_number END"
    };
}

/// Conversations, most recent first.
pub async fn list(
    pool: &SqlitePool,
    scope: Scope,
    limit: i64,
    offset: i64,
) -> Result<Vec<Conversation>, sqlx::Error> {
    let sql = concat!(
        "WITH c AS (SELECT did_id, ",
        peer!(),
        " AS peer, MAX(id) AS last_id, COUNT(*) AS total, \
           SUM(direction = 'inbound' AND NOT is_read) AS unread \
           FROM messages WHERE (?1 IS NULL OR user_id = ?1) GROUP BY did_id, peer) \
         SELECT c.did_id, COALESCE(d.number, m.to_number) AS did_number, c.peer, c.total, c.unread, \
           c.last_id, m.created_at AS last_at, m.body AS last_body, m.direction AS last_direction \
         FROM c JOIN messages m ON m.id = c.last_id LEFT JOIN dids d ON d.id = c.did_id \
         ORDER BY c.last_id DESC LIMIT ?2 OFFSET ?3"
    );
    sqlx::query_as(sql)
        .bind(scope.user())
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await
}

/// Messages of one conversation, oldest first (`before_id` pages back).
pub async fn messages(
    pool: &SqlitePool,
    scope: Scope,
    did_id: i64,
    peer: &str,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Message>, sqlx::Error> {
    let sql = concat!(
        "SELECT * FROM (SELECT id, message_sid, direction, from_number, to_number, did_id, body, \
           media_urls, status, error_code, error_message, created_at, is_read FROM messages \
         WHERE did_id = ?1 AND ",
        peer!(),
        " = ?2 AND (?3 IS NULL OR user_id = ?3) \
           AND (?4 IS NULL OR id < ?4) ORDER BY id DESC LIMIT ?5) ORDER BY id"
    );
    sqlx::query_as(sql)
        .bind(did_id)
        .bind(peer)
        .bind(scope.user())
        .bind(before_id)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// Unread inbound messages in scope.
pub async fn unread_count(pool: &SqlitePool, scope: Scope) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM messages WHERE direction = 'inbound' AND NOT is_read \
         AND (?1 IS NULL OR user_id = ?1)",
    )
    .bind(scope.user())
    .fetch_one(pool)
    .await
}

/// Marks a whole conversation read; returns how many rows changed.
pub async fn mark_conversation_read(
    pool: &SqlitePool,
    scope: Scope,
    did_id: i64,
    peer: &str,
) -> Result<u64, sqlx::Error> {
    let sql = concat!(
        "UPDATE messages SET is_read = TRUE WHERE did_id = ?1 AND ",
        peer!(),
        " = ?2 AND NOT is_read AND direction = 'inbound' \
         AND (?3 IS NULL OR user_id = ?3)"
    );
    Ok(sqlx::query(sql)
        .bind(did_id)
        .bind(peer)
        .bind(scope.user())
        .execute(pool)
        .await?
        .rows_affected())
}

/// Marks one message read (`PUT /api/messages/:id/read`); false when it does
/// not exist in scope.
pub async fn mark_read(pool: &SqlitePool, scope: Scope, id: i64) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)",
    )
    .bind(id)
    .bind(scope.user())
    .fetch_optional(pool)
    .await?;
    if found.is_none() {
        return Ok(false);
    }
    sqlx::query("UPDATE messages SET is_read = TRUE WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn seed(pool: &SqlitePool) {
        for q in [
            "INSERT INTO users (id, email, password_hash, role) VALUES (1, 'a@x', 'h', 'admin'), (2, 'u@x', 'h', 'user')",
            "INSERT INTO dids (id, number, owner_user_id) VALUES (10, '+15550000010', 2), (11, '+15550000011', 1)",
            "INSERT INTO messages (message_sid, direction, from_number, to_number, did_id, user_id, body, status) VALUES \
             ('SM1', 'inbound', '+15551111111', '+15550000010', 10, 2, 'hi', 'received'), \
             (NULL, 'outbound', '+15550000010', '+15551111111', 10, 2, 'hello back', 'sent'), \
             ('SM3', 'inbound', '+15551111111', '+15550000010', 10, 2, 'how are you', 'received'), \
             ('SM4', 'inbound', '+15552222222', '+15550000010', 10, 2, 'other', 'received'), \
             ('SM5', 'inbound', '+15553333333', '+15550000011', 11, 1, 'admin line', 'received')",
        ] {
            sqlx::query(q).execute(pool).await.unwrap();
        }
    }

    #[tokio::test]
    async fn conversations_group_by_did_and_peer_with_unread_counts() {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        seed(&pool).await;
        let all = list(&pool, Scope::All, 20, 0).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].peer, "+15553333333");
        let mine = list(&pool, Scope::User(2), 20, 0).await.unwrap();
        assert_eq!(mine.len(), 2);
        let c = mine.iter().find(|c| c.peer == "+15551111111").unwrap();
        assert_eq!((c.total, c.unread), (3, 2));
        assert_eq!(c.last_body, "how are you");
        assert_eq!(c.did_number, "+15550000010");
        assert_eq!(unread_count(&pool, Scope::User(2)).await.unwrap(), 3);
        assert_eq!(unread_count(&pool, Scope::All).await.unwrap(), 4);

        let msgs = messages(&pool, Scope::User(2), 10, "+15551111111", None, 50)
            .await
            .unwrap();
        assert_eq!(
            msgs.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            ["hi", "hello back", "how are you"]
        );
        let older = messages(
            &pool,
            Scope::User(2),
            10,
            "+15551111111",
            Some(msgs[2].id),
            1,
        )
        .await
        .unwrap();
        assert_eq!(older[0].body, "hello back");

        assert_eq!(
            mark_conversation_read(&pool, Scope::User(2), 10, "+15551111111")
                .await
                .unwrap(),
            2
        );
        assert_eq!(unread_count(&pool, Scope::User(2)).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn users_cannot_read_or_mark_other_users_messages() {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        seed(&pool).await;
        let admin_msg: i64 =
            sqlx::query_scalar("SELECT id FROM messages WHERE message_sid = 'SM5'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(!mark_read(&pool, Scope::User(2), admin_msg).await.unwrap());
        assert!(
            messages(&pool, Scope::User(2), 11, "+15553333333", None, 50)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(mark_read(&pool, Scope::All, admin_msg).await.unwrap());
        assert_eq!(unread_count(&pool, Scope::All).await.unwrap(), 3);
    }
}
