#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every device change reaches sipd before the API answers: webd calls
//! sipd's gRPC `ReloadDevices` after a create, an update, a new password and
//! a delete. sipd here is a stand-in gRPC server on 127.0.0.1 that reads the
//! `devices` table when asked, as the real one does, so the test can see
//! which rows it had at each reload. With sipd down the API still answers.
//! It also answers `TlsInfo` with its own TLS port, which a device set to
//! TLS is given.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::SqlitePool;
use tonic::{Request as GrpcRequest, Response, Status};

use proto::pb::sipd::sipd_server::{Sipd, SipdServer};
use proto::pb::sipd::{
    HangupReply, HangupRequest, ListCallsReply, ListCallsRequest, OriginateReply, OriginateRequest,
    ReloadDevicesReply, ReloadDevicesRequest, SetRecordingReply, SetRecordingRequest,
};

/// (username, password_hash) of every device, at each reload.
type Seen = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// The TLS port and fingerprint the stand-in sipd reports.
const TLS_PORT: u16 = 15061;
const TLS_SHA256: &str = "AB:CD:EF";

struct FakeSipd {
    pool: SqlitePool,
    seen: Seen,
}

#[tonic::async_trait]
impl Sipd for FakeSipd {
    async fn record_call(
        &self,
        _r: GrpcRequest<proto::pb::sipd::RecordCallRequest>,
    ) -> Result<Response<proto::pb::sipd::RecordCallReply>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn originate(
        &self,
        _r: GrpcRequest<OriginateRequest>,
    ) -> Result<Response<OriginateReply>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn hangup(
        &self,
        _r: GrpcRequest<HangupRequest>,
    ) -> Result<Response<HangupReply>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn set_recording(
        &self,
        _r: GrpcRequest<SetRecordingRequest>,
    ) -> Result<Response<SetRecordingReply>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn list_calls(
        &self,
        _r: GrpcRequest<ListCallsRequest>,
    ) -> Result<Response<ListCallsReply>, Status> {
        Ok(Response::new(ListCallsReply { calls: vec![] }))
    }

    async fn tls_info(
        &self,
        _r: GrpcRequest<proto::pb::sipd::TlsInfoRequest>,
    ) -> Result<Response<proto::pb::sipd::TlsInfoReply>, Status> {
        Ok(Response::new(proto::pb::sipd::TlsInfoReply {
            port: u32::from(TLS_PORT),
            sha256: TLS_SHA256.into(),
            certificate_path: "/data/tls/cert.pem".into(),
            self_signed: true,
        }))
    }

    async fn reload_devices(
        &self,
        _r: GrpcRequest<ReloadDevicesRequest>,
    ) -> Result<Response<ReloadDevicesReply>, Status> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT username, password_hash FROM devices ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
        let n = rows.len() as u32;
        self.seen.lock().unwrap().push(rows);
        Ok(Response::new(ReloadDevicesReply { devices: n }))
    }
}

mod common;

type T = common::Webd;

impl T {
    /// webd on a temp database, its sipd at `sipd` (other daemons absent).
    async fn start(sipd: Option<Seen>) -> (T, SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        let mut extra = Vec::new();
        if let Some(seen) = sipd {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap().to_string();
            let svc = SipdServer::new(FakeSipd {
                pool: pool.clone(),
                seen,
            });
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
            );
            extra = vec!["--sipd-grpc".to_owned(), addr];
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        (common::start_on(dir, pool.clone(), &extra).await, pool)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        cookie: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, String) {
        let r = self.send(method, path, cookie, body).await;
        (r.status, r.json(), r.set_cookie().unwrap_or_default())
    }

    async fn admin(&self) -> String {
        let (s, v, cookie) = self
            .call(
                "POST",
                "/api/setup",
                "",
                Some(json!({"setup_token": self.setup_token(), "admin": {"email": "admin@example.org", "password": "correct horse battery"},
                            "did": {"number": "+15551230000", "name": "Main"}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        cookie
    }
}

#[tokio::test]
async fn each_device_change_is_in_the_table_when_sipd_is_asked_to_reload() {
    let seen: Seen = Arc::default();
    let (t, _pool) = T::start(Some(seen.clone())).await;
    let admin = t.admin().await;
    let reloads = || seen.lock().unwrap().clone();
    assert!(reloads().is_empty(), "setup creates no device");

    let (s, dev, _) = t
        .call(
            "POST",
            "/api/devices",
            &admin,
            Some(json!({"name": "Desk", "username": "desk1", "extension": "101"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dev}");
    let id = dev["id"].as_i64().unwrap();
    let r = reloads();
    assert_eq!(r.len(), 1, "one reload per change");
    assert_eq!(r[0].len(), 1);
    assert_eq!(
        r[0][0].0, "desk1",
        "the new row was committed before the reload"
    );
    let first_hash = r[0][0].1.clone();

    // A rename: one more reload.
    let (s, _, _) = t
        .call(
            "PUT",
            &format!("/api/devices/{id}"),
            &admin,
            Some(json!({"name": "Front desk"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(reloads().len(), 2);

    // A new password: sipd reloads with the new HA1 already stored.
    let (s, v, _) = t
        .call(
            "PUT",
            &format!("/api/devices/{id}"),
            &admin,
            Some(json!({"regenerate_password": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["password"].as_str().is_some());
    let r = reloads();
    assert_eq!(r.len(), 3);
    assert_ne!(r[2][0].1, first_hash, "reloaded after the new password");

    let (s, _, _) = t
        .call("DELETE", &format!("/api/devices/{id}"), &admin, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = reloads();
    assert_eq!(r.len(), 4);
    assert!(r[3].is_empty(), "reloaded after the delete");

    // Refused changes touch nothing and ask nothing.
    let (s, _, _) = t
        .call("POST", "/api/devices", &admin, Some(json!({"name": ""})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reloads().len(), 4);
}

#[tokio::test]
async fn a_device_is_still_created_while_sipd_is_down() {
    let (t, pool) = T::start(None).await;
    let admin = t.admin().await;
    let (s, dev, _) = t
        .call(
            "POST",
            "/api/devices",
            &admin,
            Some(json!({"name": "Desk", "username": "desk2"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dev}");
    assert!(dev["password"].as_str().is_some());
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE username = 'desk2'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_device_set_to_tls_is_given_the_tls_port_and_fingerprint_sipd_reports() {
    let seen: Seen = Arc::default();
    let (t, _pool) = T::start(Some(seen)).await;
    let admin = t.admin().await;
    let (s, dev, _) = t
        .call(
            "POST",
            "/api/devices",
            &admin,
            Some(
                json!({"name": "Desk", "username": "tls1", "transport": "tls", "srtp": "required"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dev}");
    assert_eq!(dev["port"], TLS_PORT, "{dev}");
    assert_eq!(dev["tls_sha256"], TLS_SHA256, "{dev}");
    let uri = dev["sip_uri"].as_str().unwrap();
    assert!(
        uri.ends_with(&format!(":{TLS_PORT};transport=tls")),
        "{uri}"
    );
    // A UDP device keeps the SIP port and has no fingerprint.
    let (s, dev, _) = t
        .call(
            "POST",
            "/api/devices",
            &admin,
            Some(json!({"name": "Plain", "username": "udp1"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dev}");
    assert_eq!(dev["port"], 5060);
    assert!(dev.get("tls_sha256").is_none(), "{dev}");
}
