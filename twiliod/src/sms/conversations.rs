//! Read marks of messages, which twiliod owns: webd checks that the
//! caller may see a message, then asks over gRPC (`SetRead`,
//! `ConversationRead`). Only inbound messages are ever unread.

use sqlx::SqlitePool;

/// Marks message `id` read or unread; false when it does not exist.
pub async fn set_read(pool: &SqlitePool, id: i64, is_read: bool) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("UPDATE messages SET is_read = ? WHERE id = ?")
        .bind(is_read)
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected()
        > 0)
}

/// Marks every unread inbound message from `peer` read: to `our_number`
/// only when given, of the numbers of `user` only when given. How many
/// changed.
pub async fn mark_conversation_read(
    pool: &SqlitePool,
    peer: &str,
    our_number: Option<&str>,
    user: Option<i64>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE messages SET is_read = 1 WHERE direction = 'inbound' AND from_number = ?1 \
         AND is_read = 0 AND (?2 IS NULL OR user_id = ?2) AND (?3 IS NULL OR to_number = ?3)",
    )
    .bind(peer)
    .bind(user)
    .bind(our_number)
    .execute(pool)
    .await?
    .rows_affected())
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
             ('SM5', 'inbound', '+15551111111', '+15550000011', 11, 1, 'admin line', 'received')",
        ] {
            sqlx::query(q).execute(pool).await.unwrap();
        }
    }

    async fn unread(pool: &SqlitePool) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE direction = 'inbound' AND NOT is_read",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_conversation_is_marked_read_for_one_user_or_one_number_only() {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        seed(&pool).await;
        assert_eq!(unread(&pool).await, 4);
        // The user's two messages from that peer; the admin's line keeps its own.
        assert_eq!(
            mark_conversation_read(&pool, "+15551111111", None, Some(2))
                .await
                .unwrap(),
            2
        );
        assert_eq!(unread(&pool).await, 2);
        assert_eq!(
            mark_conversation_read(&pool, "+15551111111", Some("+15550000011"), None)
                .await
                .unwrap(),
            1
        );
        assert_eq!(unread(&pool).await, 1);
    }

    #[tokio::test]
    async fn one_message_is_marked_read_and_unread_again() {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        seed(&pool).await;
        let id: i64 = sqlx::query_scalar("SELECT id FROM messages WHERE message_sid = 'SM4'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(set_read(&pool, id, true).await.unwrap());
        assert_eq!(unread(&pool).await, 3);
        assert!(set_read(&pool, id, false).await.unwrap());
        assert_eq!(unread(&pool).await, 4);
        assert!(!set_read(&pool, 9999, true).await.unwrap());
    }
}
