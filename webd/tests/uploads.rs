#![allow(clippy::unwrap_used, clippy::expect_used)]
//! MMS images reach the disk only for a valid message, only when their
//! bytes are the image type they claim, and only readable by GoSIP (0600).

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use proto::pb::twiliod::twiliod_server::{Twiliod, TwiliodServer};
use proto::pb::twiliod::{
    CheckCredentialsReply, CheckCredentialsRequest, ConfigureNumberReply, ConfigureNumberRequest,
    ListNumbersReply, ListNumbersRequest, SendMessageReply, SendMessageRequest, TestCallReply,
    TestCallRequest,
};
use serde_json::json;
use sqlx::SqlitePool;
use tonic::{Request as GrpcRequest, Response, Status};

mod common;

const BOUNDARY: &str = "gosip-test-boundary";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0";

fn multipart(fields: &[(&str, &str)], media: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        out.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((ct, data)) = media {
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"a\"\r\n\
                 Content-Type: {ct}\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

async fn send(t: &common::Webd, cookie: &str, body: Vec<u8>) -> common::Res {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/messages")
        .header("x-requested-with", "gosip")
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::COOKIE, cookie)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body))
        .unwrap();
    t.raw(req).await
}

fn media_files(t: &common::Webd) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(t.dir.path().join("media"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Setup as an admin does; answers the admin's session cookie.
async fn setup(t: &common::Webd) -> String {
    let r = t
        .send(
            "POST",
            "/api/setup",
            "",
            Some(json!({"setup_token": t.setup_token(),
                        "admin": {"email": "admin@example.org", "password": "correct horse battery"},
                        "did": {"number": "+15551230000", "name": "Main"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    r.cookie()
}

#[tokio::test]
async fn an_upload_is_written_only_for_a_valid_message_and_only_if_it_is_the_image_it_claims() {
    let t = common::start_with(&[]).await;
    let admin = setup(&t).await;

    // A bad destination: refused with the field named, nothing on disk.
    let r = send(
        &t,
        &admin,
        multipart(&[("to", "not a number")], Some(("image/png", PNG))),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert!(r.text().contains("\"to\""), "{}", r.text());
    assert_eq!(media_files(&t), Vec::<std::path::PathBuf>::new());

    // Bytes that are not the claimed type (a script sent as image/png).
    let r = send(
        &t,
        &admin,
        multipart(
            &[("to", "+15557654321")],
            Some(("image/png", b"#!/bin/sh\nrm -rf /\n")),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert!(r.text().contains("\"media\""), "{}", r.text());
    assert_eq!(media_files(&t), Vec::<std::path::PathBuf>::new());

    // A valid message whose hand-over fails (twiliod is down here): the
    // image written for it is taken back.
    let r = send(
        &t,
        &admin,
        multipart(&[("to", "+15557654321")], Some(("image/png", PNG))),
    )
    .await;
    assert!(r.status.is_server_error(), "{} {}", r.status, r.text());
    assert_eq!(media_files(&t), Vec::<std::path::PathBuf>::new());
    let dir = std::fs::metadata(t.dir.path().join("media")).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
}

/// What the stand-in twiliod saw of one uploaded file when it was asked to
/// send: (path relative to the data dir, permission bits, bytes).
type Seen = Arc<Mutex<Vec<(String, u32, Vec<u8>)>>>;

/// twiliod's `SendMessage` as far as webd relies on it: the media files are
/// on disk when it is called (it reads them to send the MMS), and it stores
/// the message row webd answers with.
struct FakeTwiliod {
    data_dir: std::path::PathBuf,
    pool: SqlitePool,
    seen: Seen,
}

#[tonic::async_trait]
impl Twiliod for FakeTwiliod {
    async fn check_credentials(
        &self,
        _r: GrpcRequest<CheckCredentialsRequest>,
    ) -> Result<Response<CheckCredentialsReply>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn list_numbers(
        &self,
        _r: GrpcRequest<ListNumbersRequest>,
    ) -> Result<Response<ListNumbersReply>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn configure_number(
        &self,
        _r: GrpcRequest<ConfigureNumberRequest>,
    ) -> Result<Response<ConfigureNumberReply>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn test_call(
        &self,
        _r: GrpcRequest<TestCallRequest>,
    ) -> Result<Response<TestCallReply>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn set_up_twilio(
        &self,
        _r: GrpcRequest<proto::pb::twiliod::SetUpTwilioRequest>,
    ) -> Result<Response<proto::pb::twiliod::SetUpTwilioReply>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn set_read(
        &self,
        _r: GrpcRequest<proto::pb::twiliod::SetReadRequest>,
    ) -> Result<Response<proto::pb::twiliod::SetReadReply>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn conversation_read(
        &self,
        _r: GrpcRequest<proto::pb::twiliod::ConversationReadRequest>,
    ) -> Result<Response<proto::pb::twiliod::ConversationReadReply>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn delete_voicemail(
        &self,
        _r: GrpcRequest<proto::pb::twiliod::DeleteVoicemailRequest>,
    ) -> Result<Response<proto::pb::twiliod::DeleteVoicemailReply>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn store_voicemail(
        &self,
        _r: GrpcRequest<proto::pb::twiliod::StoreVoicemailRequest>,
    ) -> Result<Response<proto::pb::twiliod::StoreVoicemailReply>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn send_message(
        &self,
        r: GrpcRequest<SendMessageRequest>,
    ) -> Result<Response<SendMessageReply>, Status> {
        let m = r.into_inner();
        for rel in &m.media_paths {
            let p = self.data_dir.join(rel);
            let meta = std::fs::metadata(&p).map_err(|e| Status::not_found(e.to_string()))?;
            let bytes = std::fs::read(&p).map_err(|e| Status::not_found(e.to_string()))?;
            self.seen
                .lock()
                .unwrap()
                .push((rel.clone(), meta.permissions().mode() & 0o777, bytes));
        }
        let id = sqlx::query(
            "INSERT INTO messages (direction, from_number, to_number, user_id, body, media_urls, status) \
             VALUES ('outbound', ?, ?, ?, ?, ?, 'queued')",
        )
        .bind(&m.from_number)
        .bind(&m.to_number)
        .bind(m.user_id)
        .bind(&m.body)
        .bind(serde_json::to_string(&m.media_paths).unwrap())
        .execute(&self.pool)
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .last_insert_rowid();
        Ok(Response::new(SendMessageReply { message_id: id }))
    }
}

#[tokio::test]
async fn a_valid_message_with_a_real_image_is_written_0600_in_a_0700_media_dir() {
    let dir = tempfile::tempdir().unwrap();
    let pool = proto::db::open(dir.path()).await.unwrap();
    let seen: Seen = Arc::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TwiliodServer::new(FakeTwiliod {
                data_dir: dir.path().to_owned(),
                pool: pool.clone(),
                seen: seen.clone(),
            }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
    );
    let t = common::start_on(dir, pool, &["--twiliod-grpc", &addr]).await;
    let admin = setup(&t).await;

    let r = send(
        &t,
        &admin,
        multipart(
            &[("to", "+15557654321"), ("body", "the whiteboard")],
            Some(("image/png", PNG)),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (rel, mode, bytes) = &seen[0];
    assert!(rel.starts_with("media/") && rel.ends_with(".png"), "{rel}");
    assert_eq!(*mode, 0o600, "{rel} was {mode:o} when twiliod read it");
    assert_eq!(bytes.as_slice(), PNG);
    // It stays for twiliod's send job, still private, and is the only file.
    assert_eq!(media_files(&t), vec![t.dir.path().join(rel)]);
    let mode = std::fs::metadata(t.dir.path().join(rel))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir = std::fs::metadata(t.dir.path().join("media")).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);

    // The same image sent as a GIF is refused, and nothing more is written.
    let r = send(
        &t,
        &admin,
        multipart(&[("to", "+15557654321")], Some(("image/gif", PNG))),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert!(r.text().contains("\"media\""), "{}", r.text());
    assert_eq!(media_files(&t).len(), 1);
}
