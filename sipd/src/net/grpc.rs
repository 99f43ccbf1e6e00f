//! The `Sipd` gRPC service (webd and twiliod are its clients): active calls,
//! hang-up, recording on demand, device reload, the TLS certificate's
//! fingerprint, and twiliod's part of the call records. Each call but the
//! last goes to the core task; call records go to the database
//! (`call_records`). Also sipd's `Daemon` service, whose Reload re-reads the devices
//! beside the settings.

use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

use proto::daemon::DaemonService;
use proto::pb::common::daemon_server::{Daemon, DaemonServer};
use proto::pb::common::{HealthReply, HealthRequest, ReloadReply, ReloadRequest};
use proto::pb::sipd::sipd_server::{Sipd, SipdServer};
use proto::pb::sipd::{
    ActiveCall, HangupReply, HangupRequest, ListCallsReply, ListCallsRequest, OriginateReply,
    OriginateRequest, RecordCallReply, RecordCallRequest, ReloadDevicesReply, ReloadDevicesRequest,
    SetRecordingReply, SetRecordingRequest, TlsInfoReply, TlsInfoRequest,
};
use sqlx::SqlitePool;

use super::{Command, DeviceReload};

pub struct SipdService {
    commands: mpsc::Sender<Command>,
    devices: DeviceReload,
    tls: super::tls::Served,
    pool: SqlitePool,
}

impl SipdService {
    pub fn new(
        commands: mpsc::Sender<Command>,
        devices: DeviceReload,
        tls: super::tls::Served,
        pool: SqlitePool,
    ) -> SipdServer<Self> {
        SipdServer::new(Self {
            commands,
            devices,
            tls,
            pool,
        })
    }

    async fn list(&self) -> Result<Vec<crate::sip::core::CallInfo>, Status> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::ListCalls { reply: tx })
            .await
            .map_err(|_| Status::unavailable("sip core stopped"))?;
        rx.await
            .map_err(|_| Status::unavailable("sip core stopped"))
    }
}

#[tonic::async_trait]
impl Sipd for SipdService {
    async fn record_call(
        &self,
        r: Request<RecordCallRequest>,
    ) -> Result<Response<RecordCallReply>, Status> {
        use super::call_records::{RecordError, apply};
        match apply(&self.pool, r.get_ref()).await {
            Ok(cdr_id) => Ok(Response::new(RecordCallReply { cdr_id })),
            Err(RecordError::Invalid(why)) => Err(Status::invalid_argument(why)),
            Err(RecordError::Db(e)) => {
                tracing::error!(call_sid = %r.get_ref().call_sid, error = %e, "cannot write the call record");
                Err(Status::unavailable("cannot write the call record"))
            }
        }
    }

    async fn tls_info(
        &self,
        _r: Request<TlsInfoRequest>,
    ) -> Result<Response<TlsInfoReply>, Status> {
        Ok(Response::new(self.tls.info()))
    }

    async fn originate(
        &self,
        r: Request<OriginateRequest>,
    ) -> Result<Response<OriginateReply>, Status> {
        let r = r.into_inner();
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Originate {
                call_id: r.call_id,
                device_id: proto::types::DeviceId(r.device_id),
                to_number: r.to_number,
                reply: tx,
            })
            .await
            .map_err(|_| Status::unavailable("sip core stopped"))?;
        match rx.await {
            Ok(Ok(call_id)) => Ok(Response::new(OriginateReply { call_id })),
            Ok(Err((code, why))) => Err(match code {
                404 => Status::not_found(why),
                403 => Status::permission_denied(why),
                480 => Status::failed_precondition(why),
                409 => Status::already_exists(why),
                _ => Status::unavailable(why),
            }),
            Err(_) => Err(Status::unavailable("sip core stopped")),
        }
    }

    async fn hangup(&self, r: Request<HangupRequest>) -> Result<Response<HangupReply>, Status> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Hangup {
                call_id: r.into_inner().call_id,
                why: "hung up by API".into(),
                reply: Some(tx),
            })
            .await
            .map_err(|_| Status::unavailable("sip core stopped"))?;
        let found = rx.await.unwrap_or(false);
        Ok(Response::new(HangupReply { found }))
    }

    async fn set_recording(
        &self,
        r: Request<SetRecordingRequest>,
    ) -> Result<Response<SetRecordingReply>, Status> {
        let r = r.into_inner();
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::SetRecording {
                call_id: r.call_id,
                enabled: r.enabled,
                reply: tx,
            })
            .await
            .map_err(|_| Status::unavailable("sip core stopped"))?;
        let found = rx.await.unwrap_or(false);
        Ok(Response::new(SetRecordingReply { found }))
    }

    async fn list_calls(
        &self,
        _r: Request<ListCallsRequest>,
    ) -> Result<Response<ListCallsReply>, Status> {
        let calls = self
            .list()
            .await?
            .into_iter()
            .map(|c| ActiveCall {
                call_id: c.call_id,
                direction: c.direction.into(),
                from_number: c.from,
                to_number: c.to,
                device_id: c.device_id.0,
                state: c.state.into(),
                started_at_unix: i64::try_from(c.started_at / 1000).unwrap_or(0),
                recording: c.recording,
                park_slot: c.park_slot.unwrap_or(0),
            })
            .collect();
        Ok(Response::new(ListCallsReply { calls }))
    }

    async fn reload_devices(
        &self,
        _r: Request<ReloadDevicesRequest>,
    ) -> Result<Response<ReloadDevicesReply>, Status> {
        let n = self
            .devices
            .reload()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        tracing::info!(devices = n, "devices reloaded on request");
        Ok(Response::new(ReloadDevicesReply {
            devices: u32::try_from(n).unwrap_or(u32::MAX),
        }))
    }
}

/// The common `Daemon` service; its Reload (webd sends it after settings
/// changes and a restore) also re-reads the devices, whose realm and
/// caller-ID DIDs may have changed with them.
pub struct SipdDaemon {
    inner: DaemonService,
    devices: DeviceReload,
}

impl SipdDaemon {
    pub fn new(inner: DaemonService, devices: DeviceReload) -> DaemonServer<Self> {
        DaemonServer::new(Self { inner, devices })
    }
}

#[tonic::async_trait]
impl Daemon for SipdDaemon {
    async fn health(&self, r: Request<HealthRequest>) -> Result<Response<HealthReply>, Status> {
        self.inner.health(r).await
    }

    async fn reload(&self, r: Request<ReloadRequest>) -> Result<Response<ReloadReply>, Status> {
        let reply = self.inner.reload(r).await?;
        self.devices
            .reload()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(reply)
    }
}
