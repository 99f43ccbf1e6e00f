//! The `Mediad` gRPC service: port pairs per call, leg hints and SRTP keys,
//! recording, playing to the caller or announcing to the callee, stats and
//! the event stream (contract and usage: mediad.proto).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::pb::mediad::mediad_server::Mediad;
use proto::pb::mediad::{
    AllocateReply, AllocateRequest, CallStats, EventsRequest, MediaEvent, PlayReply, PlayRequest,
    RecordReply, RecordRequest, ReleaseReply, ReleaseRequest, StatsRequest, UpdateLegReply,
    UpdateLegRequest,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::call::{self, Cmd, Env, LegUpdate, Sockets};
use crate::prompts::Prompts;
use crate::relay::LegId;
use crate::relay::pool::{PoolError, PortPool};
use crate::runners::Runners;

/// Bind attempts before Allocate gives up (ports held by other programs).
const BIND_ATTEMPTS: usize = 16;
/// How long a voicemail may run when the Play does not say.
const DEFAULT_RECORD: Duration = Duration::from_secs(120);

/// Shared state of the service.
#[derive(Clone)]
pub struct MediaService {
    inner: Arc<Inner>,
}

struct Inner {
    bind_ip: IpAddr,
    pool: Mutex<PortPool>,
    calls: Mutex<HashMap<String, CallEntry>>,
    prompts: Prompts,
    env: Env,
    runners: Runners,
}

struct CallEntry {
    tx: mpsc::Sender<Cmd>,
    ports: (u16, u16),
    task: tokio::task::JoinHandle<()>,
}

impl MediaService {
    pub fn new(bind_ip: IpAddr, pool: PortPool, env: Env, runners: Runners) -> Self {
        Self {
            inner: Arc::new(Inner {
                bind_ip,
                pool: Mutex::new(pool),
                calls: Mutex::new(HashMap::new()),
                prompts: Prompts::new(env.data_dir.clone()),
                env,
                runners,
            }),
        }
    }

    /// Free RTP ports (health probe).
    pub fn free_ports(&self) -> usize {
        self.inner.pool.lock().map_or(0, |p| p.free_count())
    }

    /// Calls with media now.
    pub fn active_calls(&self) -> usize {
        self.inner.calls.lock().map_or(0, |c| c.len())
    }

    /// Returns the ports of calls whose task ended by itself (orphans).
    pub async fn reap(self, mut ended: mpsc::UnboundedReceiver<String>) {
        while let Some(call_id) = ended.recv().await {
            let entry = match self.inner.calls.lock() {
                Ok(mut calls) => calls.remove(&call_id),
                Err(_) => return,
            };
            if let Some(entry) = entry {
                let _ = entry.task.await;
                if let Ok(mut pool) = self.inner.pool.lock() {
                    pool.release(entry.ports.0);
                    pool.release(entry.ports.1);
                }
                tracing::info!(call_id = %call_id, "orphaned call media released");
            }
        }
    }

    /// Waits (up to `limit`) for every call task to finish: at shutdown
    /// they write out and close their recordings.
    pub async fn join_calls(&self, limit: std::time::Duration) {
        let tasks: Vec<_> = match self.inner.calls.lock() {
            Ok(mut calls) => calls.drain().map(|(_, c)| c.task).collect(),
            Err(_) => return,
        };
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("calls did not finish in time at shutdown");
        }
    }

    fn sender(&self, call_id: &str) -> Result<mpsc::Sender<Cmd>, Status> {
        self.inner
            .calls
            .lock()
            .map_err(|_| Status::internal("state poisoned"))?
            .get(call_id)
            .map(|c| c.tx.clone())
            .ok_or_else(|| Status::not_found(format!("no media for call {call_id}")))
    }

    fn allocate(&self, call_id: &str) -> Result<(u16, u16), Status> {
        let mut calls = self
            .inner
            .calls
            .lock()
            .map_err(|_| Status::internal("state poisoned"))?;
        if let Some(c) = calls.get(call_id) {
            return Ok(c.ports);
        }
        let (ports, sockets) = self.bind_pair()?;
        let (tx, rx) = mpsc::channel(16);
        let task = self.inner.runners.spawn(call::run(
            call_id.to_owned(),
            sockets,
            rx,
            self.inner.env.clone(),
        ));
        calls.insert(call_id.to_owned(), CallEntry { tx, ports, task });
        Ok(ports)
    }

    /// Takes a port pair and binds its four sockets; a port some other
    /// program holds goes back to the end of the pool and another is tried.
    fn bind_pair(&self) -> Result<((u16, u16), Sockets), Status> {
        let mut pool = self
            .inner
            .pool
            .lock()
            .map_err(|_| Status::internal("state poisoned"))?;
        let mut last_err = None;
        for _ in 0..BIND_ATTEMPTS {
            let (a, b) = pool.allocate_pair().map_err(|e| match e {
                PoolError::Exhausted(_) => Status::resource_exhausted(e.to_string()),
                other => Status::internal(other.to_string()),
            })?;
            match self.bind4(a, b) {
                Ok(s) => return Ok(((a, b), s)),
                Err(e) => {
                    tracing::warn!(port_a = a, port_b = b, error = %e, "RTP port busy, trying another");
                    pool.release(a);
                    pool.release(b);
                    last_err = Some(e);
                }
            }
        }
        Err(Status::unavailable(format!(
            "cannot bind RTP ports: {}",
            last_err.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    fn bind4(&self, a: u16, b: u16) -> std::io::Result<Sockets> {
        let bind = |port: u16| -> std::io::Result<std::net::UdpSocket> {
            let s = std::net::UdpSocket::bind(SocketAddr::new(self.inner.bind_ip, port))?;
            s.set_nonblocking(true)?;
            Ok(s)
        };
        Ok(Sockets {
            a_rtp: bind(a)?,
            a_rtcp: bind(a + 1)?,
            b_rtp: bind(b)?,
            b_rtcp: bind(b + 1)?,
        })
    }

    async fn ask<T>(
        &self,
        call_id: &str,
        make: impl FnOnce(oneshot::Sender<T>) -> Cmd,
    ) -> Result<T, Status> {
        let tx = self.sender(call_id)?;
        let (reply, rx) = oneshot::channel();
        tx.send(make(reply))
            .await
            .map_err(|_| Status::not_found(format!("call {call_id} ended")))?;
        rx.await
            .map_err(|_| Status::not_found(format!("call {call_id} ended")))
    }
}

type EventStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<MediaEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Mediad for MediaService {
    async fn allocate(
        &self,
        req: Request<AllocateRequest>,
    ) -> Result<Response<AllocateReply>, Status> {
        let call_id = req.into_inner().call_id;
        if call_id.is_empty() {
            return Err(Status::invalid_argument("call_id is required"));
        }
        let (port_a, port_b) = self.allocate(&call_id)?;
        tracing::info!(call_id = %call_id, port_a, port_b, "media allocated");
        Ok(Response::new(AllocateReply {
            port_a: port_a.into(),
            port_b: port_b.into(),
            dtls_fingerprint: self.inner.env.identity.fingerprint.to_string(),
        }))
    }

    async fn update_leg(
        &self,
        req: Request<UpdateLegRequest>,
    ) -> Result<Response<UpdateLegReply>, Status> {
        let r = req.into_inner();
        let leg = call::leg_of(r.leg)?;
        let addr = |s: &str| -> Result<Option<SocketAddr>, Status> {
            if s.is_empty() {
                return Ok(None);
            }
            s.parse()
                .map(Some)
                .map_err(|_| Status::invalid_argument(format!("bad address {s:?}: want ip:port")))
        };
        let signal_ip = if r.signal_ip.is_empty() {
            None
        } else {
            Some(r.signal_ip.parse::<IpAddr>().map_err(|_| {
                Status::invalid_argument(format!("bad signal_ip {:?}: want an IP", r.signal_ip))
            })?)
        };
        // Checked before the hold music is loaded for nothing. A crypto
        // with dtls makes a browser's leg; without, SDES keys or plain.
        let webrtc = r
            .crypto
            .as_ref()
            .and_then(|c| c.dtls.as_ref())
            .map(|d| proto::webrtc::WebrtcLeg::from_pb(d).map(Box::new))
            .transpose()
            .map_err(|field| Status::invalid_argument(format!("bad crypto.{field}")))?;
        let crypto = r
            .crypto
            .as_ref()
            .filter(|c| c.dtls.is_none())
            .map(proto::sdes::from_pb)
            .transpose()
            .map_err(|field| Status::invalid_argument(format!("bad crypto.{field}")))?;
        let update = LegUpdate {
            leg,
            rtp: addr(&r.remote_rtp)?,
            rtcp: addr(&r.remote_rtcp)?,
            signal_ip,
            codecs: r
                .codecs
                .into_iter()
                .filter_map(|c| u8::try_from(c.pt).ok().map(|pt| (pt, c.name)))
                .collect(),
            established: r.established,
            hold: r.hold,
            music: match r.music {
                Some(true) => Some(Some(self.inner.prompts.hold_music().await)),
                Some(false) => Some(None),
                None => None,
            },
            crypto,
            webrtc,
        };
        if leg.is_none()
            && (update.rtp.is_some()
                || update.signal_ip.is_some()
                || !update.codecs.is_empty()
                || update.hold.is_some()
                || update.crypto.is_some()
                || update.webrtc.is_some())
        {
            return Err(Status::invalid_argument(
                "leg is required with an address, signal_ip, codecs, hold or crypto",
            ));
        }
        let tx = self.sender(&r.call_id)?;
        tx.send(Cmd::UpdateLeg(update))
            .await
            .map_err(|_| Status::not_found("call ended"))?;
        Ok(Response::new(UpdateLegReply {}))
    }

    async fn release(
        &self,
        req: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseReply>, Status> {
        let call_id = req.into_inner().call_id;
        let entry = self
            .inner
            .calls
            .lock()
            .map_err(|_| Status::internal("state poisoned"))?
            .remove(&call_id)
            .ok_or_else(|| Status::not_found(format!("no media for call {call_id}")))?;
        let (reply, rx) = oneshot::channel();
        let stats = match entry.tx.send(Cmd::Release { reply }).await {
            Ok(()) => rx.await.ok(),
            Err(_) => None,
        };
        // The sockets close with the task; only then may the ports be reused.
        let _ = entry.task.await;
        if let Ok(mut pool) = self.inner.pool.lock() {
            pool.release(entry.ports.0);
            pool.release(entry.ports.1);
        }
        tracing::info!(call_id = %call_id, stats = ?stats, "media released");
        Ok(Response::new(ReleaseReply { stats }))
    }

    async fn stats(&self, req: Request<StatsRequest>) -> Result<Response<CallStats>, Status> {
        let call_id = req.into_inner().call_id;
        let stats = self.ask(&call_id, |reply| Cmd::Stats { reply }).await?;
        Ok(Response::new(stats))
    }

    async fn record(&self, req: Request<RecordRequest>) -> Result<Response<RecordReply>, Status> {
        let RecordRequest { call_id, enabled } = req.into_inner();
        let r = self
            .ask(&call_id, |reply| Cmd::Record { enabled, reply })
            .await?;
        Ok(Response::new(match r {
            Ok(path) => RecordReply {
                ok: true,
                path,
                error: String::new(),
            },
            Err(error) => RecordReply {
                ok: false,
                path: String::new(),
                error: error.to_string(),
            },
        }))
    }

    async fn play(&self, req: Request<PlayRequest>) -> Result<Response<PlayReply>, Status> {
        let r = req.into_inner();
        let leg = play_leg(&r)?;
        // An unknown call is refused before any speech is rendered.
        self.sender(&r.call_id)?;
        let clips = self
            .inner
            .prompts
            .render(&r.items)
            .await
            .map_err(|e| Status::new(e.code(), e.to_string()))?;
        let record_after = r
            .record_after
            .then(|| crate::relay::voicemail::RecordLimits {
                max: match r.max_record_secs {
                    0 => DEFAULT_RECORD,
                    secs => Duration::from_secs(secs.into()),
                },
                silence: (r.silence_secs > 0).then(|| Duration::from_secs(r.silence_secs.into())),
            });
        self.ask(&r.call_id, |reply| Cmd::Play {
            leg,
            clips,
            record_after,
            reply,
        })
        .await?
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
        tracing::info!(call_id = %r.call_id, leg = leg.as_str(), items = r.items.len(), record_after = ?record_after, "playing");
        Ok(Response::new(PlayReply {}))
    }

    type EventsStream = EventStream;

    async fn events(
        &self,
        _req: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        // A forwarding task, so the stream ends at shutdown (the server's
        // graceful stop waits for open streams).
        let mut rx = self.inner.env.events.subscribe();
        let stop = self.inner.env.shutdown.clone();
        let (tx, out) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tx.closed() => return,
                    ev = rx.recv() => ev,
                };
                match ev {
                    Ok(ev) => {
                        if tx.send(Ok(ev)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "events subscriber lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let stream = ReceiverStream::new(out);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The leg a Play is for: unspecified or A (mediad answers it), B (an
/// announcement in a relayed call, which nothing is recorded after: the
/// voicemail timeline is the A-leg's).
fn play_leg(r: &PlayRequest) -> Result<LegId, Status> {
    let leg = call::leg_of(r.leg)?.unwrap_or(LegId::A);
    if leg == LegId::B && r.record_after {
        return Err(Status::invalid_argument(
            "record_after is for the A-leg only",
        ));
    }
    Ok(leg)
}
