#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The links Twilio fetches MMS media by: served while they live and while
//! their message still holds the file (after a restore a token may name a
//! message that is gone or another one now), 404 otherwise. Runs twiliod's
//! handler on a fresh data dir.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use clap::Parser;
use twiliod::AppState;
use twiliod::sms::media::{MediaItem, issue_url, serve};

async fn state() -> (tempfile::TempDir, AppState) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let cfg = twiliod::Config::parse_from(["twiliod", "--data-dir", data]);
    let pool = proto::db::open(dir.path()).await.unwrap();
    let settings = proto::settings::SettingsHandle::new(pool.clone())
        .await
        .unwrap();
    let st = AppState::build(&cfg, pool, settings).await.unwrap();
    (dir, st)
}

async fn status(st: &AppState, token: &str) -> StatusCode {
    serve(State(st.clone()), Path(token.to_string()))
        .await
        .status()
}

#[tokio::test]
async fn a_link_serves_its_file_only_while_its_message_holds_it() {
    let (dir, st) = state().await;
    std::fs::create_dir_all(dir.path().join("media")).unwrap();
    std::fs::write(dir.path().join("media/a.png"), b"\x89PNG").unwrap();
    let media = r#"[{"path":"media/a.png","content_type":"image/png"}]"#;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (direction, from_number, to_number, body, media_urls, status) \
         VALUES ('outbound', '+15550001111', '+15557654321', 'pic', ?, 'sent') RETURNING id",
    )
    .bind(media)
    .fetch_one(&st.pool)
    .await
    .unwrap();
    let item = MediaItem {
        path: "media/a.png".into(),
        content_type: "image/png".into(),
        error: None,
        url: None,
    };
    let url = issue_url(&st, id, &item).await.unwrap();
    let token = url.rsplit('/').next().unwrap().to_string();
    assert_eq!(status(&st, &token).await, StatusCode::OK);

    // The message no longer holds the file (a restored database): gone.
    sqlx::query("UPDATE messages SET media_urls = '[]' WHERE id = ?")
        .bind(id)
        .execute(&st.pool)
        .await
        .unwrap();
    assert_eq!(status(&st, &token).await, StatusCode::NOT_FOUND);
    // Nor does a token that was never issued work.
    assert_eq!(status(&st, &"0".repeat(64)).await, StatusCode::NOT_FOUND);
}
